"""Traffic and SLO: the load a deployment must carry and the latency it must keep.

Requests are what peak_rps, the hourly profile, target_utilization and min_replicas count,
for every task. An LLM's traffic adds a `tokens:` section (TokenTraffic): how long prompts
and answers are and the per-token SLOs (time to first token, time per output token).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HOURS_PER_DAY = 24
DEFAULT_CONCURRENCY = [1, 2, 4, 8, 16]
DEFAULT_MAX_NEW_TOKENS = 512


class TokenTraffic(BaseModel):
    """An LLM's requests in tokens: mean (and p95) prompt and answer lengths, per-token SLOs, what to measure.

    The means size the fleet (output tokens/s per instance / output_tokens = requests/s);
    the p95 lengths (the means where not given) bound the KV cache a request holds.
    """

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: float = Field(gt=0, allow_inf_nan=False, description="mean prompt length, tokens")
    output_tokens: float = Field(gt=0, allow_inf_nan=False, description="mean answer length, tokens")
    prompt_tokens_p95: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    output_tokens_p95: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    ttft_slo_p95_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="time to first token")
    tpot_slo_p95_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="time per output token")
    concurrency: list[int] = Field(
        default_factory=lambda: list(DEFAULT_CONCURRENCY),
        description="concurrent requests per worker to measure (each one's ttft, tpot and output tokens/s)",
    )
    max_new_tokens_limit: int = Field(
        default=DEFAULT_MAX_NEW_TOKENS, ge=1, description="the most tokens one answer may have (Serve, load test)"
    )

    @field_validator("concurrency")
    @classmethod
    def _concurrency_levels(cls, levels: list[int]) -> list[int]:
        if not levels:
            raise ValueError("expected at least one concurrency level to measure, e.g. [1, 2, 4, 8, 16]")
        if min(levels) < 1:
            raise ValueError(f"expected concurrency levels of at least 1, got {levels}")
        if len(set(levels)) != len(levels):
            raise ValueError(f"expected distinct concurrency levels, got {levels}")
        return sorted(levels)

    @model_validator(mode="after")
    def _answers_fit_the_limit(self) -> "TokenTraffic":
        limit = self.max_new_tokens_limit
        for name in ("output_tokens", "output_tokens_p95"):
            value = getattr(self, name)
            if value is not None and value > limit:
                raise ValueError(
                    f"{name} {value:g} is above max_new_tokens_limit {limit}: no answer can be longer "
                    "than the limit; raise max_new_tokens_limit or lower the length"
                )
        return self

    @property
    def prompt_tokens_bound(self) -> float:
        """The prompt length the KV cache is sized for: prompt_tokens_p95, else the mean."""
        return self.prompt_tokens_p95 if self.prompt_tokens_p95 is not None else self.prompt_tokens

    @property
    def output_tokens_bound(self) -> float:
        """The answer length the KV cache is sized for: output_tokens_p95, else the mean."""
        return self.output_tokens_p95 if self.output_tokens_p95 is not None else self.output_tokens


class Traffic(BaseModel):
    """Peak requests/s (or a 24-hour profile), the p95 latency SLO and how replicas are sized.

    `latency_slo_p95_ms` (of one batch at `serving_batch_size`) is required, except with a
    `tokens:` section (an LLM), where the SLOs are per token and a latency_slo_p95_ms, if
    given, bounds a whole request (orchestrator.cost.tokens).

    With `hourly_rps_profile` (24 values, hour 0..23, requests/s in that hour) the fleet
    autoscales hour by hour and `peak_rps` defaults to the profile's maximum. `mean_rps`
    is informational: replicas are always sized for the peak of each hour, never the mean.
    """

    model_config = ConfigDict(extra="forbid")

    peak_rps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    mean_rps: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    hourly_rps_profile: list[float] | None = None
    latency_slo_p95_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    serving_batch_size: int = Field(default=1, ge=1)
    target_utilization: float = Field(default=0.6, gt=0, le=1, allow_inf_nan=False)
    min_replicas: int = Field(default=1, ge=1)
    hours_per_month: float = Field(default=730, gt=0, le=31 * HOURS_PER_DAY, allow_inf_nan=False)
    tokens: TokenTraffic | None = Field(default=None, description="an LLM's prompt/answer lengths and token SLOs")

    @field_validator("hourly_rps_profile")
    @classmethod
    def _profile_is_a_day(cls, profile: list[float] | None) -> list[float] | None:
        if profile is None:
            return None
        if len(profile) != HOURS_PER_DAY:
            raise ValueError(f"expected exactly 24 values (one per hour of the day), got {len(profile)}")
        for hour, rps in enumerate(profile):
            if not math.isfinite(rps) or rps < 0:
                raise ValueError(f"hour {hour}: expected a finite, non-negative requests/s, got {rps!r}")
        if max(profile) == 0:
            raise ValueError("every hour is 0 requests/s: there is nothing to serve")
        return profile

    @model_validator(mode="after")
    def _slo_is_known(self) -> "Traffic":
        if self.latency_slo_p95_ms is None and self.tokens is None:
            raise ValueError(
                "latency_slo_p95_ms is required (the p95 latency of one batch, ms); "
                "only traffic with a tokens: section (an LLM) may leave it out"
            )
        return self

    @model_validator(mode="after")
    def _peak_is_known(self) -> "Traffic":
        profile = self.hourly_rps_profile
        if self.peak_rps is None and profile is None:
            raise ValueError(
                "give peak_rps or hourly_rps_profile: replicas are sized for the peak"
                + (", mean_rps alone cannot size them" if self.mean_rps is not None else "")
            )
        if profile is not None:
            if self.peak_rps is None:
                self.peak_rps = max(profile)
            elif self.peak_rps < max(profile):
                raise ValueError(
                    f"peak_rps {self.peak_rps:g} is below the profile's busiest hour "
                    f"({max(profile):g} rps): raise peak_rps or leave it out"
                )
        peak_rps = self.sizing_rps
        if self.mean_rps is not None and self.mean_rps > peak_rps:
            raise ValueError(f"mean_rps {self.mean_rps:g} is above peak_rps {peak_rps:g}")
        return self

    @property
    def days_per_month(self) -> float:
        """hours_per_month / 24 (730 h → 30.4167 days)."""
        return self.hours_per_month / HOURS_PER_DAY

    @property
    def sizing_rps(self) -> float:
        """The peak requests/s, after the profile has filled it in."""
        if self.peak_rps is None:  # only before validation has run
            raise ValueError("peak_rps is unknown: give peak_rps or hourly_rps_profile")
        return self.peak_rps
