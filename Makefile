# Two commands on a fresh machine:  `make run` (the quickstart study)  and  `make test`.
# Setup pins torch/torchvision in constraints.txt only (timm needs a torchvision built for the same torch);
# the package itself keeps version ranges.
#
# The installer is uv, from the same registry as pip: it unpacks the 5.5 GB of torch wheels in
# parallel, and setup took 25 s against pip's 114 s on a 2-core AMD EPYC (measured side by side,
# both from an empty cache). uv does not read pip's configuration, so any extra indexes pip is
# configured with (a machine that keeps torch's wheels on a local disk) are handed to it for the
# torch step; on a machine without such a configuration both commands use PyPI alone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV := $(BIN)/uv
PIP_EXTRA_INDEXES := $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)
TORCH_INDEXES := $(foreach index,$(PIP_EXTRA_INDEXES),--extra-index-url $(index))
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: setup run test test-under-load lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(UV) pip install --quiet $(TORCH_INDEXES) -c constraints.txt torch torchvision
	$(UV) pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/cce-bench run

# The numeric tests run a second time on PyTorch's AVX2 kernels: they round differently from the
# AVX-512 ones, and a tolerance that only holds on one instruction set fails on the other CPU.
# Two pytest workers (pytest-xdist), each taking whole test files (--dist loadfile), so a module's
# fixtures are built once, in one worker. They are safe side by side: each local Ray is a Ray of
# its own (never joining another worker's or the cluster test's), in its own temp folder.
PYTEST_WORKERS ?= 2
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25
	ATEN_CPU_CAPABILITY=avx2 $(BIN)/pytest -q -p no:cacheprovider tests/test_losses.py tests/test_metrics.py

# The suite must not depend on the machine's speed: run it while a CPU-bound process holds one
# core, as on a shared CI runner or a laptop that is busy with something else.
test-under-load: setup
	$(BIN)/python benchmarks/cpu_hog.py --pidfile .cpu_hog.pid & \
	status=0; $(MAKE) test || status=$$?; \
	kill $$(cat .cpu_hog.pid) 2>/dev/null; rm -f .cpu_hog.pid; exit $$status

bench: setup
	$(BIN)/python benchmarks/bench_loss.py
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
