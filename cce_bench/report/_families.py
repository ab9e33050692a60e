"""The report's comparisons in the two families the analysis plan fixes, and their verdicts.

The plan (``[analysis]`` in the study file, fixed before any run) names one primary metric and
the arms compared with the baseline. That splits the comparisons into two families, each with
the error control its use needs (Bender & Lange 2001, "Adjusting for multiple testing: when and
how?", J Clin Epidemiol 54:343):

* **confirmatory**: every backbone x compared arm on the primary metric, m tests. Each gets a
  simultaneous interval (Bonferroni, level 1 - alpha/m, so all m cover together with
  probability >= 1 - alpha) under the plan's test (``analysis.test``: paired t, or the exact
  sign-flip test), and its verdict is read off that interval
  (:func:`cce_bench.stats.fixed_verdicts`): one of four outcomes, wrong for any comparison with
  probability at most alpha, and never in disagreement with the interval printed beside it.
  Each also gets the seeds a follow-up needs to detect ``margin``. Only this family feeds the
  Answer.
* **exploratory**: every other metric, the per-class recalls, and the primary metric of arms
  the plan does not compare. Benjamini & Yekutieli (2001) within it: the recalls of one model
  trade off against each other, so the positive dependence Benjamini-Hochberg needs is not
  given. Leads to follow up, never an answer.

Metrics that are a function of another one of the same run (``metrics.DERIVED_METRICS``: the
paper's ACC and sensitivity; and melanoma sensitivity, which is MEL recall) are shown with their
difference but never tested: a test of one is a test of the other, and counting both would
count one comparison twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from cce_bench import fixed_design, stats
from cce_bench.config import StudySpec
from cce_bench.metrics import DERIVED_METRICS, HIGHER_IS_BETTER, METRIC_LABELS
from cce_bench.report._tables import REPORT_METRICS, metric_scale, paired_values, seed_pairing

CONFIRMATORY, EXPLORATORY, DERIVED = "confirmatory", "exploratory", "derived"

#: Prefix of the per-class recall columns of the runs frame (``recall_mel``).
RECALL_PREFIX = "recall_"

#: Follow-up sizes above this print as "more than": a study of hundreds of seeds is no longer a
#: follow-up of this one, and the sd it is sized from was estimated from a handful of seeds.
FOLLOW_UP_CAP = 200

#: Melanoma sensitivity and MEL recall: one number under two names (``metrics`` records both).
MELANOMA_TWINS = ("melanoma_sensitivity", RECALL_PREFIX + "mel")

#: Columns of ``stats.csv``: the comparison and its family, ``stats.paired_comparison``'s
#: results, the family's adjustment, the equivalence test, the intervals at the family's level
#: (seed-only, and seed + test-set sampling), the follow-up size and the verdict.
COLUMNS: tuple[str, ...] = (
    "backbone",
    "baseline",
    "arm",
    "metric",
    "family",
    "n",
    "seeds_dropped",
    "mean_a",
    "mean_b",
    "mean_diff",
    "sd_diff",
    "t_ci_low",
    "t_ci_high",
    "t_pvalue",
    "wilcoxon_pvalue",
    "sign_flip_p",
    "design_pvalue",
    "sign_flip_reachable",
    "d_z",
    "n_zero_diffs",
    "underpowered",
    "test",
    "adjustment",
    "adjusted_pvalue",
    "tost_pvalue",
    "tost_adjusted_pvalue",
    "level",
    "ci_low",
    "ci_high",
    "test_se",
    "combined_df",
    "combined_ci_low",
    "combined_ci_high",
    "seeds_needed",
    "verdict",
)

#: Keys of ``stats.paired_comparison`` that are tests, blanked for derived metrics.
TEST_KEYS: tuple[str, ...] = ("t_pvalue", "wilcoxon_pvalue", "sign_flip_p")


@dataclass(frozen=True)
class AnalysisPlan:
    """The study's ``[analysis]`` table applied to its backbones: the confirmatory family."""

    primary_metric: str
    compared: tuple[str, ...]
    backbones: tuple[str, ...]
    alpha: float
    margin: float
    #: The confirmatory test, ``analysis.test``: "t" or "sign_flip".
    test: str = "t"

    @property
    def size(self) -> int:
        """m: the number of confirmatory comparisons (backbones x compared arms)."""
        return len(self.backbones) * len(self.compared)

    @property
    def test_alpha(self) -> float:
        """alpha / m: the Bonferroni level of each simultaneous interval and follow-up test."""
        return self.alpha / max(self.size, 1)

    @property
    def level(self) -> float:
        """1 - alpha / m: the confidence of each simultaneous interval."""
        return 1.0 - self.test_alpha

    def derived_from(self, metric: str) -> str | None:
        """The tested metric this one is a function of, or None when it is tested itself.

        ``metrics.DERIVED_METRICS``, and melanoma sensitivity, which is MEL recall under another
        name: the recall is tested with the other classes' and the sensitivity is shown, unless
        the plan's primary metric is the sensitivity, which then stands for both.
        """
        if metric in DERIVED_METRICS:
            return DERIVED_METRICS[metric]
        twin, recall = MELANOMA_TWINS
        if metric == twin and self.primary_metric != twin:
            return recall
        if metric == recall and self.primary_metric == twin:
            return twin
        return None

    def family_of(self, metric: str, arm: str) -> str:
        if self.derived_from(metric) is not None:
            return DERIVED
        if metric == self.primary_metric and arm in self.compared:
            return CONFIRMATORY
        return EXPLORATORY


def analysis_plan(spec: StudySpec, backbones: Sequence[str]) -> AnalysisPlan:
    plan = spec.analysis
    return AnalysisPlan(
        primary_metric=plan.primary_metric,
        compared=plan.compared_arms(spec.losses),
        backbones=tuple(backbones),
        alpha=plan.alpha,
        margin=plan.margin,
        test=plan.confirmatory_test,
    )


def metric_label(metric: str) -> str:
    """How a metric is named in tables: ``METRIC_LABELS``, or "Recall MEL" for a class."""
    if metric.startswith(RECALL_PREFIX):
        return f"Recall {metric.removeprefix(RECALL_PREFIX).upper()}"
    return METRIC_LABELS[metric]


def higher_is_better(metric: str) -> bool:
    return metric.startswith(RECALL_PREFIX) or HIGHER_IS_BETTER[metric]


def margin_text(plan: AnalysisPlan) -> str:
    """The margin as the verdicts print it: ±1.00 pp (ratios) or ±0.010 (AUC)."""
    scale, _ = metric_scale(plan.primary_metric)
    if scale == 1.0:
        return f"±{plan.margin:.3f}"
    return f"±{plan.margin * scale:.2f} pp"


def comparison_frame(
    runs: pd.DataFrame,
    *,
    plan: AnalysisPlan,
    baseline: str,
    arms: Sequence[str],
    seeds: Sequence[int],
    class_names: Sequence[str],
    arm_labels: Mapping[str, str],
    test_se: Mapping[tuple[str, str, str], float] | None = None,
) -> pd.DataFrame:
    """Every backbone x other arm x metric comparison, in its family, adjusted and judged.

    The split is fixed over seeds, so each comparison is a paired t-test over seeds (``test``).
    ``test_se`` maps (backbone, arm, metric) to the standard error that the test set's own
    sampling adds to the mean difference (:mod:`cce_bench.report._test_sampling`); without it
    the combined interval is NaN.
    """
    metrics = (*REPORT_METRICS, *(RECALL_PREFIX + name for name in class_names))
    rows = []
    for backbone in plan.backbones:
        for arm in (a for a in arms if a != baseline):
            paired, dropped = seed_pairing(runs, backbone, baseline, arm, seeds)
            for metric in metrics:
                a, b = paired_values(runs, backbone, baseline, arm, metric, paired)
                family = plan.family_of(metric, arm)
                se = (test_se or {}).get((backbone, arm, metric), math.nan)
                row = _comparison_row(a, b, family=family, plan=plan, test_se=se)
                row.update(backbone=backbone, baseline=baseline, arm=arm, metric=metric)
                row.update(family=family, seeds_dropped=len(dropped))
                rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame.empty:  # a study with a single arm compares nothing
        return frame
    _adjust(frame, plan)
    frame["verdict"] = [_verdict(row, plan, arm_labels) for row in frame.itertuples()]
    return frame


def _comparison_row(
    a: np.ndarray, b: np.ndarray, *, family: str, plan: AnalysisPlan, test_se: float
) -> dict:
    """One comparison: ``stats.paired_comparison``, then what its family adds."""
    level = plan.level if family == CONFIRMATORY else 1.0 - plan.alpha
    if a.size == 0:
        row: dict = dict.fromkeys(COLUMNS, math.nan)
        row.update(n=0, n_zero_diffs=0, underpowered=True, test="—", level=level)
        row.update(seeds_needed=None, adjustment="", verdict="")
        return row
    row = stats.paired_comparison(a, b)
    row.pop("seeds_for_80_power")  # post hoc power at the observed effect restates the p
    row.update(test="paired t", level=level, seeds_needed=None)
    d = stats.paired_differences(a, b)
    row["ci_low"], row["ci_high"] = stats.t_interval(d, level) if d.size > 1 else (math.nan,) * 2
    row.update(_combined_interval(row, test_se, level))
    row.update(tost_pvalue=math.nan, design_pvalue=math.nan, sign_flip_reachable=math.nan)
    if family == DERIVED:
        row.update(dict.fromkeys(TEST_KEYS, math.nan))
    elif family == CONFIRMATORY:
        row.update(_confirmatory_reading(d, plan))
        row["seeds_needed"] = follow_up_seeds(row["sd_diff"], int(d.size), plan)
    return row


def _confirmatory_reading(d: np.ndarray, plan: AnalysisPlan) -> dict:
    """The design's interval and p-values of one confirmatory comparison (``analysis.test``).

    ``sign_flip_reachable``: whether, with these seeds, a distribution-free test could reach the
    family's level at all (2/2^n <= alpha/m); a verdict without it rests on normality alone.
    """
    p_diff, p_tost = fixed_design.design_pvalues(d, plan.margin, plan.test)
    reading = {
        "test": "paired t" if plan.test == "t" else "sign-flip",
        "design_pvalue": p_diff,
        "tost_pvalue": p_tost,
        "sign_flip_reachable": bool(d.size >= stats.sign_flip_min_seeds(plan.alpha, plan.size)),
    }
    if plan.test == "sign_flip" and d.size > 1:
        reading["ci_low"], reading["ci_high"] = fixed_design.sign_flip_interval(d, plan.level)
    return reading


def follow_up_seeds(sd_diff: float, n: int, plan: AnalysisPlan) -> int | None:
    """Paired seeds a fixed follow-up under this plan needs to detect ±margin with 80% power.

    Sizes above :data:`FOLLOW_UP_CAP` come back as the cap + 1 ("more than"). None when the
    size would mean nothing: fewer than ``stats.MIN_SEEDS`` seeds leave the sd
    too uncertain to size from (from 3 seeds its 95% interval spans a factor of 14), and
    without spread there is no noise to size against. The t design's size is the noncentral t
    calculation at alpha/m; the sign-flip design's is that, but never below the seeds the
    sign-flip test needs to reject at all.
    """
    if n < stats.MIN_SEEDS or not (math.isfinite(sd_diff) and sd_diff > 0.0):
        return None
    needed = stats.seeds_needed(sd_diff, plan.margin, plan.test_alpha)
    if plan.test == "sign_flip":
        needed = max(needed, stats.sign_flip_min_seeds(plan.alpha, plan.size))
    return min(needed, FOLLOW_UP_CAP + 1)


def _combined_interval(row: dict, test_se: float, level: float) -> dict:
    """The difference's interval from seed variance and test-set sampling variance together.

    SE^2 = s^2_seed / K + SE^2_test: the seeds' spread estimates the training noise around this
    test set's difference (the seed x image interaction included), SE^2_test the test set's own
    sampling variance, the between-seed covariance across test-set resamples
    (:func:`cce_bench.report._test_sampling.between_seed_se`), which leaves that interaction out so
    it is counted once. The t quantile keeps the K - 1 degrees of freedom of the seed term.
    Welch-Satterthwaite (1946) would give more, and with them a smaller quantile that can make
    the interval *narrower* than the seed-only one although it adds a source of variance;
    K - 1 is conservative and keeps the combined interval at least as wide as the seed-only one.
    Under ``analysis.test = "sign_flip"`` the seeds-only interval is the sign-flip one and this
    remains the t-based reading of the same two variances.
    """
    n, sd = row["n"], row["sd_diff"]
    if n < 2 or not (math.isfinite(test_se) and math.isfinite(sd)):
        return {"test_se": test_se, "combined_df": math.nan} | dict.fromkeys(
            ("combined_ci_low", "combined_ci_high"), math.nan
        )
    se = math.sqrt(sd**2 / n + test_se**2)
    half = float(scipy_stats.t.isf((1 - level) / 2, n - 1)) * se
    mean = row["mean_diff"]
    return {
        "test_se": test_se,
        "combined_df": n - 1,
        "combined_ci_low": mean - half,
        "combined_ci_high": mean + half,
    }


def _adjust(frame: pd.DataFrame, plan: AnalysisPlan) -> None:
    """Bonferroni in the confirmatory family, Benjamini-Yekutieli in the exploratory one.

    The confirmatory p-values are those the simultaneous interval inverts: the difference p
    times m, the equivalence p times 2m (each one-sided test at alpha/(2m)), so that an adjusted
    p below alpha is the same statement as the interval excluding 0, or lying inside ±margin.
    NaN p-values (no paired seed) stay NaN and out of the exploratory family.
    """
    frame["adjusted_pvalue"] = math.nan
    confirmatory = frame["family"] == CONFIRMATORY
    exploratory = frame["family"] == EXPLORATORY
    if confirmatory.any():
        m = max(plan.size, 1)
        design = frame.loc[confirmatory, "design_pvalue"].to_numpy(float)
        tost = frame.loc[confirmatory, "tost_pvalue"].to_numpy(float)
        frame.loc[confirmatory, "adjusted_pvalue"] = np.minimum(1.0, m * design)
        frame.loc[confirmatory, "tost_adjusted_pvalue"] = np.minimum(1.0, 2 * m * tost)
    if exploratory.any():
        frame.loc[exploratory, "adjusted_pvalue"] = stats.benjamini_yekutieli(
            frame.loc[exploratory, "t_pvalue"].to_numpy(float)
        )
    frame["adjustment"] = frame["family"].map({CONFIRMATORY: "Bonferroni", EXPLORATORY: "BY"})
    frame["adjustment"] = frame["adjustment"].fillna("")


def _verdict(row, plan: AnalysisPlan, arm_labels: Mapping[str, str]) -> str:
    """Four outcomes in the confirmatory family; a lead or nothing in the exploratory one."""
    better, worse = arm_labels[row.arm], arm_labels[row.baseline]
    if row.family == DERIVED:
        source = metric_label(plan.derived_from(row.metric) or row.metric).lower()
        return f"not tested: a function of {source}"
    if row.family == CONFIRMATORY:
        reading = fixed_design.read_interval(row.ci_low, row.ci_high, plan.margin)
        if reading == fixed_design.EQUIVALENT:
            return f"equivalent within {margin_text(plan)}"
        if reading == fixed_design.INCONCLUSIVE:
            return "inconclusive"
        arm_wins = (reading == fixed_design.BETTER) == higher_is_better(row.metric)
        return f"{better} better" if arm_wins else f"{worse} better"
    lead = stats.verdict(
        row.mean_diff,
        row.adjusted_pvalue,
        alpha=plan.alpha,
        higher_is_better=higher_is_better(row.metric),
        better=better,
        worse=worse,
    )
    return "" if lead == "inconclusive" else lead


def confirmatory(frame: pd.DataFrame) -> pd.DataFrame:
    """The confirmatory rows of a comparison frame, in backbone and comparison order."""
    return frame[frame["family"] == CONFIRMATORY] if not frame.empty else frame
