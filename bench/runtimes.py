"""Runtimes benchmark: the same candidates served eagerly, by torch.compile (inductor), by ONNX Runtime and by OpenVINO.

Every candidate is built by the product's own `apply_recipe` with `Recipe(runtime=...)`
(orchestrator/runtimes: `compiled` is torchao PT2E int8 + torch.compile with inductor
freezing, compiled once for the serving batch; `onnxruntime` is torch.onnx export + an
ONNX Runtime session, int8 by ONNX Runtime's own quantizer, static QDQ for convolutions,
dynamic otherwise; `openvino` is the same ONNX export converted to OpenVINO IR for its CPU
plugin, int8 by NNCF's post-training quantization), on 2 threads.

1. digits, serving batch 128: the teacher (fp32), structured 50% and structured 50% +
   int8, each on eager, compiled and onnxruntime (9 models): val accuracy, throughput,
   in-process startup seconds, size, build seconds.
2. minilm (fidelity), serving batch 32 texts × 128 tokens: the teacher and its int8 (no
   pruning) on every runtime (6 models): val fidelity, throughput, startup, size, build.
3. Cold start in a fresh process: for each runtime, a new Python process (this script with
   the hidden `--cold-start-child` flag, and an empty TORCHINDUCTOR_CACHE_DIR, as a new
   replica on a new machine has) loads the task and builds the candidate twice; the first
   build's startup seconds are what a new replica pays, the second's what a process pays
   once inductor is set up (the in-process figure of 1. and 2. for every model but the
   first compiled one). The compiled runtime is also started with this machine's usual
   inductor cache, which the in-process builds have filled with the same kernels.

Throughput: each task's models (plus `teacher_again`, the teacher timed as a second model,
whose ratio is the measurement's own noise) are timed round-robin in the same rounds
(`interleaved_throughput`); the figure to read is the per-round ratio to the eager fp32
teacher (median, min, max over rounds), and for the targets the per-round ratio between
two runtimes of the same candidate.

(d) issue 22: OpenVINO int8 of the unpruned MiniLM ≥ 1.5× ONNX Runtime int8's throughput (same
rounds) at ≤ 1 point nDCG@10 below the teacher; val fidelity stands in for nDCG@10 until the
task measures labeled quality. The OpenVINO-only re-run on a quiet machine:
`bench/runtimes.py --skip-digits --runtimes eager,onnxruntime,openvino --fresh-repeats 1`.

Targets (the runtimes issue): (a) the best runtime for structured 50% + int8 reaches ≥ 1.3×
the throughput of eager int8; (b) ONNX Runtime fp32 of the structured 50% model ≥ 1.2× its
eager throughput; (c) every runtime's int8 stays within 0.5 point (0.005) of the fp32
structured 50% model's val accuracy (minilm: the int8 fidelity drop is reported beside it).

Run: `.venv/bin/python bench/runtimes.py [--rounds 7] [--repeats 30] [--minilm-repeats 5] [--threads 2]
[--digits-batch 128] [--minilm-batch 32] [--seq-len 128] [--fresh-repeats 2] [--skip-minilm]`
[--runtimes eager,onnxruntime,openvino] [--skip-digits]
(digits batches take about a millisecond, hence 30 timed per round);
`--quick` is a smoke run on tiny sizes that prints its JSON and writes nothing.
"""

from __future__ import annotations

import time

_PROCESS_T0 = time.perf_counter()  # before torch is imported: a fresh child's import time counts from here

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from _common import machine, write  # noqa: E402
from _runtimes_figures import openvino_target, print_table, ratio_stats, summarize_fresh, targets  # noqa: E402

from orchestrator.compress import Recipe, apply_recipe  # noqa: E402
from orchestrator.measure import count_params, interleaved_throughput, serialized_size_bytes  # noqa: E402
from orchestrator.runtimes import REGISTRY  # noqa: E402

ALL_RUNTIMES = REGISTRY.names
from orchestrator.runtimes import kernel_archs, startup_seconds  # noqa: E402
from orchestrator.tasks import load_task  # noqa: E402

_IMPORTED_AT = time.perf_counter()

NAME = "runtimes"
REFERENCE = "fp32/eager"  # every ratio to "the teacher" is per round against this model
CHILD_MARK = "RUNTIMES_COLD_START_JSON "

DIGITS_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "pruned50": dict(prune_method="structured", prune_ratio=0.5),
    "pruned50_int8": dict(prune_method="structured", prune_ratio=0.5, bits=8),
}
MINILM_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "int8": dict(bits=8),
}
# (task, variant) built in fresh processes, one set per runtime
FRESH = (("digits", "pruned50_int8"), ("digits", "fp32"), ("minilm", "int8"))

RUNTIMES: tuple[str, ...] = ALL_RUNTIMES  # the runtimes timed (--runtimes); eager is always one: the reference
QUICK_MINILM = dict(n_train=128, n_val_passages=40, n_val_queries=8, n_test_passages=40, n_test_queries=8)



def task_settings(task_name: str, args: argparse.Namespace) -> dict[str, Any]:
    if task_name == "digits":
        return {}
    return {"metric": "fidelity", "seq_len": args.seq_len, **(QUICK_MINILM if args.quick else {})}


def serving_batch(task_name: str, args: argparse.Namespace) -> int:
    return args.digits_batch if task_name == "digits" else args.minilm_batch


def variants_of(task_name: str) -> dict[str, dict[str, Any]]:
    return DIGITS_VARIANTS if task_name == "digits" else MINILM_VARIANTS


def size_of(model: torch.nn.Module, record: Any) -> tuple[int, str]:
    """What a trial prices: the deployed artifact where the record names one, else torch.save's state_dict (as measure())."""
    if record.deployed_size_bytes is not None:
        return int(record.deployed_size_bytes), "record.deployed_size_bytes"
    return serialized_size_bytes(model), "serialized_size_bytes (state_dict, as measure() counts it)"


def build_one(task: Any, teacher: torch.nn.Module, recipe: Recipe, batch_n: int, batch: Any) -> tuple[Any, dict]:
    """apply_recipe at the serving batch; the row's build and startup figures (no quality, no timing yet)."""
    t0 = time.perf_counter()
    compressed = apply_recipe(task, recipe, teacher=teacher, serving_batch_size=batch_n)
    build = time.perf_counter() - t0
    model, record = compressed.model, compressed.record
    startup, how = startup_seconds(model, record.steps, batch)
    size, size_how = size_of(model, record)
    params, nonzero = count_params(getattr(model, "inspect_module", None) or model)
    row = {
        "recipe": recipe.model_dump(exclude_defaults=True, exclude={"version"}),
        "steps": [f"{s.stage}:{s.technique}" for s in record.steps],
        "build_seconds": round(build, 2),
        "startup_seconds_in_process": round(startup, 3),
        "startup_method": how,
        "size_bytes": size,
        "size_how": size_how,
        "params": params,
        "kernel_archs": kernel_archs(record.steps),
        "accelerated": record.accelerated,
    }
    if hasattr(model, "weights_nbytes"):
        row["weights_nbytes"] = int(model.weights_nbytes())
    if record.fallbacks:
        row["fallbacks"] = record.fallbacks
    runtime_step = next((s for s in record.steps if s.stage == "runtime"), None)
    if runtime_step is not None:
        row["runtime_details"] = {k: v for k, v in runtime_step.details.items() if k not in ("kernel_archs",)}
    quant = next((s for s in record.steps if s.stage == "quantize"), None)
    if quant is not None:
        row["quantize"] = {"technique": quant.technique, "backend": quant.details.get("backend"), "mode": quant.details.get("mode")}
    return compressed, row


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat), or nan where it cannot be read."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU seconds spent by other processes while a block runs: the machine's busy time minus this process's own."""

    def __enter__(self) -> "OtherLoad":
        self._busy, self._own, self._t = _busy_cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self._t
        other = (_busy_cpu_seconds() - self._busy) - (sum(os.times()[:2]) - self._own)
        self.figures = {"wall_seconds": round(wall, 1), "other_processes_cpu_seconds": round(max(other, 0.0), 1),
                        "other_processes_cores_busy": round(max(other, 0.0) / wall, 2) if wall > 0 else None}  # fmt: skip




def load(task_name: str, args: argparse.Namespace) -> tuple[Any, torch.nn.Module, float, int, Any]:
    """(task, teacher, seconds to load both and the val split, serving batch size, a serving batch)."""
    started = time.perf_counter()
    task = load_task(task_name, task_settings(task_name, args))
    teacher = task.teacher().eval()
    task.data("val")
    load_seconds = time.perf_counter() - started
    batch_n = serving_batch(task_name, args)
    return task, teacher, load_seconds, batch_n, task.example_batch(batch_n)


def run_task(task_name: str, args: argparse.Namespace) -> dict:
    """Build every variant on every runtime, evaluate on val, time them all in the same interleaved rounds."""
    started = time.perf_counter()  # build_and_evaluate_seconds counts from here, the task's load included, as before
    task, teacher, load_seconds, batch_n, batch = load(task_name, args)
    quality_name = "accuracy" if task_name == "digits" else "fidelity"

    models: dict[str, torch.nn.Module] = {}
    rows: dict[str, dict] = {}
    order = 0
    for variant, knobs in variants_of(task_name).items():
        for runtime in RUNTIMES:
            name = f"{variant}/{runtime}"
            recipe = Recipe(runtime=runtime, **knobs)
            try:
                compressed, row = build_one(task, teacher, recipe, batch_n, batch)
            except Exception as exc:  # noqa: BLE001  (a runtime that fails here is a finding, not a crash)
                rows[name] = {"variant": variant, "runtime": runtime, "recipe": recipe.model_dump(exclude_defaults=True, exclude={"version"}),
                              "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}  # fmt: skip
                print(f"[{task_name}] {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            order += 1
            t0 = time.perf_counter()
            q = task.evaluate(compressed.model, "val")
            row = {"variant": variant, "runtime": runtime, "build_order": order, **row,
                   f"val_{quality_name}": round(q["value"], 5), "val_ci95": [round(q["ci95_low"], 5), round(q["ci95_high"], 5)],
                   "evaluate_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
            rows[name] = row
            models[name] = compressed.model
            print(f"[{task_name}] {name:24s} built {row['build_seconds']:6.2f} s  startup {row['startup_seconds_in_process']:7.3f} s  "
                  f"val {quality_name} {row[f'val_{quality_name}']:.4f}  size {row['size_bytes']:,} B", flush=True)  # fmt: skip
    build_seconds = time.perf_counter() - started

    timed = dict(models)
    timed["teacher_again"] = copy.deepcopy(teacher)
    rows["teacher_again"] = {"variant": "fp32", "runtime": "eager", "note": "the task's teacher timed as a second model: its ratio is the noise"}
    with OtherLoad() as other:
        per_round = interleaved_throughput(timed, batch, rounds=args.rounds, repeats=args.repeats if task_name == "digits" else args.minilm_repeats)
    ref = per_round[REFERENCE]
    for name, sps in per_round.items():
        row = rows[name]
        row.update(
            throughput_sps=round(statistics.median(sps), 1),
            throughput_rounds_sps=[round(v, 1) for v in sps],
            ratio_to_eager_fp32_teacher=ratio_stats(sps, ref),
        )
        same_eager = f"{row['variant']}/eager"
        if name != "teacher_again" and row["runtime"] != "eager" and same_eager in per_round:
            row["ratio_to_eager_same_candidate"] = ratio_stats(sps, per_round[same_eager])
    base_size = rows[REFERENCE]["size_bytes"]
    base_quality = rows[REFERENCE][f"val_{quality_name}"]
    for name, row in rows.items():
        if "size_bytes" in row:
            row["size_ratio"] = round(row["size_bytes"] / base_size, 4)
            row[f"val_{quality_name}_drop_vs_teacher"] = round(base_quality - row[f"val_{quality_name}"], 5)
    return {
        "task": task_name,
        "task_settings": task.settings.model_dump(exclude={"model_path"}) if task_name != "digits" else task.settings.model_dump(),
        "serving_batch": batch_n,
        "batch_shape": {k: list(v.shape) for k, v in batch.items()} if isinstance(batch, dict) else list(batch.shape),
        "quality": f"val {quality_name}",
        "repeats": args.repeats if task_name == "digits" else args.minilm_repeats,
        "timings": {"task_load_seconds": round(load_seconds, 1), "build_and_evaluate_seconds": round(build_seconds, 1),
                    "throughput_seconds": other.figures["wall_seconds"]},  # fmt: skip
        "other_load_while_timing": other.figures,
        "models": rows,
        "_per_round": per_round,
    }


# --------------------------------------------------------------------------- fresh processes


def cold_start_child(args: argparse.Namespace) -> None:
    """In a new process: load the task, build the candidate twice, print the figures as one JSON line."""
    task_name, variant, runtime = args.cold_start_child
    torch.set_num_threads(args.threads)
    task, teacher, load_seconds, batch_n, batch = load(task_name, args)
    recipe = Recipe(runtime=runtime, **variants_of(task_name)[variant])
    builds = []
    for _ in range(2):
        t0 = time.perf_counter()
        compressed = apply_recipe(task, recipe, teacher=teacher, serving_batch_size=batch_n)
        build = time.perf_counter() - t0
        startup, how = startup_seconds(compressed.model, compressed.record.steps, batch)
        builds.append({"build_seconds": round(build, 3), "startup_seconds": round(startup, 3), "startup_method": how})
        del compressed
    out = {
        "task": task_name, "variant": variant, "runtime": runtime,
        "import_seconds": round(_IMPORTED_AT - _PROCESS_T0, 3), "task_load_seconds": round(load_seconds, 3),
        "first_build": builds[0], "second_build": builds[1],
        "process_seconds_to_first_served_batch": round(_IMPORTED_AT - _PROCESS_T0 + load_seconds + builds[0]["build_seconds"], 3),
        "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    }  # fmt: skip
    print(CHILD_MARK + json.dumps(out), flush=True)


def fresh_processes(args: argparse.Namespace, which: tuple[tuple[str, str], ...]) -> list[dict]:
    """Each (task, variant) × runtime in `fresh_repeats` new processes, each with its own empty inductor cache; the
    compiled runtime also in as many with this machine's usual inductor cache, warm from this process's builds."""
    out = []
    for task_name, variant in which:
        for runtime in RUNTIMES:
            caches = ("empty", "warm") if runtime == "compiled" else ("empty",)
            for cache_kind in caches:
                for attempt in range(args.fresh_repeats):
                    env = dict(os.environ)
                    cache = None
                    if cache_kind == "empty":
                        cache = tempfile.mkdtemp(prefix="hedgerow-bench-inductor-")
                        env["TORCHINDUCTOR_CACHE_DIR"] = cache
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--cold-start-child", task_name, variant, runtime,
                           "--threads", str(args.threads), "--digits-batch", str(args.digits_batch),
                           "--minilm-batch", str(args.minilm_batch), "--seq-len", str(args.seq_len)] + (["--quick"] if args.quick else [])  # fmt: skip
                    t0 = time.perf_counter()
                    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                    wall = time.perf_counter() - t0
                    if cache is not None:
                        shutil.rmtree(cache, ignore_errors=True)
                    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(CHILD_MARK)), None)
                    label = f"{task_name} {variant}/{runtime}" + (f" ({cache_kind} inductor cache)" if runtime == "compiled" else "") + f" #{attempt}"
                    if done.returncode != 0 or line is None:
                        rec = {"task": task_name, "variant": variant, "runtime": runtime, "inductor_cache": cache_kind,
                               "error": f"exit {done.returncode}", "stderr_tail": done.stderr[-3000:]}  # fmt: skip
                        print(f"[fresh] {label} FAILED (exit {done.returncode})\n{done.stderr[-2000:]}", flush=True)
                    else:
                        rec = json.loads(line[len(CHILD_MARK):])
                        rec.pop("inductor_cache_dir", None)
                        rec.update(inductor_cache=cache_kind, attempt=attempt, process_wall_seconds=round(wall, 2))
                        print(f"[fresh] {label}: startup first build {rec['first_build']['startup_seconds']:.3f} s, "
                              f"second {rec['second_build']['startup_seconds']:.3f} s (process wall {wall:.1f} s)", flush=True)  # fmt: skip
                    out.append(rec)
    return out






# --------------------------------------------------------------------------- main


def machine_info() -> dict:
    info = machine()
    import onnx
    import onnxruntime
    import torchao

    try:
        import nncf
        import openvino

        info.update(openvino=openvino.__version__, nncf=nncf.__version__)
    except ImportError:
        info.update(openvino=None, nncf=None)
    info.update(
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        torchao=torchao.__version__,
        onnxruntime=onnxruntime.__version__,
        onnx=onnx.__version__,
        torch_threads=torch.get_num_threads(),
    )
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx:
        try:
            info["cxx"] = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        except Exception:  # noqa: BLE001
            info["cxx"] = cxx
    return info




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--digits-batch", type=int, default=128, help="digits serving batch")
    parser.add_argument("--minilm-batch", type=int, default=32, help="minilm serving batch (texts)")
    parser.add_argument("--seq-len", type=int, default=128, help="minilm tokens per text (the serving length)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=30, help="timed batches per model per round (digits: ~1 ms batches)")
    parser.add_argument("--minilm-repeats", type=int, default=5, help="timed batches per model per round (minilm)")
    parser.add_argument("--fresh-repeats", type=int, default=2, help="fresh processes per (task, candidate, runtime)")
    parser.add_argument("--skip-minilm", action="store_true", help="digits only (and its fresh processes)")
    parser.add_argument("--skip-digits", action="store_true", help="minilm only (and its fresh processes)")
    parser.add_argument("--runtimes", default=",".join(ALL_RUNTIMES), help="comma-separated runtimes to build and time (eager always)")
    parser.add_argument("--quick", action="store_true", help="smoke run on tiny sizes: prints the JSON, writes nothing")
    parser.add_argument("--cold-start-child", nargs=3, metavar=("TASK", "VARIANT", "RUNTIME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.minilm_batch, args.seq_len = min(args.minilm_batch, 4), min(args.seq_len, 32)
        args.rounds, args.repeats, args.minilm_repeats, args.fresh_repeats = 2, 2, 2, min(args.fresh_repeats, 1)
    global RUNTIMES
    unknown = set(args.runtimes.split(",")) - set(ALL_RUNTIMES)
    if unknown:
        parser.error(f"--runtimes: unknown {sorted(unknown)}; expected some of {', '.join(ALL_RUNTIMES)}")
    RUNTIMES = tuple(rt for rt in ALL_RUNTIMES if rt == "eager" or rt in args.runtimes.split(","))
    if args.cold_start_child:
        cold_start_child(args)
        return

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    tasks = tuple(t for t, skip in (("digits", args.skip_digits), ("minilm", args.skip_minilm)) if not skip)
    results = {name: run_task(name, args) for name in tasks}
    in_process_seconds = time.perf_counter() - started
    t0 = time.perf_counter()
    fresh = fresh_processes(args, tuple(f for f in FRESH if f[0] in tasks))
    fresh_seconds = time.perf_counter() - t0
    payload = {
        "benchmark": NAME,
        "settings": {
            "threads": args.threads, "digits_serving_batch": args.digits_batch, "minilm_serving_batch": args.minilm_batch,
            "seq_len": args.seq_len, "rounds": args.rounds, "repeats_digits": args.repeats, "repeats_minilm": args.minilm_repeats,
            "fresh_repeats": args.fresh_repeats, "quick": args.quick, "runtimes": list(RUNTIMES),
        },  # fmt: skip
        "method": (
            "Every candidate built by apply_recipe(task, Recipe(runtime=..., ...), serving_batch_size=the serving batch) in one "
            "process on torch.set_num_threads(threads); quality is task.evaluate(model, 'val'). Throughput: per task, every model "
            "plus teacher_again (the teacher as a second model: its ratio is the noise) timed round-robin by "
            "orchestrator.measure.interleaved_throughput (3 warm-up batches each, then per round 1 warm-up and `repeats` timed "
            "batches per model, samples/s = batch / median batch time); ratios are per round against fp32/eager (the eager fp32 "
            "teacher) or, for ratio_to_eager_same_candidate and targets a and b, against the same candidate on eager, reported as "
            "median (min, max) over rounds; throughput_sps is the median of the rounds' samples/s. Startup: "
            "orchestrator.runtimes.startup_seconds (compiled: torch.compile + first serving batch with inductor's FX-graph and "
            "autotune caches off; onnxruntime: InferenceSession from the file + first serving batch; eager: first batch of a fresh "
            "copy of the module). startup_seconds_in_process is that figure in this one process, where only the first compiled "
            "model built (build_order) pays inductor's one-time set-up. fresh_process_cold_start: this script re-run with "
            "--cold-start-child in a new process with an empty TORCHINDUCTOR_CACHE_DIR, which loads the task and builds the "
            "candidate twice; first_build is a new replica's cold start, second_build the same process once set up; compiled "
            "also with the machine's usual (warm) inductor cache. other_load_while_timing: CPU seconds other processes used "
            "while the models were timed (/proc/stat busy time minus this process's own). Size: "
            "record.deployed_size_bytes where the record sets one (ONNX file, packed int8), else torch.save of the state_dict "
            "(as measure() counts it); weights_nbytes is the runtime's own count where it has one. build_seconds: apply_recipe's "
            "wall time, the compile or export and the first batch included. The 2-core machine may be shared: raw samples/s "
            "move; read the ratios."
        ),
        "machine": machine_info(),
        "tasks": {name: {k: v for k, v in res.items() if k != "_per_round"} for name, res in results.items()},
        "fresh_process_cold_start": {
            "note": "first_build: startup_seconds of the first build in a new process (a new replica's cold start); "
                    "second_build: the same candidate built again in that process; in_process: this process's figure (see "
                    "build_order: only the first compiled model of a task pays inductor's set-up here). 'empty inductor cache': "
                    "TORCHINDUCTOR_CACHE_DIR a new empty folder (a new machine); 'warm': this machine's usual cache, which this "
                    "process's own builds of the same programs filled (a replica restarted on the same host, or an image "
                    "shipped with the cache)",
            "summary": summarize_fresh(fresh, results),
            "processes": fresh,
        },
        "targets": {**(targets(results) if "digits" in results else {"note": "digits was not run"}), **openvino_target(results)},
        "timings": {"in_process_seconds": round(in_process_seconds, 1), "fresh_processes_seconds": round(fresh_seconds, 1),
                    "total_seconds": round(time.perf_counter() - started, 1)},  # fmt: skip
    }
    print_table(results)
    print("\nfresh-process cold start:")
    for key, entry in payload["fresh_process_cold_start"]["summary"].items():
        print(f"  {key:58s} fresh {entry['first_build_startup_s_median']} s  second build {entry['second_build_startup_s_median']} s  "
              f"in-process {entry['in_process_startup_s']} s (build order {entry['in_process_build_order']})")  # fmt: skip
    print(json.dumps(payload["targets"], indent=1))
    if args.quick:
        print(json.dumps(payload, indent=1)[:4000])
        return
    print(write(NAME, payload))


if __name__ == "__main__":
    main()
