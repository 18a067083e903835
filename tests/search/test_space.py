"""The define-by-run space: baseline first, knobs only where they matter, grid discretization."""

from __future__ import annotations

import optuna
import pytest

from orchestrator.techniques.domains import Choices, Range
from orchestrator.errors import InputError
from orchestrator.tasks.losses import DistillLoss
from orchestrator.search.space import (
    BASELINE,
    DefineByRun,
    baseline_point,
    check_space_fits,
    grid_space,
    recipe_from_config,
)
from orchestrator.config import knob_of_param

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
    assert params == {"prune_method": "none", "bits_index": 3, "kd_steps_index": 0}  # 32 bits: last of [4, 8, 16, 32]
    assert {k: config[k] for k in BASELINE} == BASELINE and config["baseline"] is True
    assert recipe_from_config(config, seed=0).stages() == []


def test_samplers_that_model_shared_knobs_see_the_baseline_too():
    """NSGA-II and GP model the knobs every trial has; a baseline without parameters left them none."""
    _, study = _sample(SPACE, n=12)
    shared = optuna.search_space.intersection_search_space(study.get_trials())
    assert {"prune_method", "bits_index", "kd_steps_index"} <= set(shared)


def test_baseline_is_forced_where_the_space_cannot_express_it():
    space = {"prune_method": "structured", "prune_ratio": 0.5, "bits": Choices(choices=[8, 4])}
    assert baseline_point(space) == {}
    (params, config), *_ = _sample(space, n=1)[0]
    assert {k: config[k] for k in BASELINE} == BASELINE and config["baseline"] is True


def test_conditional_knobs_only_where_they_matter():
    for sampled, config in _sample(SPACE)[0][1:]:
        params = {knob_of_param(name) for name in sampled}  # numeric choices are sampled as `<knob>_index`
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
        assert set(params) == {"bits_index"}
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
    assert grid["bits_index"] == [0, 1] and "bits" not in grid


def test_numeric_choices_are_sampled_in_order_and_configs_carry_the_values():
    """TPE, GP and NSGA-II see 8 bits between 4 and 16: an integer position, not an unordered category."""
    space = {"prune_method": Choices(choices=["none", "structured"]), "prune_ratio": Choices(choices=[0.7, 0.3, 0.5]),
             "bits": Choices(choices=[32, 16, 8, 4]), "qat": Choices(choices=[False, True])}  # fmt: skip
    samples, study = _sample(space, n=40)
    assert "bits" not in samples[1][0] and "prune_method" in samples[1][0]
    for params, config in samples[1:]:
        assert config["bits"] == [4, 8, 16, 32][params["bits_index"]]
        if "prune_ratio_index" in params:
            assert config["prune_ratio"] == [0.3, 0.5, 0.7][params["prune_ratio_index"]]
        assert recipe_from_config(config, seed=0).bits == config["bits"]
    dists = study.get_trials()[1].distributions
    assert dists["bits_index"] == optuna.distributions.IntDistribution(0, 3)
    assert isinstance(dists["prune_method"], optuna.distributions.CategoricalDistribution)
    assert {config["bits"] for _, config in samples[1:]} == {4, 8, 16, 32}


def test_grid_sampler_walks_every_numeric_choice():
    space = {"prune_method": "none", "bits": Choices(choices=[32, 8, 4])}
    grid = grid_space(space, points=3)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.GridSampler(grid, seed=0))
    fn, seen = DefineByRun(space), []

    def objective(trial):
        bits = fn(trial)["bits"]
        seen.append((trial.params["bits_index"], bits))
        return 0.5, 1.0

    study.optimize(objective, n_trials=10)  # the grid sampler stops the study once every point is done
    assert sorted(i for i, _ in seen) == [0, 1, 2]
    assert seen[0][1] == 32  # trial 0 is the teacher, whatever grid point it drew
    assert all(bits == [4, 8, 32][i] for i, bits in seen[1:])


def test_index_parameters_name_their_knob():
    assert knob_of_param("bits_index") == "bits"
    assert knob_of_param("kd_steps_index") == "kd_steps"
    assert knob_of_param("prune_method") == "prune_method"
    assert knob_of_param("some_index") == "some_index"  # not a knob: left as it is


def test_runtime_is_sampled_only_for_float32_and_int8_candidates():
    import optuna

    from orchestrator.techniques.domains import Choices
    from orchestrator.search.space import DefineByRun

    space = {"bits": Choices(choices=[32, 16, 8]), "runtime": Choices(choices=["eager", "compiled", "onnxruntime"])}
    define = DefineByRun(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        fixed = define(trial)
        bits = fixed["bits"]
        runtime = fixed.get("runtime", trial.params.get("runtime"))
        seen.add((bits, runtime))
        if bits == 16:
            assert runtime == "eager" and "runtime" not in trial.params
        study.tell(trial, 1.0)
    assert {(8, "onnxruntime"), (32, "compiled")} <= seen


def test_a_runtime_space_that_cannot_be_served_is_refused_up_front():
    from orchestrator.techniques.domains import Choices
    from orchestrator.errors import InputError
    from orchestrator.search.space import check_runtimes

    with pytest.raises(InputError, match=r"space.runtime: \['onnxruntime'\] serve float32 or int8 models"):
        check_runtimes({"bits": 16, "runtime": Choices(choices=["eager", "onnxruntime"])}, "cpu", 0)
    with pytest.raises(InputError, match="space.runtime: 'onnxruntime' runs on ONNX Runtime's CPU provider"):
        check_runtimes({"runtime": "onnxruntime"}, "auto", 1)
    check_runtimes({"bits": Choices(choices=[16, 8]), "runtime": Choices(choices=["eager", "onnxruntime"])}, "cpu", 0)


@pytest.mark.parametrize("family", ["bert", "distilbert", "modernbert"])
def test_transformer_knobs_are_checked_against_any_encoder_family(family):
    from tests.compress.test_encoder_families import HEADS, LAYERS, make

    class Task:  # what check_space_fits reads of a task: its name, the losses it offers, and its teacher
        name = f"tiny-{family}"
        distill_losses = (DistillLoss.AUTO,)

        def teacher(self):
            return make(family)

    check_space_fits({"prune_heads_ratio": Choices(choices=[0.0, 0.5]), "keep_layers": Choices(choices=[2, LAYERS])}, Task())
    with pytest.raises(InputError, match=f"would remove all {HEADS} attention heads"):
        check_space_fits({"prune_heads_ratio": 0.9}, Task())
    with pytest.raises(InputError, match=f"the encoder has {LAYERS}"):
        check_space_fits({"keep_layers": LAYERS + 1}, Task())
