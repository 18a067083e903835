"""What a run folder holds, typed: a trial's record (trials/<recipe-key>.json), the summary (summary.json) and the
search's config as read back (config.yaml), for the search that writes them and for export and the report that read
them.

Every reader goes through `read_record`, `read_summary` and `read_config`, which bring a folder of an earlier
format up to today's first (report/upgrade.py); everything past them sees the current shape only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer

from orchestrator.compress.recipe import CompressionRecord, Recipe
from orchestrator.config import SearchConfig, format_validation_error, load_config
from orchestrator.cost.model import CostResult
from orchestrator.errors import UnsafeFile
from orchestrator.report import upgrade
from orchestrator.safe_files import read_json, write_atomic

RECORD_VERSION = 1  # a record of another version is not reused by a resumed search (its recipe runs again)


class TrialRecord(BaseModel):
    """Everything one finished trial did and measured: what `hedgerow export` rebuilds and the report cites."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = RECORD_VERSION
    row: dict[str, Any] = Field(description="the trial's trials.csv row, as the trial reported it")
    recipe: Recipe
    compression: CompressionRecord
    metrics: dict[str, Any] = Field(description="measure.Metrics: size, peak memory, throughput, latency, device")
    throughput: dict[str, Any] = Field(default_factory=dict, description="how the priced throughput follows from the measurements")
    startup: dict[str, Any] = Field(default_factory=dict, description="cold start: seconds, how it was timed, the runtime")
    quality: dict[str, Any] = Field(description="tasks.Quality on val: metric, value, interval, items judged")
    diagnostics: dict[str, float] = Field(default_factory=dict, description="what the task reports beside its metric")
    cost: CostResult
    node_measurements: list[dict[str, Any]] = Field(default_factory=list, description="measured again on labelled nodes")

    @property
    def quality_value(self) -> float:
        """The trial's val quality (its metric's value)."""
        return float(self.quality["value"])

    def write(self, path: Path) -> None:
        """Write through a temporary file and a rename: readers never see half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, self.model_dump_json(indent=1))


class Candidate(BaseModel):
    """A trial as summary.json describes it: its knobs, quality (val and held-out test), footprint, serving and $."""

    model_config = ConfigDict(extra="ignore")

    trial_id: str
    knobs: dict[str, Any] = {}
    quality: float | None = None
    quality_drop: float | None = None
    test_quality: float | None = None
    size_bytes: int | None = None
    peak_mem_bytes: int | None = None
    throughput_sps: float | None = None
    latency_p95_ms: float | None = None
    instance_type: str | None = None
    instance_throughput_sps: float | None = None
    replicas: int | None = None
    monthly_usd: float | None = None
    monthly_usd_low: float | None = Field(None, description="$/month at the high end of the throughput's range")
    monthly_usd_high: float | None = Field(None, description="$/month at the low end of the throughput's range")
    replicas_low: int | None = None
    replicas_high: int | None = None
    projected: bool | None = None
    runtime: str = "eager"
    startup_seconds: float | None = None
    test: dict[str, Any] | None = Field(None, description="the baseline's held-out result (value, interval, items judged)")
    test_ci95: list[float | None] | None = None
    test_n: int | None = None
    val_ci95: list[float | None] | None = None
    val_drop_ci95: list[float | None] | None = None
    test_drop: float | None = None
    test_drop_ci95: list[float | None] | None = None
    savings_usd: float | None = None
    savings_ratio: float | None = None
    size_ratio: float | None = None
    throughput_ratio: float | None = None
    passed_over: list[dict[str, Any]] = []
    # An LLM priced by its tokens (orchestrator/cost/tokens.py): left out of summary.json for any other candidate.
    concurrency: int | None = Field(None, description="concurrent requests per worker the chosen instance is sized at")
    output_tokens_per_s: float | None = Field(None, description="one measured worker's output tokens/s at concurrency")
    ttft_p95_ms: float | None = None
    tpot_p95_ms: float | None = None
    weight_bytes: int | None = None
    usd_per_million_output_tokens: float | None = Field(None, description="on instance_type, at target_utilization")

    @model_serializer(mode="wrap")
    def _with_aliases(self, handler: Any) -> dict[str, Any]:
        """As written: the fields (an LLM's token fields only where set), and the deprecated aliases of the quality
        fields (the same values, whatever the metric), kept for one release (report/upgrade.ALIASES)."""
        data = {k: v for k, v in handler(self).items() if k not in TOKEN_FIELDS or v is not None}
        return {**data, **{old: data.get(new) for old, new in upgrade.ALIASES.items()}}


TOKEN_FIELDS = frozenset(
    {"concurrency", "output_tokens_per_s", "ttft_p95_ms", "tpot_p95_ms", "weight_bytes", "usd_per_million_output_tokens"}
)


class Summary(BaseModel):
    """summary.json: the baseline, the recommended candidate (held-out checked), the Pareto set, what the search cost."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    task: str
    label: str | None = Field(None, description="what was compressed, as a reader names it (the model's folder name)")
    quality_metric: str
    max_quality_drop: float
    n_trials: int
    n_finished: int = 0
    n_failed: int = 0
    n_stopped: int = 0
    baseline: Candidate | None = None
    recommended: Candidate | None = None
    recommendation_note: str | None = None
    keep_baseline: bool = False
    keep_baseline_reason: str | None = None
    replica_floor: dict[str, Any] | None = None
    cheapest_on_measured_arch: dict[str, Any] | None = Field(
        None, description="where the recommended price is projected across CPU architectures: its cheapest instance on "
        "the architecture it was measured on (report.summary.cheapest_on_measured_arch)",
    )
    within_noise: dict[str, Any] | None = Field(
        None, description="where a simpler candidate was preferred because the $ intervals overlap (report.summary)"
    )
    pareto: list[Candidate] = []
    search_cost: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    node_measurements: list[dict[str, Any]] = []

    def write(self, path: Path) -> None:
        """Write summary.json (indented, as people read it)."""
        write_atomic(path, json.dumps(self.model_dump(mode="json"), indent=2) + "\n")


def read_record(path: Path) -> TrialRecord | None:
    """A trial's record, brought up to today's shape; None where it is absent, damaged, linked, foreign or of another
    record version (a resumed search runs that recipe again)."""
    if not path.is_file():
        return None
    try:
        raw = read_json(path)  # a resumed run folder may come from elsewhere: no symlinks, capped, an object
    except (OSError, UnsafeFile):
        return None
    if raw.get("version") != RECORD_VERSION:
        return None
    try:
        return TrialRecord.model_validate(upgrade.record(raw))
    except ValidationError:
        return None


def read_summary(path: Path) -> Summary:
    """summary.json, brought up to today's shape; UnsafeFile (exit 2) where it is not a Hedgerow summary."""
    raw = read_json(path)
    if "run_id" not in raw:
        raise UnsafeFile(f"{path}: summary.json is not a Hedgerow results file (no run_id)")
    try:
        return Summary.model_validate(upgrade.summary(raw))
    except ValidationError as exc:
        raise UnsafeFile(format_validation_error(exc, str(path))) from None


def read_config(path: Path) -> SearchConfig:
    """A run folder's config.yaml as the search resolved it, brought up to today's knobs (InputError naming the
    field where it no longer validates); a run folder's files are never links."""
    return load_config(path, allow_symlink=False, upgrade=upgrade.config)
