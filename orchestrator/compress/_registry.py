"""Moved to `orchestrator.techniques` (below both compress and runtimes); this name stays for scripts that still import it."""

from orchestrator.techniques.registry import Context, Handler, StepRecord, TechniqueConfig, apply_technique, register

__all__ = ["Context", "Handler", "StepRecord", "TechniqueConfig", "apply_technique", "register"]
