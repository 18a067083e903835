"""What the cost model is given about one candidate: its measured figures on one device."""

from __future__ import annotations

import statistics
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ARCH_ALIASES = {"aarch64": "arm64", "arm64": "arm64", "amd64": "x86_64", "x86_64": "x86_64", "x64": "x86_64"}


class MeasuredOn(BaseModel):
    """Where a candidate was measured and what its kernels need: the device (per GPU, or with cpu_threads threads),
    its bits, the catalog instance it ran on (if any) and the CPU architectures its kernels run on."""

    model_config = ConfigDict(extra="forbid")

    device_kind: Literal["cpu", "cuda"]
    device_name: str = Field(min_length=1)
    cpu_threads: int | None = Field(default=None, ge=1)
    cpu_arch: Literal["x86_64", "arm64"] = "x86_64"
    bits: Literal[32, 16, 8, 4] = 32
    measured_instance_type: str | None = None
    cpu_archs: list[Literal["x86_64", "arm64"]] | None = Field(
        default=None, description="CPU architectures the candidate's kernels run on (None: any)"
    )
    runtime: str | None = Field(default=None, description="the serving runtime (picks the cross-architecture factor row)")

    @field_validator("cpu_arch", mode="before")
    @classmethod
    def _normalise_arch(cls, value: object) -> object:
        return _ARCH_ALIASES.get(str(value).lower(), value)

    @model_validator(mode="after")
    def _cpu_needs_threads(self) -> "MeasuredOn":
        if self.device_kind == "cpu" and self.cpu_threads is None:
            raise ValueError("cpu_threads is required when device_kind is 'cpu' (the threads measured with)")
        return self


MIN_SPREAD_ROUNDS = 3  # below this, min and max of the rounds bound the median with under 75% confidence


def rounds_spread(ratio_rounds: Sequence[float]) -> tuple[float, float] | None:
    """(min, max) of the per-round throughput ratios to the teacher over their median; None under 3 usable rounds.

    Why min/max and not the interquartile range: with n independent rounds, the smallest and largest bound
    the median of the ratio's distribution with confidence 1 - 2 × 0.5^n, whatever its shape (93.75% for the
    default 5 rounds, 75% for 3); the IQR of five values is two of them, with no such statement. Interleaving
    cancels what the teacher and the candidate share (a busy neighbour), so what is left is the candidate's
    own run-to-run noise, which this is the honest width of at these few rounds. It is narrower than the spread
    between whole runs on different days (the reference itself moves), so it is a lower bound on that.
    """
    usable = [float(r) for r in ratio_rounds if r is not None and r > 0]
    if len(usable) < MIN_SPREAD_ROUNDS:
        return None
    middle = statistics.median(usable)
    return min(usable) / middle, max(usable) / middle


def _check_spread(spread: tuple[float, float] | None) -> tuple[float, float] | None:
    if spread is not None and not (0 < spread[0] <= 1 <= spread[1]):
        raise ValueError(f"expected (low, high) with 0 < low <= 1 <= high, relative to the median; got {spread}")
    return spread


class CandidateMetrics(MeasuredOn):
    """What was measured for one candidate on one device (per GPU, or with cpu_threads threads)."""

    throughput_sps: float = Field(gt=0, allow_inf_nan=False)
    batch_latency_p95_ms: float = Field(gt=0, allow_inf_nan=False)
    latency_p50_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    latency_p95_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    peak_mem_bytes: int = Field(ge=0)
    size_bytes: int = Field(gt=0)
    flops_per_sample: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    throughput_spread: tuple[float, float] | None = Field(
        default=None, description="(low, high) throughput relative to throughput_sps, from the rounds (rounds_spread)"
    )

    @field_validator("throughput_spread")
    @classmethod
    def _spread_brackets_one(cls, spread: tuple[float, float] | None) -> tuple[float, float] | None:
        return _check_spread(spread)


class TokenPoint(BaseModel):
    """One LLM candidate's generation figures with `concurrency` requests in flight on one worker."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(ge=1)
    ttft_p95_ms: float = Field(gt=0, allow_inf_nan=False, description="time to first token, p95")
    tpot_p95_ms: float = Field(gt=0, allow_inf_nan=False, description="time per output token after the first, p95")
    output_tokens_per_s: float = Field(gt=0, allow_inf_nan=False, description="all requests together, one worker")
    peak_mem_bytes: int = Field(ge=0, description="at this concurrency, with the traffic's prompt and answer lengths")
    throughput_spread: tuple[float, float] | None = Field(
        default=None, description="(low, high) output tokens/s relative to output_tokens_per_s, from the rounds"
    )

    @field_validator("throughput_spread")
    @classmethod
    def _spread_brackets_one(cls, spread: tuple[float, float] | None) -> tuple[float, float] | None:
        return _check_spread(spread)


class TokenCandidateMetrics(MeasuredOn):
    """What was measured for one LLM candidate on one worker (one GPU, or cpu_threads threads), per concurrency.

    The device fields are MeasuredOn's; weight_bytes and kv_bytes_per_token bound memory at the traffic's p95 context.
    """

    points: list[TokenPoint] = Field(min_length=1)
    weight_bytes: int = Field(gt=0)
    kv_bytes_per_token: int = Field(ge=0, description="K and V of every layer for one token of context")

    @field_validator("points")
    @classmethod
    def _one_point_per_concurrency(cls, points: list[TokenPoint]) -> list[TokenPoint]:
        levels = [p.concurrency for p in points]
        if len(set(levels)) != len(levels):
            raise ValueError(f"expected one point per concurrency level, got levels {levels}")
        return sorted(points, key=lambda p: p.concurrency)
