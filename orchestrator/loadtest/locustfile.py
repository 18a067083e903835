"""Locust's side of `hedgerow loadtest`: one user that keeps an open-loop Poisson schedule.

Run by `orchestrator.loadtest.driver` as `locust -f <this file> --headless -u 1 ...` in a process of its own, so
gevent's monkey-patching never enters the process that runs Ray and torch. Locust users are closed loop (a user waits
for its answer before its next request), so the one user here sleeps until each arrival time of the schedule and sends
that request in a greenlet of its own: a slow answer never delays the next arrival. Its plan (rate, duration, seed,
bodies, the results file) is the JSON file named by HEDGEROW_LOADTEST_PLAN; each request's Locust timing and outcome
go to the results file, and the user stops Locust when the last answer is in (or `drain_s` after the last arrival).

An answer counts as ok only when it is a 200 whose JSON holds "outputs"; any other status, a timeout, a refused
connection, a request dropped because `max_in_flight` were already waiting, and one unanswered at the end are errors.
"""

from __future__ import annotations

import json
import os
import time

import gevent
import gevent.pool
from locust import FastHttpUser, constant, events, task

from orchestrator.loadtest.arrivals import poisson_arrivals
from orchestrator.loadtest.driver import PLAN_ENV

with open(os.environ[PLAN_ENV], encoding="utf-8") as _fh:
    PLAN = json.load(_fh)

_RECORDS: dict[int, list] = {}  # request index -> [due_s, sent_s, response_time_ms, ok, kind]


@events.request.add_listener
def _timed(response_time: float, exception: BaseException | None, context: dict, **_: object) -> None:
    """Locust's own timing of each request, from send to the whole answer read."""
    index = context.get("hedgerow_index")
    if index is not None and index in _RECORDS:
        _RECORDS[index][2] = float(response_time)


class OpenLoopArrivals(FastHttpUser):
    """Sends PLAN's bodies, in turn, at Poisson arrival times; records each one's outcome."""

    wait_time = constant(0)
    concurrency = int(PLAN["max_in_flight"])  # connections: one per request in flight, so none waits for a socket
    network_timeout = float(PLAN["timeout_s"])
    connection_timeout = float(PLAN["timeout_s"])

    @task
    def run_plan(self) -> None:
        arrivals = poisson_arrivals(PLAN["rate_rps"], PLAN["duration_s"], PLAN["seed"])
        payloads = [json.dumps(body, separators=(",", ":")) for body in PLAN["bodies"]]
        headers = {"Content-Type": "application/json", **PLAN.get("headers", {})}
        in_flight = gevent.pool.Group()
        start = time.perf_counter()
        for index, due_s in enumerate(arrivals):
            delay = start + due_s - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            sent_s = time.perf_counter() - start
            if len(in_flight) >= PLAN["max_in_flight"]:
                _RECORDS[index] = [due_s, sent_s, None, 0, "dropped"]
                continue
            _RECORDS[index] = [due_s, sent_s, None, 0, "unanswered"]
            in_flight.spawn(self._send, index, payloads[index % len(payloads)], headers, start)
        in_flight.join(timeout=PLAN["drain_s"])
        in_flight.kill(block=True, timeout=5)
        with open(PLAN["results"], "w", encoding="utf-8") as fh:
            json.dump({"arrivals": len(arrivals), "records": [_RECORDS[i] for i in sorted(_RECORDS)]}, fh)
        gevent.spawn(self.environment.runner.quit)
        gevent.sleep(3600)  # the quit above stops this user

    def _send(self, index: int, payload: str, headers: dict, start: float) -> None:
        with self.client.post(
            PLAN["path"], data=payload, headers=headers, catch_response=True, context={"hedgerow_index": index}
        ) as response:
            record = _RECORDS[index]
            if response.status_code == 200 and _has_outputs(response.content):
                response.success()
                record[3], record[4] = 1, ""
            else:
                kind = _kind(response)
                response.failure(kind)
                record[4] = kind
            record.append(time.perf_counter() - start)  # when the answer was in


def _has_outputs(content: bytes | None) -> bool:
    try:
        return isinstance(body := json.loads(content or b""), dict) and "outputs" in body
    except ValueError:
        return False


def _kind(response: object) -> str:
    status = getattr(response, "status_code", 0) or 0
    if status:
        return f"HTTP {status}" if status != 200 else "200 without outputs"
    error = getattr(response, "error", None)
    name = type(error).__name__ if error is not None else "no answer"
    return "timeout" if "timeout" in name.lower() or "Timeout" in str(error) else f"connection ({name})"
