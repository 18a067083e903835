"""Locust in a process of its own keeps the Poisson schedule against loopback only, and reports every outcome."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.errors import InputError
from orchestrator.loadtest.driver import StepPlan, check_loopback, run_step


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "http://127.0.0.5:1/", "http://[::1]:8000/"])
def test_loopback_urls_pass(url):
    assert check_loopback(url) == url


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000/", "http://example.com/", "http://localhost.evil.com:80/", "/"])
def test_load_to_anything_but_loopback_is_refused(url):
    with pytest.raises(InputError, match="127.0.0.1 only"):
        check_loopback(url)


def test_run_step_refuses_a_remote_host_before_starting_locust(tmp_path):
    with pytest.raises(InputError):
        run_step("http://192.0.2.1:80", StepPlan(rate_rps=1, duration_s=1, seed=0, bodies=[{}]), tmp_path)
    assert not (tmp_path / "plan.json").exists()


class _Answers(BaseHTTPRequestHandler):
    """Answers each body as its "answer" field says: 200 with outputs, a 400, a 503, or a 200 without outputs."""

    seen_auth: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Answers.seen_auth.append(self.headers.get("Authorization"))
        status, payload = {"ok": (200, {"outputs": [1]}), "bad": (400, {"error": "no"}), "busy": (503, {"error": "busy"}),
                           "empty": (200, {"result": 1})}[body["answer"]]  # fmt: skip
        data = json.dumps(payload).encode()
        time.sleep(0.005)
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_every_answer_but_a_200_with_outputs_is_an_error(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bodies = [{"answer": a} for a in ("ok", "bad", "ok", "busy", "ok", "empty")]
        plan = StepPlan(rate_rps=60, duration_s=2, seed=4, bodies=bodies, headers={"Authorization": "Bearer t"}, timeout_s=3)
        raw = run_step(f"http://127.0.0.1:{server.server_port}/", plan, tmp_path)
    finally:
        server.shutdown()
    assert raw.arrivals == len(raw.records) > 60  # Poisson(120): far above 60
    kinds = Counter(r[4] for r in raw.records)
    expected = Counter(("", "HTTP 400", "", "HTTP 503", "", "200 without outputs")[i % 6] for i in range(raw.arrivals))
    assert kinds == expected  # bodies go out in turn, and each answer is judged as it came back
    assert all(r[3] == (r[4] == "") for r in raw.records)
    assert all(r[2] is not None and r[2] >= 5 for r in raw.records)  # Locust timed every answer, the server's 5 ms in it
    assert set(_Answers.seen_auth) == {"Bearer t"}
    assert not (tmp_path / "plan.json").exists()  # it held the token: gone once Locust has read it
