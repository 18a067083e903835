"""Traffic and SLO: the load a deployment must carry and the latency it must keep."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HOURS_PER_DAY = 24


class Traffic(BaseModel):
    """Peak requests/s (or a 24-hour profile), the p95 latency SLO and how replicas are sized.

    With `hourly_rps_profile` (24 values, hour 0..23, requests/s in that hour) the fleet
    autoscales hour by hour and `peak_rps` defaults to the profile's maximum. `mean_rps`
    is informational: replicas are always sized for the peak of each hour, never the mean.
    """

    model_config = ConfigDict(extra="forbid")

    peak_rps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    mean_rps: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    hourly_rps_profile: list[float] | None = None
    latency_slo_p95_ms: float = Field(gt=0, allow_inf_nan=False)
    serving_batch_size: int = Field(default=1, ge=1)
    target_utilization: float = Field(default=0.6, gt=0, le=1, allow_inf_nan=False)
    min_replicas: int = Field(default=1, ge=1)
    hours_per_month: float = Field(default=730, gt=0, le=31 * HOURS_PER_DAY, allow_inf_nan=False)

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
