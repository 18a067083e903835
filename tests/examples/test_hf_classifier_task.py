"""Bring your own sequence classifier: labeled CSV/JSONL data, stratified splits, accuracy or macro-F1, bad input named."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.errors import InputError
from orchestrator.tasks.registry import load_task
from tests.tasks.text.tiny_bert import save_fine_tuned_classifier, save_tiny_bert, save_tiny_classifier, topic_rows

pytest.importorskip("transformers")
FACTORY = "examples.hf_classifier_task:make_task"


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def labeled() -> list[tuple[str, str]]:
    return topic_rows()


@pytest.fixture(scope="session")
def classifier(tmp_path_factory, labeled) -> Path:
    """The tiny classifier fine-tuned on the labeled paragraphs (a teacher worth compressing)."""
    return save_fine_tuned_classifier(tmp_path_factory.mktemp("classifier"), labeled)


@pytest.fixture(scope="session")
def data_file(tmp_path_factory, labeled) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "labeled.csv", labeled)


def make(classifier: Path, data_file: Path, **extra):
    return load_task(FACTORY, {"model_path": str(classifier), "data_file": str(data_file), "seq_len": 64, **extra})


def test_one_file_is_split_seeded_and_stratified_and_the_teacher_classifies_it(classifier, data_file):
    task = make(classifier, data_file)
    sizes = {split: len(task.data(split)[1]) for split in ("train", "val", "test")}
    assert sizes == {"train": 72, "val": 24, "test": 24}
    for split in ("train", "val", "test"):
        assert torch.bincount(task.data(split)[1], minlength=3).tolist() == [sizes[split] // 3] * 3  # every label alike
    again = make(classifier, data_file)
    assert torch.equal(again.data("val")[0]["input_ids"], task.data("val")[0]["input_ids"])
    quality = task.evaluate(task.teacher(), "val")
    assert quality["metric"] == "accuracy" and quality["value"] > 0.9 and quality["ci95_low"] < quality["ci95_high"]
    assert task.label_names == ["files", "sockets", "threads"]


def test_texts_that_read_alike_once_cut_to_seq_len_are_kept_out_of_val_and_test(classifier, labeled, tmp_path, caplog):
    prefix = "Open the file for reading and writing and then close it again when done. "
    rows = list(labeled) + [(prefix + f"Variant {word} of a long tail.", "files") for word in ("one", "two", "three", "four", "five")]
    # Read on the task's own logger: other libraries in the session (NNCF) reconfigure logging around the root.
    with caplog.at_level(logging.WARNING, logger="examples.hf_classifier_task"):
        task = make(classifier, write_csv(tmp_path / "alike.csv", rows), seq_len=8)
    keys = {s: {r.numpy().tobytes() for r in task.data(s)[0]["input_ids"]} for s in ("train", "val", "test")}
    assert not keys["train"] & keys["val"] and not (keys["train"] | keys["val"]) & keys["test"]
    assert "left out: cut to 8 tokens" in caplog.text


def test_macro_f1_is_the_metric_when_asked_with_a_bootstrap_interval(classifier, data_file):
    task = make(classifier, data_file, metric="macro_f1")
    quality = task.evaluate(task.teacher(), "test")
    assert quality["metric"] == "macro_f1" and quality["ci95_low"] <= quality["value"] <= quality["ci95_high"]


def test_three_files_and_jsonl_with_class_ids(classifier, labeled, tmp_path):
    names = ["files", "sockets", "threads"]
    files = {}
    for split, part in (("train", labeled[0::3]), ("val", labeled[1::3]), ("test", labeled[2::3])):
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": names.index(label)}) + "\n" for t, label in part))
        files[f"{split}_file"] = str(path)
    task = load_task(FACTORY, {"model_path": str(classifier), "seq_len": 32, **files})
    assert len(task.data("val")[1]) == 40 and set(task.data("train")[1].tolist()) == {0, 1, 2}


def test_a_pruned_distilled_int8_candidate_runs_through_the_pipeline(classifier, data_file):
    task = make(classifier, data_file)
    recipe = Recipe(prune_heads_ratio=0.5, prune_ffn_ratio=0.5, kd_steps=5, kd_batch_size=16, bits=8)
    compressed = apply_recipe(task, recipe)
    assert [s.stage for s in compressed.record.steps][:2] == ["prune", "prune"]
    quality = task.evaluate(compressed.model, "val")
    assert 0.0 <= quality["value"] <= 1.0
    assert sum(p.numel() for p in compressed.model.parameters()) < sum(p.numel() for p in task.teacher().parameters())


# --- bad input, each named -------------------------------------------------------------------


def test_a_missing_column_names_the_file_and_its_header(classifier, labeled, tmp_path):
    path = write_csv(tmp_path / "bad.csv", labeled, header=("text", "category"))
    with pytest.raises(InputError, match=r"bad.csv: no column 'label'; its header has \['text', 'category'\]"):
        make(classifier, path)


def test_an_empty_text_names_the_file_and_line(classifier, labeled, tmp_path):
    rows = list(labeled)
    rows[4] = ("  ", rows[4][1])
    with pytest.raises(InputError, match=r"bad.csv:6: empty text"):
        make(classifier, write_csv(tmp_path / "bad.csv", rows))


def test_a_label_in_val_never_in_train_names_its_line(classifier, labeled, tmp_path):
    train = write_csv(tmp_path / "train.csv", [r for r in labeled if r[1] != "sockets"])
    val = write_csv(tmp_path / "val.csv", labeled[-50:])  # the last rows are sockets
    test = write_csv(tmp_path / "test.csv", [r for r in labeled if r[1] != "sockets"][:10])
    with pytest.raises(InputError, match=r"val.csv:\d+: label 'sockets' is in val but never in train"):
        load_task(FACTORY, {"model_path": str(classifier), "seq_len": 32, "train_file": str(train), "val_file": str(val), "test_file": str(test)})


def test_labels_the_model_does_not_have_are_named_with_the_ones_it_has(classifier, labeled, tmp_path):
    rows = [(t, "processes" if label == "threads" else label) for t, label in labeled]
    with pytest.raises(InputError, match=r"labels \['processes'\] match none of the model's 3 classes.*'files', 'sockets', 'threads'"):
        make(classifier, write_csv(tmp_path / "bad.csv", rows))


def test_a_model_that_is_not_a_classifier_is_refused_and_the_reverse(tmp_path, data_file):
    encoder = save_tiny_bert(tmp_path / "enc")
    with pytest.raises(InputError, match=r"\['BertModel'\], not a sequence classifier"):
        make(encoder, data_file)
    classifier = save_tiny_classifier(tmp_path / "clf", ["a", "b"])
    with pytest.raises(InputError, match="is a sequence classifier"):
        load_task("examples.hf_encoder_task:make_task", {"model_path": str(classifier), "seq_len": 32})


def test_one_way_to_give_the_data(classifier, data_file):
    with pytest.raises(InputError, match="give either data_file, or all three of train_file, val_file and test_file"):
        load_task(FACTORY, {"model_path": str(classifier), "data_file": str(data_file), "val_file": str(data_file)})


# --- search → report → export → load → Serve, on real Ray ----------------------------------------


@pytest.mark.slow
def test_a_search_recommends_within_the_bound_and_its_export_labels_text_as_the_trial_measured(
    classifier, data_file, tmp_path
):
    import subprocess
    import sys

    import pandas as pd
    import yaml

    from orchestrator.deploy import export_trial, load
    from orchestrator.deploy.serve import Predictor, ServeArgs
    from orchestrator.search.runner import start_search
    from tests.conftest import REPO
    from tests.search.conftest import FAST

    bound = 0.05  # val holds 24 texts: one text is 4.2 points, so this bound lets no text flip
    config = {
        "task": {"name": FACTORY, "args": {"model_path": str(classifier), "data_file": str(data_file), "seq_len": 64}},
        "objective": {"metric": "accuracy", "max_quality_drop": bound},
        "traffic": FAST["traffic"],
        "deployment": FAST["deployment"],
        "search": {**FAST["search"], "trials": 4, "max_concurrent": 2},
        "space": {
            "keep_layers": {"choices": [1, 2]}, "prune_ffn_ratio": {"choices": [0.0, 0.5]},
            "bits": {"choices": [32, 8]}, "kd_steps": {"choices": [0, 20]}, "kd_batch_size": 16,
        },
    }  # fmt: skip
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    run = start_search(path, out=tmp_path / "runs")

    frame = pd.read_csv(run / "trials.csv")
    assert (frame["status"] == "finished").all(), frame["error"].dropna().tolist()
    summary = json.loads((run / "summary.json").read_text())
    chosen = summary["recommended"]
    assert chosen is not None and chosen["accuracy_drop"] <= bound
    assert (run / "report.html").is_file() and "accuracy" in (run / "report.md").read_text()

    result = export_trial(run, dest=tmp_path / "exports")
    assert result.manifest.architecture.text.labels == ["files", "sockets", "threads"]
    model = load(result.location)
    task = make(classifier, data_file)
    texts, truth = zip(*[(text, label) for text, label, _ in task.rows["val"]])
    labels = [row["label"] for row in model.predict(list(texts))]
    # The same labels as the trial measured: its val accuracy, recounted from text through the shipped tokenizer.
    row = frame[frame["trial_id"].astype(str) == str(chosen["trial_id"])].iloc[0]
    assert sum(a == b for a, b in zip(labels, truth)) / len(truth) == pytest.approx(row["quality"], abs=1e-9)
    first = model.classify([texts[0]])[0]
    assert set(first["probabilities"]) == {"files", "sockets", "threads"}
    assert first["score"] == max(first["probabilities"].values()) and sum(first["probabilities"].values()) == pytest.approx(1.0)

    served = Predictor(ServeArgs(model_path=result.location)).predict_requests([{"inputs": list(texts[:3])}, {"inputs": 7}])
    assert [r["label"] for r in served[0]["outputs"]] == labels[:3] and "error" in served[1]

    script = "import json, sys; from orchestrator.deploy import load; print(json.dumps(load(sys.argv[1]).predict(sys.argv[2:])))"
    done = subprocess.run(
        [sys.executable, "-c", script, result.location, *texts[:5]], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["label"] for r in json.loads(done.stdout.strip().splitlines()[-1])] == labels[:5]
