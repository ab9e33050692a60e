"""The report's answer: the analysis plan, the verdicts, the confirmatory family, the looks.

Each function returns one markdown section from the comparison frame of
:mod:`cce_bench.report._families`; nothing is recomputed here. Only the confirmatory family
speaks in these sections, and every verdict stands beside its simultaneous interval, so that no
verdict is read next to an interval of another level.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cce_bench.report._families import (
    AnalysisPlan,
    confirmatory,
    margin_text,
    metric_label,
)
from cce_bench.report._format import (
    excludes_zero,
    fmt_count,
    fmt_diff,
    fmt_interval,
    fmt_level,
    fmt_p,
)
from cce_bench.report._results import StudyResults
from cce_bench.report._tables import markdown_table, seed_pairing
from cce_bench.report._test_sampling import SamplingVariance


def plan_section(results: StudyResults, plan: AnalysisPlan, *, stated: bool) -> str:
    """The analysis plan as fixed in the study file, first, so the reader knows what counts.

    ``stated`` is False for a study file without an ``[analysis]`` table (it ran under the
    defaults, which the section then says).
    """
    labels, base = results.arm_labels, results.arm_labels[results.baseline]
    comparisons = ", ".join(f"{labels[arm]} vs {base}" for arm in plan.compared) or "none"
    level, margin = fmt_level(plan.level), margin_text(plan)
    rows = [
        ("Primary metric", f"{metric_label(plan.primary_metric)} on the test split"),
        (
            "Confirmatory family",
            f"{len(plan.backbones)} backbones ({', '.join(plan.backbones)}) × "
            f"{len(plan.compared)} comparisons ({comparisons}) = {plan.size} paired t-tests "
            f"over seeds, Holm at α = {plan.alpha:g}; only this family decides the Answer",
        ),
        (
            "Verdicts",
            f'"<arm> better" or "{base} better" when the Holm p is below α; otherwise '
            f'"equivalent within {margin}" when the paired TOST against ±margin, Holm-adjusted '
            'over the family, is below α; otherwise "inconclusive"',
        ),
        (
            "Margin",
            f"{plan.margin:g} ({margin}): the smallest difference that matters; the "
            "equivalence bound, and the effect a follow-up study is sized to detect",
        ),
        (
            "Intervals",
            f"simultaneous {level} t intervals (Bonferroni, α/{plan.size} each): all "
            f"{plan.size} cover their true differences together with probability ≥ "
            f"{fmt_level(1 - plan.alpha)}",
        ),
        (
            "Exploratory",
            "every other metric and the per-class recalls (one Benjamini–Hochberg family at "
            f"q = {plan.alpha:g}), and the per-seed McNemar tests (another); never part of the "
            "Answer",
        ),
        (
            "Not tested",
            "ACC (paper) = 1 − 2·(1 − top-1)/C and sensitivity (paper) = balanced accuracy × "
            "(classes with test images)/C: shown, but functions of metrics that are tested",
        ),
    ]
    if results.spec.evaluate.stopping == "anytime":
        rows[1:3], rows[4] = (
            _anytime_rows(results, plan, comparisons),
            (
                "Intervals",
                f"confidence sequences at level 1 − α/{plan.size}: each covers its true difference "
                "at every look at once, so it may be read wherever the study stopped",
            ),
        )
    where = (
        "Fixed in the study file (`[analysis]`) before any run"
        if stated
        else "The study file has no `[analysis]` table, so it ran under the plan's defaults"
    )
    return "\n".join(
        [
            "## Analysis plan",
            "",
            f"{where}. The plan is part of the study's fingerprint: a results folder refuses "
            "a study whose plan differs from the one its runs were made under.",
            "",
            markdown_table(pd.DataFrame(rows, columns=["", "Plan"])),
        ]
    )


def _anytime_rows(
    results: StudyResults, plan: AnalysisPlan, comparisons: str
) -> list[tuple[str, str]]:
    """The plan's family and verdict rows under ``evaluate.stopping = "anytime"``."""
    evaluate, base = results.spec.evaluate, results.arm_labels[results.baseline]
    threshold = plan.size / plan.alpha
    return [
        (
            "Confirmatory family",
            f"{len(plan.backbones)} backbones ({', '.join(plan.backbones)}) × "
            f"{len(plan.compared)} comparisons ({comparisons}) = {plan.size} anytime-valid "
            f"paired t-tests (safe t e-values), each at α/{plan.size}, looked at after "
            f"{evaluate.seeds} seeds and after every further one up to {evaluate.seed_cap}; "
            "only this family decides the Answer",
        ),
        (
            "Verdicts",
            f'at the first look where the e-value reaches m/α = {threshold:g}: "<arm> better" '
            f'or "{base} better"; or where the confidence sequence lies inside ±margin: '
            f'"equivalent within {margin_text(plan)}"; a comparison still open at '
            '`max_seeds` is "inconclusive". A backbone stops adding seeds when all of its '
            "comparisons are decided",
        ),
    ]


def answer_section(results: StudyResults, plan: AnalysisPlan, frame: pd.DataFrame) -> str:
    """One line per confirmatory comparison: its verdict beside its simultaneous intervals."""
    metric, level = plan.primary_metric, fmt_level(plan.level)
    label = metric_label(metric).lower()
    lines = [
        "## Answer",
        "",
        f"The confirmatory family of the plan: {label}, {plan.size} comparisons, Holm at "
        f"α = {plan.alpha:g}. Each interval is simultaneous ({level}): over seeds on this test "
        "set, then with the test set's own sampling added.",
        "",
    ]
    rows = confirmatory(frame)
    if rows.empty:
        lines.append("- No comparison: the study has a single arm.")
    labels = results.arm_labels
    for row in rows.itertuples():
        lines.append(
            f"- **{row.backbone}, {labels[row.arm]} vs {labels[row.baseline]}**: "
            f"{row.verdict}{_holm_note(row)}. Δ {label} = "
            f"{fmt_diff(row.mean_diff, metric, unit=True)}, {level} CI "
            f"{fmt_interval(row.ci_low, row.ci_high, metric)} over seeds, "
            f"{fmt_interval(row.combined_ci_low, row.combined_ci_high, metric)} with test-set "
            f"sampling; Holm p = {fmt_p(row.adjusted_pvalue)}, equivalence (TOST) Holm p = "
            f"{fmt_p(row.tost_adjusted_pvalue)}; n = {row.n} seeds"
            f"{' (underpowered)' if row.underpowered else ''}. {_follow_up(row, plan)}"
        )
    return "\n".join(lines)


def _holm_note(row: Any) -> str:
    """Holm steps down below Bonferroni, so it can reject while the interval touches 0."""
    if row.verdict.endswith(" better") and not excludes_zero(row.ci_low, row.ci_high):
        return " (Holm's step-down test rejects; the Bonferroni interval, wider, still reaches 0)"
    return ""


def _follow_up(row: Any, plan: AnalysisPlan) -> str:
    if row.seeds_needed is None or pd.isna(row.seeds_needed):
        return "Too few seeds to size a follow-up."
    return (
        f"A follow-up needs {int(row.seeds_needed)} paired seeds to detect "
        f"{margin_text(plan)} at α/{plan.size} with 80% power."
    )


def confirmatory_display(frame: pd.DataFrame, plan: AnalysisPlan, arm_labels) -> pd.DataFrame:
    """The confirmatory family as shown (strings), for the report and the CLI."""
    level = fmt_level(plan.level)
    rows = [
        {
            "Backbone": row.backbone,
            "Comparison": f"{arm_labels[row.arm]} vs {arm_labels[row.baseline]}",
            "Metric": metric_label(row.metric),
            "n": f"{row.n}{' †' if row.underpowered else ''}",
            "Δ (pp)": fmt_diff(row.mean_diff, row.metric),
            f"{level} CI, seeds": fmt_interval(row.ci_low, row.ci_high, row.metric),
            f"{level} CI, seeds + test set": fmt_interval(
                row.combined_ci_low, row.combined_ci_high, row.metric
            ),
            "p (t)": fmt_p(row.t_pvalue),
            "p (Holm)": fmt_p(row.adjusted_pvalue),
            "TOST p (Holm)": fmt_p(row.tost_adjusted_pvalue),
            "Verdict": row.verdict,
            f"Seeds to detect {margin_text(plan)}": fmt_count(row.seeds_needed),
        }
        for row in confirmatory(frame).itertuples()
    ]
    table = pd.DataFrame(rows)
    if "fixed_n_verdict" in frame:  # the anytime design: its verdict, then the fixed-n one
        shown = confirmatory(frame)
        table["Fixed-n verdict (not the verdict)"] = list(shown["fixed_n_verdict"])
        table["e-value"] = [f"{value:.3g}" for value in shown["e_value"]]
    return table


def confirmatory_section(
    results: StudyResults, plan: AnalysisPlan, frame: pd.DataFrame, sampling: SamplingVariance
) -> str:
    """The confirmatory family in full, how seeds were paired, and what each interval answers."""
    level, margin = fmt_level(plan.level), margin_text(plan)
    lines = ["## Confirmatory family", ""]
    if "fixed_n_verdict" in frame:
        lines += [
            "Seeds were added look by look (the anytime design), so the fixed-n tests below "
            "are **not the verdict**: they read the same seeds as if their number had been "
            "fixed in advance, and are shown beside the anytime verdict for comparison.",
            "",
        ]
    lines += [
        *_pairing_notes(results),
        "",
        f"The split is fixed (split_seed {results.spec.data.split_seed}) and only the training "
        "seed varies, so p (t) is the plain paired t-test over seeds (the exact sign-flip p "
        "when the differences have no spread).",
        "",
        markdown_table(confirmatory_display(frame, plan, results.arm_labels)),
        "",
        "- **CI, seeds** answers: how far would the difference move if the study were rerun "
        "with new training seeds on this same test set? (t interval over the paired seeds.)",
        f"- **CI, seeds + test set** answers: how far would it move with new seeds and a new "
        f"test set of as many lesions from the same population? {_sampling_note(sampling)}",
        f"- Both are simultaneous {level} intervals (α/{plan.size}), the level of the family. "
        f"TOST: two one-sided paired t-tests against ±margin ({margin}), Holm over the family. "
        f"Seeds to detect {margin}: paired seeds for 80% power to detect a true difference of "
        f"{margin} with a two-sided paired t-test at α/{plan.size}, from the observed sd of "
        "the differences (prospective power). † fewer than 5 paired seeds: underpowered.",
    ]
    return "\n".join(lines)


def _sampling_note(sampling: SamplingVariance) -> str:
    """How SE_test was obtained, or why it is missing."""
    if sampling.clusters is None:
        return f"Not available here: {sampling.problem}."
    test = sampling.clusters
    unit = (
        f"{test.lesions} lesions, resampled by lesion"
        if test.by_lesion
        else f"resampled image by image ({test.lesions} images: `split.json` records no lesion "
        "ids, so images of one lesion count as independent and the interval is too narrow)"
    )
    return (
        f"SE² = s²_seed/K + SE²_test, SE_test from {sampling.resamples} bootstrap resamples "
        f"of the {test.image_ids.size} test images ({unit}, stratified by class, the same "
        "resample for both arms and every seed); t quantile with K − 1 df, as the seeds' own."
    )


def _pairing_notes(results: StudyResults) -> list[str]:
    """Per comparison: how many seeds paired and which were dropped, with the reason."""
    notes = ["Pairing is by seed; a seed counts only when both arms completed it.", ""]
    labels = results.arm_labels
    for backbone in results.backbones:
        for arm in results.arms[1:]:
            paired, dropped = seed_pairing(
                results.runs, backbone, results.baseline, arm, results.seeds
            )
            text = f"- {backbone}, {labels[arm]} vs {labels[results.baseline]}: "
            text += f"{len(paired)} paired seeds"
            if dropped:
                text += f"; dropped {len(dropped)}: " + "; ".join(dropped)
            notes.append(text)
    return notes


def looks_section(results: StudyResults, changes: list[dict[str, Any]]) -> str:
    """Every budget change after the study started: each raise is another look at the data."""
    lines = ["## Looks at the data", ""]
    evaluate = results.spec.evaluate
    if evaluate.stopping == "anytime":
        lines += [
            f"The anytime design looked after {evaluate.seeds} seeds and after every seed "
            "since; its verdicts hold under those looks and under any raise of "
            "`evaluate.max_seeds` (listed below if there was one). The fixed-n tests do not.",
            "",
        ]
    if not changes and evaluate.stopping == "anytime":
        lines.append("No budget changed after the study started.")
        return "\n".join(lines)
    if not changes:
        tune = results.spec.tune
        lines.append(
            f"None: the study ran with the budgets it started with (`tune.n_trials` = "
            f"{tune.n_trials}, `evaluate.seeds` = {evaluate.seeds}), so every test above is "
            "a single look at the test set."
        )
        return "\n".join(lines)
    lines += [
        "Every budget changed after the study started (from `budget_changes.jsonl`). Raising "
        "`evaluate.seeds` after test results were read is another look at the same test set: "
        "the fixed-n p-values and intervals above assume a single look, so after such a raise "
        "they are optimistic.",
        "",
    ]
    for change in changes:
        runs = int(change.get("completed_runs", 0))
        seen = (
            f"with {runs} evaluation runs completed"
            if runs
            else "before any evaluation run completed (no test result could have been read)"
        )
        before, after = change["from"], change["to"]
        if before is None or after is None:  # an optional budget set or unset
            direction = "set" if before is None else "unset"
        else:
            direction = "raised" if after > before else "lowered"
        when = str(change["at"]).replace("T", " ").replace("+00:00", " UTC")
        shown = ["unset" if value is None else value for value in (before, after)]
        lines.append(
            f"- {when}: `{change['key']}` {direction} from {shown[0]} to {shown[1]}, {seen}."
        )
    return "\n".join(lines)
