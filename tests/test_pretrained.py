"""Initial weights chosen per backbone, and one backbone under two initialisations in one study.

Weights files are written in ``tmp_path`` from randomly initialised timm test models (a few
thousand parameters), so nothing here reads the network or a shared folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from cce_bench.config import load_study
from cce_bench.errors import ModelError, ResultsError, StudyConfigError
from cce_bench.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    backbone_normalization,
    create_backbone,
    resolve_backbone,
)

TINY = "test_resnet"
OTHER = "test_efficientnet"

STUDY = """
name = "variants"
[data]
source = "synthetic"
n_images = 200
image_size = 32
[models]
backbones = {backbones}
{pretrained}
[losses]
arms = ["ce", "cce"]
[train]
epochs = 1
batch_size = 32
[tune]
n_trials = 1
[evaluate]
seeds = 2
[resources]
cpus_per_run = 1
max_concurrent = 2
max_retries = 0
"""


def weights_file(path: Path, model: str = TINY) -> Path:
    """A safetensors file of a randomly initialised timm ``model``, head included."""
    torch.manual_seed(7)
    save_file(timm.create_model(model).state_dict(), str(path))
    return path


def study_file(folder: Path, backbones: list[str], pretrained: str) -> Path:
    path = folder / "study.toml"
    quoted = "[" + ", ".join(f'"{name}"' for name in backbones) + "]"
    path.write_text(STUDY.format(backbones=quoted, pretrained=pretrained), encoding="utf-8")
    return path


def refusal(path: Path) -> StudyConfigError:
    with pytest.raises(StudyConfigError) as caught:
        load_study(path)
    assert str(path) in str(caught.value)
    return caught.value


TABLE = f'[models.pretrained]\n{TINY} = "w.safetensors"\n"{TINY}@scratch" = false\n'


# -- named variants ----------------------------------------------------------------------------


def test_a_variant_is_its_base_model_under_its_own_name():
    info = resolve_backbone(f"{TINY}@scratch")
    assert info.name == f"{TINY}@scratch"
    assert info.timm_name == resolve_backbone(TINY).timm_name
    assert info.native_size == resolve_backbone(TINY).native_size


def test_a_misspelt_variant_base_still_gets_did_you_mean():
    with pytest.raises(ModelError, match=r"did you mean.*resnet50"):
        resolve_backbone("resnet5O@scratch")


@pytest.mark.parametrize("name", ["resnet18@", "resnet18@a/b", "resnet18@-x", "resnet18@a@b"])
def test_a_variant_label_unsafe_in_a_file_name_is_refused(name):
    with pytest.raises(ModelError, match="label after '@'"):
        resolve_backbone(name)


def test_a_variant_builds_and_loads_weights_like_its_base(tmp_path):
    path = weights_file(tmp_path / "w.safetensors")
    model = create_backbone(f"{TINY}@imagenet", 7, pretrained=path)
    expected = load_file(str(path))
    assert torch.equal(model.state_dict()["conv1.0.weight"], expected["conv1.0.weight"])
    assert model.get_classifier().out_features == 7


@pytest.mark.parametrize("model", [TINY, OTHER])
def test_a_pretrained_backbone_starts_its_new_head_as_a_fresh_torch_linear_layer(tmp_path, model):
    path = weights_file(tmp_path / "w.safetensors", model)
    head = create_backbone(model, 7, pretrained=path).get_classifier()
    bound = 1 / head.in_features**0.5  # nn.Linear's own: uniform in +-1/sqrt(fan_in)
    assert head.weight.abs().max() <= bound and head.bias.abs().max() <= bound
    assert head.weight.std() > bound / 4, "not zero, not a tiny constant: logits differ"


def test_the_new_head_of_pretrained_efficientnet_is_not_timms_from_scratch_one(tmp_path):
    """timm's EfficientNet head is uniform in +-1/sqrt(classes), for 1,000 ImageNet classes."""
    path = weights_file(tmp_path / "w.safetensors", OTHER)
    pretrained = create_backbone(OTHER, 7, pretrained=path).get_classifier()
    scratch = create_backbone(OTHER, 7, pretrained=False).get_classifier()
    assert scratch.weight.abs().max() > 1 / pretrained.in_features**0.5
    assert pretrained.weight.abs().max() <= 1 / pretrained.in_features**0.5


def test_a_weights_file_with_a_head_of_the_right_size_keeps_it(tmp_path):
    torch.manual_seed(3)
    saved = timm.create_model(TINY, num_classes=7).state_dict()
    save_file(saved, str(tmp_path / "w7.safetensors"))
    head = create_backbone(TINY, 7, pretrained=tmp_path / "w7.safetensors").get_classifier()
    assert torch.equal(head.weight, saved["fc.weight"])


# -- the normalisation ---------------------------------------------------------------------------


def test_normalisation_depends_on_the_architecture_not_the_initialisation():
    assert backbone_normalization(f"{TINY}@scratch") == backbone_normalization(TINY)
    assert backbone_normalization("resnet18@scratch") == (IMAGENET_MEAN, IMAGENET_STD)
    assert backbone_normalization("inception_v3@scratch") == ((0.5,) * 3, (0.5,) * 3)


# -- the study file ------------------------------------------------------------------------------


def test_a_table_gives_each_backbone_its_weights_paths_relative_to_the_study(tmp_path):
    path = weights_file(tmp_path / "w.safetensors")
    spec = load_study(study_file(tmp_path, [TINY, f"{TINY}@scratch"], TABLE))
    assert spec.models.initialisation(TINY) == path.resolve()
    assert spec.models.initialisation(f"{TINY}@scratch") is False


def test_a_backbone_the_table_leaves_out_starts_from_random_weights(tmp_path):
    weights_file(tmp_path / "w.safetensors")
    table = f'[models.pretrained]\n{TINY} = "w.safetensors"\n'
    spec = load_study(study_file(tmp_path, [TINY, f"{TINY}@scratch"], table))
    assert spec.models.initialisation(f"{TINY}@scratch") is False


def test_the_weights_sha256_is_computed_as_the_study_loads(tmp_path):
    path = weights_file(tmp_path / "w.safetensors")
    spec = load_study(study_file(tmp_path, [TINY, f"{TINY}@scratch"], TABLE))
    assert spec.models.weights_sha256 == {TINY: hashlib.sha256(path.read_bytes()).hexdigest()}


def test_the_sha256_is_no_key_of_the_study_file_and_not_stored(tmp_path):
    weights_file(tmp_path / "w.safetensors")
    spec = load_study(study_file(tmp_path, [TINY, f"{TINY}@scratch"], TABLE))
    assert "weights_sha256" not in spec.to_toml()
    table = TABLE.replace("[models.pretrained]", "weights_sha256 = 1\n[models.pretrained]")
    assert "unknown key `models.weights_sha256`" in str(
        refusal(study_file(tmp_path, [TINY], table))
    )


def test_a_study_with_a_table_round_trips_through_its_toml(tmp_path):
    weights_file(tmp_path / "w.safetensors")
    spec = load_study(study_file(tmp_path, [TINY, f"{TINY}@scratch"], TABLE))
    copy = tmp_path / "copy" / "study.toml"
    copy.parent.mkdir()
    copy.write_text(spec.to_toml(), encoding="utf-8")
    assert load_study(copy) == spec
    assert f'"{TINY}@scratch" = false' in spec.to_toml()


def test_one_weights_file_for_several_backbones_is_refused_for_the_table_form(tmp_path):
    weights_file(tmp_path / "w.safetensors")
    path = study_file(tmp_path, [TINY, OTHER], 'pretrained = "w.safetensors"')
    error = refusal(path)
    assert error.key == "models.pretrained"
    assert "use the table form" in str(error)


def test_a_table_naming_a_backbone_not_in_the_study_is_refused(tmp_path):
    table = f'[models.pretrained]\n"{TINY}@scrach" = false\n'
    error = refusal(study_file(tmp_path, [TINY, f"{TINY}@scratch"], table))
    assert f"did you mean '{TINY}@scratch'" in str(error)


def test_a_table_value_of_the_wrong_type_is_named_by_its_key(tmp_path):
    table = f"[models.pretrained]\n{TINY} = 3\n"
    error = refusal(study_file(tmp_path, [TINY], table))
    assert error.key == f"models.pretrained.{TINY}"


def test_a_missing_file_in_the_table_is_named_by_its_key(tmp_path):
    error = refusal(study_file(tmp_path, [TINY, f"{TINY}@scratch"], TABLE))
    assert error.key == f"models.pretrained.{TINY}"
    assert "does not exist" in str(error)


def test_a_weights_file_that_does_not_fit_is_refused_naming_the_keys(tmp_path):
    weights_file(tmp_path / "w.safetensors", model=OTHER)
    error = refusal(study_file(tmp_path, [TINY], 'pretrained = "w.safetensors"'))
    assert f"does not fit backbone {TINY}" in str(error)
    assert "conv1.0.weight" in str(error)  # missing from the file
    assert "unexpected (e.g. blocks.0.0.bn1.bias" in str(error)  # in the file, not the model


def test_a_weights_file_with_a_reshaped_tensor_is_refused_naming_it(tmp_path):
    state = timm.create_model(TINY).state_dict()
    state["conv1.0.weight"] = torch.zeros(1, 1, 1, 1)
    save_file(state, str(tmp_path / "w.safetensors"))
    error = refusal(study_file(tmp_path, [TINY], 'pretrained = "w.safetensors"'))
    assert "conv1.0.weight (1, 1, 1, 1) vs" in str(error)


def test_a_weights_file_with_another_head_is_accepted(tmp_path):
    state = timm.create_model(TINY, num_classes=3).state_dict()
    save_file(state, str(tmp_path / "w.safetensors"))
    load_study(study_file(tmp_path, [TINY], 'pretrained = "w.safetensors"'))


def test_the_same_weights_for_two_timm_models_are_refused(tmp_path):
    weights_file(tmp_path / "w.safetensors")
    weights_file(tmp_path / "copy.safetensors")  # same contents under another name
    table = f'[models.pretrained]\n{TINY} = "w.safetensors"\n{OTHER} = "copy.safetensors"\n'
    error = refusal(study_file(tmp_path, [TINY, OTHER], table))
    assert "two different timm models" in str(error)


def test_the_same_weights_for_a_model_and_its_variant_are_accepted(tmp_path):
    weights_file(tmp_path / "w.safetensors")
    table = f'[models.pretrained]\n{TINY} = "w.safetensors"\n"{TINY}@b" = "w.safetensors"\n'
    spec = load_study(study_file(tmp_path, [TINY, f"{TINY}@b"], table))
    assert spec.models.weights_sha256[TINY] == spec.models.weights_sha256[f"{TINY}@b"]


# -- a whole study -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_study_with_a_pretrained_and_a_scratch_variant_runs_reports_and_guards_its_weights(
    ray_local, tmp_path
):
    from cce_bench.report import build_report
    from cce_bench.study import run_study
    from cce_bench.study.store import ResultsStore

    path = weights_file(tmp_path / "w.safetensors")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = load_study(study_file(tmp_path, [TINY, f"{TINY}@scratch"], TABLE))
    outcome = run_study(spec, tmp_path / "results")
    assert outcome.failure is None
    records = ResultsStore(tmp_path / "results" / "variants").read_runs()
    by_backbone = {record["backbone"]: record["spec"] for record in records}
    assert by_backbone[TINY]["pretrained"] == str(path.resolve())
    assert by_backbone[TINY]["pretrained_sha256"] == digest
    assert by_backbone[f"{TINY}@scratch"]["pretrained"] is False
    assert {record["outcome"] for record in records} == {"completed"}
    assert len(records) == 2 * 2 * 2  # backbones x arms x seeds

    report = build_report(tmp_path / "results" / "variants").read_text(encoding="utf-8")
    study_section = report.split("## Study", 1)[1].split("\n## ", 1)[0]
    assert f"| `{TINY}` | weights from `…/{path.name}`, SHA-256 `{digest}` |" in study_section
    assert f"| `{TINY}@scratch` | random initialisation |" in study_section
    # timm's test models are configured with mean = std = 0.5, whatever their initialisation
    assert study_section.count("| mean (0.500, 0.500, 0.500), std (0.500, 0.500, 0.500) |") == 2

    # The same study file, its weights file overwritten: resuming would pair other weights with
    # the finished runs, so it is refused before any work (one study run serves both checks).
    torch.manual_seed(8)
    save_file(timm.create_model(TINY).state_dict(), str(path))
    changed = load_study(study_file(tmp_path, [TINY, f"{TINY}@scratch"], TABLE))
    with pytest.raises(ResultsError, match=rf"{path.name}, the weights file of {TINY}.*--fresh"):
        run_study(changed, tmp_path / "results")
    assert len(ResultsStore(tmp_path / "results" / "variants").read_runs()) == 2 * 2 * 2
