"""ONNX Runtime int8 programs compute the same on x86 CPUs with and without VNNI.

ONNX Runtime picks its int8 kernel from the CPU that runs the program. The emulated test runs the program under
qemu-user as an AVX2-only x86 CPU (no AVX-512, no VNNI), so a machine with VNNI checks the other path too. qemu-user is Debian's
`qemu-user` package: installed on first use where the tests run as root with apt-get, else the test skips, saying so.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch

from orchestrator.runtimes.onnx import OnnxModule, export_onnx, feeds, quantize_onnx
from tests.int8_bounds import assert_int8_classifies_like_float
from tests.tasks.named_inputs_task import NamedInputsTask

_CHILD = textwrap.dedent(
    """
    import sys, numpy as np, onnxruntime as ort
    from numpy._core._multiarray_umath import __cpu_features__ as cpu
    data = np.load(sys.argv[2])
    options = ort.SessionOptions(); options.intra_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
    np.save(sys.argv[3], session.run(None, dict(data))[0])
    print("AVX2", cpu["AVX2"], "AVX512F", cpu["AVX512F"], "AVX512VNNI", cpu["AVX512VNNI"])
    """
)


@pytest.fixture(scope="session")
def qemu_x86_64() -> str:
    """Path of qemu-user's x86-64 emulator, installed with apt-get where missing and possible."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"emulates another x86 CPU for this x86 Python; this machine is {platform.machine()}")
    if shutil.which("qemu-x86_64") is None:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip("needs qemu-user (qemu-x86_64) to emulate an x86 CPU without VNNI; apt-get install qemu-user")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "qemu-user"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return shutil.which("qemu-x86_64")


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """The named-inputs teacher as float ONNX and as ONNX Runtime dynamic int8, 7-bit and full-range weights."""
    task = NamedInputsTask()
    folder = tmp_path_factory.mktemp("ort-int8")
    export_onnx(task.teacher(), task.example_batch(4), folder / "float.onnx")
    quantize_onnx(folder / "float.onnx", folder / "int8.onnx", "dynamic", [])
    quantize_onnx(folder / "float.onnx", folder / "int8_full_range.onnx", "dynamic", [], reduce_range=False)
    return task, folder


def _int8_weights(path) -> list[np.ndarray]:
    model = onnx.load(str(path))
    return [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]


def test_int8_programs_keep_weights_to_7_bits(programs, digits_task, tmp_path):
    task, folder = programs
    dynamic = _int8_weights(folder / "int8.onnx")
    export_onnx(digits_task.teacher(), digits_task.example_batch(4), tmp_path / "cnn.onnx")
    quantize_onnx(tmp_path / "cnn.onnx", tmp_path / "cnn.int8.onnx", "static", digits_task.calibration_batches(2, 32))
    static = _int8_weights(tmp_path / "cnn.int8.onnx")
    assert dynamic and static
    # Symmetric 7-bit weights lie in [-64, 64]: a pair of uint8 × int8 products then sums to at most 2·255·64 = 32,640,
    # inside int16, where full-range weights (2·255·127) overflow it.
    for weights in (dynamic, static):
        assert all(int(np.abs(w).max()) <= 64 for w in weights), "an int8 weight past 7 bits can saturate u8s8 kernels"
    assert max(int(np.abs(w).max()) for w in _int8_weights(folder / "int8_full_range.onnx")) > 64  # the check can fail


def _run_emulated(qemu: str, model_path, inputs: dict[str, np.ndarray], tmp_path) -> tuple[torch.Tensor, str]:
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "child.py").write_text(_CHILD)
    done = subprocess.run(
        [qemu, "-cpu", "Haswell", sys.executable, str(tmp_path / "child.py"), str(model_path),
         str(tmp_path / "inputs.npz"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.from_numpy(np.load(tmp_path / "out.npy")), done.stdout.strip().splitlines()[-1]


def test_int8_program_classifies_alike_on_an_x86_cpu_without_vnni(qemu_x86_64, programs, tmp_path):
    task, folder = programs
    inputs, labels = task.data("val")
    names = [i.name for i in onnx.load(str(folder / "float.onnx"), load_external_data=False).graph.input]
    arrays = feeds(names, inputs)
    float_logits = OnnxModule(folder / "float.onnx", threads=1)(**inputs)
    here = OnnxModule(folder / "int8.onnx", threads=1)(**inputs)
    emulated, seen = _run_emulated(qemu_x86_64, folder / "int8.onnx", arrays, tmp_path)
    assert seen == "AVX2 True AVX512F False AVX512VNNI False", seen
    for int8_logits in (here, emulated):
        assert_int8_classifies_like_float(int8_logits, float_logits, labels, n_layers=3)
    # Both CPUs multiply the same 7-bit weights exactly in integers; only the float dequantization may round apart.
    assert float((emulated - here).abs().max()) <= 1e-5 * float(here.abs().max())
    # The control: full-range weights do saturate on that CPU, so this test reaches the kernels it means to.
    full_here = OnnxModule(folder / "int8_full_range.onnx", threads=1)(**inputs)
    full_emulated, _ = _run_emulated(qemu_x86_64, folder / "int8_full_range.onnx", arrays, tmp_path)
    assert float((full_emulated - full_here).abs().max()) > 0.05 * float(full_here.abs().max())
