"""Two simulated nodes (ray.cluster_utils.Cluster): trials run on both; a node removed mid-search loses no trial."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.search.runner import start_search

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def test_an_embedded_ray_beside_a_running_cluster_starts_its_own(cluster, monkeypatch):
    """Cluster (like `ray start`) writes its address where a bare ray.init() finds and joins it: a search's embedded
    Ray must not, or it dies with a cluster it does not own (and shares its trials with strangers)."""
    monkeypatch.setenv("RAY_ADDRESS", cluster[0].address)
    script = (
        "import ray; from orchestrator.search.local_ray import init_embedded_ray; init_embedded_ray(); "
        "print(ray.get_runtime_context().gcs_address)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    own = done.stdout.strip().splitlines()[-1]
    assert own.startswith("127.0.0.1:") and own != cluster[0].address


def _records(run_root: Path) -> int:
    return sum(1 for _ in run_root.glob("*/trials/*.json"))


def test_trials_use_both_nodes_and_survive_a_node_removed_mid_search(cluster, write_config, tmp_path):
    cluster_obj, worker = cluster
    config = write_config(
        search={"trials": 6, "max_concurrent": 2, "max_failures": 1},
        space={"prune_method": {"choices": ["structured", "none"]}, "prune_ratio": {"low": 0.3, "high": 0.7},
               "bits": {"choices": [32, 8]}, "kd_steps": 60},
    )  # fmt: skip
    out = tmp_path / "runs"
    removed = threading.Event()

    def remove_worker_after_some_trials() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and _records(out) < 3:  # both nodes have run trials, some are still to run
            time.sleep(0.2)
        cluster_obj.remove_node(worker)
        removed.set()

    remover = threading.Thread(target=remove_worker_after_some_trials, daemon=True)
    remover.start()
    run_dir = start_search(config, out=out)
    remover.join(timeout=60)
    assert removed.is_set(), "the worker node was never removed"

    frame = pd.read_csv(run_dir / "trials.csv")
    assert len(frame) == 6 and frame["trial_id"].is_unique
    assert set(frame["status"]) <= {"finished", "failed"}
    failed = frame[frame["status"] == "failed"]
    assert all(isinstance(e, str) and e for e in failed["error"]), "a failed trial without its reason"
    finished = frame[frame["status"] == "finished"]
    assert finished["node_id"].nunique() == 2, "trials should have run on both nodes"
