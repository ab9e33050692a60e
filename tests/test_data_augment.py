"""Batched augmentation: shapes, determinism, per-sample parameters, and what strength scales."""

import pytest
import torch

from cce_bench.data.augment import (
    AugmentationError,
    _geometry,
    augment_batch,
    available_policies,
    get_policy,
    normalize,
    to_float,
)
from cce_bench.errors import UnknownNameError

torch.set_num_threads(1)


def _batch(n: int = 16, size: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=generator, dtype=torch.uint8)


def _symmetries(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of a square CHW image."""
    out = []
    for base in (image, image.transpose(-1, -2)):
        for flipped in (base, base.flip(-1), base.flip(-2), base.flip(-1).flip(-2)):
            out.append(flipped)
    return out


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_available_policies_are_the_documented_four():
    assert available_policies() == ["none", "flips", "standard", "strong"]


def test_policy_none_is_exactly_the_float_conversion():
    images = _batch()
    out = augment_batch(images, policy="none", strength=1.0, generator=_gen())
    assert torch.equal(out, images.permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize("policy", ["none", "flips", "standard", "strong"])
def test_output_is_float_nchw_in_unit_interval(policy):
    out = augment_batch(_batch(), policy=policy, strength=0.7, generator=_gen())
    assert out.shape == (16, 3, 12, 12)
    assert out.dtype == torch.float32
    assert out.min() >= 0.0
    assert out.max() <= 1.0


@pytest.mark.parametrize("policy", ["flips", "standard", "strong"])
def test_same_generator_state_gives_the_same_batch(policy):
    images = _batch()
    first = augment_batch(images, policy=policy, strength=0.5, generator=_gen(3))
    second = augment_batch(images, policy=policy, strength=0.5, generator=_gen(3))
    assert torch.equal(first, second)


def test_each_image_draws_its_own_parameters():
    identical = _batch(n=1).expand(8, -1, -1, -1).contiguous()
    out = augment_batch(identical, policy="standard", strength=0.8, generator=_gen())
    assert not torch.allclose(out[0], out[1])
    assert len({tuple(sample.flatten()[:20].tolist()) for sample in out}) == 8


def test_flips_policy_only_moves_pixels_by_a_square_symmetry():
    images = _batch(n=32)
    out = augment_batch(images, policy="flips", strength=0.0, generator=_gen())
    for source, augmented in zip(to_float(images), out, strict=True):
        assert any(torch.equal(augmented, candidate) for candidate in _symmetries(source))


def test_flips_policy_draws_all_eight_symmetries():
    image = _batch(n=1)
    out = augment_batch(image.expand(200, -1, -1, -1), policy="flips", strength=0, generator=_gen())
    candidates = _symmetries(to_float(image)[0])
    seen = {next(i for i, c in enumerate(candidates) if torch.equal(o, c)) for o in out}
    assert seen == set(range(8))


def test_standard_at_strength_zero_is_a_symmetry_up_to_resampling_roundoff():
    images = _batch(n=8)
    out = augment_batch(images, policy="standard", strength=0.0, generator=_gen())
    for source, augmented in zip(to_float(images), out, strict=True):
        error = min(float((augmented - c).abs().max()) for c in _symmetries(source))
        assert error < 1e-4


def test_non_square_batch_keeps_its_shape():
    images = torch.zeros(4, 10, 14, 3, dtype=torch.uint8)
    for policy in ("flips", "standard"):
        assert augment_batch(images, policy=policy, strength=1, generator=_gen()).shape == (
            4,
            3,
            10,
            14,
        )


def test_crop_area_range_widens_with_strength():
    spec = get_policy("standard")

    def smallest_area(strength: float) -> float:
        theta = _geometry(
            spec, strength, 2000, _gen(), torch.device("cpu"), allow_quarter_turns=True
        )
        crop_area = torch.linalg.det(theta[:, :, :2]).abs()
        return float(crop_area.min())

    assert smallest_area(0.0) == pytest.approx(1.0, abs=1e-5)
    assert smallest_area(1.0) < smallest_area(0.5) < smallest_area(0.2) < 1.0
    assert smallest_area(1.0) >= spec.min_crop_area * 0.95


def test_colour_change_grows_with_strength():
    flat = torch.full((64, 8, 8, 3), 128, dtype=torch.uint8)

    def spread(strength: float) -> float:
        out = augment_batch(flat, policy="standard", strength=strength, generator=_gen())
        return float(out.mean(dim=(2, 3)).std(dim=0).mean())

    assert spread(0.0) < 1e-5
    assert spread(0.2) < spread(1.0)


def test_unknown_policy_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="standard"):
        augment_batch(_batch(), policy="standrad", strength=0.5, generator=_gen())


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_outside_unit_interval_is_rejected(strength):
    with pytest.raises(AugmentationError, match=r"\[0, 1\]"):
        augment_batch(_batch(), policy="standard", strength=strength, generator=_gen())


def test_float_input_is_rejected_with_the_expected_layout():
    with pytest.raises(AugmentationError, match="uint8"):
        to_float(torch.zeros(2, 8, 8, 3))


def test_normalize_subtracts_mean_and_divides_by_std():
    x = torch.full((2, 3, 4, 4), 0.5)
    out = normalize(x, (0.5, 0.25, 0.0), (1.0, 0.25, 0.5))
    assert torch.allclose(out[:, 0], torch.zeros(2, 4, 4))
    assert torch.allclose(out[:, 1], torch.ones(2, 4, 4))
    assert torch.allclose(out[:, 2], torch.ones(2, 4, 4))
