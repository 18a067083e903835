"""The one real decoder LLM in the suite: the bundled SmolLM2-135M-Instruct, loaded offline from its GGUF file."""

from __future__ import annotations

import math

import pytest
import torch

from orchestrator.tasks import load_task

pytestmark = pytest.mark.slow


def test_smollm2_loads_offline_scores_a_sane_perplexity_and_generates_text():
    task = load_task("smollm2", {"n_val": 2, "n_test": 2, "n_train": 2})
    teacher = task.teacher()
    config = teacher.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads) == (30, 576, 9, 3)
    assert teacher.hf.lm_head.weight is teacher.hf.model.embed_tokens.weight  # tied, as shipped
    torch.set_num_threads(2)
    evaluation = task.evaluate_items(teacher, "val")
    # A 135M instruct model on English technical prose: perplexity in the tens (measured 31 over 32 windows here);
    # uniform guessing over its 49,152 tokens would be 49,152.
    assert 5 < math.exp(evaluation.quality["value"]) < 200
    ids = task.tokenizer("The Python interpreter reads", return_tensors="pt").input_ids
    with torch.inference_mode():
        out = teacher.hf.generate(ids, max_new_tokens=8, do_sample=False)
    text = task.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert len(text.strip()) > 0 and any(c.isalpha() for c in text)
