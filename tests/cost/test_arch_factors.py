"""Across CPU architectures: the factor table (loaded strictly), the projection with its range, the $ interval."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.cost.candidate import CandidateMetrics, rounds_spread
from orchestrator.cost.catalog import ARCH_FACTOR_COLUMNS, ArchFactor, find_arch_factor, load_catalog, read_arch_factors
from orchestrator.cost.model import price_candidate, replicas_needed
from orchestrator.cost.traffic import Traffic
from orchestrator.errors import InputError

from tests.cost.conftest import instance_row

ROW = {
    "from_arch": "x86_64", "to_arch": "arm64", "runtime": "onnxruntime", "precision": "int8", "factor": 0.8,
    "factor_low": 0.65, "factor_high": 1.0, "source": "a test source", "published": "2024-05", "note": "", "as_of": "2025-07-01",
}  # fmt: skip


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "factors.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ARCH_FACTOR_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _metrics(**overrides: object) -> CandidateMetrics:
    fields = dict(
        throughput_sps=1000.0, batch_latency_p95_ms=20.0, peak_mem_bytes=10_000_000, size_bytes=100_000,
        device_kind="cpu", device_name="test x86", cpu_threads=1, cpu_arch="x86_64", bits=8, runtime="onnxruntime",
    )  # fmt: skip
    return CandidateMetrics(**{**fields, **overrides})


def test_the_bundled_table_loads_and_every_row_holds_its_factor_within_its_range():
    rows = read_arch_factors()
    assert rows and all(r.factor_low <= r.factor <= r.factor_high and r.source for r in rows)
    fp32 = find_arch_factor(rows, "x86_64", "arm64", "eager", "fp32")
    assert fp32 is not None and fp32.precision == "fp32" and fp32.published  # the one row with a published source
    back = find_arch_factor(rows, "arm64", "x86_64", "eager", "fp32")  # the reverse is the same row inverted
    assert back is not None and back.factor == pytest.approx(1 / fp32.factor)
    assert (back.factor_low, back.factor_high) == pytest.approx((1 / fp32.factor_high, 1 / fp32.factor_low))


def test_the_most_specific_row_applies(tmp_path):
    rows = read_arch_factors(_write(tmp_path, [ROW, {**ROW, "runtime": "any", "factor": 0.9, "factor_high": 1.2}]))
    assert find_arch_factor(rows, "x86_64", "arm64", "onnxruntime", "int8").factor == 0.8
    assert find_arch_factor(rows, "x86_64", "arm64", "openvino", "int8").factor == 0.9
    assert find_arch_factor(rows, "x86_64", "arm64", "onnxruntime", "fp32") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"factor": 1.5}, r"line 2\).*field 'factor': 1.5 must lie within \[factor_low, factor_high\] = \[0.65, 1\]"),
        ({"precision": "int3"}, r"line 2\).*field 'precision'"),
        ({"to_arch": "x86_64"}, r"line 2\).*'from_arch' and 'to_arch' are both 'x86_64'"),
        ({"published": "May 2024"}, r"line 2\).*field 'published'"),
        ({"source": ""}, r"line 2\).*field 'source': is empty"),
    ],
)
def test_a_bad_row_names_the_file_the_line_and_the_field(tmp_path, change, message):
    path = _write(tmp_path, [{**ROW, **change}])
    with pytest.raises(InputError, match=message) as error:
        read_arch_factors(path)
    assert str(path) in str(error.value)


def test_a_row_listed_twice_or_both_ways_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"row 2 \(line 3\).*repeats row 1"):
        read_arch_factors(_write(tmp_path, [ROW, ROW]))
    with pytest.raises(InputError, match=r"row 2 \(line 3\).*list one direction only"):
        read_arch_factors(_write(tmp_path, [ROW, {**ROW, "from_arch": "arm64", "to_arch": "x86_64"}]))


def _two_archs(write_catalog, tmp_path):
    catalog = load_catalog(
        write_catalog([
            instance_row("c7i.xlarge", 0.1785),  # 2 cores × 2 threads
            instance_row("c7g.xlarge", 0.145, physical_cores=4, threads_per_core=1, cpu_arch="arm64"),
        ]),
        arch_factors_path=_write(tmp_path, [ROW]),
    )  # fmt: skip
    return catalog


def test_a_cross_architecture_projection_applies_the_factor_and_carries_its_range(write_catalog, tmp_path):
    catalog = _two_archs(write_catalog, tmp_path)
    traffic = Traffic(peak_rps=6000, latency_slo_p95_ms=50, target_utilization=0.5)
    costs = {c.instance_type: c for c in price_candidate(_metrics(), traffic, catalog).per_instance}
    arm, x86 = costs["c7g.xlarge"], costs["c7i.xlarge"]
    assert arm.throughput_sps == pytest.approx(1000 * 0.8 * 4) and arm.cross_architecture
    assert arm.batch_latency_p95_ms == pytest.approx(20 / 0.8)  # a slower core takes longer per batch
    assert (arm.throughput_sps_low, arm.throughput_sps_high) == pytest.approx((2600, 4000))
    assert "x86_64 → arm64, int8 on onnxruntime: × 0.8 [0.65, 1] (a test source, 2024-05)" in arm.projection_method
    # the same architecture: per-core scaling as before, with no range and no interval
    assert x86.throughput_sps == 2000 and not x86.cross_architecture and x86.monthly_usd_low is None
    # the $ interval in whole instances: replicas at the high and at the low throughput
    assert (arm.replicas_low, arm.replicas, arm.replicas_high) == (
        replicas_needed(6000, 4000, 0.5, 1), replicas_needed(6000, 3200, 0.5, 1), replicas_needed(6000, 2600, 0.5, 1),
    ) == (3, 4, 5)  # fmt: skip
    assert (arm.monthly_usd_low, arm.monthly_usd_high) == (round(3 * 0.145 * 730, 2), round(5 * 0.145 * 730, 2))


def test_without_a_factor_row_the_projection_says_so_and_has_no_range(write_catalog, tmp_path):
    catalog = replace(_two_archs(write_catalog, tmp_path), arch_factors=[])
    arm = next(c for c in price_candidate(_metrics(), Traffic(peak_rps=100, latency_slo_p95_ms=50), catalog).per_instance if c.instance_type == "c7g.xlarge")
    assert arm.throughput_sps == 4000 and arm.throughput_sps_low is None and arm.monthly_usd_low is None
    assert "per-core scaling only (no cpu_arch_factors row for int8; 1:1 assumed, no range)" in arm.projection_method


def test_the_measurement_spread_and_the_factor_range_combine_into_the_chosen_interval(write_catalog, tmp_path):
    catalog = _two_archs(write_catalog, tmp_path)
    traffic = Traffic(peak_rps=6000, latency_slo_p95_ms=50, target_utilization=0.5)
    result = price_candidate(_metrics(throughput_spread=(0.9, 1.1)), traffic, catalog)
    assert result.instance_type == "c7g.xlarge"
    # low 2600 × 0.9 = 2340 sps, high 4000 × 1.1 = 4400 sps; replicas ceil(12000 / each)
    assert (result.throughput_sps_low, result.throughput_sps_high) == pytest.approx((2340, 4400))
    assert (result.replicas_low, result.replicas, result.replicas_high) == (3, 4, 6)
    assert result.monthly_usd == round(4 * 0.145 * 730, 2)  # the point is priced as before
    assert "interval: " in result.reason and "measurement spread [0.9, 1.1]" in result.reason


def test_the_spread_of_the_rounds_is_min_and_max_over_their_median():
    assert rounds_spread([1.0, 1.2, 0.9, 1.1, 1.0]) == pytest.approx((0.9, 1.2))
    assert rounds_spread([1.0, 1.1]) is None  # two rounds bound the median with 50% confidence: no spread
    with pytest.raises(ValueError, match="0 < low <= 1 <= high"):
        _metrics(throughput_spread=(1.1, 1.2))


def test_arch_factor_rows_are_frozen_records():
    row = ArchFactor.model_validate({k: v for k, v in ROW.items() if v != ""})
    assert row.inverted().inverted().factor == pytest.approx(row.factor)
