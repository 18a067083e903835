"""The `openvino` runtime: float32 as torch computes it, NNCF int8 within int8's rounding, its kernels' CPUs, its extra."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.errors import InputError
from orchestrator.measure import measure
from orchestrator.runtimes import REGISTRY, OpenVinoModule, kernel_archs
from orchestrator.runtimes import openvino as ov_runtime
from orchestrator.tasks.batches import run
from orchestrator.threads import torch_threads
from tests.int8_bounds import INT8_STEP_ERROR, assert_int8_classifies_like_float

pytestmark = pytest.mark.slow

pytest.importorskip("openvino")
pytest.importorskip("nncf")

PRUNED = {"prune_method": "structured", "prune_ratio": 0.5}
FLOAT32_EPS = 2.0**-23


def _quantized_layers(model: nn.Module) -> int:
    """Convolutions and Linear layers: each is one int8 matmul in NNCF's program, so one int8 rounding in a row."""
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


def _max_fan_in(model: nn.Module) -> int:
    """The most products one output of any layer sums."""
    fan = [m.weight[0].numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return max(fan)


@pytest.fixture(scope="module")
def digits_built(digits_task, teacher):
    """The pruned digits candidate: eager fp32 and OpenVINO fp32 and int8, at one thread as a trial builds them."""
    with torch_threads(1):
        keys = (("eager", 32), ("openvino", 32), ("openvino", 8))
        recipes = {key: Recipe(runtime=key[0], bits=key[1], **PRUNED) for key in keys}
        return {key: apply_recipe(digits_task, recipe, teacher=teacher, serving_batch_size=64) for key, recipe in recipes.items()}


def test_the_registry_serves_openvino_at_float32_and_int8_on_the_cpu():
    runtime = REGISTRY.get("openvino")
    assert "openvino" in REGISTRY.names and runtime.label == "OpenVINO"
    assert runtime.bits == (32, 8) and runtime.cpu_only and runtime.quantizes_int8()
    assert {"openvino", "openvino_int8"} <= set(REGISTRY.program_formats())
    assert "openvino" in REGISTRY.serving(8) and "openvino" in REGISTRY.serving(32)
    with pytest.raises(ValueError, match="did you mean 'openvino'"):
        REGISTRY.canonical("openvin")


def test_float32_computes_what_eager_torch_computes(digits_built, digits_task):
    eager, served = digits_built["eager", 32].model, digits_built["openvino", 32].model
    assert isinstance(served, OpenVinoModule)
    assert [(s.stage, s.technique) for s in digits_built["openvino", 32].record.steps][-1] == ("runtime", "openvino")
    batch = digits_task.data("val")[0][:256]
    with torch.inference_mode():
        want, got = eager(batch), served(batch)
    # Both sum the same float32 products in different orders (oneDNN's blocking against torch's): each sum of K
    # products can differ by K·eps of the sum of their magnitudes, and each layer passes that on; bounded by
    # layers × largest fan-in × eps × the logits' scale, with the magnitudes' sum taken as 4× the scale.
    tolerance = _quantized_layers(eager) * _max_fan_in(eager) * FLOAT32_EPS * 4 * float(want.abs().max())
    assert float((got - want).abs().max()) <= tolerance


def test_nncf_int8_changes_only_near_ties_on_digits(digits_built, digits_task):
    built = digits_built["openvino", 8]
    assert built.record.steps[-1].technique == "openvino_int8_nncf"
    inputs, labels = digits_task.data("val")
    with torch.inference_mode():
        float_logits = digits_built["openvino", 32].model(inputs)
        int8_logits = built.model(inputs)
    assert not torch.equal(int8_logits, float_logits), "NNCF quantized nothing"
    assert_int8_classifies_like_float(int8_logits, float_logits, labels, _quantized_layers(digits_built["eager", 32].model))


def test_kernel_archs_are_the_cpu_plugins_and_the_program_is_measured(digits_built, digits_task):
    assert kernel_archs(digits_built["openvino", 32].record.steps) == ["x86_64", "arm64"]
    assert kernel_archs(digits_built["openvino", 8].record.steps) == ["x86_64"]  # OpenVINO lists int8 for x86-64 only
    details = digits_built["openvino", 8].record.steps[-1].details
    assert details["threads"] == 1 and details["inference_precision"] == "f32" and details["startup_seconds"] > 0
    served = digits_built["openvino", 8].model
    assert served.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert served.compiled.get_property("ENABLE_CPU_PINNING") is False  # trials side by side: no two pinned to one core
    assert details["artifact_size_bytes"] == sum(p.stat().st_size for p in served.files())
    float_bytes = digits_built["openvino", 32].model.weights_nbytes()
    assert served.weights_nbytes() < float_bytes / 2, "int8 weights take one byte each, not four"
    batch = digits_task.example_batch(64)
    eager = measure(digits_built["eager", 32].model, batch, threads=1, batch_repeats=2, latency_repeats=2)
    measured = measure(served, batch, threads=1, batch_repeats=2, latency_repeats=2,
                       size_bytes=digits_built["openvino", 8].record.deployed_size_bytes)  # fmt: skip
    assert measured.params == pytest.approx(eager.params, rel=0.01)  # counted on the float model it came from
    assert 0 < measured.size_bytes < eager.size_bytes / 2 and measured.throughput_sps > 0


def test_a_tiny_bert_converts_with_named_dynamic_inputs_and_int8_stays_within_its_rounding(tmp_path):
    pytest.importorskip("transformers")
    from orchestrator.tasks.registry import load_task
    from tests.tasks.text.tiny_bert import save_tiny_bert

    sizes = {"n_train": 64, "n_val_passages": 40, "n_val_queries": 8, "n_test_passages": 40, "n_test_queries": 8, "seq_len": 32}
    task = load_task("examples.hf_encoder_task:make_task", {"model_path": str(save_tiny_bert(tmp_path)), **sizes})
    teacher = task.teacher()
    with torch_threads(1):
        fp32 = apply_recipe(task, Recipe(runtime="openvino", bits=32), teacher=teacher, serving_batch_size=8)
        int8 = apply_recipe(task, Recipe(runtime="openvino", bits=8), teacher=teacher, serving_batch_size=8)
    assert set(fp32.model.input_names) == set(task.sequence_inputs)
    inputs, _ = task.data("val")
    with torch.inference_mode():
        want = run(teacher, inputs)
        short = {name: t[:5, :7] for name, t in inputs.items()}  # another batch size and sequence length: both dynamic
        assert fp32.model(**short).shape == teacher(**short).shape
        got, quantized = run(fp32.model, inputs), run(int8.model, inputs)
    # float32 against eager: sums of at most FFN products per layer, in another order (as for digits above).
    linear = _quantized_layers(teacher)
    assert float((got - want).abs().max()) <= linear * _max_fan_in(teacher) * FLOAT32_EPS * 4 * float(want.abs().max())
    # int8: each quantized Linear moves its output by INT8_STEP_ERROR of its scale; `linear` of them in a row at most.
    error = (quantized - got).abs().amax(dim=1) / got.abs().amax(dim=1)
    assert float(error.max()) <= linear * INT8_STEP_ERROR, float(error.max())
    assert not torch.equal(quantized, got), "NNCF quantized nothing"
    assert int8.record.steps[-1].details["how"].count("model_type=TRANSFORMER") == 1


def test_a_space_naming_openvino_without_the_extra_is_refused_naming_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(InputError, match=r"pip install 'hedgerow\[openvino\]'"):
        REGISTRY.get("openvino").check_available()
    with pytest.raises(InputError, match="runtime 'openvino'"):
        ov_runtime.OpenVinoModule("model.xml")
    from orchestrator.search.space import check_runtimes
    from orchestrator.techniques.domains import Choices

    space = {"bits": Choices(choices=[32, 8]), "runtime": Choices(choices=["eager", "openvino"])}
    with pytest.raises(InputError, match=r"pip install 'hedgerow\[openvino\]'"):
        check_runtimes(space, "cpu", 0)  # as `hedgerow validate` checks a space, before Ray starts
    check_runtimes({**space, "runtime": Choices(choices=["eager", "onnxruntime"])}, "cpu", 0)  # a space without it is fine


def test_a_gpu_search_is_refused_openvino():
    from orchestrator.search.space import check_runtimes
    from orchestrator.techniques.domains import Choices

    with pytest.raises(InputError, match="'openvino' runs on OpenVINO's CPU plugin"):
        check_runtimes({"bits": 8, "runtime": Choices(choices=["openvino"])}, "cuda", 1)
