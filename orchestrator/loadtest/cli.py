"""`hedgerow loadtest EXPORT|s3://...|RUN_DIR [--trial ID] [--duration S] [--rate R] [--ramp/--no-ramp]`."""

from __future__ import annotations

import argparse
import sys


def _loadtest(args: argparse.Namespace) -> int:
    from orchestrator.loadtest.runner import loadtest, settings_of, summary_lines

    def progress(message: str) -> None:
        print(f"[hedgerow loadtest] {message}", file=sys.stderr, flush=True)

    settings = settings_of(
        duration_s=args.duration, rate_rps=args.rate, ramp=args.ramp, slo_ms=args.slo_ms,
        examples_per_request=args.examples_per_request, seed=args.seed, endpoint_url=args.endpoint_url, out=args.out,
    )  # fmt: skip
    record, path = loadtest(args.source, trial_id=args.trial, settings=settings, progress=progress)
    for line in summary_lines(record):
        print(line)
    print(path)
    return 0  # held or not, the test ran: the verdict is in loadtest.json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the loadtest verb."""
    from orchestrator.loadtest.runner import DEFAULT_DURATION_S, MAX_DURATION_S
    from orchestrator.loadtest.verdict import MAX_ERROR_RATE

    verb = sub.add_parser(
        "loadtest",
        help="serve an export as one Ray Serve replica on 127.0.0.1 and check it holds the cost model's promised rate",
        description=(
            "Serve an export (or a run folder's recommended trial, exported first into RUN_DIR/exports/) as one Ray Serve "
            "replica on 127.0.0.1, with the threads and serving batch its trial was priced at, and drive it with "
            "open-loop Poisson arrivals (Locust, in a process of its own) at the rate the cost model assigned one replica: "
            "peak requests/s / Serve replicas at the peak. With the ramp (default), 0.5x, 1x, 1.5x and 2x of that rate, "
            "stopping at the first that breaks (halving below 0.5x until one holds). A rate holds when the p95 latency "
            f"is within the traffic's SLO and at most {MAX_ERROR_RATE:.0%} of requests fail (any answer but a 200 with "
            "outputs). Writes loadtest.json (inside a local export; ./loadtest-<run>-<trial>.json for s3://) and prints "
            "its path last. Exit 0 whether or not the promise held; 2 for bad input; 1 if the test itself failed."
        ),
    )
    verb.add_argument("source", metavar="EXPORT|s3://...|RUN_DIR", help="an export folder or URI, or a run folder")
    verb.add_argument("--trial", metavar="ID", help="with RUN_DIR: the trial to test (default: the recommended one)")
    verb.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, metavar="S",
                      help=f"seconds of arrivals per rate (default {DEFAULT_DURATION_S:g}, at most {MAX_DURATION_S:g})")
    verb.add_argument("--rate", type=float, metavar="R", help="requests/s instead of the promised rate")
    verb.add_argument("--ramp", action=argparse.BooleanOptionalAction, default=True,
                      help="ramp 0.5x..2x of the rate and report where p95 breaks (default); --no-ramp: the rate only")
    verb.add_argument("--slo-ms", type=float, metavar="MS",
                      help="the p95 latency SLO (default: the run's traffic.latency_slo_p95_ms)")
    verb.add_argument("--examples-per-request", type=int, default=1, metavar="N",
                      help="examples in each request body (default 1: the cost model counts a request as one example); "
                      "the promised requests/s are divided by N")
    verb.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrival times")
    verb.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint for an s3:// export")
    verb.add_argument("--out", metavar="FILE", help="where to write loadtest.json")
    verb.set_defaults(handler=_loadtest)
