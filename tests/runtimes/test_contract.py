"""The serving-runtime contract: every registered runtime, float32 and int8 where it serves them, goes through
build → measure → export in a fresh process and load in another, on a small convolutional model (every case in
the same two processes: an interpreter start each, not two per case).

A new runtime passes this by registering itself (runtimes/__init__.py); nothing here names one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.runtimes import REGISTRY

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CASES = [(runtime.name, bits) for runtime in REGISTRY for bits in (32, 8) if bits in runtime.bits]

TASK = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from orchestrator.tasks.base import Task


    class SmallTask(Task):
        """A seeded small CNN on random 8x8 images, labelled by its own predictions."""

        name = "small"
        predict_batch_size = 8  # judged 8 at a time: no pass over val (128) may run more at once

        def __init__(self):
            torch.manual_seed(0)
            self._teacher = nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
            ).eval()
            inputs = torch.randn(512, 1, 8, 8, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                labels = self._teacher(inputs).argmax(1)
            self._splits = {"train": (inputs[:256], labels[:256]), "val": (inputs[256:384], labels[256:384]),
                            "test": (inputs[384:], labels[384:])}

        def teacher(self):
            return self._teacher

        def data(self, split):
            return self._splits[split]
    '''
)

BUILD = TASK + textwrap.dedent(
    '''
    import json, sys
    from pathlib import Path
    from orchestrator.compress import Recipe, apply_recipe
    from orchestrator.measure import measure
    from orchestrator.runtimes import REGISTRY, ServedProgram
    from orchestrator.tasks.batches import run

    def rows_seen_by_modules(seen):
        """Wrap nn.Module.__call__ to note the batch dimension of every call (symbolic ones, in export tracing, skipped)."""
        call = torch.nn.Module.__call__

        def noting(self, *args, **kwargs):
            if not torch.compiler.is_compiling():  # what torch.compile traces is not a call on data
                first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dim() > 0), None)
                if first is not None and isinstance(first.shape[0], int):
                    seen.append(first.shape[0])
            return call(self, *args, **kwargs)

        return call, noting

    def build(name, bits, out):
        task, runtime = SmallTask(), REGISTRY.get(name)
        compressed = apply_recipe(task, Recipe(runtime=name, bits=bits), serving_batch_size=8)
        model, steps = compressed.model, compressed.record.steps
        metrics = measure(model, task.example_batch(8), threads=1, batch_repeats=3, latency_repeats=3)
        inputs, _ = task.data("val")
        seen = []
        call, torch.nn.Module.__call__ = rows_seen_by_modules(seen)
        try:
            saved = runtime.save(model, steps, task, inputs, out, batch_size=8)
        finally:
            torch.nn.Module.__call__ = call
        with torch.inference_mode():
            torch.save(run(model, inputs).float(), out / "served_outputs.pt")
        if saved is None:  # its program is the module itself: the safetensors weights export writes for every runtime
            from orchestrator.deploy.weights import architecture, save_weights

            arch = architecture(task, steps, inputs, teacher_fingerprint="contract")
            save_weights(model, out / "model.safetensors", arch.weights_format)
            (out / "architecture.json").write_text(arch.model_dump_json())
        (out / "built.json").write_text(json.dumps({
            "stages": [s.stage for s in steps],
            "own_stages": len(runtime.stages(bits)),
            "params": metrics.params, "throughput_sps": metrics.throughput_sps, "size_bytes": metrics.size_bytes,
            "served_program": isinstance(model, ServedProgram),
            "kernel_archs": runtime.kernel_archs(steps),
            "saved": None if saved is None else {**saved.__dict__},
            "most_rows_at_once_in_save": max(seen, default=0),
            "val": task.evaluate(model, "val")["value"],
        }))

    for case in sys.argv[1:]:
        name, bits, out = case.split(",")
        build(name, int(bits), Path(out))
    '''
)

LOAD = TASK + textwrap.dedent(
    '''
    import json, sys
    from pathlib import Path
    from orchestrator.runtimes import REGISTRY, ExportView
    from orchestrator.tasks.batches import repeat_to, run

    def load(name, out):
        saved = json.loads((out / "saved.json").read_text())
        task = SmallTask()
        inputs, _ = task.data("val")

        def program_file(formats):
            if saved is None or saved["format"] not in formats:
                raise LookupError(f"no program among {formats}")
            return saved["format"], saved["file"]

        def weights():
            from orchestrator.deploy.manifest import Architecture
            from orchestrator.deploy.weights import load_module

            arch = Architecture.model_validate_json((out / "architecture.json").read_text())
            return load_module(task, arch, out / "model.safetensors")

        view = ExportView(root=out, program_file=program_file, settings=(saved or {}).get("settings", {}),
                          example=lambda n: repeat_to(inputs, n), weights=weights)
        module = REGISTRY.get(name).load(view, torch.device("cpu"))
        with torch.inference_mode():
            torch.save(run(module, inputs).float(), out / "loaded_outputs.pt")
        (out / "loaded.json").write_text(json.dumps({"val": task.evaluate(module, "val")["value"]}))

    for case in sys.argv[1:]:
        name, out = case.split(",")
        load(name, Path(out))
    '''
)


def _python(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def contract(tmp_path_factory) -> dict[tuple[str, int], tuple[dict, dict, Path]]:
    """Every case built, measured and saved in one fresh process, then loaded in another: (built, loaded, folder)."""
    folders = {case: tmp_path_factory.mktemp(f"{case[0]}-{case[1]}") for case in CASES}
    _python(BUILD, *(f"{name},{bits},{folders[name, bits]}" for name, bits in CASES))
    built = {case: json.loads((folder / "built.json").read_text()) for case, folder in folders.items()}
    for case, folder in folders.items():
        (folder / "saved.json").write_text(json.dumps(built[case]["saved"]))
    _python(LOAD, *(f"{name},{folders[name, bits]}" for name, bits in CASES))
    return {case: (built[case], json.loads((folder / "loaded.json").read_text()), folder) for case, folder in folders.items()}


@pytest.mark.parametrize(("name", "bits"), CASES, ids=[f"{n}-{b}" for n, b in CASES])
def test_every_runtime_builds_measures_exports_and_loads_in_a_fresh_process(contract, name, bits):
    import torch

    runtime = REGISTRY.get(name)
    built, loaded, folder = contract[name, bits]
    # build: a runtime with stages of its own ends the build with its runtime stage
    assert ("runtime" in built["stages"]) == (built["own_stages"] > 0)
    assert "runtime" not in built["stages"] or built["stages"][-1] == "runtime"
    # measure: the served program is counted, not an empty shell around it
    assert built["params"] > 0 and built["throughput_sps"] > 0 and built["size_bytes"] > 0
    assert built["served_program"] == (built["saved"] is not None)
    assert built["kernel_archs"] is None or set(built["kernel_archs"]) <= {"x86_64", "arm64"}
    # export: a program the runtime's own loader reads, judged on val as it was written
    saved = built["saved"]
    if saved is not None:
        assert saved["format"] in runtime.program_formats and (folder / saved["file"]).is_file()
        assert saved["quality"] == pytest.approx(built["val"], abs=0.02)
    # ...running the 128 val examples 8 at a time, the serving batch it was given: memory follows the batch, not the split
    assert 0 < built["most_rows_at_once_in_save"] <= 8 if saved is not None else built["most_rows_at_once_in_save"] == 0
    # load, in a process that never built it: the same outputs, as the trial served them
    served, again = torch.load(folder / "served_outputs.pt"), torch.load(folder / "loaded_outputs.pt")
    assert again.shape == served.shape
    assert float((again - served).abs().max()) <= (1e-3 if bits == 32 else 0.25)
    assert (again.argmax(1) == served.argmax(1)).float().mean() >= 0.97
    assert loaded["val"] == pytest.approx(built["val"], abs=0.02)
