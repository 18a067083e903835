"""Measure a decoder LLM in tokens, as serving sees it: time to first token, time per output token, tokens/s, memory.

Method (static batching). At concurrency c, c requests of `prompt_tokens` random token ids (seeded; the
first c rows of one draw, so the teacher and every candidate see the same prompts) arrive together and are
decoded together, greedily, with one KV cache: transformers' `DynamicCache` through the Hugging Face
forward (`cache=`, `use_cache=True`), so quantized Linear replacements run exactly as they serve.

- TTFT: one prefill forward of the c prompts (logits of the last position only, as `generate` computes
  them) and the first token; one per round, p50/p95 over rounds (with 2 rounds p95 is about the max).
- TPOT: one decode step at batch c, timed `decode_steps` times per round (p50/p95 over every step of
  every round). The steps are timed at mid-output context: after the prefill, the cache is padded
  (untimed, with copies of the prompt's own keys and values; attention's cost depends on length, not
  content) to prompt_tokens + (output_tokens - decode_steps) // 2. A step's cost is affine in the context,
  so the mean step there is the mean over the whole output; the growth of the cache step by step is not
  timed, and the last steps of a long output run somewhat slower than the p95 says.
  `decode_context_tokens` records the mean context the steps ran at (the prompt's, where the cache is not
  one plain DynamicLayer per layer and so is not padded).
- output_tokens_per_s = c / mean TPOT (steady decoding); prefill_tokens_per_s = c × prompt_tokens /
  median TTFT; request_seconds = mean TTFT + (output_tokens - 1) × mean TPOT.
- Peak memory, one untimed pass per concurrency (which also warms that shape up): prefill, the cache
  padded to the end of the output (prompt_tokens + output_tokens - 2), one decode step. CPU: weights +
  prompt ids + the peak of live tensor bytes that operators create (metrics' dispatch-mode counter), so
  the KV cache, the activations and DynamicCache's concatenation copies are counted as allocated. CUDA:
  `torch.cuda.max_memory_allocated` over that pass, less what was allocated before it other than this
  model's weights and the ids.
- Interleaving: with a `reference` (the teacher) each round serves the same prompts on both in lockstep:
  the two prefills back to back (candidate first in even rounds, teacher first in odd ones), then the
  decode steps alternating step by step (ABBA), so each candidate step has a teacher step beside it under
  the same background load. Each concurrency keeps the median over every such pair of (teacher step time
  ÷ candidate step time) = candidate output tokens/s ÷ teacher's (per round: `output_tokens_ratio_rounds`)
  and the median over rounds of candidate TTFT ÷ teacher TTFT. A per-machine teacher reference
  (`generation_reference`) times those ratios gives figures that hold across processes (`normalise`).
- Concurrencies run in ascending order; once TTFT p95 or TPOT p95 (as measured here, not normalised)
  exceeds its SLO, the larger concurrencies are not measured (one worker's latency only grows with the
  batch) and `not_measured` says why.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel
from torch import nn

from orchestrator.errors import InputError
from orchestrator.measure.metrics import DeviceInfo, _LiveBytes, device_info, percentile
from orchestrator.tasks.base import model_device
from orchestrator.techniques.sizes import count_params, weights_bytes


class ConcurrencyPoint(BaseModel):
    """One concurrency's latency, throughput and memory (times in ms, throughput in tokens/s)."""

    concurrency: int
    ttft_p50_ms: float
    ttft_p95_ms: float
    ttft_mean_ms: float
    tpot_p50_ms: float
    tpot_p95_ms: float
    tpot_mean_ms: float
    prefill_tokens_per_s: float
    output_tokens_per_s: float
    request_seconds: float
    peak_mem_bytes: int
    decode_context_tokens: int  # mean cache length the timed decode steps ran at
    ttft_rounds_ms: list[float]
    tpot_rounds_ms: list[float]  # mean TPOT of each round
    # With a reference: candidate ÷ reference from interleaved pairs (None without one).
    output_tokens_ratio_to_reference: float | None = None  # tokens/s, median over paired steps: > 1 decodes faster
    output_tokens_ratio_rounds: list[float] = []  # each round's median over its paired steps
    ttft_ratio_to_reference: float | None = None  # time, median over rounds: < 1 answers sooner than the reference
    ttft_ratio_rounds: list[float] = []


class GenerationMetrics(BaseModel):
    """A decoder LLM measured in tokens at each concurrency, with what it ran on and how."""

    prompt_tokens: int
    output_tokens: int
    decode_steps: int
    rounds: int
    weight_bytes: int
    kv_bytes_per_token: int
    params: int
    device: DeviceInfo
    threads: int
    points: list[ConcurrencyPoint]
    not_measured: dict[int, str] = {}  # concurrency -> why it was not measured
    measure_seconds: float = 0.0  # wall time of the measurement itself
    normalised_to: str | None = None  # the reference file the timings were scaled by (see `normalise`)

    def point(self, concurrency: int) -> ConcurrencyPoint | None:
        """The measured point at this concurrency, or None where it was not measured."""
        return next((p for p in self.points if p.concurrency == concurrency), None)


@dataclass
class _Round:
    ttft_s: float
    step_s: list[float]
    context_tokens: int


def measure_generation(
    model: nn.Module,
    prompt_tokens: int,
    output_tokens: int,
    concurrencies: list[int],
    threads: int,
    *,
    reference: nn.Module | None = None,
    rounds: int = 2,
    decode_steps: int = 16,
    ttft_slo_ms: float | None = None,
    tpot_slo_ms: float | None = None,
    vocab_size: int | None = None,
    seed: int = 0,
) -> GenerationMetrics:
    """Measure TTFT, TPOT, tokens/s and peak memory at each concurrency (static batching; see module docstring).

    `model` is a `CausalLM` (its `.hf` runs) or a Hugging Face causal LM; `reference` likewise, interleaved
    in lockstep where given (prefills back to back, decode steps alternating). The thread count is restored afterwards.
    """
    _check(prompt_tokens, output_tokens, concurrencies, threads, rounds, decode_steps, ttft_slo_ms, tpot_slo_ms, vocab_size)
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        hf = _hf(model).eval()
        ref_hf = _hf(reference).eval() if reference is not None else None
        device = model_device(hf)
        vocab = vocab_size or int(hf.config.vocab_size)
        ordered = sorted(set(concurrencies))
        prompts = torch.randint(0, vocab, (ordered[-1], prompt_tokens), generator=torch.Generator().manual_seed(seed))
        decode_context = prompt_tokens + max(0, (output_tokens - decode_steps) // 2)
        points: list[ConcurrencyPoint] = []
        not_measured: dict[int, str] = {}
        with torch.inference_mode():
            models = [hf] if ref_hf is None else [hf, ref_hf]
            _run_round(models, prompts[:1, : min(prompt_tokens, 8)].to(device), 2, 0, device)  # first-call costs
            for index, c in enumerate(ordered):
                ids = prompts[:c].to(device)
                peak = _peak_memory_bytes(model, hf, ids, prompt_tokens + output_tokens - 2, device)
                own: list[_Round] = []
                theirs: list[_Round] = []
                for r in range(rounds):
                    timed = _run_round(models if r % 2 == 0 else models[::-1], ids, decode_steps, decode_context, device)
                    own.append(timed[0] if r % 2 == 0 else timed[-1])
                    if ref_hf is not None:
                        theirs.append(timed[1] if r % 2 == 0 else timed[0])
                point = _point(c, own, theirs, prompt_tokens, output_tokens, peak)
                points.append(point)
                reason = _slo_breach(point, ttft_slo_ms, tpot_slo_ms)
                if reason:
                    not_measured.update({later: reason for later in ordered[index + 1 :]})
                    break
        params, _ = count_params(model)
        return GenerationMetrics(
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            decode_steps=decode_steps,
            rounds=rounds,
            weight_bytes=weights_bytes(model),
            kv_bytes_per_token=_kv_bytes_per_token(model),
            params=params,
            device=device_info(device),
            threads=threads,
            points=points,
            not_measured=not_measured,
            measure_seconds=round(time.perf_counter() - started, 3),
        )
    finally:
        torch.set_num_threads(previous_threads)


@torch.inference_mode()
def greedy_tokens(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """The next `new_tokens` greedy tokens [batch, new_tokens] by the loop that is timed: prefill, then cached steps."""
    if new_tokens < 1:
        raise InputError(f"greedy_tokens: new_tokens must be a positive integer, got {new_tokens!r}")
    hf = _hf(model).eval()
    cache, token = prefill(hf, prompt_ids.to(model_device(hf)))
    out = [token]
    for _ in range(new_tokens - 1):
        token = decode_step(hf, cache, token)
        out.append(token)
    return torch.stack(out, dim=1)


def describe(metrics: GenerationMetrics | None = None) -> str:
    """The method in one paragraph, for the trial record (with the settings of `metrics` where given)."""
    settings = ""
    if metrics is not None:
        settings = (
            f" Here: prompt {metrics.prompt_tokens} tokens, output {metrics.output_tokens}, {metrics.rounds} rounds of"
            f" {metrics.decode_steps} decode steps, {metrics.threads} threads on {metrics.device.name}"
            + (f", normalised to {metrics.normalised_to}" if metrics.normalised_to else ", raw timings")
            + "."
        )
    return (
        "Static batching: c requests of random prompt tokens arrive together and are decoded greedily together with a"
        " Hugging Face DynamicCache. TTFT = prefill of the c prompts + first token (p50/p95 over rounds); TPOT = one"
        " decode step at batch c with the cache padded to mid-output context (p50/p95 over every step timed);"
        " output tokens/s = c / mean TPOT; request seconds = mean TTFT + (output - 1) × mean TPOT. Peak memory ="
        " weights + the peak of live tensor bytes (CUDA: max_memory_allocated) over a prefill and one decode step with"
        " the cache at the end of the output. Interleaved with the teacher (prefills back to back, decode steps"
        " alternating ABBA); timings scale as the machine's teacher reference × the median paired ratio. Larger concurrencies are skipped once a p95 breaks"
        " its SLO." + settings
    )


def _check(
    prompt_tokens: int,
    output_tokens: int,
    concurrencies: list[int],
    threads: int,
    rounds: int,
    decode_steps: int,
    ttft_slo_ms: float | None,
    tpot_slo_ms: float | None,
    vocab_size: int | None,
) -> None:
    for name, value in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens), ("threads", threads),
                        ("rounds", rounds), ("decode_steps", decode_steps)):  # fmt: skip
        if not isinstance(value, int) or value < 1:
            raise InputError(f"measure_generation: {name} must be a positive integer, got {value!r}")
    if not concurrencies or any(not isinstance(c, int) or c < 1 for c in concurrencies):
        raise InputError(f"measure_generation: concurrencies must be a non-empty list of positive integers, got {concurrencies!r}")
    for name, slo in (("ttft_slo_ms", ttft_slo_ms), ("tpot_slo_ms", tpot_slo_ms)):
        if slo is not None and not slo > 0:
            raise InputError(f"measure_generation: {name} must be a positive number of milliseconds or None, got {slo!r}")
    if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 1):
        raise InputError(f"measure_generation: vocab_size must be a positive integer or None, got {vocab_size!r}")


def _hf(model: nn.Module) -> nn.Module:
    """The Hugging Face model that takes a KV cache: a CausalLM's `.hf`, else the model itself."""
    return getattr(model, "hf", model)


def _kv_bytes_per_token(model: nn.Module) -> int:
    if hasattr(model, "kv_bytes_per_token"):
        return int(model.kv_bytes_per_token())
    from orchestrator.tasks.llm.model import CausalLM

    return CausalLM(model).kv_bytes_per_token()


def prefill(hf: nn.Module, ids: torch.Tensor) -> tuple[object, torch.Tensor]:
    """Run the prompts into a fresh cache; return it and the first greedy token of each request."""
    from transformers import DynamicCache

    cache = DynamicCache(config=hf.config)
    out = hf(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
    return out.cache, out.logits[:, -1].argmax(-1)


def decode_step(hf: nn.Module, cache: object, tokens: torch.Tensor) -> torch.Tensor:
    """Feed one token per request through the cache; return the next greedy token of each."""
    out = hf(input_ids=tokens[:, None], cache=cache, use_cache=True)
    return out.logits[:, -1].argmax(-1)


def _pad_cache(cache: object, tokens: int) -> int:
    """Lengthen every layer's keys and values to `tokens` with copies of its own; return the cache's length after.

    Only a cache of plain DynamicLayers is padded (a sliding-window layer would drop what is added).
    """
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", [])
    if layers and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers):
        for layer in layers:
            have = layer.keys.shape[-2]
            if tokens > have:
                index = torch.arange(tokens - have, device=layer.keys.device) % have
                layer.keys = torch.cat([layer.keys, layer.keys.index_select(-2, index)], dim=-2)
                layer.values = torch.cat([layer.values, layer.values.index_select(-2, index)], dim=-2)
    return cache.get_seq_length()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[..., object], *args: object) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    result = fn(*args)
    _sync(device)
    return time.perf_counter() - start, result


def _run_round(
    models: list[nn.Module], ids: torch.Tensor, decode_steps: int, context_tokens: int, device: torch.device
) -> list[_Round]:
    """One request batch per model, in lockstep: timed prefills in turn, each cache padded to `context_tokens`
    (untimed), then `decode_steps` timed steps per model, alternating ABBA step by step so that the models'
    paired steps see the same background load."""
    caches, tokens, ttfts, contexts = [], [], [], []
    for hf in models:
        ttft_s, (cache, token) = _timed(device, prefill, hf, ids)
        contexts.append(_pad_cache(cache, context_tokens))
        caches.append(cache)
        tokens.append(token)
        ttfts.append(ttft_s)
    steps: list[list[float]] = [[] for _ in models]
    for k in range(decode_steps):
        for i in range(len(models)) if k % 2 == 0 else reversed(range(len(models))):
            seconds, tokens[i] = _timed(device, decode_step, models[i], caches[i], tokens[i])
            steps[i].append(seconds)
    return [_Round(ttfts[i], steps[i], contexts[i] + decode_steps // 2) for i in range(len(models))]


def _peak_memory_bytes(model: nn.Module, hf: nn.Module, ids: torch.Tensor, final_context: int, device: torch.device) -> int:
    """Peak bytes of serving this batch to the end of its output: weights + KV cache + activations (module docstring)."""
    reached = 0

    def serve() -> None:
        nonlocal reached
        cache, token = prefill(hf, ids)
        _pad_cache(cache, final_context)
        decode_step(hf, cache, token)
        reached = cache.get_seq_length()

    target = final_context + 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) - weights_bytes(model) - ids.nbytes
        serve()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - max(base, 0)
    else:
        tracker = _LiveBytes(preexisting=(ids, *hf.parameters(), *hf.buffers()))
        with tracker:
            serve()
        peak = weights_bytes(model) + ids.nbytes + tracker.peak
    # A cache that could not be padded: count the context it did not reach at the model's bytes per token.
    return int(peak + max(0, target - reached) * ids.shape[0] * _kv_bytes_per_token(model))


def _point(c: int, own: list[_Round], theirs: list[_Round], prompt_tokens: int, output_tokens: int, peak: int) -> ConcurrencyPoint:
    ttft = [r.ttft_s for r in own]
    steps = [s for r in own for s in r.step_s]
    tpot_mean = statistics.fmean(steps)
    ttft_mean = statistics.fmean(ttft)
    # Step k of the candidate and of the reference ran back to back: their ratio is a paired sample.
    step_ratios = [[t_s / o_s for o_s, t_s in zip(o.step_s, t.step_s)] for o, t in zip(own, theirs)]
    tokens_ratios = [statistics.median(r) for r in step_ratios]
    pooled = [r for per_round in step_ratios for r in per_round]
    ttft_ratios = [o.ttft_s / t.ttft_s for o, t in zip(own, theirs)]
    return ConcurrencyPoint(
        concurrency=c,
        ttft_p50_ms=percentile(ttft, 50) * 1e3,
        ttft_p95_ms=percentile(ttft, 95) * 1e3,
        ttft_mean_ms=ttft_mean * 1e3,
        tpot_p50_ms=percentile(steps, 50) * 1e3,
        tpot_p95_ms=percentile(steps, 95) * 1e3,
        tpot_mean_ms=tpot_mean * 1e3,
        prefill_tokens_per_s=c * prompt_tokens / statistics.median(ttft),
        output_tokens_per_s=c / tpot_mean,
        request_seconds=ttft_mean + (output_tokens - 1) * tpot_mean,
        peak_mem_bytes=peak,
        decode_context_tokens=own[0].context_tokens,
        ttft_rounds_ms=[round(t * 1e3, 3) for t in ttft],
        tpot_rounds_ms=[round(statistics.fmean(r.step_s) * 1e3, 4) for r in own],
        output_tokens_ratio_to_reference=statistics.median(pooled) if pooled else None,
        output_tokens_ratio_rounds=[round(r, 4) for r in tokens_ratios],
        ttft_ratio_to_reference=statistics.median(ttft_ratios) if ttft_ratios else None,
        ttft_ratio_rounds=[round(r, 4) for r in ttft_ratios],
    )


def _slo_breach(point: ConcurrencyPoint, ttft_slo_ms: float | None, tpot_slo_ms: float | None) -> str | None:
    """Why larger concurrencies need not be measured, or None while both p95s are within their SLOs."""
    for name, value, slo in (("TTFT", point.ttft_p95_ms, ttft_slo_ms), ("TPOT", point.tpot_p95_ms, tpot_slo_ms)):
        if slo is not None and value > slo:
            return (
                f"not measured: {name} p95 {value:.3g} ms at concurrency {point.concurrency} already exceeds the"
                f" {slo:g} ms SLO, and latency only grows with concurrency"
            )
    return None
