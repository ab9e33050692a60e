"""The pre-flight check: each node against the driver, every difference named by node and field."""

from __future__ import annotations

from cce_bench.study._preflight import mismatches, node_facts

DRIVER = {"cce_bench": "0.1.0", "git_commit": "abc", "torch_cuda": "12.8",
          "weights": {"resnet50": "f00d"}}  # fmt: skip


def node(**changes) -> dict:
    return {**DRIVER, "hostname": "gpu-3", **changes}


def test_a_node_like_the_driver_passes():
    assert mismatches(DRIVER, {"n1": node(cuda_available=True)}) == []


def test_another_commit_is_named_with_the_node_and_field():
    [line] = mismatches(DRIVER, {"node0123456789": node(git_commit="def")})
    assert line.startswith("node gpu-3 (node0123)") and "git_commit is def" in line


def test_another_torch_cuda_build_is_named():
    assert "torch_cuda is 11.8" in mismatches(DRIVER, {"n1": node(torch_cuda="11.8")})[0]


def test_a_missing_or_different_weights_file_is_named():
    [line] = mismatches(DRIVER, {"n1": node(weights={"resnet50": "missing"})})
    assert "weights of resnet50 have SHA-256 missing" in line


def test_a_gpu_node_whose_cuda_sees_nothing_is_named_with_its_driver():
    [line] = mismatches(
        DRIVER, {"n1": node(cuda_available=False, driver="535.1", gpu_uuid="GPU-9")}
    )
    assert "CUDA is not available" in line and "GPU-9" in line and "535.1" in line


def test_node_facts_hash_each_weights_file_and_mark_a_missing_one(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights")
    facts = node_facts({"a": str(weights), "b": str(tmp_path / "none")}, needs_cuda=False)
    assert facts["weights"]["b"] == "missing" and len(facts["weights"]["a"]) == 64
