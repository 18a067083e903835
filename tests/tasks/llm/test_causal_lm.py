"""The causal-LM task on a tiny Llama folder: windows, perplexity with its interval, diagnostics, the teacher's
cached distribution, distillation, and every bad input refused with exit-2 errors naming what is wrong."""

from __future__ import annotations

import json
import math

import pytest
import torch

from orchestrator.errors import InputError
from orchestrator.tasks import load_task
from orchestrator.tasks.llm.causal_lm import CausalLMTask, perplexity_bound, perplexity_increase
from orchestrator.tasks.llm.perplexity import nll_per_window
from tests.llm_models import tiny_llm_folder, write_text

SMALL = dict(window_tokens=32, train_window_tokens=16, n_val=4, n_test=5, n_train=8, top_k=8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    return tiny_llm_folder(root / "model"), write_text(root / "text.txt", repeats=2)


@pytest.fixture(scope="module")
def task(files) -> CausalLMTask:
    model, text = files  # a fresh folder: its cache entries (keyed by the model file) are new too
    return load_task("examples.hf_causal_lm_task:make_task", {"model_path": str(model), "text_file": str(text), **SMALL})


def test_splits_hold_the_asked_windows_and_distillation_windows_are_cut_shorter(task):
    assert task.windows("val").shape == (4, 32) and task.windows("test").shape == (5, 32)
    assert task.windows("train").shape == (16, 16)  # 8 windows of 32 tokens, each cut in two
    ids, packed = task.data("val")
    assert packed.shape == (4, 32, 2 * 8 + 1)


def test_teacher_log_perplexity_is_the_mean_window_nll_and_agrees_with_itself(task):
    teacher = task.teacher()
    evaluation = task.evaluate_items(teacher, "val")
    ids = task.windows("val")
    with torch.inference_mode():
        expected = nll_per_window(teacher(ids), ids)
    assert torch.allclose(evaluation.items, expected, atol=1e-5)
    quality = evaluation.quality
    assert quality["metric"] == "log_perplexity" and quality["higher_is_better"] is False
    assert quality["value"] == pytest.approx(float(expected.mean()))
    assert quality["ci95_low"] <= quality["value"] <= quality["ci95_high"]
    assert evaluation.diagnostics["perplexity"] == pytest.approx(math.exp(quality["value"]))
    assert evaluation.diagnostics["kl_per_token"] == pytest.approx(0.0, abs=1e-5)
    assert evaluation.diagnostics["top1_agreement"] == 1.0


def test_a_changed_model_shows_kl_and_disagreement(task):
    import copy

    changed = copy.deepcopy(task.teacher())
    with torch.no_grad():
        for p in changed.hf.model.layers[0].mlp.parameters():
            p.mul_(-3.0)
    diagnostics = task.evaluate_items(changed, "val").diagnostics
    assert diagnostics["kl_per_token"] > 1e-3 and diagnostics["top1_agreement"] < 1.0


def test_the_teachers_distribution_is_cached_on_disk_once(task, files):
    path = task.cache_path("val")
    task.data("val")
    assert path.is_file()
    written = path.stat().st_mtime_ns
    model, text = files
    other = CausalLMTask(model_path=str(model), text_file=str(text), **SMALL)  # a new process would do the same
    assert torch.equal(other.data("val")[1], task.data("val")[1]) and path.stat().st_mtime_ns == written
    assert other.cache_bytes()["val"] == path.stat().st_size


def test_distillation_toward_the_cached_top_k_lowers_its_loss(task):
    from orchestrator.compress.recipe import Recipe, apply_recipe

    recipe = Recipe(prune_ffn_ratio=0.5, kd_steps=30, kd_batch_size=4, kd_learning_rate=3e-3, kd_temperature=1.0, kd_alpha=0.9)
    compressed = apply_recipe(task, recipe, device=torch.device("cpu"), teacher=task.teacher())
    kd = next(s for s in compressed.record.steps if s.technique == "kd")
    assert kd.details["final_loss"] < kd.details["first_loss"]


def test_bound_in_perplexity_terms():
    assert perplexity_bound(0.05) == pytest.approx(math.log(1.05))
    assert perplexity_increase(perplexity_bound(0.05)) == pytest.approx(0.05)


def test_a_text_too_short_for_the_windows_names_the_counts(files, tmp_path):
    model, _ = files
    short = tmp_path / "short.txt"
    short.write_text("A few words only.", encoding="utf-8")
    with pytest.raises(InputError, match=r"short\.txt: 0 windows of 32 tokens, but n_test 5 \+ n_val 4"):
        CausalLMTask(model_path=str(model), text_file=str(short), **SMALL)


def test_a_model_that_is_not_a_causal_lm_names_its_architecture(files, tmp_path):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    with pytest.raises(InputError, match=r"bert.*BertModel \(bert\), not a causal language model"):
        CausalLMTask(model_path=str(folder), text_file=str(files[1]), **SMALL)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"GGUF\x03\x00\x00\x00" + b"\x00" * 40, "cannot read the model's config"),  # a GGUF header, then nothing
        (b"PK\x03\x04 not gguf", "is not a GGUF file"),
    ],
)
def test_a_truncated_or_foreign_gguf_file_is_refused_naming_it(files, tmp_path, content, expected):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=rf"broken\.gguf.*{expected}|{expected}.*broken\.gguf"):
        CausalLMTask(model_path=str(bad), text_file=str(files[1]), **SMALL)


def test_a_missing_model_or_text_names_the_path(files, tmp_path):
    with pytest.raises(InputError, match="task.args.model_path: .*nowhere: no such file or folder"):
        CausalLMTask(model_path=str(tmp_path / "nowhere"), **SMALL)
    with pytest.raises(InputError, match="task.args.text_file: .*absent.txt: no such file"):
        CausalLMTask(model_path=str(files[0]), text_file=str(tmp_path / "absent.txt"), **SMALL)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(InputError, match="has a config.json but no weights"):
        CausalLMTask(model_path=str(tmp_path / "empty"), **SMALL)
