"""Study files: what a valid one means, and one clear error per kind of mistake.

Every rejection test checks that the message names the study file and the dotted key, because
that one line is all a user sees before fixing the file.
"""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from cce_bench.config import (
    StudyFileError,
    default_study_path,
    diff_studies,
    load_study,
    study_from_dict,
)
from cce_bench.config.schema import dumps_toml
from cce_bench.data import SYNTHETIC_N_IMAGES
from cce_bench.errors import StudyConfigError

REPO_STUDIES = Path(__file__).resolve().parents[1] / "studies"

#: The smallest valid study; ResNet-50 is one of the paper's four, resolved without importing timm.
MINIMAL: dict[str, Any] = {
    "name": "t",
    "data": {"source": "synthetic"},
    "models": {"backbones": ["resnet50"]},
}


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def study_file(tmp_path: Path, changes: dict[str, Any] | None = None, text: str = "") -> Path:
    """Write MINIMAL with ``changes`` merged in (or ``text`` verbatim) to tmp_path/study.toml."""
    path = tmp_path / "study.toml"
    path.write_text(text or dumps_toml(merged(MINIMAL, changes or {})), encoding="utf-8")
    return path


def rejection(path: Path, key: str | None, **kwargs: Any) -> str:
    """The message of the StudyConfigError raised for ``path``; it names the file and key."""
    with pytest.raises(StudyConfigError) as caught:
        load_study(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message
    if key is not None:
        assert f"`{key}`" in message
        assert caught.value.key == key
    return message


# -- the file itself ---------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    message = rejection(tmp_path / "nope.toml", None)
    assert "not found" in message


def test_missing_file_lists_every_shipped_study(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO_STUDIES.parent)
    message = rejection(tmp_path / "nope.toml", None)
    for study in REPO_STUDIES.glob("*.toml"):
        assert f"studies/{study.name}" in message


def test_invalid_toml_reports_line_and_column(tmp_path: Path) -> None:
    path = study_file(tmp_path, text='name = "t"\n[data]\nsource synthetic\n')
    message = rejection(path, None)
    assert "invalid TOML at line 3, column 8" in message


def test_unknown_key_names_the_closest_valid_key(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"tune": {"n_trial": 3}})
    message = rejection(path, "tune.n_trial")
    assert "did you mean `tune.n_trials`?" in message


def test_key_in_the_wrong_table_names_its_table(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"train": {"n_trials": 3}})
    assert "did you mean `tune.n_trials`?" in rejection(path, "train.n_trials")


def test_unknown_key_without_a_close_match_lists_the_valid_ones(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"evaluate": {"zzz": 1}})
    assert "valid keys here: seeds, first_seed" in rejection(path, "evaluate.zzz")


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    path = study_file(tmp_path, text='[data]\nsource = "synthetic"\n')
    assert "missing required key" in rejection(path, "name")


# -- types ---------------------------------------------------------------------------------------


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    message = rejection(study_file(tmp_path, {"train": {"epochs": True}}), "train.epochs")
    assert "must be an integer, got true (a boolean)" in message
    assert "epochs = 4" in message


def test_string_is_not_a_number(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"train": {"weight_decay": "0.1"}})
    assert "must be a finite number" in rejection(path, "train.weight_decay")


def test_scalar_where_a_table_belongs_is_rejected(tmp_path: Path) -> None:
    assert "must be a table" in rejection(study_file(tmp_path, {"models": 3}), "models")


def test_range_must_be_two_numbers(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"tune": {"space": {"lr": [1e-4]}}})
    assert "range [low, high]" in rejection(path, "tune.space.lr")


def test_integer_is_accepted_where_a_number_is_expected(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path, {"resources": {"gpus_per_run": 1}}))
    assert spec.resources.gpus_per_run == 1.0
    assert isinstance(spec.resources.gpus_per_run, float)


# -- ranges --------------------------------------------------------------------------------------

OUT_OF_RANGE = {
    "tune.n_trials": {"tune": {"n_trials": 0}},
    "evaluate.seeds": {"evaluate": {"seeds": 0}},
    "train.epochs": {"train": {"epochs": 0}},
    "train.batch_size": {"train": {"batch_size": 1}},
    "data.test_fraction": {"data": {"test_fraction": 1.0}},
    "data.val_fraction": {"data": {"val_fraction": 0.0}},
    "resources.cpus_per_run": {"resources": {"cpus_per_run": 0}},
    "resources.gpus_per_run": {"resources": {"gpus_per_run": -0.5}},
    "resources.max_concurrent": {"resources": {"max_concurrent": 0}},
    "tune.space.lr": {"tune": {"space": {"lr": [0.0, 1e-3]}}},
    "tune.space.aug_strength": {"tune": {"space": {"aug_strength": [0.0, 1.5]}}},
}


@pytest.mark.parametrize("key", OUT_OF_RANGE)
def test_out_of_range_value_is_rejected(tmp_path: Path, key: str) -> None:
    message = rejection(study_file(tmp_path, OUT_OF_RANGE[key]), key)
    assert "must be" in message
    assert "; set it" in message


def test_range_with_low_above_high_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"tune": {"space": {"lr": [1e-3, 1e-4]}}})
    assert "low < high" in rejection(path, "tune.space.lr")


def test_fractions_must_leave_training_images(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"test_fraction": 0.5, "val_fraction": 0.5}})
    assert "leaves no training images" in rejection(path, "data.val_fraction")


def test_fractional_gpus_share_one_gpu(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path, {"resources": {"gpus_per_run": 0.25}}))
    assert spec.resources.gpus_per_run == 0.25


def test_more_than_one_gpu_must_be_whole(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"resources": {"gpus_per_run": 1.5}})
    assert "whole GPUs" in rejection(path, "resources.gpus_per_run")


def test_cuda_device_without_a_gpu_per_run_is_rejected(tmp_path: Path) -> None:
    # Ray hides the GPUs from a task that requests none, so every run would fail on "cuda".
    path = study_file(tmp_path, {"train": {"device": "cuda"}})
    message = rejection(path, "train.device")
    assert "`resources.gpus_per_run` = 0" in message and "gpus_per_run = 1" in message
    cuda = {"train": {"device": "cuda"}, "resources": {"gpus_per_run": 0.5}}
    assert load_study(study_file(tmp_path, cuda)).train.device == "cuda"


def test_warmup_longer_than_training_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"train": {"epochs": 2, "warmup_epochs": 3}})
    assert "exceeds `train.epochs`" in rejection(path, "train.warmup_epochs")


def test_unsafe_study_name_is_rejected(tmp_path: Path) -> None:
    assert "safe folder name" in rejection(study_file(tmp_path, {"name": "../x"}), "name")


# -- names from registries -----------------------------------------------------------------------


def test_unknown_source_suggests_the_closest(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"source": "synthetik"}})
    assert "did you mean 'synthetic'?" in rejection(path, "data.source")


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"split": "lesions"}})
    assert "did you mean 'lesion'?" in rejection(path, "data.split")


def test_unknown_resize_mode_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"resize_mode": "squish"}})
    assert "did you mean 'squash'?" in rejection(path, "data.resize_mode")


def test_crop_resize_mode_is_stored_by_its_canonical_name(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path, {"data": {"resize_mode": "crop"}}))
    assert spec.data.resize_mode == "center_crop"


def test_official_split_needs_a_source_that_ships_one(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"split": "official"}})
    assert "dermamnist" in rejection(path, "data.split")


def test_unknown_loss_suggests_the_closest(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"losses": {"arms": ["ce", "cce_tua"]}})
    assert "did you mean 'cce_tau'?" in rejection(path, "losses.arms")


def test_baseline_must_be_an_arm(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"losses": {"arms": ["cce", "cce_tau"]}})
    assert "not one of `losses.arms`" in rejection(path, "losses.baseline")


def test_repeated_arm_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"losses": {"arms": ["ce", "cce", "ce"]}})
    assert "twice" in rejection(path, "losses.arms")


def test_unknown_pruner_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"tune": {"pruner": "medain"}})
    assert "did you mean 'median'?" in rejection(path, "tune.pruner")


def test_successive_halving_is_a_pruner_name(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"tune": {"pruner": "successive_halving"}})
    assert load_study(path).tune.pruner == "successive_halving"


def test_a_misspelt_successive_halving_is_corrected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"tune": {"pruner": "successive_halvng"}})
    assert "did you mean 'successive_halving'?" in rejection(path, "tune.pruner")


def test_metric_must_be_a_scalar_metric(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"tune": {"metric": "per_class_recall"}})
    assert "balanced_accuracy" in rejection(path, "tune.metric")


def test_unknown_augment_policy_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"train": {"augment_policy": "strnog"}})
    assert "did you mean 'strong'?" in rejection(path, "train.augment_policy")


def test_unknown_backbone_suggests_a_timm_name(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"models": {"backbones": ["resnet5O"]}})
    assert "did you mean" in rejection(path, "models.backbones")


def test_image_size_below_a_backbone_minimum_is_rejected(tmp_path: Path) -> None:
    changes = {"data": {"image_size": 64}, "models": {"backbones": ["inception_v3"]}}
    assert "at least 75 px" in rejection(study_file(tmp_path, changes), "data.image_size")


def test_tau_range_without_an_arm_that_takes_tau_is_rejected(tmp_path: Path) -> None:
    changes = {"losses": {"arms": ["ce", "cce"]}, "tune": {"space": {"tau": [-1.0, 1.0]}}}
    message = rejection(study_file(tmp_path, changes), "tune.space.tau")
    assert "cce_tau" in message


# -- data paths ----------------------------------------------------------------------------------


def test_real_source_without_a_path_asks_for_data(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"source": "ham10000"}})
    assert "--data PATH" in rejection(path, "data.path")


def test_data_path_that_does_not_exist_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"source": "ham10000"}})
    assert "does not exist" in rejection(path, "data.path", data_path=tmp_path / "missing")


def test_data_override_replaces_the_study_path(tmp_path: Path) -> None:
    folder = tmp_path / "ham"
    folder.mkdir()
    path = study_file(tmp_path, {"data": {"source": "ham10000", "path": "elsewhere"}})
    assert load_study(path, data_path=folder).data.path == folder.resolve()


def test_relative_data_path_is_relative_to_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "ham").mkdir()
    path = study_file(tmp_path, {"data": {"source": "ham10000", "path": "ham"}})
    assert load_study(path).data.path == (tmp_path / "ham").resolve()


def test_synthetic_source_refuses_a_data_path(tmp_path: Path) -> None:
    path = study_file(tmp_path)
    assert "reads no folder" in rejection(path, "data.path", data_path=tmp_path)


def test_synthetic_only_key_on_a_real_source_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"source": "ham10000", "n_images": 100}})
    assert "synthetic" in rejection(path, "data.n_images", data_path=tmp_path)


def test_metadata_for_a_source_that_takes_none_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"data": {"metadata": "meta.csv"}})
    assert "ham10000" in rejection(path, "data.metadata")


def test_missing_weights_file_is_rejected(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"models": {"pretrained": "weights.safetensors"}})
    assert "does not exist" in rejection(path, "models.pretrained")


def test_weights_file_that_is_not_a_state_dict_is_rejected_as_the_study_loads(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.pt").write_text("not a tensor file", encoding="utf-8")
    path = study_file(tmp_path, {"models": {"pretrained": "notes.pt"}})
    assert "is not a state dict that loads safely" in rejection(path, "models.pretrained")


def test_a_state_dict_weights_file_loads_with_its_absolute_path(tmp_path: Path) -> None:
    write_state_dict(tmp_path / "w.pt")
    changes = {"models": {"backbones": [TINY], "pretrained": "w.pt"}}
    spec = load_study(study_file(tmp_path, changes))
    assert spec.models.pretrained == tmp_path.resolve() / "w.pt"


#: A timm test model (a few thousand parameters): weights files for it are written in a blink.
TINY = "test_resnet"


def write_state_dict(path: Path, backbone: str = TINY) -> None:
    """The state dict of a randomly initialised ``backbone``: what fits it, head included."""
    import timm
    import torch

    torch.save(timm.create_model(backbone.partition("@")[0]).state_dict(), path)


# -- what a valid study means ----------------------------------------------------------------------


def test_minimal_study_takes_the_defaults(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path))
    assert spec.data.n_images == SYNTHETIC_N_IMAGES
    assert spec.data.difficulty == 0.5
    assert spec.data.split == "lesion"
    assert spec.losses.arms == ("ce", "cce", "cce_tau")
    assert spec.losses.baseline == "ce"
    assert (spec.train.optimizer, spec.train.weight_decay) == ("adamw", 0.05)
    assert spec.tune.metric == "balanced_accuracy"
    assert spec.tune.direction == "maximize"
    assert spec.resources.threads_per_run == spec.resources.cpus_per_run


def test_omitted_image_size_means_each_backbone_native_size(tmp_path: Path) -> None:
    changes = {"models": {"backbones": ["resnet50", "efficientnet_b4"]}}
    spec = load_study(study_file(tmp_path, changes))
    assert [spec.image_size_for(b) for b in spec.models.backbones] == [224, 380]


def test_pair_error_metric_is_minimised(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path, {"tune": {"metric": "pair_error_nv_mel"}}))
    assert spec.tune.direction == "minimize"


def test_tau_range_comes_from_the_study_or_the_loss_default(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path, {"tune": {"space": {"tau": [-0.5, 0.5]}}}))
    assert spec.tune.space.ranges_for("cce_tau")["tau"] == (-0.5, 0.5)
    assert set(spec.tune.space.ranges_for("ce")) == {"lr", "aug_strength"}
    default = load_study(study_file(tmp_path)).tune.space.ranges_for("cce_tau")
    assert default["tau"] == (-1.0, 1.5)


def test_study_round_trips_through_its_toml(tmp_path: Path) -> None:
    (tmp_path / "ham").mkdir()
    write_state_dict(tmp_path / "w.pt")
    changes = {
        "data": {"source": "ham10000", "path": "ham", "image_size": 96, "split": "paper"},
        "models": {"backbones": [TINY], "pretrained": "w.pt"},
        "tune": {"space": {"tau": [-1.0, 1.0], "lr": [1e-5, 1e-2]}},
    }
    spec = load_study(study_file(tmp_path, changes))
    copy_path = tmp_path / "copy" / "study.toml"
    copy_path.parent.mkdir()
    copy_path.write_text(spec.to_toml(), encoding="utf-8")
    assert load_study(copy_path) == spec


def test_fingerprint_ignores_budgets_but_not_epochs(tmp_path: Path) -> None:
    base = load_study(study_file(tmp_path))
    more = study_from_dict(merged(MINIMAL, {"tune": {"n_trials": 9}, "evaluate": {"seeds": 9}}))
    longer = study_from_dict(merged(MINIMAL, {"train": {"epochs": 6}}))
    assert more.fingerprint() == base.fingerprint()
    assert longer.fingerprint() != base.fingerprint()


def test_diff_names_each_changed_key_but_not_budgets() -> None:
    old = study_from_dict(MINIMAL).to_dict()
    changes = {"train": {"epochs": 6}, "tune": {"n_trials": 9}, "data": {"image_size": 64}}
    new = study_from_dict(merged(MINIMAL, changes)).to_dict()
    assert diff_studies(old, new) == ["train.epochs: 4 -> 6", "data.image_size: (unset) -> 64"]


def test_moving_the_dataset_or_changing_resources_keeps_the_fingerprint(tmp_path: Path) -> None:
    real = {"data": {"source": "ham10000", "path": str(tmp_path / "a")}}
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    base = study_from_dict(merged(MINIMAL, real))
    moved = study_from_dict(merged(MINIMAL, real), data_path=tmp_path / "b")
    resources = {"max_concurrent": 8, "gpus_per_run": 0.25, "cpus_per_run": 4}
    wider = study_from_dict(merged(MINIMAL, {**real, "resources": resources}))
    assert moved.fingerprint() == wider.fingerprint() == base.fingerprint()
    assert diff_studies(base.to_dict(), moved.to_dict()) == []
    assert diff_studies(base.to_dict(), wider.to_dict()) == []


def test_study_file_error_survives_pickling() -> None:
    error = StudyFileError("s.toml", "train.epochs", "`train.epochs` must be >= 1")
    clone = pickle.loads(pickle.dumps(error))
    assert (str(clone), clone.key) == (str(error), "train.epochs")


# -- shipped studies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["quickstart", "paper-ham10000", "lesion-ham10000", "dermamnist", "ham10000-cpu"]
)
def test_shipped_study_loads(name: str, tmp_path: Path) -> None:
    path = REPO_STUDIES / f"{name}.toml"
    spec = load_study(path, data_path=None if name == "quickstart" else tmp_path)
    assert spec.name == name


def test_shipped_pretrained_study_loads_with_weights_that_fit(tmp_path: Path) -> None:
    """Its weights file lies outside the repository (where it lies is the user's), so a
    random-init ``tf_efficientnet_lite0`` saved in its place stands in: everything else in the
    file must load as shipped."""
    import timm
    from safetensors.torch import save_file

    shipped = REPO_STUDIES / "ham10000-cpu-pretrained.toml"
    text = shipped.read_text(encoding="utf-8")
    weights = re.search(r'^"tf_efficientnet_lite0@imagenet" = "([^"]+)"$', text, flags=re.M)
    assert weights, "the study names a weights file for tf_efficientnet_lite0@imagenet"
    model = timm.create_model("tf_efficientnet_lite0")
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    copy = tmp_path / shipped.name
    copy.write_text(text.replace(weights.group(1), "w.safetensors"), encoding="utf-8")
    spec = load_study(copy, data_path=tmp_path)
    weights_path = spec.models.initialisation("tf_efficientnet_lite0@imagenet")
    assert weights_path == tmp_path / "w.safetensors"
    assert spec.models.initialisation("tf_efficientnet_lite0@scratch") is False
    assert (spec.evaluate.stopping, spec.evaluate.seeds) == ("fixed", 3)


def test_shipped_pretrained_study_normalises_as_its_tf_ported_weights_expect() -> None:
    """The shared weights are Google's TF EfficientNet-Lite0: exact in timm's ``tf_`` model with
    mean = std = 0.5 (TF-Lite's (x - 127) / 128), not with ImageNet's statistics."""
    from cce_bench.models import backbone_normalization

    text = (REPO_STUDIES / "ham10000-cpu-pretrained.toml").read_text(encoding="utf-8")
    assert 'backbones = ["tf_efficientnet_lite0@imagenet", "tf_efficientnet_lite0@scratch"]' in text
    half = (0.5, 0.5, 0.5)
    assert backbone_normalization("tf_efficientnet_lite0@imagenet") == (half, half)
    assert backbone_normalization("tf_efficientnet_lite0@scratch") == (half, half)


def test_shipped_real_data_study_asks_for_data(tmp_path: Path) -> None:
    assert "--data PATH" in rejection(REPO_STUDIES / "paper-ham10000.toml", "data.path")


def test_default_study_is_the_quickstart_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_study_path().read_bytes() == (REPO_STUDIES / "quickstart.toml").read_bytes()


# -- the analysis plan ---------------------------------------------------------------------------


def test_analysis_plan_defaults_to_balanced_accuracy_and_every_other_arm(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path))
    plan = spec.analysis
    assert (plan.primary_metric, plan.alpha, plan.margin) == ("balanced_accuracy", 0.05, 0.01)
    assert plan.comparisons is None
    assert plan.compared_arms(spec.losses) == ("cce", "cce_tau")


def test_analysis_comparisons_pick_the_arms_compared(tmp_path: Path) -> None:
    spec = load_study(study_file(tmp_path, {"analysis": {"comparisons": ["cce_tau"]}}))
    assert spec.analysis.compared_arms(spec.losses) == ("cce_tau",)


def test_derived_metric_cannot_be_the_primary_metric(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"analysis": {"primary_metric": "paper_accuracy"}})
    message = rejection(path, "analysis.primary_metric")
    assert "is a function of 'top1' in the same run, so it is shown but never tested" in message


def test_unknown_primary_metric_suggests_the_closest(tmp_path: Path) -> None:
    path = study_file(tmp_path, {"analysis": {"primary_metric": "balanced_acc"}})
    assert "did you mean 'balanced_accuracy'?" in rejection(path, "analysis.primary_metric")


def test_comparison_must_be_an_arm_other_than_the_baseline(tmp_path: Path) -> None:
    unknown = study_file(tmp_path, {"analysis": {"comparisons": ["cce_tua"]}})
    assert "did you mean 'cce_tau'?" in rejection(unknown, "analysis.comparisons")
    baseline = study_file(tmp_path, {"analysis": {"comparisons": ["ce", "cce"]}})
    assert "lists the baseline 'ce'" in rejection(baseline, "analysis.comparisons")
    empty = study_file(tmp_path, {"analysis": {"comparisons": []}})
    assert "is empty" in rejection(empty, "analysis.comparisons")


@pytest.mark.parametrize(("key", "value"), [("margin", 1), ("margin", 0), ("alpha", 5)])
def test_margin_and_alpha_must_be_fractions(tmp_path: Path, key: str, value: float) -> None:
    path = study_file(tmp_path, {"analysis": {key: value}})
    assert "set it within" in rejection(path, f"analysis.{key}")


def test_the_analysis_plan_is_part_of_the_fingerprint() -> None:
    base = study_from_dict(MINIMAL)
    wider = study_from_dict(merged(MINIMAL, {"analysis": {"margin": 0.02}}))
    assert wider.fingerprint() != base.fingerprint()
    assert diff_studies(base.to_dict(), wider.to_dict()) == ["analysis.margin: 0.01 -> 0.02"]


@pytest.mark.parametrize("name", ["quickstart", "paper-ham10000", "lesion-ham10000", "dermamnist",
                                  "ham10000-cpu", "ham10000-cpu-pretrained"])  # fmt: skip
def test_shipped_study_states_its_analysis_plan(name: str) -> None:
    import tomllib

    table = tomllib.loads((REPO_STUDIES / f"{name}.toml").read_text(encoding="utf-8"))
    assert set(table["analysis"]) == {"primary_metric", "comparisons", "alpha", "margin"}
