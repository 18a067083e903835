"""Find a task by built-in name or by import path `pkg.module:factory`."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Any, Callable

from pydantic import ValidationError

from orchestrator.errors import InputError
from orchestrator.tasks.base import Task
from orchestrator.tasks.digits import DigitsTask
from orchestrator.tasks.llm.smollm2 import SmolLM2Task
from orchestrator.tasks.minilm import MiniLMTask

BUILTIN_TASKS: dict[str, Callable[..., Task]] = {"digits": DigitsTask, "minilm": MiniLMTask, "smollm2": SmolLM2Task}


def load_task(spec: str, kwargs: dict[str, Any] | None = None, field: str = "task.name") -> Task:
    """Build the task named by `spec` with keyword arguments; bad names are InputErrors naming `field`."""
    kwargs = dict(kwargs or {})
    if ":" not in spec:
        if spec not in BUILTIN_TASKS:
            close = difflib.get_close_matches(spec, BUILTIN_TASKS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"{field}: unknown task {spec!r}; expected a built-in task ({', '.join(BUILTIN_TASKS)}) "
                f"or an import path 'pkg.module:factory'.{hint}"
            )
        factory: Callable[..., Any] = BUILTIN_TASKS[spec]
    else:
        factory = _resolve(spec, field)
    try:
        task = factory(**kwargs)
    except InputError:
        raise
    except ValidationError as exc:
        args_field = field.rsplit(".", 1)[0] + ".args"
        problems = "; ".join(
            f"{args_field}.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise InputError(f"task {spec!r}: {problems}") from None
    except (TypeError, ValueError) as exc:
        args_field = field.rsplit(".", 1)[0] + ".args"
        raise InputError(f"{args_field}: task {spec!r} rejected its arguments {sorted(kwargs)}: {exc}") from exc
    if not isinstance(task, Task):
        raise InputError(
            f"{field}: {spec!r} returned {type(task).__name__}, expected an orchestrator.tasks.Task"
        )
    return task


def _import_from_here(module_name: str) -> Any:
    """Import a module, also from the working directory, as `python -m` would (the `hedgerow` script does not)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if here in sys.path or not (exc.name and module_name.startswith(exc.name)):
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def _resolve(spec: str, field: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"{field}: {spec!r} is not an import path; expected 'pkg.module:factory'")
    try:
        module = _import_from_here(module_name)
    except ImportError as exc:
        raise InputError(f"{field}: cannot import module {module_name!r} from {spec!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputError(f"{field}: module {module_name!r} has no callable {attr!r}.{hint}")
    return factory
