"""Two library messages that say nothing to a Hedgerow user, dropped from the logs; every other warning stays.

- torchao, on import: "Failed to load …/torchao/_C_….so" for its CUDA-only kernel libraries, which a CPU build of
  torch cannot load and Hedgerow never calls;
- torch, when torchao registers its enums: "… is an Enum subclass and is now natively supported by torch.compile",
  a deprecation addressed to torchao's authors.
"""

from __future__ import annotations

import logging

_LOGGERS = ("torchao", "torch.utils._pytree")


class KnownNoise(logging.Filter):
    """Drops exactly the two messages above."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cuda_kernels = message.startswith("Failed to load ") and "torchao/_C" in message
        enum_deprecation = "is an Enum subclass and is now natively supported by torch.compile" in message
        return not (cuda_kernels or enum_deprecation)


def drop_known_noise() -> None:
    """Attach the filter to the two libraries' loggers (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, KnownNoise) for f in logger.filters):
            logger.addFilter(KnownNoise())
