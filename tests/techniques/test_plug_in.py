"""A new technique is one module and one registration line: a package's `hedgerow.techniques` entry point.

A toy technique (noise added to every weight, one knob) is installed as a package would install it (a module and
its dist-info with the entry point, on the path of a fresh process). Without any change to Hedgerow, its knob is
a Recipe field, a config knob, sampled by the search space, seeded, a trials.csv column, applied by apply_recipe,
and shown in the report's knob table and recipe strings.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TOY = textwrap.dedent(
    '''
    """Add Gaussian noise to every weight: a stand-in for a new technique, declared as every technique is."""

    import torch
    from pydantic import Field

    from orchestrator.techniques import Knob, Stage, StepRecord, Technique, TechniqueConfig
    from orchestrator.techniques.domains import mildest_ratio


    class WeightNoiseConfig(TechniqueConfig):
        stage = Stage.PRUNE
        std: float = Field(gt=0)


    def add_noise(model, config, ctx):
        torch.manual_seed(0)
        with torch.no_grad():
            for weight in model.parameters():
                weight.add_(torch.randn_like(weight) * config.std)
        return model, StepRecord.of(config, "weight_noise", details={"std": config.std})


    TECHNIQUE = Technique(
        name="weight_noise",
        knobs=(Knob("noise_std", float, 0.0, "std of the noise added to every weight", {"ge": 0.0, "le": 1.0}),),
        stages=lambda recipe: [WeightNoiseConfig(std=recipe.noise_std)] if recipe.noise_std > 0 else [],
        describe=lambda knobs, shown: [f"noise σ {knobs['noise_std']:g}"] if knobs.get("noise_std") else [],
        seeds=lambda space, layers: [{"noise_std": mildest_ratio(space.get("noise_std"))}] if "noise_std" in space else [],
        handlers={WeightNoiseConfig: add_noise},
    )
    '''
)

ENTRY_POINT = "[hedgerow.techniques]\nweight_noise = toy_technique:TECHNIQUE\n"  # the one registration line

CHECK = textwrap.dedent(
    '''
    import json
    import sys
    from pathlib import Path

    import optuna
    import pandas as pd
    import yaml

    from orchestrator.compress import Recipe, apply_recipe
    from orchestrator.config import parse_config
    from orchestrator.errors import InputError
    from orchestrator.report.content import build
    from orchestrator.report.recipes import recipe_text
    from orchestrator.report.results import COLUMNS
    from orchestrator.report.rundata import load_run
    from orchestrator.search.seeds import single_technique_candidates
    from orchestrator.search.space import DefineByRun
    from orchestrator.tasks import load_task
    from tests.report._fake import make_run

    # The Recipe: a field, whose default leaves every older recipe's key as it was.
    assert Recipe().key() == "121d7f3e4eda3c94" and Recipe(noise_std=0.05).key() != Recipe().key()
    # The config: a knob like any other, did-you-mean included; the space samples it and the seeds try it alone.
    config = parse_config({"task": {"name": "digits"}, "traffic": {"peak_rps": 100, "latency_slo_p95_ms": 100},
                           "space": {"noise_std": {"low": 0.01, "high": 0.2}, "bits": {"choices": [32, 8]}}})
    try:
        parse_config({"task": {"name": "digits"}, "traffic": {"peak_rps": 100, "latency_slo_p95_ms": 100},
                      "space": {"noise_sd": 0.1}})
        raise SystemExit("a misspelt knob was accepted")
    except InputError as exc:
        assert "did you mean 'noise_std'" in str(exc), exc
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    DefineByRun(config.space)(trial)
    assert 0.01 <= trial.params["noise_std"] <= 0.2, trial.params
    assert {"noise_std": 0.01} in [{k: c[k] for k in ("noise_std",) if c.get("noise_std")} for c in single_technique_candidates(config.space)]
    # The trials table, the recipe string, and a candidate built by apply_recipe through its handler.
    assert "noise_std" in COLUMNS and recipe_text({"bits": 8, "noise_std": 0.05}) == "int8 · noise σ 0.05"
    compressed = apply_recipe(load_task("digits"), Recipe(noise_std=0.05))
    assert [s.technique for s in compressed.record.steps] == ["weight_noise"]
    # The report: its knob table and the Pareto table's recipe.
    root = make_run(Path(sys.argv[1]))
    run_config = yaml.safe_load((root / "config.yaml").read_text())
    run_config["space"]["noise_std"] = {"low": 0.01, "high": 0.2}
    (root / "config.yaml").write_text(yaml.safe_dump(run_config))
    trials = pd.read_csv(root / "trials.csv", dtype={"trial_id": str})
    trials["noise_std"] = 0.05
    trials.to_csv(root / "trials.csv", index=False)
    summary = json.loads((root / "summary.json").read_text())  # the recommended candidate's knobs, as finalize writes them
    summary["recommended"]["knobs"]["noise_std"] = 0.05
    (root / "summary.json").write_text(json.dumps(summary))
    report = build(load_run(root))
    assert ["noise_std", "0.05", "—"] in report.knobs.rows, report.knobs.rows  # the baseline's knobs have none
    assert all("noise σ 0.05" in row[1] for row in report.pareto.rows), report.pareto.rows
    print("PLUGGED IN")
    '''
)


@pytest.mark.slow
def test_a_technique_from_an_entry_point_reaches_the_recipe_space_seeds_csv_and_report(tmp_path):
    package = tmp_path / "site"
    (package / "toy_technique-0.1.dist-info").mkdir(parents=True)
    (package / "toy_technique.py").write_text(TOY)
    (package / "toy_technique-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-technique\nVersion: 0.1\n")
    (package / "toy_technique-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINT)
    (tmp_path / "run").mkdir()
    env = {**__import__("os").environ, "PYTHONPATH": f"{package}:{REPO}"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PLUGGED IN" in done.stdout
