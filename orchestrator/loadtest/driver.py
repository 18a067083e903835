"""One step of load: Locust, in a process of its own, keeps a Poisson schedule against a loopback URL; the raw outcome back.

Load goes to the loopback address only: a URL whose host is anything else is refused before Locust starts.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import InputError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PLAN_ENV = "HEDGEROW_LOADTEST_PLAN"  # the locustfile reads its plan from the file this names
MAX_IN_FLIGHT = 512  # requests waiting at once; an arrival beyond it is dropped (an error), as a full queue drops it
STARTUP_GRACE_S = 60.0  # Locust's own start and stop, on top of the schedule and the drain


@dataclass
class StepPlan:
    """What the locustfile does for one step: the schedule, the bodies it cycles through, its limits."""

    rate_rps: float
    duration_s: float
    seed: int
    bodies: list[Any]
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/"
    timeout_s: float = 10.0
    max_in_flight: int = MAX_IN_FLIGHT

    @property
    def drain_s(self) -> float:
        """How long answers are awaited after the last arrival: one request's timeout."""
        return self.timeout_s


@dataclass
class RawStep:
    """What Locust saw: the arrivals drawn, and per request [due_s, sent_s, response_time_ms, ok, kind(, answered_s)]."""

    arrivals: int
    records: list[list[Any]]


def check_loopback(url: str) -> str:
    """The URL, if its host is a loopback address (127.0.0.0/8, ::1); InputError otherwise: load goes nowhere else."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InputError(f"load target {url!r}: the load test sends load to 127.0.0.1 only (a loopback address), not to {host!r}")
    return url


def run_step(url: str, plan: StepPlan, workdir: Path) -> RawStep:
    """Run Locust headless for one step against `url` (loopback only); RuntimeError if Locust fails or writes nothing."""
    check_loopback(url)
    workdir.mkdir(parents=True, exist_ok=True)
    results = workdir / "results.json"
    results.unlink(missing_ok=True)
    plan_file = workdir / "plan.json"
    payload = {
        "rate_rps": plan.rate_rps, "duration_s": plan.duration_s, "seed": plan.seed, "bodies": plan.bodies,
        "headers": plan.headers, "path": plan.path, "timeout_s": plan.timeout_s, "drain_s": plan.drain_s,
        "max_in_flight": plan.max_in_flight, "results": str(results),
    }  # fmt: skip
    fd = os.open(plan_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold the endpoint's bearer token
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    cap_s = plan.duration_s + plan.drain_s + STARTUP_GRACE_S
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-r", "1", "--host", url.rstrip("/"),
        "-t", f"{int(cap_s)}s", "--only-summary", "--loglevel", "ERROR", "--exit-code-on-error", "0",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}  # the generator needs no way into Ray
    env[PLAN_ENV] = str(plan_file)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=cap_s + 30, cwd=workdir)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"Locust did not finish within {cap_s + 30:.0f} s") from exc
    finally:
        plan_file.unlink(missing_ok=True)
    if done.returncode != 0 or not results.is_file():
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
        raise RuntimeError(f"Locust exited with status {done.returncode} and no results: {' | '.join(tail) or 'no output'}")
    data = json.loads(results.read_text(encoding="utf-8"))
    return RawStep(arrivals=int(data["arrivals"]), records=data["records"])
