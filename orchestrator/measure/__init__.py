"""Measure a candidate as it will serve (`metrics`), against a per-machine teacher reference (`reference`)."""

from orchestrator.measure.metrics import (
    DeviceInfo,
    Metrics,
    count_params,
    default_threads,
    device_info,
    flops_per_sample,
    interleaved_throughput,
    measure,
    peak_memory_bytes,
    percentile,
    serialized_size_bytes,
    time_batches,
    weights_bytes,
)
from orchestrator.measure.reference import ReferenceThroughput, reference_path, reference_throughput

__all__ = [
    "DeviceInfo",
    "Metrics",
    "ReferenceThroughput",
    "count_params",
    "default_threads",
    "device_info",
    "flops_per_sample",
    "interleaved_throughput",
    "measure",
    "peak_memory_bytes",
    "percentile",
    "reference_path",
    "reference_throughput",
    "serialized_size_bytes",
    "time_batches",
    "weights_bytes",
]
