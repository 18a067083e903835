"""A step's figures and verdict from raw records, the ramp's next rate, and the load test's conclusion."""

from __future__ import annotations

import pytest

from orchestrator.loadtest.verdict import MAX_ERROR_RATE, conclude, next_factor, percentile, summarise


def _records(latencies_ms, rate_rps=10.0, kinds=None, lag_s=0.0):
    """Records as the locustfile writes them: arrivals every 1/rate s, each answered after its latency."""
    out = []
    for i, ms in enumerate(latencies_ms):
        due = i / rate_rps
        kind = (kinds or {}).get(i, "")
        out.append([due, due + lag_s, ms, 0 if kind else 1, kind, due + lag_s + ms / 1000])
    return out


def _summary(records, arrivals=None, slo=100.0, rate=10.0, duration=None, k=1):
    arrivals = len(records) if arrivals is None else arrivals
    duration = duration or arrivals / rate
    return summarise(records, arrivals, target_rps=rate, factor=1.0, duration_s=duration, examples_per_request=k,
                     slo_p95_ms=slo)  # fmt: skip


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) is None


def test_a_step_within_the_slo_holds_and_counts_its_throughput():
    step = _summary(_records([10.0] * 90 + [50.0] * 10), k=4)
    assert step.verdict == "held"
    assert (step.ok, step.errors, step.error_rate) == (100, 0, 0.0)
    assert step.latency_p50_ms == 10.0 and step.latency_p95_ms == 50.0
    assert step.achieved_rps == pytest.approx(10.0, rel=0.01)
    assert step.achieved_sps == pytest.approx(4 * step.achieved_rps)


def test_p95_over_the_slo_breaks_the_step():
    step = _summary(_records([10.0] * 90 + [150.0] * 10))
    assert step.verdict == "broke"
    assert "p95 150.0 ms > SLO 100 ms" in step.reason


def test_http_errors_are_errors_never_successes_and_do_not_count_in_latency():
    kinds = {i: "HTTP 400" for i in range(0, 100, 10)} | {5: "HTTP 503", 6: "timeout"}
    step = _summary(_records([1.0] * 100, kinds=kinds))
    assert step.ok == 88 and step.errors == 12
    assert step.error_kinds == {"HTTP 400": 10, "HTTP 503": 1, "timeout": 1}
    assert step.error_rate == pytest.approx(0.12)
    assert step.verdict == "broke" and "errors 12.0%" in step.reason
    assert step.latency_p95_ms == 1.0


def test_errors_within_the_bound_still_hold():
    n = 1000
    kinds = {i: "HTTP 500" for i in range(int(n * MAX_ERROR_RATE))}
    assert _summary(_records([1.0] * n, rate_rps=100, kinds=kinds), rate=100).verdict == "held"
    kinds[n - 1] = "HTTP 500"
    assert _summary(_records([1.0] * n, rate_rps=100, kinds=kinds), rate=100).verdict == "broke"


def test_dropped_unanswered_and_never_sent_arrivals_are_errors():
    records = _records([1.0] * 20, kinds={3: "dropped", 4: "unanswered"})
    step = _summary(records, arrivals=25)  # five arrivals of the schedule never reached the records
    assert step.errors == 2 + 5 and step.sent == 19
    assert step.error_kinds == {"dropped": 1, "unanswered": 1, "unscheduled": 5}


def test_a_generator_that_falls_behind_its_schedule_is_no_verdict_on_the_server():
    records = _records([1.0] * 100, rate_rps=100.0)
    for i, r in enumerate(records):  # sent at half the scheduled pace
        r[1] = 2 * r[0]
    step = _summary(records, rate=100.0, duration=1.0)
    assert step.verdict == "generator_limited"
    assert step.generator_lag_p95_ms > 500


def test_no_ok_answer_breaks():
    step = _summary(_records([1.0] * 5, kinds={i: "HTTP 503" for i in range(5)}))
    assert step.verdict == "broke" and step.latency_p95_ms is None and step.achieved_rps == 0


def _walk(holds_up_to):
    """The factors the ramp tries against a server that holds every rate up to `holds_up_to` × the base."""
    done = []
    while (factor := next_factor(done)) is not None:
        done.append((factor, factor <= holds_up_to))
    return [f for f, _ in done]


def test_the_ramp_goes_up_and_stops_at_the_first_rate_that_breaks():
    assert _walk(1.2) == [0.5, 1.0, 1.5]
    assert _walk(5.0) == [0.5, 1.0, 1.5, 2.0]


def test_the_ramp_halves_below_half_until_a_rate_holds():
    assert _walk(0.1) == [0.5, 0.25, 0.125, 0.0625]
    assert _walk(0.0) == [0.5 / 2**i for i in range(8)]  # down to MIN_FACTOR, then it gives up


def test_without_the_ramp_only_the_base_rate_runs():
    assert next_factor([], ramp=False) == 1.0
    assert next_factor([(1.0, False)], ramp=False) is None


def _step(factor, verdict, rate=100.0, sps_per_req=1):
    step = _summary(_records([1.0] * 10))
    achieved = rate * factor * 0.98
    return step.model_copy(update={"factor": factor, "target_rps": rate * factor, "verdict": verdict,
                                   "achieved_rps": achieved, "achieved_sps": achieved * sps_per_req})  # fmt: skip


def test_conclusion_held_with_a_measured_breaking_point():
    out = conclude([_step(0.5, "held"), _step(1.0, "held"), _step(1.5, "broke")], in_process_sps=400.0)
    assert out["verdict"] == "held" and out["breaking_rps"] == 150.0
    assert out["sustained_rps"] == pytest.approx(98.0)
    assert out["capacity_factor"] == pytest.approx(98.0 / 400.0) and out["capacity_factor_bound"] == "measured"


def test_conclusion_when_every_rate_held_is_a_lower_bound():
    steps = [_step(f, "held") for f in (0.5, 1.0, 1.5, 2.0)]
    out = conclude(steps, in_process_sps=400.0)
    assert out["verdict"] == "held" and out["breaking_rps"] is None
    assert out["capacity_factor"] == pytest.approx(196.0 / 400.0) and out["capacity_factor_bound"] == "lower_bound"


def test_conclusion_broke_below_the_promise():
    out = conclude([_step(0.5, "broke"), _step(0.25, "held")], in_process_sps=400.0)
    assert out["verdict"] == "broke" and out["breaking_rps"] == 50.0
    assert out["capacity_factor"] == pytest.approx(24.5 / 400.0) and out["capacity_factor_bound"] == "measured"


def test_conclusion_when_nothing_held_bounds_the_factor_from_above():
    out = conclude([_step(0.5, "broke"), _step(0.25, "broke")], in_process_sps=400.0, examples_per_request=2)
    assert out["verdict"] == "broke" and out["sustained_rps"] is None
    assert out["capacity_factor"] == pytest.approx(25.0 * 2 / 400.0) and out["capacity_factor_bound"] == "upper_bound"


def test_a_generator_limited_step_makes_the_verdict_inconclusive():
    out = conclude([_step(0.5, "held"), _step(1.0, "generator_limited")], in_process_sps=None)
    assert out["verdict"] == "inconclusive" and out["capacity_factor"] is None and out["breaking_rps"] is None
    out = conclude([_step(0.5, "held"), _step(1.0, "generator_limited")], in_process_sps=100.0)
    assert out["capacity_factor_bound"] == "lower_bound"
