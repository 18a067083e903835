"""Building the search-efficiency table: every grid recipe really compressed, evaluated, measured and priced
(`--build-table`), further distillation seeds (`--quality-seeds`), and the CSV derived from the raw readings
(`--reprice`)."""

from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path
from typing import Sequence

from _search_grid import (
    CONFIG,
    DATA,
    GRID,
    QUALITY_SEED_LIST,
    RECIPE_SEED,
    TABLE_CSV,
    TABLE_JSON,
    _read_jsonl,
    _search_config,
    _selected,
    _snapshot,
    grid_key,
    group_recipes,
    table_groups,
    table_recipes,
)

RAW = DATA / "digits_table.raw.jsonl"  # every group's raw measurements: --reprice re-derives the CSV from them
RAW_META = DATA / "digits_table.raw.json"  # how the raw measurements were taken
QUALITY_SEEDS = DATA / "digits_table.quality_seeds.jsonl"  # distilled rows' quality under further distillation seeds


def _load_raw() -> dict[str, dict]:
    return {group["group"]: group for group in _read_jsonl(RAW)}


def build_table(rounds: int, repeats: int, threads: int | None, check: bool, resume: bool = False) -> None:
    """Compress, evaluate and measure every grid recipe; price them; write the CSV and its sidecar."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from _common import machine

    from orchestrator.compress.recipe import Recipe, apply_recipe
    from orchestrator.measure import interleaved_throughput, measure
    from orchestrator.search.runner import prepare

    config = _search_config()
    prepared = prepare(config)
    task, traffic = prepared.task, config.traffic
    threads = threads or max(1, int(config.search.resources_per_trial.cpu))
    torch.set_num_threads(threads)
    teacher = task.teacher().eval()
    batch = task.example_batch(traffic.serving_batch_size)
    started = time.perf_counter()
    done = _load_raw() if resume else {}
    if resume and RAW_META.is_file():  # measure under the config the first part was measured under
        config = _search_config(base=json.loads(RAW_META.read_text())["config"])
        prepared = prepare(config)
        task, traffic = prepared.task, config.traffic
        teacher = task.teacher().eval()
        batch = task.example_batch(traffic.serving_batch_size)
    DATA.mkdir(parents=True, exist_ok=True)
    if not resume:
        RAW.unlink(missing_ok=True)
        QUALITY_SEEDS.unlink(missing_ok=True)  # readings of another build's models
        RAW_META.write_text(json.dumps({"config": _snapshot(config), "complete": False}, indent=1) + "\n")
    groups = table_groups()
    for gi, (name, method, ratio, steps, temp) in enumerate(groups):
        if name in done or not _selected(name):
            continue
        t0 = time.perf_counter()
        models, rows = {}, []
        for recipe, student, record, compress_seconds in _group_models(task, teacher, method, ratio, steps, temp, RECIPE_SEED):
            metrics = measure(student, batch, threads=threads, batch_repeats=config.search.measure_batch_repeats,
                              latency_repeats=config.search.measure_latency_repeats, size_bytes=record.deployed_size_bytes)  # fmt: skip
            val, test = task.evaluate(student, "val"), task.evaluate(student, "test")
            models[recipe.key()] = student
            rows.append({
                "recipe_key": recipe.key(), **recipe.model_dump(exclude={"version", "seed"}),
                "quality": val["value"], "quality_n": val["n_examples"], "test_quality": test["value"],
                "metrics": metrics.model_dump(mode="json", exclude={"throughput_runs_sps"}),
                "accelerated": record.accelerated, "fallbacks": " | ".join(record.fallbacks),
                "sparse_size_bytes": record.sparse_size_bytes, "compress_seconds": round(compress_seconds, 2),
            })  # fmt: skip
        per_round = interleaved_throughput({"__teacher__": teacher, **models}, batch, rounds=rounds, repeats=repeats)
        group = {"group": name, "rows": rows, "teacher_rounds_sps": per_round.pop("__teacher__"), "rounds_sps": per_round,
                 "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        with RAW.open("a") as fh:
            fh.write(json.dumps(group) + "\n")
        done[name] = group
        print(f"[{gi + 1}/{len(groups)}] {name}: {group['seconds']}s  val " + " ".join(f"{r['bits']}b={r['quality']:.4f}" for r in rows), flush=True)
    build_seconds = time.perf_counter() - started
    shortcut = _check_shortcut(task, teacher, done, apply_recipe, Recipe) if check else None
    meta = {"config": _snapshot(config), "complete": True, "threads": threads, "rounds": rounds, "repeats": repeats,
            "build_seconds": round(build_seconds, 1), "shortcut_check": shortcut, "machine": machine(),
            "teacher_checkpoint": task.teacher_path.name}  # fmt: skip
    RAW_META.write_text(json.dumps(meta, indent=1) + "\n")
    build_quality_seeds(QUALITY_SEED_LIST)
    write_table()


def _group_models(task, teacher, method: str, ratio: float, steps: int, temp: float | None, seed: int):
    """Each bit-width of one (method, ratio, kd_steps, temperature) group: pruned and distilled once, quantized per copy.

    Yields (recipe, compressed model, compression record, compress seconds); apply_recipe's stages, split before
    the quantize step (`_check_shortcut` compares the result with apply_recipe itself).
    """
    import copy

    import torch

    from orchestrator.techniques import Context, apply_technique
    from orchestrator.compress.recipe import Recipe, summarize_steps

    t0 = time.perf_counter()
    recipes = [Recipe(**knobs, seed=seed) for knobs in group_recipes(method, ratio, steps, temp)]
    prefix = [c for c in recipes[0].stages() if type(c).__name__ not in ("HalfPrecisionConfig", "Int8Config", "Int4WeightOnlyConfig")]
    ctx = Context(task=task, teacher=teacher, device=torch.device("cpu"))
    model = copy.deepcopy(teacher)
    prefix_steps = []
    for cfg in prefix:
        model, step = apply_technique(model, cfg, ctx)
        prefix_steps.append(step)
    prefix_seconds = time.perf_counter() - t0
    for recipe in recipes:
        stages = recipe.stages()
        assert stages[: len(prefix)] == prefix, f"{recipe}: its stages do not start with the group's prefix"
        q0 = time.perf_counter()
        qctx = Context(task=task, teacher=teacher, device=torch.device("cpu"), notes=list(ctx.notes))
        student, steps_done = copy.deepcopy(model), list(prefix_steps)
        for cfg in stages[len(prefix):]:
            student, step = apply_technique(student, cfg, qctx)
            steps_done.append(step)
        record = summarize_steps(recipe, torch.device("cpu"), steps_done, qctx)
        yield recipe, student.eval(), record, prefix_seconds + time.perf_counter() - q0


def build_quality_seeds(seeds: Sequence[int], shard: tuple[int, int] = (0, 1)) -> None:
    """Val and test quality of every distilled recipe again with other distillation seeds (no timing: speed does not
    depend on the seed); appended to QUALITY_SEEDS, one line per (group, seed), resumable. Pruning and quantization
    take no seed, so undistilled rows are the same under every seed and are not rebuilt.
    """
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from orchestrator.search.runner import prepare

    meta = json.loads(RAW_META.read_text())
    config = _search_config(base=meta["config"])
    task = prepare(config).task
    if task.teacher_path.name != meta["teacher_checkpoint"]:  # further seeds distil a different teacher's students
        raise SystemExit(f"{RAW_META.name}: the table was measured with teacher {meta['teacher_checkpoint']}, this machine has "
                         f"{task.teacher_path.name}; rebuild the whole table with --build-table")  # fmt: skip
    torch.set_num_threads(1)
    teacher = task.teacher().eval()
    done = {(g["group"], g["seed"]) for g in _read_jsonl(QUALITY_SEEDS)}
    jobs = [(seed, *group) for seed in seeds for group in table_groups() if group[3]]  # distilled groups only
    index, count = shard
    for ji, (seed, name, method, ratio, steps, temp) in enumerate(jobs):
        if ji % count != index or (name, seed) in done or not _selected(name):
            continue
        t0 = time.perf_counter()
        rows = []
        for recipe, student, _, _ in _group_models(task, teacher, method, ratio, steps, temp, seed):
            base = recipe.model_copy(update={"seed": RECIPE_SEED}).key()  # the table's row for this recipe
            rows.append({"recipe_key": base, "bits": recipe.bits, "quality": task.evaluate(student, "val")["value"],
                         "test_quality": task.evaluate(student, "test")["value"]})  # fmt: skip
        line = {"group": name, "seed": seed, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
        with QUALITY_SEEDS.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        print(f"[{ji + 1}/{len(jobs)}] seed {seed} {name}: {line['seconds']}s  val " + " ".join(f"{r['bits']}b={r['quality']:.4f}" for r in rows), flush=True)


def _check_shortcut(task, teacher, done, apply_recipe, Recipe) -> list[dict]:
    """The shared-prefix build against apply_recipe itself, on three recipes: same val quality and size?"""
    from orchestrator.measure import serialized_size_bytes

    rows = {r["recipe_key"]: r for g in done.values() for r in g["rows"]}
    checks = []
    for knobs in ({"prune_method": "structured", "prune_ratio": 0.5, "kd_steps": 100, "kd_temperature": 2.0, "bits": 8},
                  {"prune_method": "unstructured", "prune_ratio": 0.7, "kd_steps": 100, "kd_temperature": 6.0, "bits": 4},
                  {"prune_method": "structured", "prune_ratio": 0.85, "kd_steps": 300, "kd_temperature": 6.0, "bits": 32}):  # fmt: skip
        recipe = Recipe(**knobs, seed=RECIPE_SEED)
        compressed = apply_recipe(task, recipe, teacher=teacher)
        size = compressed.record.deployed_size_bytes or serialized_size_bytes(compressed.model)
        row = rows[recipe.key()]
        val = task.evaluate(compressed.model, "val")["value"]
        checks.append({"recipe": knobs, "table_val": row["quality"], "apply_recipe_val": val, "table_size_bytes": row["metrics"]["size_bytes"],
                       "apply_recipe_size_bytes": size, "same": abs(val - row["quality"]) < 1e-9 and size == row["metrics"]["size_bytes"]})  # fmt: skip
    return checks


def write_table() -> None:
    """Raw measurements → priced rows: throughput = median per-round ratio to the teacher × the teacher's reference.

    Pure arithmetic over bench/data/digits_table.raw.jsonl (no model is run), so
    `--reprice` re-derives the table after a change to the cost model or catalog.
    """
    from orchestrator.compress.recipe import Recipe
    from orchestrator.cost.model import CandidateMetrics, price_candidate
    from orchestrator.search.runner import prepare
    from orchestrator.search.trial import NO_PRICE_USD

    done, meta = _load_raw(), json.loads(RAW_META.read_text())
    config = _search_config(base=meta["config"])  # the config it was measured under, whatever digits.yaml says now
    prepared = prepare(config)
    current = _snapshot(_search_config())
    matches = all(current[k] == meta["config"][k] for k in ("task", "objective", "traffic", "deployment"))
    if not matches:
        print(f"note: {CONFIG.name} has changed since the table was measured; the table keeps the config it was measured under")
    teacher_readings = [v for g in done.values() for v in g["teacher_rounds_sps"]]
    reference = statistics.median(teacher_readings)
    # p95/p50 of batch latency on a shared machine is the neighbours' noise, not the recipe: one factor for all.
    tails = [r["metrics"]["batch_latency_p95_ms"] / r["metrics"]["batch_latency_p50_ms"] for g in done.values() for r in g["rows"]]
    tail = statistics.median(tails)
    batch = config.traffic.serving_batch_size
    extra_seeds, extra = _seed_qualities(done)
    out = []
    for group in done.values():
        t_rounds = group["teacher_rounds_sps"]
        for row in group["rows"]:
            m = row["metrics"]
            ratios = [c / t for c, t in zip(group["rounds_sps"][row["recipe_key"]], t_rounds)]
            ratio = statistics.median(ratios)
            throughput = ratio * reference
            batch_p95 = tail * 1000.0 * batch / throughput
            # The raw readings keep no compression record for search.trial.kernel_archs to read; on a CPU every int8
            # row here is torch.ao int8 on the x86 backend, which the product does not price on Graviton (arm64).
            x86_only = row["bits"] == 8 and m["device"]["kind"] == "cpu" and m["device"]["arch"] == "x86_64"
            cost = price_candidate(
                CandidateMetrics(
                    throughput_sps=throughput, batch_latency_p95_ms=batch_p95, latency_p50_ms=m["latency_p50_ms"],
                    latency_p95_ms=m["latency_p95_ms"], peak_mem_bytes=m["peak_mem_bytes"], size_bytes=m["size_bytes"],
                    device_kind=m["device"]["kind"], device_name=m["device"]["name"], cpu_threads=m["device"]["threads"],
                    cpu_arch=m["device"]["arch"], bits=row["bits"], flops_per_sample=m["flops_per_sample"],
                    measured_instance_type=config.deployment.measured_instance_type, cpu_archs=["x86_64"] if x86_only else None,
                ),
                config.traffic,
                prepared.catalog,
            )  # fmt: skip
            cheapest_any = min((c.monthly_usd for c in cost.per_instance if c.monthly_usd is not None), default=NO_PRICE_USD)
            out.append({
                "recipe_key": row["recipe_key"], "prune_method": row["prune_method"], "prune_ratio": row["prune_ratio"],
                "bits": row["bits"], "kd_steps": row["kd_steps"], "kd_temperature": row["kd_temperature"],
                **_averaged_quality(row, extra.get(row["recipe_key"], [])), "quality_n": row["quality_n"],
                "params": m["params"], "nonzero_params": m["nonzero_params"], "size_bytes": m["size_bytes"],
                "sparse_size_bytes": row["sparse_size_bytes"], "peak_mem_bytes": m["peak_mem_bytes"],
                "flops_per_sample": m["flops_per_sample"],
                "throughput_sps": round(throughput, 1), "throughput_ratio": round(ratio, 4),
                "throughput_ratio_min": round(min(ratios), 4), "throughput_ratio_max": round(max(ratios), 4),
                "teacher_reference_sps": round(reference, 1), "measured_throughput_sps": round(m["throughput_sps"], 1),
                "batch_latency_p95_ms": round(batch_p95, 3), "measured_batch_latency_p50_ms": round(m["batch_latency_p50_ms"], 3),
                "measured_batch_latency_p95_ms": round(m["batch_latency_p95_ms"], 3),
                "latency_p50_ms": round(m["latency_p50_ms"], 4), "latency_p95_ms": round(m["latency_p95_ms"], 4),
                "accelerated": row["accelerated"], "fallbacks": row["fallbacks"],
                "instance_type": cost.instance_type, "replicas": cost.replicas, "monthly_usd": cost.monthly_usd,
                "feasible": cost.feasible, "projected": cost.projected,
                "objective_monthly_usd": cost.monthly_usd if cost.feasible else cheapest_any,
                "compress_seconds": row["compress_seconds"], "cost_reason": cost.reason,
            })  # fmt: skip
    order = {grid_key(r): i for i, r in enumerate(table_recipes())}
    out.sort(key=lambda r: order.get(grid_key(r), 10**6))
    with TABLE_CSV.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)
    teacher_row = next(r for r in out if r["prune_method"] == "none" and r["bits"] == 32 and r["kd_steps"] == 0)
    catalog = prepared.catalog
    sidecar = {
        "table": TABLE_CSV.name,
        "rows": len(out),
        "complete": len(out) == len(table_recipes()),
        "task": config.task.name,
        "config": meta["config"],
        "matches_current_digits_yaml": matches,
        "grid": GRID,
        "grid_rules": "prune_ratio only when prune_method != none (none: ratio 0); kd_temperature only when kd_steps > 0 "
                      "(rows with kd_steps 0 carry the Recipe default 4.0, unused)",
        "fixed_knobs": {k: v for k, v in Recipe().model_dump().items() if k not in GRID and k != "version"},
        "recipe_seed": RECIPE_SEED,
        "teacher": {
            "val_quality": teacher_row["quality"], "test_quality": teacher_row["test_quality"],
            "n_val": teacher_row["quality_n"], "reference_throughput_sps": round(reference, 1),
            "reference_readings": len(teacher_readings),
            "reference_readings_min_max_sps": [round(min(teacher_readings), 1), round(max(teacher_readings), 1)],
            "checkpoint": meta["teacher_checkpoint"],  # the build's teacher, whichever this machine has now
        },
        "objective": config.objective.model_dump(mode="json"),
        "traffic": config.traffic.model_dump(mode="json"),
        "catalog": {"file": Path(catalog.path).name, "as_of": str(catalog.as_of), "region": catalog.region,
                    "instance_filter": config.deployment.instance_filter,
                    "usd_per_hour": {i.instance_type: i.on_demand_usd_per_hour for i in catalog.instances}},  # fmt: skip
        "measurement": {
            "threads": meta["threads"],
            "serving_batch_size": batch,
            "measure": f"orchestrator.measure.measure(batch_repeats={config.search.measure_batch_repeats}, "
                       f"latency_repeats={config.search.measure_latency_repeats}) per recipe: size, peak memory, FLOPs, latency",
            "throughput": f"interleaved_throughput over the teacher and the group's {len(GRID['bits'])} bit-widths, "
                          f"{meta['rounds']} rounds x {meta['repeats']} timed runs; throughput_sps = median per-round ratio to "
                          "the teacher x teacher_reference_sps (the median of every teacher reading of the build)",
            "batch_latency_p95_ms": f"batch / throughput_sps x {tail:.3f}, the median p95/p50 of batch latency over every "
                                    "measure() call of the build (the tail is the machine's noise, not the recipe's)",
            "batch_latency_tail_factor": round(tail, 4),
            "quality": "val accuracy (the search's objective); test_quality is the held-out split",
            "quality_seeds": {
                "distillation_seeds": [RECIPE_SEED, *extra_seeds],
                "rule": "a distilled row's quality and test_quality are the mean over these distillation seeds "
                        "(quality_seed0: the build's own seed); pruning and quantization take no seed, so an "
                        "undistilled row is the same under every seed and carries its one value",
                "file": QUALITY_SEEDS.name if extra_seeds else None,
            },
            "shared_prefix": "each (method, ratio, kd_steps, temperature) group is pruned and distilled once; each bit-width "
                             "quantizes a copy (apply_recipe's stages, split before the quantize step)",
            "shortcut_check": meta.get("shortcut_check"),
        },
        "machine": meta["machine"],
        "build_seconds": meta["build_seconds"],
        "built_with": "bench/search_efficiency.py --build-table",
    }
    TABLE_JSON.write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"{TABLE_CSV}: {len(out)} rows; teacher reference {reference:.0f} sps; tail factor {tail:.3f}; build {meta['build_seconds'] / 60:.1f} min")


def _seed_qualities(done: dict[str, dict]) -> tuple[list[int], dict[str, list[dict]]]:
    """The further distillation seeds measured for every distilled group, and each row's readings under them."""
    distilled = {name for name, g in done.items() if any(r["kd_steps"] for r in g["rows"])}
    lines = _read_jsonl(QUALITY_SEEDS)
    groups_of = lambda seed: {line["group"] for line in lines if line["seed"] == seed}  # noqa: E731
    seeds = sorted(s for s in {line["seed"] for line in lines} if groups_of(s) >= distilled)
    readings: dict[str, list[dict]] = {}
    for line in lines:
        if line["seed"] in seeds and line["group"] in distilled:
            for r in line["rows"]:
                readings.setdefault(r["recipe_key"], []).append(r)
    return seeds, readings


def _averaged_quality(row: dict, readings: list[dict]) -> dict:
    """quality and test_quality as the mean over the build's seed and the further ones; the build's own kept beside."""
    vals = [row["quality"], *(r["quality"] for r in readings)]
    tests = [row["test_quality"], *(r["test_quality"] for r in readings)]
    return {"quality": statistics.fmean(vals), "test_quality": statistics.fmean(tests), "quality_seeds": len(vals),
            "quality_seed0": row["quality"], "quality_min": min(vals), "quality_max": max(vals)}


def _knobs_of(row: dict) -> dict:
    knobs = {"prune_method": row["prune_method"], "prune_ratio": float(row["prune_ratio"]), "bits": int(row["bits"]),
             "kd_steps": int(row["kd_steps"])}  # fmt: skip
    if knobs["kd_steps"]:
        knobs["kd_temperature"] = float(row["kd_temperature"])
    return knobs
