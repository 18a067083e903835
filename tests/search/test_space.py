"""The define-by-run space: baseline first, knobs only where they matter, grid discretization."""

from __future__ import annotations

import optuna
import pytest

from orchestrator.config import Choices, Range
from orchestrator.search.space import BASELINE, DefineByRun, baseline_point, grid_space, recipe_from_config

SPACE = {
    "prune_method": Choices(choices=["none", "structured", "unstructured", "semi_structured_2_4"]),
    "prune_ratio": Range(low=0.1, high=0.9),
    "prune_importance": Choices(choices=["l1", "l2"]),
    "bits": Choices(choices=[32, 16, 8, 4]),
    "int4_group_size": Choices(choices=[32, 64]),
    "kd_steps": Choices(choices=[0, 100]),
    "kd_temperature": Range(low=1.0, high=8.0),
    "kd_learning_rate": Range(low=1e-4, high=1e-2, log=True),
    "qat": Choices(choices=[False, True]),
}


def _sample(space, n=60, seed=0, enqueue=True):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=seed))
    if enqueue and baseline_point(space):
        study.enqueue_trial(baseline_point(space))  # what OptunaSearch does with points_to_evaluate
    fn = DefineByRun(space)
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = fn(trial)
        out.append((trial.params, {**trial.params, **fixed}))
        study.tell(trial, [0.5, 1.0])
    return out, study


def test_first_trial_is_the_uncompressed_teacher_with_real_parameters():
    (params, config), *_ = _sample(SPACE, n=1)[0]
    assert params == {"prune_method": "none", "bits": 32, "kd_steps": 0}
    assert {k: config[k] for k in BASELINE} == BASELINE and config["baseline"] is True
    assert recipe_from_config(config, seed=0).stages() == []


def test_samplers_that_model_shared_knobs_see_the_baseline_too():
    """NSGA-II and GP model the knobs every trial has; a baseline without parameters left them none."""
    _, study = _sample(SPACE, n=12)
    shared = optuna.search_space.intersection_search_space(study.get_trials())
    assert {"prune_method", "bits", "kd_steps"} <= set(shared)


def test_baseline_is_forced_where_the_space_cannot_express_it():
    space = {"prune_method": "structured", "prune_ratio": 0.5, "bits": Choices(choices=[8, 4])}
    assert baseline_point(space) == {}
    (params, config), *_ = _sample(space, n=1)[0]
    assert {k: config[k] for k in BASELINE} == BASELINE and config["baseline"] is True


def test_conditional_knobs_only_where_they_matter():
    for params, config in _sample(SPACE)[0][1:]:
        recipe = recipe_from_config(config, seed=0)  # every sampled config is a valid recipe
        method = config["prune_method"]
        assert ("prune_ratio" in params) == (method in ("structured", "unstructured"))
        assert ("prune_importance" in params) == (method == "structured")
        if method == "none":
            assert recipe.prune_ratio == 0.0
        if method == "semi_structured_2_4":
            assert recipe.prune_ratio == 0.5
        assert ("int4_group_size" in params) == (config["bits"] == 4)
        assert ("kd_temperature" in params) == (config["kd_steps"] > 0)
        assert ("qat" in params) == (config["kd_steps"] > 0 and config["bits"] <= 8)
        assert config["baseline"] is False


def test_fixed_knobs_are_constants_not_parameters():
    space = {"prune_method": "structured", "prune_ratio": 0.5, "bits": Choices(choices=[8, 32])}
    for params, config in _sample(space, n=5)[0][1:]:
        assert set(params) == {"bits"}
        assert config["prune_method"] == "structured" and config["prune_ratio"] == 0.5


def test_integer_ranges_suggest_integers():
    space = {"kd_steps": Range(low=10, high=50, step=10)}
    values = {config["kd_steps"] for _, config in _sample(space, n=30)[0][1:]}
    assert values <= {10, 20, 30, 40, 50} and all(isinstance(v, int) for v in values)


def test_grid_space_discretizes_ranges():
    grid = grid_space(
        {"prune_ratio": Range(low=0.0, high=0.8), "kd_learning_rate": Range(low=1e-4, high=1e-2, log=True),
         "kd_steps": Range(low=0, high=200, step=100), "bits": Choices(choices=[8, 32])},
        points=3,
    )  # fmt: skip
    assert grid["prune_ratio"] == [0.0, 0.4, 0.8]
    assert grid["kd_learning_rate"] == pytest.approx([1e-4, 1e-3, 1e-2])
    assert grid["kd_steps"] == [0, 100, 200]
    assert grid["bits"] == [8, 32]
