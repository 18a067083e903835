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

# Under `make test` two pytest workers share the two cores: one torch thread each (and in the processes they start)
# keeps them from oversubscribing the cores, which made the suite's in-process tests 1.6x slower (130 s against 81 s
# on tests/compress and tests/tasks, measured on 2 cores). Alone, a test process uses both cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
TEST_THREADS = int(os.environ.get("HEDGEROW_TEST_THREADS") or (1 if _WORKERS > 1 else 2))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(TEST_THREADS))
torch.set_num_threads(TEST_THREADS)
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
# `make test` runs `pytest -n 2`: each module runs whole on one worker, so its fixtures are built once, and the modules
# that read the shared fast search run on one worker together (that search runs once, not once per worker). Modules
# with integration tests (marked slow) are handed out first, so the many short unit tests fill the workers' last
# minutes instead of one long search running alone at the end.
READS_FAST_SEARCH = (
    "tests/report/test_browser.py", "tests/report/test_build.py",
    "tests/search/test_search_run.py", "tests/search/test_seeded_search.py",
)  # fmt: skip


def _module(nodeid: str) -> str:
    """The test module a node id belongs to (tests/x/test_y.py)."""
    return nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config, log):
    """Hand each worker whole modules (the modules reading the fast search as one), in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # xdist would put the modules with the most tests first, searches last

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return "fast_search_run" if module in READS_FAST_SEARCH else module

    return ByModule(config, log)


def pytest_collection_modifyitems(config, items):
    """Put the modules with integration tests first; refuse a module that reads the fast search unlisted."""
    unlisted = sorted({_module(item.nodeid) for item in items if "fast_search_run" in item.fixturenames} - set(READS_FAST_SEARCH))
    if unlisted:
        raise pytest.UsageError(f"add {unlisted} to READS_FAST_SEARCH in tests/conftest.py: each reads fast_search_run")
    slow_modules = {_module(item.nodeid) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _module(item.nodeid) not in slow_modules)  # stable: each module's order kept
