"""Paired-seed evaluation: retrain each arm's tuned setting on train + val, score once on test.

Paired seeds: seed i gives every arm the same initialisation, data order and
augmentation stream (``train_run`` derives them from ``spec.seed`` alone), so the per-seed
differences between CE and CCE are paired and the report can use paired tests.

A (backbone, arm, seed) run counts once its record is in ``runs.jsonl`` (``ResultsStore``);
completed and diverged runs are never redone, failed ones are retried on the next resume.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cce_bench.data.labeled import PreparedData
from cce_bench.data.prepare import prepare_data
from cce_bench.data.sources import load_source
from cce_bench.study._arms import Arm, build_run_spec, tuning_replicate
from cce_bench.study._executor import GPU_FIELDS, Job
from cce_bench.study._seeds import SeedSchedule
from cce_bench.study.store import ResultsStore, latest_records

if TYPE_CHECKING:
    from cce_bench.config import StudySpec
    from cce_bench.study._executor import JobDone

#: Evaluation trains on everything tuning could see and scores on the held-out test part.
EVALUATION_PARTS: tuple[str, ...] = ("train", "val")
EVALUATION_PART = "test"
EXTERNAL_PART = "external"

#: Fields of ``RunResult.to_record()`` copied into a run record (docs/interfaces.md).
RESULT_FIELDS = (
    "outcome",
    "diverged_at_step",
    "metrics",
    "history",
    "wall_time_s",
    "images_per_s",
    "peak_memory_mb",
    "peak_reserved_mb",
    "device",
    "node",
    "versions",
)


class ArmEvaluator:
    """The evaluation runs of one arm still to do, fed to the driver loop one at a time.

    ``params`` holds the best setting of each tuning replicate (one unless ``tune.replicates``
    > 1). ``done_keys`` are the (backbone, arm, seed) runs already final in the store; ``data_ref``
    is the object-store reference of the ``PreparedData`` for this backbone's image size.
    """

    def __init__(
        self,
        spec: StudySpec,
        arm: Arm,
        params: list[dict[str, float]],
        store: ResultsStore,
        data_ref: Any,
        *,
        done_keys: set[tuple[str, str, int]],
        schedule: SeedSchedule,
    ) -> None:
        self.spec, self.arm, self.params, self.store, self.data_ref = (
            spec,
            arm,
            params,
            store,
            data_ref,
        )
        #: Seeds already final with this setting, or started in this session.
        self.issued = {seed for (b, a, seed) in done_keys if (b, a) == (arm.backbone, arm.loss)}
        self.running: dict[str, int] = {}
        self.extra_parts = (EXTERNAL_PART,) if spec.data.external_test else ()
        self.schedule = schedule
        schedule.attach(arm.loss, self.idle, lambda: bool(self.pending()))

    def in_flight(self) -> int:
        return len(self.running)

    def params_for(self, seed: int) -> dict[str, float]:
        """The tuned setting seed ``seed`` trains with: its tuning replicate's best."""
        return self.params[tuning_replicate(self.spec, seed)]

    def pending(self) -> list[int]:
        """The released seeds this arm has not started, in order."""
        return [seed for seed in self.schedule.seeds() if seed not in self.issued]

    def idle(self) -> bool:
        """Nothing to start and nothing running: this arm is done with the released seeds."""
        return not self.running and not self.pending()

    def next_job(self) -> Job | None:
        """The next seed to run: one the rule released, else (anytime) one released ahead
        into this idle slot; the rule may read several finished seeds in a row."""
        pending = self.pending()
        while not pending and self.schedule.extend():
            pending = self.pending()
        if not pending and self.schedule.release_ahead():
            pending = self.pending()
        if not pending:
            return None
        seed = pending[0]
        self.issued.add(seed)
        run_spec = build_run_spec(
            self.spec,
            self.arm,
            self.params_for(seed),
            seed=seed,
            train_parts=EVALUATION_PARTS,
            eval_part=EVALUATION_PART,
        )
        # The same final model scores the external part: one training, two test sets.
        run_spec = run_spec.replace(extra_eval_parts=self.extra_parts)
        key = f"evaluate/{self.arm.label}/seed{seed}"
        self.running[key] = seed
        return Job(key, run_spec, self.data_ref, report_metric=None, source=self)

    def on_report(self, job: Job, epoch: int, value: float) -> bool:
        return False  # evaluation runs always train to the end

    def on_done(self, done: JobDone) -> dict[str, Any]:
        """Write the run's predictions and record (atomically, in that order); return it."""
        seed = self.running.pop(done.job.key)
        record, predictions = run_record(self.arm, seed, self.params_for(seed), done)
        return self.store.append_run(record, predictions)

    def requeue(self, job: Job, reason: str) -> None:
        """The machine failed this run: nothing is recorded and its seed is started again."""
        self.issued.discard(self.running.pop(job.key))

    def abandon_running(self, reason: str) -> None:
        """Ctrl-C: nothing is written for runs in flight; the next resume redoes them."""
        self.issued -= set(self.running.values())
        self.running.clear()


def run_record(
    arm: Arm, seed: int, params: dict[str, float], done: JobDone
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The ``runs.jsonl`` record of one evaluation run and its predictions (None if it has none).

    A run that raised or lost its worker on every attempt is recorded as ``failed`` with its
    cause, so the study goes on and the report can say which seeds are missing and why.
    """
    record: dict[str, Any] = {
        "phase": "evaluate",
        "backbone": arm.backbone,
        "arm": arm.loss,
        "seed": int(seed),
        "outcome": "failed",
        "error": done.error,
        "params": dict(params),
        "metrics": {},
        "external_metrics": None,
        "history": [],
        "attempts": done.attempts,
        "spec": done.job.run_spec.to_dict(),
        "node_id": done.node.get("node_id"),
        "predictions": None,
    }
    result = done.result
    if result is None:
        return record, None
    stored = result.to_record()
    record.update({name: stored.get(name) for name in RESULT_FIELDS})
    record["node"] = done.node.get("hostname") or stored.get("node")
    record.update({name: done.node[name] for name in GPU_FIELDS if name in done.node})
    if result.outcome != "completed" or result.proba is None:
        return record, None
    # The external part's arrays are prefixed ``external_`` (``RunResult.predictions``).
    record["external_metrics"] = result.extra_metrics.get(EXTERNAL_PART)
    return record, result.predictions()


def unevaluated_records(
    spec: StudySpec, arm: Arm, reason: str, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``failed`` records for the seeds of an arm that cannot be evaluated (no tuned setting).

    A seed whose latest record already says the same is skipped, so resuming a study with such
    an arm does not pile up copies; a later resume that finds a setting evaluates the seeds.
    """
    latest = latest_records(records)
    unevaluated = []
    for seed in spec.evaluate.seed_range:
        previous = latest.get((arm.backbone, arm.loss, seed), {})
        if previous.get("outcome") == "failed" and previous.get("error") == reason:
            continue
        unevaluated.append(
            {"phase": "evaluate", "backbone": arm.backbone, "arm": arm.loss, "seed": seed,
             "outcome": "failed", "error": reason, "params": None, "metrics": {},
             "external_metrics": None, "history": [], "attempts": 0, "predictions": None}
        )  # fmt: skip
    return unevaluated


def with_external_part(prepared: PreparedData, external: PreparedData) -> PreparedData:
    """``prepared`` plus the external test images as part ``external`` (one object to share).

    Both sides use the HAM10000 class order (``labeled.HAM10000_CLASSES``), which is what makes
    an ISIC 2018 Task 3 test set comparable with a HAM10000-trained model.
    """
    if tuple(external.class_names) != tuple(prepared.class_names):
        raise ValueError(f"external classes {external.class_names} != {prepared.class_names}")
    offset = len(prepared.images)
    parts = dict(prepared.parts)
    parts[EXTERNAL_PART] = np.arange(offset, offset + len(external.images), dtype=np.int64)
    return PreparedData(
        images=np.concatenate([prepared.images, external.images]),
        labels=np.concatenate([prepared.labels, external.labels]),
        image_ids=np.concatenate([prepared.image_ids, external.image_ids]),
        group_ids=np.concatenate([prepared.group_ids, external.group_ids]),
        class_names=prepared.class_names,
        parts=parts,
    )


def load_external_test(spec: StudySpec, size: int) -> PreparedData:
    """The study's ``data.external_test`` folder (ISIC 2018 Task 3 layout) decoded at ``size``."""
    labeled = load_source("isic2018", spec.data.external_test)
    everything = {EXTERNAL_PART: np.arange(len(labeled), dtype=np.int64)}
    return prepare_data(labeled, everything, size=size, resize_mode=spec.data.resize_mode)
