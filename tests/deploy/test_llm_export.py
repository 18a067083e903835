"""A decoder LLM run exported: a Hugging Face folder of the float weights, the quantization re-applied at load, greedy
generation with the export's limits, checksums, and the Serve request logic (without Ray)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.deploy import QualityMismatch, UnsafeExport, VerificationError, export_trial, load
from orchestrator.deploy.generation import greedy_ids
from orchestrator.deploy.manifest import Manifest, sha256_file
from orchestrator.deploy.serve import Predictor, ServeArgs
from orchestrator.errors import InputError
from orchestrator.threads import torch_threads
from tests.deploy.conftest import run_cli
from tests.deploy.llm_run import MAX_NEW_TOKENS_LIMIT, TRIAL_THREADS, write_llm_run

RECIPES = {
    "floatllm": Recipe(drop_layers=1, kd_steps=2, kd_batch_size=4),  # pruned and distilled, float
    "w8llm": Recipe(drop_layers=1, bits=8, int8_activations="float"),  # weight-only int8
    "w4llm": Recipe(bits=4, int4_group_size=32),  # weight-only int4 (the head, 300 rows, stays float)
    "dyn8llm": Recipe(bits=8, lm_head_bits=32),  # dynamic int8 (W8A8), float head
}
PROMPTS = ["The quick brown fox", "Python reads the source file"]
CONTEXT = 512  # tiny_llama's max_position_embeddings
PROMPT_LIMIT = CONTEXT - MAX_NEW_TOKENS_LIMIT


@pytest.fixture(scope="module")
def llm_exports(tmp_path_factory):
    """(task, {trial_id: ExportResult}, run folder): every trial of a tiny LLM run, exported to a local folder."""
    root = tmp_path_factory.mktemp("llm-run")
    run, task = write_llm_run(root, RECIPES, recommended="floatllm")
    dest = tmp_path_factory.mktemp("llm-exports")
    return task, {trial_id: export_trial(run, trial_id, dest) for trial_id in RECIPES}, run


@pytest.fixture(scope="module")
def rebuilt(llm_exports):
    """Each trial's candidate and its float model, built here by apply_recipe apart from any export."""
    task, _, _ = llm_exports
    out = {}
    for trial_id, recipe in RECIPES.items():
        with torch_threads(TRIAL_THREADS):
            compressed = apply_recipe(task, recipe, teacher=task.teacher(), keep_float_model=True)
        float_model = compressed.float_model if compressed.float_model is not None else compressed.model
        out[trial_id] = (compressed.model.eval(), float_model.eval())
    return out


def test_the_export_is_a_hugging_face_folder_of_the_float_weights_before_quantization(llm_exports, rebuilt):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task, results, _ = llm_exports
    windows = task.windows("val")
    for trial_id in ("floatllm", "w8llm"):
        folder = f"{results[trial_id].location}/model"
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval()
        assert hf.config.num_hidden_layers == 3  # drop_layers=1 of 4: the config is the pruned model's
        assert all(type(m) is torch.nn.Linear for n, m in hf.named_modules() if n.endswith("proj"))  # not quantized
        with torch.inference_mode():
            assert torch.equal(hf(windows).logits.float(), rebuilt[trial_id][1](windows))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert tokenizer(PROMPTS[0])["input_ids"] == task.tokenizer(PROMPTS[0])["input_ids"]


def test_the_manifest_records_the_quantization_limits_quality_and_every_file(llm_exports):
    _, results, run = llm_exports
    quantization = {t: results[t].manifest.generation.quantization for t in RECIPES}
    assert quantization["floatllm"] is None
    assert (quantization["w8llm"].method, quantization["w8llm"].bits, quantization["w8llm"].int8_activations) == ("weight_only", 8, "float")
    assert (quantization["w4llm"].method, quantization["w4llm"].bits, quantization["w4llm"].group_size) == ("weight_only", 4, 32)
    assert (quantization["dyn8llm"].method, quantization["dyn8llm"].lm_head_bits) == ("dynamic_int8", 32)
    manifest = results["w8llm"].manifest
    spec = manifest.generation
    assert (spec.context_tokens, spec.max_new_tokens_limit, spec.prompt_tokens_limit) == (CONTEXT, MAX_NEW_TOKENS_LIMIT, PROMPT_LIMIT)
    q = manifest.quality
    assert q.metric == "log_perplexity" and q.passed and abs(q.rebuilt_value - q.trial_value) <= q.tolerance
    assert q.tolerance == pytest.approx(math.log(1.05) / 10) and "max_quality_drop" in q.tolerance_reason
    listed = {f.path: f.sha256 for f in manifest.files}
    root = results["w8llm"].location
    assert manifest.weights == "model/model.safetensors" and "model/config.json" in listed and "model/tokenizer.json" in listed
    assert all(sha256_file(f"{root}/{path}") == digest for path, digest in listed.items())
    serve = yaml.safe_load(open(f"{root}/serve_config.yaml"))["applications"][0]
    assert serve["args"]["batch_wait_timeout_s"] == 0.0  # no latency SLO in an LLM's traffic: no batch wait
    assert serve["args"]["runtime"] == "eager" and serve["deployments"][0]["num_replicas"] == 1


@pytest.mark.parametrize("trial_id", list(RECIPES))
def test_the_loaded_export_reproduces_the_rebuilt_candidate_logits_and_greedy_tokens(llm_exports, rebuilt, trial_id):
    task, results, _ = llm_exports
    model = load(results[trial_id].location)
    candidate = rebuilt[trial_id][0]
    windows = task.windows("val")
    with torch.inference_mode():
        assert torch.equal(model.module(windows), candidate(windows))
    ids = [task.tokenizer(p)["input_ids"] for p in PROMPTS]
    eos = model.manifest.generation.eos_token_ids
    expected = [greedy_ids(getattr(candidate, "model", candidate).hf, i, 12, eos) for i in ids]
    assert model.generate_ids(PROMPTS, max_new_tokens=12) == expected
    texts = model.generate(PROMPTS, max_new_tokens=12)
    assert texts == load(results[trial_id].location).generate(PROMPTS, max_new_tokens=12)  # greedy: every time alike
    assert texts == [model.generate([p], max_new_tokens=12)[0] for p in PROMPTS]  # one at a time: no batch effects


def test_greedy_decoding_with_the_cache_is_the_argmax_of_the_full_forward(llm_exports):
    _, results, _ = llm_exports
    model = load(results["floatllm"].location)
    prompt = model._tokenizer_of()(PROMPTS[0])["input_ids"]
    new = model.generate_ids([PROMPTS[0]], max_new_tokens=6)[0]
    ids = torch.tensor([prompt + new])
    with torch.inference_mode():
        argmax = model.module(ids)[0, len(prompt) - 1 : -1].argmax(-1).tolist()
    assert new == argmax


def test_generation_refuses_what_breaks_the_limits_and_names_them(llm_exports):
    _, results, _ = llm_exports
    model = load(results["floatllm"].location)
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 100
    assert len(model._tokenizer_of()(long_prompt)["input_ids"]) > PROMPT_LIMIT
    cases = [
        (([long_prompt], 4), f"prompt limit of {PROMPT_LIMIT} tokens"),
        ((PROMPTS, MAX_NEW_TOKENS_LIMIT + 1), f"max_new_tokens_limit is {MAX_NEW_TOKENS_LIMIT}"),
        ((PROMPTS, 0), f"outside 1..{MAX_NEW_TOKENS_LIMIT}"),
        ((PROMPTS, True), "whole number"),
        ((["ok", 3], 4), r"prompts\[1\]: expected a string"),
        (("one string", 4), "pass \\[prompt\\]"),
        (([], 4), "non-empty list"),
        ((["ok", ""], 4), r"prompts\[1\]: the prompt is empty"),
    ]
    for (prompts, max_new), message in cases:
        with pytest.raises(InputError, match=message):
            model.generate(prompts, max_new_tokens=max_new)
    assert len(model.generate_ids([PROMPTS[0]], max_new_tokens=MAX_NEW_TOKENS_LIMIT)[0]) <= MAX_NEW_TOKENS_LIMIT


def test_a_tampered_or_added_file_is_refused_naming_it(llm_exports, tmp_path, capsys):
    _, results, _ = llm_exports
    copy = tmp_path / "export"
    shutil.copytree(results["w8llm"].location, copy)
    weights = copy / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte of the last tensor changed
    weights.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="model/model.safetensors: refused: SHA-256"):
        load(copy)
    status, _, err = run_cli(["verify", str(copy)], capsys)
    assert status == 2 and "model/model.safetensors" in err
    shutil.copy(results["w8llm"].location + "/model/model.safetensors", weights)
    load(copy)  # intact again
    (copy / "model" / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(UnsafeExport, match="model/model.safetensors.index.json: not one of the manifest's verified files"):
        load(copy)


def test_older_manifests_without_the_llm_fields_still_read(llm_exports):
    _, results, _ = llm_exports
    raw = json.loads(results["floatllm"].manifest.model_dump_json())
    raw.pop("generation")
    raw["quality"].pop("tolerance_reason")
    manifest = Manifest.model_validate(raw)
    assert manifest.generation is None and manifest.quality.tolerance_reason is None


def test_a_rebuild_off_the_trial_by_more_than_the_tolerance_exports_nothing(llm_exports, tmp_path):
    _, _, run = llm_exports
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    record_path = copy / "trials" / f"{RECIPES['floatllm'].key()}.json"
    record = json.loads(record_path.read_text())
    record["quality"]["value"] += 0.01  # a trial measured 0.01 nats per token away from what the rebuild gives
    record_path.write_text(json.dumps(record))
    with pytest.raises(QualityMismatch, match="nats per token"):
        export_trial(copy, "floatllm", tmp_path / "out")
    assert not any((tmp_path / "out").rglob("manifest.json"))
    result = export_trial(copy, "floatllm", tmp_path / "out", tolerance=0.02)  # a looser tolerance given explicitly
    assert result.manifest.quality.tolerance == 0.02


def test_the_serve_logic_answers_generation_requests_as_load_generates(llm_exports):
    _, results, _ = llm_exports
    location = results["w4llm"].location
    predictor = Predictor(ServeArgs(model_path=location, threads=1))
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 100
    one, many, too_long, too_many, not_text, both = predictor.predict_requests([
        {"prompt": PROMPTS[0], "max_new_tokens": 7},
        {"prompts": PROMPTS, "max_new_tokens": 7},
        {"prompt": long_prompt},
        {"prompt": PROMPTS[0], "max_new_tokens": MAX_NEW_TOKENS_LIMIT + 1},
        {"prompt": 3},
        {"prompt": "a", "prompts": ["b"]},
    ])  # fmt: skip
    direct = load(location).generate(PROMPTS, max_new_tokens=7)
    assert one == {"text": direct[0]} and many == {"texts": direct}
    assert str(PROMPT_LIMIT) in too_long["error"] and str(MAX_NEW_TOKENS_LIMIT) in too_many["error"]
    assert "expected a string" in not_text["error"] and "expected a JSON object" in both["error"]
    info = predictor.info()["generation"]
    assert info["max_new_tokens_limit"] == MAX_NEW_TOKENS_LIMIT and info["quantization"] == "int4_weight_only"


@pytest.mark.parametrize(("slo_ms", "wait_s"), [(None, 0.0), (250.0, 0.025), (2000.0, 0.05)])
def test_the_serve_config_waits_for_a_batch_only_where_there_is_a_latency_slo(slo_ms, wait_s):
    from orchestrator.deploy.manifest import Deployment
    from orchestrator.deploy.serve_config import build_serve_config

    deployment = Deployment(instance_type=None, replicas=1, monthly_usd=None)
    cfg = build_serve_config(
        app_name="hedgerow-t", model_path="/e", runtime="eager", deployment=deployment, instance=None, threads=2,
        throughput_sps=3.0, batch_latency_p95_ms=0.0, serving_batch_size=1, target_utilization=0.6,
        latency_slo_p95_ms=slo_ms,
    )  # fmt: skip
    assert cfg["applications"][0]["args"]["batch_wait_timeout_s"] == wait_s
