"""Export errors. Bad user input stays `orchestrator.errors.InputError` (exit 2); these exit 1."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The export could not be completed (exit status 1); the message says why and what to do."""


class QualityMismatch(ExportError):
    """The rebuilt candidate's validation quality differs from the trial's by more than the tolerance."""


class VerificationError(ExportError):
    """A file of an export is missing, or its SHA-256 or size differs from the manifest's."""


class PublishError(ExportError):
    """Publishing to S3 failed part-way (server gone, verification failed); no manifest was written."""
