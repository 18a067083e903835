"""The measuring and pricing half of a trial for a task that generates tokens (a causal LM).

A decoder LLM is measured as it serves: time to first token and time per output token at each concurrency of the
traffic (measure/generation.py), interleaved with the teacher and scaled to this machine's teacher reference, and
priced per instance by the token cost model (cost/tokens.py): the concurrency that meets both SLOs and fits
memory, its output tokens/s, replicas, $/month and $ per million output tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from orchestrator.cost.candidate import TokenCandidateMetrics, TokenPoint, rounds_spread
from orchestrator.cost.catalog import Catalog
from orchestrator.cost.model import CostResult
from orchestrator.cost.tokens import price_tokens
from orchestrator.cost.traffic import Traffic
from orchestrator.measure.generation import GenerationMetrics, describe, measure_generation
from orchestrator.measure.generation_reference import generation_reference, normalise
from orchestrator.tasks.base import model_device

GENERATION_ROUNDS = 2  # ABBA rounds per concurrency; the teacher reference takes 3


@dataclass
class MeasuredTokens:
    """A candidate's generation figures (normalised to the teacher reference where there is one), and how."""

    metrics: GenerationMetrics
    raw: GenerationMetrics

    def describe(self) -> dict[str, Any]:
        """The method and the per-concurrency ratios to the teacher, for the trial record."""
        return {
            "method": describe(self.metrics),
            "ratio_to_teacher_output_tokens": {p.concurrency: p.output_tokens_ratio_to_reference for p in self.raw.points},
            "ratio_to_teacher_ttft": {p.concurrency: p.ttft_ratio_to_reference for p in self.raw.points},
            "raw_output_tokens_per_s": {p.concurrency: p.output_tokens_per_s for p in self.raw.points},
            "not_measured": self.metrics.not_measured,
            "measure_seconds": self.raw.measure_seconds,
        }


def measure_tokens(
    model: nn.Module,
    teacher: nn.Module,
    traffic: Traffic,
    threads: int,
    teacher_fingerprint: str | None = None,
    reference_root: Path | None = None,
    interleave: bool = True,
) -> MeasuredTokens:
    """Measure a candidate at the traffic's prompt/output lengths and concurrencies; with `interleave`, against the
    teacher round by round, scaled to this machine's kept teacher reference."""
    tokens = traffic.tokens
    assert tokens is not None, "a generating task's traffic has a tokens: section (checked before the search starts)"
    settings = dict(prompt_tokens=round(tokens.prompt_tokens), output_tokens=round(tokens.output_tokens))
    concurrencies = list(tokens.concurrency)
    slos = dict(ttft_slo_ms=tokens.ttft_slo_p95_ms, tpot_slo_ms=tokens.tpot_slo_p95_ms)
    if not interleave:
        raw = measure_generation(model, **settings, concurrencies=concurrencies, threads=threads, rounds=GENERATION_ROUNDS, **slos)
        return MeasuredTokens(raw, raw)
    teacher = teacher.to(model_device(model)).eval()
    reference = generation_reference(
        teacher, **settings, concurrencies=concurrencies, threads=threads, root=reference_root,
        teacher_fingerprint=teacher_fingerprint,
    )  # fmt: skip
    raw = measure_generation(
        model, **settings, concurrencies=concurrencies, threads=threads, reference=teacher, rounds=GENERATION_ROUNDS, **slos
    )
    return MeasuredTokens(normalise(raw, reference), raw)


def token_candidate(
    measured: MeasuredTokens, bits: int, measured_instance_type: str | None, cpu_archs: list[str] | None,
    runtime: str | None = None,
) -> TokenCandidateMetrics:  # fmt: skip
    """What the token cost model needs from a measured candidate, each point with the spread of its rounds."""
    m = measured.metrics
    rounds = {p.concurrency: p.output_tokens_ratio_rounds for p in measured.raw.points}
    points = [
        TokenPoint(
            concurrency=p.concurrency, ttft_p95_ms=p.ttft_p95_ms, tpot_p95_ms=p.tpot_p95_ms,
            output_tokens_per_s=p.output_tokens_per_s, peak_mem_bytes=p.peak_mem_bytes,
            throughput_spread=rounds_spread(rounds.get(p.concurrency) or []),
        )  # fmt: skip
        for p in m.points
    ]
    return TokenCandidateMetrics(
        points=points,
        weight_bytes=m.weight_bytes,
        kv_bytes_per_token=m.kv_bytes_per_token,
        device_kind=m.device.kind,
        device_name=m.device.name,
        cpu_threads=m.threads if m.device.kind == "cpu" else None,
        cpu_arch=m.device.arch,
        bits=bits,
        measured_instance_type=measured_instance_type,
        cpu_archs=cpu_archs,
        runtime=runtime,
    )


def price(measured: MeasuredTokens, bits: int, traffic: Traffic, catalog: Catalog, smt_yield: float,
          measured_instance_type: str | None, cpu_archs: list[str] | None, runtime: str | None = None) -> CostResult:  # fmt: skip
    """The candidate priced per instance by its tokens."""
    candidate = token_candidate(measured, bits, measured_instance_type, cpu_archs, runtime=runtime)
    return price_tokens(candidate, traffic, catalog, smt_yield=smt_yield)


def token_columns(measured: MeasuredTokens, cost: CostResult, output_tokens: int) -> dict[str, Any]:
    """trials.csv's measurement columns for an LLM: at the concurrency the cheapest instance serves (else 1).

    throughput_sps is requests/s of one measured worker at that concurrency (a request is what peak_rps counts);
    latency_p95_ms is a whole answer's: TTFT p95 + (output tokens − 1) × TPOT p95.
    """
    m = measured.metrics
    chosen = cost.concurrency or m.points[0].concurrency
    point = next((p for p in m.points if p.concurrency == chosen), m.points[0])
    first = m.points[0]
    answer_p95_ms = point.ttft_p95_ms + (output_tokens - 1) * point.tpot_p95_ms
    answer_p50_ms = point.ttft_p50_ms + (output_tokens - 1) * point.tpot_p50_ms
    ratio = next((p.output_tokens_ratio_to_reference for p in measured.raw.points if p.concurrency == first.concurrency), None)
    return {
        "params": m.params,
        "nonzero_params": m.params,
        "peak_mem_bytes": point.peak_mem_bytes,
        "throughput_sps": point.output_tokens_per_s / output_tokens,
        "raw_throughput_sps": next((p.output_tokens_per_s for p in measured.raw.points if p.concurrency == chosen), point.output_tokens_per_s) / output_tokens,
        "per_core_sps": point.output_tokens_per_s / output_tokens / m.threads if m.device.kind == "cpu" else None,
        "throughput_ratio_to_teacher": ratio,
        "batch_latency_p95_ms": answer_p95_ms,
        "latency_p50_ms": answer_p50_ms,
        "latency_p95_ms": answer_p95_ms,
        "flops_per_sample": None,
        "device": m.device.name,
        "device_kind": m.device.kind,
        "device_capability": m.device.capability,
        "threads": m.threads,
        "concurrency": chosen,
        "output_tokens_per_s": point.output_tokens_per_s,
        "decode_tokens_per_s_c1": first.output_tokens_per_s,
        "ttft_p95_ms": point.ttft_p95_ms,
        "tpot_p95_ms": point.tpot_p95_ms,
        "prefill_tokens_per_s": point.prefill_tokens_per_s,
        "weight_bytes": m.weight_bytes,
        "kv_bytes_per_token": m.kv_bytes_per_token,
        "usd_per_million_output_tokens": cost.usd_per_million_output_tokens,
    }
