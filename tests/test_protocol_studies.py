"""The protocol studies load as shipped and differ only where their comparison needs them to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cce_bench.config import diff_studies, load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"
PROTOCOLS = ("protocol-paper-split", "protocol-lesion-split", "protocol-lesion-balanced")


def loaded(name: str, tmp_path: Path):
    """The shipped file, its weights file replaced by a random tf_efficientnet_lite0 (the real
    one lies outside the repository)."""
    import timm
    from safetensors.torch import save_file

    text = (STUDIES / f"{name}.toml").read_text(encoding="utf-8")
    weights = re.search(r'^"tf_efficientnet_lite0@imagenet" = "([^"]+)"$', text, flags=re.M)
    assert weights, "the study names a weights file for tf_efficientnet_lite0@imagenet"
    if not (tmp_path / "w.safetensors").exists():
        model = timm.create_model("tf_efficientnet_lite0")
        save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    copy = tmp_path / f"{name}.toml"
    copy.write_text(text.replace(weights.group(1), "w.safetensors"), encoding="utf-8")
    return load_study(copy, data_path=tmp_path)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_protocol_study_loads_with_a_plan_six_seeds_can_decide(name: str, tmp_path: Path) -> None:
    spec = loaded(name, tmp_path)
    assert spec.models.backbones == ("tf_efficientnet_lite0@imagenet",)
    assert spec.losses.arms == ("ce", "cce")
    assert spec.analysis.compared_arms(spec.losses) == ("cce",)
    assert spec.analysis.secondary_metrics == ("paper_accuracy",)
    assert (spec.evaluate.stopping, spec.evaluate.seeds) == ("fixed", 6)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_protocol_study_header_stays_short(name: str) -> None:
    lines = (STUDIES / f"{name}.toml").read_text(encoding="utf-8").splitlines()
    header = [line for line in lines[: lines.index(f'name = "{name}"')] if line.startswith("#")]
    assert len(header) <= 8


@pytest.mark.parametrize(
    ("other", "difference"),
    [("protocol-paper-split", "data.split"), ("protocol-lesion-balanced", "train.sampler")],
)
def test_protocol_twins_differ_in_one_field_besides_their_name(
    other: str, difference: str, tmp_path: Path
) -> None:
    lesion = loaded("protocol-lesion-split", tmp_path).to_dict()
    lines = diff_studies(lesion, loaded(other, tmp_path).to_dict())
    assert sorted(line.split(":")[0] for line in lines) == sorted(["name", difference])
