"""The checks of a study that the schema alone cannot make: registries, files, combinations.

Run by ``load_study`` after the schema has read the file, in the order a user reads it:
``name``, ``[data]``, ``[models]``, ``[losses]``, ``[train]``, ``[tune]``, ``[analysis]``,
``[resources]``. The
first problem raises a ``StudyFileError`` naming the file, the dotted key, what is wrong and the
fix. Relative paths are resolved against the study file's folder and must exist.

The registries are imported inside the checks: ``import cce_bench.config`` stays cheap for
``cce-bench --help``, and ``load_study`` pays for timm (about 4 s, once) only when it runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
from pathlib import Path
from typing import Any

from cce_bench.config._reader import StudyFileError, unknown_choice_detail
from cce_bench.config._weights import check_initialisations
from cce_bench.config.schema import (
    AnalysisSpec,
    DataSpec,
    LossesSpec,
    ResourcesSpec,
    StudySpec,
    TrainSpec,
    toml_value,
)
from cce_bench.data import SYNTHETIC_DIFFICULTY, SYNTHETIC_N_IMAGES
from cce_bench.data.cache import RESIZE_MODES, resize_mode_name
from cce_bench.data.sources import SOURCES, available_sources
from cce_bench.data.splits import available_splits
from cce_bench.errors import DataError, ModelError
from cce_bench.models import check_image_size, resolve_backbone

SYNTHETIC = "synthetic"
#: Defaults of the synthetic-only keys, the synthetic source's own (``cce_bench.data``).
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "n_images": SYNTHETIC_N_IMAGES,
    "difficulty": SYNTHETIC_DIFFICULTY,
}
#: ``[data]`` keys passed to the source's loader as options (docs/interfaces.md, "Data").
SOURCE_OPTIONS: tuple[str, ...] = ("n_images", "difficulty", "metadata")
#: Sources that ship their own train/val/test assignment (MedMNIST's DermaMNIST).
OFFICIAL_SPLIT_SOURCES: tuple[str, ...] = ("dermamnist",)
#: A results folder name that is safe on Linux, macOS and Windows: letters, digits, ``._-``,
#: no leading dot or dash (hidden files, CLI flags), no trailing dot (Windows drops it).
SAFE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9_-])?")


class _StudyChecks:
    """The checks that need a registry or more than one key, for one study file."""

    def __init__(self, origin: str, base_dir: Path) -> None:
        self.origin = origin
        self.base_dir = base_dir

    def fail(self, key: str | None, detail: str) -> StudyFileError:
        return StudyFileError(self.origin, key, detail)

    def check(self, spec: StudySpec, data_path: str | os.PathLike[str] | None) -> StudySpec:
        if not SAFE_NAME.fullmatch(spec.name):
            raise self.fail(
                "name",
                f"`name` = {spec.name!r} is not a safe folder name (results go to "
                "<results-dir>/<name>/); use letters, digits, '.', '_' and '-', at most 100, "
                'e.g. name = "my-study"',
            )
        spec = dataclasses.replace(spec, data=self.data(spec.data, data_path))
        self.models(spec)
        self.losses(spec.losses)
        self.train(spec.train)
        self.tune(spec)
        self.evaluate(spec)
        self.analysis(spec)
        self._sign_flip_can_decide(spec)
        spec = dataclasses.replace(spec, resources=self.resources(spec))
        # Last: fitting a weights file to its architecture builds the model (timm, torch:
        # seconds), so every check that needs only names and numbers refuses a typo first.
        initialisations = check_initialisations(spec.models, fail=self.fail, resolve=self._resolve)
        return dataclasses.replace(spec, models=initialisations)

    # -- [data] --------------------------------------------------------------------------------
    def data(self, data: DataSpec, data_path: str | os.PathLike[str] | None) -> DataSpec:
        data = self._data_names(data)
        if data.split == "official" and data.source not in OFFICIAL_SPLIT_SOURCES:
            raise self.fail(
                "data.split",
                f"`data.split` = 'official' needs a source that ships its own split "
                f"({', '.join(OFFICIAL_SPLIT_SOURCES)}), not {data.source!r}; "
                "use 'paper' or 'lesion'",
            )
        if data.test_fraction + data.val_fraction >= 1.0:
            raise self.fail(
                "data.val_fraction",
                f"`data.test_fraction` + `data.val_fraction` = "
                f"{data.test_fraction + data.val_fraction:g} leaves no training images; "
                "keep their sum below 1 (e.g. 0.2 and 0.15)",
            )
        self._source_specific_keys(data)
        synthetic = data.source == SYNTHETIC
        return dataclasses.replace(
            data,
            path=self._data_folder(data, data_path),
            metadata=self._existing(data.metadata, "data.metadata"),
            external_test=self._existing(data.external_test, "data.external_test"),
            **{
                key: default if synthetic and getattr(data, key) is None else getattr(data, key)
                for key, default in SYNTHETIC_DEFAULTS.items()
            },
        )

    def _data_names(self, data: DataSpec) -> DataSpec:
        """Source and split from their registries; the resize mode by its canonical name."""
        for key, value, known in (
            ("data.source", data.source, available_sources()),
            ("data.split", data.split, available_splits()),
        ):
            if value not in known:
                raise self.fail(key, unknown_choice_detail(key, value, known))
        try:
            mode = resize_mode_name(data.resize_mode)  # accepts "crop" for "center_crop"
        except DataError as error:
            detail = unknown_choice_detail("data.resize_mode", data.resize_mode, RESIZE_MODES)
            raise self.fail("data.resize_mode", detail) from error
        return dataclasses.replace(data, resize_mode=mode)

    def _source_specific_keys(self, data: DataSpec) -> None:
        """Options the source's loader does not take are refused rather than silently ignored.

        The loader's signature in ``cce_bench.data.sources.SOURCES`` is the one record of which
        source takes ``n_images``, ``difficulty`` or ``metadata``.
        """
        for option in SOURCE_OPTIONS:
            if getattr(data, option) is None:
                continue
            takers = [
                name
                for name, loader in SOURCES.items()
                if option in inspect.signature(loader).parameters
            ]
            if data.source not in takers:
                raise self.fail(
                    f"data.{option}",
                    f"`data.{option}` applies to source {' or '.join(takers)} only, not "
                    f"{data.source!r}; remove it",
                )

    def _data_folder(self, data: DataSpec, data_path: str | os.PathLike[str] | None) -> Path | None:
        given_by = "`data.path` (from --data)" if data_path else "`data.path`"
        if data_path:
            folder: Path | None = Path(data_path).expanduser().resolve()
        else:
            folder = self._resolve(data.path)
        if data.source == SYNTHETIC:
            if folder is not None:
                raise self.fail(
                    "data.path",
                    f"{given_by} is set, but source 'synthetic' makes its images in memory and "
                    "reads no folder; remove it, or set `data.source` to the source the "
                    "folder holds (`cce-bench data check PATH` tells)",
                )
            return None
        if folder is None:
            raise self.fail(
                "data.path",
                f"`data.path` is empty, but source {data.source!r} reads its images from disk; "
                "pass --data PATH or set `path` under [data]",
            )
        if not folder.exists():
            raise self.fail("data.path", f"{given_by} {folder} does not exist; check the path")
        return folder

    def _resolve(self, path: Path | None) -> Path | None:
        return None if path is None else (self.base_dir / path.expanduser()).resolve()

    def _existing(self, path: Path | None, key: str) -> Path | None:
        resolved = self._resolve(path)
        if resolved is not None and not resolved.exists():
            raise self.fail(key, f"`{key}` {resolved} does not exist; fix the path or remove it")
        return resolved

    # -- [models] ------------------------------------------------------------------------------
    def models(self, spec: StudySpec) -> None:
        """Backbone names and image sizes, from timm's cached catalogue (no timm import)."""
        backbones = spec.models.backbones
        self._names_listed("models.backbones", backbones, example='["resnet18"]')
        for backbone in backbones:
            try:
                resolve_backbone(backbone)
            except ModelError as error:
                raise self.fail("models.backbones", f"`models.backbones`: {error}") from error
        if spec.data.image_size is not None:
            for backbone in backbones:
                try:
                    check_image_size(backbone, spec.data.image_size)
                except ModelError as error:
                    raise self.fail("data.image_size", f"`data.image_size`: {error}") from error

    def _names_listed(self, key: str, names: tuple[str, ...], *, example: str) -> None:
        if not names:
            raise self.fail(key, f"`{key}` is empty; list at least one, e.g. {example}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise self.fail(key, f"`{key}` lists {', '.join(repeated)} twice; list each once")

    # -- [losses], [train] ---------------------------------------------------------------------
    def losses(self, losses: LossesSpec) -> None:
        from cce_bench.loss_registry import available_losses

        self._names_listed("losses.arms", losses.arms, example='["ce", "cce"]')
        known = available_losses()
        for arm in losses.arms:
            if arm not in known:
                raise self.fail("losses.arms", unknown_choice_detail("losses.arms", arm, known))
        if losses.baseline not in losses.arms:
            raise self.fail(
                "losses.baseline",
                f"`losses.baseline` = {losses.baseline!r} is not one of `losses.arms` "
                f"({', '.join(losses.arms)}); add it to the arms or pick one of them",
            )

    def train(self, train: TrainSpec) -> None:
        from cce_bench.data.augment_policies import available_policies

        policies = available_policies()
        if train.augment_policy not in policies:
            raise self.fail(
                "train.augment_policy",
                unknown_choice_detail("train.augment_policy", train.augment_policy, policies),
            )
        if train.warmup_epochs > train.epochs:
            raise self.fail(
                "train.warmup_epochs",
                f"`train.warmup_epochs` = {train.warmup_epochs} exceeds `train.epochs` = "
                f"{train.epochs}, so the learning rate would never reach its peak; lower it",
            )

    # -- [tune], [resources] -------------------------------------------------------------------
    def tune(self, spec: StudySpec) -> None:
        from cce_bench.loss_registry import available_losses, tunable_parameters
        from cce_bench.metrics import HIGHER_IS_BETTER

        if spec.tune.metric not in HIGHER_IS_BETTER:
            detail = unknown_choice_detail("tune.metric", spec.tune.metric, HIGHER_IS_BETTER)
            raise self.fail("tune.metric", detail)
        taken = {name for arm in spec.losses.arms for name in tunable_parameters(arm)}
        for name in ("tau", "gamma", "epsilon"):
            if getattr(spec.tune.space, name) is not None and name not in taken:
                takers = [loss for loss in available_losses() if name in tunable_parameters(loss)]
                raise self.fail(
                    f"tune.space.{name}",
                    f"`tune.space.{name}` is set, but no arm in `losses.arms` "
                    f"({', '.join(spec.losses.arms)}) takes {name} (only "
                    f"{', '.join(takers) or 'no registered loss'}); remove the range or add "
                    "such an arm",
                )

    # -- [evaluate] ----------------------------------------------------------------------------
    def evaluate(self, spec: StudySpec) -> None:
        """``max_seeds`` belongs to the anytime design and never falls below the first look."""
        evaluate = spec.evaluate
        if evaluate.max_seeds is None:
            return
        if evaluate.stopping != "anytime":
            raise self.fail(
                "evaluate.max_seeds",
                f"`evaluate.max_seeds` = {evaluate.max_seeds} is set, but `evaluate.stopping` "
                f"is {evaluate.stopping!r}, which runs exactly `seeds`; set "
                'stopping = "anytime" to add seeds until the answer is in, or remove max_seeds',
            )
        if evaluate.max_seeds < evaluate.seeds:
            raise self.fail(
                "evaluate.max_seeds",
                f"`evaluate.max_seeds` = {evaluate.max_seeds} is below `evaluate.seeds` = "
                f"{evaluate.seeds}, the first look; set max_seeds >= {evaluate.seeds}",
            )
        self._anytime_can_decide(spec)

    def _anytime_can_decide(self, spec: StudySpec) -> None:
        """Refuse an anytime design that can only end "inconclusive": the safe t-test's e-value
        has a ceiling that grows with the seeds, and below ``anytime_min_seeds`` it stays under
        the family's threshold m / alpha whatever the runs give."""
        from cce_bench.design_bounds import anytime_min_seeds, safe_t_ceiling

        evaluate, alpha = spec.evaluate, spec.analysis.alpha
        m = spec.family_size()
        needed = anytime_min_seeds(alpha, max(m, 1))
        if evaluate.max_seeds is not None and evaluate.max_seeds < needed:
            raise self.fail(
                "evaluate.max_seeds",
                f"`evaluate.max_seeds` = {evaluate.max_seeds} can never give a verdict: with "
                f"{m} confirmatory comparisons at alpha {alpha:g}, the anytime test's e-value "
                f"must reach m/alpha = {m / alpha:g}, and after {evaluate.max_seeds} seeds it "
                f"cannot exceed {safe_t_ceiling(evaluate.max_seeds):.3g}, however large the "
                f"differences; set max_seeds >= {needed} (more to decide anything but the "
                'largest, most consistent effects), or stopping = "fixed" for a fixed number '
                "of seeds tested once",
            )

    def _sign_flip_can_decide(self, spec: StudySpec) -> None:
        """Refuse a sign-flip plan that can only end "inconclusive": with n seeds the exact
        sign-flip test's smallest p is 2/2^n, and below ``sign_flip_min_seeds`` it stays above
        alpha/m whatever the runs give. It is a fixed-design test: the anytime design's verdicts
        come from the safe t-test, so the two together are refused as well."""
        from cce_bench.fixed_design import sign_flip_min_seeds

        evaluate, plan = spec.evaluate, spec.analysis
        if plan.confirmatory_test != "sign_flip":
            return
        if evaluate.stopping == "anytime":
            raise self.fail(
                "analysis.test",
                '`analysis.test` = "sign_flip" is a fixed-design test, but `evaluate.stopping` '
                'is "anytime", whose verdicts come from the safe t-test; set stopping = "fixed", '
                "or remove `test` (the anytime design assumes normal differences)",
            )
        m = spec.family_size()
        needed = sign_flip_min_seeds(plan.alpha, max(m, 1))
        if evaluate.seeds < needed:
            raise self.fail(
                "evaluate.seeds",
                f"`evaluate.seeds` = {evaluate.seeds} is too few for `analysis.test` = "
                f'"sign_flip": with {m} confirmatory comparisons at alpha {plan.alpha:g} each '
                f"test runs at {plan.alpha / max(m, 1):.3g}, and with {evaluate.seeds} seeds "
                f"the exact sign-flip p cannot go below 2/2^{evaluate.seeds} = "
                f'{2 / 2**evaluate.seeds:.3g}; set seeds >= {needed}, or test = "t"',
            )

    # -- [analysis] ----------------------------------------------------------------------------
    def analysis(self, spec: StudySpec) -> None:
        """The plan names a metric that is tested and arms that are compared with the baseline."""
        from cce_bench.loss_registry import available_losses
        from cce_bench.metrics import DERIVED_METRICS, HIGHER_IS_BETTER

        plan, losses = spec.analysis, spec.losses
        metric = plan.primary_metric
        self._secondary_metrics(plan)
        if metric in DERIVED_METRICS:
            source = DERIVED_METRICS[metric]
            raise self.fail(
                "analysis.primary_metric",
                f"`analysis.primary_metric` = {metric!r} is a function of {source!r} in the "
                f"same run, so it is shown but never tested; use {source!r}",
            )
        if metric not in HIGHER_IS_BETTER:
            tested = [name for name in HIGHER_IS_BETTER if name not in DERIVED_METRICS]
            detail = unknown_choice_detail("analysis.primary_metric", metric, tested)
            raise self.fail("analysis.primary_metric", detail)
        if plan.comparisons is None:
            return
        others = [arm for arm in losses.arms if arm != losses.baseline]
        if not others:
            raise self.fail(
                "analysis.comparisons",
                f"`analysis.comparisons` is set, but `losses.arms` holds only the baseline "
                f"{losses.baseline!r}; add the arms to compare, or remove the key",
            )
        self._names_listed("analysis.comparisons", plan.comparisons, example=toml_value(others))
        for arm in plan.comparisons:
            if arm == losses.baseline:
                raise self.fail(
                    "analysis.comparisons",
                    f"`analysis.comparisons` lists the baseline {arm!r}, which each arm is "
                    f"compared with; list other arms only ({', '.join(others)})",
                )
            if arm not in others:
                close = difflib.get_close_matches(arm, others, n=1)
                if arm in available_losses():
                    fix = "add it to `losses.arms`, or remove it here"
                else:
                    fix = f"did you mean {close[0]!r}?" if close else "list arms of `losses.arms`"
                raise self.fail(
                    "analysis.comparisons",
                    f"`analysis.comparisons` = {arm!r} is not one of the other arms in "
                    f"`losses.arms` ({', '.join(others)}); {fix}",
                )

    def _secondary_metrics(self, plan: AnalysisSpec) -> None:
        """Tested metrics, none the primary, and not a metric beside the one it is a function
        of (the paper's ACC beside top-1): one test counted twice in one family."""
        from cce_bench.metrics import DERIVED_METRICS, HIGHER_IS_BETTER

        key, names = "analysis.secondary_metrics", plan.secondary_metrics
        if not names:
            return
        self._names_listed(key, names, example='["paper_accuracy"]')
        for name in names:
            if name not in HIGHER_IS_BETTER:
                raise self.fail(key, unknown_choice_detail(key, name, list(HIGHER_IS_BETTER)))
            if name == plan.primary_metric:
                raise self.fail(key, f"`{key}` lists the primary metric {name!r}; remove it")
            source = DERIVED_METRICS.get(name)
            if source in names or source == plan.primary_metric:
                raise self.fail(
                    key,
                    f"`{key}` = {name!r} is a function of {source!r} in the same run, so its "
                    f"test is {source!r}'s; list one of the two",
                )

    def resources(self, spec: StudySpec) -> ResourcesSpec:
        resources = spec.resources
        shares = resources.gpus_per_run
        if isinstance(shares, dict):  # a share per backbone: each one a backbone of the study
            for name in shares:
                if name not in spec.models.backbones:
                    raise self.fail(
                        f"resources.gpus_per_run.{name}",
                        f"`resources.gpus_per_run` names {name!r}, which is not in "
                        f"`models.backbones` ({', '.join(spec.models.backbones)}); fix the name",
                    )
        for backbone in spec.models.backbones:
            self._gpu_share(spec, resources.gpus_for(backbone))
        if resources.threads_per_run is None:
            return dataclasses.replace(resources, threads_per_run=resources.cpus_per_run)
        return resources

    def _gpu_share(self, spec: StudySpec, gpus: float) -> None:
        if spec.train.device == "cuda" and gpus == 0:
            # Ray sets CUDA_VISIBLE_DEVICES to nothing for a task that requests no GPU, so the
            # study would pass every check and then fail every trial.
            raise self.fail(
                "train.device",
                "`train.device` = 'cuda', but `resources.gpus_per_run` = 0, and Ray hides the "
                "GPUs from a run that requests none, so every run would fail; set "
                "gpus_per_run = 1 under [resources] (or 0.5 to share a GPU), or device = 'auto'",
            )
        if gpus > 1 and not gpus.is_integer():
            raise self.fail(
                "resources.gpus_per_run",
                f"`resources.gpus_per_run` = {gpus:g}: Ray shares a GPU (a fraction below 1) or "
                f"gives whole GPUs, not {gpus:g}; use e.g. 0.5, 1 or {int(gpus) + 1}",
            )


def check_study(
    spec: StudySpec,
    *,
    origin: str,
    base_dir: Path,
    data_path: str | os.PathLike[str] | None = None,
) -> StudySpec:
    """``spec`` checked, with its paths resolved and its loaded defaults filled in."""
    return _StudyChecks(origin, base_dir).check(spec, data_path)
