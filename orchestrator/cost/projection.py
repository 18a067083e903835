"""Projection rules: one instance's throughput and batch latency, from a measurement made elsewhere.

The rules, in the order they are tried (each result's `method` states which one applied):

1. An accelerator that needs another runtime (Inferentia2: AWS Neuron SDK) -> no figure;
   Hedgerow serves torch models on CUDA or CPU only.
2. Across device classes (measured on CPU, instance has a GPU, or the reverse) -> no figure;
   the search must run on that kind of worker. Nothing is invented.
3. CPU instance, CPU measurement -> per-core throughput x physical cores x SMT yield.
   The per-core figure is the measured throughput / threads measured (each measured
   thread had a core of its own). A hyperthread is not a core: an instance with
   `threads_per_core` > 1 (x86 here) gets `smt_yield` per core, the throughput of a core
   with all its hyperthreads busy relative to one thread (1.0: hyperthreads add nothing,
   the conservative default; 2.0: the old vCPU scaling); one with a thread per core
   (Graviton) gets 1. Measured (not projected) only when `measured_instance_type` is this
   instance type. Batch latency is kept as measured on the same architecture (equal per-core
   speed assumed; more cores serve more batches at once).
   A different cpu_arch is "cross-architecture": the per-core figure is multiplied by the
   factor of the most specific row of cpu_arch_factors.csv for (measured arch, instance arch,
   runtime, precision), batch latency divided by it, and the row's [low, high] is carried as
   throughput_sps_low / _high; the method cites the row. Without a row: 1:1, no range, and
   the method says so.
4. GPU instance whose accelerator is the measured GPU -> measured, per-GPU throughput x
   accelerator_count (one model copy per GPU), batch latency as measured.
5. Other GPU -> per-GPU throughput x ratio of the dominant bound. Compute-bound when
   flops_per_sample is known and the arithmetic intensity (flops_per_sample x batch /
   size_bytes, FLOP per byte of weights read per batch) is above the measured GPU's ridge
   point (peak compute / memory bandwidth): ratio of peak compute at the candidate's
   precision (int8 TOP/s for 8 bits; fp16 for 16 bits and 4-bit weight-only; fp32 for 32).
   Otherwise memory-bound: ratio of memory bandwidth. Batch latency = measured / ratio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from orchestrator.cost.candidate import CandidateMetrics
from orchestrator.cost.catalog import AcceleratorSpec, ArchFactor, InstanceType, find_arch_factor

# Most specific first; a None key means "a variant the spec table must not confuse with another".
_GPU_NAMES: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"\bh100\b.*\bnvl\b"), None),
    (re.compile(r"\bh100\b.*\bpcie\b"), "H100-PCIe"),
    (re.compile(r"\bh100\b"), "H100"),
    (re.compile(r"\bh200\b"), "H200"),
    (re.compile(r"\ba100\b.*80\s*gb"), "A100-80GB"),
    (re.compile(r"\ba100\b.*40\s*gb"), "A100-40GB"),
    (re.compile(r"\ba10g\b"), "A10G"),
    (re.compile(r"\bl40s\b"), "L40S"),
    (re.compile(r"\bl4\b"), "L4"),
    (re.compile(r"\bt4\b"), "T4"),
]

_PRECISION: dict[int, tuple[str, str]] = {
    32: ("peak_fp32_tflops", "fp32"),
    16: ("peak_fp16_tflops", "fp16"),
    8: ("peak_int8_tops", "int8"),
    4: ("peak_fp16_tflops", "fp16 (4-bit weight-only, fp16 compute)"),
}

# A CPU candidate's bits as cpu_arch_factors.csv names its precision (16 bits is bf16 on a CPU).
CPU_PRECISION: dict[int, str] = {32: "fp32", 16: "bf16", 8: "int8", 4: "int4-weight-only"}


def accelerator_key(device_name: str) -> str | None:
    """The catalog accelerator key of a GPU name ("NVIDIA H100 80GB HBM3" -> "H100"), or None."""
    name = device_name.lower().replace("_", " ")
    for pattern, key in _GPU_NAMES:
        if pattern.search(name):
            return key
    return None


@dataclass(frozen=True)
class Projection:
    """Per-instance throughput and batch latency, or why there is no honest figure (blocker).

    throughput_sps_low / _high: the range a cross-architecture factor carries (None where nothing was projected
    across architectures); speed_factor: per-core speed here relative to the measured device (1 but across them).
    """

    throughput_sps: float | None
    batch_latency_p95_ms: float | None
    projected: bool
    method: str
    blocker: str | None = None
    throughput_sps_low: float | None = None
    throughput_sps_high: float | None = None
    speed_factor: float = 1.0
    cross_architecture: bool = False


def num(x: float) -> str:
    """A number as printed in explanations: up to 10 significant digits, no trailing zeros."""
    return f"{x:.10g}"


def project(
    metrics: CandidateMetrics,
    inst: InstanceType,
    accelerators: dict[str, AcceleratorSpec],
    serving_batch_size: int,
    smt_yield: float = 1.0,
    arch_factors: Sequence[ArchFactor] = (),
) -> Projection:
    """Apply the projection rules (module docstring) to one instance; arch_factors: the catalog's rows across CPUs."""
    spec = accelerators.get(inst.accelerator) if inst.accelerator else None
    if inst.accelerator is not None and spec is None:
        why = f"accelerator {inst.accelerator!r} of {inst.instance_type} is not in the accelerator spec table"
        return Projection(None, None, False, "none: unknown accelerator", why)
    if spec is not None and spec.runtime != "cuda":
        why = (
            f"{spec.accelerator} runs models compiled with the AWS Neuron SDK; Hedgerow serves "
            f"torch models on CUDA or CPU only, so {inst.instance_type} cannot be priced"
        )
        return Projection(None, None, False, "none: needs the Neuron SDK", why)
    if inst.accelerator is not None and metrics.device_kind == "cpu":
        why = f"not measured on a GPU: run the search on a GPU worker to price {inst.instance_type}"
        return Projection(None, None, False, "none: measured on CPU", why)
    if inst.accelerator is None and metrics.device_kind == "cuda":
        why = f"not measured on a CPU: run the search on a CPU worker to price {inst.instance_type}"
        return Projection(None, None, False, "none: measured on a GPU", why)
    if spec is None and metrics.cpu_archs is not None and inst.cpu_arch not in metrics.cpu_archs:
        why = (
            f"the candidate's kernels run on {', '.join(metrics.cpu_archs)} only "
            f"(e.g. int8 for the x86 backend), and {inst.instance_type} is {inst.cpu_arch}"
        )
        return Projection(None, None, False, f"none: needs {'/'.join(metrics.cpu_archs)}", why)
    if spec is None:
        return _project_cpu(metrics, inst, smt_yield, arch_factors)
    return _project_gpu(metrics, inst, spec, accelerators, serving_batch_size)


def cores_capacity(inst: InstanceType, smt_yield: float) -> float:
    """How many single-thread copies of the model one instance sustains: physical cores x the SMT yield."""
    return inst.physical_cores * (smt_yield if inst.threads_per_core > 1 else 1.0)


def cite(row: ArchFactor) -> str:
    """A factor row as a projection's method quotes it: 'x86_64 → arm64, int8 on any runtime: × 1 [0.41, 1.11] (source, date)'."""
    what = f"{row.precision} on {'any runtime' if row.runtime == 'any' else row.runtime}"
    when = f", {row.published}" if row.published else ""
    return (
        f"{row.from_arch} → {row.to_arch}, {what}: × {num(round(row.factor, 4))} "
        f"[{num(round(row.factor_low, 4))}, {num(round(row.factor_high, 4))}] ({row.source}{when})"
    )


def _project_cpu(
    metrics: CandidateMetrics, inst: InstanceType, smt_yield: float, arch_factors: Sequence[ArchFactor] = ()
) -> Projection:
    """Rule 3: per-core throughput x physical cores x the SMT yield (x the factor across architectures)."""
    threads = metrics.cpu_threads or 1
    on_this_type = metrics.measured_instance_type == inst.instance_type
    if on_this_type and threads > inst.physical_cores:
        # Measured here with hyperthreads busy: the reading already holds what they add.
        throughput_sps = metrics.throughput_sps * inst.vcpus / threads
        arithmetic = (
            f"{num(metrics.throughput_sps)} sps with {threads} threads on {inst.physical_cores} cores "
            f"(hyperthreads busy) × {inst.vcpus} vCPUs / {threads} threads = {num(throughput_sps)} sps"
        )
        return Projection(throughput_sps, metrics.batch_latency_p95_ms, False, f"measured on this instance type: {arithmetic}")
    per_core_sps = metrics.throughput_sps / threads
    throughput_sps = per_core_sps * cores_capacity(inst, smt_yield)
    cores = f"{inst.physical_cores} core{'s' if inst.physical_cores != 1 else ''}"
    if inst.threads_per_core > 1:
        scaling = f"{cores} × smt_yield {num(smt_yield)} ({inst.threads_per_core} threads per core, {inst.vcpus} vCPUs)"
    else:
        scaling = f"{cores} (1 thread per core)"
    per_core = f"{num(metrics.throughput_sps)} sps / {threads} thread{'s' if threads != 1 else ''}"
    arithmetic = f"{per_core} = {num(per_core_sps)} sps per core × {scaling} = {num(throughput_sps)} sps"
    if on_this_type:
        method = f"measured on this instance type: {arithmetic}"
        projected = False
    elif metrics.cpu_arch != inst.cpu_arch:
        return _across_archs(metrics, inst, per_core_sps, cores_capacity(inst, smt_yield), scaling, arch_factors)
    else:
        method = f"per-core scaling from {metrics.device_name}: {arithmetic}"
        projected = True
    return Projection(throughput_sps, metrics.batch_latency_p95_ms, projected, method)


def _across_archs(
    metrics: CandidateMetrics,
    inst: InstanceType,
    per_core_sps: float,
    capacity: float,
    scaling: str,
    arch_factors: Sequence[ArchFactor],
) -> Projection:
    """Rule 3 across CPU architectures: the per-core figure × the factor row's point, low and high."""
    precision = CPU_PRECISION.get(metrics.bits, "any")
    row = find_arch_factor(arch_factors, metrics.cpu_arch, inst.cpu_arch, metrics.runtime, precision)
    head = f"cross-architecture (measured on {metrics.cpu_arch}, instance is {inst.cpu_arch})"
    threads = metrics.cpu_threads or 1
    per_core = f"{num(metrics.throughput_sps)} sps / {threads} thread{'s' if threads != 1 else ''} = {num(per_core_sps)} sps per core"
    if row is None:
        throughput_sps = per_core_sps * capacity
        method = (
            f"{head}, per-core scaling only (no cpu_arch_factors row for {precision}; 1:1 assumed, no range): "
            f"{per_core} × {scaling} = {num(throughput_sps)} sps"
        )
        return Projection(throughput_sps, metrics.batch_latency_p95_ms, True, method, cross_architecture=True)
    throughput_sps = per_core_sps * row.factor * capacity
    low, high = per_core_sps * row.factor_low * capacity, per_core_sps * row.factor_high * capacity
    method = (
        f"{head}, per-core scaling × {cite(row)}: {per_core} × {num(round(row.factor, 4))} × {scaling} = "
        f"{num(throughput_sps)} sps [{num(round(low, 3))}, {num(round(high, 3))}]"
    )
    latency_ms = metrics.batch_latency_p95_ms / row.factor
    if row.factor != 1:
        method += f"; batch latency {num(metrics.batch_latency_p95_ms)} ms / {num(round(row.factor, 4))}"
    return Projection(
        throughput_sps, latency_ms, True, method, throughput_sps_low=low, throughput_sps_high=high,
        speed_factor=row.factor, cross_architecture=True,
    )  # fmt: skip


def _project_gpu(
    metrics: CandidateMetrics,
    inst: InstanceType,
    spec: AcceleratorSpec,
    accelerators: dict[str, AcceleratorSpec],
    serving_batch_size: int,
) -> Projection:
    """Rules 4 and 5: same GPU is measured; another GPU scales by the dominant bound."""
    count = inst.accelerator_count
    measured_key = accelerator_key(metrics.device_name)
    if measured_key == spec.accelerator:
        method = f"measured on {spec.accelerator}: {num(metrics.throughput_sps)} sps per GPU × {count} GPU" + (
            "s" if count != 1 else ""
        )
        return Projection(metrics.throughput_sps * count, metrics.batch_latency_p95_ms, False, method)
    source = accelerators.get(measured_key) if measured_key else None
    if source is None:
        why = (
            f"measured on {metrics.device_name!r}, which the accelerator spec table does not list: "
            f"cannot project to {spec.accelerator} (add it to aws_accelerators.csv or measure on "
            f"{spec.accelerator})"
        )
        return Projection(None, None, False, "none: unknown measured GPU", why)
    ratio, bound = _bound_ratio(metrics, source, spec, serving_batch_size)
    per_gpu_sps = metrics.throughput_sps * ratio
    method = (
        f"projected from {source.accelerator} to {spec.accelerator}, {bound}: "
        f"{num(metrics.throughput_sps)} sps × {num(ratio)} = {num(per_gpu_sps)} sps per GPU × {count} GPU"
        + ("s" if count != 1 else "")
        + f"; batch latency {num(metrics.batch_latency_p95_ms)} ms / {num(ratio)}"
    )
    return Projection(per_gpu_sps * count, metrics.batch_latency_p95_ms / ratio, True, method)


def _bound_ratio(
    metrics: CandidateMetrics, source: AcceleratorSpec, target: AcceleratorSpec, batch: int
) -> tuple[float, str]:
    """The target/source speed ratio of the dominant bound, and a sentence that shows it."""
    column, label = _PRECISION[metrics.bits]
    source_peak, target_peak = getattr(source, column), getattr(target, column)
    bandwidth_ratio = target.memory_bandwidth_gbps / source.memory_bandwidth_gbps
    memory_bound = f"memory-bound, × {num(target.memory_bandwidth_gbps)} / {num(source.memory_bandwidth_gbps)} GB/s"
    if metrics.flops_per_sample is None:
        return bandwidth_ratio, f"{memory_bound} (assumed: flops_per_sample unknown)"
    if source_peak is None or target_peak is None:
        return bandwidth_ratio, f"{memory_bound} (no {label} peak for both GPUs)"
    intensity = metrics.flops_per_sample * batch / metrics.size_bytes
    ridge = source_peak * 1e12 / (source.memory_bandwidth_gbps * 1e9)
    shown = (
        f"{num(round(intensity, 3))} FLOP/B vs ridge {num(round(ridge, 3))} FLOP/B of {source.accelerator} at {label}"
    )
    if intensity > ridge:
        unit = "TOP/s" if column == "peak_int8_tops" else "TFLOP/s"
        return target_peak / source_peak, (
            f"compute-bound ({shown}), × {num(target_peak)} / {num(source_peak)} {unit} {label}"
        )
    return bandwidth_ratio, f"{memory_bound} ({shown})"
