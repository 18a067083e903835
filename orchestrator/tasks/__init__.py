"""Tasks: the model to compress, its data and its quality metric."""

from orchestrator.tasks.base import SPLITS, Quality, Split, Task, model_device, wilson_interval
from orchestrator.tasks.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, tensor_fingerprint
from orchestrator.tasks.digits import DigitsCNN, DigitsTask
from orchestrator.tasks.registry import BUILTIN_TASKS, load_task

__all__ = [
    "BUILTIN_TASKS", "SPLITS", "CheckpointError", "DigitsCNN", "DigitsTask", "Quality", "Split", "Task",
    "load_checkpoint", "load_task", "model_device", "save_checkpoint", "tensor_fingerprint", "wilson_interval",
]  # fmt: skip
