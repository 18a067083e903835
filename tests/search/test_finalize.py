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


def _held_out(items: list[float] | None, higher_is_better: bool = True) -> dict:
    value = sum(items) / len(items) if items else 0.5
    return {"metric": "ndcg_at_10", "value": value, "higher_is_better": higher_is_better, "items": items}


def test_the_held_out_drop_is_paired_over_the_same_queries():
    import pandas as pd

    from orchestrator.search.finalize import add_test_drops

    teacher = [1.0, 0.5, 0.0, 1.0, 0.63, 0.5, 1.0, 0.0] * 8
    # The candidate loses a little on a few queries: the per-query differences are small, their spread too.
    candidate = [t - (0.13 if i % 5 == 0 else 0.0) for i, t in enumerate(teacher)]
    done = {"base": _held_out(teacher), "cand": _held_out(candidate), "digits": {**_held_out(None), "value": 0.4}}
    frame = pd.DataFrame({"trial_id": ["base", "cand", "digits", "never"]})
    add_test_drops(frame, done, "base")
    cand = frame.set_index("trial_id").loc["cand"]
    expected = sum(teacher) / len(teacher) - sum(candidate) / len(candidate)
    assert abs(cand["test_quality_drop"] - expected) < 1e-12  # the paired mean is the difference of the means
    assert cand["test_quality_drop_ci95_low"] <= expected <= cand["test_quality_drop_ci95_high"]
    # Every difference is 0 or 0.13, so the interval stays inside [0, 0.13]; the teacher's own spread is far wider.
    assert 0.0 <= cand["test_quality_drop_ci95_low"] and cand["test_quality_drop_ci95_high"] <= 0.13
    assert frame.set_index("trial_id").loc["base", "test_quality_drop"] == 0.0
    # Without per-item scores (digits, a classifier) the drop is the difference alone, as before: no interval.
    digits = frame.set_index("trial_id").loc["digits"]
    assert abs(digits["test_quality_drop"] - (done["base"]["value"] - 0.4)) < 1e-12
    assert pd.isna(digits["test_quality_drop_ci95_low"]) and pd.isna(frame.set_index("trial_id").loc["never", "test_quality_drop"])
    assert all("items" not in result for result in done.values()), "per-item scores stay out of summary.json"


def test_a_trial_drop_is_paired_only_where_teacher_and_candidate_both_have_items():
    import torch

    from orchestrator.search.trial import drop_against_teacher as quality_drop

    settings = SimpleNamespace(seed=0)
    quality = {"value": 0.4, "higher_is_better": True}
    paired = SimpleNamespace(baseline_quality=0.5, baseline_items=[0.5, 0.5, 0.6, 0.4], settings=settings)
    drop, low, high = quality_drop(quality, paired, torch.tensor([0.4, 0.4, 0.5, 0.3], dtype=torch.float64))
    assert abs(drop - 0.1) < 1e-12 and abs(low - 0.1) < 1e-12 and abs(high - 0.1) < 1e-12  # every difference is 0.1
    unpaired = SimpleNamespace(baseline_quality=0.5, baseline_items=None, settings=settings)
    assert quality_drop(quality, unpaired, torch.tensor([0.4, 0.4])) == (0.5 - 0.4, None, None)
    lower_is_better = {"value": 0.6, "higher_is_better": False}
    assert quality_drop(lower_is_better, unpaired, None)[0] == 0.6 - 0.5
