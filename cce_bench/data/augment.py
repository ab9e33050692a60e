"""Batched augmentation on the training device, with per-sample parameters from a seeded generator.

One call turns a uint8 ``[N, H, W, 3]`` batch into float32 ``[N, 3, H, W]`` in [0, 1]. Every
image draws its own parameters from the ``torch.Generator`` it is given, so two runs that share
a seed (a CE arm and a CCE arm of one paired seed) see the same augmentation stream.

What a policy does, all scaled by one ``strength`` in [0, 1] (the knob Optuna tunes):

- the 8 symmetries of the square (flips on both axes and 90-degree rotations), always at full
  rate, because a dermoscopic image has no "up";
- a random resized crop whose smallest area fraction shrinks from 1 (no crop) at strength 0 to
  the policy's minimum at strength 1, with an aspect ratio drawn log-uniformly as in Szegedy et
  al. (2015) / torchvision's ``RandomResizedCrop``;
- a small affine (rotation and shear);
- colour jitter (brightness, contrast, saturation, hue).

Why plain torch rather than a library: torchvision's v2 transforms draw one set of parameters
per call, so a batch would share a single crop and flip; kornia draws per-sample parameters
but is not installed, and would add a dependency for four lines of matrix algebra. Here the
symmetry, crop, rotation and shear compose into one 2x3 matrix per sample, and one sampling
grid (``F.affine_grid``'s, computed separably) and one ``F.grid_sample`` call resample the
whole batch (reflection padding, since the area around a lesion is more skin). The four colour
jitters are each linear in the pixel values (contrast blends toward the image's mean grey,
itself linear in them), so they compose into one 3x3 matrix plus offset per sample and one
``torch.baddbmm``, which also scales to [0, 1]. That keeps the work to about four passes over
the batch. Measured on one CPU thread at 224 px (best of 8 batches of 64): 1.4 ms per image
for ``standard`` (0.3 conversion, 0.07 grid, 0.7 resampling, 0.35 colour), against 5.5-8 ms
for a per-sample Pillow decode + torchvision pipeline (``benchmarks/bench_data.py``); on a GPU
they run on the device, off the CPU. Policy ``flips`` skips resampling altogether (0.5 ms):
its symmetries are exact index operations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cce_bench.data.augment_policies import (
    DEFAULT_POLICY,
    POLICIES,
    AugmentPolicy,
    available_policies,
    get_policy,
)
from cce_bench.errors import CceBenchError

#: Re-exported: the policies are plain data in ``augment_policies`` (checked without torch).
__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "AugmentPolicy",
    "AugmentationError",
    "augment_batch",
    "available_policies",
    "get_policy",
    "normalize",
    "to_float",
]

#: ITU-R BT.601 luma weights, the grey used by contrast and saturation jitter (as torchvision).
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

#: RGB -> YIQ (NTSC); hue jitter rotates the chroma plane (I, Q) and leaves luma Y unchanged.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


class AugmentationError(CceBenchError, ValueError):
    """An augmentation was asked for with an impossible strength or input batch."""


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float32 ``[N, 3, H, W]`` in [0, 1], unaugmented (evaluation)."""
    _check_batch(images)
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(
    x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Standardise ``[N, 3, H, W]`` channels with a backbone's mean and std (new tensor).

    Computed as ``x * (1 / std) + (-mean / std)`` in one fused ``addcmul`` pass; the plain
    ``(x - mean) / std`` makes two passes and an extra batch-sized temporary. For float
    sequences the two constants are made once per device and dtype (``_device_constants``
    says why); tensors are used as given.
    """
    if isinstance(mean, torch.Tensor) or isinstance(std, torch.Tensor):
        std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return torch.addcmul(-mean_t / std_t, x, 1.0 / std_t)
    shift, scale = _normalization(tuple(mean), tuple(std), x.dtype, x.device)
    return torch.addcmul(shift, x, scale)


@functools.lru_cache(maxsize=16)
def _normalization(
    mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(-mean / std, 1 / std)`` as ``[1, C, 1, 1]`` tensors, computed on the device in the
    batch's dtype as before they were cached, so normalised batches are bit for bit the same."""
    with torch.inference_mode(False):
        std_t = torch.tensor(std, dtype=dtype, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=dtype, device=device).view(1, -1, 1, 1)
        return -mean_t / std_t, 1.0 / std_t


def augment_batch(
    images: torch.Tensor,
    *,
    policy: str = DEFAULT_POLICY,
    strength: float = 0.5,
    generator: torch.Generator,
) -> torch.Tensor:
    """Augment a uint8 ``[N, H, W, 3]`` batch into float32 ``[N, 3, H, W]`` in [0, 1].

    Each image gets its own parameters drawn from ``generator`` (which must live on the images'
    device), so the result is a function of the batch and the generator state alone. Policy
    ``none`` is exactly ``to_float``; at strength 0, ``standard`` and ``strong`` reduce to the
    square's symmetries (up to resampling round-off). The 90-degree rotations need square images
    (the cache always makes squares); on a non-square batch only flips are drawn.

    Example::

        g = torch.Generator().manual_seed(0)
        x = augment_batch(torch.zeros(8, 64, 64, 3, dtype=torch.uint8), strength=0.3, generator=g)
    """
    spec = get_policy(policy)
    if not 0.0 <= strength <= 1.0:
        raise AugmentationError(
            f"augmentation strength {strength} is outside [0, 1]; set aug_strength in [0, 1]."
        )
    _check_batch(images)
    if not spec.symmetries or len(images) == 0:
        return to_float(images)
    n, height, width, _ = images.shape
    square = height == width
    if not spec.resample:
        return _apply_symmetries(images, generator, allow_transpose=square)
    theta = _geometry(spec, strength, n, generator, images.device, allow_quarter_turns=square)
    # Channels first while still uint8 (a quarter of the bytes to move), then resample, then
    # colour: grid_sample is 1.6x faster on a contiguous NCHW input than on a permuted view.
    pixels = images.permute(0, 3, 1, 2).contiguous().float()
    grid = _affine_grid(theta, height, width)
    resampled = F.grid_sample(
        pixels, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return _colour_jitter(resampled, spec, strength, generator)


def _check_batch(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise AugmentationError(
            f"expected a uint8 [N, H, W, 3] batch, got {images.dtype} {tuple(images.shape)}; "
            "pass images as the cache stores them (cache.load_images)."
        )


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _apply_symmetries(
    images: torch.Tensor, generator: torch.Generator, *, allow_transpose: bool
) -> torch.Tensor:
    """A uniform draw from the square's 8 symmetries, converted to float NCHW in [0, 1].

    Transpose and the two flips generate the dihedral group; as index operations they change
    no pixel value, unlike resampling. All images move in one ``index_select`` of uint8 pixels
    (measured 2x faster on CPU than chaining ``torch.where`` over flipped copies).
    """
    n, height, width, _ = images.shape
    coins = torch.rand(3, n, generator=generator, device=images.device) < 0.5
    code = coins[1].long() * 2 + coins[2].long()
    if allow_transpose:
        code = code + coins[0].long() * 4
    tables = _symmetry_tables(height, width, images.device)
    offsets = torch.arange(n, device=images.device) * (height * width)
    index = (tables[code] + offsets[:, None]).flatten()
    moved = images.reshape(n * height * width, 3).index_select(0, index)
    return to_float(moved.view(n, height, width, 3))


@functools.lru_cache(maxsize=8)
def _symmetry_tables(height: int, width: int, device: torch.device) -> torch.Tensor:
    """``[8, H*W]`` source pixel of each output pixel; code bits: 4 transpose, 2 h-flip, 1 v-flip.

    Codes with the transpose bit are only drawn for square images.
    """
    pixel = torch.arange(height * width, device=device).view(height, width)
    tables = []
    for code in range(8):
        table = pixel.T if code & 4 and height == width else pixel
        if code & 2:
            table = table.flip(1)
        if code & 1:
            table = table.flip(0)
        tables.append(table.reshape(-1))
    return torch.stack(tables)


def _geometry(
    spec: AugmentPolicy,
    strength: float,
    n: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    allow_quarter_turns: bool,
) -> torch.Tensor:
    """Per-sample 2x3 matrices mapping output to input coordinates (``F.affine_grid``'s theta).

    ``input = crop @ rotation_and_shear @ symmetry @ output`` in normalised [-1, 1] coordinates:
    the crop's half-widths and centre scale and shift, the rest turn and flip around the centre.
    """
    quarter_turns = (
        torch.randint(0, 4, (n,), generator=generator, device=device)
        if allow_quarter_turns
        else torch.zeros(n, dtype=torch.long, device=device)
    )
    mirror = torch.rand(n, generator=generator, device=device) < 0.5
    constants = _device_constants(device)
    cos_q = constants.quarter_turn_cos[quarter_turns]
    sin_q = constants.quarter_turn_sin[quarter_turns]
    mirror_sign = 1.0 - 2.0 * mirror.float()
    symmetry = _matrices(cos_q * mirror_sign, -sin_q, sin_q * mirror_sign, cos_q)

    angle = _uniform(n, -1, 1, generator, device) * math.radians(spec.rotation_deg * strength)
    shear = _uniform(n, -1, 1, generator, device) * math.radians(spec.shear_deg * strength)
    rotation_and_shear = _matrices(
        torch.cos(angle), -torch.sin(angle + shear), torch.sin(angle), torch.cos(angle + shear)
    )

    min_area = 1.0 - (1.0 - spec.min_crop_area) * strength
    area = _uniform(n, min_area, 1.0, generator, device)
    log_aspect = _uniform(n, -1, 1, generator, device) * math.log(spec.max_aspect) * strength
    half_w = torch.sqrt(area * torch.exp(log_aspect)).clamp(max=1.0)
    half_h = torch.sqrt(area * torch.exp(-log_aspect)).clamp(max=1.0)
    centre_x = _uniform(n, -1, 1, generator, device) * (1.0 - half_w)
    centre_y = _uniform(n, -1, 1, generator, device) * (1.0 - half_h)
    zeros = torch.zeros_like(half_w)
    crop = _matrices(half_w, zeros, zeros, half_h)

    linear = crop @ rotation_and_shear @ symmetry
    offset = torch.stack([centre_x, centre_y], dim=1).unsqueeze(-1)
    return torch.cat([linear, offset], dim=2)


def _matrices(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Stack per-sample entries into ``[[a, b], [c, d]]`` matrices of shape ``[N, 2, 2]``."""
    return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)


def _affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, ..., align_corners=False)`` computed separably.

    A grid point is ``theta[:, :, 0] * x + theta[:, :, 1] * y + theta[:, :, 2]``; summing a
    per-column and a per-row term costs one pass over the grid, where the library's batched
    matrix product over every pixel measured 7x slower on CPU (50 ms vs 7 ms, 64 x 224 px).
    """
    device = theta.device
    xs = (torch.arange(width, device=device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=theta.dtype) * 2 + 1) / height - 1
    per_column = xs.view(1, width, 1) * theta[:, None, :, 0]
    per_row = ys.view(1, height, 1) * theta[:, None, :, 1] + theta[:, None, :, 2]
    return per_row[:, :, None, :] + per_column[:, None, :, :]


def _colour_jitter(
    pixels: torch.Tensor, spec: AugmentPolicy, strength: float, generator: torch.Generator
) -> torch.Tensor:
    """Float NCHW in [0, 255] -> jittered, in [0, 1]: brightness, contrast, saturation, hue.

    Each step is ``x -> M x + b`` with ``b`` on the grey axis: brightness scales, contrast
    blends toward the image's mean luma (a linear function of the pixels), saturation blends
    toward each pixel's luma, and hue rotates the YIQ chroma plane. Composed into one matrix
    per image, with the 1/255 scaling folded in, one ``baddbmm`` applies all four in one pass.
    """
    n, _, height, width = pixels.shape
    device = pixels.device
    brightness = 1 + _uniform(n, -1, 1, generator, device) * spec.brightness * strength
    contrast = 1 + _uniform(n, -1, 1, generator, device) * spec.contrast * strength
    saturation = 1 + _uniform(n, -1, 1, generator, device) * spec.saturation * strength
    hue = _uniform(n, -1, 1, generator, device) * spec.hue * strength * 2 * math.pi

    flat = pixels.view(n, 3, height * width)
    constants = _device_constants(device)
    mean_luma = flat.mean(dim=2) @ constants.luma / 255.0
    eye = constants.eye.expand(n, 3, 3)
    grey = constants.grey_projection
    saturate = saturation.view(n, 1, 1) * eye + (1 - saturation).view(n, 1, 1) * grey
    matrix = _hue_rotation(hue) @ saturate
    offset = matrix @ ((1 - contrast) * brightness * mean_luma).view(n, 1, 1).expand(n, 3, 1)
    matrix = matrix * (contrast * brightness / 255.0).view(n, 1, 1)
    out = torch.baddbmm(offset, matrix, flat)
    return out.clamp_(0.0, 1.0).view(n, 3, height, width)


def _hue_rotation(hue: torch.Tensor) -> torch.Tensor:
    """RGB -> RGB matrices that rotate the YIQ chroma plane by ``hue`` radians, ``[N, 3, 3]``."""
    n = len(hue)
    constants = _device_constants(hue.device)
    to_yiq, from_yiq = constants.rgb_to_yiq, constants.yiq_to_rgb
    cos, sin = torch.cos(hue), torch.sin(hue)
    one, zero = torch.ones_like(hue), torch.zeros_like(hue)
    rotation = torch.stack(
        [
            torch.stack([one, zero, zero], -1),
            torch.stack([zero, cos, -sin], -1),
            torch.stack([zero, sin, cos], -1),
        ],
        -2,
    )
    return from_yiq.expand(n, 3, 3) @ rotation @ to_yiq


@dataclass(frozen=True)
class _DeviceConstants:
    """The fixed tensors every augmented batch uses, on one device."""

    quarter_turn_cos: torch.Tensor
    quarter_turn_sin: torch.Tensor
    luma: torch.Tensor
    eye: torch.Tensor
    grey_projection: torch.Tensor
    rgb_to_yiq: torch.Tensor
    yiq_to_rgb: torch.Tensor


@functools.lru_cache(maxsize=8)
def _device_constants(device: torch.device) -> _DeviceConstants:
    """Made once per device: building a tensor from host values on a GPU is a copy that waits
    for every kernel queued before it, which, once per batch, would stall each training step.

    Built outside inference mode, so that a first use in evaluation does not hand training
    tensors that autograd refuses. The quarter-turn tables are integers so that the turns stay
    exact (cos(pi/2) in floating point is not 0).
    """
    with torch.inference_mode(False):
        luma = torch.tensor(LUMA_WEIGHTS, device=device)
        return _DeviceConstants(
            quarter_turn_cos=torch.tensor([1.0, 0.0, -1.0, 0.0], device=device),
            quarter_turn_sin=torch.tensor([0.0, 1.0, 0.0, -1.0], device=device),
            luma=luma,
            eye=torch.eye(3, device=device),
            grey_projection=torch.ones(3, 1, device=device) @ luma.view(1, 3),
            rgb_to_yiq=_RGB_TO_YIQ.to(device=device, dtype=torch.float32),
            yiq_to_rgb=_YIQ_TO_RGB.to(device=device, dtype=torch.float32),
        )
