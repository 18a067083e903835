"""Traffic and SLO: defaults, the hourly profile, and what is rejected."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.cost.traffic import Traffic


def test_defaults_and_days_per_month():
    traffic = Traffic(peak_rps=1000, latency_slo_p95_ms=50)
    assert (traffic.target_utilization, traffic.min_replicas, traffic.hours_per_month) == (0.6, 1, 730)
    assert traffic.serving_batch_size == 1
    assert traffic.days_per_month == pytest.approx(730 / 24)
    assert Traffic(peak_rps=1, latency_slo_p95_ms=1, hours_per_month=720).days_per_month == 30


def test_profile_fills_in_the_peak():
    profile = [100.0] * 23 + [4000.0]
    traffic = Traffic(hourly_rps_profile=profile, latency_slo_p95_ms=50)
    assert traffic.peak_rps == 4000 and traffic.sizing_rps == 4000


def test_round_trips_through_a_dump_as_a_config_would():
    traffic = Traffic(hourly_rps_profile=[100.0] * 23 + [4000.0], latency_slo_p95_ms=50, serving_batch_size=32)
    again = Traffic.model_validate(traffic.model_dump())
    assert again == traffic and again.peak_rps == 4000


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"hourly_rps_profile": [1.0] * 23}, "exactly 24 values"),
        ({"hourly_rps_profile": [1.0] * 23 + [-1.0]}, "hour 23: expected a finite, non-negative"),
        ({"hourly_rps_profile": [0.0] * 24}, "nothing to serve"),
        ({"mean_rps": 100}, "mean_rps alone cannot size them"),
        ({}, "give peak_rps or hourly_rps_profile"),
        ({"peak_rps": 10, "hourly_rps_profile": [20.0] * 24}, "peak_rps 10 is below the profile's busiest hour"),
        ({"peak_rps": 10, "mean_rps": 20}, "mean_rps 20 is above peak_rps 10"),
        ({"peak_rps": 0}, "greater than 0"),
        ({"peak_rps": 10, "target_utilization": 0}, "greater than 0"),
        ({"peak_rps": 10, "target_utilization": 1.5}, "less than or equal to 1"),
        ({"peak_rps": 10, "min_replicas": 0}, "greater than or equal to 1"),
        ({"peak_rps": 10, "serving_batch_size": 0}, "greater than or equal to 1"),
        ({"peak_rps": 10, "peak_rsp": 20}, "Extra inputs are not permitted"),
    ],
)
def test_bad_traffic_is_rejected_with_the_reason(fields, expected):
    with pytest.raises(ValidationError, match=expected):
        Traffic(latency_slo_p95_ms=50, **fields)


def test_slo_is_required():
    with pytest.raises(ValidationError, match="latency_slo_p95_ms"):
        Traffic(peak_rps=10)
