"""Run a search: validate, start (or join) Ray, Tuner + OptunaSearch, resume, then write the run folder.

How to search (searcher, scheduler, samples) and where to run (storage,
failures, callbacks) are kept apart, as Ray Tune's Tuner does. Ray is only
imported under orchestrator/search, so the engine and the cost model are
tested without it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from orchestrator.compress.transformer_prune import teacher_structure
from orchestrator.config import SearchConfig, load_config, to_yaml
from orchestrator.techniques.domains import values_to_check
from orchestrator.cost.catalog import Catalog, load_catalog
from orchestrator.errors import InputError, UnsafeFile, first_line
from orchestrator.safe_files import read_json, write_atomic
from orchestrator.search.local_ray import init_embedded_ray
from orchestrator.search.space import check_generating_task, check_runtimes, check_space_fits
from orchestrator.tasks.base import Task
from orchestrator.tasks.checkpoint import tensor_fingerprint
from orchestrator.tasks.registry import load_task

log = logging.getLogger(__name__)
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class SearchFailed(RuntimeError):
    """Every trial failed: nothing to recommend (exit status 1)."""


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def records(self) -> Path:
        return self.root / "trials"

    @property
    def trials_csv(self) -> Path:
        return self.root / "trials.csv"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"


@dataclass
class Prepared:
    """A validated config with its task and catalog loaded: nothing left to fail on input."""

    config: SearchConfig
    task: Task
    catalog: Catalog


def prepare(config: SearchConfig) -> Prepared:
    """Load the task and catalog a config names; every problem is an InputError naming its field."""
    task = load_task(config.task.name, config.task.args, field="task.name")
    if config.objective.metric != task.metric:
        raise InputError(f"objective.metric: task {config.task.name!r} measures {task.metric!r}, not {config.objective.metric!r}")
    check_generating_task(config.space, config.traffic, task)
    check_space_fits(config.space, task)
    check_runtimes(config.space, config.search.device, config.search.resources_per_trial.gpu)
    catalog_path = None
    if config.deployment.catalog != "bundled":
        catalog_path = Path(config.deployment.catalog)
        if not catalog_path.is_file():
            raise InputError(f"deployment.catalog: no such catalog file {catalog_path} (or write 'bundled')")
    catalog = load_catalog(catalog_path, region=config.deployment.region, instance_filter=config.deployment.instance_filter)
    if config.search.resources_per_trial.gpu > 0 and config.search.device == "cpu":
        raise InputError("search.device: 'cpu' contradicts search.resources_per_trial.gpu > 0")
    return Prepared(config=config, task=task, catalog=catalog)


def validate(config_path: str | Path) -> Prepared:
    """Everything `hedgerow validate` checks; no run folder, no Ray."""
    return prepare(load_config(config_path))


def new_run_id(label: str) -> str:
    """`<what is compressed>-<UTC time>-<6 hex>`: named after the task's label, sortable by time, unique across machines."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() else "-" for c in label.split(":")[-1].lower()).strip("-")[:32] or "run"
    return f"{safe}-{stamp}-{uuid.uuid4().hex[:6]}"


def start_search(
    config_path: str | Path,
    trials: int | None = None,
    address: str | None = None,
    out: str | Path = "reports",
    seed: int | None = None,
) -> Path:
    """Validate, create the run folder, run every trial, write the results; return the run folder."""
    config = load_config(config_path)
    if trials is not None:
        if trials < 1:
            raise InputError(f"--trials: expected a positive number of trials, got {trials}")
        config.search.trials = trials
    if seed is not None:
        config.search.seed = seed
    check_address(config, address)
    prepared = prepare(config)
    prepared.task.teacher()  # a missing, tampered or pickled checkpoint is refused before a run folder exists
    run_id = new_run_id(prepared.task.label)
    paths = RunPaths(Path(out).resolve() / run_id)
    paths.root.mkdir(parents=True)
    paths.config.write_text(to_yaml(config))
    meta = {"run_id": run_id, "created": _now(), "study_name": run_id, "tune_storage": _tune_storage(config, paths), "status": "running"}
    write_json(paths.run_json, meta)
    return _run(paths, prepared, address, resume=False)


def resume_search(run_dir: str | Path, address: str | None = None) -> Path:
    """Finish an interrupted search in its run folder; finished trials are kept, none runs twice."""
    paths = RunPaths(Path(run_dir).resolve())
    if not paths.config.is_file() or not paths.run_json.is_file():
        raise InputError(f"--resume: {paths.root} is not a Hedgerow run folder (expected config.yaml and run.json in it)")
    config = load_config(paths.config, allow_symlink=False)
    check_address(config, address)
    prepared = prepare(config)
    return _run(paths, prepared, address, resume=True)


def read_run_meta(paths: RunPaths, config: SearchConfig) -> dict[str, Any]:
    """run.json, checked: a damaged one is refused, and Tune's state goes where the config says, never elsewhere.

    `tune_storage` is derived again from the run folder and `search.storage_path`
    rather than trusted, so a hostile or stale run.json cannot send Ray Tune's
    writes outside the run folder (a moved run folder resumes where it is now).
    """
    meta = read_json(paths.run_json)
    for key in ("run_id", "study_name"):
        value = meta.get(key)
        if not isinstance(value, str) or not _STUDY_NAME.match(value):
            raise UnsafeFile(f"{paths.run_json}: field {key!r}: expected a run id such as 'digits-20261201-101500-1a2b3c', got {value!r:.80}")
    meta["tune_storage"] = _tune_storage(config, paths)
    return meta


def check_address(config: SearchConfig, address: str | None) -> None:
    """Under Ray Client (ray://) the searcher runs on the head: refuse state it could not reach, before Ray starts."""
    if not address or not address.startswith("ray://"):
        return
    missing = []
    optuna_url = config.search.optuna_storage or ""
    if not optuna_url or optuna_url.startswith("sqlite"):
        missing.append("search.optuna_storage: a database URL the cluster's head can reach (postgresql://…, mysql://…), "
                       "not the run folder's SQLite file on this machine")  # fmt: skip
    if not (config.search.storage_path or "").startswith("s3://"):
        missing.append("search.storage_path: s3://bucket/prefix, where the head and every worker write Ray Tune's state")
    if missing:
        raise InputError(
            f"--address {address}: under Ray Client, Ray Tune runs the Optuna searcher on the cluster's head, so set "
            + "; and ".join(missing)
            + ". Or submit the search to the cluster with `ray job submit … --address auto` (infra/README.md)."
        )


def _tune_storage(config: SearchConfig, paths: RunPaths) -> str:
    if config.search.storage_path:
        return config.search.storage_path.rstrip("/") + "/" + paths.root.name
    return str(paths.root)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file and a rename: readers never see half a file."""
    write_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join `address` (or the Ray already initialized in this process), else start Ray embedded on loopback."""
    import ray

    if ray.is_initialized():
        yield
        return
    if address is None:
        init_embedded_ray()  # loopback only, token authentication on
    else:  # an existing cluster, with its own authentication
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _run(paths: RunPaths, prepared: Prepared, address: str | None, resume: bool) -> Path:
    from ray import tune

    from orchestrator.report.build import build_report
    from orchestrator.search.finalize import finalize
    from orchestrator.search.trial import TrialContext, evaluate_items, run_trial

    config, task = prepared.config, prepared.task
    settings = config.search
    meta = read_run_meta(paths, config)
    with ray_session(address):
        teacher = task.teacher()
        fingerprint = tensor_fingerprint(teacher)
        _check_teacher(paths, meta, fingerprint)
        baseline = evaluate_items(task, teacher, "val")  # the teacher measured, with its per-item scores
        baseline_quality = baseline.quality["value"]
        if address is None:
            _keep_reference(config, task, teacher, fingerprint)
        structure = teacher_structure(teacher)
        context = TrialContext(
            task=task,
            baseline_quality=baseline_quality,
            max_quality_drop=config.objective.max_quality_drop,
            traffic=config.traffic,
            catalog=prepared.catalog,
            settings=settings,
            records_dir=str(paths.records),
            measured_instance_type=config.deployment.measured_instance_type,
            teacher_fingerprint=fingerprint,
            smt_yield=config.deployment.smt_yield,
            baseline_items=None if baseline.items is None else baseline.items.tolist(),
            teacher_structure=structure,
        )
        resources = {"cpu": settings.resources_per_trial.cpu, "gpu": settings.resources_per_trial.gpu}
        trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), resources)
        tune_path = meta["tune_storage"].rstrip("/") + "/tune"
        if resume and tune.Tuner.can_restore(tune_path):
            tuner = tune.Tuner.restore(tune_path, trainable, resume_unfinished=True, resume_errored=False)
        else:
            if resume:
                _forget_unrestorable(paths, config, meta, tune_path)
            # The teacher's depth where the space searches its depth: the "one layer fewer" and "mildest drop" seeds.
            searched = "keep_layers" in config.space or "drop_layers" in config.space
            depth = len(structure["kept_layers"]) if structure is not None and searched else None
            tuner = new_tuner(trainable, config, paths, meta, depth, task.higher_is_better)
        results = tuner.fit()
        summary = finalize(paths, prepared, results, meta["study_name"], teacher_fingerprint=fingerprint)
        summary.write(paths.summary_json)
        if summary.n_finished == 0:
            meta.update(status="failed", finished=_now())
            write_json(paths.run_json, meta)
            build_report(paths.root)
            raise SearchFailed(f"every trial failed ({summary.n_failed}); reasons are in {paths.trials_csv}")
    meta.update(status="finished", finished=_now())
    write_json(paths.run_json, meta)
    build_report(paths.root)
    return paths.root


def _keep_reference(config: SearchConfig, task: Any, teacher: Any, fingerprint: str) -> None:
    """Measure this machine's teacher reference before trials start (quiet), where local trials will read it."""
    from orchestrator.measure import reference_throughput
    from orchestrator.search.trial import resolve_device

    settings = config.search
    if settings.throughput_reference != "teacher" or resolve_device(settings).type != "cpu":
        return
    threads = max(1, int(settings.resources_per_trial.cpu))
    previous = torch.get_num_threads()
    tokens = config.traffic.tokens
    try:
        if task.generates and tokens is not None:
            from orchestrator.measure.generation_reference import generation_reference

            started = time.perf_counter()
            gen = generation_reference(teacher, round(tokens.prompt_tokens), round(tokens.output_tokens), list(tokens.concurrency),
                                       threads, teacher_fingerprint=fingerprint)  # fmt: skip
            first = gen.metrics.points[0]
            print(f"[hedgerow] teacher reference on this machine: {first.output_tokens_per_s:,.1f} output tokens/s at "
                  f"concurrency {first.concurrency}, TTFT p95 {first.ttft_p95_ms:,.0f} ms, {threads} thread(s) "
                  f"({time.perf_counter() - started:.0f} s; {gen.path})", file=sys.stderr, flush=True)  # fmt: skip
            return
        ref = reference_throughput(teacher, task.example_batch(config.traffic.serving_batch_size), threads,
                                   teacher_fingerprint=fingerprint)
    except Exception as exc:  # a user's task: whatever breaks here fails each trial with its reason instead
        print(f"[hedgerow] teacher reference not measured up front ({first_line(exc)}); trials will try",
              file=sys.stderr, flush=True)  # fmt: skip
        return
    finally:
        torch.set_num_threads(previous)
    print(f"[hedgerow] teacher reference on this machine: {ref.throughput_sps:,.0f} samples/s at batch "
          f"{config.traffic.serving_batch_size}, {threads} thread(s) ({ref.path})", file=sys.stderr, flush=True)  # fmt: skip


def _check_teacher(paths: RunPaths, meta: dict, fingerprint: str) -> None:
    """Record the teacher's fingerprint in run.json; a resumed run must find the same teacher."""
    recorded = meta.get("teacher_fingerprint")
    if recorded is None:
        meta["teacher_fingerprint"] = fingerprint
        write_json(paths.run_json, meta)
    elif recorded != fingerprint:
        raise InputError(
            f"--resume: the teacher loaded here (fingerprint {fingerprint[:16]}…) is not the one {paths.root.name} "
            f"started with ({recorded[:16]}…): resume where the search started, or with HEDGEROW_CACHE_DIR "
            "pointing at its teacher cache"
        )


def _forget_unrestorable(paths: RunPaths, config: SearchConfig, meta: dict, tune_path: str) -> None:
    """Killed before Ray Tune saved any state: restart the search, keeping every finished recipe's record.

    The seeded sampler proposes the same recipes again and each finished one is
    read back from its record instead of recomputed.
    """
    import shutil

    import optuna

    log.warning("no Ray Tune state in %s yet: restarting the search; finished recipes are reused", tune_path)
    try:
        optuna.delete_study(study_name=meta["study_name"], storage=config.search.optuna_storage or paths.optuna_url)
    except KeyError:
        pass
    if not tune_path.startswith("s3://"):
        shutil.rmtree(tune_path, ignore_errors=True)


def new_tuner(
    trainable: Any, config: SearchConfig, paths: RunPaths, meta: dict, teacher_layers: int | None = None,
    higher_is_better: bool = True,
) -> Any:  # fmt: skip
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from orchestrator.search.progress import ProgressLine
    from orchestrator.search.searcher import make_searcher

    settings = config.search
    optuna_url = settings.optuna_storage or paths.optuna_url
    searcher = make_searcher(config.space, settings, optuna_url, meta["study_name"], teacher_layers)
    scheduler = None
    if settings.scheduler == "asha":
        max_kd = _max_kd_steps(config)
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            metric="quality",
            mode="max" if higher_is_better else "min",
            # Reports: one per eval_every steps strictly inside distillation, then the final row. Every rung
            # falls before a trial's distillation ends, where stopping it still saves steps.
            max_t=max(2, -(-max_kd // settings.eval_every_steps)),
            grace_period=1,
            reduction_factor=2,
        )
    storage = meta["tune_storage"]
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent),
            scheduler=scheduler,
            num_samples=settings.trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            callbacks=[ProgressLine(settings.trials, config.objective.max_quality_drop)],
            verbose=0,
        ),
    )


def _max_kd_steps(config: SearchConfig) -> int:
    domain = config.space.get("kd_steps")
    return int(max(values_to_check(domain) if domain is not None else [0]))
