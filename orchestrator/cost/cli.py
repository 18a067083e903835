"""`hedgerow prices show|refresh`: print the instance catalog, or rebuild it from the AWS APIs."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

STALE_AFTER_DAYS = 90


def _globs(text: str | None) -> list[str] | None:
    """Comma-separated names or globs as a list (None when not given)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _show(args: argparse.Namespace) -> int:
    """Print the catalog of one region and its as-of date."""
    import pandas as pd

    from orchestrator.cost.catalog import load_catalog

    catalog = load_catalog(
        args.catalog, region=args.region, instance_filter=_globs(args.instance_types), filter_field="--instance-types"
    )
    age_days = (date.today() - catalog.as_of).days
    print(
        f"catalog {catalog.path} · region {catalog.region} · as of {catalog.as_of.isoformat()} "
        f"({age_days} days old) · {len(catalog.instances)} instance types"
    )
    frame = catalog.to_frame().drop(columns=["region", "as_of"])
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(frame.fillna("").to_string(index=False))
    if age_days > STALE_AFTER_DAYS:
        print(
            f"note: prices are {age_days} days old; `hedgerow prices refresh --region {catalog.region} --out FILE` "
            "rebuilds them from the AWS Pricing API"
        )
    return 0


def _refresh(args: argparse.Namespace) -> int:
    """Rebuild the catalog for a region from the AWS Pricing and EC2 APIs; print the file written."""
    from orchestrator.cost.refresh import RefreshError, refresh_catalog

    out = args.out or Path(f"aws_instances_{args.region}.csv")
    try:
        path = refresh_catalog(
            args.region,
            out,
            instance_types=_globs(args.instance_types),
            notify=lambda message: print(message, file=sys.stderr),
        )
    except RefreshError as exc:
        print(f"hedgerow prices refresh: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `prices` verb with its `show` and `refresh` actions."""
    prices = sub.add_parser("prices", help="show the instance price catalog or refresh it from AWS")
    actions = prices.add_subparsers(dest="prices_action", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="print a catalog's instance types, prices and as-of date")
    show.add_argument("--catalog", type=Path, default=None, help="catalog CSV (default: the bundled snapshot)")
    show.add_argument("--region", default="us-east-1", help="AWS region code (default: us-east-1)")
    show.add_argument("--instance-types", default=None, help="comma-separated names or globs, e.g. 'c7i.*,g5.*'")
    show.set_defaults(handler=_show)

    refresh = actions.add_parser("refresh", help="rebuild a catalog from the AWS Pricing API and EC2")
    refresh.add_argument("--region", required=True, help="AWS region code, e.g. us-east-1")
    refresh.add_argument("--out", type=Path, default=None, help="CSV to write (default: ./aws_instances_REGION.csv)")
    refresh.add_argument(
        "--instance-types", default=None, help="comma-separated names (default: those of the bundled snapshot)"
    )
    refresh.set_defaults(handler=_refresh)
