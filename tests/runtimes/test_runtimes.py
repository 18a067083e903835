"""Each runtime builds the same recipe into a model it serves: quality, kernels, start-up, and failures with reasons."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from orchestrator.threads import torch_threads
from orchestrator.compress import Recipe, apply_recipe
from orchestrator.techniques import StepRecord
from orchestrator.measure import measure
from orchestrator.runtimes import CompiledModule, OnnxModule, RuntimeFailed, kernel_archs, startup_seconds
from orchestrator.tasks.digits import DigitsTask

PRUNED = dict(prune_method="structured", prune_ratio=0.5)


@pytest.fixture(scope="module")
def built(digits_task, teacher):
    """The pruned candidate, fp32 and int8, on every runtime: {(runtime, bits): Compressed}."""
    out = {}
    with torch_threads(1):
        for runtime in ("eager", "compiled", "onnxruntime"):
            for bits in (32, 8):
                out[runtime, bits] = apply_recipe(
                    digits_task, Recipe(runtime=runtime, bits=bits, **PRUNED), teacher=teacher, serving_batch_size=64
                )
    return out


def _accuracy(task, compressed):
    with torch_threads(1):
        return task.evaluate(compressed.model, "val")["value"]


def test_each_runtime_serves_the_module_it_built(built):
    assert isinstance(built["compiled", 32].model, CompiledModule)
    assert isinstance(built["compiled", 8].model, CompiledModule)
    assert isinstance(built["onnxruntime", 32].model, OnnxModule)
    assert isinstance(built["onnxruntime", 8].model, OnnxModule)
    techniques = {key: [(s.stage, s.technique) for s in c.record.steps] for key, c in built.items()}
    assert techniques["eager", 8][-1] == ("quantize", "int8_static")
    assert techniques["compiled", 8][-2:] == [("quantize", "int8_pt2e_static"), ("runtime", "compiled")]
    assert techniques["onnxruntime", 8][-1] == ("runtime", "onnxruntime_int8_static")
    assert techniques["onnxruntime", 32][-1] == ("runtime", "onnxruntime")


def test_float_runtimes_agree_with_eager_and_int8_stays_close(built, digits_task):
    fp32 = _accuracy(digits_task, built["eager", 32])
    with torch.inference_mode():
        batch = digits_task.example_batch(64)
        eager = built["eager", 32].model(batch)
        for runtime in ("compiled", "onnxruntime"):
            assert torch.allclose(built[runtime, 32].model(batch), eager, atol=1e-3), runtime
    # 359 val images: one image is 0.28 points, so this allows 3 (the half-point target is bench/runtimes.py's)
    for runtime in ("eager", "compiled", "onnxruntime"):
        assert abs(_accuracy(digits_task, built[runtime, 8]) - fp32) <= 0.01, runtime


def test_compiled_module_pads_small_batches_and_slices_large_ones(built, digits_task):
    model = built["compiled", 32].model
    assert model.static_batch == 64
    batch = digits_task.example_batch(150)
    with torch.inference_mode():
        whole = model(batch)
        assert whole.shape[0] == 150
        assert torch.allclose(model(batch[:3]), whole[:3], atol=1e-4)


def test_kernel_archs_follow_the_runtime_and_its_int8(built):
    archs = {key: kernel_archs(c.record.steps) for key, c in built.items()}
    assert archs["eager", 32] is None and archs["compiled", 32] is None
    assert archs["eager", 8] == ["x86_64"]  # torch.ao's x86 int8 backend
    assert archs["compiled", 8] == ["x86_64"]  # the x86 inductor quantizer's oneDNN kernels
    assert archs["onnxruntime", 8] == ["x86_64", "arm64"] == archs["onnxruntime", 32]


def test_startup_is_recorded_apart_from_throughput(built, digits_task):
    batch = digits_task.example_batch(64)
    startup = {}
    for key, compressed in built.items():
        seconds, how = startup_seconds(compressed.model, compressed.record.steps, batch)
        assert seconds > 0 and how, key
        startup[key] = seconds
    # Bounds are ratios of times taken on this machine in this process, so a CPU 3x faster or slower moves both
    # sides alike. Eager runs one batch and ONNX Runtime loads a session and runs one batch (2-6 ms here); a compiled
    # start-up includes dynamo, inductor's lowering and C++ code generation (0.4-3 s here). So the compiled figure is
    # at least ten times the eager one of the same candidate (a figure that left the compile out would be one batch,
    # like eager's), and eager and ONNX Runtime stay under a third of the compiled one (a figure that took in
    # torch.onnx.export or a compile would not). Both margins are far wider than run-to-run noise (about 2x here).
    for (runtime, bits), seconds in startup.items():
        if runtime == "compiled":
            assert seconds >= 10 * startup["eager", bits], (runtime, bits, seconds, startup["eager", bits])
        else:
            assert seconds <= startup["compiled", bits] / 3, (runtime, bits, seconds, startup["compiled", bits])
    compiled = next(s for s in built["compiled", 32].record.steps if s.stage == "runtime")
    assert "torch.compile" in compiled.details["startup_method"] and compiled.details["startup_seconds"] > 0


def test_measurement_counts_the_runtime_program_not_an_empty_shell(built, digits_task):
    batch = digits_task.example_batch(64)
    eager = measure(built["eager", 32].model, batch, threads=1, batch_repeats=2, latency_repeats=2)
    for key in (("onnxruntime", 8), ("compiled", 8)):
        compressed = built[key]
        metrics = measure(compressed.model, batch, threads=1, batch_repeats=2, latency_repeats=2,
                          size_bytes=compressed.record.deployed_size_bytes)  # fmt: skip
        assert metrics.params == pytest.approx(eager.params, rel=0.01), key
        assert 0 < metrics.size_bytes < eager.size_bytes / 2, key  # int8 weights, the float ones stripped
        assert metrics.peak_mem_bytes > metrics.size_bytes / 2, key


def test_recipe_refuses_a_runtime_for_16_bit_and_int4():
    with pytest.raises(ValueError, match="runtime: 'onnxruntime' serves float32 or int8"):
        Recipe(runtime="onnxruntime", bits=16)
    with pytest.raises(ValueError, match="runtime: 'compiled'"):
        Recipe(runtime="compiled", bits=4)


def test_runtime_changes_the_key_only_when_set():
    assert Recipe(bits=8).key() == Recipe(bits=8, runtime="eager").key()
    assert Recipe(bits=8, runtime="onnxruntime").key() != Recipe(bits=8).key()


class _BranchesOnData(nn.Module):
    """A model torch.export (so torch.onnx) cannot trace: a Python branch on a tensor's value."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out * 2 if out.sum() > 0 else out


class UnexportableTask(DigitsTask):
    name = "unexportable"

    def teacher(self) -> nn.Module:
        return _BranchesOnData(super().teacher()).eval()


def test_a_model_onnx_cannot_export_fails_with_its_reason(digits_task):
    task = UnexportableTask()
    with pytest.raises(RuntimeFailed, match=r"runtime 'onnxruntime': torch.onnx.export failed on this model"):
        apply_recipe(task, Recipe(runtime="onnxruntime"), serving_batch_size=8)


def test_a_missing_cxx_compiler_fails_the_compiled_runtime_with_its_reason(tmp_path):
    script = textwrap.dedent(
        """
        from orchestrator.compress import Recipe, apply_recipe
        from orchestrator.runtimes import RuntimeFailed
        from orchestrator.tasks.digits import DigitsTask
        try:
            apply_recipe(DigitsTask(), Recipe(runtime="compiled"), serving_batch_size=8)
        except RuntimeFailed as exc:
            print("FAILED:", exc)
        else:
            print("BUILT")
        """
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-g++"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert "FAILED: runtime 'compiled': torch.compile (inductor) needs a working C++ compiler" in done.stdout, done.stderr[-2000:]


def test_kernel_archs_of_recorded_steps():
    def step(stage, technique, **details):
        return StepRecord(stage=stage, technique=technique, config={}, details=details)

    assert kernel_archs([step("quantize", "int8_dynamic", backend="x86", kernel_archs=["x86_64"])]) == ["x86_64"]
    assert kernel_archs([step("quantize", "int8_dynamic", backend="qnnpack", kernel_archs=None)]) is None
    assert kernel_archs([step("runtime", "onnxruntime_int8_dynamic", kernel_archs=["x86_64", "arm64"])]) == ["x86_64", "arm64"]
    assert kernel_archs([step("runtime", "onnxruntime_int8_dynamic")]) is None  # read back as recorded, never from the name
