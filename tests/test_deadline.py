"""A deadline per task: k x the median of its finished peers, with a floor."""

from __future__ import annotations

from studies_for_tests import write_study

from cce_bench.config import load_study
from cce_bench.study._deadline import Deadlines

RESNET_TUNE = ("resnet50", "tune")


def test_no_deadline_until_three_peers_finished():
    deadlines = Deadlines(factor=3, floor_s=0)
    deadlines.finished(RESNET_TUNE, 100)
    deadlines.finished(RESNET_TUNE, 100)
    assert deadlines.limit(RESNET_TUNE) is None


def test_the_deadline_is_k_times_the_median_of_the_same_backbone_and_phase():
    deadlines = Deadlines(factor=3, floor_s=0)
    for seconds in (90, 100, 400):
        deadlines.finished(RESNET_TUNE, seconds)
    assert deadlines.limit(RESNET_TUNE) == 300
    assert deadlines.limit(("resnet50", "evaluate")) is None


def test_the_deadline_never_falls_below_its_floor():
    deadlines = Deadlines(factor=3, floor_s=600)
    for seconds in (10, 10, 10):
        deadlines.finished(RESNET_TUNE, seconds)
    assert deadlines.limit(RESNET_TUNE) == 600


def test_only_a_task_past_its_deadline_is_overdue():
    deadlines = Deadlines(factor=2, floor_s=0)
    for seconds in (100, 100, 100):
        deadlines.finished(RESNET_TUNE, seconds)
    running = {"late": (RESNET_TUNE, 0.0), "on-time": (RESNET_TUNE, 150.0),
               "other": (("densenet121", "tune"), 0.0)}  # fmt: skip
    assert deadlines.overdue(running, now=250.0) == ["late"]
    assert "past 2 x the median 100 s" in deadlines.describe(RESNET_TUNE, 250)


def test_k_and_the_floor_are_study_file_options(tmp_path):
    study = write_study(tmp_path)
    study.write_text(
        study.read_text().replace(
            "cpus_per_run = 1", "cpus_per_run = 1\ndeadline_factor = 4\ndeadline_floor_s = 60"
        )
    )
    resources = load_study(study).resources
    assert (resources.deadline_factor, resources.deadline_floor_s) == (4.0, 60.0)
