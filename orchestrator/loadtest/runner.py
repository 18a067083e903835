"""`hedgerow loadtest`: resolve the export, serve it as one replica, ramp the Poisson load, judge it, write loadtest.json.

The promise: the cost model sizes `replicas` so that each Serve replica carries peak requests/s ÷ the replicas at the
peak (serve_config.yaml's num_replicas, or autoscaling's max_replicas), at the traffic's p95 latency SLO. The test
drives one replica at that rate (or --rate) and says whether the SLO held, at which rate it breaks (with the ramp), and
the capacity factor: the requests/s it sustained, in samples/s, over the in-process throughput the cost model priced.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import InputError
from orchestrator.loadtest.bodies import request_bodies
from orchestrator.loadtest.driver import StepPlan, run_step
from orchestrator.loadtest.target import Target, resolve
from orchestrator.loadtest.verdict import MAX_ERROR_RATE, conclude, next_factor, summarise
from orchestrator.report.loadtest import LOADTEST_NAME, LoadTestRecord, StepResult

MAX_DURATION_S = 600.0
DEFAULT_DURATION_S = 10.0
_FLAGS = {"duration_s": "--duration", "rate_rps": "--rate", "slo_ms": "--slo-ms", "examples_per_request": "--examples-per-request"}


class LoadTestSettings(BaseModel):
    """How hard and how long to drive the replica; None where the export's own traffic decides."""

    model_config = ConfigDict(extra="forbid")

    duration_s: float = Field(DEFAULT_DURATION_S, gt=0, le=MAX_DURATION_S, description="seconds of arrivals per step")
    rate_rps: float | None = Field(None, gt=0, allow_inf_nan=False, description="requests/s instead of the promised rate")
    ramp: bool = Field(True, description="0.5x, 1x, 1.5x, 2x of the base rate, stopping at the first that breaks")
    slo_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="p95 SLO instead of the run's traffic's")
    examples_per_request: int = Field(1, ge=1, le=4096)
    seed: int = 0
    endpoint_url: str | None = None
    out: Path | None = Field(None, description="where loadtest.json goes (default: inside the export folder)")


def settings_of(**values: object) -> LoadTestSettings:
    """LoadTestSettings, with a bad value an InputError naming its command-line flag."""
    try:
        return LoadTestSettings(**values)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        raise InputError(f"{_FLAGS.get(name, name)}: {err['msg']} (got {err.get('input')!r})") from None


def promise(target: Target, settings: LoadTestSettings) -> tuple[float | None, float, str]:
    """(promised requests/s for one replica or None, the SLO in ms, how both were found); InputError where unknown."""
    traffic = target.run.config.traffic if target.run is not None else None
    k = settings.examples_per_request
    promised, reason = None, "the export's run folder was not found, so its traffic is unknown"
    if traffic is not None:
        replicas = target.replicas_at_peak
        promised = traffic.sizing_rps / replicas / k
        reason = (
            f"peak {traffic.sizing_rps:g} rps / {replicas} Serve replica(s) at the peak (serve_config.yaml)"
            + (f" / {k} examples per request" if k > 1 else "")
            + f" = {promised:.4g} requests/s per replica"
        )
    slo = settings.slo_ms or (traffic.latency_slo_p95_ms if traffic is not None else None)
    if slo is None:
        raise InputError(
            f"--slo-ms: {target.label}'s run folder (its traffic's latency_slo_p95_ms) was not found: pass the p95 SLO in ms"
        )
    if promised is None and settings.rate_rps is None:
        raise InputError(
            f"--rate: {target.label} is not inside its run folder (RUN_DIR/exports/<run-id>/<trial-id>), so the "
            "promised rate is unknown: pass --rate R (requests/s) and --slo-ms, or load-test the run folder"
        )
    return promised, slo, reason


def loadtest(
    source: str,
    trial_id: str | None = None,
    settings: LoadTestSettings | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[LoadTestRecord, Path]:
    """Load-test EXPORT (folder or s3://) or RUN_DIR's recommended (or `trial_id`) trial; (the record, where it was written)."""
    from orchestrator.loadtest.serving import served, settle, warm_up

    settings = settings or LoadTestSettings()
    target = resolve(source, trial_id, settings.endpoint_url, progress)
    promised, slo_ms, reason = promise(target, settings)
    base = settings.rate_rps or promised
    assert base is not None  # promise() refused the case with neither
    out = settings.out or (target.root / LOADTEST_NAME if not target.label.startswith("s3://") else
                           Path.cwd() / f"loadtest-{target.manifest.run_id}-{target.manifest.trial_id}.json")  # fmt: skip
    bodies = request_bodies(target.manifest, settings.examples_per_request)
    args = target.app["args"]
    if args.get("device") == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{source}: its Serve config serves on a GPU (device cuda), and this machine has none")
    threads = target.threads
    timeout_s = max(5.0, 5 * slo_ms / 1000)
    progress(f"serving trial {target.manifest.trial_id} ({args.get('runtime')}, {threads} thread(s), batch up to "
             f"{args.get('max_batch_size')}) as one Ray Serve replica on 127.0.0.1")  # fmt: skip
    steps: list[StepResult] = []
    with served(target.serve_config, str(target.root), threads) as (url, headers), tempfile.TemporaryDirectory(
        prefix="hedgerow-loadtest-"
    ) as work:
        info = warm_up(url, headers, bodies)
        if info.get("trial_id") != target.manifest.trial_id:
            raise RuntimeError(f"the served replica says trial {info.get('trial_id')!r}, not {target.manifest.trial_id!r}")
        done: list[tuple[float, bool]] = []
        while (factor := next_factor(done, settings.ramp)) is not None:
            rate = base * factor
            if done and not settle(url, headers, bodies[0], within_ms=slo_ms / 2):
                progress("the replica still answered slowly 60 s after the last step: its backlog may weigh on the next one")
            plan = StepPlan(rate_rps=rate, duration_s=settings.duration_s, seed=settings.seed + len(done), bodies=bodies,
                            headers=headers, timeout_s=timeout_s)  # fmt: skip
            raw = run_step(url, plan, Path(work) / f"step{len(done)}")
            step = summarise(raw.records, raw.arrivals, target_rps=rate, factor=factor, duration_s=settings.duration_s,
                             examples_per_request=settings.examples_per_request, slo_p95_ms=slo_ms)  # fmt: skip
            progress(step_line(step))
            steps.append(step)
            done.append((factor, step.verdict == "held"))
    record = LoadTestRecord(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        run_id=target.manifest.run_id, trial_id=target.manifest.trial_id, export=target.label,
        runtime=str(args.get("runtime")), device=str(args.get("device", "cpu")), threads=threads,
        max_batch_size=int(args.get("max_batch_size") or 1), batch_wait_timeout_s=float(args.get("batch_wait_timeout_s") or 0),
        max_ongoing_requests=target.deployment.get("max_ongoing_requests"), examples_per_request=settings.examples_per_request,
        promised_rps=promised, promised_reason=reason, base_rps=base, slo_p95_ms=slo_ms, max_error_rate=MAX_ERROR_RATE,
        in_process_sps=target.in_process_sps, steps=steps,
        **conclude(steps, target.in_process_sps, settings.examples_per_request),
        machine={"cpus": os.cpu_count(), "load_generator": "locust, one process on the same machine"},
        notes=_notes(target, settings),
    )  # fmt: skip
    record.write(out)
    return record, out


def _notes(target: Target, settings: LoadTestSettings) -> list[str]:
    notes = [
        "the load generator, Ray's HTTP proxy and the replica share this machine's CPUs: a rate that breaks here may "
        "hold where the proxy runs on other cores, and the other way round for a busier machine"
    ]
    if settings.rate_rps is not None:
        notes.append(f"driven at --rate {settings.rate_rps:g} requests/s, not the promised rate")
    if settings.slo_ms is not None:
        notes.append(f"judged against --slo-ms {settings.slo_ms:g}, not the run's SLO")
    if target.manifest.deployment.instance_type is None:
        notes.append("no instance type was feasible for this candidate: its Serve config (and so the promise) is one replica")
    return notes


def step_line(step: StepResult) -> str:
    """One step as a line of the summary."""
    ms = "/".join("-" if v is None else f"{v:.1f}" for v in (step.latency_p50_ms, step.latency_p95_ms, step.latency_p99_ms))
    factor = f"{step.factor:g}x " if step.factor is not None else ""
    return (
        f"{factor}{step.target_rps:.4g} req/s: achieved {step.achieved_rps:.4g} req/s ({step.achieved_sps:.4g} samples/s), "
        f"p50/p95/p99 {ms} ms, {step.errors} error(s) of {step.arrivals}: {step.verdict.upper()} ({step.reason})"
    )


def summary_lines(record: LoadTestRecord) -> list[str]:
    """The human summary `hedgerow loadtest` prints."""
    lines = [
        f"trial {record.trial_id} of run {record.run_id}: {record.runtime}, {record.threads} thread(s), serving batch up to "
        f"{record.max_batch_size}, one replica",
        f"promised: {record.promised_reason}" + ("" if record.promised_rps is not None else f"; driven at {record.base_rps:g} req/s"),
        f"SLO: p95 <= {record.slo_p95_ms:g} ms with at most {record.max_error_rate:.0%} errors",
        *(f"  {step_line(s)}" for s in record.steps),
    ]
    verdict = {"held": "HELD at the base rate", "broke": "BROKE", "inconclusive": "INCONCLUSIVE"}[record.verdict]
    if record.breaking_rps is not None:
        verdict += f": p95 or errors break at {record.breaking_rps:.4g} req/s"
    lines.append(f"verdict: {verdict}")
    if record.capacity_factor is not None:
        bound = {"measured": "", "lower_bound": " (at least: the highest rate tried held)",
                 "upper_bound": " (at most: no rate tried held)"}[record.capacity_factor_bound or "measured"]  # fmt: skip
        sustained = f"sustained {record.sustained_sps:.4g} samples/s" if record.sustained_sps is not None else "nothing sustained"
        lines.append(
            f"capacity factor {record.capacity_factor:.3g}{bound}: {sustained} against {record.in_process_sps:.4g} "
            "samples/s in process"
        )
    return lines
