"""Specification of cce_bench.losses: CE, the paper's CCE (eq. 2-3), the baselines, the registry."""

import doctest
import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cce_bench import loss_registry, losses
from cce_bench.errors import LossInputError, UnknownNameError
from cce_bench.losses import (
    CCELoss,
    CELoss,
    FocalLoss,
    LabelSmoothingLoss,
    LossParameterError,
    available_losses,
    cce_loss,
    ce_loss,
    focal_loss,
    get_loss,
    label_smoothing_loss,
    register_loss,
    tunable_parameters,
)

LOSS_FUNCTIONS = [ce_loss, cce_loss, focal_loss, label_smoothing_loss]
FLOAT32_EPS = torch.finfo(torch.float32).eps
TAUS = [-math.inf, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]


def float32_tolerance(logits: torch.Tensor, *, ulps: int = 4) -> dict[str, float]:
    """``rtol`` and ``atol`` for a float32 loss computed from ``logits``.

    A loss sums over a row of C logits. Vectorised kernels sum in a different order on each
    instruction set (the C = 100 CE differed by 1.9e-6 between AVX2 and AVX-512 machines), and
    the float32 rounding bound of such a sum grows with C and with the logits' magnitude, not
    with the CPU. A few ulps per term keeps the check tight enough to catch a wrong term, which
    moves a loss by far more than this.
    """
    per_term = ulps * logits.shape[-1] * FLOAT32_EPS
    magnitude = max(1.0, float(logits.abs().max()))
    return {"rtol": per_term, "atol": per_term * magnitude}


def naive_cce(logits: torch.Tensor, target: torch.Tensor, tau: float) -> list[float]:
    """Eq. 2-3 one sample at a time in float64, plus the documented hardest-negative rule."""
    losses_per_sample = []
    for row, y in zip(logits.double().tolist(), target.tolist(), strict=True):
        negatives = [value for j, value in enumerate(row) if j != y]
        if tau == -math.inf:
            threshold = -math.inf
        else:
            threshold = statistics.fmean(negatives) + tau * statistics.pstdev(negatives)
        hardest = max(negatives)
        confused = [value for value in negatives if value > threshold or value == hardest]
        kept = [row[y], *confused]
        top = max(kept)
        log_sum = top + math.log(math.fsum(math.exp(value - top) for value in kept))
        losses_per_sample.append(log_sum - row[y])
    return losses_per_sample


@st.composite
def grid_batches(draw):
    """Logits k/4 * 2^e on a coarse grid: many ties and negatives equal to their mean, exact
    float32 sums, magnitudes up to 1.6e4."""
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 9))
    scale = 2.0 ** draw(st.sampled_from([0, 3, 13]))
    steps = draw(st.lists(st.integers(-8, 8), min_size=n * c, max_size=n * c))
    logits = torch.tensor(steps, dtype=torch.float32).reshape(n, c) / 4 * scale
    target = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return logits, target


def random_batch(n: int, c: int, *, scale: float = 3.0, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator) * scale
    return logits, torch.randint(0, c, (n,), generator=generator)


# --------------------------------------------------------------------------- CCE values


@settings(max_examples=150, deadline=None)
@given(batch=grid_batches(), tau=st.sampled_from(TAUS))
def test_cce_equals_naive_per_sample_reference(batch, tau):
    logits, target = batch
    expected = torch.tensor(naive_cce(logits, target, tau), dtype=torch.float64)
    actual = cce_loss(logits, target, tau=tau, reduction="none")
    torch.testing.assert_close(actual.double(), expected, **float32_tolerance(logits))


@pytest.mark.parametrize("c", [2, 7, 100])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cce_equals_reference_on_continuous_logits(c, scale):
    logits, target = random_batch(64, c, scale=scale, seed=c)
    for tau in TAUS:
        expected = torch.tensor(naive_cce(logits, target, tau), dtype=torch.float64)
        actual = cce_loss(logits, target, tau=tau, reduction="none")
        torch.testing.assert_close(actual.double(), expected, **float32_tolerance(logits))


@settings(max_examples=60, deadline=None)
@given(batch=grid_batches(), tau=st.sampled_from(TAUS))
def test_cce_never_exceeds_ce(batch, tau):
    logits, target = batch
    cce = cce_loss(logits, target, tau=tau, reduction="none")
    ce = ce_loss(logits, target, reduction="none")
    tolerance = float32_tolerance(logits)
    assert bool((cce <= ce + tolerance["atol"] + tolerance["rtol"] * ce.abs()).all())


def test_paper_example_keeps_only_negatives_above_their_mean():
    logits = torch.tensor([[2.0, 1.5, -1.0, -3.0]])  # negatives' mean -0.83: H = {1}
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.5)))
    assert cce_loss(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


def test_a_negative_equal_to_the_mean_is_not_confused():
    logits = torch.tensor([[3.0, 0.0, 1.0, 2.0]])  # negatives' mean is 1: H = {3}, strictly
    expected = math.log(math.exp(3.0) + math.exp(2.0)) - 3.0
    assert cce_loss(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("c", [2, 7, 100])
def test_tau_minus_inf_equals_ce(c):
    logits, target = random_batch(256, c, seed=1)
    cce = cce_loss(logits, target, tau=-math.inf, reduction="none")
    ce = ce_loss(logits, target, reduction="none")
    torch.testing.assert_close(cce, ce, **float32_tolerance(logits))


def test_two_classes_keep_the_only_negative_so_cce_equals_ce():
    logits, target = random_batch(32, 2, seed=2)
    for tau in TAUS:
        torch.testing.assert_close(cce_loss(logits, target, tau=tau), ce_loss(logits, target))


def test_tied_negatives_stay_in_the_set_so_a_wrong_prediction_costs():
    logits = torch.tensor([[-2.0, 1.0, 1.0, 1.0]])  # the paper's strict rule: H empty, loss 0
    expected = -math.log(math.exp(-2.0) / (math.exp(-2.0) + 3 * math.exp(1.0)))
    assert cce_loss(logits, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


def test_infinite_tau_keeps_only_the_hardest_negative():
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0]])
    expected = math.log(1.0 + math.exp(3.0))
    assert cce_loss(logits, torch.tensor([0]), tau=math.inf).item() == pytest.approx(expected)


def test_cce_is_finite_and_exact_at_logit_magnitude_1e4():
    logits = torch.tensor([[1e4, -1e4, 9999.0], [-1e4, 1e4, 0.0], [1e4, 1e4, 1e4]])
    target = torch.tensor([0, 0, 2])
    expected = [math.log1p(math.exp(-1.0)), 2e4, math.log(3.0)]
    actual = cce_loss(logits, target, reduction="none")
    torch.testing.assert_close(actual.double(), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("position", [0, 2])
@pytest.mark.parametrize("tau", [0.0, 1.0, -math.inf])
def test_nan_logit_gives_nan_loss(position, tau):
    logits = torch.tensor([[1.0, 0.5, -1.0, 0.2], [0.0, 1.0, 2.0, 3.0]])
    logits[0, position] = math.nan
    per_sample = cce_loss(logits, torch.tensor([0, 1]), tau=tau, reduction="none")
    assert math.isnan(per_sample[0].item())
    assert math.isfinite(per_sample[1].item())


# --------------------------------------------------------------------------- CCE gradient


def test_negatives_outside_the_confusion_set_get_exactly_zero_gradient():
    logits, target = random_batch(128, 7, seed=3)
    logits.requires_grad_(True)
    cce_loss(logits, target).backward()
    negatives = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target[:, None], False)
    mu = (logits.sum(1, keepdim=True) - logits.gather(1, target[:, None])) / 6
    outside = negatives & (logits <= mu)
    assert outside.any()
    assert bool((logits.grad[outside] == 0).all())
    assert bool((logits.grad[negatives & ~outside] > 0).all())


@pytest.mark.parametrize("tau", [-math.inf, -0.5, 0.0, 1.0])
def test_cce_gradient_matches_finite_differences(tau):
    logits, target = random_batch(6, 5, seed=4)
    logits = logits.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: cce_loss(x, target, tau=tau), (logits,))


def test_cce_gradient_equals_autograd_through_the_masked_formula():
    logits, target = random_batch(64, 7, seed=5)
    logits.requires_grad_(True)
    cce_loss(logits, target, reduction="sum").backward()
    keep = torch.tensor([[j in kept for j in range(7)] for kept in _kept_classes(logits, target)])
    masked = logits.detach().clone().requires_grad_(True)
    F.cross_entropy(masked.masked_fill(~keep, -math.inf), target, reduction="sum").backward()
    torch.testing.assert_close(logits.grad, masked.grad)


def _kept_classes(logits: torch.Tensor, target: torch.Tensor):
    """{y} ∪ H per sample, for tau = 0, by the definition."""
    for row, y in zip(logits.tolist(), target.tolist(), strict=True):
        negatives = {j: value for j, value in enumerate(row) if j != y}
        mu, hardest = statistics.fmean(negatives.values()), max(negatives.values())
        yield {y} | {j for j, value in negatives.items() if value > mu or value == hardest}


# --------------------------------------------------------------------------- precision


def test_bfloat16_autocast_gives_finite_float32_loss():
    generator = torch.Generator().manual_seed(6)
    layer = torch.nn.Linear(16, 7)
    features = torch.randn(32, 16, generator=generator)
    target = torch.randint(0, 7, (32,), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(features)
        loss = cce_loss(logits, target)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32
    assert math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("loss", LOSS_FUNCTIONS)
def test_half_precision_logits_give_a_float32_loss(loss):
    logits, target = random_batch(8, 7, seed=7)
    result = loss(logits.half(), target)
    assert result.dtype == torch.float32
    assert result.item() == pytest.approx(loss(logits.half().float(), target).item())


# --------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("loss", LOSS_FUNCTIONS)
def test_reductions_are_none_sum_and_mean_of_the_same_values(loss):
    logits, target = random_batch(16, 7, seed=8)
    per_sample = loss(logits, target, reduction="none")
    assert per_sample.shape == (16,)
    torch.testing.assert_close(loss(logits, target, reduction="sum"), per_sample.sum())
    torch.testing.assert_close(loss(logits, target, reduction="mean"), per_sample.mean())
    torch.testing.assert_close(loss(logits, target), per_sample.mean())


@pytest.mark.parametrize("loss", LOSS_FUNCTIONS)
def test_unknown_reduction_is_rejected(loss):
    logits, target = random_batch(4, 3)
    with pytest.raises(LossParameterError, match="reduction"):
        loss(logits, target, reduction="avg")


# --------------------------------------------------------------------------- bad inputs

BAD_INPUTS = {
    "logits_1d": (torch.zeros(4), torch.zeros(4, dtype=torch.long), "2-D"),
    "logits_3d": (torch.zeros(4, 3, 2), torch.zeros(4, dtype=torch.long), "2-D"),
    "integer_logits": (
        torch.zeros(4, 3, dtype=torch.long),
        torch.zeros(4, dtype=torch.long),
        "floating",
    ),
    "one_class": (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), "C >= 2"),
    "target_too_short": (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), r"shape \(4,\)"),
    "target_2d": (torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.long), r"shape \(4,\)"),
    "target_float": (torch.zeros(4, 3), torch.zeros(4), "int64"),
    "target_int32": (torch.zeros(4, 3), torch.zeros(4, dtype=torch.int32), "int64"),
    "target_negative": (torch.zeros(4, 3), torch.tensor([0, -1, 1, 2]), "class -1"),
    "target_equal_to_c": (torch.zeros(4, 3), torch.tensor([0, 3, 1, 2]), "class 3"),
    "target_on_other_device": (
        torch.zeros(4, 3),
        torch.zeros(4, dtype=torch.long, device="meta"),
        "meta",
    ),
}


@pytest.mark.parametrize("loss", LOSS_FUNCTIONS)
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_loss_input_error(loss, case):
    logits, target, message = BAD_INPUTS[case]
    with pytest.raises(LossInputError, match=message):
        loss(logits, target)


@pytest.mark.parametrize(
    ("loss", "params"),
    [
        (cce_loss, {"tau": math.nan}),
        (focal_loss, {"gamma": -1.0}),
        (label_smoothing_loss, {"epsilon": 1.5}),
    ],
)
def test_out_of_range_parameter_raises(loss, params):
    logits, target = random_batch(4, 3)
    with pytest.raises(LossParameterError, match=next(iter(params))):
        loss(logits, target, **params)


# --------------------------------------------------------------------------- baselines


def test_focal_with_gamma_zero_equals_ce():
    logits, target = random_batch(64, 7, seed=9)
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0, reduction="none"),
        ce_loss(logits, target, reduction="none"),
    )


def test_focal_down_weights_by_one_minus_p_true_to_the_gamma():
    logits, target = random_batch(64, 7, seed=10)
    p_true = logits.double().softmax(1).gather(1, target[:, None]).squeeze(1)
    expected = -((1 - p_true) ** 2.5) * p_true.log()
    actual = focal_loss(logits, target, gamma=2.5, reduction="none")
    torch.testing.assert_close(actual.double(), expected, **float32_tolerance(logits))


def test_focal_gradient_stays_finite_when_the_prediction_is_certain():
    logits = torch.tensor([[50.0, 0.0, 0.0]], requires_grad=True)  # p_y rounds to 1
    focal_loss(logits, torch.tensor([0]), gamma=0.5).backward()
    assert torch.isfinite(logits.grad).all()


def test_label_smoothing_with_epsilon_zero_equals_ce():
    logits, target = random_batch(64, 7, seed=11)
    torch.testing.assert_close(
        label_smoothing_loss(logits, target, epsilon=0.0), ce_loss(logits, target)
    )


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.3])
def test_label_smoothing_matches_torch_and_the_smoothed_target_formula(epsilon):
    logits, target = random_batch(64, 7, seed=12)
    actual = label_smoothing_loss(logits, target, epsilon=epsilon, reduction="none")
    expected = F.cross_entropy(logits, target, label_smoothing=epsilon, reduction="none")
    torch.testing.assert_close(actual, expected)
    log_p = logits.double().log_softmax(1)
    by_hand = -(1 - epsilon) * log_p.gather(1, target[:, None]).squeeze(1) - epsilon * log_p.mean(1)
    torch.testing.assert_close(actual.double(), by_hand, **float32_tolerance(logits))


# --------------------------------------------------------------------------- modules, registry


@pytest.mark.parametrize(
    ("module", "function"),
    [
        (CELoss(), ce_loss),
        (CCELoss(tau=0.5), lambda x, t: cce_loss(x, t, tau=0.5)),
        (FocalLoss(1.5), lambda x, t: focal_loss(x, t, gamma=1.5)),
        (LabelSmoothingLoss(0.2), lambda x, t: label_smoothing_loss(x, t, epsilon=0.2)),
    ],
)
def test_modules_compute_their_functions(module, function):
    logits, target = random_batch(16, 7, seed=13)
    torch.testing.assert_close(module(logits, target), function(logits, target))


def test_registry_lists_the_five_losses_in_order():
    assert available_losses() == ["ce", "cce", "cce_tau", "focal", "label_smoothing"]


def test_tunable_parameters_give_default_search_ranges():
    assert tunable_parameters("cce_tau") == {"tau": (-1.0, 1.5)}
    assert tunable_parameters("focal") == {"gamma": (0.5, 5.0)}
    assert tunable_parameters("label_smoothing") == {"epsilon": (0.0, 0.3)}
    assert tunable_parameters("ce") == tunable_parameters("cce") == {}


def test_get_loss_builds_modules_with_parameters():
    assert isinstance(get_loss("ce"), CELoss)
    assert get_loss("cce").tau == 0.0
    assert get_loss("cce_tau").tau == 0.0
    assert get_loss("cce_tau", tau=0.7).tau == 0.7
    assert get_loss("focal", gamma=3.0).gamma == 3.0
    assert get_loss("label_smoothing", epsilon=0.2).epsilon == 0.2


def test_unknown_loss_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'cce_tau'"):
        get_loss("cce_ta")
    with pytest.raises(UnknownNameError):
        tunable_parameters("hinge")


def test_unknown_parameter_names_the_loss_that_takes_it():
    with pytest.raises(LossParameterError, match="'cce_tau' takes 'tau'"):
        get_loss("cce", tau=0.5)
    with pytest.raises(LossParameterError, match="not 'gama'"):
        get_loss("focal", gama=2.0)


def test_a_decorated_factory_becomes_a_named_loss():
    @register_loss("ce_sum_for_test", tunable={})
    def _ce_sum() -> torch.nn.Module:
        return CELoss(reduction="sum")

    try:
        assert "ce_sum_for_test" in available_losses()
        logits, target = random_batch(8, 3)
        torch.testing.assert_close(
            get_loss("ce_sum_for_test")(logits, target), 8 * ce_loss(logits, target)
        )
    finally:
        del loss_registry._REGISTRY["ce_sum_for_test"]


def test_docstring_examples_run():
    result = doctest.testmod(losses, extraglobs={"torch": torch})
    assert result.attempted > 0
    assert result.failed == 0


def test_registry_docstring_examples_run():
    result = doctest.testmod(loss_registry, extraglobs={"torch": torch})
    assert result.attempted > 0
    assert result.failed == 0
