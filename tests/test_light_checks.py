"""A study file is checked completely before anything heavy is imported.

``cce-bench run`` reads and checks the whole study file, backbone names, losses, augmentation
policies and metric names included, before it imports the engine, so that a typo is refused at
once instead of after seconds of torch, timm, Ray, scipy and statsmodels imports. Backbone names
come from a catalogue of timm's names cached once per timm version (``cce_bench.timm_catalogue``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cce_bench import timm_catalogue
from cce_bench.models import resolve_backbone

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "ray", "scipy", "statsmodels", "sklearn", "optuna", "pandas")


def imported_after(code: str, cache_dir: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules it left imported."""
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    env = {**os.environ, "CCE_BENCH_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def primed_cache(tmp_path_factory) -> Path:
    """A cache folder that already holds the installed timm's catalogue, as after a first run."""
    cache = tmp_path_factory.mktemp("cache")
    timm_catalogue._write(timm_catalogue.catalogue_path(cache), timm_catalogue.timm_catalogue())
    return cache


#: Every shipped study but those with a weights file, which is fitted to its architecture (key
#: for key) by building the model: the one check that needs timm, and it runs last.
LIGHT_STUDIES = [
    "quickstart.toml",
    "ham10000-cpu.toml",
    "paper-ham10000.toml",
    "lesion-ham10000.toml",
    "dermamnist.toml",
]


@pytest.mark.parametrize("study", LIGHT_STUDIES)
def test_checking_a_shipped_study_imports_no_heavy_library(study, primed_cache, tmp_path):
    data = None if study == "quickstart.toml" else str(tmp_path)  # any existing folder passes
    code = (
        "from cce_bench.config import load_study\n"
        f"load_study({str(REPO / 'studies' / study)!r}, data_path={data!r})\n"
    )
    assert imported_after(code, primed_cache) == []


def test_a_typo_in_a_study_with_weights_is_refused_before_the_weights_are_fitted(
    primed_cache, tmp_path
):
    text = (REPO / "studies" / "ham10000-cpu-pretrained.toml").read_text()
    study = tmp_path / "typo.toml"
    study.write_text(text.replace("[evaluate]", "[evaluate]\nseedz = 3", 1))
    code = (
        "from cce_bench.config import load_study\n"
        "from cce_bench.errors import CceBenchError\n"
        f"try:\n    load_study({str(study)!r}, data_path={str(tmp_path)!r})\n"
        "except CceBenchError as error:\n    assert 'seedz' in str(error), error\n"
        "else:\n    raise AssertionError('the typo was accepted')\n"
    )
    assert imported_after(code, primed_cache) == []


def test_a_misspelt_key_is_refused_by_the_cli_before_the_engine_is_imported(primed_cache, tmp_path):
    study = tmp_path / "typo.toml"
    study.write_text('name = "x"\n[data]\nsorce = "synthetic"\n')
    code = (
        "from cce_bench.cli import main\n"
        f"try:\n    main(['run', {str(study)!r}])\n"
        "except SystemExit as exit_:\n    assert exit_.code == 2, exit_.code\n"
    )
    assert imported_after(code, primed_cache) == []


def test_an_unknown_backbone_is_refused_from_the_catalogue_without_timm(primed_cache):
    code = (
        "from cce_bench.models import resolve_backbone\n"
        "from cce_bench.errors import ModelError\n"
        "try:\n    resolve_backbone('resnet5O')\n"
        "except ModelError as error:\n    assert 'resnet50' in str(error), error\n"
    )
    assert imported_after(code, primed_cache) == []


def test_the_catalogue_gives_timms_own_sizes():
    import timm
    from timm.models import get_pretrained_cfg

    catalogue = timm_catalogue.build_catalogue()
    assert catalogue.architectures == frozenset(timm.list_models())
    for name in ("inception_v3", "tf_efficientnet_b4.ns_jft_in1k", "test_resnet", "resnet50"):
        cfg = get_pretrained_cfg(name)
        sizes = catalogue.input_sizes(name)
        assert sizes is not None and sizes.native == cfg.input_size[-1]
        assert sizes.fixed == bool(cfg.fixed_input_size)
    assert resolve_backbone("inception_v3").min_size == 75  # timm's min_input_size


def test_the_catalogue_is_read_from_the_cache_once_written(monkeypatch, tmp_path):
    monkeypatch.setenv("CCE_BENCH_CACHE_DIR", str(tmp_path))
    timm_catalogue.timm_catalogue.cache_clear()
    try:
        first = timm_catalogue.timm_catalogue()
        assert timm_catalogue.catalogue_path().is_file()
        timm_catalogue.timm_catalogue.cache_clear()

        def never(*_args):
            raise AssertionError("timm was asked again although the catalogue is cached")

        monkeypatch.setattr(timm_catalogue, "build_catalogue", never)
        assert timm_catalogue.timm_catalogue() == first
    finally:
        timm_catalogue.timm_catalogue.cache_clear()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": 1, "timm_version": "0.0.1", "architectures": [], "sizes": {}}',
        '{"format": 999, "timm_version": "%(version)s", "architectures": [], "sizes": {}}',
        '{"format": 1, "timm_version": "%(version)s", "sizes": {}}',
    ],
    ids=["torn", "another-timm-version", "another-format", "missing-field"],
)
def test_a_foreign_or_broken_catalogue_file_is_rebuilt_from_timm(content, monkeypatch, tmp_path):
    monkeypatch.setenv("CCE_BENCH_CACHE_DIR", str(tmp_path))
    path = timm_catalogue.catalogue_path()
    path.write_text(content % {"version": timm_catalogue.timm_version()})
    timm_catalogue.timm_catalogue.cache_clear()
    try:
        catalogue = timm_catalogue.timm_catalogue()
    finally:
        timm_catalogue.timm_catalogue.cache_clear()
    assert "resnet50" in catalogue.architectures
    assert json.loads(path.read_text())["timm_version"] == timm_catalogue.timm_version()


def test_an_unwritable_cache_folder_costs_only_the_import(monkeypatch, tmp_path):
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("CCE_BENCH_CACHE_DIR", str(blocked))
    timm_catalogue.timm_catalogue.cache_clear()
    try:
        assert "resnet50" in timm_catalogue.timm_catalogue().architectures
    finally:
        timm_catalogue.timm_catalogue.cache_clear()
    assert blocked.is_file()
