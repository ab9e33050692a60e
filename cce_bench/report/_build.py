"""The study's answer as a file: ``report.md`` with figures and CSV exports, from stored runs.

``build_report(results_dir)`` reads only what the study wrote and never trains, so
``cce-bench report`` can rebuild it at any time. It is deterministic: the same folder gives
byte-identical files (seeded test-set bootstrap, stable sorting, no timestamps of its own, PNGs
without software metadata), which lets a golden-file test pin the markdown and a reader diff two
rebuilds.

The pieces: :mod:`cce_bench.report._results` loads the folder, :mod:`cce_bench.report._families`
sorts the comparisons into the plan's confirmatory and exploratory families and judges them,
:mod:`cce_bench.report._test_sampling` measures what the test set's own sampling adds,
:mod:`cce_bench.report._tables` computes summaries and McNemar, :mod:`cce_bench.report._tuning`
reads the Optuna studies, :mod:`cce_bench.report._figures` draws, and
:mod:`cce_bench.report._answer`, :mod:`cce_bench.report._evidence` and
:mod:`cce_bench.report._sections` write the markdown. The plan comes first, then the Answer:
a reader knows what counts before reading what was found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cce_bench.data.labeled import CONFUSED_PAIRS
from cce_bench.errors import ResultsError
from cce_bench.metrics import HIGHER_IS_BETTER, METRIC_LABELS
from cce_bench.report._answer import (
    answer_section,
    confirmatory_display,
    confirmatory_section,
    looks_section,
    plan_section,
)
from cce_bench.report._bottom_line import bottom_line_section
from cce_bench.report._evidence import (
    confused_pairs_section,
    exploratory_section,
    recall_section,
)
from cce_bench.report._families import (
    AnalysisPlan,
    analysis_plan,
    comparison_frame,
    confirmatory,
)
from cce_bench.report._figures import (
    confusion_matrix_plot,
    optimisation_history_plot,
    paired_seed_plot,
)
from cce_bench.report._mechanism import (
    FIGURE_NAME,
    has_cce_arm,
    mechanism_plot,
    mechanism_runs,
    mechanism_section,
)
from cce_bench.report._more_figures import explanatory_figures
from cce_bench.report._results import (
    StudyResults,
    compute_hours,
    git_commit,
    library_versions,
    load_results,
    mean_confusion_matrices,
    seed_values,
)
from cce_bench.report._secondary import secondary_frame, secondary_section
from cce_bench.report._sections import (
    clinical_section,
    completeness_section,
    external_section,
    study_section,
    table1_section,
    title_section,
    tuning_section,
)
from cce_bench.report._sequential import (
    SequentialComparison,
    answer_lines,
    apply_sequential_verdicts,
    is_anytime,
    sequence_plot,
    sequential_comparisons,
    sequential_section,
)
from cce_bench.report._tables import (
    mcnemar_frame,
    metric_scale,
    seed_pairing,
    summary_frame,
)
from cce_bench.report._test_sampling import SamplingVariance, sampling_variance
from cce_bench.report._tuning import ArmTuning, read_tuning
from cce_bench.stats import ALPHA
from cce_bench.study.budget_log import budget_changes
from cce_bench.study.store import atomic_write_bytes

#: Metrics that get a paired seed plot: the study's usual tuning target, the two accuracies
#: (top-1 and the paper's ACC), melanoma sensitivity, and the paper's headline confusion.
PLOTTED_METRICS: tuple[str, ...] = (
    "balanced_accuracy",
    "top1",
    "paper_accuracy",
    "melanoma_sensitivity",
    "pair_error_nv_mel",
)

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"


def build_report(results_dir: Path | str) -> Path:
    """Write ``report.md``, ``figures/*.png``, ``runs.csv``, ``summary.csv`` and ``stats.csv``.

    Returns the path of ``report.md``. Raises a ``ResultsError`` when the folder is not a
    study's results folder or holds no evaluation run.
    """
    results = load_results(results_dir)
    root = results.store.root
    if not os.access(root, os.W_OK):
        raise ResultsError(
            f"cannot write the report into {root} (not writable); copy the folder somewhere "
            "writable and run `cce-bench report` on the copy"
        )
    answer = judge(results)
    # The store names studies after the folder; the study's own name is the fallback.
    study_names = {
        (backbone, arm): (
            results.store.optuna_study_name(backbone, arm),
            f"{results.name}/{backbone}/{arm}",
        )
        for backbone in results.backbones
        for arm in results.arms
    }
    tunings, tuning_problem = read_tuning(results.store.storage_url, study_names)
    figures = draw_figures(results, tunings)
    figures += explanatory_figures(results, answer.plan, answer.comparisons, root / FIGURES_DIR)
    _write_csv(results.runs, root / "runs.csv")
    _write_csv(summary_frame(results.runs), root / "summary.csv")
    _write_csv(answer.comparisons, root / "stats.csv")
    plan, comparisons = answer.plan, answer.comparisons
    mechanism = mechanism_runs(results) if has_cce_arm(results) else pd.DataFrame()
    secondary = secondary_frame(
        results.runs,
        plan=plan,
        metrics=results.spec.analysis.secondary_metrics,
        baseline=results.baseline,
        seeds=results.seeds,
        arm_labels=results.arm_labels,
    )
    if not mechanism.empty:
        figures.append(mechanism_plot(results, mechanism, root / FIGURES_DIR / FIGURE_NAME))
    if answer.sequential is not None:
        figures.append(
            sequence_plot(results, plan, answer.sequential, root / FIGURES_DIR / "sequence.png")
        )
        answer_text = "\n".join(answer_lines(results, plan, answer.sequential, comparisons))
        design_text = sequential_section(results, plan, answer.sequential)
    else:
        answer_text, design_text = answer_section(results, plan, comparisons), ""
    sections = [
        title_section(results),
        bottom_line_section(results, plan, comparisons),
        plan_section(results, plan, stated="analysis" in results.store.study_dict()),
        answer_text,
        design_text,
        study_section(results, _header_facts(results, tunings)),
        looks_section(results, budget_changes(results.store)),
        completeness_section(results),
        table1_section(results),
        clinical_section(results),
        external_section(results),
        confirmatory_section(results, plan, comparisons, answer.sampling),
        secondary_section(results.runs, secondary, plan, results.arm_labels),
        exploratory_section(results, plan, comparisons),
        recall_section(results, plan, comparisons),
        confused_pairs_section(results, plan, comparisons, _mcnemar(results)),
        mechanism_section(results, mechanism),
        tuning_section(results, tunings, tuning_problem),
        _figures_section(figures, root),
        _files_section(results),
    ]
    path = root / REPORT_FILE
    text = "\n\n".join(section for section in sections if section)
    atomic_write_bytes(path, (text.rstrip() + "\n").encode("utf-8"))
    return path


@dataclass(frozen=True)
class Judgement:
    """The plan, what the test set's sampling adds, and every comparison in its family."""

    plan: AnalysisPlan
    sampling: SamplingVariance
    comparisons: pd.DataFrame
    #: The anytime design's comparisons (their verdicts are the Answer's), or None (fixed).
    sequential: list[SequentialComparison] | None = None


def judge(results: StudyResults) -> Judgement:
    """Every comparison of the report (numeric; ``stats.csv``), judged under the study's plan."""
    plan = analysis_plan(results.spec, results.backbones)
    pairs = _paired_seeds(results)
    sampling = sampling_variance(
        plan,
        pairs,
        baseline=results.baseline,
        manifest=results.manifest,
        class_names=results.class_names,
        load=_prediction_loader(results),
    )
    comparisons = comparison_frame(
        results.runs,
        plan=plan,
        baseline=results.baseline,
        arms=results.arms,
        seeds=results.seeds,
        class_names=results.class_names,
        arm_labels=results.arm_labels,
        test_se=sampling.se,
    )
    if not is_anytime(results):
        return Judgement(plan, sampling, comparisons)
    sequential = sequential_comparisons(results, plan)
    judged = apply_sequential_verdicts(comparisons, sequential, plan, results.spec.evaluate.seeds)
    return Judgement(plan, sampling, judged, sequential)


def significance_table(results_dir: Path | str) -> pd.DataFrame:
    """The confirmatory family as the report displays it (strings), for the CLI to print.

    The numeric version of every comparison, exploratory ones included, is ``stats.csv``.
    """
    results = load_results(results_dir)
    answer = judge(results)
    table = confirmatory_display(confirmatory(answer.comparisons), answer.plan, results.arm_labels)
    # What the columns mean depends on the plan: its alpha and family size, and whether the
    # Verdict column is the anytime design's (then the p-values are the fixed-n reading).
    table.attrs["plan"] = answer.plan
    table.attrs["stopping"] = results.spec.evaluate.stopping
    return table


def significance_as_dict(report: Path, table: pd.DataFrame) -> dict[str, object]:
    """The report's path and ``significance_table`` as plain JSON values: what
    ``cce-bench report --json`` prints.

    One row per paired comparison and metric, with the same (formatted) columns the table has,
    plus how the p-values were adjusted, so that a script reads exactly what a person sees; a
    single-arm study has no rows.
    """
    rows = [{str(key): value for key, value in row.items()} for row in table.to_dict("records")]
    plan = table.attrs.get("plan")
    stopping = table.attrs.get("stopping", "fixed")
    return {
        "report": str(report),
        "alpha": plan.alpha if plan is not None else ALPHA,
        "adjustment": (
            f"Bonferroni over the confirmatory family of {plan.size} (the verdicts read off "
            "its simultaneous intervals); Benjamini-Yekutieli over the exploratory family"
            if plan is not None
            else "Bonferroni over the confirmatory family"
        ),
        "verdict": (
            "anytime design (e-value and confidence sequence); p-values and intervals are the "
            "fixed-n reading of the same seeds, not the verdict"
            if stopping == "anytime"
            else "fixed design: the paired tests of the columns"
        ),
        "comparisons": rows,
    }


def draw_figures(results: StudyResults, tunings: list[ArmTuning]) -> list[Path]:
    """Every figure of the report under ``figures/``; stale PNGs from older builds are removed."""
    folder = results.store.root / FIGURES_DIR
    labels = results.arm_labels
    paths = []
    for metric in PLOTTED_METRICS if len(results.arms) > 1 else ():
        scale, unit = metric_scale(metric)
        paths.append(
            paired_seed_plot(
                seed_values(results, metric),
                metric_label=METRIC_LABELS[metric],
                scale=scale,
                unit=unit,
                baseline=results.baseline,
                arms=results.arms,
                backbones=results.backbones,
                arm_labels=labels,
                path=folder / f"paired_{metric}.png",
                higher_is_better=HIGHER_IS_BETTER[metric],
            )
        )
    grid = {"backbones": results.backbones, "arms": results.arms, "arm_labels": labels}
    paths.append(
        confusion_matrix_plot(
            mean_confusion_matrices(results),
            class_names=[name.upper() for name in results.class_names],
            path=folder / "confusion_matrices.png",
            **grid,
        )
    )
    metric = results.spec.tune.metric
    scale, unit = metric_scale(metric)
    paths.append(
        optimisation_history_plot(
            {(t.backbone, t.arm): t.history for t in tunings if t.history is not None},
            metric_label=METRIC_LABELS[metric],
            scale=scale,
            unit=unit,
            path=folder / "optimisation_history.png",
            **grid,
        )
    )
    for stale in sorted(set(folder.glob("*.png")) - set(paths)):
        stale.unlink()
    return paths


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """CSV with ``\\n`` line ends and full float precision, written atomically."""
    atomic_write_bytes(path, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))


def _header_facts(results: StudyResults, tunings: list[ArmTuning]) -> dict[str, object]:
    """Versions, commit and compute totals for the header (tuning wall time from Optuna)."""
    return {
        "versions": library_versions(results.records),
        "commit": git_commit(results.records),
        "hours": compute_hours(results),
        "tuning_hours": sum(t.wall_time_s for t in tunings) / 3600,
        "tuning_trials": sum(sum(t.counts.values()) for t in tunings),
    }


def _paired_seeds(results: StudyResults) -> dict[tuple[str, str], list[int]]:
    """Per (backbone, arm other than the baseline) the seeds both arms completed."""
    pairs = {}
    for backbone in results.backbones:
        for arm in results.arms[1:]:
            runs, baseline, seeds = results.runs, results.baseline, results.seeds
            pairs[(backbone, arm)] = seed_pairing(runs, backbone, baseline, arm, seeds)[0]
    return pairs


def _prediction_loader(results: StudyResults):
    """A run's test predictions by (backbone, arm, seed); None when missing or unreadable (the
    seed is then skipped, and the tables that use predictions say how many seeds they read)."""

    def load(backbone: str, arm: str, seed: int):
        record = results.latest_record(backbone, arm, seed)
        try:
            return results.store.load_predictions(record) if record else None
        except ResultsError:
            return None

    return load


def _mcnemar(results: StudyResults) -> pd.DataFrame:
    """McNemar per seed on the stored predictions, for every backbone and arm pair."""
    paired = _paired_seeds(results)
    pairs = [(backbone, results.baseline, arm) for backbone, arm in paired]
    return mcnemar_frame(
        pairs,
        paired,
        _prediction_loader(results),
        class_names=results.class_names,
        confused_pairs=CONFUSED_PAIRS,
    )


def _figures_section(figures: list[Path], root: Path) -> str:
    """Every figure embedded by its path relative to the report."""
    lines = ["## Figures", ""]
    for path in figures:
        metric = path.stem.removeprefix("paired_")
        title = f"Paired seeds: {METRIC_LABELS[metric]}" if metric in METRIC_LABELS else None
        title = title or path.stem.replace("_", " ").capitalize()
        lines += [f"![{title}]({path.relative_to(root).as_posix()})", ""]
    return "\n".join(lines).rstrip()


def _files_section(results: StudyResults) -> str:
    """What else sits beside the report and how to rebuild it."""
    return "\n".join(
        [
            "## Files",
            "",
            "- `runs.csv`: one row per evaluation run (its latest record), metrics flattened.",
            "- `summary.csv`: mean and sd per backbone × arm × metric over completed seeds.",
            "- `stats.csv`: every comparison with its family, adjusted p, intervals and verdict, "
            "full precision.",
            f"- Rebuild this report without training: `cce-bench report <this folder>` "
            f"({len(results.records)} run records read).",
        ]
    )
