"""`hedgerow export RUN_DIR [--trial ID] --dest DIR|s3://bucket/prefix` and `hedgerow verify EXPORT`."""

from __future__ import annotations

import argparse
import sys


def _export(args: argparse.Namespace) -> int:
    from orchestrator.deploy import ExportError, export_trial
    from orchestrator.errors import InputError

    def progress(message: str) -> None:
        print(f"[hedgerow export] {message}", file=sys.stderr, flush=True)

    try:
        result = export_trial(
            args.run_dir,
            trial_id=args.trial,
            dest=args.dest,
            endpoint_url=args.endpoint_url,
            tolerance=args.tolerance,
            progress=progress,
            require_token=args.require_token,
        )
    except InputError:
        raise  # bad or hostile input (an unsafe run folder, say): exit 2
    except ExportError as exc:
        print(f"hedgerow export: error: {exc}", file=sys.stderr)
        return 1
    manifest = result.manifest
    q = manifest.quality
    progress(
        f"trial {manifest.trial_id}: val {q.metric} {q.rebuilt_value:.4f} (trial {q.trial_value:.4f}), "
        f"default runtime {manifest.default_runtime}, {len(manifest.files) + 1} files"
    )
    if result.published is not None:
        progress(f"{len(result.published.uploaded)} objects uploaded, {len(result.published.skipped)} already there")
    progress(f"peak resident memory {peak_rss_bytes() / 2**30:.2f} GiB")
    print(result.location)
    return 0


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (getrusage's ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _verify(args: argparse.Namespace) -> int:
    from orchestrator.deploy import verify

    manifest = verify(args.export, endpoint_url=args.endpoint_url)  # a file that differs or an unsafe manifest: exit 2
    total = sum(entry.size_bytes for entry in manifest.files)
    print(
        f"{args.export}: ok: {len(manifest.files)} files ({total:,} bytes) match their SHA-256 in manifest.json; "
        f"run {manifest.run_id}, trial {manifest.trial_id}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the export and verify verbs."""
    from orchestrator.deploy._defaults import DEFAULT_TOLERANCE

    export = sub.add_parser(
        "export",
        help="rebuild a trial's model, check it, and write weights, programs, a Serve config and a manifest",
        description=(
            "Rebuild a trial's candidate from its recipe, check its validation quality against the trial's, and "
            "write it to DIR/<run-id>/<trial-id>/ or s3://bucket/prefix/<run-id>/<trial-id>/. Prints the location."
        ),
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `hedgerow search`")
    export.add_argument("--trial", metavar="ID", help="trial id from trials.csv (default: the recommended trial)")
    export.add_argument("--dest", required=True, metavar="DIR|s3://bucket/prefix", help="where the export goes")
    export.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint (default: AWS S3)")
    export.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help=f"largest allowed difference of the rebuilt val quality from the trial's, in the metric's units (default "
        f"{DEFAULT_TOLERANCE}, i.e. 0.5 points; for log_perplexity, nats per token: min({DEFAULT_TOLERANCE}, the run's "
        "max_quality_drop / 10))",
    )
    export.add_argument(
        "--require-token",
        action="store_true",
        help="the Serve app answers only requests with `Authorization: Bearer $HEDGEROW_SERVE_TOKEN` (set on every "
        "serving node; serve_config.yaml names the variable, never the token)",
    )
    export.set_defaults(handler=_export)

    check = sub.add_parser(
        "verify",
        help="check an export (a folder or s3://...) against its manifest without loading the model",
        description=(
            "Check every file of an export against manifest.json: paths inside the export, no symlinks, sizes, then "
            "SHA-256. An S3 export is fetched into a temporary folder first. Exit 0 if intact; 2 if a file is "
            "missing or differs, or the manifest is malformed or unsafe; 1 if the store cannot be reached."
        ),
    )
    check.add_argument("export", metavar="EXPORT", help="an export folder, or s3://bucket/prefix/<run-id>/<trial-id>")
    check.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint (default: AWS S3)")
    check.set_defaults(handler=_verify)
