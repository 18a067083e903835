"""Serve an export with Ray Serve: POST {"inputs": [example, ...]} (or {"inputs": {name: [...]}}, or text) → {"outputs": ...}.

A model exported with a tokenizer (a text embedder) takes {"inputs": "text"} or {"inputs": ["text", ...]}
and answers one embedding per text. A decoder LLM's export takes {"prompt": "text", "max_new_tokens": N} and
answers {"text": "..."} (or {"prompts": [...]} → {"texts": [...]}): the text `load(...).generate` gives, greedy;
a prompt over the export's prompt limit or max_new_tokens over its limit is a 400 naming the limit.

`serve_config.yaml` names `orchestrator.deploy.serve:app` with the export's
location as `model_path`; each replica loads the export with
`orchestrator.deploy.load` (every file checked against the manifest) and
batches concurrent requests with `@serve.batch` up to the serving batch size
the cost model assumed. Ray Serve is imported only inside `app`, so this
module (and the request logic tests exercise) imports without `ray[serve]`.
Before a request reaches the batch, `serve_guard` checks the bearer token (where
HEDGEROW_SERVE_TOKEN is set), the method, the body's size (`max_body_bytes`) and
arrival time (`body_timeout_s`), and that it is strict JSON holding an object.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.deploy._inputs import check_named_batch
from orchestrator.deploy.serve_config import DEPLOYMENT_NAME
from orchestrator.deploy.serve_guard import Rejected, admit, parse_body, read_body, serve_token
from orchestrator.tasks.batches import batch_size

MAX_EXAMPLES_PER_REQUEST = 4096
MAX_TEXT_CHARS = 100_000  # the tokenizer truncates to the model's length anyway; this bounds the work before it
# The largest digits request, MAX_EXAMPLES_PER_REQUEST examples of 64 numbers at up to 25 bytes each ("-1.2345678901234567e-05, "),
# is 6.25 MiB of JSON: 8 MiB admits it with room, and bounds what one request can make a replica hold.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class ServeArgs(BaseModel):
    """The application's args in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")

    model_path: str = Field(min_length=1, description="export folder or s3://bucket/prefix/<run>/<trial>")
    runtime: str = "auto"
    device: str = Field("auto", description="cpu, cuda, or auto: cuda where the replica has a GPU")
    endpoint_url: str | None = None
    threads: int | None = Field(None, ge=1)
    max_batch_size: int = Field(256, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, ge=1024,
        description="a request body over this many bytes is a 413, refused from its Content-Length before a byte is "
        "read, or as soon as the bytes read pass it (chunked or lying). The default, 8 MiB, admits the largest digits "
        f"request ({MAX_EXAMPLES_PER_REQUEST} examples of 8x8 floats written out in full, 6.25 MiB); an export with "
        "larger examples takes fewer per request, or raise it",
    )  # fmt: skip
    body_timeout_s: float = Field(
        30.0, gt=0,
        description="a body that has not all arrived this many seconds after the headers is a 408: a slow client "
        "holds one of the replica's max_ongoing_requests slots for at most this long (8 MiB in 30 s is 2.2 Mbit/s)",
    )  # fmt: skip
    require_token: bool = Field(
        False,
        description="refuse to start a replica whose environment has no HEDGEROW_SERVE_TOKEN (instead of serving an "
        "open endpoint); with the token set, every request needs 'Authorization: Bearer <token>'",
    )  # fmt: skip


def _tensor(value: Any, dtype: torch.dtype, field: str, expected: str) -> torch.Tensor:
    """A JSON array as a tensor; ValueError names the field and what is expected."""
    try:
        return torch.tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise ValueError(f"{field}: not a rectangular array of numbers ({exc}); expected {expected}") from None


def _examples(value: Any, shape: Sequence[int], dtype: torch.dtype, field: str, expected: str) -> torch.Tensor:
    """One example, or a list of them, as a tensor shaped (n, *shape); ValueError names the field and what is expected."""
    tensor = _tensor(value, dtype, field, expected)
    if list(tensor.shape) == list(shape):
        tensor = tensor.unsqueeze(0)
    if list(tensor.shape[1:]) != list(shape) or len(tensor) == 0:
        raise ValueError(f"{field}: got shape {list(tensor.shape)}; expected {expected}")
    return _bounded(tensor, field)


def _bounded(tensor: torch.Tensor, field: str) -> torch.Tensor:
    """The tensor, if it holds no more examples than a request may and no NaN or infinite value."""
    if len(tensor) > MAX_EXAMPLES_PER_REQUEST:
        raise ValueError(f"{field}: {len(tensor)} examples in one request; at most {MAX_EXAMPLES_PER_REQUEST}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise ValueError(f"{field}: NaN or infinite values are not accepted")
    return tensor


def parse_inputs(body: Any, input_shape: Sequence[int]) -> torch.Tensor:
    """One request's examples as a float32 tensor shaped (n, *input_shape); ValueError says what is expected."""
    expected = f'a JSON object {{"inputs": [...]}} holding one example shaped {list(input_shape)} or a list of them'
    if not isinstance(body, dict) or "inputs" not in body:
        raise ValueError(f"expected {expected}")
    return _examples(body["inputs"], input_shape, torch.float32, "inputs", expected)


def parse_named_inputs(body: Any, specs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """One request's named inputs ({"inputs": {name: example or list of examples}}), shaped and typed as the export's:
    checked as `load(...).predict` checks them, so sequences may be shorter where the manifest's variable_dims say."""
    names = sorted(specs)
    expected = f'a JSON object {{"inputs": {{{", ".join(repr(n) + ": [...]" for n in names)}}}}} (one example per name, or a list)'
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict) or sorted(body["inputs"]) != names:
        raise ValueError(f"expected {expected}")
    out = {}
    for name in names:
        tensor = _tensor(body["inputs"][name], getattr(torch, specs[name].dtype), f"inputs.{name}", expected)
        out[name] = tensor.unsqueeze(0) if specs[name].fits(tuple(tensor.shape)) else tensor  # one example
    if check_named_batch(out, specs) == 0:
        raise ValueError(f"inputs: no examples; expected {expected}")
    return {name: _bounded(tensor, f"inputs.{name}") for name, tensor in out.items()}


def parse_texts(body: Any) -> list[str]:
    """One request's texts ({"inputs": "text"} or {"inputs": ["text", ...]}); ValueError says what is expected."""
    expected = 'a JSON object {"inputs": "some text"} or {"inputs": ["text", ...]}'
    if not isinstance(body, dict) or "inputs" not in body:
        raise ValueError(f"expected {expected}")
    texts = body["inputs"]
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"inputs: expected a string or a non-empty list of strings, as in {expected}")
    if len(texts) > MAX_EXAMPLES_PER_REQUEST:
        raise ValueError(f"inputs: {len(texts)} texts in one request; at most {MAX_EXAMPLES_PER_REQUEST}")
    too_long = next((i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS), None)
    if too_long is not None:
        raise ValueError(f"inputs[{too_long}]: {len(texts[too_long])} characters; at most {MAX_TEXT_CHARS} per text")
    return texts


def parse_generation(body: Any, default_max_new_tokens: int) -> tuple[list[str], int, bool]:
    """(prompts, max_new_tokens, one prompt?) of a generation request; ValueError says what is expected."""
    expected = 'a JSON object {"prompt": "text", "max_new_tokens": N} or {"prompts": ["text", ...], "max_new_tokens": N}'
    if not isinstance(body, dict) or ("prompt" in body) == ("prompts" in body):
        raise ValueError(f"expected {expected}")
    unknown = sorted(set(body) - {"prompt", "prompts", "max_new_tokens"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; expected {expected}")
    one = "prompt" in body
    prompts = [body["prompt"]] if one else body["prompts"]
    if not isinstance(prompts, list):
        raise ValueError(f"prompts: expected a list of strings, as in {expected}")
    return prompts, body.get("max_new_tokens", default_max_new_tokens), one


class Predictor:
    """The serving logic without Ray: a loaded export, and a batch of requests → one response each."""

    def __init__(self, args: ServeArgs, loader: Callable[..., Any] | None = None) -> None:
        if loader is None:
            from orchestrator.deploy.loader import load as loader
        if args.threads:
            torch.set_num_threads(args.threads)
        self.args = args
        self.model = loader(args.model_path, endpoint_url=args.endpoint_url, runtime=args.runtime, device=args.device)

    def generate_request(self, body: Any) -> dict[str, Any]:
        """One generation request's answer: {"text"} or {"texts"}, or {"error"} naming the limit it breaks."""
        from orchestrator.errors import InputError

        spec = self.model.manifest.generation
        try:
            prompts, max_new_tokens, one = parse_generation(body, spec.default_max_new_tokens)
            texts = self.model.generate(prompts, max_new_tokens=max_new_tokens)
        except (InputError, ValueError) as exc:
            return {"error": str(exc)}
        return {"text": texts[0]} if one else {"texts": texts}

    def predict_requests(self, bodies: Sequence[Any]) -> list[dict[str, Any]]:
        """Run the valid requests in one batch (one per input shape); an invalid one gets {"error": ...} and the others still run.

        A decoder LLM's requests run one after another (`generate_request`).
        """
        if getattr(self.model.manifest, "generation", None) is not None:
            return [self.generate_request(body) for body in bodies]
        named = self.model.manifest.architecture.named_inputs
        text = self.model.manifest.architecture.text is not None
        parsed: list[Any] = []
        for body in bodies:
            try:
                if text:
                    parsed.append(parse_texts(body))
                else:
                    parsed.append(parse_named_inputs(body, named) if named else parse_inputs(body, self.model.input_shape))
            except ValueError as exc:
                parsed.append(str(exc))
        chunks = iter(self._outputs([p for p in parsed if not isinstance(p, str)]))
        responses = []
        for item in parsed:
            if isinstance(item, str):
                responses.append({"error": item})
                continue
            chunk = next(chunks)
            if text and self.model.labels is not None:
                from orchestrator.deploy.loader import labeled

                responses.append({"outputs": labeled(chunk, self.model.labels)})
            elif text:
                responses.append({"outputs": chunk.tolist()})
            else:
                responses.append(
                    {"outputs": chunk.tolist(), "argmax": chunk.argmax(dim=1).tolist() if chunk.dim() == 2 else None}
                )
        return responses

    def _outputs(self, valid: list[Any]) -> list[torch.Tensor]:
        """Each valid request's outputs; requests whose inputs are shaped alike run as one batch."""
        groups: dict[Any, list[int]] = {}
        for i, item in enumerate(valid):
            shapes = tuple((k, tuple(v.shape[1:])) for k, v in sorted(item.items())) if isinstance(item, dict) else None
            groups.setdefault(shapes, []).append(i)  # named sequences may differ in length from request to request
        chunks: list[torch.Tensor] = [torch.empty(0)] * len(valid)
        for members in groups.values():
            items = [valid[i] for i in members]
            if self.model.manifest.architecture.text is not None:
                outputs = self.model.text_outputs([t for texts in items for t in texts])
            elif isinstance(items[0], dict):
                outputs = self.model.predict({name: torch.cat([p[name] for p in items]) for name in items[0]})
            else:
                outputs = self.model.predict(torch.cat(items))
            start = 0
            for i, item in zip(members, items):
                n = len(item) if isinstance(item, list) else batch_size(item)
                chunks[i] = outputs[start : start + n]
                start += n
        return chunks

    def info(self) -> dict[str, Any]:
        """What a GET returns: which export, runtime and input shape this replica serves."""
        m = self.model.manifest
        info = {
            "run_id": m.run_id,
            "trial_id": m.trial_id,
            "runtime": self.model.runtime,
            "device": str(self.model.device),
            "input_shape": list(self.model.input_shape),
        }
        if m.architecture.text is not None:
            labels = m.architecture.text.labels
            info["text"] = {"max_length": m.architecture.text.max_length, "embedding": labels is None}
            if labels is not None:
                info["text"]["labels"] = labels
        if getattr(m, "generation", None) is not None:
            g = m.generation
            info["generation"] = {
                "context_tokens": g.context_tokens, "prompt_tokens_limit": g.prompt_tokens_limit,
                "max_new_tokens_limit": g.max_new_tokens_limit, "default_max_new_tokens": g.default_max_new_tokens,
                "quantization": g.quantization.technique if g.quantization is not None else None, "decoding": g.decoding,
            }  # fmt: skip
        if m.architecture.named_inputs:
            info["named_inputs"] = {n: s.model_dump() for n, s in m.architecture.named_inputs.items()}
        return info


def app(args: dict[str, Any]) -> Any:
    """Application builder for `serve deploy`/`serve run`: args are serve_config.yaml's `args`."""
    try:
        from ray import serve
        from starlette.requests import ClientDisconnect, Request
        from starlette.responses import JSONResponse
    except ImportError as exc:
        raise ImportError(f"serving an export needs Ray Serve: pip install 'ray[serve]' ({exc})") from exc

    settings = ServeArgs.model_validate(args)

    @serve.deployment(name=DEPLOYMENT_NAME)
    class HedgerowModel:
        def __init__(self, settings: ServeArgs) -> None:
            self.settings = settings
            self.token = serve_token(required=settings.require_token)  # read once; never logged
            self.predictor = Predictor(settings)
            self.batched.set_max_batch_size(settings.max_batch_size)
            self.batched.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

        @serve.batch(max_batch_size=256, batch_wait_timeout_s=0.01)
        async def batched(self, bodies: list[Any]) -> list[dict[str, Any]]:
            return self.predictor.predict_requests(bodies)

        async def __call__(self, request: Request) -> Any:
            limit = self.settings.max_body_bytes
            try:
                admit(request.method, request.headers, self.token, limit)
                if request.method == "GET":
                    return JSONResponse(self.predictor.info())
                body = parse_body(await read_body(request.stream(), limit, self.settings.body_timeout_s))
            except Rejected as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=exc.headers)
            except ClientDisconnect:
                return JSONResponse({"error": "the client went away before its body arrived"}, status_code=400)
            result = await self.batched(body)
            return JSONResponse(result, status_code=400 if "error" in result else 200)

    return HedgerowModel.bind(settings)
