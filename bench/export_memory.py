"""What `hedgerow export` needs in memory on a real-sized labeled set, and what it needed before it ran in chunks.

The scenario of the export-memory issue, rebuilt from the corpus the project ships with: the bundled
all-MiniLM-L6-v2 through `examples/hf_encoder_task.py` on a BEIR folder of 4,000 passages (1,500 of them the
relevant rest of a paragraph whose first sentence is a query, 2,500 whole paragraphs as distractors), 500 dev
and 1,000 test queries, 128 tokens per text, and 6,764 other paragraphs as distillation texts: val holds 4,500
texts, test 5,000. A short real search (`hedgerow search`: the teacher, then int8 alone on ONNX Runtime, the
candidate the issue's run recommended) writes the run folder; `hedgerow export` then runs in a fresh process
and reports its own peak resident memory. With `--serving-batches 8,32,128` the export runs once per serving
batch (the run's config copied with only that changed): memory follows the serving batch, not the split.
`--compare REV` runs the export of git revision REV (from a worktree, in this venv) on the same run under an
address-space cap (`--cap-gib`, so a build that needs the whole split at once fails instead of taking the
machine), and records how it ended.

    .venv/bin/python bench/export_memory.py [--run DIR] [--serving-batches 8,32,128] [--compare 609e15e --cap-gib 12]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from _common import machine, write  # noqa: E402

WORK = REPO / "reports" / "bench-export-memory"
N_PASSAGES, N_DEV, N_TEST, N_DISTILL = 4000, 500, 1000, 6764


def build_beir(folder: Path, seed: int = 0) -> Path:
    """The BEIR folder and distillation texts of the scenario, from the shipped corpus (seeded); returns the texts file."""
    from orchestrator.tasks.text.corpus import paragraphs
    from orchestrator.tasks.text.labeled import cloze_pair

    texts = list(dict.fromkeys(" ".join(p.split()) for p in paragraphs()))
    random.Random(seed).shuffle(texts)
    pairs, rest = [], []
    for text in texts:
        pair = cloze_pair(text)
        if pair is not None and len(pairs) < N_DEV + N_TEST:
            pairs.append(pair)
        else:
            rest.append(text)
    distractors, distill = rest[: N_PASSAGES - len(pairs)], rest[N_PASSAGES - len(pairs) :][:N_DISTILL]
    if len(distill) < N_DISTILL:
        raise SystemExit(f"the corpus has {len(texts)} paragraphs: too few for the scenario")
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = [(f"p{i}", passage) for i, (_, passage) in enumerate(pairs)]
    corpus += [(f"d{i}", text) for i, text in enumerate(distractors)]
    with (folder / "corpus.jsonl").open("w") as out:
        out.writelines(json.dumps({"_id": pid, "title": "", "text": text}) + "\n" for pid, text in corpus)
    with (folder / "queries.jsonl").open("w") as out:
        out.writelines(json.dumps({"_id": f"q{i}", "text": query}) + "\n" for i, (query, _) in enumerate(pairs))
    for name, ids in (("dev", range(N_DEV)), ("test", range(N_DEV, N_DEV + N_TEST))):
        rows = "".join(f"q{i}\tp{i}\t1\n" for i in ids)
        (folder / "qrels" / f"{name}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    texts_file = folder.parent / "distill.txt"
    texts_file.write_text("\n".join(distill) + "\n")
    return texts_file


def search_config(beir: Path, texts_file: Path) -> dict:
    """search_spaces/minilm.yaml's objective, traffic and deployment on the BEIR folder; the space: int8 on ONNX Runtime."""
    from orchestrator.tasks.minilm import bundled_model_folder

    minilm = yaml.safe_load((REPO / "search_spaces" / "minilm.yaml").read_text())
    return {
        "task": {
            "name": "examples.hf_encoder_task:make_task",
            "args": {"model_path": str(bundled_model_folder()), "beir_folder": str(beir), "texts_file": str(texts_file),
                     "metric": "ndcg_at_10", "seq_len": 128},
        },  # fmt: skip
        "objective": minilm["objective"],
        "traffic": minilm["traffic"],
        "deployment": minilm["deployment"],
        "search": {**minilm["search"], "trials": 2, "max_concurrent": 1},
        "space": {"runtime": {"choices": ["onnxruntime"]}, "bits": {"choices": [8]}},
    }


def run_search(config: dict) -> Path:
    """`hedgerow search` on the config; returns the run folder (its stdout's last line)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "orchestrator", "search", str(path), "--out", str(WORK / "runs")],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the search failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def with_serving_batch(run: Path, batch: int, where: Path) -> Path:
    """A copy of the run folder whose config serves `batch` texts at a time (nothing else changed)."""
    copy = where / f"batch-{batch}" / run.name
    if not copy.exists():
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tune", "optuna.db"))
        config = yaml.safe_load((copy / "config.yaml").read_text())
        config["traffic"]["serving_batch_size"] = batch
        (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


def export(run: Path, dest: Path, cwd: Path = REPO, cap_bytes: int | None = None, timeout_s: int = 3600) -> dict:
    """`hedgerow export` in a fresh process (from the tree at `cwd`); its peak RSS, wall time, last lines, exit status."""
    prefix = ["prlimit", f"--as={cap_bytes}"] if cap_bytes else []
    argv = [*prefix, "/usr/bin/time", "-f", "maxrss_kib=%M", sys.executable, "-m", "orchestrator", "export", str(run),
            "--dest", str(dest)]  # fmt: skip
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
        status, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        status, err = "timeout", (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    wall = time.monotonic() - started
    maxrss = re.findall(r"maxrss_kib=(\d+)", err)
    reported = re.findall(r"peak resident memory (\d+\.\d+) GiB", err)
    lines = [line for line in err.splitlines() if "maxrss_kib" not in line]
    result = {
        "exit_status": status,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(int(maxrss[-1]) * 1024 / 2**30, 3) if maxrss else None,
        "peak_rss_gib_reported_by_export": float(reported[-1]) if reported else None,
        "last_lines": [line[:300] for line in lines[-6:]],
        "progress_lines": sum(" of " in line and (" texts (" in line) for line in lines),
    }
    manifest = next(iter(dest.rglob("manifest.json")), None)
    if status == 0 and manifest is not None:
        quality = json.loads(manifest.read_text())["quality"]
        program = json.loads(manifest.read_text())["programs"][0]
        result.update(val_trial=quality["trial_value"], val_rebuilt=quality["rebuilt_value"], val_program=program.get("quality"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run folder of this scenario already searched (skips the search)")
    parser.add_argument("--serving-batches", default="32", help="comma-separated serving batch sizes to export at")
    parser.add_argument("--compare", metavar="REV", help="also export with git revision REV (before the fix), capped")
    parser.add_argument("--cap-gib", type=float, default=12.0, help="address-space cap for --compare's export")
    args = parser.parse_args()

    started = time.monotonic()
    run = args.run
    if run is None:
        beir = WORK / "beir"
        texts_file = build_beir(beir)
        run = run_search(search_config(beir, texts_file))
    search_s = time.monotonic() - started
    config = yaml.safe_load((run / "config.yaml").read_text())
    exports = {}
    with tempfile.TemporaryDirectory(prefix="hedgerow-bench-export-") as tmp:
        for batch in [int(b) for b in args.serving_batches.split(",")]:
            source = run if batch == config["traffic"]["serving_batch_size"] else with_serving_batch(run, batch, Path(tmp))
            exports[str(batch)] = export(source, Path(tmp) / f"out-{batch}")
            print(f"serving batch {batch}: {exports[str(batch)]}", file=sys.stderr)
        before = None
        if args.compare:
            tree = Path(tmp) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.compare], cwd=REPO, check=True,
                           capture_output=True)  # fmt: skip
            try:
                before = {"revision": args.compare, "cap_gib": args.cap_gib,
                          **export(run, Path(tmp) / "out-before", cwd=tree, cap_bytes=int(args.cap_gib * 2**30))}  # fmt: skip
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
            print(f"before ({args.compare}): {before}", file=sys.stderr)
    task_args = config["task"]["args"]
    payload = {
        "machine": machine(),
        "scenario": {
            "model": "all-MiniLM-L6-v2 (bundled)", "passages": N_PASSAGES, "dev_queries": N_DEV, "test_queries": N_TEST,
            "distillation_texts": N_DISTILL, "seq_len": task_args.get("seq_len"), "val_texts": N_PASSAGES + N_DEV,
            "recipe": "int8 on ONNX Runtime (the seeded trial)", "run": run.name, "search_s": round(search_s, 1),
        },  # fmt: skip
        "exports_by_serving_batch": exports,
        "before": before,
        "method": (
            "hedgerow export in a fresh process per figure, under /usr/bin/time (peak RSS = its maximum resident set "
            "size, which export also prints as ru_maxrss); the serving batch changed in a copy of the run's config.yaml "
            "and nothing else; `before` is the export of the given revision from a git worktree in the same venv, under "
            "prlimit --as (an address-space cap) so a pass over the whole split fails instead of exhausting the machine."
        ),
    }
    print(write("export_memory", payload))


if __name__ == "__main__":
    main()
