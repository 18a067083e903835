"""A candidate's recipe as the report shows it: the knobs that apply to it, in one line or in a table.

Everything here comes from the knob declarations (techniques/knobs.py): which knobs exist, their order,
when each applies, and how each technique's knobs read ('structured 50% (l2) · int8 · KD 100 steps').
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd

from orchestrator.compress.recipe import techniques

TECHNIQUES = techniques()

# A transformer candidate's depth and widths and its teacher's, as each trial records them
# (compress/transformer_prune.encoder_shape): the recipe string reads them for "4 of 6 layers".
SHAPE_COLUMNS = (
    "encoder_layers", "encoder_heads_per_layer", "encoder_ffn_per_layer",
    "teacher_encoder_layers", "teacher_encoder_heads_per_layer", "teacher_encoder_ffn_per_layer",
)  # fmt: skip


def knob_names() -> list[str]:
    """Every knob, in the order the report lists them: the order they are decided in (the sampler's), so a knob that
    decides whether another applies comes before it."""
    return [k.name for k in TECHNIQUES.sampling_order()]


def clean(value: Any) -> Any:
    """A value read from a table: None for a blank, NaN or NA; a plain Python number for a numpy one."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def shown_knobs(space: Any) -> list[str]:
    """The knobs a report describes: those the search space sampled or fixed, in Recipe order (every knob for a run
    folder whose config holds no space). A knob the space never named stayed at its default in every trial."""
    if not isinstance(space, Mapping) or not space:
        return knob_names()
    return [k for k in knob_names() if k in space]


def applicable(values: Mapping[str, Any], knobs: Iterable[str]) -> dict[str, Any]:
    """The given knobs' values where they have one and the knob applies to this candidate (a condition on the other
    knobs, at their defaults where the values lack them)."""
    known = {k: clean(v) for k, v in values.items() if k in TECHNIQUES.names() and clean(v) is not None}
    return {k: known[k] for k in knobs if k in known and TECHNIQUES.applies(k, known)}


def recipe_text(values: Mapping[str, Any], knobs: Iterable[str] | None = None, with_runtime: bool = True) -> str:
    """A recipe in one line, in the model's terms: '4 of 6 layers · FFN 768 of 1536 · int8 · KD 200 steps (lr 3.7e-04)'
    for a transformer, 'unstructured 88% (global) · int8 · KD 100 steps (T 7.9, α 0.55, lr 3.7e-04) · QAT' for a CNN.

    Only the knobs shown (default: those `values` names) that apply to the candidate are described; a transformer's depth and widths
    come from the encoder shape its trial recorded (SHAPE_COLUMNS in `values`). A runtime other than eager ends it
    (' · ONNX Runtime') unless `with_runtime` is False (shown beside it instead).
    """
    shown = frozenset(k for k in values.keys() if k in TECHNIQUES.names()) if knobs is None else frozenset(knobs)
    described = applicable(values, shown)
    described.update({c: clean(values[c]) for c in SHAPE_COLUMNS if c in values and clean(values[c]) is not None})
    parts = [
        part
        for technique in TECHNIQUES
        if with_runtime or technique.name != "runtime"
        for part in technique.describe(described, shown)
    ]
    return " · ".join(parts) or "the teacher as it is"


def knob_applies(trials: pd.DataFrame, knob: str) -> pd.Series:
    """Where a knob has an effect, row by row (its technique's condition on each trial's other knobs)."""
    if knob not in TECHNIQUES.names():
        return pd.Series(True, index=trials.index)
    if trials.empty:
        return pd.Series(dtype=bool, index=trials.index)
    columns = [k for k in knob_names() if k in trials]

    def applies(row: pd.Series) -> bool:
        return TECHNIQUES.applies(knob, {k: clean(v) for k, v in row.items() if clean(v) is not None})

    return trials[columns].apply(applies, axis=1).astype(bool)
