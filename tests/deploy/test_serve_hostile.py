"""The Serve app under hostile load: one real app on loopback for the module, deployed from the serve config an export
writes (with the bearer token required), hit by many clients at once, bad bodies, oversize and slow bodies, and a kill."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import yaml

from orchestrator.deploy.manifest import Deployment
from orchestrator.deploy.serve import DEFAULT_MAX_BODY_BYTES, MAX_EXAMPLES_PER_REQUEST
from orchestrator.deploy.serve_config import build_serve_config, dump_serve_config
from orchestrator.deploy.serve_guard import TOKEN_ENV, Rejected, check_token, serve_token
from orchestrator.errors import InputError
from tests.deploy.conftest import free_port

HAS_SERVE = all(importlib.util.find_spec(m) is not None for m in ("starlette", "fastapi", "ray", "requests"))
serve_only = pytest.mark.skipif(not HAS_SERVE, reason="needs Ray Serve: pip install 'ray[serve]'")
TOKEN = secrets.token_urlsafe(24)
APP = "hedgerow-hostile"
BODY_TIMEOUT_S = 3.0
SLOTS = 8  # max_ongoing_requests of the test replica: small, so slow clients can fill every slot


# ---- without Ray ----------------------------------------------------------------------------------------------


def test_without_the_token_variable_the_endpoint_stays_open_and_require_token_refuses_to_start():
    assert serve_token({}) is None and serve_token({TOKEN_ENV: "  "}) is None
    check_token(None, None)  # open: no header needed
    assert serve_token({TOKEN_ENV: "s3cret"}) == b"s3cret"
    with pytest.raises(InputError, match=f"{TOKEN_ENV}: require_token is set"):
        serve_token({TOKEN_ENV: ""}, required=True)
    with pytest.raises(Rejected) as wrong:
        check_token("Bearer s3creT", b"s3cret")
    assert wrong.value.status_code == 401 and "s3cre" not in wrong.value.message + str(wrong.value.headers)


def test_the_config_names_the_token_variable_never_the_token(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    config = _config("/exports/x", "eager", threads=1)
    app = config["applications"][0]
    assert app["runtime_env"] == {"env_vars": {TOKEN_ENV: "${" + TOKEN_ENV + "}"}} and app["args"]["require_token"]
    text = dump_serve_config(config, ["test"])
    assert TOKEN not in text and "Authorization: Bearer <token>" in text and yaml.safe_load(text) == config
    open_config = build_serve_config(**_config_args("/exports/x", "eager", 1))
    assert "runtime_env" not in open_config["applications"][0] and "require_token" not in open_config["applications"][0]["args"]


def _config_args(model_path: str, runtime: str, threads: int) -> dict:
    return dict(
        app_name=APP, model_path=model_path, runtime=runtime, deployment=Deployment(instance_type=None, replicas=None, monthly_usd=None),
        instance=None, threads=threads, throughput_sps=2000.0, batch_latency_p95_ms=20.0, serving_batch_size=64,
        target_utilization=0.6, latency_slo_p95_ms=250.0,
    )  # fmt: skip


def _config(model_path: str, runtime: str, threads: int) -> dict:
    return build_serve_config(**_config_args(model_path, runtime, threads), require_token=True)


# ---- one real app ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(exports, val_inputs):
    """(port, export folder) of the fp32 export served from its serve config, token required, 8 request slots."""
    import ray
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from orchestrator.search.local_ray import init_embedded_ray

    folder = exports["fp32prun"].location
    written = yaml.safe_load(open(f"{folder}/serve_config.yaml"))["applications"][0]["args"]
    app = _config(str(folder), written["runtime"], threads=1)["applications"][0]
    app["args"]["body_timeout_s"] = BODY_TIMEOUT_S
    app["deployments"][0].update(max_ongoing_requests=SLOTS, health_check_period_s=1, health_check_timeout_s=5)
    port = free_port()
    os.environ[TOKEN_ENV] = TOKEN  # the raylet inherits it, as from `ray start` on a serving node
    try:
        init_embedded_ray(num_cpus=2, runtime_env={"env_vars": {"HEDGEROW_CACHE_DIR": os.environ["HEDGEROW_CACHE_DIR"]}})
    finally:
        del os.environ[TOKEN_ENV]  # the rest of the session serves open endpoints
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        _get_global_client().deploy_apps(ServeDeploySchema.model_validate({"applications": [app]}))
        _wait_running()
        yield port, folder
    finally:
        serve.shutdown()
        ray.shutdown()


def _wait_running(timeout_s: float = 120.0) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(APP)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status == "DEPLOY_FAILED":
            raise RuntimeError(f"the app failed to deploy: {status.message}")
        time.sleep(0.2)
    raise TimeoutError(f"{APP} not running after {timeout_s}s")


def _session(port: int):
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    return session, f"http://127.0.0.1:{port}/"


def _raw(port: int, head: bytes, body: bytes = b"", timeout_s: float = 60.0) -> socket.socket:
    """A connection that has sent `head` (request line and headers, CRLF-terminated) and `body`, and nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.sendall(head + b"\r\n" + body)
    return sock


def _post_head(extra: str) -> bytes:
    return f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{extra}".encode()


def _response(sock: socket.socket) -> tuple[int, dict]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = json.loads(response.read())
    sock.close()
    return response.status, body


@serve_only
@pytest.mark.slow
def test_sixty_four_clients_at_once_each_get_their_own_answer(served, val_inputs):
    from orchestrator.deploy import load

    port, folder = served
    session, url = _session(port)
    expected = load(folder).predict(val_inputs[:96])

    def one(i: int) -> tuple[int, int, list]:
        count = 1 + i % 3
        response = session.post(url, json={"inputs": val_inputs[i : i + count].tolist()}, timeout=120)
        return i, response.status_code, response.json().get("outputs")

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    for i, status, outputs in results:
        assert status == 200, (i, outputs)
        got = torch.tensor(outputs)
        assert got.shape == (1 + i % 3, 10) and torch.allclose(got, expected[i : i + 1 + i % 3], atol=1e-5)


HOSTILE = [  # (what, body or (method, body), status, what the message says)
    ("malformed JSON", b'{"inputs": [1,', 400, "not JSON"),
    ("empty body", b"", 400, "not JSON"),
    ("invalid UTF-8", b'{"inputs": "\xff\xfe"}', 400, "not UTF-8 (invalid byte at offset 12)"),
    ("a JSON array", b"[1, 2]", 400, "got a JSON array"),
    ("a JSON string", b'"inputs"', 400, "got a JSON string"),
    ("NaN", b'{"inputs": NaN}', 400, "NaN is not a number JSON allows"),
    ("Infinity", b'{"inputs": [-Infinity]}', 400, "-Infinity is not a number JSON allows"),
    ("overflow to inf", json.dumps({"inputs": [[[1.0] * 8] * 8]}).replace("1.0", "1e999", 1).encode(), 400, "infinite"),
    ("no inputs", b'{"input": []}', 400, "expected a JSON object"),
    ("wrong shape", b'{"inputs": [[1.0, 2.0]]}', 400, "got shape [1, 2]"),
    ("ragged", b'{"inputs": [[1, 2], [3]]}', 400, "not a rectangular array"),
    ("strings", json.dumps({"inputs": [[["a"] * 8] * 8]}).encode(), 400, "not a rectangular array"),
    ("too many examples", json.dumps({"inputs": [[[[0] * 8] * 8]] * (MAX_EXAMPLES_PER_REQUEST + 1)}).encode(), 400,
     f"at most {MAX_EXAMPLES_PER_REQUEST}"),
    ("nested too deeply", b"[" * 200_000 + b"]" * 200_000, 400, "nested too deeply"),
    ("a 5,000-digit number", b'{"inputs": ' + b"9" * 5000 + b"}", 400, "not JSON"),
    ("PUT", ("PUT", b"{}"), 405, "method PUT is not served"),
]  # fmt: skip


@serve_only
@pytest.mark.slow
def test_hostile_bodies_are_4xx_naming_the_problem_while_good_requests_beside_them_are_answered(served, val_inputs):
    from orchestrator.deploy import load

    port, folder = served
    session, url = _session(port)
    expected = load(folder).predict(val_inputs[:8])

    def hostile(case):
        method, body = case[1] if isinstance(case[1], tuple) else ("POST", case[1])
        response = session.request(method, url, data=body, headers={"Content-Type": "application/json"}, timeout=120)
        return case, response.status_code, response.json().get("error", "")

    def good(i: int):
        return i, session.post(url, json={"inputs": val_inputs[i].tolist()}, timeout=120)

    with ThreadPoolExecutor(24) as pool:
        bad = [pool.submit(hostile, case) for case in HOSTILE]
        fine = [pool.submit(good, i) for i in range(8)]
        for future in bad:
            (what, _, status, message), got_status, error = future.result()
            assert (got_status, message in error) == (status, True), (what, got_status, error)
        for future in fine:
            i, response = future.result()
            assert response.status_code == 200
            assert torch.allclose(torch.tensor(response.json()["outputs"]), expected[i : i + 1], atol=1e-5)
    assert session.get(url, timeout=60).json()["trial_id"] == "fp32prun"  # the replica is still the one it was


@serve_only
@pytest.mark.slow
def test_a_body_over_the_limit_is_413_before_it_is_read_or_parsed_and_the_largest_legitimate_one_is_answered(served):
    port, _ = served
    limit = DEFAULT_MAX_BODY_BYTES
    # Content-Length over the limit: answered before a byte of the body is sent.
    status, body = _response(_raw(port, _post_head(f"Content-Length: {limit + 1}\r\n")))
    assert status == 413 and f"limit of {limit} bytes" in body["error"]
    # Chunked, no Content-Length: the server stops at the limit without waiting for the end of the body
    # (a 408 would mean it waited for the terminating chunk, which never comes).
    chunk = b"x" * 65536
    sock = _raw(port, _post_head("Transfer-Encoding: chunked\r\n"))
    for _ in range(limit // len(chunk) + 1):
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    status, body = _response(sock)
    assert status == 413 and f"limit of {limit} bytes" in body["error"]
    # The largest request the app takes (MAX_EXAMPLES_PER_REQUEST examples, every float written out in full) fits.
    session, url = _session(port)
    inputs = (torch.rand(MAX_EXAMPLES_PER_REQUEST, 1, 8, 8) * -1e-5).tolist()
    data = json.dumps({"inputs": inputs}).encode()
    assert 0.75 * limit < len(data) <= limit
    response = session.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=120)
    assert response.status_code == 200 and len(response.json()["outputs"]) == MAX_EXAMPLES_PER_REQUEST


def _silent(sock: socket.socket) -> bool:
    """Whether the server has sent nothing on this connection yet."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # data, or b"" for a closed connection
        return False
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


@serve_only
@pytest.mark.slow
def test_slow_clients_do_not_stall_a_fast_one_and_free_their_slots_after_the_body_timeout(served, val_inputs):
    port, _ = served
    session, url = _session(port)
    slow_head = socket.create_connection(("127.0.0.1", port), timeout=60)
    slow_head.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # headers never finish
    slow_body = _raw(port, _post_head("Content-Length: 1000\r\n"), b'{"inputs": [')  # body never finishes
    started = time.monotonic()
    fast = session.post(url, json={"inputs": val_inputs[0].tolist()}, timeout=60)
    assert fast.status_code == 200 and _silent(slow_body) and _silent(slow_head)
    status, body = _response(slow_body)
    assert status == 408 and f"within {BODY_TIMEOUT_S:g} s" in body["error"]
    assert time.monotonic() - started < BODY_TIMEOUT_S + 10
    # Slow bodies in every one of the replica's request slots: a fast request waits for the body timeout, no longer.
    slow = [_raw(port, _post_head("Content-Length: 1000\r\n"), b"{") for _ in range(SLOTS)]
    time.sleep(0.5)
    started = time.monotonic()
    fast = session.post(url, json={"inputs": val_inputs[1].tolist()}, timeout=60)
    waited_s = time.monotonic() - started
    assert fast.status_code == 200 and waited_s < BODY_TIMEOUT_S + 10, waited_s
    assert [_response(sock)[0] for sock in slow] == [408] * SLOTS
    assert _silent(slow_head)  # still connected, costing a socket and nothing else
    slow_head.close()


@serve_only
@pytest.mark.slow
def test_the_bearer_token_is_required_compared_and_never_echoed_or_logged(served, val_inputs):
    import ray
    import requests

    port, _ = served
    url = f"http://127.0.0.1:{port}/"
    body = {"inputs": val_inputs[0].tolist()}
    wrong = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    cases = [
        ("POST", {}, 'Bearer'),
        ("GET", {}, 'Bearer'),
        ("POST", {"Authorization": f"Bearer {wrong}"}, 'Bearer error="invalid_token"'),
        ("GET", {"Authorization": f"Bearer {wrong}"}, 'Bearer error="invalid_token"'),
        ("POST", {"Authorization": f"Basic {TOKEN}"}, 'Bearer error="invalid_token"'),
        ("POST", {"Authorization": TOKEN}, 'Bearer error="invalid_token"'),
    ]
    for method, headers, challenge in cases:
        response = requests.request(method, url, json=body, headers=headers, timeout=60)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == challenge
        echoed = response.text + json.dumps(dict(response.headers))
        assert TOKEN not in echoed and wrong not in echoed
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).json()["trial_id"] == "fp32prun"
    assert requests.post(url, json=body, headers={"authorization": f"bearer  {TOKEN} "}, timeout=60).status_code == 200
    logs = ray._private.worker._global_node.get_logs_dir_path()
    for root, _, files in os.walk(logs):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                text = handle.read()
            assert TOKEN.encode() not in text and wrong.encode() not in text, os.path.join(root, name)


@serve_only
@pytest.mark.slow
def test_a_replica_killed_under_load_is_restarted_by_serve_and_answers_again_within_a_bound(served, val_inputs):
    import threading

    import ray

    port, _ = served
    session, url = _session(port)
    body = {"inputs": val_inputs[:2].tolist()}

    def replicas() -> set[str]:
        names = ray.util.list_named_actors(all_namespaces=True)
        return {a["name"] for a in names if a["name"].startswith("SERVE_REPLICA::") and APP in a["name"]}

    before = replicas()
    assert len(before) == 1
    outcomes: list[tuple[float, object]] = []  # (seconds after the kill, status or exception name)
    killed_at: list[float] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status: object = session.post(url, json=body, timeout=3).status_code
            except Exception as exc:  # a request in flight on the killed replica, or queued past the timeout
                status = type(exc).__name__
            if killed_at:
                outcomes.append((time.monotonic() - killed_at[0], status))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # under load
    ray.kill(ray.get_actor(next(iter(before)), namespace="serve"), no_restart=True)
    killed_at.append(time.monotonic())
    deadline = killed_at[0] + 60
    while time.monotonic() < deadline and sum(status == 200 for _, status in list(outcomes)[-4:]) < 4:
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join()
    failures = [(t, str(status)) for t, status in outcomes if status != 200]
    last_failure_s = max((t for t, _ in failures), default=0.0)
    recovered_s = min((t for t, status in outcomes if status == 200 and t >= last_failure_s), default=float("inf"))
    print(f"replica killed under load: answering again {recovered_s:.1f} s after; failures: {failures}")
    assert recovered_s < 30 and [status for _, status in outcomes[-4:]] == [200] * 4
    assert replicas() and replicas() != before
