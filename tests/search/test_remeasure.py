"""Measured on the instance type itself: nodes that declare their type measure the front again after the search.

A simulated cluster (ray.cluster_utils.Cluster) whose nodes say they are a c7i.large and a
c7g.xlarge, plus one that names a type the catalog lacks.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.search.remeasure import INSTANCE_TYPE_LABEL
from orchestrator.search.runner import start_search

pytestmark = pytest.mark.slow
TYPES = ("c7g.xlarge", "c7i.large")


@pytest.fixture(scope="module")
def labelled_cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "labels": {INSTANCE_TYPE_LABEL: "c7i.large"}})
    cluster.add_node(num_cpus=1, labels={INSTANCE_TYPE_LABEL: "c7g.xlarge"})
    cluster.add_node(num_cpus=0, labels={INSTANCE_TYPE_LABEL: "x9.huge"})  # not in the catalog: warned about, skipped
    cluster.add_node(num_cpus=0, labels={INSTANCE_TYPE_LABEL: "c7i.xlarge"})  # no CPU for a measurement: skipped, no hang
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def measured_run(labelled_cluster, tmp_path_factory):
    import yaml

    from tests.search.conftest import FAST, _merge

    folder = tmp_path_factory.mktemp("node-types")
    config = folder / "search.yaml"
    overrides = {"search": {"trials": 4, "max_concurrent": 2},
                 "space": {"prune_method": {"choices": ["none", "structured"]}, "prune_ratio": {"low": 0.3, "high": 0.7},
                           "bits": 32, "kd_steps": {"choices": [0, 20]}}}  # fmt: skip
    config.write_text(yaml.safe_dump(_merge(FAST, overrides)))
    return start_search(config, out=folder / "runs")


def test_the_baseline_and_every_pareto_candidate_within_the_bound_are_measured_on_each_type(measured_run):
    summary = json.loads((measured_run / "summary.json").read_text())
    rows = summary["node_measurements"]
    frame = pd.read_csv(measured_run / "trials.csv", dtype={"trial_id": str})
    baseline = frame.loc[frame["baseline"].astype(bool), "trial_id"].item()
    measured_ids = {r["trial_id"] for r in rows}
    assert baseline in measured_ids
    for trial_id in measured_ids:
        types = {r["instance_type"]: r for r in rows if r["trial_id"] == trial_id}
        assert set(types) == set(TYPES), (trial_id, types)
        for row in types.values():
            assert row["measured_throughput_sps"] > 0 and row["projection_error"] is not None, row
            assert "measured on this instance type" in row["measured_reason"]
    assert (measured_run / "node_measurements.csv").is_file()


def test_a_remeasured_candidate_is_priced_as_measured_on_those_types(measured_run):
    frame = pd.read_csv(measured_run / "trials.csv", dtype={"trial_id": str, "recipe_key": str})
    summary = json.loads((measured_run / "summary.json").read_text())
    for trial_id in {r["trial_id"] for r in summary["node_measurements"]}:
        row = frame[frame["trial_id"] == trial_id].iloc[0]
        record = json.loads((measured_run / "trials" / f"{row['recipe_key']}.json").read_text())
        by_type = {c["instance_type"]: c for c in record["cost"]["per_instance"]}
        for instance_type in TYPES:
            assert by_type[instance_type]["projected"] is False, by_type[instance_type]["projection_method"]
        assert by_type["c7i.xlarge"]["projected"] is True  # never measured: still deployable, labelled projected
        if row["instance_type"] in TYPES:
            assert not bool(row["projected"])


def test_the_report_shows_measured_and_projected_side_by_side_with_the_error(measured_run):
    report = (measured_run / "report.md").read_text()
    assert "### Measured on the cluster's instance types" in report
    section = report.split("### Measured on the cluster's instance types")[1].split("##")[0]
    assert "projection error" in section
    for instance_type in TYPES:
        assert instance_type in section
    assert "%" in section


def test_a_node_naming_an_unknown_type_or_without_cpus_is_warned_about_and_the_search_goes_on(labelled_cluster):
    from orchestrator.cost.catalog import load_catalog
    from orchestrator.search.remeasure import labelled_nodes

    warnings: list[str] = []
    nodes = labelled_nodes(load_catalog(), warn=warnings.append)
    assert set(nodes) == set(TYPES)
    unknown = [w for w in warnings if "'x9.huge'" in w]
    assert len(unknown) == 1 and "the search goes on" in unknown[0]
    assert any("'c7i.xlarge'" in w and "offers no 1 CPU(s)" in w for w in warnings)
