"""Shared fixtures: the cached digits task and teacher (trained once per cache), CUDA skips."""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# One teacher cache for the whole suite (and across runs): trained once, then loaded.
os.environ.setdefault("HEDGEROW_CACHE_DIR", str(REPO / ".cache" / "hedgerow"))

import torch  # noqa: E402

from orchestrator.search.local_ray import prepare_embedded_ray  # noqa: E402

# Every Ray the tests start (ray.init, Cluster) runs as the product's embedded one: loopback, token auth on.
prepare_embedded_ray()

torch.set_num_threads(2)
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")


@pytest.fixture(scope="session")
def digits_task():
    """The built-in digits task (its teacher is trained on first use and cached on disk)."""
    from orchestrator.tasks import load_task

    return load_task("digits")


@pytest.fixture(scope="session")
def teacher(digits_task):
    """The trained digits teacher in eval mode."""
    return digits_task.teacher()


requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA; this machine has none"
)


# The CI configuration of the built-in minilm task: the real pretrained model, a few hundred real texts, short sequences.
MINILM_CI = {
    "seq_len": 32, "n_train": 128, "n_val_passages": 60, "n_val_queries": 16, "n_test_passages": 60, "n_test_queries": 16,
}  # fmt: skip


@pytest.fixture(scope="session")
def minilm_task():
    """The built-in minilm task at its CI size (tokenized texts and teacher embeddings cached on disk)."""
    from orchestrator.tasks import load_task

    return load_task("minilm", MINILM_CI)


@dataclass
class FastRun:
    """A finished run folder of the fast search config, and every Ray listener seen while it ran."""

    path: Path
    listeners: list = field(default_factory=list)
    exposed: list = field(default_factory=list)


@pytest.fixture(scope="session")
def fast_search_run(tmp_path_factory) -> FastRun:
    """One real 8-trial search (real Ray, through the CLI) for every test that only reads its run folder.

    The search and report tests share it: running the same search twice tested nothing more. A test that
    writes into a run folder copies it first (`tests/report/conftest.py`'s `run_dir`).
    """
    import yaml

    from orchestrator.cli import main
    from tests.search.conftest import FAST
    from tests.search.test_local_ray import exposed_ports, ray_listeners

    folder = tmp_path_factory.mktemp("fast-search")
    config = folder / "search.yaml"
    config.write_text(yaml.safe_dump(FAST))
    run = FastRun(path=folder)
    done = threading.Event()

    def watch() -> None:  # every half second of the search: which Ray ports listen, and whether any answers beyond loopback
        while not done.wait(0.5):
            listeners = ray_listeners()
            run.listeners += listeners
            run.exposed += exposed_ports(listeners)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert main(["search", str(config), "--out", str(folder / "runs")]) == 0
    finally:
        done.set()
        watcher.join(timeout=30)
    (run.path,) = list((folder / "runs").iterdir())
    return run


# ---- Running the suite on several workers (pytest-xdist, `make test`) -----------------------------------------------
# `make test` runs `pytest -n 2 --dist loadgroup`: a group runs whole on one worker, so a module's fixtures are built
# once. Each module is its own group, except that every test reading the shared fast search joins one group (that
# search runs once, not once per worker). Modules with integration tests (marked slow) are handed out first, so the
# many short unit tests fill the workers' last minutes instead of one long search running alone at the end.
SHARED_SESSION_FIXTURES = ("fast_search_run",)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Group each test by module (or the shared session fixture it reads) and put the slow groups first."""
    def group(item) -> str:
        shared = [name for name in SHARED_SESSION_FIXTURES if name in item.fixturenames]
        return shared[0] if shared else item.nodeid.split("::", 1)[0]

    slow_groups = {group(item) for item in items if item.get_closest_marker("slow")}
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: group(item) not in slow_groups)  # stable: the order within a group is kept
