"""The token cost model on small hand-written catalogs: every figure checked against hand arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from orchestrator.cost.candidate import TokenCandidateMetrics
from orchestrator.cost.catalog import load_catalog
from orchestrator.cost.model import (
    EXPLAIN_COLUMNS,
    TOKEN_EXPLAIN_COLUMNS,
    CandidateMetrics,
    explain,
    price_candidate,
)
from orchestrator.cost.tokens import price_tokens
from orchestrator.cost.traffic import Traffic
from orchestrator.errors import InputError
from tests.cost.conftest import gpu_row, instance_row

GIB = 2**30
MIB = 2**20

# One worker measured with 2 threads on a c7i.xlarge (2 cores): (concurrency, ttft p95 ms, tpot p95 ms, output tok/s)
CPU_POINTS = [(1, 100, 40, 25), (4, 200, 50, 80), (8, 400, 80, 100)]


def points(rows, peak_mem_bytes=1 * GIB):
    return [
        dict(concurrency=c, ttft_p95_ms=ttft, tpot_p95_ms=tpot, output_tokens_per_s=tps, peak_mem_bytes=peak_mem_bytes)
        for c, ttft, tpot, tps in rows
    ]


def cpu_metrics(rows=CPU_POINTS, **overrides) -> TokenCandidateMetrics:
    """512 MiB of weights, 64 KiB of KV per token, measured with 2 threads on a c7i.xlarge."""
    fields = dict(
        points=points(rows),
        weight_bytes=512 * MIB,
        kv_bytes_per_token=64 * 1024,
        device_kind="cpu",
        device_name="Intel(R) Xeon(R) Platinum 8488C",
        cpu_threads=2,
        cpu_arch="x86_64",
        measured_instance_type="c7i.xlarge",
    )
    return TokenCandidateMetrics(**{**fields, **overrides})


def gpu_metrics(**overrides) -> TokenCandidateMetrics:
    """Measured on one A10G: 2 GiB of weights, 128 KiB of KV per token."""
    fields = dict(
        points=points([(8, 100, 20, 400), (32, 300, 30, 1000)], peak_mem_bytes=3 * GIB),
        weight_bytes=2 * GIB,
        kv_bytes_per_token=128 * 1024,
        device_kind="cuda",
        device_name="NVIDIA A10G",
        bits=16,
    )
    return TokenCandidateMetrics(**{**fields, **overrides})


def token_traffic(peak_rps=1.0, **tokens) -> Traffic:
    """Mean 300-token prompts and 100-token answers; p95 800 + 224 = 1,024 tokens of context."""
    fields = dict(prompt_tokens=300, output_tokens=100, prompt_tokens_p95=800, output_tokens_p95=224)
    fields.update(ttft_slo_p95_ms=500, tpot_slo_p95_ms=60)
    return Traffic(peak_rps=peak_rps, tokens={**fields, **tokens})


def by_name(result):
    return {c.instance_type: c for c in result.per_instance}


@pytest.fixture
def cpus(write_catalog):
    return load_catalog(
        write_catalog(
            [
                instance_row("c7i.xlarge", 0.1785),  # 2 cores, 2 threads per core, 8 GiB
                instance_row("c7i.2xlarge", 0.357, vcpus=8, physical_cores=4, memory_gib=16),
            ]
        )
    )


@pytest.fixture
def mixed(write_catalog):
    return load_catalog(
        write_catalog(
            [
                instance_row("c7i.xlarge", 0.1785),
                instance_row("c7g.xlarge", 0.145, vcpus=4, physical_cores=4, threads_per_core=1, cpu_arch="arm64"),
                gpu_row("g4dn.xlarge", 0.526, "T4", 16),
                gpu_row("g5.xlarge", 1.006, "A10G", 24),
                gpu_row("g5.12xlarge", 5.672, "A10G", 24, count=4),
            ]
        )
    )


def test_hand_computed_cpu_price(cpus):
    result = price_tokens(cpu_metrics(), token_traffic(), cpus)
    small, large = by_name(result)["c7i.xlarge"], by_name(result)["c7i.2xlarge"]
    # concurrency 8 breaks the tpot SLO (80 ms > 60 ms); 4 gives more tok/s than 1: 4 is chosen on both
    assert (small.concurrency, large.concurrency) == (4, 4)
    # c7i.xlarge: 2 cores / 2 threads = 1 worker x 80 tok/s; 80 / 100 tokens = 0.8 rps
    assert small.output_tokens_per_s == 80 and small.throughput_sps == pytest.approx(0.8)
    # ceil(1 rps x 100 tokens / (80 tok/s x 0.6)) = ceil(2.083) = 3 replicas x $0.1785 x 730 h = $390.915
    assert (small.replicas, small.monthly_usd) == (3, 390.92)
    # $0.1785 / (80 x 0.6 x 3600) x 1e6 = $1.03298...
    expected = Fraction("0.1785") / (80 * Fraction("0.6") * 3600) * 1_000_000
    assert small.usd_per_million_output_tokens == round(float(expected), 4) == 1.033
    # c7i.2xlarge: 4 cores / 2 threads = 2 workers x 80 = 160 tok/s; ceil(100 / 96) = 2 x $0.357 x 730 = $521.22
    assert (large.output_tokens_per_s, large.replicas, large.monthly_usd) == (160, 2, 521.22)
    assert (result.instance_type, result.concurrency, result.replicas, result.monthly_usd) == ("c7i.xlarge", 4, 3, 390.92)
    assert result.usd_per_million_output_tokens == 1.033
    assert result.projected is False  # measured on a c7i.xlarge
    assert (small.ttft_p95_ms, small.tpot_p95_ms, small.batch_latency_p95_ms) == (200, 50, None)


def test_reason_shows_the_arithmetic(cpus):
    reason = by_name(price_tokens(cpu_metrics(), token_traffic(), cpus))["c7i.xlarge"].reason
    for part in [
        "concurrency 4 of measured 1, 4, 8",
        "8: tpot p95 80 ms > SLO 60 ms",
        "1: 25 output tok/s",
        "ttft p95 200 ms ≤ SLO 500 ms, tpot p95 50 ms ≤ SLO 60 ms",
        # 512 MiB + 65,536 B x 1,024 tokens x 4 = 768 MiB, below the 1 GiB measured
        (
            "memory max(measured peak 1.00 GiB, weights 512.0 MiB + KV 65536 B/token × 1024 tokens × 4 = 768.0 MiB)"
            " × 1 worker process = 1.00 GiB ≤ 8 GiB × (1 − 0.2) = 6.40 GiB of instance memory"
        ),
        "1 worker (2 core capacity / 2 threads measured), each as fast as measured",
        "80 output tok/s per worker × 1 = 80 output tok/s per instance / 100 output tokens = 0.8 rps",
        "ceil(1 rps × 100 output tokens / (80 tok/s × 0.6)) = 3 replicas × $0.1785/h × 730 h = $390.92/month",
        "$0.1785/h / (80 tok/s × 0.6 × 3600 s) × 1e6 = $1.0330 per million output tokens",
    ]:
        assert part in reason


def test_without_a_tpot_slo_the_busiest_point_wins(cpus):
    result = price_tokens(cpu_metrics(), token_traffic(tpot_slo_p95_ms=None), cpus)
    small = by_name(result)["c7i.xlarge"]
    assert small.concurrency == 8 and small.output_tokens_per_s == 100
    # ceil(1 x 100 / (100 x 0.6)) = 2 replicas x $0.1785 x 730 h = $260.61
    assert (small.replicas, small.monthly_usd) == (2, 260.61)


def test_a_busier_point_with_fewer_tokens_is_not_chosen(cpus):
    # contention: 8 in flight yields less than 4 did; the cheaper point is 4
    metrics = cpu_metrics(rows=[(1, 100, 40, 25), (4, 200, 50, 80), (8, 400, 55, 70)])
    small = by_name(price_tokens(metrics, token_traffic(), cpus))["c7i.xlarge"]
    assert small.concurrency == 4
    assert "8: 70 output tok/s" in small.reason


def test_memory_bound_lowers_the_concurrency(cpus):
    # 2 MiB of KV per token x 1,024 tokens = 2 GiB per request in flight
    metrics = cpu_metrics(kv_bytes_per_token=2 * MIB)
    result = price_tokens(metrics, token_traffic(), cpus)
    small, large = by_name(result)["c7i.xlarge"], by_name(result)["c7i.2xlarge"]
    # 0.5 GiB + 2 GiB x 4 = 8.5 GiB > 8 x 0.8 = 6.4 GiB; 0.5 + 2 x 1 = 2.5 GiB fits
    assert small.concurrency == 1 and small.output_tokens_per_s == 25
    assert (
        "4: memory max(measured peak 1.00 GiB, weights 512.0 MiB + KV 2097152 B/token × 1024 tokens × 4 = 8.50 GiB)"
        " × 1 worker process = 8.50 GiB > 8 GiB × (1 − 0.2) = 6.40 GiB of instance memory" in small.reason
    )
    # c7i.2xlarge holds 2 worker processes: 2.5 GiB x 2 = 5 GiB fits 12.8 GiB, 8.5 x 2 = 17 GiB does not
    assert large.concurrency == 1 and large.output_tokens_per_s == 50
    assert "× 2 worker processes = 5.00 GiB ≤ 16 GiB × (1 − 0.2) = 12.80 GiB" in large.reason


def test_memory_headroom_changes_the_bound(cpus):
    metrics = cpu_metrics(kv_bytes_per_token=2 * MIB)  # one request in flight: 0.5 + 2 = 2.5 GiB
    roomy = by_name(price_tokens(metrics, token_traffic(), cpus, memory_headroom=0.6))["c7i.xlarge"]
    assert roomy.concurrency == 1  # 8 GiB x (1 - 0.6) = 3.2 GiB
    tight = by_name(price_tokens(metrics, token_traffic(), cpus, memory_headroom=0.7))["c7i.xlarge"]
    assert tight.feasible is False  # 8 GiB x (1 - 0.7) = 2.4 GiB
    assert "concurrency 1: memory max(" in tight.reason and "= 2.50 GiB > 8 GiB × (1 − 0.7) = 2.40 GiB" in tight.reason
    with pytest.raises(InputError, match="memory_headroom"):
        price_tokens(metrics, token_traffic(), cpus, memory_headroom=1)
    with pytest.raises(InputError, match="smt_yield"):
        price_tokens(metrics, token_traffic(), cpus, smt_yield=3)


def test_no_concurrency_meets_the_slos(cpus):
    result = price_tokens(cpu_metrics(), token_traffic(ttft_slo_p95_ms=50), cpus)
    assert result.feasible is False and result.instance_type is None
    small = by_name(result)["c7i.xlarge"]
    assert small.feasible is False and small.monthly_usd is None and small.concurrency is None
    assert small.reason == (
        "no measured concurrency (1, 4, 8) meets the SLOs and fits memory: "
        "concurrency 1: ttft p95 100 ms > SLO 50 ms; "
        "concurrency 4: ttft p95 200 ms > SLO 50 ms; "
        "concurrency 8: ttft p95 400 ms > SLO 50 ms, tpot p95 80 ms > SLO 60 ms"
    )
    assert result.reason.startswith("infeasible on all 2 instance types: ")


def test_no_concurrency_fits_memory(cpus):
    result = price_tokens(cpu_metrics(kv_bytes_per_token=8 * MIB), token_traffic(), cpus)  # 8 GiB per request
    small = by_name(result)["c7i.xlarge"]
    assert small.feasible is False
    assert "concurrency 1: memory max(" in small.reason and "= 8.50 GiB > 8 GiB × (1 − 0.2) = 6.40 GiB" in small.reason


def test_latency_slo_bounds_a_whole_request(cpus):
    # request p95 ≈ ttft + (224 - 1) x tpot: c=1 100 + 223 x 40 = 9,020 ms; c=4 200 + 223 x 50 = 11,350 ms
    traffic = Traffic(
        peak_rps=1,
        latency_slo_p95_ms=10_000,
        tokens=dict(prompt_tokens=300, output_tokens=100, prompt_tokens_p95=800, output_tokens_p95=224),
    )
    small = by_name(price_tokens(cpu_metrics(), traffic, cpus))["c7i.xlarge"]
    assert small.concurrency == 1
    assert "request p95 ≈ ttft + (224 − 1) × tpot = 9020 ms ≤ SLO 10000 ms" in small.reason
    assert "4: request p95 ≈ ttft + (224 − 1) × tpot = 11350 ms > SLO 10000 ms" in small.reason


def test_min_replicas_and_hourly_profile(cpus):
    floor = Traffic(peak_rps=1, min_replicas=4, tokens=token_traffic().tokens.model_dump())
    small = by_name(price_tokens(cpu_metrics(), floor, cpus))["c7i.xlarge"]
    assert small.replicas == 4
    assert "max(min_replicas 4, ceil(1 rps × 100 output tokens / (80 tok/s × 0.6)) = 3) = 4 replicas" in small.reason
    profile = [0.5] * 12 + [2.0] * 12
    daily = Traffic(hourly_rps_profile=profile, tokens=token_traffic().tokens.model_dump())
    small = by_name(price_tokens(cpu_metrics(), daily, cpus))["c7i.xlarge"]
    # ceil(0.5 x 100 / 48) = 2, ceil(2 x 100 / 48) = 5: (12 x 2 + 12 x 5) = 84 replica-hours x $0.1785 x 730 / 24
    assert small.hourly_replicas == [2] * 12 + [5] * 12 and small.replicas == 5
    assert small.monthly_usd == float(round(Fraction(84) * Fraction("0.1785") * 730 / 24, 2)) == 456.07
    assert "sum 84 replica-hours/day × $0.1785/h × 730 h / 24 = $456.07/month" in small.reason


def test_gpu_rows_on_a_cpu_measurement_are_not_measured(mixed):
    result = price_tokens(cpu_metrics(), token_traffic(), mixed)
    rows = by_name(result)
    for name in ("g4dn.xlarge", "g5.xlarge", "g5.12xlarge"):
        assert rows[name].feasible is False and rows[name].monthly_usd is None
        assert rows[name].reason == f"not measured on a GPU: run the search on a GPU worker to price {name}"
    # the Graviton: cross-architecture per-core scaling, 4 cores (1 thread per core) / 2 threads = 2 workers
    arm = rows["c7g.xlarge"]
    assert arm.projected is True and arm.output_tokens_per_s == 160
    assert arm.projection_method.startswith("cross-architecture (measured on x86_64, instance is arm64)")
    assert "80 output tok/s / 2 threads = 40 output tok/s per core × 1 × 4 cores (1 thread per core)" in arm.projection_method
    # the bundled fp32 row's range [0.53, 1.43] carried into whole instances: ceil(100 / (160 x 1.43 x 0.6)) = 1,
    # ceil(100 / (160 x 0.53 x 0.6)) = 2, at $0.145 x 730 each
    assert (arm.replicas_low, arm.replicas_high, arm.monthly_usd_low, arm.monthly_usd_high) == (1, 2, 105.85, 211.70)
    # ceil(1 x 100 / (160 x 0.6)) = 2 x $0.145 x 730 = $211.70: cheaper than 3 x c7i.xlarge
    assert (result.instance_type, result.monthly_usd) == ("c7g.xlarge", 211.70)


def test_kernels_for_one_arch_block_the_other(mixed):
    result = price_tokens(cpu_metrics(cpu_archs=["x86_64"]), token_traffic(), mixed)
    arm = by_name(result)["c7g.xlarge"]
    assert arm.feasible is False and "run on x86_64 only" in arm.reason
    assert result.instance_type == "c7i.xlarge"


def test_gpu_measured_projected_and_per_gpu_memory(mixed):
    traffic = token_traffic(peak_rps=20, ttft_slo_p95_ms=1000, tpot_slo_p95_ms=50)
    rows = by_name(price_tokens(gpu_metrics(), traffic, mixed))
    assert rows["c7i.xlarge"].reason == "not measured on a CPU: run the search on a CPU worker to price c7i.xlarge"
    a10g = rows["g5.xlarge"]
    # measured: 32 in flight meets both SLOs; 2 GiB + 128 KiB x 1,024 x 32 = 6 GiB <= 24 x 0.8 = 19.2 GiB per A10G
    assert (a10g.concurrency, a10g.output_tokens_per_s, a10g.projected) == (32, 1000, False)
    # ceil(20 rps x 100 / (1000 x 0.6)) = ceil(3.33) = 4 x $1.006 x 730 = $2,937.52
    assert (a10g.replicas, a10g.monthly_usd) == (4, 2937.52)
    assert "per A10G" in a10g.reason and "= 6.00 GiB ≤ 24 GiB × (1 − 0.2) = 19.20 GiB per A10G" in a10g.reason
    # 4 GPUs: 4 workers (one per GPU) x 1000 = 4000 tok/s; ceil(2000 / 2400) = 1 x $5.672 x 730 = $4,140.56
    four = rows["g5.12xlarge"]
    assert (four.output_tokens_per_s, four.replicas, four.monthly_usd) == (4000, 1, 4140.56)
    # T4: memory-bound x 300 / 600 GB/s: latencies double (tpot 40 and 60 ms), tok/s halve
    t4 = rows["g4dn.xlarge"]
    assert t4.projected is True and (t4.concurrency, t4.tpot_p95_ms, t4.ttft_p95_ms) == (8, 40, 200)
    assert t4.output_tokens_per_s == 200
    assert "32: tpot p95 60 ms > SLO 50 ms" in t4.reason
    assert "memory-bound, × 300 / 600 GB/s" in t4.projection_method and "tpot p95 20 ms / 0.5" in t4.projection_method


def test_explain_has_the_token_columns(cpus):
    result = price_tokens(cpu_metrics(), token_traffic(), cpus)
    frame = explain(result)
    assert list(frame.columns) == TOKEN_EXPLAIN_COLUMNS
    assert list(frame["instance_type"]) == ["c7i.xlarge", "c7i.2xlarge"]
    assert list(frame["chosen"]) == [True, False]
    assert list(frame["concurrency"]) == [4, 4]
    assert list(frame["usd_per_million_output_tokens"]) == [1.033, 1.033]
    assert list(explain(result, tokens=False).columns) == EXPLAIN_COLUMNS


def test_price_tokens_needs_a_tokens_section(cpus):
    with pytest.raises(InputError, match="traffic.tokens"):
        price_tokens(cpu_metrics(), Traffic(peak_rps=1, latency_slo_p95_ms=50), cpus)


def test_request_pricing_needs_the_batch_slo(cpus):
    metrics = CandidateMetrics(
        throughput_sps=10, batch_latency_p95_ms=10, peak_mem_bytes=GIB, size_bytes=MIB, device_kind="cpu",
        device_name="x", cpu_threads=2,
    )  # fmt: skip
    with pytest.raises(InputError, match="traffic.latency_slo_p95_ms"):
        price_candidate(metrics, token_traffic(), cpus)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"points": []}, "at least 1 item"),
        ({"points": points([(4, 1, 1, 1), (4, 2, 2, 2)])}, "one point per concurrency level"),
        ({"cpu_threads": None}, "cpu_threads is required"),
        ({"weight_bytes": 0}, "greater than 0"),
        ({"points": points([(0, 1, 1, 1)])}, "greater than or equal to 1"),
        ({"points": points([(1, 1, 0, 1)])}, "greater than 0"),
    ],
)
def test_bad_token_metrics_are_rejected(change, expected):
    with pytest.raises(ValidationError, match=expected):
        cpu_metrics(**change)


def test_points_are_sorted_and_arch_aliases_normalised():
    metrics = cpu_metrics(rows=[(8, 3, 3, 3), (1, 1, 1, 1)], cpu_arch="aarch64")
    assert [p.concurrency for p in metrics.points] == [1, 8] and metrics.cpu_arch == "arm64"


def test_equal_tokens_per_s_goes_to_the_lower_concurrency(cpus):
    metrics = cpu_metrics(rows=[(1, 100, 40, 25), (4, 200, 50, 80), (6, 300, 55, 80)])
    small = by_name(price_tokens(metrics, token_traffic(), cpus))["c7i.xlarge"]
    assert small.concurrency == 4 and "6: 80 output tok/s" in small.reason
