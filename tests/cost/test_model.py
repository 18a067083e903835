"""The cost model on small hand-written catalogs: every figure checked against hand arithmetic."""

from __future__ import annotations

import pytest

from orchestrator.cost.projection import accelerator_key
from orchestrator.cost.catalog import load_catalog
from orchestrator.cost.model import EXPLAIN_COLUMNS, CandidateMetrics, explain, price_candidate
from orchestrator.cost.traffic import Traffic
from orchestrator.errors import InputError
from tests.cost.conftest import gpu_row, instance_row

GIB = 2**30


def cpu_metrics(**overrides) -> CandidateMetrics:
    """2,500 samples/s measured on a c7i.xlarge with its 4 threads."""
    fields = dict(
        throughput_sps=2500,
        batch_latency_p95_ms=20,
        peak_mem_bytes=1 * GIB,
        size_bytes=50_000_000,
        device_kind="cpu",
        device_name="Intel(R) Xeon(R) Platinum 8488C",
        cpu_threads=4,
        cpu_arch="x86_64",
        measured_instance_type="c7i.xlarge",
    )
    return CandidateMetrics(**{**fields, **overrides})


def gpu_metrics(**overrides) -> CandidateMetrics:
    """1,000 samples/s per GPU at batch 8, measured on an A10G."""
    fields = dict(
        throughput_sps=1000,
        batch_latency_p95_ms=30,
        peak_mem_bytes=2 * GIB,
        size_bytes=100_000_000,
        device_kind="cuda",
        device_name="NVIDIA A10G",
        bits=16,
    )
    return CandidateMetrics(**{**fields, **overrides})


def by_name(result):
    return {c.instance_type: c for c in result.per_instance}


@pytest.fixture
def c7i_xlarge(write_catalog):
    return load_catalog(write_catalog([instance_row("c7i.xlarge", 0.1785)]))


@pytest.fixture
def t4_and_a10g(write_catalog):
    return load_catalog(
        write_catalog([gpu_row("g4dn.xlarge", 0.526, "T4", 16), gpu_row("g5.xlarge", 1.006, "A10G", 24)])
    )


def test_one_replica_at_1000_rps(c7i_xlarge):
    result = price_candidate(cpu_metrics(), Traffic(peak_rps=1000, latency_slo_p95_ms=50), c7i_xlarge)
    assert (result.feasible, result.instance_type, result.replicas) == (True, "c7i.xlarge", 1)
    assert result.monthly_usd == 130.31  # 0.1785 x 730 = 130.305, half up
    assert result.hourly_usd == 0.1785
    assert result.projected is False


def test_seven_replicas_at_10000_rps_to_the_cent(c7i_xlarge):
    result = price_candidate(cpu_metrics(), Traffic(peak_rps=10_000, latency_slo_p95_ms=50), c7i_xlarge)
    assert result.replicas == 7
    assert result.monthly_usd == 912.14  # 7 x 0.1785 x 730 = 912.135 (float arithmetic says 912.13)
    assert result.hourly_usd == pytest.approx(1.2495)
    assert "ceil(10000 rps / (2500 sps × 0.6)) = 7 replicas × $0.1785/h × 730 h = $912.14/month" in result.reason
    assert result.per_instance[0].projection_method.startswith("measured on this instance type")


def test_min_replicas_is_respected_and_shown(c7i_xlarge):
    traffic = Traffic(peak_rps=1000, latency_slo_p95_ms=50, min_replicas=3)
    result = price_candidate(cpu_metrics(), traffic, c7i_xlarge)
    assert result.replicas == 3 and result.monthly_usd == 390.92  # 3 x 0.1785 x 730 = 390.915
    assert "max(min_replicas 3, ceil(1000 rps / (2500 sps × 0.6)) = 1) = 3 replicas" in result.reason


def test_hourly_profile_sums_each_hours_replicas(c7i_xlarge):
    profile = [1000.0] * 12 + [10_000.0] * 12
    result = price_candidate(cpu_metrics(), Traffic(hourly_rps_profile=profile, latency_slo_p95_ms=50), c7i_xlarge)
    cost = result.per_instance[0]
    assert cost.hourly_replicas == [1] * 12 + [7] * 12
    assert result.replicas == 7  # the fleet at its busiest hour
    # (12 x 1 + 12 x 7) = 96 replica-hours a day x $0.1785 x 730 / 24 days = $521.22
    assert result.monthly_usd == 521.22
    assert "sum 96 replica-hours/day × $0.1785/h × 730 h / 24 = $521.22/month" in result.reason


def test_slo_rules_out_the_cheapest_instance(t4_and_a10g):
    metrics = gpu_metrics()
    loose = price_candidate(metrics, Traffic(peak_rps=250, latency_slo_p95_ms=100, serving_batch_size=8), t4_and_a10g)
    assert loose.instance_type == "g4dn.xlarge"  # without the SLO, the T4 is cheapest: 1 x $0.526/h
    tight = price_candidate(metrics, Traffic(peak_rps=250, latency_slo_p95_ms=50, serving_batch_size=8), t4_and_a10g)
    assert tight.instance_type == "g5.xlarge"
    t4 = by_name(tight)["g4dn.xlarge"]
    assert t4.feasible is False
    assert t4.batch_latency_p95_ms == pytest.approx(60)  # memory-bound: 30 ms / (300 / 600 GB/s)
    assert t4.reason == "latency: p95 at batch 8 is 60 ms > SLO 50 ms"
    # ceil(250 rps / (1000 sps x 0.6)) = 1 replica x $1.006 x 730 h = $734.38
    assert (tight.replicas, tight.monthly_usd) == (1, 734.38)


def test_model_too_large_for_a_16_gib_gpu(t4_and_a10g):
    metrics = gpu_metrics(peak_mem_bytes=14 * GIB)
    traffic = Traffic(peak_rps=100, latency_slo_p95_ms=1000, serving_batch_size=8)
    result = price_candidate(metrics, traffic, t4_and_a10g)
    t4 = by_name(result)["g4dn.xlarge"]
    assert t4.feasible is False
    assert t4.reason.startswith("memory: peak 14.00 GiB > 16 GiB × (1 − 0.2) = 12.80 GiB per T4")
    assert result.instance_type == "g5.xlarge"  # 14 GiB <= 24 x 0.8 = 19.2 GiB
    roomy = price_candidate(metrics, traffic, t4_and_a10g, memory_headroom=0.1)  # 16 x 0.9 = 14.4 GiB
    assert roomy.instance_type == "g4dn.xlarge"


def test_memory_headroom_out_of_range_is_an_input_error(t4_and_a10g):
    with pytest.raises(InputError, match="memory_headroom"):
        price_candidate(gpu_metrics(), Traffic(peak_rps=1, latency_slo_p95_ms=50), t4_and_a10g, memory_headroom=1)


def test_cpu_projection_is_flagged_with_its_method():
    result = price_candidate(cpu_metrics(), Traffic(peak_rps=10_000, latency_slo_p95_ms=50), load_catalog())
    costs = by_name(result)
    assert costs["c7i.xlarge"].projected is False  # measured there with all 4 threads: its reading stands
    assert "with 4 threads on 2 cores (hyperthreads busy)" in costs["c7i.xlarge"].projection_method
    big = costs["c7i.4xlarge"]  # 2500 / 4 = 625 sps per core × 8 cores × yield 1
    assert big.projected is True and big.throughput_sps == 5_000
    assert "per-core scaling" in big.projection_method
    assert (
        "2500 sps / 4 threads = 625 sps per core × 8 cores × smt_yield 1 (2 threads per core, 16 vCPUs) = 5000 sps"
        in big.projection_method
    )
    arm = costs["c7g.xlarge"]  # 625 × 4 cores, no SMT
    assert arm.projected is True and arm.throughput_sps == 2_500
    assert arm.projection_method.startswith("cross-architecture (measured on x86_64, instance is arm64), per-core scaling × ")
    assert "x86_64 → arm64, fp32 on any runtime: × 1 [0.53, 1.43]" in arm.projection_method  # the bundled row, cited
    assert "625 sps per core × 1 × 4 cores (1 thread per core) = 2500 sps [1325, 3575]" in arm.projection_method  # × 0.53, × 1.43
    # the cheapest feasible is the Graviton, and the result says its figure is projected
    assert result.instance_type == "c7g.xlarge" and result.projected is True and result.monthly_usd == 740.95


@pytest.mark.parametrize(("smt_yield", "replicas"), [(1.0, 16), (1.3, 13), (2.0, 8)])
def test_hyperthreads_count_only_by_the_smt_yield(write_catalog, smt_yield, replicas):
    """1 thread measured at 1,000 sps; c7i.large has 1 core × 2 threads: capacity 1,000 × yield."""
    catalog = load_catalog(write_catalog([instance_row("c7i.large", 0.08925, vcpus=2, physical_cores=1)]))
    metrics = cpu_metrics(throughput_sps=1000, cpu_threads=1, measured_instance_type=None)
    traffic = Traffic(peak_rps=9_600, latency_slo_p95_ms=50)  # 9600 / (1000 × yield × 0.6)
    cost = price_candidate(metrics, traffic, catalog, smt_yield=smt_yield).per_instance[0]
    assert cost.throughput_sps == pytest.approx(1000 * smt_yield) and cost.replicas == replicas
    assert f"× 1 core × smt_yield {smt_yield:g} (2 threads per core, 2 vCPUs)" in cost.projection_method


def test_graviton_and_x86_are_compared_per_physical_core(write_catalog):
    catalog = load_catalog(
        write_catalog([
            instance_row("c7i.xlarge", 0.1785),  # 2 cores × 2 threads
            instance_row("c7g.xlarge", 0.145, physical_cores=4, threads_per_core=1, cpu_arch="arm64"),
        ])
    )  # fmt: skip
    metrics = cpu_metrics(throughput_sps=1000, cpu_threads=1, measured_instance_type=None)
    costs = by_name(price_candidate(metrics, Traffic(peak_rps=1000, latency_slo_p95_ms=50), catalog))
    assert costs["c7i.xlarge"].throughput_sps == 2000 and costs["c7g.xlarge"].throughput_sps == 4000


@pytest.mark.parametrize("smt_yield", [0.9, 2.5])
def test_an_smt_yield_outside_1_to_2_is_refused(c7i_xlarge, smt_yield):
    with pytest.raises(InputError, match="deployment.smt_yield"):
        price_candidate(cpu_metrics(), Traffic(peak_rps=1, latency_slo_p95_ms=50), c7i_xlarge, smt_yield=smt_yield)


def test_gpu_measured_on_the_same_accelerator_multiplies_by_count(write_catalog):
    catalog = load_catalog(write_catalog([gpu_row("p4d.24xlarge", 21.96, "A100-40GB", 40, count=8)]))
    metrics = gpu_metrics(device_name="NVIDIA A100-SXM4-40GB")
    cost = price_candidate(metrics, Traffic(peak_rps=100, latency_slo_p95_ms=50), catalog).per_instance[0]
    assert cost.projected is False and cost.throughput_sps == 8000
    assert cost.projection_method == "measured on A100-40GB: 1000 sps per GPU × 8 GPUs"


@pytest.mark.parametrize(
    ("bits", "flops_per_sample", "expected_ratio", "bound"),
    [
        (16, 1e9, 121 / 989.4, "compute-bound"),  # fp16 TFLOP/s L4 / H100
        (8, 1e9, 242 / 1979, "compute-bound"),  # int8 TOP/s
        (4, 1e9, 121 / 989.4, "compute-bound"),  # 4-bit weight-only computes in fp16
        (32, 1e9, 30.3 / 67, "compute-bound"),
        (16, 1e3, 300 / 3350, "memory-bound"),  # low arithmetic intensity
        (16, None, 300 / 3350, "memory-bound"),  # unknown FLOPs: bandwidth, said so
    ],
)
def test_gpu_projection_uses_the_dominant_bound(write_catalog, bits, flops_per_sample, expected_ratio, bound):
    catalog = load_catalog(write_catalog([gpu_row("g6.xlarge", 0.8048, "L4", 24)]))
    metrics = gpu_metrics(
        device_name="NVIDIA H100 80GB HBM3", bits=bits, flops_per_sample=flops_per_sample, size_bytes=1_000_000
    )
    traffic = Traffic(peak_rps=10, latency_slo_p95_ms=10_000, serving_batch_size=64)
    cost = price_candidate(metrics, traffic, catalog).per_instance[0]
    assert cost.projected is True
    assert cost.throughput_sps == pytest.approx(1000 * expected_ratio)
    assert cost.batch_latency_p95_ms == pytest.approx(30 / expected_ratio)
    assert f"projected from H100 to L4, {bound}" in cost.projection_method
    if flops_per_sample is None:
        assert "assumed: flops_per_sample unknown" in cost.projection_method


def test_no_number_is_invented_across_device_classes():
    catalog = load_catalog()
    on_cpu = by_name(price_candidate(cpu_metrics(), Traffic(peak_rps=10, latency_slo_p95_ms=50), catalog))
    assert on_cpu["g5.xlarge"].reason == "not measured on a GPU: run the search on a GPU worker to price g5.xlarge"
    assert on_cpu["g5.xlarge"].throughput_sps is None and on_cpu["g5.xlarge"].monthly_usd is None
    on_gpu = by_name(price_candidate(gpu_metrics(), Traffic(peak_rps=10, latency_slo_p95_ms=50), catalog))
    assert on_gpu["c7i.large"].reason == "not measured on a CPU: run the search on a CPU worker to price c7i.large"
    assert "Neuron SDK" in on_gpu["inf2.xlarge"].reason and on_gpu["inf2.xlarge"].feasible is False


def test_unknown_measured_gpu_cannot_be_projected(t4_and_a10g):
    result = price_candidate(
        gpu_metrics(device_name="NVIDIA GeForce RTX 4090"), Traffic(peak_rps=1, latency_slo_p95_ms=50), t4_and_a10g
    )
    assert result.feasible is False
    assert "which the accelerator spec table does not list" in by_name(result)["g5.xlarge"].reason


def test_infeasible_everywhere_returns_every_reason_and_never_raises():
    metrics = cpu_metrics(peak_mem_bytes=4096 * GIB)
    result = price_candidate(metrics, Traffic(peak_rps=1000, latency_slo_p95_ms=50), load_catalog())
    assert result.feasible is False
    assert (result.instance_type, result.replicas, result.monthly_usd) == (None, None, None)
    assert result.reason.startswith("infeasible on all 15 instance types: ")
    assert len(result.per_instance) == 15 and not any(c.feasible for c in result.per_instance)
    assert "c7i.large: memory: peak 4096.00 GiB > 4 GiB × (1 − 0.2) = 3.20 GiB of instance memory" in result.reason
    assert "g5.xlarge: not measured on a GPU" in result.reason


def test_ties_go_to_fewer_replicas_then_the_name(write_catalog):
    catalog = load_catalog(
        write_catalog(
            [
                instance_row("c7i.large", 0.08925, vcpus=2, physical_cores=1),  # 14 replicas x 0.08925 = 7 x 0.1785
                instance_row("m7i.xlarge", 0.1785),
                instance_row("c7i.xlarge", 0.1785),
            ]
        )
    )
    metrics = cpu_metrics(measured_instance_type=None, cpu_threads=2)  # 1,250 sps per core
    result = price_candidate(metrics, Traffic(peak_rps=10_000, latency_slo_p95_ms=50), catalog)
    assert [c.instance_type for c in result.per_instance] == ["c7i.xlarge", "m7i.xlarge", "c7i.large"]
    assert {c.monthly_usd for c in result.per_instance} == {912.14}
    assert result.instance_type == "c7i.xlarge"
    assert "next m7i.xlarge at $912.14/month" in result.reason


def test_explain_has_one_row_per_instance():
    result = price_candidate(cpu_metrics(), Traffic(peak_rps=10_000, latency_slo_p95_ms=50), load_catalog())
    frame = explain(result)
    assert list(frame.columns) == EXPLAIN_COLUMNS
    assert len(frame) == 15 and frame["chosen"].sum() == 1
    chosen = frame[frame.chosen].iloc[0]
    assert (chosen.instance_type, chosen.replicas, chosen.monthly_usd) == ("c7g.xlarge", 7, 740.95)
    assert str(frame["replicas"].dtype) == "Int64"
    assert frame.loc[frame.instance_type == "g5.xlarge", "replicas"].isna().item()


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA H200", "H200"),
        ("NVIDIA GH200 480GB", None),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A10", None),
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", None),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
    ],
)
def test_gpu_names_map_to_catalog_accelerators(name, key):
    assert accelerator_key(name) == key


def test_cpu_metrics_need_threads_and_accept_platform_arch_names():
    with pytest.raises(ValueError, match="cpu_threads is required"):
        cpu_metrics(cpu_threads=None)
    assert cpu_metrics(cpu_arch="aarch64").cpu_arch == "arm64"


def test_kernels_for_one_architecture_rule_out_the_other():
    """int8 for torch.ao's x86 backend can't serve on Graviton: arm64 instances are infeasible, with the reason."""
    from orchestrator.cost.catalog import load_catalog
    from orchestrator.cost.model import CandidateMetrics, price_candidate
    from orchestrator.cost.traffic import Traffic

    catalog = load_catalog(region="us-east-1", instance_filter=["c7i.*", "c7g.*"])
    metrics = dict(throughput_sps=20000.0, batch_latency_p95_ms=10.0, peak_mem_bytes=10**7, size_bytes=10**6,
                   device_kind="cpu", device_name="x86 test CPU", cpu_threads=1, cpu_arch="x86_64", bits=8)  # fmt: skip
    traffic = Traffic(peak_rps=100000, latency_slo_p95_ms=100, serving_batch_size=128)
    anywhere = price_candidate(CandidateMetrics(**metrics), traffic, catalog)
    x86_only = price_candidate(CandidateMetrics(**metrics, cpu_archs=["x86_64"]), traffic, catalog)
    arm = [c for c in x86_only.per_instance if c.instance_type.startswith("c7g")]
    assert arm and all(not c.feasible and "run on x86_64 only" in c.reason for c in arm)
    assert any(c.feasible for c in anywhere.per_instance if c.instance_type.startswith("c7g"))
    assert x86_only.instance_type.startswith("c7i")
