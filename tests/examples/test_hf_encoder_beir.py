"""examples/hf_encoder_task.py with the user's own labels in BEIR's format: read, judged, and bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.cli import main
from orchestrator.tasks.registry import load_task
from orchestrator.tasks.text.relevance import ndcg_per_query
from orchestrator.tasks.text.agreement import top_k
from tests.tasks.text.tiny_bert import save_tiny_bert

FACTORY = "examples.hf_encoder_task:make_task"
TOPICS = ["billing", "login", "export", "search", "upload", "invoice", "password", "report", "backup", "sync", "email", "theme"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT and its tokenizer, as a user's save_pretrained folder."""
    pytest.importorskip("transformers")
    return save_tiny_bert(tmp_path_factory.mktemp("encoder"))


@pytest.fixture(autouse=True)
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEDGEROW_CACHE_DIR", str(tmp_path / "cache"))


def write_beir(folder: Path, dev: list[str] | None = None, test: list[str] | None = None) -> Path:
    """A small BEIR folder: 12 topics × 2 passages, a query per topic; qrels rows as given (graded by default)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": f"d{i}-{j}", "title": topic, "text": f"how to fix the {topic} problem, part {j} of the guide"}
              for i, topic in enumerate(TOPICS) for j in range(2)]  # fmt: skip
    queries = [{"_id": f"q{i}", "text": f"my {topic} does not work"} for i, topic in enumerate(TOPICS)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    rows = lambda ids: [f"q{i}\td{i}-0\t2" for i in ids] + [f"q{i}\td{i}-1\t1" for i in ids]
    for name, lines in (("dev", dev if dev is not None else rows(range(6))), ("test", test if test is not None else rows(range(6, 12)))):
        (folder / "qrels" / f"{name}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{x}\n" for x in lines))
    return folder


def test_a_beir_folder_gives_graded_val_and_test_and_ndcg_uses_the_grades(model_folder, tmp_path):
    folder = write_beir(tmp_path / "beir")
    task = load_task(FACTORY, {"model_path": str(model_folder), "beir_folder": str(folder), "seq_len": 16, "n_train": 20})
    val, test = task.labeled["val"], task.labeled["test"]
    assert len(val.queries) == len(test.queries) == 6 and len(val.passages) == 24
    assert all(sorted(labels.values()) == [1, 2] for labels in val.qrels)  # graded, as written
    assert not set(task.train_texts) & (set(val.texts()) | set(test.texts()))
    quality = task.evaluate(task.teacher(), "test")
    assert quality["metric"] == "ndcg_at_10" and quality["n_examples"] == 6
    # Recomputed by hand from the teacher's own ranking: the grades (2 and 1) are the gains, as trec_eval counts them.
    _, embeddings = task.data("test")
    ranked = top_k(embeddings[:6], embeddings[6:], 10).tolist()
    discount = [1 / torch.log2(torch.tensor(r + 2.0)).item() for r in range(10)]
    by_hand = []
    for row, labels in zip(ranked, test.qrels):
        dcg = sum(labels.get(p, 0) * d for p, d in zip(row, discount))
        by_hand.append(dcg / (2 * discount[0] + 1 * discount[1]))
    assert quality["value"] == pytest.approx(sum(by_hand) / 6)
    flat = [{p: 1 for p in labels} for labels in test.qrels]  # the same ranking judged without grades differs
    assert float(ndcg_per_query(torch.tensor(ranked), flat).mean()) != pytest.approx(quality["value"])


def config_file(tmp_path: Path, model_folder: Path, folder: Path, metric: str = "ndcg_at_10") -> Path:
    config = {
        "task": {"name": FACTORY, "args": {"model_path": str(model_folder), "beir_folder": str(folder), "seq_len": 16, "n_train": 20}},
        "objective": {"metric": metric, "max_quality_drop": 0.01},
        "traffic": {"peak_rps": 100, "latency_slo_p95_ms": 1000},
        "space": {"bits": {"choices": [32, 8]}},
    }
    path = tmp_path / "beir.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: (f / "queries.jsonl").unlink(), "missing queries.jsonl"),
        (lambda f: write_beir(f, dev=["q0\td0-0\t1", "q99\td1-0\t1"]), "qrels/dev.tsv:3: query 'q99' is not in queries.jsonl"),
        (lambda f: write_beir(f, test=["q6\td6-0\t1", "q7\tnope\t1"]), "qrels/test.tsv:3: passage 'nope' is not in corpus.jsonl"),
        (lambda f: write_beir(f, dev=["q0\td0-0\t-1"]), "qrels/dev.tsv:2: relevance '-1' must be a non-negative integer"),
        (lambda f: write_beir(f, dev=["q0\td0-0\t0.5"]), "qrels/dev.tsv:2: relevance '0.5' must be a non-negative integer"),
        (lambda f: write_beir(f, test=["q6\td6-0\t0", "q7\td7-0\t0"]), "qrels/test.tsv: no query has a relevant passage"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n{"text": "no id"}\n'), "corpus.jsonl:2: expected an object"),
    ],
)
def test_bad_beir_input_exits_2_naming_file_and_line_and_writes_no_run_folder(model_folder, tmp_path, capsys, spoil, message):
    folder = write_beir(tmp_path / "beir")
    spoil(folder)
    out = tmp_path / "runs"
    assert main(["search", str(config_file(tmp_path, model_folder, folder)), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir()), "nothing is written before the data is read and checked"


def test_an_objective_metric_the_task_does_not_provide_exits_2(model_folder, tmp_path, capsys):
    folder = write_beir(tmp_path / "beir")
    assert main(["validate", str(config_file(tmp_path, model_folder, folder, metric="map_at_100"))]) == 2
    assert "objective.metric" in capsys.readouterr().err


def test_a_beir_folder_that_is_not_there_names_the_field(model_folder, tmp_path, capsys):
    assert main(["validate", str(config_file(tmp_path, model_folder, tmp_path / "absent"))]) == 2
    assert "task.args.beir_folder" in capsys.readouterr().err
