"""The report speaks the model's language: only the knobs the space searched, and a transformer's depth and widths."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from orchestrator.report.content import build
from orchestrator.report.rundata import load_run
from orchestrator.report.recipes import knob_names, recipe_text, shown_knobs
from tests.report._fake import make_run

MINILM_SHAPE = {"teacher_encoder_layers": 6, "teacher_encoder_heads_per_layer": 12, "teacher_encoder_ffn_per_layer": 1536}
CNN_ONLY = ("prune_method", "prune_ratio", "prune_scope", "prune_importance", "int4_group_size", "kd_temperature", "kd_alpha", "qat")


def test_a_transformer_recipe_says_how_deep_and_wide_the_model_is():
    knobs = {"keep_layers": 4, "prune_ffn_ratio": 0.25, "bits": 8, "kd_steps": 200, "runtime": "onnxruntime",
             "encoder_layers": 4, "encoder_heads_per_layer": 12, "encoder_ffn_per_layer": 1152, **MINILM_SHAPE}  # fmt: skip
    assert recipe_text(knobs) == "4 of 6 layers · FFN 1152 of 1536 · int8 · KD 200 steps · ONNX Runtime"
    # Heads were not searched and not pruned: not mentioned. The teacher itself reads as the whole model.
    teacher = {"keep_layers": None, "prune_ffn_ratio": 0.0, "bits": 32, "kd_steps": 0, "encoder_layers": 6,
               "encoder_heads_per_layer": 12, "encoder_ffn_per_layer": 1536, **MINILM_SHAPE}  # fmt: skip
    assert recipe_text(teacher) == "6 of 6 layers · FFN 1536 of 1536 · fp32 · no distillation"


def test_a_cnn_recipe_keeps_its_pruning_method_and_kd_settings():
    knobs = {"prune_method": "unstructured", "prune_ratio": 0.88, "prune_scope": "global", "bits": 8, "kd_steps": 100,
             "kd_temperature": 7.9, "kd_alpha": 0.55, "kd_learning_rate": 3.7e-4, "qat": True}  # fmt: skip
    assert recipe_text(knobs) == "unstructured 88% (global) · int8 · KD 100 steps (T 7.9, α 0.55, lr 3.7e-04) · QAT"


def test_a_run_from_before_shapes_were_recorded_falls_back_to_the_knobs():
    assert recipe_text({"keep_layers": 3, "prune_heads_ratio": 0.5, "bits": 32}) == "3 layers · heads −50% · fp32"


def test_the_knobs_shown_are_the_spaces_and_every_knob_without_one():
    space = {"keep_layers": {"choices": [3, 6]}, "bits": {"choices": [32, 8]}, "kd_batch_size": 16, "runtime": "eager"}
    assert shown_knobs(space) == ["keep_layers", "bits", "runtime", "kd_batch_size"]  # sampled and fixed, in the order decided
    assert shown_knobs(None) == shown_knobs({}) == knob_names()


def transformer_run(tmp_path):
    """The fake run made a transformer's: its space searches depth, FFN width, int8 and KD, and rows carry shapes."""
    root = make_run(tmp_path)
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["space"] = {"keep_layers": {"choices": [3, 4, 6]}, "prune_ffn_ratio": {"choices": [0.0, 0.5]},
                       "bits": {"choices": [32, 8]}, "kd_steps": {"choices": [0, 100]}, "kd_batch_size": 16}  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    frame = pd.read_csv(root / "trials.csv", dtype={"trial_id": str})
    baseline = frame["baseline"].astype(str).str.lower() == "true"
    frame["keep_layers"] = [None if b else 4 for b in baseline]
    frame["prune_ffn_ratio"] = [0.0 if b else 0.5 for b in baseline]
    frame["encoder_layers"] = [6 if b else 4 for b in baseline]
    frame["encoder_heads_per_layer"] = 12
    frame["encoder_ffn_per_layer"] = [1536 if b else 768 for b in baseline]
    for column, value in MINILM_SHAPE.items():
        frame[column] = value
    frame.to_csv(root / "trials.csv", index=False)
    summary = json.loads((root / "summary.json").read_text())  # the summary's knobs, as the search would write them
    for candidate, is_baseline in ((summary["recommended"], False), (summary["baseline"], True)):
        candidate["knobs"].update(keep_layers=None if is_baseline else 4, prune_ffn_ratio=0.0 if is_baseline else 0.5)
    (root / "summary.json").write_text(json.dumps(summary))
    return load_run(root)


def test_a_transformer_report_shows_only_the_knobs_its_space_searched_in_model_terms(tmp_path):
    report = build(transformer_run(tmp_path))
    knob_rows = [row[0] for row in report.knobs.rows]
    # Only knobs the space searched, and only where they apply: kd_batch_size for the distilled candidate alone.
    assert knob_rows[: len(knob_rows) - 3] == ["keep_layers", "prune_ffn_ratio", "bits", "kd_steps", "kd_batch_size"]
    assert next(row for row in report.knobs.rows if row[0] == "kd_batch_size")[1:] == ["64", "—"]
    assert knob_rows[-3:] == ["encoder_layers", "encoder_heads_per_layer", "encoder_ffn_per_layer"]
    recipes = [row[1] for row in report.pareto.rows]
    assert recipes and all("4 of 6 layers · FFN 768 of 1536" in r or "6 of 6 layers" in r for r in recipes), recipes
    shown = " ".join([report.verdict, *recipes, *(str(v) for _, v in report.headline)])
    assert not any(knob in shown for knob in ("structured", "unstructured", "no pruning", "T 4", "α 0.7"))
    assert "4 of 6 layers" in report.verdict


def test_a_cnn_report_keeps_its_knobs(tmp_path):
    root = make_run(tmp_path)
    report = build(load_run(root))
    knob_rows = [row[0] for row in report.knobs.rows]
    assert {"prune_method", "prune_ratio", "bits", "kd_steps"} <= set(knob_rows)
    assert not set(knob_rows) & {"keep_layers", "prune_heads_ratio", "prune_ffn_ratio", "encoder_layers"}
    assert any("structured 30%" in row[1] for row in report.pareto.rows)


def test_the_knob_table_shows_each_knob_of_the_space_that_applies_to_either_candidate(tmp_path):
    report = build(load_run(make_run(tmp_path)))
    # The recommended candidate is structured, int8 and distilled; the baseline none of these.
    assert {row[0] for row in report.knobs.rows} >= {"prune_method", "prune_ratio", "prune_importance", "kd_temperature", "kd_alpha", "qat"}
    assert not {row[0] for row in report.knobs.rows} & {"prune_scope", "int4_group_size"}  # they apply to neither


def test_a_run_folder_whose_config_lost_its_space_is_refused_naming_the_field(tmp_path):
    from orchestrator.errors import InputError

    root = make_run(tmp_path)
    config = yaml.safe_load((root / "config.yaml").read_text())
    config.pop("space")
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match=r"config.yaml: space: Field required"):
        load_run(root)
