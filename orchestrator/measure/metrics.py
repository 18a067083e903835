"""Measure a model as it will serve: size, peak memory, throughput, latency, and the device's identity.

CPU peak memory method: weights (every parameter and buffer, at its dtype) plus
the peak of live activation bytes during one forward pass at the serving batch,
tracked exactly by a TorchDispatchMode that counts each tensor storage an
operator creates and releases it when the last tensor on it is freed. CUDA:
`torch.cuda.max_memory_allocated` around one forward pass, weights included.
"""

from __future__ import annotations

import io
import os
import platform
import statistics
import time
import weakref
from collections import defaultdict
from typing import Callable

import torch
from pydantic import BaseModel
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from orchestrator.runtimes.base import ServedProgram
from orchestrator.tasks.base import model_device
from orchestrator.tasks.batches import Inputs, batch_size, nbytes, run, take, tensors, to_device
from orchestrator.techniques.sizes import count_params, weights_bytes


class DeviceInfo(BaseModel):
    """What the measurements ran on; machines of one kind differ (AVX2 vs AVX-512 vs AMX)."""

    kind: str  # "cpu" | "cuda"
    name: str  # CPU model string or GPU name
    capability: str  # instruction set torch dispatches to (CPU) or compute capability (CUDA)
    arch: str  # x86_64 | arm64
    threads: int


class Metrics(BaseModel):
    """Everything measured about one model at one serving batch size."""

    params: int
    nonzero_params: int
    size_bytes: int
    peak_mem_bytes: int
    throughput_sps: float
    throughput_runs_sps: list[float]
    batch_latency_p50_ms: float
    batch_latency_p95_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    serving_batch_size: int
    flops_per_sample: float | None
    device: DeviceInfo
    # Median over interleaved rounds of (reference batch time / this model's batch time); None without a reference.
    throughput_ratio_to_reference: float | None = None
    throughput_ratio_rounds: list[float] = []


def device_info(device: torch.device | str = "cpu") -> DeviceInfo:
    """Identify the CPU (model string, ISA torch dispatches to) or GPU (name, compute capability)."""
    device = torch.device(device)
    arch = {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return DeviceInfo(kind="cuda", name=torch.cuda.get_device_name(device), capability=f"sm_{major}{minor}", arch=arch, threads=torch.get_num_threads())
    return DeviceInfo(
        kind="cpu", name=_cpu_model_name(), capability=torch.backends.cpu.get_cpu_capability(), arch=arch, threads=torch.get_num_threads()
    )


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def serialized_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's state_dict as torch.save writes it: the artifact that would deploy."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages that operators create, and their peak while live."""

    def __init__(self, preexisting: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        # Storages that exist before the pass (weights, the input): views of them allocate nothing.
        self._preexisting = {_storage_key(t) for t in preexisting}
        self.live = 0
        self.peak = 0
        self._refs: dict[int, int] = defaultdict(int)
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self._track(tensor)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        key, size = _storage_key(tensor), _storage_bytes(tensor)
        if key in self._preexisting:
            return
        if self._refs[key] == 0:
            self._sizes[key] = size
            self.live += size
            self.peak = max(self.peak, self.live)
        self._refs[key] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            self.live -= self._sizes.pop(key, 0)
            del self._refs[key]


def _storage_key(tensor: torch.Tensor) -> int:
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return id(tensor)


def _storage_bytes(tensor: torch.Tensor) -> int:
    try:
        return tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return tensor.numel() * tensor.element_size()


def inspectable(model: nn.Module) -> nn.Module:
    """The module torch can analyse eagerly: a runtime's served program's `inspect_module`, else the model."""
    return model.inspect_module if isinstance(model, ServedProgram) else model


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, nonzero): a served program's own count, else the module's."""
    return model.param_counts() if isinstance(model, ServedProgram) else count_params(model)


@torch.inference_mode()
def peak_memory_bytes(model: nn.Module, batch: Inputs) -> int:
    """Weights plus peak live activations of one forward pass at this batch (see module docstring).

    A compiled or ONNX Runtime program hides its allocations from torch's dispatcher: its own
    weights (`weights_nbytes()`) plus the activations of its eager program (`inspect_module`) count.
    """
    if isinstance(model, ServedProgram):
        inner = model.inspect_module
        tracker = _LiveBytes(preexisting=(*tensors(batch), *inner.parameters(), *inner.buffers()))
        with tracker:
            run(inner, batch)
        return int(model.weights_nbytes()) + nbytes(batch) + tracker.peak
    device = model_device(model)
    batch = to_device(batch, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) - weights_bytes(model) - nbytes(batch)
        run(model, batch)
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - max(base, 0))
    tracker = _LiveBytes(preexisting=(*tensors(batch), *model.parameters(), *model.buffers()))
    with tracker:
        run(model, batch)
    return weights_bytes(model) + nbytes(batch) + tracker.peak


def flops_per_sample(model: nn.Module, batch: Inputs) -> float | None:
    """FLOPs of one sample from torch's FlopCounterMode (None where it can't count, e.g. int8 ops)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            run(model, to_device(batch, model_device(model)))
        total = counter.get_total_flops()
    except Exception:  # quantized and custom ops have no flop formula
        return None
    return total / batch_size(batch) if total else None


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@torch.inference_mode()
def time_batches(model: nn.Module, batch: Inputs, repeats: int, warmup: int = 3, min_seconds: float = 0.0) -> list[float]:
    """Seconds per forward pass over `repeats` timed runs after `warmup` untimed ones."""
    device = model_device(model)
    batch = to_device(batch, device)
    for _ in range(warmup):
        run(model, batch)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - started < min_seconds:
        times.append(_timed(lambda: run(model, batch), device))
    return times


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def measure(
    model: nn.Module,
    example_batch: Inputs,
    threads: int | None = None,
    batch_repeats: int = 20,
    latency_repeats: int = 100,
    size_bytes: int | None = None,
    reference: nn.Module | None = None,
    rounds: int = 5,
) -> Metrics:
    """Measure a model at the serving batch (`example_batch`) and at batch 1, with a fixed thread count.

    `size_bytes` overrides the serialized size where the deployed format differs
    (packed int4 on a CPU, say). Throughput is the median over repeated runs.
    With a `reference` model (the teacher), the serving-batch runs alternate with
    the reference's over `rounds` rounds, and the throughput ratio to it is kept:
    both see the same background noise, so the ratio holds across processes
    where raw throughput drifts.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    model.eval()
    device = model_device(model)
    params, nonzero = param_counts(model)
    ratio_rounds: list[float] = []
    if reference is None:
        batch_times = time_batches(model, example_batch, batch_repeats)
    else:
        batch_times, ratio_rounds = _interleaved_batch_times(model, reference.eval(), example_batch, batch_repeats, rounds)
    single_times = time_batches(model, take(example_batch, slice(0, 1)), latency_repeats, warmup=10)
    n = batch_size(example_batch)
    runs_sps = [n / t for t in batch_times]
    return Metrics(
        params=params,
        nonzero_params=nonzero,
        size_bytes=size_bytes if size_bytes is not None else serialized_size_bytes(model),
        peak_mem_bytes=peak_memory_bytes(model, example_batch),
        throughput_sps=statistics.median(runs_sps),
        throughput_runs_sps=[round(r, 1) for r in runs_sps],
        batch_latency_p50_ms=percentile(batch_times, 50) * 1e3,
        batch_latency_p95_ms=percentile(batch_times, 95) * 1e3,
        latency_p50_ms=percentile(single_times, 50) * 1e3,
        latency_p95_ms=percentile(single_times, 95) * 1e3,
        serving_batch_size=n,
        flops_per_sample=flops_per_sample(inspectable(model), take(example_batch, slice(0, 8))),
        device=device_info(device),
        throughput_ratio_to_reference=statistics.median(ratio_rounds) if ratio_rounds else None,
        throughput_ratio_rounds=[round(r, 4) for r in ratio_rounds],
    )


def _interleaved_batch_times(
    model: nn.Module, reference: nn.Module, batch: Inputs, batch_repeats: int, rounds: int
) -> tuple[list[float], list[float]]:
    """The model's batch times over `rounds` rounds alternating with the reference's, and each round's ratio."""
    per_round = max(1, -(-batch_repeats // rounds))
    time_batches(reference, batch, repeats=1, warmup=3)
    time_batches(model, batch, repeats=1, warmup=3)
    times: list[float] = []
    ratios: list[float] = []
    for _ in range(rounds):
        own = time_batches(model, batch, per_round, warmup=0)
        ref = time_batches(reference, batch, per_round, warmup=0)
        times.extend(own)
        ratios.append(statistics.median(ref) / statistics.median(own))
    return times, ratios


def interleaved_throughput(models: dict[str, nn.Module], batch: Inputs, rounds: int = 7, repeats: int = 10) -> dict[str, list[float]]:
    """Throughput (samples/s, median of `repeats`) of each model, measured round-robin over `rounds`.

    Interleaving exposes every model to the same background noise, so per-round
    ratios against a baseline are far steadier than separate measurements.
    """
    results: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        time_batches(model, batch, repeats=1, warmup=3)
    for _ in range(rounds):
        for name, model in models.items():
            times = time_batches(model, batch, repeats, warmup=1)
            results[name].append(batch_size(batch) / statistics.median(times))
    return results


def default_threads() -> int:
    """Threads to measure with: $HEDGEROW_THREADS, else torch's current setting."""
    return int(os.environ.get("HEDGEROW_THREADS") or torch.get_num_threads())
