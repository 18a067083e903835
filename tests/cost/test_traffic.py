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


TOKENS = {"prompt_tokens": 300, "output_tokens": 120}


def test_tokens_defaults_and_bounds():
    traffic = Traffic(peak_rps=2, tokens=TOKENS)
    tokens = traffic.tokens
    assert traffic.latency_slo_p95_ms is None  # optional with a tokens: section
    assert tokens.concurrency == [1, 2, 4, 8, 16] and tokens.max_new_tokens_limit == 512
    assert (tokens.ttft_slo_p95_ms, tokens.tpot_slo_p95_ms) == (None, None)
    assert (tokens.prompt_tokens_bound, tokens.output_tokens_bound) == (300, 120)  # the means without p95s
    p95 = Traffic(peak_rps=2, tokens={**TOKENS, "prompt_tokens_p95": 900, "output_tokens_p95": 400}).tokens
    assert (p95.prompt_tokens_bound, p95.output_tokens_bound) == (900, 400)
    assert Traffic(peak_rps=2, tokens={**TOKENS, "concurrency": [8, 1, 4]}).tokens.concurrency == [1, 4, 8]


def test_tokens_round_trip_through_a_dump():
    traffic = Traffic(hourly_rps_profile=[1.0] * 24, tokens={**TOKENS, "ttft_slo_p95_ms": 800, "tpot_slo_p95_ms": 90})
    assert Traffic.model_validate(traffic.model_dump()) == traffic


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ({"output_tokens": 120}, "tokens.prompt_tokens\n  Field required"),
        ({"prompt_tokens": 300}, "tokens.output_tokens\n  Field required"),
        ({**TOKENS, "ttft_slo_p95_ms": 0}, "tokens.ttft_slo_p95_ms\n  Input should be greater than 0"),
        ({**TOKENS, "tpot_slo_p95_ms": -5}, "tokens.tpot_slo_p95_ms\n  Input should be greater than 0"),
        ({**TOKENS, "prompt_tokens": 0}, "greater than 0"),
        ({**TOKENS, "output_tokens_p95": float("inf")}, "finite number"),
        ({**TOKENS, "concurrency": []}, "at least one concurrency level"),
        ({**TOKENS, "concurrency": [0, 1]}, "concurrency levels of at least 1"),
        ({**TOKENS, "concurrency": [2, 2]}, "distinct concurrency levels"),
        ({**TOKENS, "max_new_tokens_limit": 0}, "greater than or equal to 1"),
        ({**TOKENS, "max_new_tokens_limit": 100}, "output_tokens 120 is above max_new_tokens_limit 100"),
        ({**TOKENS, "output_tokens_p95": 600}, "output_tokens_p95 600 is above max_new_tokens_limit 512"),
        ({**TOKENS, "ttft_slo_ms": 100}, "Extra inputs are not permitted"),
    ],
)
def test_bad_tokens_are_rejected_with_the_reason(tokens, expected):
    with pytest.raises(ValidationError, match=expected):
        Traffic(peak_rps=1, tokens=tokens)


def test_latency_slo_is_optional_only_with_tokens():
    with pytest.raises(ValidationError, match="latency_slo_p95_ms is required .* only traffic with a tokens: section"):
        Traffic(peak_rps=10)
    with pytest.raises(ValidationError, match="greater than 0"):
        Traffic(peak_rps=10, latency_slo_p95_ms=0, tokens=TOKENS)
    both = Traffic(peak_rps=10, latency_slo_p95_ms=8000, tokens=TOKENS)
    assert both.latency_slo_p95_ms == 8000
