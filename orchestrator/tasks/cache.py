"""Where trained teachers are cached: $HEDGEROW_CACHE_DIR, else ~/.cache/hedgerow."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root; created on first use."""
    root = Path(os.environ.get("HEDGEROW_CACHE_DIR") or Path.home() / ".cache" / "hedgerow")
    root.mkdir(parents=True, exist_ok=True)
    return root


def settings_key(settings: dict) -> str:
    """A short stable hash of a settings dict, used in cache file names."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
