"""The serving module: request parsing and batching without Ray Serve; the app itself where Serve is installed."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from orchestrator.deploy import load
from orchestrator.deploy.serve import Predictor, ServeArgs, app, parse_inputs

HAS_SERVE = (
    all(importlib.util.find_spec(m) is not None for m in ("starlette", "fastapi"))
    and importlib.util.find_spec("ray") is not None
)


def test_parse_inputs_accepts_one_example_or_a_list():
    one = [[0.0] * 8 for _ in range(8)]
    assert parse_inputs({"inputs": [one]}, (1, 8, 8)).shape == (1, 1, 8, 8)
    assert parse_inputs({"inputs": [[one], [one]]}, (1, 8, 8)).shape == (2, 1, 8, 8)
    assert parse_inputs({"inputs": [one]}, (1, 8, 8)).dtype == torch.float32


@pytest.mark.parametrize(
    "body, message",
    [
        ([1, 2], "expected a JSON object"),
        ({"x": 1}, "expected a JSON object"),
        ({"inputs": [[1, 2], [3]]}, "not a rectangular array"),
        ({"inputs": [[1.0, 2.0]]}, "got shape [1, 2]"),
        ({"inputs": [[[float("nan")] * 8] * 8]}, "NaN"),
        ({"inputs": []}, "got shape [0]"),
    ],
)
def test_parse_inputs_says_what_is_expected(body, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_inputs(body, (1, 8, 8))


def test_predictor_batches_requests_and_answers_each_one(exports, val_inputs):
    folder = exports["int8stat"].location
    predictor = Predictor(ServeArgs(model_path=folder, threads=1))
    bodies = [{"inputs": val_inputs[:3].tolist()}, {"inputs": "nope"}, {"inputs": val_inputs[3].tolist()}]
    responses = predictor.predict_requests(bodies)
    expected = load(folder).predict(val_inputs[:4])
    assert torch.equal(torch.tensor(responses[0]["outputs"]), expected[:3])
    assert "error" in responses[1] and "outputs" not in responses[1]
    assert torch.equal(torch.tensor(responses[2]["outputs"]), expected[3:4])
    assert responses[2]["argmax"] == expected[3:4].argmax(1).tolist()
    assert predictor.info() == {
        "run_id": exports["int8stat"].manifest.run_id,
        "trial_id": "int8stat",
        "runtime": "eager",
        "device": "cpu",
        "input_shape": [1, 8, 8],
    }


def test_serve_args_refuse_unknown_keys():
    with pytest.raises(ValueError, match="model_pth"):
        ServeArgs.model_validate({"model_pth": "x"})


@pytest.mark.skipif(HAS_SERVE, reason="Ray Serve is installed here; this checks the message where it is not")
def test_app_without_ray_serve_says_what_to_install():
    with pytest.raises(ImportError, match=r"pip install 'ray\[serve\]'"):
        app({"model_path": "/nowhere"})


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SERVE, reason="needs Ray Serve: pip install 'ray[serve]'")
def test_serve_app_answers_http_requests_with_the_exports_outputs(exports, val_inputs, tmp_path):
    import os

    import ray
    import requests
    import yaml
    from ray import serve

    from orchestrator.search.local_ray import init_embedded_ray

    folder = exports["fp32prun"].location
    config = yaml.safe_load(open(f"{folder}/serve_config.yaml"))
    args = config["applications"][0]["args"]
    port = 8000 + os.getpid() % 1000
    init_embedded_ray(
        num_cpus=2,
        runtime_env={"env_vars": {"HEDGEROW_CACHE_DIR": os.environ["HEDGEROW_CACHE_DIR"]}},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app(args), name="hedgerow-test", route_prefix="/")
        url = f"http://127.0.0.1:{port}/"
        response = requests.post(url, json={"inputs": val_inputs[:4].tolist()}, timeout=60)
        assert response.status_code == 200
        assert torch.equal(torch.tensor(response.json()["outputs"]), load(folder).predict(val_inputs[:4]))
        bad = requests.post(url, json={"inputs": [[1, 2]]}, timeout=60)
        assert bad.status_code == 400 and "expected" in bad.json()["error"]
        assert requests.get(url, timeout=60).json()["trial_id"] == "fp32prun"
    finally:
        serve.shutdown()
        ray.shutdown()
