"""`hedgerow search` and `hedgerow validate`."""

from __future__ import annotations

import argparse
import json
import sys


def _search(args: argparse.Namespace) -> int:
    from orchestrator.errors import InputError
    from orchestrator.search.runner import SearchFailed, resume_search, start_search

    if args.resume and args.config:
        raise InputError("give either CONFIG or --resume RUN_DIR, not both")
    if not args.resume and not args.config:
        raise InputError("CONFIG: expected a search config file (or --resume RUN_DIR)")
    try:
        if args.resume:
            run_dir = resume_search(args.resume, address=args.address)
        else:
            run_dir = start_search(args.config, trials=args.trials, address=args.address, out=args.out, seed=args.seed)
    except SearchFailed as exc:
        print(f"hedgerow search: {exc}", file=sys.stderr)
        return 1
    print(run_dir)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from orchestrator.config import json_schema
    from orchestrator.errors import InputError

    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    if not args.config:
        raise InputError("CONFIG: expected a search config file (or --schema)")
    from orchestrator.search.runner import validate

    prepared = validate(args.config)
    config = prepared.config
    print(
        f"{args.config}: ok: task {config.task.name}, {len(config.space)} knobs, "
        f"{config.search.trials} trials ({config.search.sampler}), "
        f"{len(prepared.catalog.instances)} instance types in {prepared.catalog.region} as of {prepared.catalog.as_of}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the search and validate verbs."""
    search = sub.add_parser("search", help="run a compression search and write a run folder")
    search.add_argument("config", nargs="?", metavar="CONFIG", help="search config (YAML)")
    search.add_argument("--trials", type=int, help="number of trials (overrides search.trials)")
    search.add_argument("--address", help="join a Ray cluster: auto or ray://host:10001 (default: start Ray here)")
    search.add_argument("--out", default="reports", help="folder for run folders (default: reports)")
    search.add_argument("--seed", type=int, help="sampler seed (overrides search.seed)")
    search.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted search")
    search.set_defaults(handler=_search)

    validate = sub.add_parser("validate", help="check a search config and exit")
    validate.add_argument("config", nargs="?", metavar="CONFIG")
    validate.add_argument("--schema", action="store_true", help="print the config's JSON Schema")
    validate.set_defaults(handler=_validate)
