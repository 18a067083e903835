"""What the cost model is given about one candidate: its measured figures on one device."""

from __future__ import annotations

from typing import Literal

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

    @field_validator("cpu_arch", mode="before")
    @classmethod
    def _normalise_arch(cls, value: object) -> object:
        return _ARCH_ALIASES.get(str(value).lower(), value)

    @model_validator(mode="after")
    def _cpu_needs_threads(self) -> "MeasuredOn":
        if self.device_kind == "cpu" and self.cpu_threads is None:
            raise ValueError("cpu_threads is required when device_kind is 'cpu' (the threads measured with)")
        return self


class CandidateMetrics(MeasuredOn):
    """What was measured for one candidate on one device (per GPU, or with cpu_threads threads)."""

    throughput_sps: float = Field(gt=0, allow_inf_nan=False)
    batch_latency_p95_ms: float = Field(gt=0, allow_inf_nan=False)
    latency_p50_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    latency_p95_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    peak_mem_bytes: int = Field(ge=0)
    size_bytes: int = Field(gt=0)
    flops_per_sample: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class TokenPoint(BaseModel):
    """One LLM candidate's generation figures with `concurrency` requests in flight on one worker."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(ge=1)
    ttft_p95_ms: float = Field(gt=0, allow_inf_nan=False, description="time to first token, p95")
    tpot_p95_ms: float = Field(gt=0, allow_inf_nan=False, description="time per output token after the first, p95")
    output_tokens_per_s: float = Field(gt=0, allow_inf_nan=False, description="all requests together, one worker")
    peak_mem_bytes: int = Field(ge=0, description="at this concurrency, with the traffic's prompt and answer lengths")


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
