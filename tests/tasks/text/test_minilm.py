"""The built-in minilm task: the real all-MiniLM-L6-v2 from its PyPI package, offline, on Python's documentation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from orchestrator.cli import main
from orchestrator.compress import Recipe, apply_recipe
from orchestrator.errors import InputError
from orchestrator.tasks import load_task
from orchestrator.tasks.base import paired_drop
from orchestrator.tasks.text.encoder import MissingExtra
from tests.conftest import MINILM_CI, REPO
from tests.tasks.text.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.slow


def test_the_teacher_agrees_with_itself_on_both_diagnostics(minilm_task):
    previous = minilm_task.metric  # a session fixture: later tests see what it was, pass or fail
    try:
        for metric in ("agreement_at_10", "fidelity"):
            minilm_task.metric = metric
            quality = minilm_task.evaluate(minilm_task.teacher(), "val")
            assert quality["metric"] == metric and quality["value"] == pytest.approx(1.0, abs=1e-6)
    finally:
        minilm_task.metric = previous


def test_the_task_reports_ndcg_at_10_on_labels_with_an_interval_and_measures_the_teacher(minilm_task):
    assert minilm_task.metric == "ndcg_at_10"  # the default
    evaluation = minilm_task.evaluate_items(minilm_task.teacher(), "val")
    quality, items = evaluation.quality, evaluation.items
    n = len(minilm_task.labeled["val"].queries)
    assert quality["metric"] == "ndcg_at_10" and quality["n_examples"] == n == len(items) == MINILM_CI["n_val_queries"]
    # Measured on labels, not assumed: an inverse-cloze query misses its passage now and then, so below 1.
    assert 0.0 < quality["value"] < 1.0 and quality["value"] == pytest.approx(float(items.mean()))
    assert quality["ci95_low"] < quality["value"] < quality["ci95_high"]
    # The other labeled metrics and the agreement diagnostics come from the same pass.
    assert set(evaluation.diagnostics) == {"recall_at_10", "mrr_at_10", "agreement_at_10", "fidelity"}
    assert evaluation.diagnostics["agreement_at_10"] == pytest.approx(1.0)
    assert quality["value"] <= evaluation.diagnostics["recall_at_10"]  # one relevant passage: nDCG@10 ≤ recall@10


def test_the_labeled_set_is_seeded_disjoint_from_training_text_and_the_same_on_every_run(minilm_task):
    again = load_task("minilm", MINILM_CI)
    assert again.labeled == minilm_task.labeled and again.train_texts == minilm_task.train_texts
    other = load_task("minilm", {**MINILM_CI, "split_seed": 1})
    assert other.labeled["val"].queries != minilm_task.labeled["val"].queries
    for task in (minilm_task, other):
        val, test = task.labeled["val"], task.labeled["test"]
        held_out = set(val.texts()) | set(test.texts())
        assert not held_out & set(task.train_texts)
        assert not set(val.texts()) & set(test.texts())
        # No training paragraph contains a held-out query or relevant passage (the inverse cloze would leak).
        relevant = [val.passages[p] for labels in val.qrels for p in labels]
        assert not any(q in t or r in t for t in task.train_texts for q, r in zip(val.queries, relevant))
        for split in (val, test):  # each query: its one relevant passage is the rest of its own paragraph
            assert all(len(labels) == 1 and set(labels.values()) == {1} for labels in split.qrels)


def test_the_paired_drop_interval_is_narrower_than_the_unpaired_one_on_a_real_candidate(minilm_task):
    teacher = minilm_task.evaluate_items(minilm_task.teacher(), "val")
    candidate = minilm_task.evaluate_items(apply_recipe(minilm_task, Recipe(prune_ffn_ratio=0.25)).model, "val")
    drop, low, high = paired_drop(teacher.items, candidate.items)
    assert drop == pytest.approx(teacher.quality["value"] - candidate.quality["value"])
    # Unpaired, the drop's interval is at least as wide as the wider of the two intervals it would combine.
    unpaired = max(q["ci95_high"] - q["ci95_low"] for q in (teacher.quality, candidate.quality))
    assert low <= drop <= high and high - low < unpaired, (low, high, unpaired)


def test_inputs_are_token_ids_and_masks_and_targets_the_teachers_unit_embeddings(minilm_task):
    inputs, targets = minilm_task.data("val")
    n = MINILM_CI["n_val_passages"] + MINILM_CI["n_val_queries"]
    assert sorted(inputs) == ["attention_mask", "input_ids"] and inputs["input_ids"].shape == (n, 32)
    assert targets.shape == (n, 384) and torch.allclose(targets.norm(dim=1), torch.ones(n), atol=1e-5)
    assert minilm_task.texts("val")[0] in minilm_task.labeled["val"].queries


def test_the_cache_is_reused_by_a_second_task(minilm_task):
    path = minilm_task.cache_path()
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    again = load_task("minilm", MINILM_CI)
    assert torch.equal(again.data("test")[1], minilm_task.data("test")[1]) and path.stat().st_mtime_ns == stamp


def test_per_channel_int8_stays_close_and_says_how_embeddings_are_stored(minilm_task):
    compressed = apply_recipe(minilm_task, Recipe(bits=8))
    step = compressed.record.steps[-1]
    assert step.technique == "int8_dynamic" and step.details["weight_granularity"] == "per_channel"
    assert "embedding tables stay float32" in step.details["embeddings"]
    minilm_task.metric = "fidelity"
    try:
        assert minilm_task.evaluate(compressed.model, "val")["value"] > 0.95
    finally:
        minilm_task.metric = "ndcg_at_10"


def test_distillation_recovers_fidelity_after_ffn_pruning(minilm_task):
    minilm_task.metric = "fidelity"
    try:
        pruned = apply_recipe(minilm_task, Recipe(prune_ffn_ratio=0.5)).model
        distilled = apply_recipe(
            minilm_task, Recipe(prune_ffn_ratio=0.5, kd_steps=30, kd_learning_rate=3e-4, kd_batch_size=16)
        )
        before = minilm_task.evaluate(pruned, "val")["value"]
        after = minilm_task.evaluate(distilled.model, "val")["value"]
    finally:
        minilm_task.metric = "ndcg_at_10"
    kd = next(s for s in distilled.record.steps if s.stage == "distill")
    assert kd.details["final_loss"] < kd.details["first_loss"]
    assert after > before + 0.05, (before, after)


def test_the_task_loads_and_evaluates_with_the_network_unavailable(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[:2]))
            raise OSError("network unavailable in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from orchestrator.tasks import load_task
        task = load_task("minilm", {json.dumps(MINILM_CI)!s})
        quality = task.evaluate(task.teacher(), "test")
        print(json.dumps({{"attempts": attempts, "value": quality["value"]}}))
        """
    )
    env = {**os.environ, "HEDGEROW_CACHE_DIR": str(tmp_path)}  # an empty cache: tokenize and embed from scratch
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)  # not relied on: nothing may even try
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [] and 0.0 < result["value"] < 1.0  # the teacher's nDCG@10 on test, measured


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"metric": "bleu"}, r"task\.args\.metric: this task provides ndcg_at_10, recall_at_10, mrr_at_10, agreement_at_10, fidelity; got 'bleu'"),
        ({"seq_len": 600}, r"task\.args\.seq_len: 600 tokens is above the model's maximum of 512 positions"),
        ({"model_path": "/tmp"}, r"model_path: the minilm task always uses the bundled all-MiniLM-L6-v2"),
        ({"n_val_queries": 1}, r"task\.args\.n_val_queries: "),
    ],
)
def test_bad_task_arguments_name_the_field(args, message):
    with pytest.raises(InputError, match=message):
        load_task("minilm", {**MINILM_CI, **args})


def test_a_missing_extra_gives_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"pip install 'hedgerow\[transformers\]'"):
        load_task("minilm", MINILM_CI)


def write_config(tmp_path, **changes):
    config = yaml.safe_load((REPO / "search_spaces" / "minilm.yaml").read_text())
    config["task"]["args"] = {**config["task"]["args"], **MINILM_CI}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = tmp_path / "minilm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task.args": {**MINILM_CI, "metric": "ndcg"}}, "task.args.metric"),
        ({"objective.metric": "fidelity"}, "objective.metric: task 'minilm' measures 'ndcg_at_10', not 'fidelity'"),
        ({"space.keep_layers": {"choices": [3, 7]}}, "space.keep_layers: 7 layers asked for; the encoder has 6"),
        ({"space.keep_layers": {"choices": [0, 3]}}, "space.keep_layers: value 0 is not allowed"),
    ],
)
def test_hedgerow_validate_refuses_a_bad_minilm_config_with_exit_2(tmp_path, capsys, changes, message):
    assert main(["validate", str(write_config(tmp_path, **changes))]) == 2
    assert message in capsys.readouterr().err


def test_the_demo_config_validates(tmp_path, capsys):
    assert main(["validate", str(REPO / "search_spaces" / "minilm.yaml")]) == 0


def test_a_ratio_that_removes_every_head_is_refused_before_the_search(tmp_path, capsys):
    folder = save_tiny_bert(tmp_path)  # 4 heads per layer: 0.9 would remove round(3.6) = 4 of them
    config = {
        "task": {"name": "examples.hf_encoder_task:make_task", "args": {"model_path": str(folder), **MINILM_CI}},
        "objective": {"metric": "ndcg_at_10"},
        "traffic": {"peak_rps": 100, "latency_slo_p95_ms": 1000},
        "space": {"prune_heads_ratio": {"choices": [0.0, 0.9]}},
    }
    path = tmp_path / "heads.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 2
    assert "space.prune_heads_ratio: 0.9 would remove all 4 attention heads of each layer" in capsys.readouterr().err
    config["space"] = {"prune_method": {"choices": ["none", "structured"]}}
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 2
    assert "space.prune_method: 'structured' removes conv channels" in capsys.readouterr().err


def test_distillation_progress_may_judge_a_fixed_val_subset_and_final_figures_use_all_of_val(minilm_task):
    subset = load_task("minilm", {**MINILM_CI, "progress_queries": 8})
    assert subset.cache_path() == minilm_task.cache_path()  # the same texts and teacher embeddings: the cache is shared
    rows, qrels = subset.progress_subset()
    n_queries, n_passages = MINILM_CI["n_val_queries"], MINILM_CI["n_val_passages"]
    assert len(qrels) == 8 and len(rows) == 8 + round(n_passages * 8 / n_queries)  # as many distractors per query
    assert torch.equal(rows, subset.progress_subset()[0]), "fixed: the same subset every time"
    texts = subset.texts("val")
    for q, labels in enumerate(qrels):  # every subset query keeps its own relevant passage, relabelled
        (p,) = labels
        original = subset.labeled["val"]
        assert texts[rows[8 + p]] == original.passages[next(iter(original.qrels[q]))]
    teacher = subset.teacher()
    assert subset.evaluate_progress(teacher) != subset.evaluate(teacher, "val")["value"]  # a subset, not all of val
    assert minilm_task.evaluate_progress(teacher) == minilm_task.evaluate(teacher, "val")["value"]  # unset: all of val
    assert subset.evaluate(teacher, "val") == minilm_task.evaluate(teacher, "val")  # final figures: all of val
