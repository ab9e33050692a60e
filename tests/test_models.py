"""Backbones by name: the paper's four, any timm model, size checks and weights from files."""

from __future__ import annotations

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from cce_bench.errors import ModelError
from cce_bench.models import (
    IMAGENET_MEAN,
    backbone_normalization,
    check_image_size,
    create_backbone,
    read_weights_file,
    resolve_backbone,
)

TINY = "resnet10t"  # the smallest timm ResNet: builds in ~0.1 s


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def imagenet_weights() -> dict[str, torch.Tensor]:
    """A 1000-class state dict of the tiny backbone, like timm's ImageNet checkpoints."""
    torch.manual_seed(123)
    return timm.create_model(TINY, num_classes=1000).state_dict()


@pytest.mark.parametrize(
    ("name", "native", "minimum"),
    [
        ("resnet50", 224, 32),
        ("efficientnet_b4", 380, 32),
        ("inception_v3", 299, 75),
        ("densenet121", 224, 32),
    ],
)
def test_paper_backbones_resolve_to_their_native_sizes(name, native, minimum):
    info = resolve_backbone(name)
    assert (info.timm_name, info.native_size, info.min_size) == (name, native, minimum)


def test_paper_spelling_names_the_same_backbone():
    assert resolve_backbone("Inception-V3") == resolve_backbone("inception_v3")


def test_any_timm_model_takes_its_size_from_the_pretrained_config():
    info = resolve_backbone(TINY)
    assert (info.timm_name, info.native_size) == (TINY, 176)  # resnet10t.c3_in1k trains at 176


def test_unknown_backbone_suggests_the_closest_timm_model():
    with pytest.raises(ModelError, match="did you mean resnet50"):
        resolve_backbone("resnet500")


def test_resolving_never_builds_a_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("resolve_backbone built a model")

    monkeypatch.setattr(timm, "create_model", refuse)
    resolve_backbone.cache_clear()
    assert resolve_backbone("mobilenetv3_small_050").native_size == 224


def test_inception_v3_below_75_px_is_refused_plainly():
    with pytest.raises(ModelError, match="inception_v3 needs images of at least 75 px"):
        check_image_size("inception_v3", 64)


def test_image_size_message_names_the_sizes_but_no_source():
    """The size may come from a study, ``train --image-size`` or a RunSpec: the caller says."""
    with pytest.raises(ModelError) as caught:
        check_image_size("inception_v3", 64)
    assert "got 64 px" in str(caught.value)
    assert "study" not in str(caught.value)


def test_inception_v3_at_75_px_is_accepted():
    check_image_size("inception_v3", 75)


def test_fixed_size_vision_transformer_refuses_other_sizes():
    with pytest.raises(ModelError, match="224 px images only"):
        check_image_size("vit_tiny_patch16_224", 64)


def test_normalization_follows_the_pretrained_config():
    assert backbone_normalization("inception_v3") == ((0.5,) * 3, (0.5,) * 3)
    assert backbone_normalization("resnet50")[0] == IMAGENET_MEAN


def test_created_backbone_has_a_head_for_the_data_classes():
    model = create_backbone(TINY, 7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_state_dict_file_loads_and_the_head_is_reinitialised(tmp_path, imagenet_weights):
    path = tmp_path / "weights.pt"
    torch.save(imagenet_weights, path)
    model = create_backbone(TINY, 7, pretrained=path)
    assert torch.equal(model.state_dict()["conv1.0.weight"], imagenet_weights["conv1.0.weight"])
    assert model.fc.weight.shape == (7, 512)


def test_safetensors_file_loads(tmp_path, imagenet_weights):
    path = tmp_path / "weights.safetensors"
    save_file(imagenet_weights, str(path))
    model = create_backbone(TINY, 7, pretrained=str(path))
    assert torch.equal(model.state_dict()["conv1.0.weight"], imagenet_weights["conv1.0.weight"])


def test_weights_with_the_same_class_count_keep_their_head(tmp_path):
    fine_tuned = create_backbone(TINY, 7).state_dict()
    path = tmp_path / "fine_tuned.pt"
    torch.save({"state_dict": fine_tuned}, path)  # a training checkpoint's wrapper
    model = create_backbone(TINY, 7, pretrained=path)
    assert torch.equal(model.fc.weight, fine_tuned["fc.weight"])


def test_pickled_full_model_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(create_backbone(TINY, 7), path)
    with pytest.raises(ModelError, match=r"model\.pt .*torch\.save\(model\.state_dict\(\)"):
        create_backbone(TINY, 7, pretrained=path)


def test_read_weights_file_unwraps_a_checkpoint_and_data_parallel_prefix(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"module.fc.weight": torch.ones(2, 2)}, "epoch": 3}, path)
    assert list(read_weights_file(path)) == ["fc.weight"]


def test_read_weights_file_never_runs_a_pickled_model(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(ModelError, match=r"UnpicklingError.*weights_only=True"):
        read_weights_file(path)


def test_file_of_random_bytes_is_refused(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError, match=r"noise\.bin is not a state dict"):
        create_backbone(TINY, 7, pretrained=path)


def test_weights_of_another_architecture_are_refused(tmp_path, imagenet_weights):
    path = tmp_path / "resnet10t.pt"
    torch.save(imagenet_weights, path)
    with pytest.raises(ModelError, match="does not fit backbone resnet18"):
        create_backbone("resnet18", 7, pretrained=path)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ModelError, match=r"absent\.safetensors does not exist"):
        create_backbone(TINY, 7, pretrained=tmp_path / "absent.safetensors")


def test_pretrained_true_offline_without_cache_fails_fast_saying_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"not in the Hugging Face cache.*path of a weights file"):
        create_backbone(TINY, 7, pretrained=True)
    # A hang guard, not a speed check: a download without the probe retries for about a minute.
    assert time.perf_counter() - started < 30


def test_pretrained_true_reads_weights_from_the_hugging_face_cache(
    tmp_path, monkeypatch, imagenet_weights
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(imagenet_weights, str(snapshot / "model.safetensors"))
    model = create_backbone(TINY, 7, pretrained=True)
    assert torch.equal(model.state_dict()["conv1.0.weight"], imagenet_weights["conv1.0.weight"])
    assert model.fc.weight.shape == (7, 512)
    assert model.fc.weight.abs().max() <= 1 / 512**0.5, "hub weights' new head: nn.Linear's"
