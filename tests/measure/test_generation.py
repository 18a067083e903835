"""A decoder LLM measured in tokens: the cached decode loop, the SLO cut, memory, the teacher ratio and its reference."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from orchestrator.errors import InputError
from orchestrator.measure.generation import prefill, describe, greedy_tokens, measure_generation
from orchestrator.measure.generation_reference import generation_reference, generation_reference_path, normalise
from orchestrator.tasks.llm.model import tiny_llama
from tests.conftest import requires_cuda

P, O = 24, 12  # prompt and output tokens: small enough for a tiny model to run in milliseconds


@pytest.fixture(scope="module")
def model():
    # A wider weight scale than the default 0.02, whose random model just repeats its input token.
    return tiny_llama(initializer_range=0.2)


def test_the_decode_loop_uses_the_cache_and_matches_greedy_generate(model):
    prompts = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(1))
    tokens = greedy_tokens(model, prompts, 6)
    generated = model.hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert torch.equal(tokens, generated[:, 12:])
    # And equal to recomputing the whole sequence each step, without any cache.
    sequence = prompts
    for step in range(6):
        with torch.no_grad():
            next_token = model(sequence)[:, -1].argmax(-1)
        assert torch.equal(next_token, tokens[:, step])
        sequence = torch.cat([sequence, next_token[:, None]], dim=1)
    # A step that saw only its own token (no cache) would predict otherwise: the check above can tell.
    with torch.no_grad():
        alone = model(tokens[:, :-1].reshape(-1, 1))[:, -1].argmax(-1).reshape(3, -1)
    assert not torch.equal(alone, tokens[:, 1:])


def test_the_cache_holds_kv_bytes_per_token_for_every_prompt_token(model):
    ids = torch.randint(0, 256, (2, P))
    with torch.inference_mode():
        cache, _ = prefill(model.hf, ids)
    held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert held == model.kv_bytes_per_token() * 2 * P


def test_points_are_measured_per_concurrency_with_consistent_figures(model):
    metrics = measure_generation(model, P, O, [4, 1, 2], threads=1, decode_steps=4)
    assert [p.concurrency for p in metrics.points] == [1, 2, 4] and metrics.not_measured == {}
    assert metrics.kv_bytes_per_token == model.kv_bytes_per_token() and metrics.threads == 1
    assert metrics.weight_bytes > 0 and metrics.params > 0 and metrics.device.kind == "cpu"
    for point in metrics.points:
        c = point.concurrency
        assert len(point.ttft_rounds_ms) == 2 and len(point.tpot_rounds_ms) == 2
        assert point.ttft_p50_ms <= point.ttft_p95_ms and point.tpot_p50_ms <= point.tpot_p95_ms
        assert point.output_tokens_per_s == pytest.approx(c * 1e3 / point.tpot_mean_ms)
        assert point.prefill_tokens_per_s == pytest.approx(c * P * 1e3 / statistics.median(point.ttft_rounds_ms), rel=1e-3)
        assert point.request_seconds == pytest.approx((point.ttft_mean_ms + (O - 1) * point.tpot_mean_ms) / 1e3)
        # Timed at mid-output context: the prompt plus half the output beyond the timed steps, plus half of those.
        assert point.decode_context_tokens == P + (O - 4) // 2 + 2
        assert point.output_tokens_ratio_to_reference is None and point.ttft_ratio_to_reference is None
    assert metrics.measure_seconds > 0
    assert "TTFT" in describe(metrics) and "1 threads" in describe(metrics)


def test_memory_grows_by_at_least_the_kv_cache_of_the_added_requests(model):
    metrics = measure_generation(model, P, O, [1, 4], threads=1, rounds=1, decode_steps=2)
    one, four = metrics.points
    final_context = P + O - 1  # tokens the cache holds once the last output token is produced
    assert one.peak_mem_bytes >= metrics.weight_bytes + metrics.kv_bytes_per_token * final_context
    assert four.peak_mem_bytes - one.peak_mem_bytes >= metrics.kv_bytes_per_token * final_context * 3


def test_an_impossible_slo_measures_only_the_first_concurrency_and_says_why(model):
    metrics = measure_generation(model, P, O, [1, 2, 4], threads=1, rounds=1, decode_steps=2, ttft_slo_ms=1e-6)
    assert [p.concurrency for p in metrics.points] == [1]
    assert set(metrics.not_measured) == {2, 4}
    assert all("TTFT p95" in reason and "concurrency 1" in reason for reason in metrics.not_measured.values())
    tpot = measure_generation(model, P, O, [1, 2], threads=1, rounds=1, decode_steps=2, tpot_slo_ms=1e-6)
    assert [p.concurrency for p in tpot.points] == [1] and "TPOT p95" in tpot.not_measured[2]
    relaxed = measure_generation(model, P, O, [1, 2], threads=1, rounds=1, decode_steps=2, ttft_slo_ms=1e6, tpot_slo_ms=1e6)
    assert [p.concurrency for p in relaxed.points] == [1, 2] and relaxed.not_measured == {}


def test_a_model_against_itself_is_near_one_and_a_deeper_reference_is_slower(model):
    itself = measure_generation(model, P, O, [2], threads=1, reference=model, rounds=3, decode_steps=8)
    point = itself.points[0]
    assert len(point.output_tokens_ratio_rounds) == 3 and len(point.ttft_ratio_rounds) == 3
    assert min(point.output_tokens_ratio_rounds) - 1e-3 <= point.output_tokens_ratio_to_reference <= max(point.output_tokens_ratio_rounds) + 1e-3
    assert point.ttft_ratio_to_reference == pytest.approx(statistics.median(point.ttft_ratio_rounds), abs=1e-3)
    # The decode ratio is a median over 24 paired steps: near 1. A tiny model's prefill takes about a millisecond, where
    # one preemption on a shared machine costs ten, so its three TTFT rounds say nothing here beyond their median.
    assert 0.5 < point.output_tokens_ratio_to_reference < 2
    # Six times the layers: six times the work per token, far beyond the noise of a shared machine.
    deeper = tiny_llama(initializer_range=0.2, layers=24)
    versus = measure_generation(model, P, O, [2], threads=1, reference=deeper, rounds=5, decode_steps=8).points[0]
    assert versus.output_tokens_ratio_to_reference > 1.5 and versus.ttft_ratio_to_reference < 1 / 1.5


def test_the_reference_is_measured_once_keyed_and_normalises_a_trial(model, tmp_path):
    args = (model, P, O, [1, 2], 1)
    first = generation_reference(*args, rounds=1, decode_steps=2, root=tmp_path)
    second = generation_reference(*args, rounds=1, decode_steps=2, root=tmp_path)
    assert first == second  # read back, not measured again
    path = generation_reference_path(*args, decode_steps=2, root=tmp_path)[0]
    assert first.path == str(path) and json.loads(path.read_text())["measured_at"] == first.measured_at
    assert generation_reference_path(model, P, O, [1, 2], 2, decode_steps=2, root=tmp_path)[0] != path
    assert generation_reference_path(model, P, O, [1, 2, 4], 1, decode_steps=2, root=tmp_path)[0] != path
    assert generation_reference_path(model, P + 1, O, [1, 2], 1, decode_steps=2, root=tmp_path)[0] != path
    assert generation_reference_path(tiny_llama(seed=1), P, O, [1, 2], 1, decode_steps=2, root=tmp_path)[0] != path

    trial = measure_generation(model, P, O, [1, 2], threads=1, reference=model, rounds=1, decode_steps=2)
    scaled = normalise(trial, first)
    assert scaled.normalised_to == first.path
    for point, raw, teacher in zip(scaled.points, trial.points, first.metrics.points):
        speed, ttft = raw.output_tokens_ratio_to_reference, raw.ttft_ratio_to_reference
        assert point.output_tokens_per_s == pytest.approx(teacher.output_tokens_per_s * speed)
        assert point.tpot_p95_ms == pytest.approx(teacher.tpot_p95_ms / speed)
        assert point.ttft_p95_ms == pytest.approx(teacher.ttft_p95_ms * ttft)
        assert point.peak_mem_bytes == raw.peak_mem_bytes
    with pytest.raises(InputError, match="reference=teacher"):
        normalise(measure_generation(model, P, O, [1], threads=1, rounds=1, decode_steps=2), first)
    with pytest.raises(InputError, match="output_tokens"):
        normalise(measure_generation(model, P, O + 1, [1], threads=1, reference=model, rounds=1, decode_steps=2), first)


@pytest.mark.parametrize(
    "field, kwargs",
    [("prompt_tokens", {"prompt_tokens": 0}), ("concurrencies", {"concurrencies": []}), ("ttft_slo_ms", {"ttft_slo_ms": -1.0})],
)
def test_bad_settings_name_the_field(model, field, kwargs):
    settings = {"prompt_tokens": P, "output_tokens": O, "concurrencies": [1], "threads": 1} | kwargs
    with pytest.raises(InputError, match=field):
        measure_generation(model, **settings)


@pytest.mark.cuda
@requires_cuda
def test_on_cuda_memory_and_timings_come_from_the_gpu():
    model = tiny_llama(initializer_range=0.2).to("cuda")
    metrics = measure_generation(model, P, O, [1, 4], threads=1, reference=model, rounds=2, decode_steps=4)
    assert metrics.device.kind == "cuda" and [p.concurrency for p in metrics.points] == [1, 4]
    one, four = metrics.points
    assert one.peak_mem_bytes >= metrics.weight_bytes + metrics.kv_bytes_per_token * (P + O - 1)
    assert four.peak_mem_bytes - one.peak_mem_bytes >= metrics.kv_bytes_per_token * (P + O - 1) * 3
    prompts = torch.randint(0, 256, (2, 12), device="cuda")
    generated = model.hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert torch.equal(greedy_tokens(model, prompts, 4), generated[:, 12:])
