"""The pieces compress and runtimes share: the int8 auto-mode rule, where the float model ends, typed step details."""

from __future__ import annotations

import pytest
from torch import nn

from orchestrator.compress import DistillConfig, HalfPrecisionConfig, Int4WeightOnlyConfig, Int8Config, StructuredPruneConfig
from orchestrator.runtimes import CompileConfig, OnnxRuntimeConfig, Pt2eInt8Config
from orchestrator.techniques import StepRecord, int8_mode
from orchestrator.techniques.details import QuantizeDetails, RuntimeDetails

CNN = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(3))
MLP = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.mark.parametrize(
    ("requested", "model", "sequence_inputs", "mode"),
    [("auto", CNN, (), "static"), ("auto", MLP, (), "dynamic"), ("auto", CNN, ("input_ids",), "dynamic"),
     ("static", MLP, (), "static"), ("dynamic", CNN, (), "dynamic")],
)  # fmt: skip
def test_one_int8_auto_rule_for_torch_compiled_and_onnxruntime(requested, model, sequence_inputs, mode):
    assert int8_mode(requested, model, sequence_inputs) == mode


def test_the_float_model_ends_at_quantization_or_a_runtime_and_nowhere_else():
    ends = [Int8Config, Pt2eInt8Config, HalfPrecisionConfig, Int4WeightOnlyConfig, CompileConfig, OnnxRuntimeConfig]
    assert all(not config.keeps_float_weights for config in ends)
    assert StructuredPruneConfig.keeps_float_weights and DistillConfig.keeps_float_weights
    assert Int8Config().model_dump() == Pt2eInt8Config().model_dump()  # one set of int8 settings


def test_step_details_are_read_through_their_types_and_older_records_still_read():
    def step(stage, **details):
        return StepRecord(stage=stage, technique="t", config={}, details=details)

    assert QuantizeDetails.of(step("quantize", backend="x86", kernel_archs=["x86_64"])).archs() == ["x86_64"]
    assert QuantizeDetails.of(step("quantize", backend="x86", kernel_archs=["x86_64", "arm64"])).archs() == ["x86_64", "arm64"]
    # A record from before kernel archs were recorded reads them from its backend, once, when it is read.
    from orchestrator.report import upgrade

    old = {"stage": "quantize", "technique": "int8_static", "config": {}, "details": {"backend": "x86"}}
    upgraded = upgrade.record({"compression": {"steps": [old]}})["compression"]["steps"][0]
    assert QuantizeDetails.of(StepRecord.model_validate(upgraded)).archs() == ["x86_64"]
    details = RuntimeDetails.of(step("runtime", startup_seconds=0.5, how="kept, untyped"))
    assert details.startup_seconds == 0.5 and details.artifact_size_bytes is None
