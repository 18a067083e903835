"""The built-in digits task: its seeded stratified splits and its cached CNN teacher."""

from __future__ import annotations

import json
import logging

import pydantic
import pytest
import torch
from torch import nn

from orchestrator.tasks import DigitsTask
from orchestrator.tasks.checkpoint import load_checkpoint


def test_teacher_reaches_97_percent_on_the_held_out_test_split(digits_task, teacher):
    quality = digits_task.evaluate(teacher, "test")
    assert quality["value"] >= 0.97, quality
    assert quality["n_examples"] == len(digits_task.data("test")[1])


def test_teacher_is_a_cnn_of_half_to_two_million_parameters_in_eval_mode_on_cpu(teacher):
    n_params = sum(p.numel() for p in teacher.parameters())
    assert 500_000 <= n_params <= 2_000_000
    assert not teacher.training
    assert all(p.device.type == "cpu" for p in teacher.parameters())
    modules = list(teacher.modules())
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    norms = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    assert len(convs) >= 2 and len(linears) >= 2
    assert [c.out_channels for c in convs] == [b.num_features for b in norms], "every conv is followed by its BatchNorm"
    assert modules.index(linears[0]) > modules.index(convs[-1]), "linear layers come after the convolutions"
    assert linears[-1].out_features == 10


def test_teacher_is_cached_under_a_settings_hash_with_metadata(digits_task, teacher):
    path = digits_task.teacher_path
    assert path.is_file() and path.suffix == ".safetensors"
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["metadata"]["task"] == "digits"
    assert sidecar["metadata"]["settings"] == digits_task.settings.model_dump(mode="json")
    state, metadata = load_checkpoint(path)
    assert set(state) == set(teacher.state_dict())
    assert metadata["val_accuracy"] >= 0.97


def test_a_second_task_loads_the_cached_teacher_instead_of_retraining(digits_task, teacher, caplog, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the cached teacher should have been loaded, not retrained")

    monkeypatch.setattr("orchestrator.tasks.digits.train_teacher", no_training)
    with caplog.at_level(logging.WARNING, logger="orchestrator.tasks.digits"):
        again = DigitsTask().teacher()
    assert not caplog.records
    assert not again.training
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert DigitsTask().teacher() is not teacher  # a new task builds its own module


def test_teacher_is_built_once_per_task(digits_task, teacher):
    assert digits_task.teacher() is teacher


def test_the_same_settings_train_the_same_teacher_whatever_the_rng_state_and_thread_count(tmp_path, monkeypatch):
    """The seed fixes the initial weights too, and training runs on a fixed thread count: a fresh machine's teacher
    is ours (a teacher that differed from run to run once let a CI run see a different search than ours)."""
    small = {"conv_widths": (8, 8, 8), "hidden_width": 16, "epochs": 2}
    before = torch.get_num_threads()
    states = []
    try:
        for i, threads in enumerate((1, 2)):
            monkeypatch.setenv("HEDGEROW_CACHE_DIR", str(tmp_path / str(i)))
            torch.set_num_threads(threads)
            torch.manual_seed(100 + i)  # whatever the caller did to the global generator before
            states.append(DigitsTask(**small).teacher().state_dict())
            assert torch.get_num_threads() == threads, "training leaves the caller's thread count as it was"
    finally:
        torch.set_num_threads(before)
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_cache_key_changes_with_the_settings_only():
    base = DigitsTask().teacher_path
    assert DigitsTask().teacher_path == base
    assert DigitsTask(epochs=3).teacher_path != base
    assert DigitsTask(hidden_width=256).teacher_path != base
    assert DigitsTask(split_seed=1).teacher_path != base


def test_splits_are_60_20_20_stratified_and_well_formed(digits_task):
    sizes = {s: len(digits_task.data(s)[1]) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert sizes["val"] == pytest.approx(0.2 * 1797, abs=1) and sizes["test"] == pytest.approx(0.2 * 1797, abs=1)
    all_labels = torch.cat([digits_task.data(s)[1] for s in ("train", "val", "test")])
    overall = torch.bincount(all_labels, minlength=10).double() / len(all_labels)
    for split in ("train", "val", "test"):
        inputs, labels = digits_task.data(split)
        assert inputs.shape == (len(labels), 1, 8, 8) and inputs.dtype == torch.float32
        assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
        assert float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0
        expected = overall * len(labels)
        counts = torch.bincount(labels, minlength=10).double()
        assert torch.all((counts - expected).abs() <= 1.5), (split, counts, expected)


def test_split_is_fixed_by_its_seed(digits_task):
    same = DigitsTask()
    other = DigitsTask(split_seed=1)
    for split in ("train", "val", "test"):
        assert torch.equal(same.data(split)[0], digits_task.data(split)[0])
        assert torch.equal(same.data(split)[1], digits_task.data(split)[1])
    assert not torch.equal(other.data("val")[0], digits_task.data("val")[0])


def test_unknown_split_is_rejected(digits_task):
    with pytest.raises(ValueError, match="split must be one of"):
        digits_task.data("validation")


@pytest.mark.parametrize(
    "settings,field", [({"val_fraction": 0.6}, "val_fraction"), ({"epoch": 3}, "epoch"), ({"epochs": 0}, "epochs")]
)
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(pydantic.ValidationError, match=field):
        DigitsTask(**settings)
