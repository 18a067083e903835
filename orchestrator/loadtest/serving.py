"""The export served as its serve_config.yaml says, but as one replica on 127.0.0.1: what one replica of the fleet is.

The application keeps the export's own Serve config (import path, args: runtime, device, threads, max_batch_size,
batch_wait_timeout_s; max_ongoing_requests), with four changes: the model path is the verified local folder, the
replicas are one (no autoscaling), the replica asks Ray for the CPUs it runs threads on, and a fresh bearer token
(HEDGEROW_SERVE_TOKEN) guards it, so no other local program can add load. Ray is the embedded one (loopback only,
token authentication), and the HTTP proxy listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

from orchestrator.deploy.serve_config import IMPORT_PATH
from orchestrator.deploy.serve_guard import TOKEN_ENV
from orchestrator.loadtest.driver import check_loopback
from orchestrator.search.local_ray import LOOPBACK, init_embedded_ray

APP_NAME = "hedgerow-loadtest"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # to loopback, never through an http_proxy
DEPLOY_TIMEOUT_S = 300.0  # a compiled runtime builds its program when the replica starts


def one_replica_config(serve_config: dict[str, Any], model_path: str, threads: int, token: str) -> dict[str, Any]:
    """The export's one application, as one replica on loopback: see the module's docstring."""
    app = copy.deepcopy(serve_config["applications"][0])
    args = {**app["args"], "model_path": model_path}
    args.pop("endpoint_url", None)
    spec = dict(app["deployments"][0])
    spec.pop("autoscaling_config", None)
    spec["num_replicas"] = 1
    spec["ray_actor_options"] = {"num_cpus": threads, "num_gpus": 1 if args.get("device") == "cuda" else 0}
    env_vars = {**(app.get("runtime_env") or {}).get("env_vars", {}), TOKEN_ENV: token}
    return {
        "name": APP_NAME, "route_prefix": "/", "import_path": app.get("import_path", IMPORT_PATH), "args": args,
        "runtime_env": {"env_vars": env_vars}, "deployments": [spec],
    }  # fmt: skip


def free_port() -> int:
    """A TCP port free on the loopback address now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(serve_config: dict[str, Any], model_path: str, threads: int) -> Iterator[tuple[str, dict[str, str]]]:
    """Serve the export with one replica on 127.0.0.1; yields (URL, the headers each request needs). Shuts down after."""
    import ray
    from ray import serve
    from ray.serve._private.api import serve_start  # the controller client `serve run CONFIG` itself uses
    from ray.serve.schema import ServeDeploySchema

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its "Started Serve" line says nothing the user needs
    token = secrets.token_urlsafe(32)
    app = one_replica_config(serve_config, model_path, threads, token)
    port = free_port()
    started = not ray.is_initialized()
    if started:
        init_embedded_ray(num_cpus=max(threads, os.cpu_count() or 1))
    try:
        client = serve_start(http_options={"host": LOOPBACK, "port": port}, proxy_location="HeadOnly")
        client.deploy_apps(ServeDeploySchema.model_validate({"applications": [app]}))
        _wait_running(serve, APP_NAME)
        yield check_loopback(f"http://{LOOPBACK}:{port}/"), {"Authorization": f"Bearer {token}"}
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        if started:
            ray.shutdown()


def _wait_running(serve: Any, name: str, timeout_s: float = DEPLOY_TIMEOUT_S) -> None:
    """Until the application is RUNNING; RuntimeError with Serve's message where it failed or took too long."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(name)
        status = str(getattr(app, "status", "")).rsplit(".", 1)[-1]
        if status == "RUNNING":
            return
        if status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise RuntimeError(f"Ray Serve could not start the export ({status}): {getattr(app, 'message', '')}")
        time.sleep(0.5)
    raise RuntimeError(f"Ray Serve did not start the export within {timeout_s:.0f} s")


def warm_up(url: str, headers: dict[str, str], bodies: list[Any], n: int = 10, timeout_s: float = 120.0) -> dict[str, Any]:
    """Send `n` requests one at a time (first batches, lazy loads), then GET the replica's info; errors raise RuntimeError."""
    check_loopback(url)
    for body in (bodies * n)[:n]:
        _call(url, headers, body, timeout_s)
    return _call(url, headers, None, timeout_s)


def settle(url: str, headers: dict[str, str], body: Any, within_ms: float, timeout_s: float = 60.0) -> bool:
    """Send one request at a time until one is answered within `within_ms` (a backlog left by the step before has
    drained); False where none was by `timeout_s`."""
    check_loopback(url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            _call(url, headers, body, timeout_s)
        except (RuntimeError, OSError):
            time.sleep(0.2)
            continue
        if (time.perf_counter() - start) * 1000 <= within_ms:
            return True
    return False


def _call(url: str, headers: dict[str, str], body: Any, timeout_s: float) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={**headers, "Content-Type": "application/json"})
    try:
        with _DIRECT.open(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"the served export answered a warm-up request with HTTP {exc.code}: {exc.read()[:300]!r}") from None
