"""A measurement holds the machine: another process's steps wait for it, and its own work never waits for itself."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from orchestrator import quiet

STEP_S = 0.05


def _stepper(lock_dir: str, until: float, started: "multiprocessing.Queue") -> None:
    """Steps of STEP_S each, back to back, reporting (start, end) of every step."""
    import os

    os.environ["HEDGEROW_QUIET_DIR"] = lock_dir
    spans = []
    while time.time() < until:
        with quiet.step_aside():
            begin = time.time()
            time.sleep(STEP_S)
            spans.append((begin, time.time()))
    started.put(spans)


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HEDGEROW_QUIET_DIR", str(tmp_path))
    return tmp_path


def test_no_step_of_another_process_runs_while_a_measurement_holds_the_machine(lock_dir):
    ctx = multiprocessing.get_context("spawn")
    spans_queue = ctx.Queue()
    stepper = ctx.Process(target=_stepper, args=(str(lock_dir), time.time() + 4.0, spans_queue))
    stepper.start()
    time.sleep(1.5)  # the stepper is running steps back to back
    asked = time.time()
    with quiet.measuring_alone():
        held_from = time.time()
        time.sleep(1.0)
        held_to = time.time()
    spans = spans_queue.get(timeout=30)
    stepper.join(timeout=30)
    inside = [s for s in spans if s[1] > held_from and s[0] < held_to]
    assert not inside, f"steps ran while the measurement held the machine: {inside}"
    # The turnstile lets the measurement in after the step in flight, however busy the neighbour is.
    assert held_from - asked < 1.0, held_from - asked
    assert any(s[0] >= held_to for s in spans), "the neighbour never resumed"
    assert any(s[1] <= held_from for s in spans), "the neighbour never ran before the measurement"


def test_a_process_never_waits_for_its_own_measurement(lock_dir):
    done = []
    with quiet.measuring_alone():
        with quiet.measuring_alone():
            with quiet.step_aside():
                done.append("nested")
    with quiet.step_aside():
        with quiet.step_aside():
            with quiet.measuring_alone():
                done.append("inside a step")
    assert done == ["nested", "inside a step"]
