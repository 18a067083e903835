"""loadtest.json, written by `hedgerow loadtest` beside an export, and the report's "Held under load" rows read from it.

The schema lives here, below the loadtest package that writes it, so the report reads what the load test wrote
without importing it (report sits under loadtest in the layers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.config import format_validation_error
from orchestrator.errors import UnsafeFile
from orchestrator.report import _format as f
from orchestrator.report.tables import Table
from orchestrator.safe_files import read_json, write_atomic

LOADTEST_NAME = "loadtest.json"
LOADTEST_VERSION = 1
EXPORTS_DIR = "exports"  # RUN_DIR/exports/<run-id>/<trial-id>/: where `hedgerow loadtest RUN_DIR` exports

StepVerdict = Literal["held", "broke", "generator_limited"]
Verdict = Literal["held", "broke", "inconclusive"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepResult(_Model):
    """One rate of the load test: what was offered, what came back, and whether the SLO held at it."""

    factor: float | None = Field(description="target_rps / the base rate (the promised rate, or --rate)")
    target_rps: float = Field(gt=0, description="the Poisson arrival rate asked for, requests/s")
    duration_s: float = Field(gt=0, description="how long arrivals were scheduled for")
    arrivals: int = Field(ge=0, description="requests the Poisson schedule drew in duration_s")
    sent: int = Field(ge=0, description="requests sent (arrivals less those dropped at the in-flight cap)")
    ok: int = Field(ge=0, description="2xx answers that held outputs")
    errors: int = Field(ge=0, description="everything else: 4xx/5xx, timeouts, refused connections, dropped, unanswered")
    error_kinds: dict[str, int] = Field(default_factory=dict, description="errors by kind: 'HTTP 503', 'timeout', ...")
    error_rate: float = Field(ge=0, le=1, description="errors / arrivals")
    offered_rps: float = Field(
        ge=0, description="requests the generator sent or dropped at the in-flight cap / the time it took (at least duration_s)"
    )
    achieved_rps: float = Field(ge=0, description="ok answers / the time from the first arrival to the last answer")
    achieved_sps: float = Field(ge=0, description="achieved_rps × examples per request")
    latency_p50_ms: float | None = Field(None, description="of the ok answers, as Locust timed them (send to answer)")
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    generator_lag_p95_ms: float = Field(ge=0, description="how late the generator sent requests against its schedule")
    verdict: StepVerdict
    reason: str


class LoadTestRecord(_Model):
    """loadtest.json: one export served with one replica under open-loop Poisson load, against the cost model's promise."""

    version: Literal[1] = LOADTEST_VERSION
    created: str
    run_id: str
    trial_id: str
    export: str = Field(description="the export folder or s3:// URI that was served")
    runtime: str
    device: str
    threads: int = Field(ge=1, description="torch threads of the one replica: what the trial was measured with")
    max_batch_size: int = Field(ge=1, description="Serve's @serve.batch size: the serving batch the cost model priced")
    batch_wait_timeout_s: float = Field(ge=0)
    max_ongoing_requests: int | None = None
    examples_per_request: int = Field(ge=1)
    promised_rps: float | None = Field(
        None, description="requests/s the cost model assigns one Serve replica: peak rps / replicas at the peak / examples "
        "per request (None where the export's traffic is unknown and --rate was given)",
    )  # fmt: skip
    promised_reason: str = Field(description="the arithmetic behind promised_rps, or why there is none")
    base_rps: float = Field(gt=0, description="the rate the ramp multiplies: promised_rps, or --rate")
    slo_p95_ms: float = Field(gt=0, description="the traffic's latency_slo_p95_ms, compared with each step's p95")
    max_error_rate: float = Field(ge=0, le=1, description="a step with more errors than this did not hold")
    in_process_sps: float | None = Field(None, description="the trial's measured throughput (samples/s), as priced")
    steps: list[StepResult]
    verdict: Verdict = Field(description="held: p95 within the SLO and errors within the bound at the base rate")
    breaking_rps: float | None = Field(None, description="the lowest rate tried at which the SLO broke")
    sustained_rps: float | None = Field(None, description="achieved requests/s at the highest rate that held")
    sustained_sps: float | None = None
    capacity_factor: float | None = Field(
        None, description="sustained_sps / in_process_sps: what share of the in-process throughput one served replica keeps"
    )
    capacity_factor_bound: Literal["measured", "lower_bound", "upper_bound"] | None = Field(
        None, description="lower_bound: the highest rate tried held (more may); upper_bound: no rate held"
    )
    machine: dict[str, Any] = Field(default_factory=dict, description="where it ran: CPUs, load generator")
    notes: list[str] = []

    def write(self, path: Path) -> None:
        """Write through a temporary file and a rename."""
        write_atomic(path, self.model_dump_json(indent=2) + "\n")


def read_loadtest(path: Path) -> LoadTestRecord:
    """A loadtest.json; UnsafeFile (exit 2) naming the file and field where it is not one."""
    raw = read_json(path)
    if raw.get("version") != LOADTEST_VERSION:
        raise UnsafeFile(f"{path}: loadtest.json version {raw.get('version')!r}; this Hedgerow reads version {LOADTEST_VERSION}")
    try:
        return LoadTestRecord.model_validate(raw)
    except ValidationError as exc:
        raise UnsafeFile(format_validation_error(exc, str(path))) from None


def find_loadtests(run_dir: str | Path) -> list[Path]:
    """The loadtest.json of each export under RUN_DIR/exports/<run-id>/<trial-id>/, sorted by path."""
    exports = Path(run_dir) / EXPORTS_DIR
    if not exports.is_dir() or exports.is_symlink():
        return []
    return sorted(p for p in exports.glob(f"*/*/{LOADTEST_NAME}") if p.is_file() and not p.is_symlink())


def held_under_load_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The "Held under load" section's rows: one per load-tested export under RUN_DIR/exports/, sorted by path.

    Each row: trial_id, runtime, threads, promised_rps, base_rps, sustained_rps; latency_p50_ms/p95_ms/p99_ms, errors
    and error_rate of the step at `at_rps` (the base rate, the promised one or --rate; where the ramp went below it
    because half of it already broke, its first step); slo_p95_ms, verdict, breaking_rps, capacity_factor and
    capacity_factor_bound, and `file`. A damaged or foreign loadtest.json gives a row with only trial_id, file and
    `problem` (why it was not read); `problem` is None otherwise.
    """
    rows = []
    for path in find_loadtests(run_dir):
        try:
            record = read_loadtest(path)
        except UnsafeFile as exc:
            rows.append({"trial_id": path.parent.name, "file": str(path), "problem": str(exc)})
            continue
        base = next((s for s in record.steps if s.factor == 1.0), record.steps[0] if record.steps else None)
        rows.append({
            "trial_id": record.trial_id, "runtime": record.runtime, "threads": record.threads,
            "promised_rps": record.promised_rps, "base_rps": record.base_rps, "sustained_rps": record.sustained_rps,
            "at_rps": base.target_rps if base else None, "latency_p50_ms": base.latency_p50_ms if base else None, "latency_p95_ms": base.latency_p95_ms if base else None,
            "latency_p99_ms": base.latency_p99_ms if base else None, "errors": base.errors if base else None,
            "error_rate": base.error_rate if base else None, "slo_p95_ms": record.slo_p95_ms, "verdict": record.verdict,
            "breaking_rps": record.breaking_rps, "capacity_factor": record.capacity_factor,
            "capacity_factor_bound": record.capacity_factor_bound, "file": str(path), "problem": None,
        })  # fmt: skip
    return rows


HELD_UNDER_LOAD_NOTE = (
    "One Ray Serve replica of the export on this machine's loopback, driven by open-loop Poisson arrivals (Locust) at "
    "the rate the cost model promised one replica (peak requests/s ÷ Serve replicas), then a ramp (0.5×, 1×, 1.5×, 2×) "
    "to the first rate whose p95 breaks the SLO or whose errors pass 1%. Capacity factor = samples/s sustained within "
    "the SLO ÷ the in-process samples/s the trial was priced at: below 1, the server holds less than the cost model "
    "assumed. From RUN_DIR/exports/<run-id>/<trial-id>/loadtest.json."
)
NOT_LOAD_TESTED = (
    "No export of this run was load-tested: `hedgerow loadtest RUN_DIR` serves the recommended trial as one replica "
    "and checks the promised rate against its p95 SLO."
)


def held_under_load_table(run_dir: str | Path) -> Table | None:
    """The "Held under load" table (report.tables.Table), or None where no export of the run was load-tested."""
    rows = held_under_load_rows(run_dir)
    if not rows:
        return None
    columns = ["trial", "runtime", "promised req/s", "at req/s", "p50 / p95 / p99 ms", "SLO p95 ms", "errors",
               "verdict", "breaks at req/s", "sustained req/s", "capacity factor"]  # fmt: skip
    cells = []
    for row in rows:
        if row.get("problem"):
            cells.append([str(row["trial_id"]), "", "", "", "", "", "", f"unreadable: {row['problem']}", "", "", ""])
            continue
        factor = f.number(row["capacity_factor"], 3) if f.finite(row["capacity_factor"]) else "–"
        bound = row.get("capacity_factor_bound")
        cells.append([
            str(row["trial_id"]), f.runtime(row["runtime"]) if row.get("runtime") else "", f.number(row["promised_rps"], 4),
            f.number(row["at_rps"], 4),
            " / ".join(f.ms(row[k]) for k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")),
            f.ms(row["slo_p95_ms"]), f"{f.integer(row['errors'])} ({f.percent(row['error_rate'])})", str(row["verdict"]),
            f.number(row["breaking_rps"], 4) if f.finite(row["breaking_rps"]) else "not reached",
            f.number(row["sustained_rps"], 4) if f.finite(row["sustained_rps"]) else "–",
            factor + (f" ({bound.replace('_', ' ')})" if bound and bound != "measured" else ""),
        ])  # fmt: skip
    return Table(columns, cells)
