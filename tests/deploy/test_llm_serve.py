"""A decoder LLM export served by Ray Serve on loopback: one app for the module (Serve's start costs ~10 s)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from orchestrator.compress import Recipe
from orchestrator.deploy import export_trial, load
from tests.deploy.llm_run import MAX_NEW_TOKENS_LIMIT, write_llm_run

HAS_SERVE = all(importlib.util.find_spec(m) is not None for m in ("starlette", "fastapi", "ray", "requests"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAS_SERVE, reason="needs Ray Serve: pip install 'ray[serve]'")]
PROMPTS = ["The quick brown fox", "Lists are mutable"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(export folder, URL) of a weight-only int8 LLM export running in Ray Serve, with the export's serve config args."""
    import ray
    import yaml
    from ray import serve

    from orchestrator.deploy.serve import app
    from orchestrator.search.local_ray import init_embedded_ray

    root = tmp_path_factory.mktemp("llm-serve")
    run, _ = write_llm_run(root, {"w8serve": Recipe(drop_layers=1, bits=8, int8_activations="float")}, "w8serve")
    folder = export_trial(run, "w8serve", root / "exports").location
    args = yaml.safe_load(open(f"{folder}/serve_config.yaml"))["applications"][0]["args"]
    port = 8000 + (os.getpid() + 500) % 1000
    init_embedded_ray(num_cpus=2, runtime_env={"env_vars": {"HEDGEROW_CACHE_DIR": os.environ["HEDGEROW_CACHE_DIR"]}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app(args), name="hedgerow-llm-test", route_prefix="/")
        yield folder, f"http://127.0.0.1:{port}/"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_a_prompt_gets_the_text_load_generates(served):
    import requests

    folder, url = served
    model = load(folder)
    response = requests.post(url, json={"prompt": PROMPTS[0], "max_new_tokens": 9}, timeout=120)
    assert response.status_code == 200 and response.json() == {"text": model.generate([PROMPTS[0]], max_new_tokens=9)[0]}
    response = requests.post(url, json={"prompts": PROMPTS, "max_new_tokens": 5}, timeout=120)
    assert response.status_code == 200 and response.json() == {"texts": model.generate(PROMPTS, max_new_tokens=5)}


def test_requests_over_the_limits_are_4xx_naming_them_and_the_server_stays_up(served):
    import requests

    folder, url = served
    limit = load(folder).manifest.generation.prompt_tokens_limit
    too_long = requests.post(url, json={"prompt": "The quick brown fox jumps. " * 200, "max_new_tokens": 4}, timeout=120)
    assert too_long.status_code == 400 and f"prompt limit of {limit} tokens" in too_long.json()["error"]
    too_many = requests.post(url, json={"prompt": PROMPTS[0], "max_new_tokens": MAX_NEW_TOKENS_LIMIT + 1}, timeout=120)
    assert too_many.status_code == 400 and f"max_new_tokens_limit is {MAX_NEW_TOKENS_LIMIT}" in too_many.json()["error"]
    not_json = requests.post(url, data=b"{", headers={"content-type": "application/json"}, timeout=120)
    assert not_json.status_code == 400
    after = requests.post(url, json={"prompt": PROMPTS[1], "max_new_tokens": 3}, timeout=120)
    assert after.status_code == 200 and isinstance(after.json()["text"], str)
    info = requests.get(url, timeout=120).json()
    assert info["trial_id"] == "w8serve" and info["generation"]["max_new_tokens_limit"] == MAX_NEW_TOKENS_LIMIT
