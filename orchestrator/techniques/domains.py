"""A knob's domain in a search space: a fixed value, a set of choices, or a numeric range."""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Choices(_Strict):
    """Pick one of these values."""

    choices: list[Any] = Field(min_length=1)


class Range(_Strict):
    """A number between low and high (inclusive), optionally on a log scale or a step grid."""

    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


Domain = Union[Choices, Range, bool, int, float, str]  # what a search space gives a knob: choices, a range, or a value


def values_to_check(domain: Domain) -> list[Any]:
    """The values a domain can take that must each be valid: its choices, a range's two ends, or the fixed value."""
    if isinstance(domain, Choices):
        return domain.choices
    if isinstance(domain, Range):
        return [domain.low, domain.high]
    return [domain]


def candidate_values(domain: Domain | None) -> list[Any]:
    """The values a seed candidate may take from a domain: its choices, a range's low end, or the fixed value."""
    if domain is None:
        return []
    if isinstance(domain, Choices):
        return list(domain.choices)
    if isinstance(domain, Range):
        return [domain.low]
    return [domain]


def mildest_ratio(domain: Domain | None) -> float | None:
    """The smallest non-zero ratio a domain allows, or None."""
    ratios = [v for v in candidate_values(domain) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0]
    return min(ratios) if ratios else None
