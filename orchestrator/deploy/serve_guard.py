"""What stands between an HTTP request and the Serve app's model: a bearer token, a byte limit, a body deadline, strict JSON.

Each check raises `Rejected` (an HTTP status, a message, headers) before any model code runs, so a hostile request
costs the replica at most `max_body_bytes` of memory and `body_timeout_s` of one request slot. Nothing here imports
Ray or Starlette: the app passes in the method, the headers and the body's chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from typing import Any, AsyncIterator, Mapping

from orchestrator.errors import InputError

TOKEN_ENV = "HEDGEROW_SERVE_TOKEN"
METHODS = ("GET", "POST")


class Rejected(Exception):
    """A request refused before it reaches the model: the HTTP status, a message saying why, response headers."""

    def __init__(self, status_code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = dict(headers or {})


def serve_token(environ: Mapping[str, str] | None = None, required: bool = False) -> bytes | None:
    """The bearer token every request must carry (HEDGEROW_SERVE_TOKEN), or None where the endpoint is open.

    An empty or blank value counts as unset (Ray's `${VAR}` reference expands an unset variable to ""), so
    `required` makes a replica refuse to start without one rather than serve an open endpoint by mistake.
    """
    token = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    if not token:
        if required:
            raise InputError(
                f"{TOKEN_ENV}: require_token is set in serve_config.yaml's args, but this replica's environment has no "
                f"token; export {TOKEN_ENV} on every serving node before `ray start` (or remove require_token)"
            )
        return None
    return token.encode("utf-8")


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def check_token(authorization: str | None, token: bytes | None) -> None:
    """Nothing where the endpoint is open or the header carries the token; else Rejected(401), naming neither token.

    Both sides are hashed before `hmac.compare_digest`, so the comparison's time says nothing about the token's
    content or length.
    """
    if token is None:
        return
    if not authorization:
        raise Rejected(
            401, "this endpoint needs an 'Authorization: Bearer <token>' header", {"WWW-Authenticate": "Bearer"}
        )
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        _digest(given.strip().encode("utf-8", "surrogateescape")), _digest(token)
    ):
        raise Rejected(
            401, "the bearer token is not the one this endpoint accepts", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )


def admit(method: str, headers: Mapping[str, str], token: bytes | None, max_body_bytes: int) -> None:
    """What the request line and headers alone decide: the token (401), the method (405), a declared size over the limit (413)."""
    check_token(headers.get("authorization"), token)
    if method not in METHODS:
        raise Rejected(405, f"method {method} is not served: GET (what this replica serves) or POST (a request)",
                       {"Allow": ", ".join(METHODS)})  # fmt: skip
    declared = headers.get("content-length")
    if method == "POST" and declared is not None:
        if not declared.strip().isdigit():
            raise Rejected(400, "Content-Length: expected a whole number of bytes")
        if int(declared) > max_body_bytes:
            raise Rejected(413, too_large(max_body_bytes), {"Connection": "close"})


def too_large(max_body_bytes: int) -> str:
    """The 413 message: the limit, and where to raise it."""
    return (
        f"the request body is over the limit of {max_body_bytes} bytes (max_body_bytes in serve_config.yaml's args); "
        "send fewer examples per request"
    )


async def read_body(chunks: AsyncIterator[bytes], max_body_bytes: int, timeout_s: float) -> bytes:
    """The body, read chunk by chunk: Rejected(413) as soon as it passes the limit, whatever Content-Length said (or
    if none, as in chunked encoding); Rejected(408) if it has not all arrived within `timeout_s` (a slow client)."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                size += len(chunk)
                if size > max_body_bytes:
                    raise Rejected(413, too_large(max_body_bytes), {"Connection": "close"})
                parts.append(chunk)
    except TimeoutError:
        raise Rejected(
            408, f"the request body did not arrive within {timeout_s:g} s (body_timeout_s in serve_config.yaml's args)",
            {"Connection": "close"},
        ) from None  # fmt: skip
    return b"".join(parts)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: Rejected(400) for bytes that are not UTF-8, text that is not strict JSON (NaN and
    Infinity included), nesting deeper than the parser goes, or a value that is not an object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, f"the request body is not UTF-8 (invalid byte at offset {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise Rejected(400, "the request body is not JSON this server reads: nested too deeply") from None
    except ValueError as exc:
        raise Rejected(400, f"the request body is not JSON ({str(exc)[:200]})") from None
    if not isinstance(value, dict):
        raise Rejected(400, f"expected a JSON object such as {{\"inputs\": [...]}}, got a JSON {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
