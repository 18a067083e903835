"""The technique contract: every registered technique (built-in or a plug-in's) declares its knobs so that the
Recipe, the search space, the baseline, the seeds, the recipe strings and the stages can be derived from them.

A new technique passes this by registering itself; nothing here names one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.compress.recipe import Recipe, techniques
from orchestrator.config import load_config
from orchestrator.techniques import HANDLERS, UNSET, Technique

REPO = Path(__file__).resolve().parents[2]
TECHNIQUES = list(techniques())
SPACES = {name: load_config(REPO / "search_spaces" / f"{name}.yaml").space for name in ("digits", "minilm")}


class SampledSoFar(Mapping):
    """The knobs sampled before one: reading any other (a later one, or the knob itself) fails the contract."""

    def __init__(self, before: dict[str, Any], knob: str) -> None:
        self.before, self.knob = before, knob

    def __getitem__(self, name: str) -> Any:
        if name not in self.before:
            raise AssertionError(f"{self.knob}'s condition reads {name!r}, which is not sampled before it")
        return self.before[name]

    def __iter__(self):
        return iter(self.before)

    def __len__(self) -> int:
        return len(self.before)


@pytest.fixture(params=TECHNIQUES, ids=[t.name for t in TECHNIQUES])
def technique(request) -> Technique:
    return request.param


def test_each_knob_has_a_valid_default_and_a_unique_name(technique):
    names = [k.name for t in TECHNIQUES for k in t.knobs]
    assert len(names) == len(set(names))
    teacher = Recipe()
    for knob in technique.knobs:
        assert getattr(teacher, knob.name) == knob.default  # the default is the teacher's value, and it validates
        assert knob.name in Recipe.model_fields


def test_conditions_read_only_knobs_sampled_before_them(technique):
    so_far: dict[str, Any] = {}
    order = list(techniques().sampling_order())
    for knob in order:
        if knob in technique.knobs:
            guarded = SampledSoFar(dict(so_far), knob.name)
            knob.applies(guarded)
            knob.forced(guarded)
        so_far[knob.name] = knob.default


def test_at_its_defaults_a_technique_adds_no_stage_and_reads_as_nothing(technique):
    teacher = Recipe()
    assert technique.stages(teacher) == []
    assert technique.check(teacher) == []
    defaults = {k.name: k.default for k in technique.knobs if k.default is not None}
    assert all(isinstance(part, str) for part in technique.describe(defaults, frozenset(defaults)))


@pytest.mark.parametrize("space", sorted(SPACES))
def test_seeds_are_recipes_whose_stages_have_handlers_and_read_as_something(technique, space):
    for seed in technique.seeds(SPACES[space], 6):
        assert set(seed) <= set(techniques().names()), seed
        recipe = Recipe(**seed)
        stages = recipe.stages()
        assert stages and all(type(config) in HANDLERS for config in stages), (seed, stages)
        shown = frozenset(seed)
        assert technique.describe(seed, shown), seed  # a seed says what it changed


def test_forced_values_are_values_the_knob_accepts(technique):
    for knob in technique.knobs:
        for seed in (s for t in TECHNIQUES for space in SPACES.values() for s in t.seeds(space, 6)):
            values = techniques().with_defaults(seed)
            if knob.applies(values):
                forced = knob.forced(values)
                if forced is not UNSET:
                    Recipe(**{**seed, knob.name: forced})
