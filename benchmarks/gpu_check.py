"""The GPU check's steps; ``benchmarks/gpu_check.sh`` sets up the environment and runs this.

    python benchmarks/gpu_check.py            # on a GPU machine, after the setup step
    python benchmarks/gpu_check.py --dry-run  # anywhere, standard library only: prints the plan

Steps, each measured the way the study runs (batch 32, bf16 where the card computes in it,
channels_last, the real ``Trainer``):

- driver:    the NVIDIA driver's CUDA version against the one torch was built for;
- losses:    CE, CCE and CCE-tau on the same backbone (resnet50 at 224 px), one timed epoch each;
- backbones: one timed epoch of each paper backbone at its native size on about 8,000 synthetic
             images, then one epoch under ``torch.cuda.set_sync_debug_mode("warn")`` counting
             host-device syncs;
- fixed:     a run's fixed cost, apart: process start and imports, CUDA init, data upload, and
             the first epoch's extra time (cuDNN autotuning, the allocator's growth);
- weights:   a generated weights file for resnet50, loaded and fitted as a study loads one;
- packing:   two processes training at once on one GPU, as ``gpus_per_run = 0.5`` does, for
             resnet50 and efficientnet_b4; 2 x the peak reserved memory must fit the card;
- study:     ``cce-bench run`` of a 2-trial, 2-seed GPU study (ce and cce_tau) on synthetic data;
- report:    images/s against NVIDIA's published A100 figures, peak memory without the data,
             syncs per step; one JSON file, ``$OUT/gpu_check.json`` when ``OUT`` is set.

The exit status is 1 when a step fails or finds more syncs than the design allows: one per
``CUDA_DIVERGENCE_CHECK_STEPS`` steps (the divergence check) plus a few per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: The paper's backbones, the loss each is checked with (so every loss runs on the GPU once),
#: and NVIDIA's published A100 AMP training throughput (images/s) where there is one
#: (DeepLearningExamples; measured at their own, larger batch sizes, so batch 32 is expected to
#: fall short of it).
BACKBONES = {
    "resnet50": ("ce", 2470.0),
    "efficientnet_b4": ("cce", 331.0),
    "inception_v3": ("cce_tau", None),
    "densenet121": ("focal", None),
}
BATCH = 32
#: Steps per epoch: 250 x 32 = 8,000 images, about HAM10000's training part, so the data's
#: upload decision and the timed epoch are the study's.
STEPS = 250
#: The backbones packed two to a card (``gpus_per_run = 0.5``).
PACKED = ("resnet50", "efficientnet_b4")
#: The losses timed on one backbone: their cost beside the backbone's is the paper's claim.
LOSSES = ("ce", "cce", "cce_tau")
#: Syncs allowed per step: the divergence check every 16 steps, and the epoch's end.
MAX_SYNCS_PER_STEP = 1 / 16 + 4 / STEPS

STUDY = """
name = "gpu-check"
[data]
source = "synthetic"
n_images = 400
[models]
backbones = ["resnet50"]
pretrained = false
[losses]
arms = ["ce", "cce_tau"]
[train]
epochs = 2
batch_size = 32
[tune]
n_trials = 2
[evaluate]
seeds = 2
[resources]
cpus_per_run = 2
gpus_per_run = 0.5
max_concurrent = 2
"""


def plan(out: Path | None) -> list[tuple[str, str]]:
    """(step, what it does) for every step, in order."""
    backbones = ", ".join(f"{name} ({loss})" for name, (loss, _) in BACKBONES.items())
    target = out / "gpu_check.json" if out else "stdout only (OUT is not set)"
    return [
        ("driver", "nvidia-smi's driver and CUDA version against torch.version.cuda; stop with "
                   "the fix when the driver is older than torch's CUDA or torch is CPU-only"),
        ("losses", f"{', '.join(LOSSES)} on resnet50 at 224 px, batch {BATCH}: one timed epoch "
                   "each, images/s"),
        ("backbones", f"one epoch each of {backbones} at native size, batch {BATCH}, "
                      f"{STEPS} steps ({BATCH * STEPS:,} synthetic images), auto precision, "
                      "channels_last: images/s, then one epoch under "
                      "set_sync_debug_mode('warn'): syncs per step; peak memory without the data"),
        ("fixed", "a run's fixed cost in a fresh process: start and imports, CUDA init, data "
                  "upload, the first epoch's extra time (cuDNN autotuning)"),
        ("weights", "a generated resnet50 weights file (safetensors): SHA-256, loaded and fitted "
                    "key for key"),
        ("packing", f"two processes at once on GPU 0 (gpus_per_run = 0.5) for "
                    f"{', '.join(PACKED)}: images/s each and together; 2 x peak reserved memory "
                    "must fit the card"),
        ("study", "cce-bench run of a 2-trial, 2-seed study (resnet50, ce and cce_tau, "
                  "synthetic data, gpus_per_run = 0.5) in a temporary folder"),
        ("report", f"images/s against NVIDIA's A100 figures, peak MB, syncs/step; JSON for "
                   f"`cce-bench plan --throughput`: {target}"),
    ]  # fmt: skip


def cuda_mismatch(driver_cuda: str | None, torch_cuda: str | None) -> str | None:
    """Why this torch cannot use this driver, with the fix; None when they fit.

    A CUDA runtime needs a driver of at least its major version (within a major version, CUDA's
    minor-version compatibility lets an older driver run it).
    """
    index = "https://download.pytorch.org/whl/"
    if driver_cuda is None:
        return (
            "nvidia-smi is missing or failed: no NVIDIA driver is loaded; fix: install the "
            "NVIDIA driver, then run this check again (pip install cannot fix this)"
        )
    if torch_cuda is None:
        return (
            f"this torch is CPU-only (torch.version.cuda is None) on a driver for CUDA "
            f"{driver_cuda}; fix: pip install the CUDA build, e.g. `pip install torch "
            f"--index-url {index}cuXYZ` with a CUDA XY.Z <= {driver_cuda}"
        )
    if int(driver_cuda.split(".")[0]) < int(torch_cuda.split(".")[0]):
        return (
            f"the driver supports CUDA {driver_cuda} but torch was built for CUDA "
            f"{torch_cuda}; fix: pip install a torch built for CUDA "
            f"{driver_cuda.split('.')[0]} (`pip install torch --index-url {index}cuXYZ`, "
            f"XY.Z <= {driver_cuda}), or update the NVIDIA driver to one for CUDA {torch_cuda}"
        )
    return None


def check_driver() -> dict:
    import torch

    try:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        smi = ""
    driver = re.search(r"Driver Version:\s*([\d.]+)", smi)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", smi)
    found = {
        "driver": driver.group(1) if driver else None,
        "driver_cuda": cuda.group(1) if cuda else None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }
    problem = cuda_mismatch(found["driver_cuda"], found["torch_cuda"])
    if problem is None and not torch.cuda.is_available():
        problem = (
            "torch.cuda.is_available() is False although driver and torch fit; fix: check "
            "CUDA_VISIBLE_DEVICES and that the card is not in an exclusive compute mode"
        )
    if problem is None:
        found["gpu"] = torch.cuda.get_device_name(0)
        found["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return {**found, "problem": problem}


def synthetic(size: int, n_train: int, n_val: int):
    import numpy as np

    from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData

    rng = np.random.default_rng(0)
    n = n_train + n_val
    return PreparedData(
        images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        labels=rng.integers(0, len(HAM10000_CLASSES), n),
        image_ids=np.array([f"img{i}" for i in range(n)]),
        group_ids=np.array([f"lesion{i}" for i in range(n)]),
        class_names=HAM10000_CLASSES,
        parts={"train": np.arange(n_train), "val": np.arange(n_train, n)},
    )


def trainer_for(name: str, loss: str):
    from cce_bench.models import resolve_backbone
    from cce_bench.train import RunSpec
    from cce_bench.train._loop import Trainer

    size = resolve_backbone(name).native_size
    spec = RunSpec(
        backbone=name, image_size=size, loss=loss, batch_size=BATCH, epochs=3,
        warmup_epochs=0, augment_policy="standard", aug_strength=0.5, device="cuda",
        threads=2, precision="auto", channels_last="auto",
    )  # fmt: skip
    return Trainer.build(spec, synthetic(size, BATCH * STEPS, BATCH))


def measure_losses() -> dict:
    """Images/s of resnet50 at 224 px under each of ``LOSSES`` (after a warm-up epoch)."""
    import torch

    rates = {}
    for loss in LOSSES:
        trainer = trainer_for("resnet50", loss)
        trainer.train_epoch()
        log = trainer.train_epoch()
        rates[loss] = round(log.images / log.seconds, 1)
        del trainer
        torch.cuda.empty_cache()
    return {"backbone": "resnet50", "image_size": 224, "images_per_s": rates}


def measure_fixed_cost(started: float, result: Path) -> None:
    """In a fresh process (``--fixed-cost``): what a run pays before its first steady step."""
    imported = time.time()
    import torch

    from cce_bench.train._loop import Trainer  # noqa: F401 (the run's own imports)

    imports_s = time.time() - imported
    clock = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    cuda_init_s = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer = trainer_for("resnet50", "ce")
    torch.cuda.synchronize()
    upload_s = time.perf_counter() - clock
    first = trainer.train_epoch()
    steady = trainer.train_epoch()
    costs = {
        "process_start_s": round(imported - started, 2), "imports_s": round(imports_s, 2),
        "cuda_init_s": round(cuda_init_s, 2), "data_upload_s": round(upload_s, 2),
        "first_epoch_extra_s": round(first.seconds - steady.seconds, 2),
    }  # fmt: skip
    costs["total_s"] = round(sum(costs.values()), 2)
    result.write_text(json.dumps(costs))


def measure_fixed() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder, "fixed.json")
        command = [sys.executable, __file__, "--fixed-cost", str(time.time()), str(out)]
        code = subprocess.run(command, timeout=240, check=False).returncode
        if code:
            return {"problem": f"the fixed-cost process failed (exit code {code})"}
        return json.loads(out.read_text())


def check_weights() -> dict:
    """Write resnet50's weights as a file, then load and fit it as a study does."""
    from safetensors.torch import save_file

    from cce_bench.models import check_weights_fit, create_backbone, weights_sha256

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "resnet50.safetensors")
        model = create_backbone("resnet50", 1000)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        clock = time.perf_counter()
        check_weights_fit("resnet50", path)
        create_backbone("resnet50", 7, pretrained=path).cuda()
        load_s = round(time.perf_counter() - clock, 2)
        size_mb = round(path.stat().st_size / 2**20, 1)
        return {"file_mb": size_mb, "sha256": weights_sha256(path), "load_s": load_s}


def counted_syncs(run) -> tuple[int, list[str]]:
    """Syncs ``run()`` causes, as ``set_sync_debug_mode("warn")`` reports them, with the
    cce_bench line that caused each (the warning itself names no Python frame)."""
    import traceback

    import torch

    where: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            frames = [f for f in traceback.extract_stack() if "cce_bench" in f.filename]
            where.append(f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return len(where), sorted(set(where))


def measure_backbone(name: str, loss: str, published: float | None) -> dict:
    import torch

    from cce_bench.train._device import peak_memory_mb, peak_reserved_mb

    trainer = trainer_for(name, loss)
    trainer.train_epoch()  # cuDNN autotuning and the allocator's growth happen here
    log = trainer.train_epoch()
    syncs, sources = counted_syncs(trainer.train_epoch)
    data_bytes = trainer.train_feed.device_bytes + trainer.eval_feed.device_bytes
    rate = log.images / log.seconds
    result = {
        "backbone": name, "loss": loss, "image_size": trainer.spec.image_size, "batch": BATCH,
        "precision": str(trainer.autocast_dtype), "channels_last": trainer.channels_last,
        "data_on_device": trainer.train_feed.resident is not None,
        "images_per_s": round(rate, 1), "published_a100_images_per_s": published,
        "ratio_to_published": round(rate / published, 3) if published else None,
        "syncs": syncs, "syncs_per_step": round(syncs / STEPS, 3), "sync_sources": sources,
        "peak_memory_mb": round(peak_memory_mb(trainer.device, data_bytes)),
        "peak_reserved_mb": round(peak_reserved_mb(trainer.device)),
    }  # fmt: skip
    del trainer
    torch.cuda.empty_cache()
    return result


def measure_packed(name: str, barrier: Path, result: Path) -> None:
    """One of the two packed processes: warm up, wait for the other, time one epoch."""
    import torch

    from cce_bench.train._device import peak_reserved_mb

    trainer = trainer_for(name, BACKBONES[name][0])
    trainer.train_epoch()
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.05)
    log = trainer.train_epoch()
    total_mb = torch.cuda.get_device_properties(0).total_memory / 2**20
    peak_mb = peak_reserved_mb(trainer.device)
    found = {
        "images_per_s": log.images / log.seconds,
        "total_mb": total_mb,
        "peak_reserved_mb": peak_mb,
    }
    result.write_text(json.dumps(found))


def measure_packing(name: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        barrier = Path(folder, "barrier")
        barrier.mkdir()
        outputs = [Path(folder, f"run{i}.json") for i in range(2)]
        command = [sys.executable, __file__, "--packed", name, str(barrier)]
        procs = [subprocess.Popen([*command, str(out)]) for out in outputs]
        codes = [proc.wait(timeout=240) for proc in procs]
        if any(codes):
            return {"problem": f"a packed {name} process failed (exit codes {codes})"}
        found = [json.loads(out.read_text()) for out in outputs]
    rates = [entry["images_per_s"] for entry in found]
    peak = max(entry["peak_reserved_mb"] for entry in found)
    result = {"backbone": name, "images_per_s_each": [round(r, 1) for r in rates],
              "images_per_s": round(sum(rates), 1), "peak_reserved_mb": round(peak),
              "card_mb": round(found[0]["total_mb"])}  # fmt: skip
    if 2 * peak > found[0]["total_mb"]:
        result["problem"] = f"2 x {peak:.0f} MB peak of {name} does not fit the card"
    return result


def run_study() -> dict:
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-study-"))
    (folder / "study.toml").write_text(STUDY)
    cli = shutil.which("cce-bench", path=str(Path(sys.executable).parent)) or "cce-bench"
    started = time.perf_counter()
    done = subprocess.run(
        [cli, "run", str(folder / "study.toml"), "--results-dir", str(folder / "results")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    runs_file = folder / "results" / "gpu-check" / "runs.jsonl"
    lines = runs_file.read_text().splitlines() if runs_file.exists() else []
    runs = [json.loads(line) for line in lines]
    result = {
        "exit_code": done.returncode, "wall_time_s": round(seconds, 1), "runs": len(runs),
        "completed": sum(r.get("outcome") == "completed" for r in runs),
        "devices": sorted({str(r.get("device")) for r in runs}),
        "results": str(folder / "results"),
    }  # fmt: skip
    if done.returncode != 0 or result["completed"] != 4:
        output = done.stdout[-1500:] + done.stderr[-1500:]
        result["problem"] = f"the study did not complete its 4 runs: {output}"
    elif not all(device.startswith("cuda") for device in result["devices"]):
        result["problem"] = f"study runs did not run on the GPU: {result['devices']}"
    return result


def report(results: dict) -> list[str]:
    """Print the table and return the problems found."""
    found = [
        (step, entry)
        for step, value in results.items()
        for entry in (value if isinstance(value, list) else [value])
    ]
    problems = [f"{step}: {entry['problem']}" for step, entry in found
                if isinstance(entry, dict) and entry.get("problem")]  # fmt: skip
    print(
        "\n| backbone | px | precision | img/s | A100 published | ratio | syncs/step | "
        "peak MB (no data) | reserved MB |\n|---|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    for row in results.get("backbones", {}).values():
        published = row["published_a100_images_per_s"]
        print(f"| {row['backbone']} | {row['image_size']} | {row['precision']} | "
              f"{row['images_per_s']:.0f} | {published or 'n/a'} | "
              f"{row['ratio_to_published'] or 'n/a'} | {row['syncs_per_step']} | "
              f"{row['peak_memory_mb']} | {row['peak_reserved_mb']} |")  # fmt: skip
        if row["syncs_per_step"] > MAX_SYNCS_PER_STEP:
            problems.append(
                f"backbones: {row['backbone']} syncs {row['syncs_per_step']}/step (at most "
                f"{MAX_SYNCS_PER_STEP:.2f}); from {row['sync_sources']}"
            )
    for step in ("losses", "fixed", "weights", "packing", "study"):
        print(f"{step}: {results.get(step)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print every step, run none")
    parser.add_argument("--packed", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--fixed-cost", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.packed:
        measure_packed(args.packed[0], Path(args.packed[1]), Path(args.packed[2]))
        return 0
    if args.fixed_cost:
        measure_fixed_cost(float(args.fixed_cost[0]), Path(args.fixed_cost[1]))
        return 0
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    for step, what in plan(out):
        print(f"[{step}] {what}", flush=True)
    if args.dry_run:
        return 0
    results: dict = {"driver": check_driver()}
    print(f"\ndriver: {results['driver']}", flush=True)
    if results["driver"]["problem"] is None:
        results["losses"] = measure_losses()
        print(f"losses: {results['losses']}", flush=True)
        # Keyed by backbone: `cce-bench plan --throughput` reads backbones.<name>.images_per_s.
        results["backbones"] = {}
        for name, (loss, published) in BACKBONES.items():
            results["backbones"][name] = measure_backbone(name, loss, published)
            print(f"backbones: {results['backbones'][name]}", flush=True)
        results["fixed"] = measure_fixed()
        results["weights"] = check_weights()
        results["packing"] = [measure_packing(name) for name in PACKED]
        results["study"] = run_study()
    problems = report(results)
    results["problems"] = problems
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
