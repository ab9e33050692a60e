"""No serial tail under the anytime design: idle slots get seeds ahead of the stopping rule,
which still reads seeds strictly in order."""

from __future__ import annotations

from cce_bench.config import load_study
from cce_bench.study._seeds import SeedSchedule

STUDY = """
name = "ahead"
[data]
source = "synthetic"
n_images = 120
image_size = 32
[models]
backbones = ["resnet10t"]
[losses]
arms = ["ce", "cce"]
[evaluate]
seeds = 3
stopping = "{stopping}"
{cap}
"""


def schedule(tmp_path, records, *, stopping="anytime", waiting=False) -> SeedSchedule:
    path = tmp_path / "study.toml"
    cap = "max_seeds = 20" if stopping == "anytime" else ""
    path.write_text(STUDY.format(stopping=stopping, cap=cap))
    seeds = SeedSchedule(load_study(path), "resnet10t", lambda: records)
    for arm in ("ce", "cce"):
        seeds.attach(arm, lambda: False, lambda: waiting)
    return seeds


def run(arm: str, seed: int, value: float) -> dict:
    return {"phase": "evaluate", "backbone": "resnet10t", "arm": arm, "seed": seed,
            "outcome": "completed", "metrics": {"balanced_accuracy": value}}  # fmt: skip


def test_an_idle_slot_gets_the_next_seed_ahead_of_the_rule(tmp_path):
    seeds = schedule(tmp_path, [])
    assert seeds.release_ahead()
    assert list(seeds.seeds()) == [0, 1, 2, 3] and seeds.count == 3


def test_no_seed_goes_ahead_while_an_arm_has_a_seed_of_the_rule_to_start(tmp_path):
    assert not schedule(tmp_path, [], waiting=True).release_ahead()


def test_a_fixed_design_releases_nothing_ahead(tmp_path):
    assert not schedule(tmp_path, [], stopping="fixed").release_ahead()


def test_the_rule_never_reads_a_seed_released_ahead(tmp_path):
    records = [run(arm, seed, 0.6 + 0.001 * seed) for seed in range(4) for arm in ("ce", "cce")]
    seeds = schedule(tmp_path, records[:6])  # seeds 0-2 on record: the first look
    seeds.release_ahead()
    seeds.records = lambda: records
    assert all(look.seeds <= 3 for path in seeds.comparison_paths().values() for look in path)


def test_the_rule_reading_a_seed_already_out_ahead_releases_no_extra_one(tmp_path):
    records = [run(arm, seed, 0.6) for seed in range(3) for arm in ("ce", "cce")]
    seeds = schedule(tmp_path, records)
    seeds.release_ahead()
    assert seeds.extend()  # no decision on three equal seeds: the rule reads seed 3
    assert (seeds.count, seeds.ahead, list(seeds.seeds())) == (4, 0, [0, 1, 2, 3])
