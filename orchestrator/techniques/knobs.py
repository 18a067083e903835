"""Knobs, declared once by the technique that owns them; the recipe, the search space, the baseline, trials.csv,
the report's knob table and recipe strings, and the seed candidates are all derived from these declarations.

A `Technique` declares its knobs (name, type, bounds, and a default that is the teacher's value), when each
applies (a condition on the knobs decided before it), how its knobs read in a recipe string, the seed
candidates it adds to a search, and the stages it adds to a recipe. `TECHNIQUES` holds them in the order the
Recipe holds their knobs (the order a recipe's key hashes them in); a technique is registered with one line in
`orchestrator/compress/__init__.py`, or by a package of its own through the `hedgerow.techniques` entry point.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from collections import ChainMap
from typing import Any, Callable, Iterator, Mapping, Sequence

from orchestrator.techniques.registry import HANDLERS, Handler, TechniqueConfig

ENTRY_POINT_GROUP = "hedgerow.techniques"


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # no value: a knob left to the sampler, or one that records nothing where it does not apply
Knobs = Mapping[str, Any]  # knob values by name: a recipe's, a trial row's, or those decided so far while sampling


def always(knobs: Knobs) -> bool:
    """The condition of a knob that applies to every candidate."""
    return True


@dataclass(frozen=True)
class Knob:
    """One knob: its type and bounds as a Recipe field, its default (the teacher's value), and when it applies.

    `applies(knobs)` reads only knobs sampled before this one (see `Technique.sample_order`). Where it is false
    the knob has no effect: the sampler does not ask for it, the report leaves it out of that candidate's recipe,
    and the recipe keeps `inactive` (UNSET: its default). Where it is true, `forced(knobs)` may fix the value
    from the other knobs instead of sampling it (2:4 sparsity is always 50%).
    """

    name: str
    annotation: Any
    default: Any
    description: str = ""
    bounds: Mapping[str, Any] = field(default_factory=dict)  # pydantic Field constraints: ge, le, gt, lt
    applies: Callable[[Knobs], bool] = always
    forced: Callable[[Knobs], Any] = lambda knobs: UNSET
    inactive: Any = UNSET
    allowed: Callable[[], Sequence[Any]] | None = None  # the values it may take, asked when a value is checked
    in_key_when_default: bool = False  # counted in a recipe's key even at its default (the knobs of version 1)

    @property
    def integer(self) -> bool:
        """Whether a range of it samples whole numbers (an int field)."""
        return self.annotation in (int, int | None)


@dataclass(frozen=True)
class Technique:
    """A compression or serving technique as the search sees it: its knobs and what a recipe does with them.

    `stages(recipe)`: the technique configs it adds to a recipe (each applied by its handler in `handlers`).
    `describe(knobs, shown)`: the parts of a one-line recipe string, e.g. ["int8"], from the values of the knobs
    shown that apply (missing values left out; `shown` names every knob the report shows, valued or not).
    `seeds(space, teacher_layers)`: single-technique candidates to try right after the teacher (knob values).
    `check(recipe)`: what is wrong with a combination of knob values (a message per problem), for Recipe to refuse.
    The three orders: `stage_order` places its stages in a recipe (structure, weights, distillation,
    quantization, the runtime), `sample_order` places its knobs in the sampler's sequence (changing it changes
    the trials a seeded search proposes), `seed_order` places its seeds (the cheapest to try first).
    """

    name: str
    knobs: tuple[Knob, ...]
    stages: Callable[[Any], list[TechniqueConfig]] = lambda recipe: []
    describe: Callable[[Knobs, frozenset[str]], list[str]] = lambda knobs, shown: []
    seeds: Callable[[Mapping[str, Any], int | None], list[dict[str, Any]]] = lambda space, teacher_layers: []
    check: Callable[[Any], list[str]] = lambda recipe: []
    handlers: Mapping[type, Handler] = field(default_factory=dict)
    sampled_as: tuple[str, ...] = ()  # its knobs in the order they are sampled, where that differs from `knobs`
    stage_order: int = 100
    sample_order: int = 100
    seed_order: int = 100

    def sampling(self) -> tuple[Knob, ...]:
        """Its knobs in the order the sampler asks for them."""
        if not self.sampled_as:
            return self.knobs
        by_name = {k.name: k for k in self.knobs}
        return tuple(by_name[name] for name in self.sampled_as)


class TechniqueRegistry:
    """The techniques, in the order their knobs appear in a Recipe; a name (technique or knob) is registered once.

    The Recipe model is built from the registry the first time it is needed; registering a technique after that
    is refused (the Recipe already built would not hold its knobs), so a package adds its technique through the
    `hedgerow.techniques` entry point, which is loaded before the Recipe is built.
    """

    def __init__(self) -> None:
        self._techniques: list[Technique] = []
        self._frozen = False
        self._plugins_loaded = False

    def add(self, technique: Technique) -> Technique:
        """Register a technique; a name already taken, or a registry already in use, is refused."""
        if self._frozen:
            raise RuntimeError(
                f"technique {technique.name!r}: registered after the Recipe was built; register it before the first "
                f"recipe is made, or through the {ENTRY_POINT_GROUP!r} entry point"
            )
        if technique.name in {t.name for t in self._techniques}:
            raise ValueError(f"technique {technique.name!r} is already registered")
        taken = {k.name for k in self.knobs()}
        clash = [k.name for k in technique.knobs if k.name in taken] + [c.__name__ for c in technique.handlers if c in HANDLERS]
        if clash:
            raise ValueError(f"technique {technique.name!r}: {', '.join(clash)} already declared elsewhere")
        for config_type, handler in technique.handlers.items():
            HANDLERS.add(config_type, handler)
        self._techniques.append(technique)
        return technique

    def load_plugins(self) -> None:
        """Register the techniques other packages declare under the `hedgerow.techniques` entry point (once)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            technique = entry.load()
            self.add(technique() if callable(technique) and not isinstance(technique, Technique) else technique)

    def freeze(self) -> None:
        """Mark the registry as in use: the Recipe has been built from it."""
        self._frozen = True

    def __iter__(self) -> Iterator[Technique]:
        return iter(self._techniques)

    def get(self, name: str) -> Technique:
        """The technique of that name."""
        for technique in self._techniques:
            if technique.name == name:
                return technique
        raise KeyError(f"no technique {name!r}; registered: {', '.join(t.name for t in self._techniques)}")

    def knobs(self) -> list[Knob]:
        """Every knob, in Recipe order."""
        return [k for t in self._techniques for k in t.knobs]

    def knob(self, name: str) -> Knob:
        """The declaration of one knob."""
        for knob in self.knobs():
            if knob.name == name:
                return knob
        raise KeyError(name)

    def names(self) -> list[str]:
        """Every knob's name, in Recipe order."""
        return [k.name for k in self.knobs()]

    def owner(self, knob_name: str) -> Technique:
        """The technique that declares a knob."""
        return next(t for t in self._techniques if any(k.name == knob_name for k in t.knobs))

    def sampling_order(self) -> list[Knob]:
        """Every knob in the order the sampler asks for them: by technique (`sample_order`), then as each declares."""
        ordered = sorted(self._techniques, key=lambda t: t.sample_order)  # stable: registration order breaks ties
        return [k for t in ordered for k in t.sampling()]

    def defaults(self) -> dict[str, Any]:
        """Every knob's default: the teacher's value."""
        return {k.name: k.default for k in self.knobs()}

    def with_defaults(self, knobs: Knobs) -> Mapping[str, Any]:
        """The knob values given, and the default of every other knob (what a condition reads)."""
        return ChainMap(dict(knobs), self.defaults())

    def applies(self, name: str, knobs: Knobs) -> bool:
        """Whether a knob has an effect on a candidate with these knob values (others at their defaults)."""
        return bool(self.knob(name).applies(self.with_defaults(knobs)))

    def decide(self, choose: Callable[[Knob, Knobs], Any]) -> dict[str, Any]:
        """Every knob's value, in sampling order: a forced value where the others fix it, `choose(knob, so_far)`
        where it applies, `inactive` where it does not (knobs left UNSET are omitted: they keep their default)."""
        values: dict[str, Any] = {}
        so_far = ChainMap(values, self.defaults())
        for knob in self.sampling_order():
            if not knob.applies(so_far):
                if knob.inactive is not UNSET:
                    values[knob.name] = knob.inactive
                continue
            forced = knob.forced(so_far)
            values[knob.name] = choose(knob, so_far) if forced is UNSET else forced
        return values

    def baseline(self) -> dict[str, Any]:
        """The teacher as knob values: every knob that applies to it (or records an inactive value) at its default."""
        return self.decide(lambda knob, so_far: knob.default)


TECHNIQUES = TechniqueRegistry()
