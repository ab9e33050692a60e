"""The augmentation policies by name, as study files give them, without torch.

A study file's ``train.augment_policy`` is checked against these names before anything heavy is
imported (torch takes about 2 s), so the policies are plain data here and
:mod:`cce_bench.data.augment`, which applies them with torch, re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cce_bench.errors import UnknownNameError, did_you_mean

DEFAULT_POLICY = "standard"


@dataclass(frozen=True)
class AugmentPolicy:
    """The largest perturbation of each kind, reached at strength 1 (strength scales linearly).

    ``min_crop_area`` is the smallest crop area fraction at strength 1 (0.08 is torchvision's
    ImageNet default; lesions fill much of a dermoscopic frame, so ``standard`` stops at 0.35 to
    keep the lesion in view). ``max_aspect`` bounds the crop's aspect ratio (4/3 as torchvision).
    Colour amplitudes are fractions (brightness 0.2 means a factor in [0.8, 1.2]); ``hue`` is a
    fraction of a full turn of the chroma plane.
    """

    name: str
    symmetries: bool
    resample: bool
    min_crop_area: float = 1.0
    max_aspect: float = 1.0
    rotation_deg: float = 0.0
    shear_deg: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


POLICIES: dict[str, AugmentPolicy] = {
    policy.name: policy
    for policy in (
        AugmentPolicy("none", symmetries=False, resample=False),
        AugmentPolicy("flips", symmetries=True, resample=False),
        AugmentPolicy(
            "standard",
            symmetries=True,
            resample=True,
            min_crop_area=0.35,
            max_aspect=4 / 3,
            rotation_deg=15.0,
            shear_deg=5.0,
            brightness=0.2,
            contrast=0.2,
            saturation=0.2,
            hue=0.02,
        ),
        AugmentPolicy(
            "strong",
            symmetries=True,
            resample=True,
            min_crop_area=0.1,
            max_aspect=4 / 3,
            rotation_deg=45.0,
            shear_deg=10.0,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.06,
        ),
    )
}


def available_policies() -> list[str]:
    """Names accepted by ``augment_batch(policy=...)``, mildest first."""
    return list(POLICIES)


def get_policy(name: str) -> AugmentPolicy:
    """The policy called ``name``; an unknown name suggests the closest valid one."""
    if name not in POLICIES:
        hint = did_you_mean(name, POLICIES)
        raise UnknownNameError(
            f"unknown augmentation policy {name!r}; choose one of {available_policies()}.{hint}"
        )
    return POLICIES[name]
