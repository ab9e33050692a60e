"""What a first GPU would break or slow down, guarded on a CPU machine.

No test here needs a GPU: each one checks, on CPU, the decision or the code path that a GPU run
takes (``torch.cuda`` answers are monkeypatched where a decision depends on the card), so that
the fixes hold until a device can run ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from studies_for_tests import write_study
from torch.overrides import TorchFunctionMode

import cce_bench.losses
import cce_bench.train._loop
from cce_bench.config import load_study
from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData
from cce_bench.models import create_backbone, resolve_backbone
from cce_bench.study._arms import Arm, build_run_spec
from cce_bench.study._executor import Executor, Resources, fit_concurrency, run_slots
from cce_bench.train import RunSpec, train_run
from cce_bench.train._device import (
    PartOnDevice,
    autocast_dtype,
    peak_memory_mb,
    peak_reserved_mb,
    resolve_device,
    set_backend_flags,
)
from cce_bench.train._loop import Trainer, _make_optimizer

REPO = Path(__file__).resolve().parent.parent
SIZE = 32
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def restore_backend_flags():
    """Put back the process-wide flags a test sets through ``set_backend_flags``."""
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = False


def prepared(n_train: int, n_val: int = 16) -> PreparedData:
    rng = np.random.default_rng(0)
    n = n_train + n_val
    return PreparedData(
        images=rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8),
        labels=rng.integers(0, len(HAM10000_CLASSES), n),
        image_ids=np.array([f"ISIC_{i:07d}" for i in range(n)]),
        group_ids=np.array([f"HAM_{i:07d}" for i in range(n)]),
        class_names=HAM10000_CLASSES,
        parts={"train": np.arange(n_train), "val": np.arange(n_train, n)},
    )


def tiny_spec(**changes) -> RunSpec:
    settings = dict(
        backbone="resnet10t", image_size=SIZE, epochs=1, batch_size=8, threads=1,
        augment_policy="standard", loss="cce",
    )  # fmt: skip
    return RunSpec(**{**settings, **changes})


def pretend_cuda(monkeypatch, *, major: int = 8, minor: int = 0) -> None:
    """``torch.cuda`` answers as on a machine with one card of compute capability major.minor.

    On a real sm75 card bf16 tensors can be made (emulated), so the tensor probe says yes too.
    """
    props = types.SimpleNamespace(major=major, minor=minor, name=f"sm{major}{minor}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)
    monkeypatch.setattr(torch.version, "hip", None)


class HostDeviceTraffic(TorchFunctionMode):
    """Counts the torch calls that copy between host and device, or read a device value back.

    On a GPU each one waits for the work queued before it: tensors built from host values with
    a device argument, ``.to``/``.cuda`` with a device, ``.cpu()``, reading a value
    (``.item()``, ``float(t)``, ...), and indexing with a host array (an implicit upload).
    On CPU these are free, so counting calls, not time, is what shows them here.
    """

    BUILDS = frozenset({"tensor", "as_tensor", "asarray"})
    COPIES = frozenset({"to", "cuda"})
    READS = frozenset({"cpu", "numpy", "tolist", "item", "__int__", "__float__", "__bool__"})
    INDEXING = frozenset({"__getitem__", "__setitem__"})

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.paused = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.paused and self._moves_data(getattr(func, "__name__", ""), args, kwargs):
            self.calls.append(func.__name__)
        return func(*args, **kwargs)

    def _moves_data(self, name: str, args: tuple, kwargs: dict) -> bool:
        if name in self.BUILDS:
            return kwargs.get("device") is not None
        if name in self.COPIES:
            named = [kwargs.get("device"), *args[1:]]
            return any(isinstance(a, str | torch.device | torch.Tensor) for a in named if a)
        if name in self.INDEXING:
            index = args[1] if len(args) > 1 else None
            parts = index if isinstance(index, tuple) else (index,)
            return any(isinstance(part, np.ndarray | list) for part in parts)
        return name in self.READS

    def uncounted(self, function):
        """``function`` with counting paused while it runs."""

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            self.paused += 1
            try:
                return function(*args, **kwargs)
            finally:
                self.paused -= 1

        return wrapper


# -- 1. Ray: a fresh worker process for every GPU run --------------------------------------------
def test_gpu_runs_get_a_fresh_worker_process_each(monkeypatch):
    monkeypatch.setattr("cce_bench.study._executor.make_channel", lambda: None)
    executor = Executor(Resources(gpus_per_run=0.5))
    assert executor._task._default_options["max_calls"] == 1


def test_cpu_runs_keep_reusing_their_workers(monkeypatch):
    monkeypatch.setattr("cce_bench.study._executor.make_channel", lambda: None)
    executor = Executor(Resources(gpus_per_run=0))
    assert executor._task._default_options.get("max_calls", 0) == 0


# -- 2. no host-device traffic inside the step loop ----------------------------------------------


def traffic_between_forward_calls(trainer: Trainer, run, monkeypatch) -> list[int]:
    """Counted calls between one model forward and the next while ``run()`` runs.

    Two reads are left out on purpose: the divergence check reads the recent losses back
    every ``CUDA_DIVERGENCE_CHECK_STEPS`` steps on a GPU (every step on CPU, where it is free),
    and the loss's target check reads the target range back only on CPU (on a GPU it asserts on
    the device).
    """
    traffic = HostDeviceTraffic()
    monkeypatch.setattr(
        cce_bench.train._loop,
        "_first_non_finite_step",
        traffic.uncounted(cce_bench.train._loop._first_non_finite_step),
    )
    monkeypatch.setattr(
        cce_bench.losses, "_check_inputs", traffic.uncounted(cce_bench.losses._check_inputs)
    )
    at_forward: list[int] = []
    trainer.model.register_forward_pre_hook(
        lambda module, args: at_forward.append(len(traffic.calls))
    )
    with traffic:
        run()
    return [later - earlier for earlier, later in itertools.pairwise(at_forward)]


def trainer_with_cuda_optimizer(monkeypatch, spec: RunSpec, data: PreparedData) -> Trainer:
    """A CPU trainer whose optimizer is the one a CUDA run gets (fused): the default CPU kernels
    read their step counters with ``.item()``, which is free on CPU and not what a GPU runs."""
    make = cce_bench.train._loop._make_optimizer
    monkeypatch.setattr(cce_bench.train._loop, "_make_optimizer", lambda s, m, d: make(s, m, CUDA))
    return Trainer.build(spec, data)


def test_a_training_step_moves_nothing_between_host_and_device(monkeypatch):
    trainer = trainer_with_cuda_optimizer(monkeypatch, tiny_spec(), prepared(n_train=48))
    per_step = traffic_between_forward_calls(trainer, trainer.train_epoch, monkeypatch)
    assert len(per_step) == 48 // 8 - 1
    assert per_step == [0] * len(per_step)


def test_the_resident_path_a_gpu_takes_moves_nothing_per_step_either(monkeypatch):
    trainer = trainer_with_cuda_optimizer(monkeypatch, tiny_spec(), prepared(n_train=48))
    feed = trainer.train_feed
    feed.resident = torch.from_numpy(feed.data.images[feed.indices])  # as uploaded on CUDA
    per_step = traffic_between_forward_calls(trainer, trainer.train_epoch, monkeypatch)
    assert per_step == [0] * (48 // 8 - 1)


def test_an_evaluation_batch_moves_nothing_between_host_and_device(monkeypatch):
    trainer = Trainer.build(tiny_spec(batch_size=4), prepared(n_train=16, n_val=40))
    per_batch = traffic_between_forward_calls(trainer, trainer.predict, monkeypatch)
    assert per_batch == [0] * (40 // 8 - 1)


def test_an_epoch_uploads_its_batch_order_once_and_non_blocking(monkeypatch):
    uploads = []
    original = torch.Tensor.to

    def recording_to(tensor, *args, **kwargs):
        if tensor.dtype == torch.int64 and tensor.ndim == 1:
            uploads.append((len(tensor), kwargs.get("non_blocking", False)))
        return original(tensor, *args, **kwargs)

    trainer = Trainer.build(tiny_spec(), prepared(n_train=48))
    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    trainer.train_epoch()
    assert uploads == [(48, True)]


def test_feeding_batches_keeps_the_numbers_of_a_per_batch_gather():
    data = prepared(n_train=48)
    feed = PartOnDevice(data, data.parts["train"], torch.device("cpu"))
    order = [np.array([5, 1, 9]), np.array([47, 0]), np.array([], dtype=np.int64)]
    for positions, (images, labels) in zip(order, feed.batches(order), strict=True):
        assert np.array_equal(images.numpy(), data.images[positions])
        assert np.array_equal(labels.numpy(), data.labels[positions])


# -- 3. a study planned for CPUs stays on CPUs ---------------------------------------------------
def study_with_gpus(folder: Path, gpus_per_run: float, **changes):
    path = write_study(folder, **changes)
    text = path.read_text().replace(
        "[resources]\n", f"[resources]\ngpus_per_run = {gpus_per_run}\n"
    )
    path.write_text(text)
    return load_study(path)


def test_device_auto_runs_on_cpu_when_runs_ask_ray_for_no_gpu(tmp_path, monkeypatch):
    pretend_cuda(monkeypatch)
    spec = study_with_gpus(tmp_path, 0)
    run = build_run_spec(
        spec, Arm("resnet10t", "ce"), {"lr": 1e-3, "aug_strength": 0.5},
        seed=0, train_parts=("train",), eval_part="val",
    )  # fmt: skip
    assert resolve_device(run.device).type == "cpu"


def test_device_auto_is_cuda_for_a_run_ray_gives_a_gpu(tmp_path, monkeypatch):
    pretend_cuda(monkeypatch)
    spec = study_with_gpus(tmp_path, 0.5)
    run = build_run_spec(
        spec, Arm("resnet10t", "ce"), {"lr": 1e-3, "aug_strength": 0.5},
        seed=0, train_parts=("train",), eval_part="val",
    )  # fmt: skip
    assert run.device == "cuda" and resolve_device(run.device).type == "cuda"


# -- 4. peak memory measures training, not the data ----------------------------------------------
def test_peak_memory_leaves_out_the_images_kept_on_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 4 * 2**30)
    assert peak_memory_mb(CUDA, data_bytes=2**30) == 2048
    assert peak_reserved_mb(CUDA) == 4096
    assert peak_reserved_mb(torch.device("cpu")) is None


def test_the_peak_counter_starts_after_the_images_are_uploaded(monkeypatch):
    events = []

    class RecordingFeed(PartOnDevice):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            events.append("upload")

    monkeypatch.setattr(cce_bench.train._loop, "PartOnDevice", RecordingFeed)
    monkeypatch.setattr(
        cce_bench.train._loop, "reset_peak_memory", lambda device: events.append("reset")
    )
    Trainer.build(tiny_spec(), prepared(n_train=16))
    assert events == ["upload", "upload", "reset"]


def test_a_run_record_carries_the_reserved_peak():
    result = train_run(tiny_spec(augment_policy="flips"), prepared(n_train=16))
    assert "peak_reserved_mb" in result.to_record()


# -- 5. bf16 only where the card computes in it --------------------------------------------------
def test_a_card_that_only_emulates_bf16_trains_in_fp16(monkeypatch):
    pretend_cuda(monkeypatch, major=7, minor=5)  # T4, RTX 20xx
    assert autocast_dtype("auto", CUDA) == torch.float16


def test_a_card_with_native_bf16_trains_in_bf16(monkeypatch):
    pretend_cuda(monkeypatch, major=8, minor=0)  # A100 and later
    assert autocast_dtype("auto", CUDA) == torch.bfloat16


# -- 6. the optimizer step needs no read-back on CUDA --------------------------------------------
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_cuda_runs_use_the_fused_optimizer(optimizer):
    model = torch.nn.Linear(4, 2)
    assert _make_optimizer(tiny_spec(optimizer=optimizer), model, CUDA).defaults["fused"]
    assert not _make_optimizer(tiny_spec(optimizer=optimizer), model, torch.device("cpu")).defaults[
        "fused"
    ]


def test_a_loss_scaled_step_of_the_fused_optimizer_reads_nothing_back():
    """What fp16 on CUDA does each step, with the CPU's scaler: with a fused optimizer the
    scaler passes its inf check to the kernel instead of reading it to decide."""
    model = torch.nn.Linear(4, 2)
    optimizer = _make_optimizer(tiny_spec(), model, CUDA)
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(model(torch.ones(3, 4)).sum()).backward()
    with HostDeviceTraffic() as traffic:
        scaler.step(optimizer)
        scaler.update()
    assert [call for call in traffic.calls if call in HostDeviceTraffic.READS] == []


# -- 7. deterministic means deterministic -------------------------------------------------------
def test_deterministic_cuda_runs_raise_where_no_deterministic_kernel_exists(
    monkeypatch, restore_backend_flags
):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    set_backend_flags(CUDA, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    assert not torch.backends.cudnn.benchmark


def test_a_deterministic_run_completes_on_cpu(restore_backend_flags):
    result = train_run(tiny_spec(deterministic=True), prepared(n_train=16))
    assert result.outcome == "completed"


#: Operations that PyTorch's ``use_deterministic_algorithms`` documents as raising on CUDA
#: (its docstring's list), as the dispatcher names them.
RAISE_ON_CUDA = frozenset(
    {
        "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
        "adaptive_max_pool2d_backward", "fractional_max_pool2d_backward",
        "fractional_max_pool3d_backward", "max_unpool1d", "max_unpool2d", "max_unpool3d",
        "upsample_linear1d_backward", "upsample_bilinear2d_backward",
        "upsample_bicubic2d_backward", "upsample_trilinear3d_backward",
        "reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
        "nll_loss2d_forward", "_ctc_loss_backward", "_embedding_bag_backward", "put_",
        "histc", "bincount", "median", "grid_sampler_2d_backward", "scatter_reduce",
    }
)  # fmt: skip


class DispatchedOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("backbone", ["resnet50", "efficientnet_b4", "inception_v3", "densenet121"])
def test_paper_backbones_run_no_operation_that_raises_in_deterministic_mode(backbone):
    """Forward and backward of the backbone, augmentation and every loss (on CPU, where the
    dispatcher sees the same operations: the paper's global pooling is a ``mean``)."""
    from cce_bench.data.augment import augment_batch
    from cce_bench.losses import available_losses, get_loss

    size = max(resolve_backbone(backbone).min_size, SIZE)
    model = create_backbone(backbone, len(HAM10000_CLASSES))
    images = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)
    target = torch.tensor([0, 4])
    with DispatchedOps() as ops:
        x = augment_batch(images, policy="strong", strength=1.0, generator=torch.Generator())
        logits = model(x)
        losses = [get_loss(name)(logits, target) for name in available_losses()]
        torch.stack(losses).sum().backward()
    assert ops.names & RAISE_ON_CUDA == set()


# -- 8. no more trials in flight than the GPUs hold ----------------------------------------------
def test_trials_in_flight_are_capped_at_the_clusters_gpu_slots():
    nodes = [{"CPU": 16.0, "GPU": 1.0}]
    capped, note = fit_concurrency(Resources(gpus_per_run=0.5, max_concurrent=8), nodes)
    assert capped.max_concurrent == 2
    assert "at most 2 runs at once" in note and "max_concurrent` = 8" in note


def test_gpu_slots_count_per_node_since_a_run_cannot_span_two():
    nodes = [{"GPU": 1.0}, {"GPU": 1.5}, {"CPU": 8.0}]
    assert run_slots(Resources(gpus_per_run=1), nodes) == 2
    assert run_slots(Resources(gpus_per_run=0.25), nodes) == 10


def test_studies_that_fill_their_slots_exactly_are_left_alone():
    nodes = [{"CPU": 16.0, "GPU": 4.0}]
    for resources in (Resources(max_concurrent=16), Resources(gpus_per_run=1, max_concurrent=4)):
        assert fit_concurrency(resources, nodes) == (resources, None)


def fake_train_logging_its_process(log_dir: Path, sleep_s: float):
    """Records its process, the GPU Ray showed it and when it ran."""
    from cce_bench.train import RunResult

    def train(spec, data, reporter=None):
        started = time.time()
        time.sleep(sleep_s)
        entry = {
            "pid": os.getpid(),
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": spec.device,
            "start": started,
            "end": time.time(),
        }
        (log_dir / f"{os.getpid()}-{started}.json").write_text(json.dumps(entry))
        history = [{"epoch": 1, "balanced_accuracy": 0.5}]
        if reporter is not None:
            reporter(1, history[0])
        return RunResult(
            outcome="completed", metrics={"balanced_accuracy": 0.5}, history=history,
            image_ids=np.array(["a"]), y_true=np.array([0]),
            proba=np.ones((1, 7), np.float32) / 7, wall_time_s=0.0, images_per_s=0.0,
            peak_memory_mb=0.0, device="cuda:0 (pretend)", versions={}, node="host",
        )  # fmt: skip

    return train


@pytest.fixture(scope="module")
def ray_with_one_pretend_gpu():
    """A local Ray that believes it has one GPU: it places and isolates GPU tasks as on a real
    card (``CUDA_VISIBLE_DEVICES``), while the fake runs here never touch CUDA."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_a_gpu_study_packs_runs_on_the_slots_each_in_a_fresh_process(
    ray_with_one_pretend_gpu, tmp_path, monkeypatch
):
    """One pretend GPU and ``gpus_per_run = 0.5``: 2 slots, although ``max_concurrent`` is 8.
    The pre-flight check would find that CUDA cannot see the pretend GPU, so it is left out."""
    import cce_bench.study._driver
    from cce_bench.study import run_study

    monkeypatch.setattr(cce_bench.study._driver, "_preflight", lambda spec, nodes: None)

    (tmp_path / "log").mkdir()
    events = []
    outcome = run_study(
        study_with_gpus(tmp_path, 0.5, arms=("ce",), n_trials=3, seeds=1, max_concurrent=8),
        tmp_path / "results",
        on_event=lambda progress: events.append(progress.event),
        train_fn=fake_train_logging_its_process(tmp_path / "log", sleep_s=1.0),
    )
    runs = [json.loads(p.read_text()) for p in (tmp_path / "log").iterdir()]
    assert len(runs) == 4 and outcome.failure is None
    assert any("at most 2 runs at once" in event for event in events[:2])
    first_finish = next(i for i, event in enumerate(events) if event.startswith("finished"))
    assert sum(event.startswith("started") for event in events[:first_finish]) == 2
    assert len({run["pid"] for run in runs}) == 4  # no worker served two runs
    assert {run["visible"] for run in runs} == {"0"} and {run["device"] for run in runs} == {"cuda"}


# -- 9. the GPU check, dry ------------------------------------------------------------------------
def test_the_gpu_check_dry_run_prints_every_step_and_exits_0_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for step in ("setup", "driver", "backbones", "packing", "study", "report"):
        assert f"[{step}]" in done.stdout
    for backbone in ("resnet50", "efficientnet_b4", "inception_v3", "densenet121"):
        assert backbone in done.stdout
    assert str(tmp_path / "gpu_check.json") in done.stdout
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def load_gpu_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("driver_cuda", "torch_cuda", "problem"),
    [
        ("13.0", "13.0", None),
        ("12.8", "12.6", None),
        ("12.4", "13.0", "driver"),
        (None, "13.0", "nvidia-smi"),
        ("13.0", None, "CPU-only"),
    ],
)
def test_the_gpu_check_names_the_fix_for_a_driver_torch_mismatch(driver_cuda, torch_cuda, problem):
    found = load_gpu_check().cuda_mismatch(driver_cuda, torch_cuda)
    if problem is None:
        assert found is None
    else:
        assert problem in found and "fix:" in found


def test_the_gpu_check_fails_a_backbone_that_syncs_more_than_the_design_allows(capsys):
    row = {
        "backbone": "resnet50", "image_size": 224, "precision": "torch.bfloat16",
        "images_per_s": 1900.0, "published_a100_images_per_s": 2470.0, "ratio_to_published": 0.77,
        "peak_memory_mb": 3000, "peak_reserved_mb": 5000, "sync_sources": ["augment.py:285"],
    }  # fmt: skip
    gpu_check = load_gpu_check()
    within = gpu_check.MAX_SYNCS_PER_STEP * 0.9
    assert gpu_check.report({"backbones": {"resnet50": {**row, "syncs_per_step": within}}}) == []
    problems = gpu_check.report({"backbones": {"resnet50": {**row, "syncs_per_step": 8.0}}})
    assert len(problems) == 1 and "augment.py:285" in problems[0]
