"""Safe weight files: tampered or pickled checkpoints are refused; a tampered cached teacher is retrained."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

import orchestrator.tasks.digits as digits_module
from orchestrator.tasks import CheckpointError, DigitsTask, load_checkpoint, save_checkpoint

TINY = {"conv_widths": (4, 4, 4), "hidden_width": 8, "epochs": 1}


def flip_a_byte(path, offset=-8):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_safetensors_round_trip_with_metadata(tmp_path):
    state = nn.Linear(3, 2).state_dict()
    path = tmp_path / "w.safetensors"
    save_checkpoint(state, path, {"note": "hi"})
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"note": "hi"}
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors", "w.safetensors.json"], (
        "no temporary files left"
    )


def test_tampered_safetensors_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_checkpoint(nn.Linear(3, 2).state_dict(), path, {})
    flip_a_byte(path)
    with pytest.raises(CheckpointError, match="refused: SHA-256 .* does not match"):
        load_checkpoint(path)


def test_tampered_sidecar_hash_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_checkpoint(nn.Linear(3, 2).state_dict(), path, {})
    sidecar = path.with_name(path.name + ".json")
    record = json.loads(sidecar.read_text())
    record["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_safetensors_without_sidecar_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_checkpoint(nn.Linear(3, 2).state_dict(), path, {})
    path.with_name(path.name + ".json").unlink()
    with pytest.raises(CheckpointError, match="missing checksum sidecar"):
        load_checkpoint(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_pickled_whole_module_pt_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(3, 2), path)  # a pickled module: loading it would run arbitrary code
    with pytest.raises(CheckpointError, match="not a plain state_dict") as info:
        load_checkpoint(path)
    assert "weights_only" in str(info.value.__cause__) or "Unpickl" in type(info.value.__cause__).__name__


def test_pt_holding_non_tensor_values_is_refused(tmp_path):
    path = tmp_path / "mixed.pt"
    torch.save({"weight": torch.ones(2), "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="expected a dict of tensors"):
        load_checkpoint(path)


def test_plain_state_dict_pt_is_accepted(tmp_path):
    state = nn.Linear(3, 2).state_dict()
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    loaded, metadata = load_checkpoint(path)
    assert metadata == {}
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)


def test_tampered_cached_teacher_is_retrained_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HEDGEROW_CACHE_DIR", str(tmp_path))
    trainings = []
    real_train = digits_module.train_teacher
    monkeypatch.setattr(digits_module, "train_teacher", lambda *a: (trainings.append(1), real_train(*a))[1])

    first = DigitsTask(**TINY)
    first.teacher()
    path = first.teacher_path
    assert path.parent == tmp_path and path.is_file() and len(trainings) == 1

    DigitsTask(**TINY).teacher()  # intact cache: loaded, not retrained
    assert len(trainings) == 1

    flip_a_byte(path)
    with caplog.at_level(logging.WARNING, logger="orchestrator.tasks.digits"):
        retrained = DigitsTask(**TINY).teacher()
    assert len(trainings) == 2, "the tampered file must not be loaded"
    assert any("ignoring cached teacher and retraining" in r.getMessage() for r in caplog.records)
    assert isinstance(retrained, nn.Module) and not retrained.training
    state, _ = load_checkpoint(path)  # the cache is whole again
    assert all(torch.equal(state[k], v) for k, v in retrained.state_dict().items())


# ---- hostile checkpoints through the CLI: exit 2 before a run folder or Ray exists --------------------


def _search_with_checkpoint(tmp_path, checkpoint, capsys):
    import yaml

    from orchestrator.cli import main

    config = {
        "task": {"name": "tests.tasks.user_task:make_task", "args": {"checkpoint": str(checkpoint)}},
        "traffic": {"peak_rps": 1000, "latency_slo_p95_ms": 500, "serving_batch_size": 32},
        "search": {"trials": 2},
        "space": {"prune_method": "none", "bits": 32},
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    status = main(["search", str(path), "--out", str(tmp_path / "runs")])
    return status, capsys.readouterr().err


def test_a_pickled_teacher_checkpoint_exits_2_and_leaves_no_run_folder(tmp_path, capsys):
    import ray

    marker = tmp_path / "escaped-pickle-ran"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "teacher.pt"
    torch.save({"weight": Evil()}, path)
    status, err = _search_with_checkpoint(tmp_path, path, capsys)
    assert status == 2 and str(path) in err and "not a plain state_dict" in err, err
    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "runs").exists() and not ray.is_initialized()


@pytest.mark.parametrize(
    ("sidecar", "words"),
    [('{"sha256": "ab', "not valid JSON"), ("[1, 2]", "expected a JSON object"), ('{"sha256": "x", "metadata": 3}', "metadata")],
    ids=["truncated", "an-array", "metadata-not-an-object"],
)  # fmt: skip
def test_a_damaged_sidecar_is_refused_with_exit_2(sidecar, words, tmp_path, capsys):
    path = tmp_path / "teacher.safetensors"
    save_checkpoint(nn.Linear(16, 4).state_dict(), path, {})
    path.with_name(path.name + ".json").write_text(sidecar)
    status, err = _search_with_checkpoint(tmp_path, path, capsys)
    assert status == 2 and words in err, err
    assert not (tmp_path / "runs").exists()


def test_a_truncated_pt_checkpoint_is_refused_with_exit_2(tmp_path, capsys):
    path = tmp_path / "teacher.pt"
    torch.save(nn.Linear(16, 4).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    status, err = _search_with_checkpoint(tmp_path, path, capsys)
    assert status == 2 and "not a plain state_dict" in err, err
