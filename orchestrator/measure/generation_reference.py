"""The teacher's generation figures on this machine, measured once and kept: what trials' token ratios scale.

As `reference` does for samples/s: a trial measures its candidate interleaved with the teacher and keeps,
per concurrency, the median per-round ratio (output tokens/s, TTFT); the figures it is priced by are this
machine's teacher reference times those ratios, so every trial, resumed search and later run on the host
prices against the same teacher figures rather than one process's drift. One file per host, device,
thread count, prompt and output length, concurrency list, decode steps, teacher, torch and transformers
build. Delete the file (its path is in every normalised record) to measure again.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import torch
from pydantic import BaseModel
from torch import nn

from orchestrator.errors import InputError
from orchestrator.measure.generation import ConcurrencyPoint, GenerationMetrics, measure_generation
from orchestrator.measure.metrics import device_info
from orchestrator.measure.reference import kept_once
from orchestrator.tasks.base import model_device
from orchestrator.tasks.cache import cache_dir, settings_key
from orchestrator.tasks.checkpoint import tensor_fingerprint

GENERATION_REFERENCE_VERSION = 1


class ReferenceGeneration(BaseModel):
    """The teacher's generation metrics on one machine (every concurrency, no SLO cut), with what keyed them."""

    version: int = GENERATION_REFERENCE_VERSION
    metrics: GenerationMetrics
    host: str
    teacher_fingerprint: str
    torch_version: str
    transformers_version: str
    measured_at: str
    path: str


def generation_reference_path(
    teacher: nn.Module,
    prompt_tokens: int,
    output_tokens: int,
    concurrencies: list[int],
    threads: int,
    decode_steps: int = 16,
    root: Path | None = None,
    teacher_fingerprint: str | None = None,
) -> tuple[Path, dict]:
    """Where this machine's generation reference for these settings lives, and the identity it is keyed by."""
    import transformers

    identity = {
        "host": socket.gethostname(),
        "device": device_info(model_device(teacher)).model_dump(exclude={"threads"}),
        "threads": threads,
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "concurrencies": sorted(set(concurrencies)),
        "decode_steps": decode_steps,
        "teacher_fingerprint": teacher_fingerprint or tensor_fingerprint(teacher),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    return (root or cache_dir() / "reference") / f"teacher-generation-{settings_key(identity)}.json", identity


def generation_reference(
    teacher: nn.Module,
    prompt_tokens: int,
    output_tokens: int,
    concurrencies: list[int],
    threads: int,
    *,
    rounds: int = 3,
    decode_steps: int = 16,
    root: Path | None = None,
    teacher_fingerprint: str | None = None,
) -> ReferenceGeneration:
    """The kept reference for this machine, measuring it first (under a file lock, once per machine) if there is none."""
    path, identity = generation_reference_path(
        teacher, prompt_tokens, output_tokens, concurrencies, threads, decode_steps, root, teacher_fingerprint
    )
    def measure() -> ReferenceGeneration:
        metrics = measure_generation(
            teacher, prompt_tokens, output_tokens, concurrencies, threads, rounds=rounds, decode_steps=decode_steps
        )
        return ReferenceGeneration(
            metrics=metrics,
            host=identity["host"],
            teacher_fingerprint=identity["teacher_fingerprint"],
            torch_version=identity["torch_version"],
            transformers_version=identity["transformers_version"],
            measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            path=str(path),
        )

    return kept_once(path, ReferenceGeneration, GENERATION_REFERENCE_VERSION, measure)


def normalise(metrics: GenerationMetrics, reference: ReferenceGeneration) -> GenerationMetrics:
    """The figures the cost model takes: each measured point's timings as the reference's × its ratio to the teacher.

    TTFT (and prefill tokens/s) scale by the TTFT ratio, TPOT and output tokens/s by the output-tokens ratio;
    request seconds follow from them; memory, which is counted rather than timed, stays as measured.
    """
    ref = reference.metrics
    for name in ("prompt_tokens", "output_tokens", "threads"):
        if getattr(metrics, name) != getattr(ref, name):
            raise InputError(
                f"normalise: metrics.{name} is {getattr(metrics, name)} but the reference {reference.path} was measured"
                f" at {getattr(ref, name)}; measure both with the same settings"
            )
    points = []
    for point in metrics.points:
        teacher = ref.point(point.concurrency)
        if teacher is None or point.output_tokens_ratio_to_reference is None or point.ttft_ratio_to_reference is None:
            raise InputError(
                f"normalise: concurrency {point.concurrency} needs the teacher's ratio in metrics (measure with"
                f" reference=teacher) and a point in the reference {reference.path} (it has"
                f" {[p.concurrency for p in ref.points]})"
            )
        points.append(_scaled(point, teacher, metrics.output_tokens))
    return metrics.model_copy(update={"points": points, "normalised_to": reference.path})


def _scaled(point: ConcurrencyPoint, teacher: ConcurrencyPoint, output_tokens: int) -> ConcurrencyPoint:
    speed, ttft = point.output_tokens_ratio_to_reference, point.ttft_ratio_to_reference
    ttft_mean_ms = teacher.ttft_mean_ms * ttft
    tpot_mean_ms = teacher.tpot_mean_ms / speed
    return point.model_copy(
        update={
            "ttft_p50_ms": teacher.ttft_p50_ms * ttft,
            "ttft_p95_ms": teacher.ttft_p95_ms * ttft,
            "ttft_mean_ms": ttft_mean_ms,
            "tpot_p50_ms": teacher.tpot_p50_ms / speed,
            "tpot_p95_ms": teacher.tpot_p95_ms / speed,
            "tpot_mean_ms": tpot_mean_ms,
            "prefill_tokens_per_s": teacher.prefill_tokens_per_s / ttft,
            "output_tokens_per_s": teacher.output_tokens_per_s * speed,
            "request_seconds": (ttft_mean_ms + (output_tokens - 1) * tpot_mean_ms) / 1e3,
        }
    )
