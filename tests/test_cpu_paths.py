"""The torch numerics that depend on the CPU, run again on torch's AVX2 paths where this machine has AVX-512.

Machines of our kind differ: some have AVX-512 with VNNI, some only AVX2. `ATEN_CPU_CAPABILITY=avx2` makes
ATen and inductor's generated code take their AVX2 paths, and `ONEDNN_MAX_CPU_ISA=AVX2` does the same for
oneDNN (the compiled runtime's int8 kernels), so an AVX-512 machine checks what an AVX2 one computes. torch.ao's
x86 int8 (fbgemm) picks its kernels from CPUID and ignores both; it keeps activations to 7 bits, so its u8s8
kernels cannot saturate without VNNI either. ONNX Runtime's own int8 is checked on an emulated AVX2 CPU in
tests/runtimes/test_int8_cpus.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# bf16 and int8 numerics of every torch path (eager, torch.ao FX and dynamic, PT2E + inductor), judged by quality.
CPU_DEPENDENT = [
    "tests/compress/test_quantize.py",
    "tests/runtimes/test_runtimes.py::test_float_runtimes_agree_with_eager_and_int8_stays_close",
]


@pytest.mark.slow
@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() == "AVX2", reason="this machine has only AVX2: the main run already takes those paths"
)
def test_cpu_dependent_numerics_hold_on_torchs_avx2_paths():
    env = {**os.environ, **AVX2}
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "AVX2", probe.stdout
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CPU_DEPENDENT],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.strip().splitlines()[-1] and "skipped" not in done.stdout.strip().splitlines()[-1]
