"""Export and load run in memory bounded by the serving batch, not by the split: a val split that one batch would
need GiBs of activations for exports, and embeds back, in a process whose address space is capped far below that.

The model is a tiny random BERT (hidden 32, two layers, eight heads) at 128 tokens per text: a pass in serving
batches is quick, while one batch of the whole split is not small, since ONNX Runtime holds attention scores of
texts × heads × tokens² (measured here: about 2.7 MB a text, 2.7 GB for the split's 1,000). The cap is set inside
the child process once its libraries are imported, as what it already maps plus a 1 GiB budget, so it holds on any
machine whatever its libraries map; the same process then shows the cap binds: the split as one batch fails under it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import tests.deploy.conftest as deploy_conftest
from orchestrator.compress import Recipe
from tests.conftest import REPO
from tests.tasks.text.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.slow

SERVING_BATCH = 32
BUDGET_BYTES = 1 << 30  # address space the child may add to what it maps after its imports
SIZES = {
    "seq_len": 128, "n_train": 64, "n_val_queries": 100, "n_val_passages": 900, "n_test_queries": 8,
    "n_test_passages": 40, "metric": "fidelity",
}  # fmt: skip
RECIPE = Recipe(bits=8, runtime="onnxruntime")  # the reported case: int8 on ONNX Runtime

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import onnx, onnxruntime, onnxscript, tokenizers, torch, transformers  # noqa: F401  (mapped before the cap)
    import onnxruntime.quantization  # noqa: F401
    import pandas, pyarrow  # noqa: E401  (pandas reads trials.csv into Arrow strings)

    pandas.DataFrame({"s": ["mapped before the cap"]}).astype("string[pyarrow]")
    from orchestrator.deploy import export_trial, load
    from orchestrator.tasks.batches import run

    run_dir, dest, budget, split = sys.argv[1], sys.argv[2], int(sys.argv[3]), torch.load(sys.argv[4])

    def mapped_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    cap = mapped_bytes() + budget
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    lines = []
    result = export_trial(run_dir, "ortint8", dest, progress=lines.append, progress_every_s=0)
    loaded = load(result.location)
    embeddings = loaded.embed(split["texts"])
    try:  # what export did before: the whole split in one batch
        with torch.inference_mode():
            run(loaded.module, split["inputs"])
        one_batch = "ran"
    except Exception as exc:
        one_batch = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    print(json.dumps({
        "one_batch": one_batch, "location": result.location, "cap_bytes": cap, "shape": list(embeddings.shape),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "progress": lines,
        "rebuilt": result.manifest.quality.rebuilt_value, "trial": result.manifest.quality.trial_value,
        "program": result.manifest.programs[0].quality,
    }))
    """
)


@pytest.fixture(scope="module")
def large_run(tmp_path_factory):
    """A run folder whose one trial (int8 on ONNX Runtime) belongs to a tiny BERT task with 1,000 val texts."""
    import torch

    from orchestrator.tasks import load_task

    root = tmp_path_factory.mktemp("large-split")
    args = {"model_path": str(save_tiny_bert(root, max_positions=128, heads=8)), **SIZES}
    task = load_task("examples.hf_encoder_task:make_task", args)
    config = {
        **deploy_conftest.CONFIG,
        "task": {"name": "examples.hf_encoder_task:make_task", "args": args},
        "objective": {"metric": "fidelity", "max_quality_drop": 0.5},
        "traffic": {**deploy_conftest.CONFIG["traffic"], "serving_batch_size": SERVING_BATCH},
        "space": {"runtime": {"choices": ["onnxruntime"]}, "bits": 8},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deploy_conftest, "CONFIG", config)
        run_dir = deploy_conftest.write_run(root / "runs", task, task.teacher(), {"ortint8": RECIPE}, "ortint8")
    torch.save({"texts": list(task.texts("val")), "inputs": task.data("val")[0]}, root / "val.pt")
    return run_dir, root / "val.pt"


def test_export_and_embed_a_large_split_under_an_address_space_cap(large_run, tmp_path):
    run_dir, split = large_run
    # glibc reserves 64 MiB per malloc arena; Arrow's own allocator reserves address space by the core count, which
    # differs between machines, so Arrow allocates through malloc here as well.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1", "ARROW_DEFAULT_MEMORY_POOL": "system"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(run_dir), str(tmp_path / "exports"), str(BUDGET_BYTES), str(split)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["shape"] == [1000, 32]
    # The export judged its program on val as the trial did (the quality checks ran on every text, in chunks).
    assert abs(got["rebuilt"] - got["trial"]) <= 1e-6 and abs(got["program"] - got["trial"]) <= 0.005
    # Each long pass said how far it was: texts done of the split.
    assert any(line.strip().startswith(f"{SERVING_BATCH} of 1,000 texts") for line in got["progress"])
    assert any(line.strip().startswith("1,000 of 1,000 texts") for line in got["progress"])
    assert not list((tmp_path / "exports").rglob(".*partial*")), "the staging folder was left behind"
    # The cap binds: the split as one batch, as export ran it before, does not fit under it.
    assert got["one_batch"].startswith("failed"), got["one_batch"]
