"""A decoder-LLM run folder for export tests: the tiny Llama of tests/llm_models.py as a CausalLMTask, each trial
compressed for real by apply_recipe and judged on val, written as `hedgerow search` writes a run (no Ray, no timing,
no pricing: the cost record says no instance was priced, as for a search whose catalog had none feasible)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.config import parse_config, to_yaml
from orchestrator.cost.model import CostResult
from orchestrator.report.records import Candidate, Summary, TrialRecord
from orchestrator.report.results import COLUMNS
from orchestrator.tasks.checkpoint import tensor_fingerprint
from orchestrator.tasks.registry import load_task
from orchestrator.threads import torch_threads
from tests.llm_models import tiny_llm_folder, write_text

TASK_NAME = "orchestrator.tasks.llm.causal_lm:CausalLMTask"
SMALL = {"window_tokens": 32, "train_window_tokens": 16, "n_val": 4, "n_test": 4, "n_train": 8, "top_k": 8}
MAX_NEW_TOKENS_LIMIT = 48
TRIAL_THREADS = 1


def llm_config(task_args: dict) -> dict:
    """A search config for the tiny LLM: token traffic, no latency_slo_p95_ms (its SLOs are per token)."""
    return {
        "task": {"name": TASK_NAME, "args": task_args},
        "objective": {"metric": "log_perplexity", "max_perplexity_increase": 0.05},
        "traffic": {
            "peak_rps": 2,
            "tokens": {"prompt_tokens": 24, "output_tokens": 16, "max_new_tokens_limit": MAX_NEW_TOKENS_LIMIT},
        },
        "search": {"trials": 3, "seed": 0},
        "space": {"bits": {"choices": [32, 8, 4]}},
    }


def task_args(root: Path) -> dict:
    """A tiny model folder and text under root, as CausalLMTask arguments."""
    model = tiny_llm_folder(root / "tiny-llama")
    text = write_text(root / "text.txt")
    return {"model_path": str(model), "text_file": str(text), **SMALL}


def unpriced(region: str = "us-east-1") -> CostResult:
    """A cost record with no instance chosen (the export then writes a one-replica Serve config)."""
    return CostResult(
        feasible=False, instance_type=None, accelerator=None, replicas=None, hourly_usd=None, monthly_usd=None,
        projected=False, reason="not priced in this test", per_instance=[], region=region,
        catalog_as_of=dt.date(2026, 1, 1),
    )  # fmt: skip


def write_llm_run(root: Path, recipes: dict[str, Recipe], recommended: str) -> tuple[Path, object]:
    """(run folder, task): one trial per recipe, each compressed and judged as a trial would."""
    args = task_args(root)
    config = parse_config(llm_config(args))
    task = load_task(TASK_NAME, args)
    teacher = task.teacher()
    run = root / "llm-20260101-000000-abcdef"
    (run / "trials").mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(config))
    (run / "run.json").write_text(json.dumps({"run_id": run.name, "teacher_fingerprint": tensor_fingerprint(teacher)}))
    rows = []
    for trial_id, recipe in recipes.items():
        with torch_threads(TRIAL_THREADS):
            compressed = apply_recipe(task, recipe, teacher=teacher)
            quality = task.evaluate(compressed.model, "val")
        metrics = {"params": sum(p.numel() for p in compressed.model.parameters()), "serving_batch_size": 1}
        row = {
            "trial_id": trial_id, "status": "finished", "recipe_key": recipe.key(), "baseline": False,
            **{k: v for k, v in recipe.model_dump().items() if k != "version"},
            "quality_metric": "log_perplexity", "quality": quality["value"], "quality_drop": 0.0,
            "device": "test cpu", "device_kind": "cpu", "threads": TRIAL_THREADS, "throughput_sps": 1.5,
            "instance_type": None, "replicas": None, "monthly_usd": None, "feasible": False, "pareto": True,
            "test_quality": quality["value"],
        }  # fmt: skip
        record = TrialRecord(
            row=row, recipe=recipe, compression=compressed.record, metrics=metrics, quality=dict(quality), cost=unpriced()
        )
        record.write(run / "trials" / f"{recipe.key()}.json")
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame[COLUMNS].to_csv(run / "trials.csv", index=False)
    Summary(
        run_id=run.name, task=config.task.name, quality_metric="log_perplexity",
        max_quality_drop=config.objective.max_quality_drop, n_trials=len(rows), n_finished=len(rows),
        recommended=Candidate(trial_id=recommended),
    ).write(run / "summary.json")  # fmt: skip
    return run, task
