"""The wall-time estimate a study prints before its first trial: arithmetic and probe."""

import pytest
import torch

from cce_bench.estimate import (
    EVAL_COST,
    JobImages,
    estimate_study_seconds,
    format_duration,
    job_images,
    probe_images_per_s,
)


def test_a_job_trains_and_scores_every_epoch():
    assert job_images(6, 520, 120) == JobImages(trained=3120, scored=720)


def test_scoring_costs_a_fraction_of_training():
    images = JobImages(trained=1000, scored=300)
    assert images.seconds(100.0) == pytest.approx((1000 + EVAL_COST * 300) / 100.0)


def test_estimate_adds_each_backbones_jobs_at_its_own_rate_over_the_slots():
    jobs = [("fast", 4, JobImages(1000, 0)), ("slow", 2, JobImages(1000, 0))]
    seconds = estimate_study_seconds(jobs, {"fast": 1000.0, "slow": 100.0}, slots=2)
    assert seconds == pytest.approx((4 * 1.0 + 2 * 10.0) / 2)


def test_no_jobs_left_take_no_time():
    assert estimate_study_seconds([], {}, slots=4) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "?"), (42.4, "42s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_durations_read_short(seconds, text):
    assert format_duration(seconds) == text


def test_probe_measures_a_positive_rate_and_restores_the_thread_count():
    before = torch.get_num_threads()
    rate = probe_images_per_s(
        "test_resnet", image_size=32, batch_size=8, num_classes=7, threads=1, steps=1
    )
    assert rate > 0
    assert torch.get_num_threads() == before
