"""The registered serving runtimes, by name, with the older names each one still answers to, and the `runtime` knob."""

from __future__ import annotations

import difflib
from typing import Any, Iterator

from orchestrator.runtimes.base import Runtime
from orchestrator.techniques import HANDLERS, UNSET, Knob, Knobs, Technique, TechniqueConfig


class RuntimeRegistry:
    """Runtimes in the order reports list them; looked up by name or by an older alias."""

    def __init__(self, *runtimes: Runtime) -> None:
        self._by_name: dict[str, Runtime] = {}
        self._aliases: dict[str, str] = {}
        for runtime in runtimes:
            self.add(runtime)

    def add(self, runtime: Runtime) -> None:
        """Register one runtime and the handlers of its stages; a name, alias or config type already taken is refused."""
        for key in (runtime.name, *runtime.aliases):
            if key in self._by_name or key in self._aliases:
                raise ValueError(f"runtime name {key!r} is registered twice")
        taken = [config.__name__ for config in runtime.handlers if config in HANDLERS]
        if taken:
            raise ValueError(f"runtime {runtime.name!r}: {', '.join(taken)} already has a handler")
        for config, handler in runtime.handlers.items():
            HANDLERS.add(config, handler)
        self._by_name[runtime.name] = runtime
        self._aliases.update({alias: runtime.name for alias in runtime.aliases})

    @property
    def names(self) -> tuple[str, ...]:
        """The runtimes' names, in registration order."""
        return tuple(self._by_name)

    def __iter__(self) -> Iterator[Runtime]:
        return iter(self._by_name.values())

    def canonical(self, name: str) -> str:
        """The runtime's one name for a name or an older alias ('onnx' -> 'onnxruntime'); ValueError if none."""
        if name in self._by_name:
            return name
        if name in self._aliases:
            return self._aliases[name]
        near = difflib.get_close_matches(str(name), [*self._by_name, *self._aliases], n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown runtime {name!r}: expected one of {', '.join(self._by_name)}{hint}")

    def get(self, name: str) -> Runtime:
        """The runtime of a name or alias; ValueError naming the registered ones if none."""
        return self._by_name[self.canonical(name)]

    def weights(self) -> str:
        """The runtime whose program is the weights themselves (eager): what any device can load."""
        return next(r.name for r in self if r.loads_anywhere)

    def program_formats(self) -> tuple[str, ...]:
        """Every program format a registered runtime loads, each once (what a manifest may list)."""
        return tuple(dict.fromkeys(fmt for runtime in self for fmt in runtime.program_formats))

    def choice_bits(self) -> tuple[int, ...]:
        """Bit widths more than one runtime serves: where the runtime is a choice at all (widest first)."""
        counts = [b for r in self for b in r.bits]
        return tuple(sorted({b for b in counts if counts.count(b) > 1}, reverse=True))

    def serving(self, bits: int) -> list[str]:
        """Names of the runtimes that serve candidates of `bits`."""
        return [r.name for r in self if bits in r.bits]


def runtime_technique(registry: RuntimeRegistry) -> Technique:
    """The `runtime` knob: how a candidate is served, one of the registered runtimes (asked when checked, so a runtime
    registered later is a value too); a bit width only one runtime serves is served by it."""

    def forced(knobs: Knobs) -> Any:
        serving = registry.serving(int(knobs["bits"]))
        return serving[0] if len(serving) == 1 else UNSET

    def stages(recipe: Any) -> list[TechniqueConfig]:
        return registry.get(recipe.runtime).stages(recipe.bits)

    def describe(knobs: Knobs, shown: frozenset[str]) -> list[str]:
        name = str(knobs.get("runtime") or registry.weights())
        return [] if name == registry.weights() else [registry.get(name).label if name in registry.names else name]

    def check(recipe: Any) -> list[str]:
        runtime = registry.get(recipe.runtime)
        if recipe.bits in runtime.bits:
            return []
        return [
            f"runtime: {recipe.runtime!r} serves {runtime.describe_bits()}, got bits={recipe.bits}; "
            f"{recipe.bits}-bit candidates run on the {' or '.join(registry.serving(recipe.bits))} runtime"
        ]

    return Technique(
        name="runtime",
        knobs=(Knob("runtime", str, "eager", "how the candidate is served: one of the registered runtimes",
                    forced=forced, allowed=lambda: registry.names),),  # fmt: skip
        stages=stages,
        describe=describe,
        check=check,
        stage_order=50,
        sample_order=40,
    )
