"""The kept teacher reference and the interleaved ratio a trial's throughput is priced from."""

from __future__ import annotations

import json
import threading

import torch
from torch import nn

from orchestrator.measure import measure, reference_path, reference_throughput
from orchestrator.tasks.checkpoint import tensor_fingerprint


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).eval()


BATCH = torch.randn(32, 64)


def test_the_reference_is_measured_once_and_then_read_back(tmp_path):
    torch.manual_seed(0)
    teacher = _mlp(128)
    first = reference_throughput(teacher, BATCH, threads=1, rounds=3, repeats=3, root=tmp_path)
    second = reference_throughput(teacher, BATCH, threads=1, rounds=3, repeats=3, root=tmp_path)
    assert first == second  # same measured_at and rounds: read, not measured again
    assert first.throughput_sps > 0 and len(first.rounds_sps) == 3
    assert first.path == str(reference_path(teacher, BATCH, 1, tmp_path)[0])
    assert json.loads((tmp_path / first.path.split("/")[-1]).read_text())["throughput_sps"] == first.throughput_sps


def test_the_reference_is_keyed_by_threads_batch_and_teacher_weights(tmp_path):
    torch.manual_seed(0)
    teacher, other = _mlp(128), _mlp(128)
    base = reference_path(teacher, BATCH, 1, tmp_path)[0]
    assert reference_path(teacher, BATCH, 2, tmp_path)[0] != base
    assert reference_path(teacher, BATCH[:16], 1, tmp_path)[0] != base
    assert reference_path(other, BATCH, 1, tmp_path)[0] != base
    assert reference_path(teacher, BATCH.clone(), 1, tmp_path)[0] == base
    assert reference_path(teacher, BATCH, 1, tmp_path, teacher_fingerprint=tensor_fingerprint(teacher))[0] == base


def test_an_unreadable_reference_is_measured_again(tmp_path):
    teacher = _mlp(64)
    path = reference_path(teacher, BATCH, 1, tmp_path)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    reference = reference_throughput(teacher, BATCH, threads=1, rounds=2, repeats=2, root=tmp_path)
    assert reference.throughput_sps > 0
    assert json.loads(path.read_text())["measured_at"] == reference.measured_at


def test_concurrent_callers_share_one_measurement(tmp_path):
    teacher = _mlp(128)
    results = []

    def call() -> None:
        results.append(reference_throughput(teacher, BATCH, threads=1, rounds=3, repeats=3, root=tmp_path))

    workers = [threading.Thread(target=call) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 3 and len({r.measured_at + repr(r.rounds_sps) for r in results}) == 1


def test_measure_against_a_reference_keeps_the_ratio_per_round():
    torch.manual_seed(0)
    big, small = _mlp(1024), _mlp(16)
    batch = torch.randn(256, 64)
    against_itself = measure(big, batch, threads=1, batch_repeats=6, latency_repeats=5, reference=big, rounds=3)
    assert len(against_itself.throughput_ratio_rounds) == 3
    assert 0.5 < against_itself.throughput_ratio_to_reference < 2.0
    assert len(against_itself.throughput_runs_sps) == 6  # 3 rounds × 2 batches of its own
    faster = measure(small, batch, threads=1, batch_repeats=6, latency_repeats=5, reference=big, rounds=3)
    assert faster.throughput_ratio_to_reference > 5  # ~250x fewer FLOPs than the reference


def test_measure_without_a_reference_has_no_ratio():
    metrics = measure(_mlp(32), BATCH, threads=1, batch_repeats=3, latency_repeats=5)
    assert metrics.throughput_ratio_to_reference is None and metrics.throughput_ratio_rounds == []
