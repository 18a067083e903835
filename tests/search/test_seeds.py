"""The single-technique candidates a search tries right after the teacher, and how many of them."""

from __future__ import annotations

from orchestrator.techniques.domains import Choices, Range
from orchestrator.search.seeds import seed_candidates, single_technique_candidates
from orchestrator.search.space import BASELINE

MINILM_LIKE = {
    "keep_layers": Choices(choices=[3, 4, 6]),
    "prune_ffn_ratio": Choices(choices=[0.0, 0.25, 0.5]),
    "prune_heads_ratio": Choices(choices=[0.0, 0.25]),
    "bits": Choices(choices=[32, 8]),
    "kd_steps": Choices(choices=[0, 100, 200]),
    "runtime": Choices(choices=["compiled", "eager", "onnxruntime"]),
}


def _changes(candidate: dict) -> dict:
    return {k: v for k, v in candidate.items() if BASELINE.get(k) != v}


def test_int8_alone_on_every_runtime_comes_first_cheapest_to_build_first_then_each_pruning_knob_mildest():
    found = [_changes(c) for c in single_technique_candidates(MINILM_LIKE, teacher_layers=6)]
    assert found == [
        {"bits": 8}, {"bits": 8, "runtime": "onnxruntime"}, {"bits": 8, "runtime": "compiled"},
        {"keep_layers": 4}, {"prune_ffn_ratio": 0.25}, {"prune_heads_ratio": 0.25},
    ]  # fmt: skip


def test_every_seed_is_otherwise_the_teacher_without_distillation():
    for candidate in single_technique_candidates(MINILM_LIKE, teacher_layers=6):
        assert candidate["kd_steps"] == 0 and set(candidate) >= set(BASELINE)
        assert len(_changes(candidate)) <= 2


def test_seeds_take_at_most_a_third_of_the_budget():
    assert len(seed_candidates(MINILM_LIKE, trials=12, teacher_layers=6)) == 4
    assert [_changes(c) for c in seed_candidates(MINILM_LIKE, trials=6, teacher_layers=6)] == [
        {"bits": 8}, {"bits": 8, "runtime": "onnxruntime"}
    ]
    assert seed_candidates(MINILM_LIKE, trials=2, teacher_layers=6) == []


def test_a_cnn_space_seeds_each_bit_width_and_each_pruning_method_at_its_lowest_ratio():
    space = {
        "prune_method": Choices(choices=["none", "structured", "unstructured", "semi_structured_2_4"]),
        "prune_ratio": Range(low=0.3, high=0.85),
        "bits": Choices(choices=[32, 16, 8, 4]),
        "runtime": "eager",
    }
    found = [_changes(c) for c in single_technique_candidates(space)]
    assert found == [
        {"bits": 16}, {"bits": 8}, {"bits": 4},
        {"prune_method": "structured", "prune_ratio": 0.3}, {"prune_method": "unstructured", "prune_ratio": 0.3},
    ]  # fmt: skip


def test_a_space_with_nothing_to_compress_alone_seeds_nothing():
    assert single_technique_candidates({"bits": 32, "kd_steps": Choices(choices=[0, 100])}) == []
    assert single_technique_candidates({"keep_layers": Choices(choices=[6])}, teacher_layers=6) == []


def test_the_minilm_demo_space_tries_int8_alone_on_every_runtime_it_searches_within_twelve_trials():
    # The Target "a 12-trial search includes int8 alone on every runtime of its space", on the shipped space.
    from orchestrator.config import load_config
    from orchestrator.techniques.domains import values_to_check as knob_values
    from tests.conftest import REPO

    space = load_config(REPO / "search_spaces" / "minilm.yaml").space
    seeds = seed_candidates(space, trials=12, teacher_layers=6)  # all-MiniLM-L6-v2: six layers
    int8_alone = {c["runtime"] for c in seeds if _changes(c).keys() <= {"bits", "runtime"} and c["bits"] == 8}
    assert int8_alone == set(knob_values(space["runtime"])) and len(seeds) == 12 // 3
