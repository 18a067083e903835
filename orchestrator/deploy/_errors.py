"""Export errors. An export that is not what its manifest says is bad input (exit 2); the rest exit 1."""

from __future__ import annotations

from orchestrator.errors import InputError, UnsafeFile


class ExportError(RuntimeError):
    """The export could not be completed (exit status 1); the message says why and what to do."""


class QualityMismatch(ExportError):
    """The rebuilt candidate's validation quality differs from the trial's by more than the tolerance."""


class VerificationError(ExportError, InputError):
    """A file of an export is missing, or its SHA-256 or size differs from the manifest's (exit status 2)."""


class UnsafeExport(VerificationError, UnsafeFile):
    """A manifest or export file that is malformed or unsafe (a path outside the export, a symlink, too large).

    Refused before a byte is written; exit status 2, as for any bad input.
    """


class PublishError(ExportError):
    """Publishing to S3 failed part-way (server gone, verification failed); no manifest was written."""


class FetchError(ExportError):
    """An export could not be fetched from S3 (endpoint unreachable, access refused mid-way); exit status 1."""
