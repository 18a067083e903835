"""Each runtime's kernels decide where a candidate may be priced: ONNX Runtime int8 on arm64 too, torch's FX int8 on x86 only."""

from __future__ import annotations

from orchestrator.techniques import StepRecord
from orchestrator.cost.catalog import load_catalog
from orchestrator.cost.model import CandidateMetrics, explain, price_candidate
from orchestrator.cost.traffic import Traffic
from orchestrator.runtimes import kernel_archs

ORT_INT8 = [StepRecord(stage="runtime", technique="onnxruntime_int8_static", config={}, details={"int8": "static"})]
FX_INT8 = [StepRecord(stage="quantize", technique="int8_static", config={}, details={"backend": "x86", "mode": "static", "kernel_archs": ["x86_64"]})]


def _priced(steps: list[StepRecord]):
    catalog = load_catalog(None, region="us-east-1", instance_filter=["c7i.*", "c7g.*"])
    metrics = CandidateMetrics(
        throughput_sps=20000.0, batch_latency_p95_ms=20.0, peak_mem_bytes=50_000_000, size_bytes=250_000,
        device_kind="cpu", device_name="test x86 cpu", cpu_threads=2, cpu_arch="x86_64", bits=8,
        cpu_archs=kernel_archs(steps),
    )  # fmt: skip
    traffic = Traffic(peak_rps=120000, latency_slo_p95_ms=1000, serving_batch_size=128, min_replicas=1)
    return price_candidate(metrics, traffic, catalog)


def test_onnxruntime_int8_is_priced_on_arm64_as_a_cross_architecture_projection():
    result = _priced(ORT_INT8)
    arm = [c for c in result.per_instance if c.instance_type.startswith("c7g")]
    assert arm and all(c.monthly_usd is not None and c.projected for c in arm)
    assert all(c.projection_method.startswith("cross-architecture (measured on x86_64, instance is arm64)") for c in arm)
    table = explain(result)
    assert table.loc[table["instance_type"].str.startswith("c7g"), "monthly_usd"].notna().all()


def test_fx_int8_is_not_priced_on_arm64_and_says_why():
    result = _priced(FX_INT8)
    arm = [c for c in result.per_instance if c.instance_type.startswith("c7g")]
    assert arm and all(c.monthly_usd is None and not c.feasible for c in arm)
    assert all("run on x86_64 only" in c.reason for c in arm)
    assert result.instance_type.startswith("c7i")


def test_the_same_throughput_is_cheaper_where_arm64_can_be_used():
    assert _priced(ORT_INT8).monthly_usd < _priced(FX_INT8).monthly_usd
