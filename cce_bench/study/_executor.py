"""Ray's side of a study: start or join a cluster, run training jobs, relay epochs, survive faults.

Optuna owns the search, Ray owns the compute: each trial or evaluation run is one
Ray task running ``train_run`` with the study's CPUs and GPU fraction; Ray re-runs a task whose
worker process or node died (``max_retries``), and an exception raised by the run itself is
reported once, never retried (the same setting would fail again).

Only the driver writes the Optuna storage. A worker's per-epoch validation value travels to the
driver through a small actor, :class:`TrialChannel`; the driver reports it to Optuna, asks the
pruner, and posts the decision back; the worker waits for that decision before its next epoch and
stops when told to. The decision wait is what makes pruning exact rather than a race.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cce_bench.errors import ClusterError
from cce_bench.study._deadline import Deadlines
from cce_bench.train import RunSpec, train_run

if TYPE_CHECKING:
    from cce_bench.data.labeled import PreparedData
    from cce_bench.study._arms import JobSource
    from cce_bench.train import RunResult

logger = logging.getLogger(__name__)

#: How often the driver looks at finished tasks and reported epochs (seconds). An epoch takes
#: seconds even on a GPU, so 0.2 s adds little to a trial and keeps the driver's CPU use low.
POLL_S = 0.2

#: How long a worker waits for the driver's prune decision before it carries on unpruned. The
#: driver answers within ``POLL_S``; this only matters when the driver is gone.
DECISION_TIMEOUT_S = 300.0

#: A TCP connect to the head's GCS port answers in milliseconds when a cluster is there; without
#: this probe ``ray.init(address=HOST:PORT)`` retries for about a minute before it gives up, and a
#: mistyped address should cost seconds.
PROBE_TIMEOUT_S = 3.0

logger = logging.getLogger(__name__)


#: Where a GPU run ran (``train.gpu_facts``), copied into its run record and trial: timings
#: and faults are only comparable per card, and a failing card is found by its UUID.
GPU_FIELDS = ("gpu_uuid", "gpu_model", "cuda_visible_devices", "driver", "torch_cuda")


@dataclass(frozen=True)
class Resources:
    """What each run asks Ray for, and how many runs may be in flight at once."""

    cpus_per_run: float = 1
    #: One share for every run, or a share per backbone (EfficientNet-B4 at 380 px wants a
    #: whole card where ResNet-50 at 224 px fits two to a card).
    gpus_per_run: float | Mapping[str, float] = 0
    #: Runs in flight at once; ``"auto"`` until ``fit_concurrency`` sets it from the cluster.
    max_concurrent: int | str = 2
    max_retries: int = 2
    #: k: a node or GPU with this many machine failures in a row gets no more work.
    machine_failures: int = 2
    #: A task past ``deadline_factor`` x the median of its finished peers (backbone, phase),
    #: and past ``deadline_floor_s``, is cancelled and run again (``_deadline.Deadlines``).
    deadline_factor: float = 3.0
    deadline_floor_s: float = 600.0

    def gpus_for(self, backbone: str) -> float:
        """The GPU share a run of ``backbone`` asks Ray for."""
        if isinstance(self.gpus_per_run, Mapping):
            return float(self.gpus_per_run.get(backbone, 0.0))
        return float(self.gpus_per_run)

    @property
    def gpu_shares(self) -> tuple[float, ...]:
        """Every GPU share a run of this study may ask for (one, or one per backbone)."""
        if isinstance(self.gpus_per_run, Mapping):
            return tuple(float(v) for v in self.gpus_per_run.values()) or (0.0,)
        return (float(self.gpus_per_run),)


@dataclass
class Job:
    """One training run to execute: its spec, the data it reads, and who asked for it.

    ``report_metric`` names the validation metric sent to the driver after every epoch (tuning);
    ``None`` runs without a reporter (evaluation). ``source`` is the arm's tuner or evaluator
    that made the job, which the driver tells about its epochs and its end; this module never
    calls it. Extra parts to score (an external test set) travel in
    ``run_spec.extra_eval_parts``.
    """

    key: str
    run_spec: RunSpec
    data_ref: Any
    report_metric: str | None = None
    source: JobSource | None = None


@dataclass
class JobDone:
    """A finished job: ``result`` when the run returned, else ``error`` (the cause, one line)."""

    job: Job
    result: RunResult | None = None
    node: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    #: The run failed for the machine's sake (``MachineFailure``): it is replaced, not counted.
    machine: bool = False
    #: The run was cancelled past its deadline (``_deadline.Deadlines``).
    deadline: bool = False


def start_ray(
    address: str | None = None, *, num_cpus: int | None = None, worker_logs: bool = False
) -> bool:
    """Start a local Ray (``address=None``) or join a running cluster; True if this call did.

    A local Ray gets every CPU and GPU Ray detects on the machine (cgroup limits included) or
    ``num_cpus``, and no dashboard; a Ray already initialised in this process is reused. The
    workers' output (their prints, warnings, tracebacks) reaches this terminal only with
    ``worker_logs`` (``cce-bench --verbose``): on a normal run it would interleave with the
    progress view, and every failure already reaches the driver as the run's error. Joining a
    cluster assumes cce-bench is installed on every node. Usage statistics
    stay off unless the user set ``RAY_USAGE_STATS_ENABLED``: nothing leaves the machine unasked.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    check_address(address)
    if ray.is_initialized():
        return False
    options = {
        "include_dashboard": False,
        "log_to_driver": worker_logs,
        "logging_level": logging.INFO if worker_logs else logging.ERROR,
    }
    logger.debug("starting Ray (%s)", address or "local")
    try:
        if address in (None, "", "local"):
            _init_local_ray(num_cpus, options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        if _refused_for_token(error):
            raise ClusterError(
                f"the Ray cluster at --address {address} requires token authentication; set "
                "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) as on "
                "its head node"
            ) from None
        raise ClusterError(
            f"cannot join a Ray cluster at --address {address}: {str(error).splitlines()[0]}; "
            "start one with `ray start --head` or leave --address out to run locally"
        ) from None
    return True


#: Starts of a local Ray before giving up (see ``_init_local_ray``).
LOCAL_START_ATTEMPTS = 3


def _init_local_ray(num_cpus: int | None, options: dict[str, Any]) -> None:
    """``ray.init`` of a new local Ray, started again when it misses its start-up window.

    Ray gives its own raylet a fixed 30 s to register with the GCS (``raylet_start_wait_time_s``
    in ``ray/_private/node.py``; no setting raises it), and then raises a bare ``Exception``.
    A laptop or CI runner whose cores are busy with other work can miss that window once; a
    second start then usually succeeds, and losing the whole study to it would be worse.

    ``address="local"`` makes it a new Ray of its own: a bare ``ray.init()`` joins the latest
    cluster that ``ray start`` left on the machine, so a study without ``--address`` could land
    on someone else's cluster, and two local studies (or test workers) on each other's.
    """
    import ray

    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus, **options)
            return
        except Exception as error:
            if "timed out during startup" not in str(error) or attempt == LOCAL_START_ATTEMPTS:
                raise
            ray.shutdown()
            logger.warning("Ray missed its start-up window on a busy machine; starting again")


def _refused_for_token(error: BaseException) -> bool:
    """True when joining failed because the cluster wants a token this process lacks.

    Ray 2.60's ``ray start --head`` turns token authentication on whenever
    ``~/.ray/auth_token`` exists, while a process joining by address never sends the token
    unless told to; Ray then reports only "Failed to connect", with the cause in the chain.
    """
    from ray.exceptions import AuthenticationError

    for _ in range(8):  # a chain is short; the bound guards against cycles
        if isinstance(error, AuthenticationError) or "InvalidAuthToken" in str(error):
            return True
        if (error := error.__cause__ or error.__context__) is None:
            return False
    return False


def check_address(address: str | None) -> None:
    """Raise ``ClusterError`` within seconds when ``address`` is malformed or no Ray head
    answers there; a local Ray (``None``, ``"local"``) and ``"auto"`` pass unprobed.

    ``run_study`` calls it before loading data, so a wrong ``--address`` costs seconds even when
    the data takes minutes to load; ``start_ray`` calls it again (a TCP connect, milliseconds).
    """
    if address not in (None, "", "auto", "local"):
        _probe_head(address)


def node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node of the running Ray (``{"CPU": 16.0, "GPU": 1.0}``)."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def check_resources(
    resources: Resources, *, device: str = "auto", nodes: list[dict[str, float]] | None = None
) -> None:
    """Raise ``ClusterError`` when no node of the Ray cluster can ever run one run.

    Ray queues a task it cannot place without an error, so ``gpus_per_run = 1`` without a GPU
    or ``cpus_per_run = 64`` on a 2-core machine would wait forever. A task runs on one node, so
    each request is compared with the largest alive node, not the cluster's total. ``device =
    "cuda"`` needs a GPU on some node. ``nodes`` (each node's total resources) defaults to
    :func:`node_resources`. An autoscaling cluster that has not yet added its GPU nodes is
    refused too: start them first. With a GPU share per backbone, the largest share is checked.
    """
    nodes = node_resources() if nodes is None else nodes
    requests = {
        "CPU": ("cpus_per_run", resources.cpus_per_run),
        "GPU": ("gpus_per_run", max(resources.gpu_shares)),
    }
    largest = {kind: max((node.get(kind, 0.0) for node in nodes), default=0.0) for kind in requests}
    cluster = f"the Ray cluster ({len(nodes)} node{'s' * (len(nodes) != 1)})"
    if device == "cuda" and largest["GPU"] == 0:
        raise ClusterError(
            f"`train.device` = 'cuda', but no node of {cluster} has a GPU; set device = 'auto' "
            "(or 'cpu'), or pass --address of a cluster with GPUs"
        )
    for kind, (key, wanted) in requests.items():
        if wanted <= largest[kind]:
            continue
        if kind == "GPU" and largest[kind] == 0:
            raise ClusterError(
                f"`resources.{key}` = {wanted:g}, but no node of {cluster} has a GPU; set "
                f"{key} = 0 or pass --address of a cluster with GPUs"
            )
        raise ClusterError(
            f"`resources.{key}` = {wanted:g}, but the largest node of {cluster} has "
            f"{largest[kind]:g} {kind}s; set {key} to at most {largest[kind]:g}, or pass "
            "--address of a cluster with bigger nodes"
        )
    if not any(all(node.get(k, 0.0) >= w for k, (_, w) in requests.items()) for node in nodes):
        raise ClusterError(
            f"no node of {cluster} has both {resources.cpus_per_run:g} CPUs and "
            f"{requests['GPU'][1]:g} GPUs (`resources.cpus_per_run`, "
            "`resources.gpus_per_run`); lower one of them, or pass --address of a cluster with "
            "bigger nodes"
        )


def max_calls(resources: Resources) -> int:
    """Runs one Ray worker process may serve: 1 for GPU runs, unlimited (0) otherwise.

    A worker that has used CUDA keeps its context on the card it first saw: Ray's new
    ``CUDA_VISIBLE_DEVICES`` for a later task is ignored once CUDA has started, so reused
    workers would pile runs onto one card while Ray counts them on others. Ray sets
    ``max_calls=1`` for GPU tasks itself only when ``num_gpus`` is given to ``@ray.remote``,
    not through ``.options()``, which is how the study's GPU share arrives. A fresh process also
    lets a deterministic run set cuBLAS's workspace before cuBLAS starts. The cost is a worker
    start (a few seconds of imports) per run, small beside a GPU run's minutes.
    """
    return 1 if max(resources.gpu_shares) > 0 else 0


def run_slots(resources: Resources, nodes: list[dict[str, float]]) -> int:
    """How many runs the cluster holds at once: per node, GPUs // ``gpus_per_run`` for a GPU
    study (the smallest share when it is a table, so no card waits), else CPUs //
    ``cpus_per_run``; at least 1."""
    shares = [share for share in resources.gpu_shares if share > 0]
    # A small tolerance: Ray stores fractions of a GPU in units of 1e-4.
    kind, each = ("GPU", min(shares)) if shares else ("CPU", float(resources.cpus_per_run))
    return max(1, sum(int(node.get(kind, 0.0) / each + 1e-6) for node in nodes))


def fit_concurrency(
    resources: Resources, nodes: list[dict[str, float]]
) -> tuple[Resources, str | None]:
    """``resources`` with ``max_concurrent`` set from the cluster's slots (``run_slots``), and
    a line when an explicit value differs from them (None otherwise).

    ``"auto"`` is the slots: every GPU (or CPU) busy. An explicit value above the GPU slots is
    lowered to them: a trial submitted beyond the slots only waits in Ray's queue, and Optuna
    proposed it without the results of the trials still running, so the search learns less
    from the same budget and finishes no sooner. An explicit value below the slots is kept,
    with a note: it leaves cards idle (the paper study once ran 8 runs on 16 half-GPU slots).
    """
    slots = run_slots(resources, nodes)
    wanted = resources.max_concurrent
    if wanted == "auto":
        return dataclasses.replace(resources, max_concurrent=slots), None
    gpu = max(resources.gpu_shares) > 0
    gpus = sum(node.get("GPU", 0.0) for node in nodes)
    if gpu and slots < int(wanted):
        note = (
            f"running at most {slots} runs at once, not `resources.max_concurrent` = {wanted}: "
            f"the cluster's {gpus:g} GPU{'s' * (gpus != 1)} hold {slots} runs of "
            f"`resources.gpus_per_run`"
        )
        return dataclasses.replace(resources, max_concurrent=slots), note
    if int(wanted) < slots:
        return resources, (
            f"`resources.max_concurrent` = {wanted} leaves {slots - int(wanted)} of the "
            f'cluster\'s {slots} run slots idle; set it to "auto" to fill them'
        )
    return resources, None


def _probe_head(address: str) -> None:
    host, _, port = address.split("://")[-1].rpartition(":")  # also ray://HOST:PORT (Ray Client)
    if not host or not port.isdigit():
        raise ClusterError(
            f"--address {address!r} is not HOST:PORT or `auto`; pass e.g. 10.0.0.5:6379"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as error:
        raise ClusterError(
            f"no Ray cluster answers at --address {address} ({error.strerror or error}); start "
            "one with `ray start --head --port PORT` or leave --address out to run locally"
        ) from None


def stop_ray() -> None:
    import ray

    ray.shutdown()


class TrialChannel:
    """Per-epoch values from workers to the driver, prune decisions back, attempts counted.

    Keys are job keys (``<study>/<arm>#<trial>`` for trials). A Ray actor (see
    :func:`make_channel`) so that workers on any node reach the driver without shared storage.
    """

    def __init__(self) -> None:
        self._reports: list[tuple[str, int, float]] = []
        self._decisions: dict[tuple[str, int], bool] = {}
        self._attempts: dict[str, int] = {}

    def started(self, key: str) -> int:
        """Count a (re)start of a job; Ray retries after a lost worker land here too."""
        self._attempts[key] = self._attempts.get(key, 0) + 1
        return self._attempts[key]

    def attempts(self, key: str) -> int:
        return self._attempts.get(key, 0)

    def report(self, key: str, epoch: int, value: float) -> None:
        self._reports.append((key, epoch, value))

    def drain(self) -> list[tuple[str, int, float]]:
        """Hand over every report received since the last call."""
        reports, self._reports = self._reports, []
        return reports

    def decide(self, key: str, epoch: int, prune: bool) -> None:
        self._decisions[(key, epoch)] = prune

    def decision(self, key: str, epoch: int) -> bool | None:
        return self._decisions.get((key, epoch))


def make_channel() -> Any:
    """The driver's :class:`TrialChannel` actor, on the driver's node; zero CPUs so it never
    takes a run's slot.

    Ray places an actor that asks for no resources on a random node; on a worker node, losing
    that node would take the channel with it and crash the study (seen on a two-node cluster in
    tests/test_cluster.py). A study cannot outlive its driver's node anyway.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(TrialChannel).options(scheduling_strategy=here).remote()


class ChannelReporter:
    """The ``reporter`` handed to ``train_run`` on the worker: report, wait, obey."""

    def __init__(self, channel: Any, key: str, metric: str) -> None:
        self.channel, self.key, self.metric = channel, key, metric

    def __call__(self, epoch: int, metrics: dict[str, Any]) -> bool:
        import ray

        value = float(metrics.get(self.metric, float("nan")))
        ray.get(self.channel.report.remote(self.key, epoch, value))
        deadline = time.monotonic() + DECISION_TIMEOUT_S
        while time.monotonic() < deadline:
            decision = ray.get(self.channel.decision.remote(self.key, epoch))
            if decision is not None:
                return bool(decision)
            time.sleep(POLL_S / 4)
        return False


def run_training_task(
    spec_dict: dict[str, Any],
    data: PreparedData,
    channel: Any,
    key: str,
    report_metric: str | None,
    train_fn: Callable[..., RunResult] | None,
    gpu_share: float = 0.0,
) -> tuple[RunResult, dict[str, str]]:
    """Body of the Ray task: one ``train_run`` on a worker, plus where it ran.

    ``data`` arrives resolved from the object store (read-only, zero-copy on the node);
    ``train_run`` sets the torch thread count from ``spec.threads`` itself; a run given a GPU
    asks for ``cuda``, which raises when CUDA cannot see it (``train.require_cuda``), so a run
    never falls back to the CPU. A failure that is the machine's (``is_machine_fault``; an
    out-of-memory error counts when the card is shared) is raised as ``MachineFailure`` naming
    the node and GPU, so the driver replaces the run instead of counting it. A run sharing a
    card (``gpu_share`` below 1) may use only its share of the card's memory.
    """
    import ray

    from cce_bench.train import MachineFailure, gpu_facts, is_machine_fault
    from cce_bench.train._machine import cap_cuda_memory, out_of_memory_detail

    ray.get(channel.started.remote(key))
    train_fn = train_fn or train_run
    spec = RunSpec.from_dict(spec_dict)
    node_id = ray.get_runtime_context().get_node_id()
    gpu_ids = list(ray.get_gpu_ids())
    try:
        cap_cuda_memory(gpu_share)
        reporter = ChannelReporter(channel, key, report_metric) if report_metric else None
        result = train_fn(spec, data, reporter)
    except Exception as error:
        shared = 0 < gpu_share < 1
        oom = out_of_memory_detail(error, spec.batch_size, gpu_share)
        if not is_machine_fault(error, shared_card=shared):
            if oom is not None:  # the setting's own: fails once, never retried at this batch
                raise RuntimeError(oom) from error
            raise
        gpu = getattr(error, "gpu", "") or os.environ.get("CUDA_VISIBLE_DEVICES", "")
        kind = type(error) if isinstance(error, MachineFailure) else MachineFailure
        detail = str(error) if isinstance(error, MachineFailure) else f"{type(error).__name__}: "
        detail += "" if isinstance(error, MachineFailure) else (oom or _first_line(error))
        raise kind(detail, node=node_id, gpu=gpu) from error
    node = {"hostname": socket.gethostname(), "node_id": node_id}
    if gpu_ids:
        node.update(gpu_facts())
    return result, node


class Executor:
    """Runs jobs on Ray, at most ``max_concurrent`` at a time, and reports back to the driver.

    The driver supplies three callbacks: ``next_job()`` (a job, or None when it has nothing to
    start now), ``on_report(job, epoch, value) -> prune?`` and ``on_done(JobDone)``. Jobs are
    pulled lazily so that Optuna proposes each trial knowing every result that came before it.
    ``train_fn`` replaces ``train_run`` (tests inject fakes).
    """

    def __init__(self, resources: Resources, *, train_fn: Callable[..., Any] | None = None):
        import ray

        self.resources = resources
        self.train_fn = train_fn
        self.channel = make_channel()
        self._task = ray.remote(max_calls=max_calls(resources))(run_training_task)
        self.inflight: dict[Any, Job] = {}
        #: Nodes left out after machine failures (``MachineHealth``); set by the driver.
        self.excluded_nodes: set[str] = set()
        self._next_node = -1
        self.deadlines = Deadlines(resources.deadline_factor, resources.deadline_floor_s)
        self._started: dict[Any, float] = {}

    def put(self, data: Any) -> Any:
        """Place data in the object store once; every task then receives the same reference."""
        import ray

        return ray.put(data)

    def submit(self, job: Job) -> None:
        gpus = self.resources.gpus_for(job.run_spec.backbone)
        options: dict[str, Any] = {
            "num_cpus": self.resources.cpus_per_run,
            "num_gpus": gpus,
            "max_retries": self.resources.max_retries,
            "retry_exceptions": False,
        }
        if self.excluded_nodes:
            options["scheduling_strategy"] = self._healthy_node()
        ref = self._task.options(**options).remote(
            job.run_spec.to_dict(),
            job.data_ref,
            self.channel,
            job.key,
            job.report_metric,
            self.train_fn,
            gpus,
        )
        self.inflight[ref] = job
        self._started[ref] = time.monotonic()

    def alive_nodes(self) -> list[str]:
        """The Ray node ids of the alive nodes that could run a run (have CPUs)."""
        import ray

        return [
            node["NodeID"]
            for node in ray.nodes()
            if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0
        ]

    def _healthy_node(self) -> Any:
        """Pin a task to the next alive node not left out (round-robin), since Ray has no
        stable way to say "anywhere but these nodes"."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        healthy = [node for node in self.alive_nodes() if node not in self.excluded_nodes]
        self._next_node = (self._next_node + 1) % max(1, len(healthy))
        return NodeAffinitySchedulingStrategy(healthy[self._next_node], soft=False)

    def run(
        self,
        next_job: Callable[[], Job | None],
        on_report: Callable[[Job, int, float], bool],
        on_done: Callable[[JobDone], None],
    ) -> None:
        """Keep the slots full until ``next_job`` has nothing and every job has finished."""
        import ray

        limit = self.resources.max_concurrent
        assert isinstance(limit, int), "max_concurrent = 'auto' is resolved before any run"
        may_have_more = True
        while True:
            while may_have_more and len(self.inflight) < limit:
                job = next_job()
                if job is None:
                    may_have_more = False
                else:
                    self.submit(job)
            if not self.inflight:
                return
            ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
            self.relay_reports(on_report)
            for ref in ready:
                on_done(self.collect(ref))
                may_have_more = True
            for done in self.cancel_overdue():
                on_done(done)
                may_have_more = True

    def cancel_overdue(self) -> list[JobDone]:
        """Force-cancel the tasks past their deadline; each comes back as a ``JobDone`` with
        ``deadline`` and ``machine`` set, so that the driver runs it again."""
        import ray

        now = time.monotonic()
        running = {ref: (_group(job), self._started[ref]) for ref, job in self.inflight.items()}
        cancelled = []
        for ref in self.deadlines.overdue(running, now):
            job = self.inflight.pop(ref)
            with contextlib.suppress(Exception):  # it may have finished meanwhile
                ray.cancel(ref, force=True)
            reason = self.deadlines.describe(_group(job), now - self._started.pop(ref))
            cancelled.append(JobDone(job, error=reason, machine=True, deadline=True))
        return cancelled

    def relay_reports(self, on_report: Callable[[Job, int, float], bool]) -> None:
        import ray

        by_key = {job.key: job for job in self.inflight.values()}
        for key, epoch, value in ray.get(self.channel.drain.remote()):
            job = by_key.get(key)
            prune = on_report(job, epoch, value) if job is not None else False
            self.channel.decide.remote(key, epoch, bool(prune))

    def collect(self, ref: Any) -> JobDone:
        """Turn a finished task into a ``JobDone``; a run that raised or lost its worker after
        every retry becomes an ``error`` (its cause in one line) so the study goes on."""
        import ray
        from ray.exceptions import NodeDiedError, RayError, RayTaskError

        from cce_bench.train import MachineFailure

        job = self.inflight.pop(ref)
        started = self._started.pop(ref, time.monotonic())
        try:
            result, node = ray.get(ref)
            done = JobDone(job, result=result, node=node)
            self.deadlines.finished(_group(job), time.monotonic() - started)
        except RayTaskError as error:
            cause = error.cause if error.cause is not None else error
            done = JobDone(job, error=f"{type(cause).__name__}: {_first_line(cause)}")
            if isinstance(cause, MachineFailure):
                done.machine = True
                done.node = {"node_id": cause.node, "gpu": cause.gpu}
        except NodeDiedError as error:  # a lost node: the machine's fault, not the run's
            done = JobDone(job, error=f"{type(error).__name__}: {_first_line(error)}")
            done.machine = True
        except RayError as error:
            done = JobDone(job, error=f"{type(error).__name__}: {_first_line(error)}")
        done.attempts = max(1, ray.get(self.channel.attempts.remote(job.key)))
        return done

    def cancel_all(self) -> list[Job]:
        """Force-cancel every in-flight task (Ctrl-C); returns their jobs for the bookkeeping."""
        import ray

        jobs = list(self.inflight.values())
        for ref in list(self.inflight):
            # A task that finished meanwhile cannot be cancelled; that is fine.
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self.inflight.clear()
        return jobs


def _group(job: Job) -> tuple[str, str]:
    """(backbone, phase) of a job: the tasks that take about as long as each other."""
    phase = "evaluate" if job.key.startswith("evaluate/") else "tune"
    return job.run_spec.backbone, phase


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
