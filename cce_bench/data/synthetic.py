"""A procedural skin-lesion generator: HAM10000's seven classes, with its confusions built in.

Why: the quickstart and the tests need data that installs with the package, trains in seconds
on a laptop, and still shows what the paper is about, classes that are confused in pairs
(NV<->MEL, AKIEC<->BCC, BKL<->MEL, section 1 of the paper). Each lesion is a blob on skin whose
colour, variegation, border irregularity, texture and size come from its class; DF adds a pale
centre (the "central white patch" of dermatofibroma), BCC thin red vessel lines (arborising
vessels), VASC a red-purple colour. Within a confusable cluster ({nv, mel, bkl} and
{akiec, bcc}) classes differ only in those subtle cues, and ``difficulty`` pulls them toward
the cluster's mean: 0 keeps the designed gap, 1 leaves a tenth of it.

Lesions get 1 + Poisson(0.6) images each (HAM10000 has 1.34 per lesion; a little more makes
grouped splits matter), which differ by position, turn, scale, skin tone, lighting and noise.

Everything is vectorised over a chunk of images with numpy (smooth noise fields are bilinear
upsamplings written as two matrix products; border harmonics are powers of a complex unit
vector instead of trigonometric calls): about 3,300 images per CPU-second at 64 px on one
thread (measured on the project's 2-core machine; the target is 2,000). Output depends only
on the arguments: randomness comes from one ``numpy`` generator per fixed-size chunk, spawned
from ``seed``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cce_bench.data import SYNTHETIC_DIFFICULTY
from cce_bench.data.labeled import HAM10000_CLASS_COUNTS, HAM10000_CLASSES, LabeledImages
from cce_bench.errors import DataError, UnknownNameError, did_you_mean

_CHUNK = 256
_MEAN_EXTRA_IMAGES_PER_LESION = 0.6
_MAX_IMAGES_PER_LESION = 6

# Lesion traits at difficulty 0, per class: base and secondary RGB, variegation (share of the
# secondary colour), radius (fraction of the half-width), border irregularity (harmonic
# amplitude), texture amplitude, pale-centre amount, vessel amount. Colours follow dermoscopy
# atlases loosely: NV even brown, MEL darker with blue-grey veil, BKL tan and waxy, AKIEC red
# and scaly, BCC pearly pink with vessels, DF brown ring around a pale centre, VASC red-purple.
_TRAITS: dict[str, dict[str, object]] = {
    "akiec": dict(base=(190, 112, 100), second=(215, 175, 155), varieg=0.35, radius=0.50,
                  irregular=0.16, texture=0.22, pale=0.0, vessels=0.15),
    "bcc": dict(base=(200, 140, 138), second=(232, 205, 200), varieg=0.20, radius=0.45,
                irregular=0.08, texture=0.08, pale=0.0, vessels=0.60),
    "bkl": dict(base=(158, 118, 84), second=(122, 92, 62), varieg=0.30, radius=0.56,
                irregular=0.13, texture=0.28, pale=0.0, vessels=0.0),
    "df": dict(base=(150, 100, 80), second=(232, 212, 196), varieg=0.10, radius=0.36,
               irregular=0.05, texture=0.05, pale=0.75, vessels=0.0),
    "mel": dict(base=(92, 58, 52), second=(70, 78, 110), varieg=0.60, radius=0.62,
                irregular=0.24, texture=0.12, pale=0.0, vessels=0.0),
    "nv": dict(base=(138, 90, 64), second=(108, 70, 50), varieg=0.15, radius=0.45,
               irregular=0.05, texture=0.05, pale=0.0, vessels=0.0),
    "vasc": dict(base=(165, 42, 72), second=(105, 30, 62), varieg=0.40, radius=0.36,
                 irregular=0.10, texture=0.10, pale=0.0, vessels=0.0),
}  # fmt: skip

#: Classes whose traits are pulled toward a shared mean by ``difficulty``.
CONFUSABLE_CLUSTERS: tuple[tuple[str, ...], ...] = (("nv", "mel", "bkl"), ("akiec", "bcc"))

# Spread of each trait between lesions of one class (same units as _TRAITS).
_LESION_SPREAD = dict(colour=14.0, varieg=0.10, radius=0.08, irregular=0.04, texture=0.06)
_VESSEL_RGB = np.array([178, 38, 52], dtype=np.float32)


class SyntheticConfigError(DataError):
    """The synthetic generator was asked for something it cannot make."""


def generate_synthetic(
    n_images: int,
    image_size: int,
    *,
    seed: int = 0,
    difficulty: float = SYNTHETIC_DIFFICULTY,
    class_proportions: Mapping[str, float] | Sequence[float] | None = None,
) -> LabeledImages:
    """``n_images`` synthetic lesion images, ``image_size`` px square, HAM10000-like classes.

    ``class_proportions`` (class name -> weight, or seven weights in ``HAM10000_CLASSES`` order)
    defaults to HAM10000's counts. Every class gets at least one image when ``n_images >= 7``.
    Example: ``generate_synthetic(2000, 64, seed=0).images.shape == (2000, 64, 64, 3)``.
    """
    _check_arguments(n_images, image_size, difficulty)
    proportions = _proportions(class_proportions)
    rng = np.random.default_rng(seed)
    labels, lesions = _assign_lesions(n_images, proportions, rng)
    traits = _lesion_traits(labels, lesions, difficulty, rng)
    images = np.empty((n_images, image_size, image_size, 3), dtype=np.uint8)
    chunk_seeds = np.random.SeedSequence(seed).spawn(max(1, -(-n_images // _CHUNK)))
    for chunk, start in enumerate(range(0, n_images, _CHUNK)):
        stop = min(start + _CHUNK, n_images)
        chunk_traits = {name: value[start:stop] for name, value in traits.items()}
        images[start:stop] = _render(
            chunk_traits, image_size, np.random.default_rng(chunk_seeds[chunk])
        )
    return LabeledImages(
        source="synthetic",
        image_ids=np.array([f"SYN_{i:07d}" for i in range(n_images)]),
        labels=labels.astype(np.int64),
        group_ids=np.array([f"SYNL_{lesion:07d}" for lesion in lesions]),
        images=images,
    )


def write_synthetic_dataset(
    out_dir: str | Path,
    n_images: int,
    image_size: int,
    *,
    seed: int = 0,
    difficulty: float = SYNTHETIC_DIFFICULTY,
) -> Path:
    """Write a synthetic set in HAM10000's own layout and return the folder.

    The layout is the original one (``HAM10000_metadata.csv`` with its 7 columns beside
    ``HAM10000_images_part_1/*.jpg``), so loading it runs the real ``ham10000`` reader. The
    folder is assembled in a temporary sibling and renamed into place, so a failure leaves
    nothing behind; an existing non-empty ``out_dir`` is refused rather than mixed into.
    """
    from PIL import Image

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SyntheticConfigError(
            f"{out}: exists and is not an empty folder; choose a new OUT_DIR or delete it."
        )
    labeled = generate_synthetic(n_images, image_size, seed=seed, difficulty=difficulty)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        image_dir = staging / "HAM10000_images_part_1"
        image_dir.mkdir()
        for image_id, image in zip(labeled.image_ids, labeled.images, strict=True):
            Image.fromarray(image).save(image_dir / f"{image_id}.jpg", quality=95)
        _metadata_frame(labeled, seed).to_csv(staging / "HAM10000_metadata.csv", index=False)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _check_arguments(n_images: int, image_size: int, difficulty: float) -> None:
    if n_images < 1:
        raise SyntheticConfigError(f"n_images={n_images}: ask for at least 1 image.")
    if image_size < 8:
        raise SyntheticConfigError(f"image_size={image_size}: use at least 8 px.")
    if not 0.0 <= difficulty <= 1.0:
        raise SyntheticConfigError(f"difficulty={difficulty}: choose a value in [0, 1].")


def _proportions(class_proportions: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
    """Class weights in ``HAM10000_CLASSES`` order, normalised to sum to 1."""
    if class_proportions is None:
        weights = np.array([HAM10000_CLASS_COUNTS[name] for name in HAM10000_CLASSES], float)
    elif isinstance(class_proportions, Mapping):
        for name in class_proportions:
            if name not in HAM10000_CLASSES:
                hint = did_you_mean(name, HAM10000_CLASSES)
                raise UnknownNameError(
                    f"class_proportions: unknown class {name!r}; use {list(HAM10000_CLASSES)}."
                    + hint
                )
        weights = np.array([float(class_proportions.get(n, 0.0)) for n in HAM10000_CLASSES])
    else:
        weights = np.asarray(class_proportions, dtype=float)
        if weights.shape != (len(HAM10000_CLASSES),):
            raise SyntheticConfigError(
                f"class_proportions: give {len(HAM10000_CLASSES)} weights in the order "
                f"{list(HAM10000_CLASSES)}, got {weights.size}."
            )
    if (weights < 0).any() or weights.sum() <= 0:
        raise SyntheticConfigError("class_proportions: weights must be >= 0 and not all 0.")
    return weights / weights.sum()


def _class_counts(n_images: int, proportions: np.ndarray) -> np.ndarray:
    """Largest-remainder apportionment, then at least one image for every class with weight."""
    exact = proportions * n_images
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_images - counts.sum()]] += 1
    for cls in np.flatnonzero((counts == 0) & (proportions > 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[cls] += 1
    return counts


def _assign_lesions(
    n_images: int, proportions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Label and lesion number of every image, lesions in random order."""
    labels, lesion_sizes = [], []
    for cls, count in enumerate(_class_counts(n_images, proportions)):
        remaining = int(count)
        while remaining > 0:
            size = 1 + rng.poisson(_MEAN_EXTRA_IMAGES_PER_LESION)
            size = min(size, _MAX_IMAGES_PER_LESION, remaining)
            labels.append(cls)
            lesion_sizes.append(size)
            remaining -= size
    order = rng.permutation(len(labels))
    lesion_labels = np.asarray(labels)[order]
    sizes = np.asarray(lesion_sizes)[order]
    return np.repeat(lesion_labels, sizes), np.repeat(np.arange(len(sizes)), sizes)


def _class_trait_table(difficulty: float) -> dict[str, np.ndarray]:
    """Per-class trait arrays (rows in ``HAM10000_CLASSES`` order) after the difficulty pull."""
    table = {
        name: np.array([np.asarray(_TRAITS[c][name], dtype=np.float32) for c in HAM10000_CLASSES])
        for name in _TRAITS["nv"]
    }
    keep = 1.0 - 0.9 * difficulty
    for cluster in CONFUSABLE_CLUSTERS:
        rows = [HAM10000_CLASSES.index(c) for c in cluster]
        for values in table.values():
            centre = values[rows].mean(axis=0)
            values[rows] = centre + keep * (values[rows] - centre)
    return table


def _lesion_traits(
    labels: np.ndarray, lesions: np.ndarray, difficulty: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-image traits: the class's, plus a per-lesion draw shared by the lesion's images."""
    table = _class_trait_table(difficulty)
    n_lesions = int(lesions.max()) + 1
    lesion_class = np.zeros(n_lesions, dtype=int)
    lesion_class[lesions] = labels
    spread = _LESION_SPREAD
    per_lesion = {
        "base": table["base"][lesion_class] + _colour_jitter(rng, n_lesions),
        "second": table["second"][lesion_class] + _colour_jitter(rng, n_lesions),
        "varieg": table["varieg"][lesion_class] + rng.normal(0, spread["varieg"], n_lesions),
        "radius": table["radius"][lesion_class] + rng.normal(0, spread["radius"], n_lesions),
        "irregular": table["irregular"][lesion_class]
        + rng.normal(0, spread["irregular"], n_lesions),
        "texture": table["texture"][lesion_class] + rng.normal(0, spread["texture"], n_lesions),
        "pale": table["pale"][lesion_class],
        "vessels": table["vessels"][lesion_class],
        # Border shape: amplitudes and phases of harmonics 2..5, fixed per lesion.
        "harmonics": rng.normal(0, 1, (n_lesions, 4))
        * np.exp(2j * np.pi * rng.random((n_lesions, 4))),
    }
    per_lesion["radius"] = np.clip(per_lesion["radius"], 0.2, 0.85)
    for name in ("varieg", "irregular", "texture"):
        per_lesion[name] = np.clip(per_lesion[name], 0.0, 1.0)
    return {name: value[lesions].astype(np.float32 if name != "harmonics" else np.complex64)
            for name, value in per_lesion.items()}  # fmt: skip


def _colour_jitter(
    rng: np.random.Generator, n: int, spread: float = _LESION_SPREAD["colour"]
) -> np.ndarray:
    """Colour spread between lesions or skins: mostly lighter/darker, a little hue (no green)."""
    shade = rng.normal(0, spread, (n, 1))
    tint = rng.normal(0, spread / 3, (n, 3))
    return shade + tint


def _smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """Value noise in about [-1, 1]: a random ``cells x cells`` grid bilinearly upsampled.

    Written as ``U @ grid @ U.T`` with a fixed interpolation matrix ``U``, so a batch of noise
    fields costs two small matrix products instead of per-pixel interpolation.
    """
    position = np.linspace(0, cells - 1, size, dtype=np.float32)
    low = np.minimum(position.astype(int), cells - 2)
    weight = position - low
    upsample = np.zeros((size, cells), dtype=np.float32)
    upsample[np.arange(size), low] = 1 - weight
    upsample[np.arange(size), low + 1] = weight
    grid = rng.uniform(-1, 1, (n, cells, cells)).astype(np.float32)
    return upsample @ grid @ upsample.T


def _render(traits: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one chunk of lesions on skin, uint8 ``[n, size, size, 3]``."""
    n = len(traits["radius"])
    axis = (np.arange(size, dtype=np.float32) * 2 + 1) / size - 1
    radius = traits["radius"] * rng.uniform(0.9, 1.1, n).astype(np.float32)
    centre = rng.uniform(-0.12, 0.12, (n, 2)).astype(np.float32)
    dx = axis[None, None, :] - centre[:, 0, None, None]
    dy = axis[None, :, None] - centre[:, 1, None, None]
    distance = np.sqrt(dx * dx + dy * dy) + 1e-6
    alpha = _lesion_alpha(traits, radius, dx, dy, distance, rng)[..., None]
    relative = distance / radius[:, None, None]
    lesion = _lesion_colour(traits, relative, rng)

    skin_tone = (np.array([226, 176, 160]) + _colour_jitter(rng, n, spread=10.0)).astype(np.float32)
    image = skin_tone[:, None, None] + alpha * (lesion - skin_tone[:, None, None])
    light = rng.uniform(0.85, 1.1, n).astype(np.float32)[:, None, None]
    vignette = light * (1 - 0.18 * (axis[None, :, None] ** 2 + axis[None, None, :] ** 2))
    image *= vignette[..., None]
    # Sensor noise, uniform with standard deviation 4 (a Gaussian draw took 40% of the time).
    image += (rng.random(image.shape, dtype=np.float32) - 0.5) * (4.0 * np.sqrt(12.0))
    return np.clip(image, 0, 255).astype(np.uint8)


def _lesion_alpha(
    traits: dict[str, np.ndarray],
    radius: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    distance: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Lesion coverage in [0, 1] with a soft edge of about 1.5 px.

    The border is ``r(angle) = R (1 + irregularity / 2 * Re(sum_k h_k z^k))``, ``k = 2..5``,
    where ``z`` is the unit vector towards the pixel times a random turn per image: powers of
    ``z`` give the harmonics without calling cos/sin per pixel.
    """
    size = distance.shape[-1]
    turn = np.exp(2j * np.pi * rng.random(len(radius))).astype(np.complex64)
    z = (dx + 1j * dy) / distance * turn[:, None, None]
    power, wobble = z * z, np.zeros_like(distance)
    for k in range(4):
        wobble += (traits["harmonics"][:, k, None, None] * power).real
        power = power * z
    border = radius[:, None, None] * (1 + 0.5 * traits["irregular"][:, None, None] * wobble)
    return np.clip((border - distance) * (size / 3.0) + 0.5, 0.0, 1.0)


def _lesion_colour(
    traits: dict[str, np.ndarray], relative: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Lesion RGB per pixel: variegated base colour, texture, then pale centre and vessels.

    ``relative`` is the distance from the lesion centre in lesion radii. The pale centre and
    vessels are drawn only on the images whose class has them (a third of the render time
    otherwise went to exponentials multiplied by zero).
    """
    n, size = relative.shape[0], relative.shape[-1]
    varieg_field = np.clip(0.5 + 0.9 * _smooth_noise(rng, n, size, 5), 0, 1)
    mix = np.clip(varieg_field * 2 * traits["varieg"][:, None, None], 0, 1)[..., None]
    base, second = traits["base"][:, None, None], traits["second"][:, None, None]
    lesion = base + mix * (second - base)
    texture = _smooth_noise(rng, n, size, max(4, size // 4))
    lesion *= (1 + traits["texture"][:, None, None] * texture)[..., None]

    pale = np.flatnonzero(traits["pale"] > 0)
    if pale.size:
        amount = traits["pale"][pale, None, None] * np.exp(-4.0 * relative[pale] ** 2)
        lesion[pale] += amount[..., None] * (second[pale] - lesion[pale])
    vascular = np.flatnonzero(traits["vessels"] > 0)
    if vascular.size:
        lines = np.exp(-((_smooth_noise(rng, vascular.size, size, 7) * 9.0) ** 2))
        amount = traits["vessels"][vascular, None, None] * lines * (relative[vascular] < 0.9)
        lesion[vascular] += amount[..., None] * (_VESSEL_RGB - lesion[vascular])
    return lesion


def _metadata_frame(labeled: LabeledImages, seed: int):
    """HAM10000's original 7 metadata columns for a synthetic set (float age, as the original)."""
    import pandas as pd

    rng = np.random.default_rng([seed, 1])
    n_lesions = len(np.unique(labeled.group_ids))
    _, lesion_index = np.unique(labeled.group_ids, return_inverse=True)
    age = (rng.integers(1, 18, n_lesions) * 5.0)[lesion_index]
    sex = rng.choice(["male", "female"], n_lesions)[lesion_index]
    site = rng.choice(["back", "trunk", "lower extremity", "face", "abdomen"], n_lesions)
    return pd.DataFrame(
        {
            "lesion_id": labeled.group_ids,
            "image_id": labeled.image_ids,
            "dx": [labeled.class_names[label] for label in labeled.labels],
            "dx_type": "synthetic",
            "age": age,
            "sex": sex,
            "localization": site[lesion_index],
        }
    )
