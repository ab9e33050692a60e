"""The report's descriptive sections: the study, its completeness, the per-arm tables, tuning.

Each function returns one markdown section as a string, from the loaded results
(:mod:`cce_bench.report._results`) and the frames of :mod:`cce_bench.report._tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cce_bench.config import DataSpec, TuneSpec
from cce_bench.metrics import METRIC_LABELS
from cce_bench.report._results import StudyResults, incomplete_runs
from cce_bench.report._tables import (
    CLINICAL_METRICS,
    PAPER_HEADERS,
    PAPER_METRICS,
    PAPER_TABLE_1,
    markdown_table,
    metric_scale,
    metric_table,
    with_paper_rows,
)
from cce_bench.report._tuning import ArmTuning, tuning_table

#: How each split kind is described: the paper's split, and the one that keeps a lesion's images
#: on one side (HAM10000 has 1.34 images per lesion, so a random split leaks lesions).
SPLIT_DESCRIPTIONS: dict[str, str] = {
    "paper": "stratified random 80/20 by image, as in the paper",
    "lesion": "stratified and grouped by lesion_id, so no lesion has images on both sides",
    "official": "the dataset's own official split",
}


def title_section(results: StudyResults) -> str:
    """The report's title and what it compares."""
    labels = results.arm_labels
    return "\n".join(
        [
            f"# Report: {results.name}",
            "",
            f"{' and '.join(labels[a] for a in results.arms[1:])} compared with the baseline "
            f"{labels[results.baseline]}, paired over seeds: seed i gives every arm the same "
            "initialisation, data order and augmentation. Built from the stored runs by "
            "`cce-bench report`; nothing was retrained.",
        ]
    )


def study_section(results: StudyResults, facts: dict[str, Any]) -> str:
    """The study's facts: data, split and sizes, seeds, hardware, versions, compute."""
    data, tune = results.spec.data, results.spec.tune
    labels = results.arm_labels
    arms = ", ".join(
        f"{labels[a]} = `{a}`" + (" (baseline)" if a == results.baseline else "")
        for a in results.arms
    )
    split = data.split
    hours, runs = facts["hours"], results.runs
    devices = runs["device"].fillna("unknown").astype(str).value_counts().sort_index()
    nodes = sorted(set(runs["node"].dropna().astype(str)))
    facts_rows = [
        ("Study", f"`{results.name}`"),
        ("Data", _data_line(data)),
        ("Split", f"`{split}`: {SPLIT_DESCRIPTIONS.get(split, split)}; " + _split_line(data)),
        ("Backbones", ", ".join(results.backbones)),
        ("Arms", arms),
        ("Seeds", f"{', '.join(map(str, results.seeds))} ({len(results.seeds)} per arm)"),
        ("Tuning", _tuning_line(tune)),
        *_sampler_row(results.spec.train.sampler),
        (
            "Hardware",
            ", ".join(f"{d} ({n} runs)" for d, n in devices.items())
            + f"; nodes: {', '.join(nodes) or 'unknown'}"
            + gpu_models_line(runs),
        ),
        ("Determinism", determinism_line(results.records)),
        ("Library versions", ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) or "—"),
        ("Git commit", f"`{facts['commit']}`"),
        ("Compute", _compute_line(results, hours, facts)),
    ]
    lines = ["## Study", "", markdown_table(pd.DataFrame(facts_rows, columns=["", "Value"]))]
    lines += ["", "Initial weights and input normalisation per backbone:", ""]
    lines += [markdown_table(initialisation_table(results))]
    totals = dataset_totals(results.manifest)
    if totals:
        lines += ["", totals]
    sizes = split_sizes(results.manifest)
    if sizes is not None:
        lines += ["", "Split sizes (from `split.json`):", "", markdown_table(sizes)]
    return "\n".join(lines)


def _sampler_row(sampler: str) -> list[tuple[str, str]]:
    """A row only for a study that changed how epochs draw images (the default shuffles)."""
    if sampler != "balanced":
        return []
    return [
        (
            "Training sampler",
            "`balanced`: each epoch draws as many images as the training part holds, with "
            "replacement, every class equally likely",
        )
    ]


def determinism_line(records: list[dict[str, Any]]) -> str:
    """Whether the runs used deterministic kernels (``train.deterministic``), from their specs.

    On a GPU it decides whether a seed's rerun gives the same numbers (and costs speed:
    cuDNN autotuning off); a study whose runs differ says so.
    """
    specs = [record["spec"] for record in records if record.get("spec")]
    used = {bool(spec.get("deterministic", False)) for spec in specs}
    on_gpu = any(str(record.get("device", "")).startswith("cuda") for record in records)
    words = {
        True: "deterministic kernels (`train.deterministic = true`; cuDNN autotuning off)",
        False: "fastest kernels (`train.deterministic = false`; "
        + ("GPU reruns may differ in the last digits)" if on_gpu else "CPU runs repeat exactly)"),
    }
    if not used:
        return "unknown (no run recorded its spec)"
    return "; ".join(words[flag] for flag in sorted(used, reverse=True)) + (
        " (the runs differ)" if len(used) > 1 else ""
    )


def gpu_models_line(runs: pd.DataFrame) -> str:
    """``; GPUs: 8 x NVIDIA H100 80GB HBM3``: each model and how many distinct cards (by UUID)
    ran the study's runs; empty when no run recorded a GPU."""
    if "gpu_model" not in runs or "gpu_uuid" not in runs:
        return ""
    cards: dict[str, set[str]] = {}
    for models, uuids in zip(runs["gpu_model"], runs["gpu_uuid"], strict=True):
        if not isinstance(models, str) or not isinstance(uuids, str):
            continue
        for model, uuid in zip(models.split(","), uuids.split(","), strict=False):
            cards.setdefault(model, set()).add(uuid)
    counted = [f"{len(uuids)} x {model}" for model, uuids in sorted(cards.items())]
    return f"; GPUs: {', '.join(counted)}" if counted else ""


def initialisation_table(results: StudyResults) -> pd.DataFrame:
    """Per backbone: where its weights came from, and the channel mean and std of its inputs.

    A weights file is named with the SHA-256 its runs recorded (hashed as the study loaded),
    which identifies the weights wherever the file has moved since; more than one digest means
    the file changed between runs of the study, and every one is shown.
    """
    from cce_bench.models import IMAGENET_MEAN, IMAGENET_STD, backbone_normalization

    rows = []
    for backbone in results.backbones:
        mean, std = backbone_normalization(backbone)
        imagenet = " (ImageNet's)" if (mean, std) == (IMAGENET_MEAN, IMAGENET_STD) else ""
        rows.append(
            (
                f"`{backbone}`",
                _initialisation_words(results, backbone),
                f"mean {_triple(mean)}, std {_triple(std)}{imagenet}",
            )
        )
    return pd.DataFrame(rows, columns=["Backbone", "Initialisation", "Normalisation"])


def _initialisation_words(results: StudyResults, backbone: str) -> str:
    initialisation = results.spec.models.initialisation(backbone)
    if initialisation is True:
        return "timm hub weights"
    if initialisation is False:
        return "random initialisation"
    digests = sorted(
        {
            (record.get("spec") or {}).get("pretrained_sha256") or "not recorded"
            for record in results.records
            if record.get("backbone") == backbone
        }
    )
    shown = ", ".join(f"`{digest}`" for digest in digests) or "not recorded"
    return f"weights from `{portable_path(initialisation)}`, SHA-256 {shown}"


def _triple(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:.3f}" for value in values) + ")"


def dataset_totals(manifest: dict[str, Any]) -> str:
    """The dataset's images and lesions, the numbers a reader checks first ("" if unknown)."""
    images, lesions = manifest.get("images"), manifest.get("lesions")
    if not isinstance(images, int):
        return ""
    line = f"Dataset (from `split.json`): {images:,} images"
    if isinstance(lesions, int):
        line += f" of {lesions:,} lesions"
    return line + "."


def _data_line(data: DataSpec) -> str:
    parts = [f"source `{data.source}`"]
    if data.path:
        parts.append(f"path `{portable_path(data.path)}`")
    if data.n_images:
        parts.append(f"{data.n_images} images")
    parts.append(f"{data.image_size} px" if data.image_size else "each backbone's native size")
    return ", ".join(parts)


def _split_line(data: DataSpec) -> str:
    return (
        f"test fraction {data.test_fraction}, validation fraction {data.val_fraction}, "
        f"split_seed {data.split_seed}"
    )


def _tuning_line(tune: TuneSpec) -> str:
    """The tuning budget, and what the design makes the differences cover."""
    line = (
        f"{tune.n_trials} trials per arm on validation "
        f"{METRIC_LABELS[tune.metric].lower()}, pruner `{tune.pruner}`"
    )
    if tune.replicates == 1:
        return (
            f"{line}; one tuning per arm, so the paired differences are conditional on the "
            "settings it found (tuning's own randomness is not in them)"
        )
    return (
        f"{line}, {tune.replicates} independent replicates (sampler and training seed "
        f"sampler_seed + r, {tune.replicates}x the tuning budget); evaluation seed i uses "
        f"replicate i mod {tune.replicates}'s best setting, so the paired differences include "
        "tuning's randomness (the Tuning section shows replicate 0)"
    )


def fmt_hours(hours: float) -> str:
    """Wall time in hours, or in minutes below one hour (a quickstart takes minutes)."""
    return f"{hours:.2f} h" if hours >= 1 else f"{hours * 60:.1f} min"


def _compute_line(results: StudyResults, hours: dict[str, float], facts: dict[str, Any]) -> str:
    """Evaluation wall time and device-hours, then tuning's, as one line of the header."""
    device_hours = [
        f"{hours[key]:.3g} {unit}"
        for key, unit in (("gpu", "GPU-hours"), ("cpu_core", "CPU core-hours"))
        if hours[key]
    ]
    line = (
        f"evaluation: {len(results.records)} run records, {fmt_hours(hours['wall'])} of run wall "
        f"time in total ({', '.join(device_hours) or '0 device-hours'})"
    )
    if facts["tuning_trials"]:
        line += (
            f"; tuning: {facts['tuning_trials']} trials, "
            f"{fmt_hours(facts['tuning_hours'])} of trial wall time"
        )
    return line


def split_sizes(manifest: dict[str, Any]) -> pd.DataFrame | None:
    """Images and lesions per part from the split manifest, or None if it has no parts."""
    parts = manifest.get("parts", manifest)
    rows = []
    for name in ("train", "val", "test", "external"):
        info = parts.get(name) if isinstance(parts, dict) else None
        if not isinstance(info, dict):
            continue
        rows.append(
            (name, _count(info, "images", "image_ids"), _count(info, "lesions", "lesion_ids"))
        )
    if not rows:
        return None
    return pd.DataFrame(rows, columns=["Part", "Images", "Lesions"])


def _count(info: dict[str, Any], number_key: str, list_key: str) -> str:
    for key in (number_key, f"n_{number_key}"):
        if isinstance(info.get(key), int):
            return str(info[key])
    values = info.get(list_key)
    return str(len(set(values))) if isinstance(values, list) else "—"


def _arm_table(
    results: StudyResults, metrics: Sequence[str], headers: Sequence[str]
) -> pd.DataFrame:
    """One row per backbone and arm of the study: "mean ± sd" of each metric over its seeds."""
    return metric_table(
        results.runs,
        metrics,
        headers,
        backbones=results.backbones,
        arms=results.arms,
        arm_labels=results.arm_labels,
    )


def completeness_section(results: StudyResults) -> str:
    """ "Runs that did not complete": every failed, diverged, interrupted or missing run."""
    missing = incomplete_runs(results)
    expected = len(results.backbones) * len(results.arms) * len(results.seeds)
    retried = len(results.records) - len(results.runs)
    lines = ["## Runs that did not complete", ""]
    if missing.empty:
        lines.append(f"All {expected} expected evaluation runs completed.")
    else:
        lines += [
            f"{len(missing)} of {expected} expected evaluation runs did not complete; they are "
            "left out of the means, and their seeds out of the paired comparisons:",
            "",
            markdown_table(missing),
        ]
    if retried:
        lines += [
            "",
            f"{retried} earlier attempt(s) were superseded by a later record of the "
            "same run (a failed or interrupted run is retried on resume).",
        ]
    return "\n".join(lines)


def table1_section(results: StudyResults) -> str:
    """Table 1 in the paper's format, with the published values for HAM10000 studies."""
    table = _arm_table(results, PAPER_METRICS, PAPER_HEADERS)
    is_ham = results.spec.data.source == "ham10000"
    if is_ham:
        table = with_paper_rows(table, backbones=results.backbones)
    lines = [
        "## Table 1 (the paper's format)",
        "",
        "Macro one-vs-rest metrics over classes (paper eqs. 4-7), in %, mean ± sd over the "
        "completed seeds.",
        "",
        markdown_table(table),
        "",
        'Note: the paper\'s "ACC" is the macro one-vs-rest accuracy, not top-1 accuracy: each '
        "error is one false negative and one false positive, so ACC = 1 − 2·(1 − top-1)/C "
        f"(C = {len(results.class_names)} here); it sits near 97% even at 90% top-1.",
    ]
    if is_ham and any(backbone in PAPER_TABLE_1 for backbone in results.backbones):
        lines.append(
            'Rows marked "paper, published" are Table 1 of the CCE paper (HAM10000, one run '
            "each, split and seeds unstated), for reference only: not part of any test."
        )
    elif is_ham:
        lines.append(
            "The paper's published Table 1 covers "
            + ", ".join(PAPER_TABLE_1)
            + " only, none of this study's backbones, so no published rows are shown."
        )
    return "\n".join(lines)


def clinical_section(results: StudyResults) -> str:
    """Top-1, balanced accuracy, macro F1, melanoma sensitivity and macro AUC per arm."""
    headers = [METRIC_LABELS[m] + (" (%)" if metric_scale(m)[1] else "") for m in CLINICAL_METRICS]
    table = _arm_table(results, CLINICAL_METRICS, headers)
    return "\n".join(
        [
            "## Clinical metrics",
            "",
            "Mean ± sd over the completed seeds. Balanced accuracy is the mean recall over the "
            "classes present in the test set; melanoma sensitivity is the recall of MEL; macro "
            "AUC is one-vs-rest from the predicted probabilities.",
            "",
            markdown_table(table),
        ]
    )


def external_section(results: StudyResults) -> str:
    """Means on the external test set, when the study had one ("" otherwise).

    Shown for reference beside the main test split; its comparisons are not in the
    confirmatory family, which stays the one the study was designed around.
    """
    metrics = PAPER_METRICS + CLINICAL_METRICS
    columns = [f"external_{metric}" for metric in metrics]
    if not any(column in results.runs for column in columns):
        return ""
    headers = [*PAPER_HEADERS, *(METRIC_LABELS[metric] for metric in CLINICAL_METRICS)]
    table = _arm_table(results, columns, headers)
    source = results.spec.data.external_test
    return "\n".join(
        [
            "## External test set",
            "",
            f"The same runs scored on the external test set `{source}` (mean ± sd, % except "
            "macro AUC); for reference, not part of the significance family.",
            "",
            markdown_table(table),
        ]
    )


def tuning_section(results: StudyResults, tunings: list[ArmTuning], problem: str) -> str:
    """Per arm the best settings and trial counts from Optuna, and where to see more."""
    metric = results.spec.tune.metric
    scale = metric_scale(metric)[0]
    lines = [
        "## Tuning",
        "",
        f"Best trial per arm on validation {METRIC_LABELS[metric].lower()} "
        f"({'%' if scale != 1.0 else 'absolute'}); evaluation retrained these settings on "
        "train + validation for every seed. Failed trials include those a stopped driver left "
        "behind.",
        "",
    ]
    if problem:
        lines += [f"{problem[0].upper()}{problem[1:]}.", ""]
    else:
        lines += [markdown_table(tuning_table(tunings, results.arm_labels, scale=scale)), ""]
    # The folder's path depends on where the reader stands (and report.md must not depend on
    # how it was built): the command run from inside the folder always names one that exists;
    # `cce-bench report` also prints it with the folder as it was given.
    lines.append(
        "Every trial with its learning curve: `cce-bench dashboard .` run in this report's "
        "folder (Optuna dashboard, read-only)."
    )
    return "\n".join(lines)


def portable_path(path: Path | str) -> str:
    """A path as a reader elsewhere can use it: relative paths as given, absolute ones by their
    last part only (``…/ham10000``), since the machine that ran the study laid out its disks
    its own way; a weights file is identified by its SHA-256 beside it."""
    path = Path(path)
    return path.as_posix() if not path.is_absolute() else f"…/{path.name}"
