"""The README.md written into every export, for whoever deploys it."""

from __future__ import annotations

from orchestrator.deploy.loader import runtimes, serving_batch_size
from orchestrator.deploy.manifest import Manifest


_WHAT = {
    "model.safetensors": "weights (plain tensors; int8 as values + scales + zero points, layout in the header)",
    "model.pt2": "torch.export program: `torch.export.load(path).module()`",
    "model.onnx": "ONNX program (float32) for ONNX Runtime",
    "model.int8.onnx": "ONNX Runtime int8 program (static QDQ, per channel)",
    "model.xml": "OpenVINO IR (float32): the graph; its weights are model.bin",
    "model.bin": "OpenVINO IR weights read by model.xml",
    "model.int8.xml": "OpenVINO int8 program (NNCF post-training quantization): the graph; its weights are model.int8.bin",
    "model.int8.bin": "OpenVINO int8 IR weights read by model.int8.xml",
    "serve_config.yaml": "Ray Serve config: `serve deploy serve_config.yaml`",
    "README.md": "this file",
}

_COMPANIONS = {"model.xml": ("model.bin",), "model.int8.xml": ("model.int8.bin",)}  # files a program reads beside it


def render(manifest: Manifest, location: str, serve_lines: list[str]) -> str:
    """The README's text (the file list comes from the manifest's programs and known names)."""
    r, q, d = manifest.recipe, manifest.quality, manifest.deployment
    knobs = f"prune {r.prune_method}" + (f" {r.prune_ratio:.2f}" if r.prune_method != "none" else "")
    knobs += f", {r.bits}-bit, {r.kd_steps} distillation steps" + (", QAT" if r.qat else "")
    cost = (
        f"{d.replicas} × {d.instance_type}, ${d.monthly_usd:,.2f}/month ({d.region}, catalog as of {d.catalog_as_of})"
        + (" — throughput projected, not measured on that instance" if d.projected else "")
        if d.instance_type
        else "no feasible instance type was priced for this candidate"
    )
    test = f", test {q.test_value:.4f}" if q.test_value is not None else ""
    files = [
        "model.safetensors",
        *[f for p in manifest.programs if p.written and p.file for f in (p.file, *_COMPANIONS.get(p.file, ()))],
        "serve_config.yaml",
        "README.md",
    ]
    lines = [
        f"# {manifest.task.name} candidate {manifest.trial_id} (run {manifest.run_id})",
        "",
        f"- Recipe: {knobs} (recipe key {manifest.recipe_key}; the full recipe is in manifest.json).",
        f"- Quality: validation {q.metric} {q.rebuilt_value:.4f} when rebuilt for export (the trial measured {q.trial_value:.4f}; tolerance {q.tolerance}){test}.",
        f"- Cost: {cost}.",
        f"- Default runtime: `{manifest.default_runtime}` — {manifest.default_runtime_reason}.",
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        *[f"| `{name}` | {_WHAT.get(name, '')} |" for name in files],
        "| `manifest.json` | provenance, quality, cost, versions, and the SHA-256 and size of every other file |",
        "",
        "Programs not written, and why:",
        "",
        *([f"- {p.format}: {p.reason}" for p in manifest.programs if not p.written] or ["- none"]),
        "",
        "## Load and run a batch",
        "",
        "```python",
        "from orchestrator.deploy import load",
        "",
        f'model = load("{location}")  # checks every file against manifest.json first',
        f"outputs = model.predict(batch)  # batch {_input_text(manifest)}",
        "```",
        "",
        f"`load(..., runtime={' | '.join(repr(name) for name in runtimes() if name != 'auto')})` picks another program; "
        "s3:// paths take",
        "`endpoint_url=` for S3-compatible stores. Credentials come from the standard AWS chain.",
        f"A batch of any size runs {_batch_text(manifest)} at a time (`load(..., batch_size=N)` for another number):",
        "memory follows that number, not the batch's size.",
        "",
        "## Serve it with Ray Serve",
        "",
        "```bash",
        "pip install 'ray[serve]' hedgerow   # on every serving node",
        "serve deploy serve_config.yaml      # or: serve run serve_config.yaml",
        "curl -X POST localhost:8000/ -H 'content-type: application/json' -d '{\"inputs\": [<one example>, ...]}'",
        "```",
        "",
        "The HTTP endpoint has no authentication of its own: reach port 8000 only through a load balancer or",
        "gateway that authenticates callers (an ALB with OIDC, API Gateway with IAM or JWT, an ingress with auth),",
        "never on a public address. `hedgerow verify <this folder or s3:// URI>` checks every file against",
        "manifest.json before you deploy it.",
        "",
        "Replicas, from the cost model:",
        "",
        *[f"- {line}" for line in serve_lines],
        "",
    ]
    if manifest.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in manifest.notes], ""]
    return "\n".join(lines)


def _batch_text(manifest: Manifest) -> str:
    return f"{serving_batch_size(manifest)} examples (the serving batch it was priced at)"


def _input_text(manifest: Manifest) -> str:
    arch = manifest.architecture
    if arch.named_inputs:
        return "{" + ", ".join(f"{n!r}: (N, {', '.join(map(str, s.shape))}) {s.dtype}" for n, s in arch.named_inputs.items()) + "}"
    return f"shaped (N, {', '.join(map(str, arch.input_shape))})"
