#!/usr/bin/env bash
# GPU check: training images/s of the paper's four backbones at their native sizes with AMP
# (bf16 where the card has it) and channels_last, measured two ways on one card:
#   bare      - a plain PyTorch loop on random tensors already on the GPU (the ceiling);
#   train_run - our pipeline on uint8 images in memory: upload, augmentation (policy none and
#               standard), normalisation, the loss registry, schedule and divergence checks.
# Prints one markdown table. Budget: well under 8 minutes on one H100 (a hard timeout of 450 s
# guards it). Needs no network: sets HF_HUB_OFFLINE and trains from random initialisation.
#
#   bash benchmarks/gpu_check.sh              # on a GPU machine
#   GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh   # seconds on CPU, tiny sizes: tests the script
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    make setup
fi
export HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
timeout 450 .venv/bin/python - <<'PY'
import os
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F

from cce_bench.data.labeled import HAM10000_CLASSES, PreparedData
from cce_bench.models import resolve_backbone
from cce_bench.train import RunSpec, train_run

SMOKE = os.environ.get("GPU_CHECK_SMOKE") == "1"
# Batch sizes that fit comfortably in 80 GB under bf16; EfficientNet-B4 at 380 px is the hungry one.
BATCH = {"resnet50": 128, "efficientnet_b4": 48, "inception_v3": 128, "densenet121": 128}
WARMUP_STEPS, TIMED_STEPS, STEPS_PER_EPOCH, EPOCHS = (1, 2, 2, 2) if SMOKE else (10, 30, 12, 3)

if not SMOKE and not torch.cuda.is_available():
    raise SystemExit("no CUDA GPU visible; run this on a GPU machine (or GPU_CHECK_SMOKE=1)")
device = torch.device("cpu" if SMOKE else "cuda")
amp = None if SMOKE else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare(name, size, batch):
    """Images/s of a plain AMP + channels_last loop on random tensors resident on the device."""
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = timm.create_model(name, num_classes=7).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    for _ in range(WARMUP_STEPS):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step()
    sync()
    rate = batch * TIMED_STEPS / (time.perf_counter() - started)
    del model, optimizer, x
    return rate


def pipeline(name, size, batch, policy):
    """Images/s of train_run's last epoch (the first one pays for cuDNN autotuning)."""
    rng = np.random.default_rng(0)
    n_train, n_val = batch * STEPS_PER_EPOCH, 2 * batch
    n = n_train + n_val
    data = PreparedData(
        images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        labels=rng.integers(0, 7, n),
        image_ids=np.array([f"img{i}" for i in range(n)]),
        group_ids=np.array([f"lesion{i}" for i in range(n)]),
        class_names=HAM10000_CLASSES,
        parts={"train": np.arange(n_train), "val": np.arange(n_train, n)},
    )
    spec = RunSpec(
        backbone=name, image_size=size, loss="cce", batch_size=batch, epochs=EPOCHS,
        warmup_epochs=1, augment_policy=policy, aug_strength=0.5, device=device.type,
        threads=1 if SMOKE else (os.cpu_count() or 1), precision="auto",
    )
    result = train_run(spec, data)
    assert result.outcome == "completed", result.outcome
    return result.history[-1]["train_images_per_s"], result.peak_memory_mb / 1024


print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu (smoke)'}; "
      f"torch {torch.__version__}, timm {timm.__version__}; AMP {amp}; channels_last")
print()
print("| backbone | px | batch | bare img/s | train_run none | ratio | train_run standard | ratio | peak GB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, batch in BATCH.items():
    info = resolve_backbone(name)
    size = info.min_size if SMOKE else info.native_size
    batch = 4 if SMOKE else batch
    started = time.perf_counter()
    ceiling = bare(name, size, batch)
    plain, _ = pipeline(name, size, batch, "none")
    augmented, peak = pipeline(name, size, batch, "standard")
    print(f"| {name} | {size} | {batch} | {ceiling:.0f} | {plain:.0f} | {plain / ceiling:.2f} "
          f"| {augmented:.0f} | {augmented / ceiling:.2f} | {peak:.1f} |", flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
PY
