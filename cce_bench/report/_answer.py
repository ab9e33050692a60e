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
    FOLLOW_UP_CAP,
    AnalysisPlan,
    confirmatory,
    margin_text,
    metric_label,
)
from cce_bench.report._format import (
    fmt_count,
    fmt_diff,
    fmt_interval,
    fmt_level,
    fmt_p,
)
from cce_bench.report._results import StudyResults
from cce_bench.report._tables import markdown_table, seed_pairing
from cce_bench.report._test_sampling import SamplingVariance
from cce_bench.stats import MIN_SEEDS, SAFE_T_PRIOR_VARIANCE, sign_flip_min_seeds


def plan_section(results: StudyResults, plan: AnalysisPlan, *, stated: bool) -> str:
    """The analysis plan as fixed in the study file, first, so the reader knows what counts.

    ``stated`` is False for a study file without an ``[analysis]`` table (it ran under the
    defaults, which the section then says).
    """
    labels, base = results.arm_labels, results.arm_labels[results.baseline]
    comparisons = ", ".join(f"{labels[arm]} vs {base}" for arm in plan.compared) or "none"
    level, margin = fmt_level(plan.level), margin_text(plan)
    test = TEST_NAMES[plan.test]
    rows = [
        ("Primary metric", f"{metric_label(plan.primary_metric)} on the test split"),
        (
            "Confirmatory family",
            f"{len(plan.backbones)} backbones ({', '.join(plan.backbones)}) × "
            f"{len(plan.compared)} comparisons ({comparisons}) = {plan.size} {test}s over "
            f'seeds (`analysis.test` = "{plan.test}"), family-wise error at most α = '
            f"{plan.alpha:g} for the verdicts together; only this family decides the Answer",
        ),
        (
            "Verdicts",
            f"read off each comparison's simultaneous interval: above or below 0, "
            f'"<arm> better" or "{base} better"; otherwise inside ±margin, "equivalent within '
            f'{margin}"; otherwise "inconclusive". A verdict is wrong only if its interval misses '
            "the true difference, so the printed interval always agrees with it (the same as "
            f"Bonferroni: difference test at α/{plan.size}, each one-sided equivalence test at "
            f"α/{2 * plan.size})",
        ),
        (
            "Margin",
            f"{plan.margin:g} ({margin}): the smallest difference that matters; the "
            "equivalence bound, and the effect a follow-up study is sized to detect",
        ),
        (
            "Intervals",
            f"simultaneous {level} {interval_name(plan)} intervals (Bonferroni, α/{plan.size} "
            f"each): all "
            f"{plan.size} cover their true differences together with probability ≥ "
            f"{fmt_level(1 - plan.alpha)}",
        ),
        ("Assumptions", _assumption_text(plan)),
        (
            "Exploratory",
            "every other metric and the per-class recalls (one Benjamini–Yekutieli family at "
            f"q = {plan.alpha:g}: class recalls trade off against each other, so the positive "
            "dependence Benjamini–Hochberg needs is not given), and the per-seed McNemar tests "
            "(another); never part of the Answer",
        ),
        (
            "Not tested",
            "ACC (paper) = 1 − 2·(1 − top-1)/C, sensitivity (paper) = balanced accuracy × "
            "(classes with test images)/C, and melanoma sensitivity = MEL recall: shown, but "
            "functions of metrics that are tested",
        ),
    ]
    if results.spec.evaluate.stopping == "anytime":
        rows[1:3], rows[4:6] = (
            _anytime_rows(results, plan, comparisons),
            [
                (
                    "Intervals",
                    f"confidence sequences at level 1 − α/{plan.size}: each covers its true "
                    "difference at every look at once, so it may be read wherever the study "
                    "stopped",
                ),
                ("Assumptions", _anytime_assumption_text(plan)),
            ],
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


#: How each ``analysis.test`` is named in the report.
TEST_NAMES = {"t": "paired t-test", "sign_flip": "exact sign-flip test"}


def interval_name(plan: AnalysisPlan) -> str:
    """The interval's name: "paired t" or "exact sign-flip"."""
    return TEST_NAMES[plan.test].removesuffix("-test").removesuffix(" test")


def _assumption_text(plan: AnalysisPlan) -> str:
    """What the fixed design's verdicts assume, and its rule for differences without spread."""
    floor = sign_flip_min_seeds(plan.alpha, plan.size)
    if plan.test == "sign_flip":
        return (
            "each seed's difference is symmetric about the true difference (no normality): "
            "the exact sign-flip test, inverted into the interval. Its smallest p with n seeds "
            f"is 2/2^n, so it needs at least {floor} seeds to reach α/{plan.size}"
        )
    return (
        "the per-seed differences are normal (the paired t-test's assumption, which 5-10 "
        "seeds cannot check; skewed differences make it liberal). The exact sign-flip p is "
        "shown beside it, and the Answer marks a verdict that no distribution-free test could "
        f"reach with its seeds (fewer than {floor}: 2/2^n > α/{plan.size}); "
        '`analysis.test = "sign_flip"` makes the distribution-free test the verdict. Without '
        "spread (every seed moved by the same c) the interval is its limit as the sd goes to 0, "
        "[c, c], so one seed moved by a hair moves no verdict"
    )


def _anytime_assumption_text(plan: AnalysisPlan) -> str:
    """What the anytime design's verdicts assume: normal differences, and the prior scale g."""
    floor = sign_flip_min_seeds(plan.alpha, plan.size)
    return (
        "the per-seed differences are normal (the safe t-test's assumption; the exact "
        "sign-flip p is shown beside each row, and the Answer marks a verdict read at fewer "
        f"than {floor} seeds, where no distribution-free test could reach α/{plan.size}). "
        f"Prior scale of the standardised effect g = {SAFE_T_PRIOR_VARIANCE:g}: the "
        "unit-information prior (one observation's worth), the default of Pérez-Ortiz, Lardy, "
        "de Heide & Grünwald (2024); it sets how fast the e-value grows, never its validity. "
        "Without spread the e-value takes its limit, its ceiling (1 + n)^((n − 1)/2)"
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
        f"The confirmatory family of the plan: {label}, {plan.size} comparisons, each verdict "
        f"read off its simultaneous {level} {interval_name(plan)} "
        f"interval over seeds (family-wise error at most α = {plan.alpha:g}); the interval "
        "with the test set's own sampling added is shown beside it.",
        "",
    ]
    rows = confirmatory(frame)
    if rows.empty:
        lines.append("- No comparison: the study has a single arm.")
    lines += _fixed_undecidable(results, plan)
    labels = results.arm_labels
    for row in rows.itertuples():
        lines.append(
            f"- **{row.backbone}, {labels[row.arm]} vs {labels[row.baseline]}**: "
            f"{row.verdict}{normality_mark(row, plan)}. Δ {label} = "
            f"{fmt_diff(row.mean_diff, metric, unit=True)}, {level} CI "
            f"{fmt_interval(row.ci_low, row.ci_high, metric)} over seeds, "
            f"{fmt_interval(row.combined_ci_low, row.combined_ci_high, metric)} with test-set "
            f"sampling; Bonferroni p = {fmt_p(row.adjusted_pvalue)}, equivalence (TOST) "
            f"Bonferroni p = {fmt_p(row.tost_adjusted_pvalue)}, exact sign-flip p = "
            f"{fmt_p(row.sign_flip_p)}; n = {row.n} seeds"
            f"{' (underpowered)' if row.underpowered else ''}. "
            f"{follow_up_text(row.seeds_needed, row.n, plan, 'fixed')}"
        )
    return "\n".join(lines)


def _fixed_undecidable(results: StudyResults, plan: AnalysisPlan) -> list[str]:
    """A fixed design with too few seeds for its test to reject could only end inconclusive."""
    seeds = results.spec.evaluate.seeds
    needed = sign_flip_min_seeds(plan.alpha, plan.size) if plan.test == "sign_flip" else 2
    if seeds >= needed:
        return []
    return [
        f"**This design could not decide anything.** `evaluate.seeds` = {seeds} is below the "
        f"{needed} seeds at which the {TEST_NAMES[plan.test]} can reject at α/{plan.size}, "
        'so every comparison ends "inconclusive" whatever the runs gave.',
        "",
    ]


def normality_mark(row: Any, plan: AnalysisPlan) -> str:
    """The Answer's mark on a verdict that rests on the t-test's normality alone.

    With n seeds the smallest p of any test that assumes only symmetric differences is 2/2^n;
    below :func:`cce_bench.stats.sign_flip_min_seeds` it cannot reach α/m, so a "better" or
    "equivalent" there is the normal model's, not the data's.
    """
    if row.verdict == "inconclusive" or plan.test == "sign_flip":
        return ""
    if row.sign_flip_reachable is True or row.sign_flip_reachable == 1.0:
        return ""
    floor = sign_flip_min_seeds(plan.alpha, plan.size)
    return (
        f" (rests on normality: with {row.n} seeds no distribution-free test can reach "
        f"α/{plan.size}, which needs {floor})"
    )


def follow_up_text(seeds: Any, n: int, plan: AnalysisPlan, design: str) -> str:
    """The follow-up sentence, for the design the study file uses; nothing meaningless.

    ``design`` is "fixed" (a fixed-n follow-up under the plan's test) or "anytime" (a
    follow-up that looks after every seed, sized by simulating the anytime rule).
    """
    if seeds is None or pd.isna(seeds):
        if n < MIN_SEEDS:
            return f"No follow-up size: {n} seeds are too few to estimate the spread from."
        return "No follow-up size: the differences have no spread to size against."
    what = "paired seeds" if design == "fixed" else "seeds as `max_seeds` of an anytime design"
    if int(seeds) > FOLLOW_UP_CAP:
        return (
            f"A follow-up would need more than {FOLLOW_UP_CAP} {what} to detect "
            f"{margin_text(plan)} with 80% power: the margin is small against the spread."
        )
    return (
        f"A follow-up needs {int(seeds)} {what} to detect {margin_text(plan)} at "
        f"α/{plan.size} with 80% power."
    )


def fmt_follow_up(seeds: Any) -> str:
    """A follow-up size for a table: "—" when none means anything, "> cap" beyond the cap."""
    if seeds is not None and not pd.isna(seeds) and int(seeds) > FOLLOW_UP_CAP:
        return f"> {FOLLOW_UP_CAP}"
    return fmt_count(seeds)


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
            "p (sign-flip)": fmt_p(row.sign_flip_p),
            "p (Bonferroni)": fmt_p(row.adjusted_pvalue),
            "TOST p (Bonferroni)": fmt_p(row.tost_adjusted_pvalue),
            "Verdict": row.verdict,
            f"Seeds to detect {margin_text(plan)}": fmt_follow_up(row.seeds_needed),
        }
        for row in confirmatory(frame).itertuples()
    ]
    table = pd.DataFrame(rows)
    if "fixed_n_verdict" in frame:  # the anytime design: its verdict, then the fixed-n one
        shown = confirmatory(frame)
        table["Fixed-n verdict (not the verdict)"] = list(shown["fixed_n_verdict"])
        table["Confidence sequence (the verdict's)"] = [
            fmt_interval(low, high, plan.primary_metric)
            for low, high in zip(shown["cs_low"], shown["cs_high"], strict=True)
        ]
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
        "with new training seeds on this same test set? "
        f"({interval_name(plan)} interval over the paired seeds.)",
        f"- **CI, seeds + test set** answers: how far would it move with new seeds and a new "
        f"test set of as many lesions from the same population? {_sampling_note(sampling)}",
        f"- Both are simultaneous {level} intervals (α/{plan.size}), the level of the family. "
        f"TOST: two one-sided tests against ±margin ({margin}), Bonferroni at α/{2 * plan.size} "
        "each, the same as the interval lying inside ±margin. p (sign-flip): the exact "
        "sign-flip p, which assumes no normality; with n seeds it cannot go below 2/2^n. "
        f"Seeds to detect {margin}: {_follow_up_note(plan, anytime='fixed_n_verdict' in frame)} "
        f"— when fewer than {MIN_SEEDS} seeds or no spread leave nothing to size from. "
        f"† fewer than {MIN_SEEDS} paired seeds: underpowered.",
    ]
    return "\n".join(lines)


def _follow_up_note(plan: AnalysisPlan, *, anytime: bool) -> str:
    """How the follow-up sizes were found, for the design the study file uses."""
    if anytime:
        return (
            "the `max_seeds` an anytime follow-up needs for 80% power against a true "
            f"difference of {margin_text(plan)} at the observed sd, from simulating the anytime "
            "rule itself (e-value at m/α, looks after every seed from the first look)"
        )
    floor = (
        f", never below the {sign_flip_min_seeds(plan.alpha, plan.size)} the sign-flip test "
        "needs to reject at all"
        if plan.test == "sign_flip"
        else ""
    )
    return (
        f"paired seeds for 80% power to detect a true difference of {margin_text(plan)} with a "
        f"two-sided paired t-test at α/{plan.size}, from the observed sd of the differences "
        f"(prospective power){floor}"
    )


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
        f"SE² = s²_seed/K + SE²_test, SE²_test the covariance between different seeds' "
        f"differences across {sampling.resamples} bootstrap resamples of the "
        f"{test.image_ids.size} test images ({unit}, stratified by class, the same resample "
        "for both arms and every seed): the test set's share, without the seed × image "
        "interaction that s²_seed already holds; t quantile with K − 1 df, as the seeds' own."
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
