"""Hand the chosen model to deployment: export (safetensors, torch.export, ONNX), manifest, S3, Ray Serve config.

`load(path_or_s3_uri)` loads an export back, verifying every file against its manifest.
"""

from orchestrator.deploy._errors import ExportError, PublishError, QualityMismatch, VerificationError
from orchestrator.deploy.export import ExportResult, export_trial
from orchestrator.deploy.loader import LoadedModel, load, verify
from orchestrator.deploy.manifest import Manifest
from orchestrator.deploy.s3 import PublishResult, S3Location, S3Settings, publish

__all__ = [
    "ExportError", "ExportResult", "LoadedModel", "Manifest", "PublishError", "PublishResult", "QualityMismatch",
    "S3Location", "S3Settings", "VerificationError", "export_trial", "load", "publish", "verify",
]  # fmt: skip
