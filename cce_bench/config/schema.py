"""The study file's schema: one frozen dataclass per TOML table, each field one key.

The dataclasses *are* the schema. A field's name is its key, its annotation the TOML type it
takes, its default what a missing key means, and its metadata (``limits(ge=..., choices=...)``)
the values it accepts. :func:`cce_bench.config._reader.read_table` walks a parsed TOML table
against them, so type and range checks, "did you mean" for unknown keys, defaults and
``to_dict`` all come from one declaration: adding a key is adding a field. Checks that need a
registry (losses, sources, backbones, metrics) or span several keys live in
:mod:`cce_bench.config`, which is also where a study is loaded.

A study that has results may change only what does not change what it computes or how it is
judged: its budgets (``tune.n_trials``, ``evaluate.seeds``, ``evaluate.max_seeds``: raising
them extends it, and the results folder logs each change) and where its images are and how
its runs are placed (``PLACEMENT_KEYS``). The fingerprint and ``diff_studies`` leave exactly
those out; the analysis plan (``[analysis]``) is in both, so it cannot be changed once results
exist.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cce_bench.models import resolve_backbone

#: Keys that may change between runs of one study: raising them extends it with more trials or
#: seeds, and every finished trial and run still counts.
BUDGET_KEYS: tuple[str, ...] = ("tune.n_trials", "evaluate.seeds", "evaluate.max_seeds")

#: Keys (a bare name: the whole table) that say where the images are and how runs are placed,
#: not what is computed, so they may change between runs of one study. ``data.path`` is an
#: absolute path, so moving the dataset folder would otherwise refuse to resume; the split
#: manifest (``split.json``: image ids per part) proves the moved folder holds the same images,
#: and resuming checks it (``cce_bench.study``). ``[resources]`` (CPUs, GPU share, concurrency,
#: retries, threads) decides speed; a run's spec carries no resource but its thread count,
#: which at most moves the last bits of a float sum on CPU, not a conclusion.
PLACEMENT_KEYS: tuple[str, ...] = ("data.path", "resources")

#: ``evaluate.stopping``: a fixed number of seeds, or seeds added until the answer is in.
STOPPING_RULES: tuple[str, ...] = ("fixed", "anytime")
#: ``analysis.test`` (the names ``cce_bench.fixed_design.TESTS`` implements).
CONFIRMATORY_TESTS: tuple[str, ...] = ("t", "sign_flip")

Range = tuple[float, float]


def limits(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
    why: str = "",
) -> dict[str, Any]:
    """A schema field's metadata: the bounds or choices it accepts, and why (for messages)."""
    return {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "why": why}


#: Metadata flag of a field that ``load_study`` derives from the file (not a key of it): the
#: reader refuses it in a study file and ``to_dict`` leaves it out of the stored study.
LOADED = "loaded"


class Table:
    """Mixin of the schema dataclasses: their plain, TOML-able form."""

    def to_dict(self) -> dict[str, Any]:
        """Keys in schema order; unset optional keys (None) are left out, as TOML has no null."""
        table: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if value is None or item.metadata.get(LOADED):
                continue
            if isinstance(value, Table):
                table[item.name] = value.to_dict()
            elif isinstance(value, Path):
                table[item.name] = str(value)
            elif isinstance(value, dict):
                table[item.name] = {
                    key: str(v) if isinstance(v, Path) else v for key, v in value.items()
                }
            elif isinstance(value, tuple):
                table[item.name] = list(value)
            else:
                table[item.name] = value
        return table


# -- writing TOML (the standard library reads it but cannot write it) -----------------------


def toml_value(value: Any) -> str:
    """One TOML value: strings as basic strings, floats with their exact repr, lists inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest exact form; "inf" and "nan" are TOML too
    if isinstance(value, str | Path):
        # JSON's escapes are valid TOML basic-string escapes; DEL is the one JSON leaves raw.
        return json.dumps(str(value)).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted one (``"resnet18@scratch"``)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def dumps_toml(table: dict[str, Any], prefix: str = "") -> str:
    """A TOML document for a dict of scalars, lists and nested tables (what ``to_dict`` gives)."""
    lines = [
        f"{toml_key(key)} = {toml_value(v)}" for key, v in table.items() if not isinstance(v, dict)
    ]
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}{toml_key(key)}"
            lines += ["", f"[{name}]", dumps_toml(value, f"{name}.").rstrip("\n")]
    return "\n".join(lines).lstrip("\n") + "\n"


# -- the schema --------------------------------------------------------------------------------

_FRACTION = limits(gt=0.0, lt=1.0)


@dataclass(frozen=True)
class DataSpec(Table):
    """``[data]``: where the images come from and how they are split and sized.

    ``path``, ``metadata`` and ``external_test`` are absolute once loaded; ``n_images`` and
    ``difficulty`` are set for the synthetic source only; ``image_size`` None means each
    backbone's native size.
    """

    source: str
    path: Path | None = None
    metadata: Path | None = None
    n_images: int | None = field(
        default=None,
        metadata=limits(ge=21, why="three parts need an image of each of the seven classes"),
    )
    difficulty: float | None = field(default=None, metadata=limits(ge=0.0, le=1.0))
    image_size: int | None = field(
        default=None,
        metadata=limits(ge=8, why="no backbone nor the synthetic generator works below 8 px"),
    )
    resize_mode: str = "squash"
    split: str = "lesion"
    test_fraction: float = field(default=0.2, metadata=_FRACTION)
    val_fraction: float = field(default=0.15, metadata=_FRACTION)
    split_seed: int = field(default=0, metadata=limits(ge=0))
    external_test: Path | None = None


#: One backbone's initial weights: True (timm's hub weights), False (random) or a weights file.
Initialisation = bool | Path


@dataclass(frozen=True)
class ModelsSpec(Table):
    """``[models]``: backbones by timm name (or the paper's spelling) and their initial weights.

    A backbone ``name@label`` is timm's ``name`` under its own identity (``resnet18@scratch``).
    ``pretrained`` is one initialisation for every backbone (a file only when there is one
    backbone, since a file fits one architecture) or a table backbone -> initialisation, in
    which an unnamed backbone starts from random weights. Paths are absolute once loaded, and
    ``weights_sha256`` (backbone -> hex digest, derived at load, not a key) names each file's
    contents.
    """

    backbones: tuple[str, ...] = ("resnet18", "mobilenetv3_small_100")
    pretrained: Initialisation | dict[str, Initialisation] = False
    weights_sha256: dict[str, str] = field(
        default_factory=dict, compare=False, metadata={LOADED: True}
    )

    def initialisation(self, backbone: str) -> Initialisation:
        """``backbone``'s initial weights: True, False or a weights file."""
        if isinstance(self.pretrained, dict):
            return self.pretrained.get(backbone, False)
        return self.pretrained


@dataclass(frozen=True)
class LossesSpec(Table):
    """``[losses]``: the arms compared, each tuned with the same budget, against ``baseline``."""

    arms: tuple[str, ...] = ("ce", "cce", "cce_tau")
    baseline: str = "ce"


@dataclass(frozen=True)
class TrainSpec(Table):
    """``[train]``: the fixed part of every run's recipe (the tuned part is ``[tune.space]``)."""

    epochs: int = field(default=4, metadata=limits(ge=1))
    #: How each epoch orders the training images: "shuffle" (a permutation), or "balanced"
    #: (sampled with replacement, each class equally likely; ``cce_bench.train``).
    sampler: str = field(default="shuffle", metadata=limits(choices=("shuffle", "balanced")))
    batch_size: int = field(
        default=64, metadata=limits(ge=2, why="batch normalisation needs two images per batch")
    )
    optimizer: str = field(default="adamw", metadata=limits(choices=("adamw", "sgd")))
    weight_decay: float = field(default=0.05, metadata=limits(ge=0.0))
    warmup_epochs: int = field(default=1, metadata=limits(ge=0))
    augment_policy: str = "standard"
    precision: str = field(
        default="auto", metadata=limits(choices=("auto", "fp32", "bf16", "fp16"))
    )
    device: str = field(default="auto", metadata=limits(choices=("auto", "cpu", "cuda")))
    #: Deterministic kernels on every run (cuDNN autotuning off); unset is false, and stays out
    #: of ``to_dict`` so that studies written before the key keep their fingerprint.
    deterministic: bool | None = None


@dataclass(frozen=True)
class SearchSpace(Table):
    """``[tune.space]``: ranges Optuna samples; ``lr`` log-uniformly, the others uniformly.

    ``tau``, ``gamma`` and ``epsilon`` apply to the arms whose loss takes them
    (``losses.tunable_parameters``); unset, such an arm uses the loss's default range.
    """

    lr: Range = field(
        default=(1e-4, 3e-3), metadata=limits(gt=0.0, why="it is sampled log-uniformly")
    )
    aug_strength: Range = field(default=(0.0, 1.0), metadata=limits(ge=0.0, le=1.0))
    tau: Range | None = None
    gamma: Range | None = field(default=None, metadata=limits(ge=0.0))
    epsilon: Range | None = field(default=None, metadata=limits(ge=0.0, lt=1.0))

    def ranges_for(self, arm: str) -> dict[str, Range]:
        """What Optuna tunes for ``arm``: lr, aug_strength and its loss's own parameters."""
        from cce_bench.loss_registry import tunable_parameters

        ranges = {"lr": self.lr, "aug_strength": self.aug_strength}
        for name, default in tunable_parameters(arm).items():
            ranges[name] = getattr(self, name, None) or tuple(default)
        return ranges


#: The names ``tune.pruner`` accepts; ``cce_bench.study`` builds each (steps are epochs).
PRUNERS: tuple[str, ...] = ("none", "median", "successive_halving", "hyperband")


@dataclass(frozen=True)
class TuneSpec(Table):
    """``[tune]``: per-arm Optuna budget, the validation metric it maximises, pruner, space."""

    n_trials: int = field(default=4, metadata=limits(ge=1))
    metric: str = "balanced_accuracy"
    pruner: str = field(default="median", metadata=limits(choices=PRUNERS))
    sampler_seed: int = field(default=0, metadata=limits(ge=0))
    #: Independent tunings per arm (sampler and training seed ``sampler_seed + r``, the full
    #: budget each); evaluation seed i uses replicate i mod R's best setting, so the paired
    #: differences carry tuning's randomness too. 1 (the default) costs 1x the tuning budget.
    replicates: int = field(default=1, metadata=limits(ge=1))
    space: SearchSpace = field(default_factory=SearchSpace)

    @property
    def direction(self) -> str:
        """Optuna's study direction for ``metric``: confused-pair error rates are minimised."""
        from cce_bench.metrics import HIGHER_IS_BETTER

        return "maximize" if HIGHER_IS_BETTER[self.metric] else "minimize"


@dataclass(frozen=True)
class EvaluateSpec(Table):
    """``[evaluate]``: paired seeds ``first_seed, first_seed + 1, ...`` per arm, and when to stop.

    ``stopping = "fixed"`` runs exactly ``seeds`` seeds and judges them with the fixed-n tests.
    ``stopping = "anytime"`` makes ``seeds`` the first look: after every further paired seed
    (every arm of a backbone done with it) the anytime-valid test of each confirmatory
    comparison is read, and a backbone stops adding seeds once each of its comparisons has a
    verdict, or at ``max_seeds``. Its verdicts come from e-values and confidence sequences,
    which keep the family-wise error at most ``analysis.alpha`` under any pattern of looks,
    stops and extensions (``cce_bench.sequential``).
    """

    seeds: int = field(default=5, metadata=limits(ge=1))
    first_seed: int = field(default=0, metadata=limits(ge=0))
    stopping: str = field(
        default="fixed",
        metadata=limits(
            choices=STOPPING_RULES, why="fixed: exactly `seeds`; anytime: seeds up to max_seeds"
        ),
    )
    #: The most seeds ``stopping = "anytime"`` may run per backbone; unset means ``seeds``.
    max_seeds: int | None = field(default=None, metadata=limits(ge=1))

    @property
    def seed_range(self) -> range:
        """The paired seeds of the first look, in order; raising ``seeds`` only appends."""
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def seed_cap(self) -> int:
        """The most seeds a backbone may run: ``seeds``, or ``max_seeds`` under "anytime"."""
        if self.stopping == "anytime" and self.max_seeds is not None:
            return max(self.max_seeds, self.seeds)
        return self.seeds


@dataclass(frozen=True)
class AnalysisSpec(Table):
    """``[analysis]``: the analysis plan, fixed before any run (it is part of the fingerprint).

    The confirmatory family is every backbone x ``comparisons`` (each arm against
    ``losses.baseline``) on ``primary_metric``, Holm-adjusted at ``alpha``; it alone decides the
    report's Answer. ``margin`` is the smallest difference that matters, in metric units
    (0.01 = 1 percentage point): the equivalence bound of the paired TOST and the effect a
    follow-up study is sized to detect. ``comparisons`` unset means every arm but the baseline.
    Every other metric is exploratory (Benjamini-Hochberg) and never changes the Answer.
    ``secondary_metrics`` (e.g. ``["paper_accuracy"]``, the paper's headline ACC) form a second
    family, pre-registered like the first: the same comparisons on each, Holm within it at
    ``alpha``, reported apart and never mixed into the Answer.
    """

    primary_metric: str = "balanced_accuracy"
    comparisons: tuple[str, ...] | None = None
    secondary_metrics: tuple[str, ...] = ()
    alpha: float = field(
        default=0.05,
        metadata=limits(gt=0.0, lt=0.5, why="the family-wise error rate; 0.05 is the convention"),
    )
    margin: float = field(
        default=0.01,
        metadata=limits(gt=0.0, lt=1.0, why="in metric units: metrics are ratios, so 0.01 is 1 pp"),
    )
    #: The fixed design's confirmatory test: "t" (paired t, assumes normal differences; unset
    #: means it, and keeps the fingerprints of studies written before the key) or "sign_flip"
    #: (exact, distribution-free, needs ``sign_flip_min_seeds`` seeds: 8 at m = 4, alpha 0.05).
    test: str | None = field(
        default=None,
        metadata=limits(
            choices=CONFIRMATORY_TESTS,
            why="t: paired t-test (normal differences); sign_flip: exact, distribution-free",
        ),
    )

    @property
    def confirmatory_test(self) -> str:
        """``test``, or "t" when unset."""
        return self.test or "t"

    def compared_arms(self, losses: LossesSpec) -> tuple[str, ...]:
        """The arms compared with the baseline in the confirmatory family, in study order."""
        if self.comparisons is not None:
            return self.comparisons
        return tuple(arm for arm in losses.arms if arm != losses.baseline)


@dataclass(frozen=True)
class ResourcesSpec(Table):
    """``[resources]``: what each Ray task declares, and how many run at once.

    ``threads_per_run`` (torch intra-op threads) defaults to ``cpus_per_run`` once loaded.
    ``gpus_per_run`` is one share or a table of shares by backbone; ``max_concurrent = "auto"``
    fills the cluster's slots (GPUs / share, or CPUs / ``cpus_per_run``). A node or GPU with
    ``machine_failures`` machine failures in a row gets no more work. A run past
    ``deadline_factor`` x the median of its finished peers (and ``deadline_floor_s``) is
    cancelled and run again.
    """

    cpus_per_run: int = field(default=1, metadata=limits(ge=1))
    gpus_per_run: float | dict[str, float] = field(default=0.0, metadata=limits(ge=0.0))
    max_concurrent: int | str = field(default="auto", metadata=limits(ge=1))
    threads_per_run: int | None = field(default=None, metadata=limits(ge=1))
    max_retries: int = field(default=2, metadata=limits(ge=0))
    machine_failures: int = field(default=2, metadata=limits(ge=1))
    deadline_factor: float = field(default=3.0, metadata=limits(gt=1.0))
    deadline_floor_s: float = field(default=600.0, metadata=limits(ge=0.0))

    def gpus_for(self, backbone: str) -> float:
        """The GPU share of one run of ``backbone``."""
        shares = self.gpus_per_run
        return float(shares.get(backbone, 0.0) if isinstance(shares, dict) else shares)


@dataclass(frozen=True)
class StudySpec(Table):
    """A validated study: what ``cce-bench run`` compares, how, and with which budget."""

    name: str
    data: DataSpec
    models: ModelsSpec = field(default_factory=ModelsSpec)
    losses: LossesSpec = field(default_factory=LossesSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    tune: TuneSpec = field(default_factory=TuneSpec)
    evaluate: EvaluateSpec = field(default_factory=EvaluateSpec)
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)

    def image_size_for(self, backbone: str) -> int:
        """``data.image_size`` when set, else the backbone's native size (models.py)."""
        if self.data.image_size is not None:
            return self.data.image_size
        return resolve_backbone(backbone).native_size

    def family_size(self) -> int:
        """m: backbones x compared arms, the confirmatory family that alpha is divided over."""
        return len(self.models.backbones) * len(self.analysis.compared_arms(self.losses))

    def to_toml(self) -> str:
        """The study as a TOML file that ``load_study`` reads back to an equal spec."""
        return dumps_toml(self.to_dict())

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of ``to_dict()`` without ``BUDGET_KEYS`` and
        ``PLACEMENT_KEYS``.

        Two specs with one fingerprint differ at most in their budgets, data folder and
        resources, so a results folder started by one accepts the other as its continuation
        (resume and extend; a moved dataset or more concurrency is no new study). The analysis
        plan is inside it: a plan chosen after reading results is no plan.
        """
        table = what_is_computed(self.to_dict())
        canonical = json.dumps(table, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def what_is_computed(table: dict[str, Any]) -> dict[str, Any]:
    """A copy of a study dict without the ``BUDGET_KEYS`` and ``PLACEMENT_KEYS``."""
    trimmed = copy.deepcopy(table)
    for key in (*BUDGET_KEYS, *PLACEMENT_KEYS):
        section, _, leaf = key.partition(".")
        if leaf:
            trimmed.get(section, {}).pop(leaf, None)
        else:
            trimmed.pop(section, None)
    return trimmed


def diff_studies(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per changed key, ``"train.epochs: 4 -> 6"``; the keys a study may change
    (``BUDGET_KEYS``, ``PLACEMENT_KEYS``) are left out, as in ``StudySpec.fingerprint``.

    Both sides are ``StudySpec.to_dict()`` shapes (e.g. a stored ``study.toml`` and the study
    being started); a key present on one side only shows as ``(unset)`` on the other.
    """
    before, after = _flatten(what_is_computed(old)), _flatten(what_is_computed(new))
    unset = object()
    lines = []
    for key in [*before, *(key for key in after if key not in before)]:
        was, now = before.get(key, unset), after.get(key, unset)
        if was != now:
            shown = ["(unset)" if value is unset else toml_value(value) for value in (was, now)]
            lines.append(f"{key}: {shown[0]} -> {shown[1]}")
    return lines


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
