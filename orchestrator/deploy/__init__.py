"""Hand the chosen model to deployment: export (safetensors, torch.export, ONNX), manifest, S3, Ray Serve config.

`load(path_or_s3_uri)` loads an export back, verifying every file against its manifest.
Names are imported on first use, so `hedgerow --help` (which imports the CLI module) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ExportError": "orchestrator.deploy._errors",
    "FetchError": "orchestrator.deploy._errors",
    "PublishError": "orchestrator.deploy._errors",
    "QualityMismatch": "orchestrator.deploy._errors",
    "UnsafeExport": "orchestrator.deploy._errors",
    "VerificationError": "orchestrator.deploy._errors",
    "ExportResult": "orchestrator.deploy.export",
    "export_trial": "orchestrator.deploy.export",
    "LoadedModel": "orchestrator.deploy.loader",
    "load": "orchestrator.deploy.loader",
    "verify": "orchestrator.deploy.loader",
    "Manifest": "orchestrator.deploy.manifest",
    "PublishResult": "orchestrator.deploy.s3",
    "S3Location": "orchestrator.deploy.s3",
    "S3Settings": "orchestrator.deploy.s3",
    "publish": "orchestrator.deploy.s3",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'orchestrator.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
