"""Backbones by name: any timm model, the paper's four under their own names, weights from a file.

The paper compares ResNet-50, EfficientNet-B4, Inception-V3 and DenseNet-121 (section 4.1); they
resolve to the timm architectures of the same names at the input sizes their original papers
trained at. Any other ``timm.list_models()`` name works too, at the size of its pretrained config.

A backbone name may end in ``@label`` (``resnet18@scratch``, ``efficientnet_lite0@imagenet``): the
same timm model under another identity, so one study can compare one architecture under two
initialisations. The part before ``@`` is the model; the whole name is the backbone everywhere
a backbone is named (arms, Optuna studies, run records, prediction files, the report).

``import timm`` costs about 4 s, so timm is imported inside the functions and its model list is
cached: ``resolve_backbone`` and ``check_image_size`` run when a study file is validated, long
before any model is built, and must stay cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cce_bench.errors import ModelError

if TYPE_CHECKING:
    import torch
    from torch import nn

#: ImageNet channel statistics (torchvision/timm ``IMAGENET_DEFAULT_MEAN``/``_STD``), used when a
#: model has no pretrained config of its own.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Sizes used for timm models whose pretrained config says nothing: 224 is ImageNet's standard
#: crop; 32 px is where a network with five stride-2 stages (ResNet, DenseNet, EfficientNet,
#: MobileNet) reaches a 1x1 feature map; DenseNet-121's last transition pooling fails below it.
DEFAULT_NATIVE_SIZE = 224
DEFAULT_MIN_SIZE = 32

_HUB_PROBE_TIMEOUT_S = 3.0

#: A variant label: it ends up in file names (``predictions/<backbone>__<arm>__seed<k>.npz``),
#: so only characters that are safe in a file name on Linux, macOS and Windows.
_VARIANT_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


@dataclass(frozen=True)
class BackboneInfo:
    """What is known about a backbone without building it.

    ``native_size`` is the input size it was designed and pretrained at; ``min_size`` the smallest
    square input its forward pass accepts; ``fixed_size`` is True for models (ViTs and the like)
    whose patch grid is fixed at construction, so they accept their native size only.
    """

    name: str
    timm_name: str
    native_size: int
    min_size: int
    fixed_size: bool = False


#: The paper's four backbones (section 4.1) at the input sizes of their original papers.
#: Inception-V3's stem (three valid 3x3 convolutions, one with stride 2, then two stride-2 3x3
#: max-pools) and its valid-padded stride-2 reductions leave no 3x3 window below 75 px: Keras
#: documents "width and height should be no smaller than 75", and timm's model fails at 74 px
#: (measured). EfficientNet-B4 uses 380 px as in Tan & Le 2019, not timm's 320 px training size.
PAPER_BACKBONES: dict[str, BackboneInfo] = {
    "resnet50": BackboneInfo("resnet50", "resnet50", 224, DEFAULT_MIN_SIZE),
    "efficientnet_b4": BackboneInfo("efficientnet_b4", "efficientnet_b4", 380, DEFAULT_MIN_SIZE),
    "inception_v3": BackboneInfo("inception_v3", "inception_v3", 299, 75),
    "densenet121": BackboneInfo("densenet121", "densenet121", 224, DEFAULT_MIN_SIZE),
}


def _alias_key(name: str) -> str:
    """ "ResNet-50", "resnet_50" and "resnet50" all name the paper's ResNet-50."""
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


_ALIASES: dict[str, str] = {_alias_key(key): key for key in PAPER_BACKBONES}


def _timm_model_names() -> frozenset[str]:
    """timm's names from the per-version catalogue, so that checking a name imports no timm."""
    from cce_bench.timm_catalogue import timm_catalogue

    return timm_catalogue().architectures


def _pretrained_cfg(timm_name: str):  # -> timm PretrainedCfg | None
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(timm_name)


def split_variant(name: str) -> tuple[str, str | None]:
    """``"resnet18@scratch"`` -> ``("resnet18", "scratch")``; a name without ``@`` has no label.

    Raises ``ModelError`` for an empty label or one with characters unsafe in a file name.
    """
    base, at, label = name.partition("@")
    if not at:
        return name, None
    if not _VARIANT_LABEL.fullmatch(label):
        raise ModelError(
            f"backbone {name!r}: the label after '@' must be 1-40 letters, digits, '.', '_' "
            f"or '-' starting with a letter or digit (it goes into file names), e.g. "
            f"{base or 'resnet18'}@scratch"
        )
    return base, label


@functools.cache
def resolve_backbone(name: str) -> BackboneInfo:
    """Map a backbone name to its timm architecture and input sizes, without building it.

    The paper's four accept their paper spelling too ("ResNet-50", "Inception-V3"). A timm name
    may carry a pretrained tag ("resnet50.a1_in1k") and a variant label ("resnet18@scratch",
    see the module docstring): a variant has its base model's architecture and sizes under its
    own ``name``. Unknown names raise ``ModelError`` naming the closest timm models.
    """
    base, label = split_variant(name)
    if label is not None:
        return dataclasses.replace(resolve_backbone(base), name=name)
    alias = _ALIASES.get(_alias_key(name))
    if alias is not None:
        return PAPER_BACKBONES[alias]
    architecture = name.split(".", 1)[0]
    if architecture not in _timm_model_names():
        candidates = sorted(_timm_model_names() | set(PAPER_BACKBONES))
        close = difflib.get_close_matches(architecture, candidates, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `timm.list_models()`"
        raise ModelError(
            f"unknown backbone {name!r}: not one of the paper's four "
            f"({', '.join(PAPER_BACKBONES)}) nor a timm model name; {hint}"
        )
    from cce_bench.timm_catalogue import timm_catalogue

    sizes = timm_catalogue().input_sizes(name)
    if sizes is None:
        return BackboneInfo(name, name, DEFAULT_NATIVE_SIZE, DEFAULT_MIN_SIZE)
    native, fixed = sizes.native, sizes.fixed
    minimum = sizes.minimum if sizes.minimum is not None else DEFAULT_MIN_SIZE
    return BackboneInfo(name, name, native, native if fixed else min(minimum, native), fixed)


def check_image_size(name: str, size: int) -> None:
    """Raise ``ModelError`` when ``size`` is too small (or, for fixed-size models, not native).

    The message names the sizes only, not where ``size`` came from (a study's
    ``data.image_size``, ``cce-bench train --image-size``, a ``RunSpec``): callers that know
    the source put it in front, as the study file check does with the key.
    """
    info = resolve_backbone(name)
    if info.fixed_size and size != info.native_size:
        raise ModelError(
            f"{info.name} takes {info.native_size} px images only, got {size} px; use "
            f"{info.native_size} px or pick another backbone"
        )
    if size < info.min_size:
        raise ModelError(
            f"{info.name} needs images of at least {info.min_size} px, got {size} px; raise "
            "the image size or pick another backbone"
        )


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Channel mean and std the backbone's pretrained weights expect (ImageNet's otherwise).

    Inception-V3's timm weights, for instance, expect inputs scaled to [-1, 1] (mean = std = 0.5).
    The statistics depend on the architecture only, never on where the weights come from: timm's
    hub weights, a weights file (assumed trained like timm's weights for that architecture;
    ImageNet's mean and std for almost all) and a random initialisation all get the same. For
    pretrained weights they are what the features were learnt on; for a random initialisation
    any fixed statistics work, and the same ones make ``x`` and ``x@scratch`` differ in their
    initialisation only.
    """
    cfg = _pretrained_cfg(resolve_backbone(name).timm_name)
    if cfg is None or not cfg.mean or not cfg.std:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def create_backbone(
    name: str, num_classes: int, *, pretrained: bool | str | os.PathLike = False
) -> nn.Module:
    """Build the backbone with a fresh ``num_classes`` head.

    ``pretrained`` is False (random initialisation), True (timm's default weights from the
    Hugging Face cache, downloaded when online) or a path to a weights file: safetensors, or a
    PyTorch state dict read with ``torch.load(weights_only=True)``. A classifier head whose shape
    differs from ``num_classes`` is re-initialised; every other tensor must match.
    """
    import timm

    info = resolve_backbone(name)
    if pretrained is True:
        weights = pretrained_weights_path(info.name)
        # timm drops the 1000-class ImageNet head itself when num_classes differs.
        model = timm.create_model(
            info.timm_name,
            pretrained=True,
            num_classes=num_classes,
            pretrained_cfg_overlay={"file": str(weights)},
        )
        if model.pretrained_cfg.get("num_classes") != num_classes:
            reset_head(model)
        return model
    model = timm.create_model(info.timm_name, pretrained=False, num_classes=num_classes)
    if pretrained is not False and not _load_weights_file(model, Path(pretrained), info):
        reset_head(model)
    return model


def reset_head(model: nn.Module) -> None:
    """Give the fresh classifier head of a pretrained backbone PyTorch's own initialisation.

    timm initialises a head for training from scratch on ImageNet's 1,000 classes.
    EfficientNet's, for one, is uniform in +-1/sqrt(classes): with 7 classes on ImageNet features
    its logits have a standard deviation of about 7 and the first loss is about 15 (ln 7 = 1.95
    is chance), which fine-tuning spends its first epochs undoing through the features it was
    meant to reuse. A zero head is no cure for this tool: every logit ties at the start, CCE's
    confused set is then decided by the first steps' class biases, and CCE fine-tuning stalled
    near always predicting the commonest class. ``nn.Linear``'s own initialisation (uniform in
    +-1/sqrt(features), what replacing a torchvision model's ``fc`` gives, the usual
    fine-tuning recipe) starts near chance with logits that differ from image to image.
    Measured, ``efficientnet_lite0`` from ImageNet weights on real HAM10000 at 64 px (lesion
    split, 2 epochs, lr 1.9e-3), validation balanced accuracy CE / CCE: timm's head 0.31 (lr
    1e-3) / 0.28, a zero head 0.49 / 0.22, this head 0.46 / 0.36. A head that is not one
    linear or 1x1 convolution layer is left as timm made it.
    """
    import torch.nn as nn

    head = model.get_classifier()
    if isinstance(head, nn.Linear | nn.Conv2d):
        head.reset_parameters()


def _hub_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment at call time (not import time)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def _hub_reachable() -> bool:
    """A 3 s TCP probe of the hub (or the mirror in HF_ENDPOINT): without it, a download on a
    machine with no network retries for about a minute before it fails."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    default_port = 80 if endpoint.scheme == "http" else 443
    address = (endpoint.hostname or "huggingface.co", endpoint.port or default_port)
    try:
        with socket.create_connection(address, timeout=_HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def pretrained_weights_path(name: str) -> Path:
    """Path of the backbone's default pretrained weights in the Hugging Face cache.

    Downloads them when they are not cached and the hub answers; offline it fails within
    seconds with ``ModelError`` saying how to provide weights. ``create_backbone(...,
    pretrained=True)`` calls it; a CLI may call it first to fail before loading data.
    """
    import huggingface_hub

    info = resolve_backbone(name)
    cfg = _pretrained_cfg(info.timm_name)
    if cfg is None or not cfg.hf_hub_id:
        raise ModelError(
            f"backbone {info.name} has no pretrained weights on the Hugging Face hub; "
            f"set pretrained = false or pretrained = 'path/to/weights.safetensors'"
        )
    filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
    filenames += ["model.safetensors", "pytorch_model.bin"]
    cache_dir = _hub_cache_dir()
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(
            cfg.hf_hub_id, filename, cache_dir=cache_dir
        )
        if isinstance(cached, str):
            return Path(cached)
    fix = (
        f"download them on a machine with network access "
        f"(`hf download {cfg.hf_hub_id} {filenames[0]}`) and copy its Hugging Face cache "
        f"to {cache_dir} (or set HF_HOME), or set pretrained to the path of a weights file"
    )
    if not _hub_reachable():
        raise ModelError(
            f"pretrained weights for {info.name} ({cfg.hf_hub_id}) are not in the Hugging Face "
            f"cache and the hub cannot be reached (offline); {fix}"
        )
    try:
        return Path(
            huggingface_hub.hf_hub_download(cfg.hf_hub_id, filenames[0], cache_dir=cache_dir)
        )
    except Exception as error:  # the hub raises many kinds: HTTP, timeout, gated repo
        raise ModelError(
            f"downloading pretrained weights for {info.name} ({cfg.hf_hub_id}) failed: "
            f"{error}; {fix}"
        ) from error


def read_weights_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a ``torch.save``'d state dict, without running pickles.

    A pickle is read with ``torch.load(weights_only=True)``, so a full pickled model (or any
    pickle that would run code) is refused, not executed: a weights file from the internet must
    not be able to run code on a cluster. Common
    checkpoint wrappers (``state_dict``, ``state_dict_ema``, ``model``) and DataParallel's
    ``module.`` prefix are unwrapped. Raises ``ModelError`` saying how to save the weights.
    A study file check calls it too, so that a bad file fails before Ray starts.
    """
    path = Path(path)
    import torch

    fix = (
        "save the weights with `torch.save(model.state_dict(), path)` or "
        "`safetensors.torch.save_file(model.state_dict(), path)`"
    )
    if not path.is_file():
        raise ModelError(f"pretrained weights file {path} does not exist; check the path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling, safetensors header and zip errors differ by version
        raise ModelError(
            f"{path} is not a state dict that loads safely ({type(error).__name__}): a pickled "
            f"full model is refused (weights_only=True) and other formats are not read; {fix}"
        ) from error
    for key in ("state_dict_ema", "state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ModelError(
            f"{path} holds a {type(state).__name__}, not a state dict of tensors; {fix}"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a weights file, the name under which the report cites the weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights_fit(name: str, path: str | os.PathLike[str]) -> None:
    """Raise ``ModelError`` unless the file's tensors fit backbone ``name``, head aside.

    The check ``load_study`` runs for every weights file: it reads the file and builds the model
    without weights (a second or two for the paper's backbones), so that a file saved from
    another architecture is refused before any work starts instead of in every run's worker.
    """
    import timm

    info = resolve_backbone(name)
    state = read_weights_file(path)
    model = timm.create_model(info.timm_name, pretrained=False)
    _check_fit(model, state, Path(path), info)


def _head_keys(model: nn.Module):  # -> Callable[[str], bool]
    """Whether a state-dict key belongs to the classifier head (timm's pretrained cfg names it),
    which is replaced by a fresh ``num_classes`` head and so need not match."""
    head = model.pretrained_cfg.get("classifier") or ""
    heads = (head,) if isinstance(head, str) else tuple(head)

    def is_head(key: str) -> bool:
        return any(h and (key == h or key.startswith(f"{h}.")) for h in heads)

    return is_head


def _check_fit(model: nn.Module, state: dict, path: Path, info: BackboneInfo) -> None:
    """Raise ``ModelError`` naming a few missing, unexpected and reshaped tensors, head aside."""
    is_head = _head_keys(model)
    own = {key: value for key, value in model.state_dict().items() if not is_head(key)}
    theirs = {key: value for key, value in state.items() if not is_head(key)}
    missing = [key for key in own if key not in theirs]
    unexpected = sorted(key for key in theirs if key not in own)  # file order varies by format
    reshaped = [
        f"{key} {tuple(theirs[key].shape)} vs {tuple(own[key].shape)}"
        for key in own
        if key in theirs and theirs[key].shape != own[key].shape
    ]
    if not (missing or unexpected or reshaped):
        return
    problems = [
        f"{len(keys)} {kind} (e.g. {', '.join(keys[:3])})"
        for kind, keys in (
            ("tensors missing", missing),
            ("unexpected", unexpected),
            ("of another shape, file vs model", reshaped),
        )
        if keys
    ]
    raise ModelError(
        f"{path} does not fit backbone {info.name}: {'; '.join(problems)}; "
        f"use weights saved from timm's {info.timm_name}"
    )


def _load_weights_file(model: nn.Module, path: Path, info: BackboneInfo) -> bool:
    """Load ``path`` into ``model``, keeping the fresh head where the class count differs;
    whether the file's head was loaded too."""
    state = read_weights_file(path)
    _check_fit(model, state, path, info)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    is_head = _head_keys(model)
    return any(is_head(key) for key in fitting)
