"""The `hedgerow` command line: one sub-command per verb, bad input exits 2."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

import orchestrator
from orchestrator.noise import drop_known_noise
from orchestrator.errors import InputError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every verb; each verb module adds its own arguments."""
    parser = argparse.ArgumentParser(
        prog="hedgerow",
        description=(
            "Search pruning, quantization and distillation jointly, measure every "
            "candidate on real hardware and price it as monthly inference spend."
        ),
    )
    parser.add_argument("--version", action="version", version=f"hedgerow {orchestrator.__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for register in _verbs():
        register(sub)
    return parser


def _verbs() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Verb registrars, imported lazily so `hedgerow --help` stays fast."""
    from orchestrator import _cli_verbs

    return _cli_verbs.REGISTRARS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 bad input, 1 anything else)."""
    drop_known_noise()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad arguments already
        return int(exc.code or 0)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except InputError as exc:
        print(f"hedgerow {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hedgerow {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # exit 1 with one line; the traceback only on request
        if os.environ.get("HEDGEROW_DEBUG"):
            traceback.print_exc()
        print(f"hedgerow {args.verb}: failed: {type(exc).__name__}: {exc} (set HEDGEROW_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
