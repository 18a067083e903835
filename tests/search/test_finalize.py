"""What the search writes for the report: the bundled catalog is named as such, not by this machine's path."""

from __future__ import annotations

from types import SimpleNamespace

from orchestrator.config import parse_config
from orchestrator.cost.catalog import load_catalog
from orchestrator.search.finalize import _inputs

CONFIG = {"task": {"name": "digits"}, "traffic": {"peak_rps": 10, "latency_slo_p95_ms": 50}, "space": {"bits": 32}}


def test_the_bundled_catalog_is_named_bundled_and_a_users_file_by_its_path(tmp_path):
    config = parse_config(CONFIG)
    assert _inputs(SimpleNamespace(config=config, catalog=load_catalog()))["catalog_file"] == "bundled"
    own = tmp_path / "prices.csv"
    own.write_bytes(load_catalog().path.read_bytes())
    assert _inputs(SimpleNamespace(config=config, catalog=load_catalog(own)))["catalog_file"] == str(own)
