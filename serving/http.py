"""HTTP concerns BentoML leaves to us, as one ASGI middleware: token, body size, media type, model header, OpenAPI.

Why in front of the API: a request that is unauthorised, too large or not JSON must be refused before BentoML
parses it (never a 5xx, never a body read into memory without bound); health checks stay open for the orchestrator.
The published OpenAPI document is completed with the error responses the API really returns (BentoML lists only
its own), so a client or a schema-driven test can rely on it.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from serving.schemas import ErrorResponse

log = logging.getLogger("bentoml.replenishment.http")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

REF = "#/components/schemas/{model}"
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
ERRORS = {
    400: "Malformed JSON, a field of the wrong type or range, or a date the model cannot forecast",
    401: "Missing or wrong API token",
    404: "Unknown store, material or product",
    413: "Request body too large",
    415: "Body is not application/json",
    503: "No model loaded yet, or the source database is unreachable (for requests without inventory)",
}


def release_request_timers() -> None:
    """Make BentoML's per-request timeout timer cancel itself when the request is done.

    Why: BentoML 1.4's ``TimeoutMiddleware`` arms ``loop.call_later(traffic.timeout, ...)`` per request and never
    cancels it, and the timer holds the request's context (its OpenTelemetry spans, futures, locks, this module's
    closures) until it fires: at 100 req/s and a 60 s timeout ~6,000 requests' objects (~150k) stay alive, and the
    full collections that scan them grew from 10 ms to 150 ms. Same behaviour otherwise (504 after the timeout).
    """
    import asyncio

    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    mw = traffic.TimeoutMiddleware
    if getattr(mw, "_timer_released", False):
        return

    async def call(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                body = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(body, status_code=504)(scope, receive, send)
        else:
            await fut
        finally:
            timer.cancel()

    mw.__call__ = call
    mw._timer_released = True


def escape_controls(text: str) -> str:
    """``text`` with every control character (newlines included) as a visible escape: one log line stays one."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class EscapeControls(logging.Filter):
    """A handler filter: no log record can forge a line or carry control bytes, whatever request text it holds.

    Why on the handlers: BentoML's access log prints the decoded path (``%0A`` is a newline there) and exception
    messages can quote request input; escaping the formatted message covers every logger at once. A traceback
    keeps its lines, each marked as a continuation (``| ``) with its control characters escaped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        safe = escape_controls(msg)
        if safe != msg:
            record.msg, record.args = safe, ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = "\n".join("  | " + escape_controls(line) for line in text.splitlines())
        return True


class QuietRefusals(logging.Filter):
    """Drops BentoML's traceback for a request it refused as invalid (a 4xx): ``Guard`` logs one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", None)
        return not (isinstance(code, int) and 400 <= code < 500)


BENTOML_ERROR_LOGGER = "bentoml._internal.server.http_app"  # where BentoML logs request exceptions


def install_log_escaping() -> None:
    """Add ``EscapeControls`` to every handler of the root and ``bentoml`` loggers, and ``QuietRefusals`` to
    BentoML's request-exception logger (once)."""
    for name in (None, "bentoml"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, EscapeControls) for f in handler.filters):
                handler.addFilter(EscapeControls())
    quiet = logging.getLogger(BENTOML_ERROR_LOGGER)
    if not any(isinstance(f, QuietRefusals) for f in quiet.filters):
        quiet.addFilter(QuietRefusals())


def bound_host(argv: list[str] | None = None) -> str | None:
    """The address this BentoML worker serves on (its listening socket is passed as ``--fd N``), or None."""
    import socket
    import sys

    argv = sys.argv if argv is None else argv
    try:
        fd = int(argv[argv.index("--fd") + 1])
    except (ValueError, IndexError):
        return None
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            return str(sock.getsockname()[0])
    except OSError:
        return None


def serve_host() -> str | None:
    """The address ``bentoml serve`` is about to bind, when this module is imported by that command, else None.

    Why: the check must stop the server before it starts (a failing worker is only respawned); the CLI imports the
    service inside its click command, whose parameters hold ``--host`` / ``BENTOML_HOST`` (BentoML's default,
    0.0.0.0, when neither is given).
    """
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.info_name != "serve" or "host" not in ctx.params:
        return None
    if ctx.params["host"]:
        return str(ctx.params["host"])
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.http.host.get())


def open_without_token(host: str | None, token: str | None) -> str | None:
    """Why the service must not start (an address other than loopback and no token), or None when it may."""
    import ipaddress

    if token or host is None or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host.split("%")[0]).is_loopback:
            return None
    except ValueError:
        pass
    return (f"refusing to serve on {host} without an API token: every endpoint would be open to the network. Set "
            "REPLENISH_API_TOKEN, or bind 127.0.0.1 (BENTOML_HOST / --host)")


def _where(loc: tuple) -> str:
    return ".".join(str(part)[:60] for part in loc) or "body"


def invalid_body(exc: ValidationError) -> dict[str, Any]:
    """A 400 body in the API's words: the first problem in ``error``, every one in ``detail`` (no class names)."""
    detail = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        msg = re.sub(r" or instance of \w+", "", err["msg"]).replace("a valid dictionary", "a JSON object")
        detail.append({"field": _where(err["loc"]), "problem": msg, "type": err["type"]})
    first = detail[0]
    more = f" (and {len(detail) - 1} more problems: see detail)" if len(detail) > 1 else ""
    where = "" if first["type"] == "json_invalid" else f"{first['field']}: "
    return {"error": f"invalid request: {where}{first['problem']}{more}", "detail": detail}


async def send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


def _schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    js = model.model_json_schema(ref_template=REF)
    schemas.update(js.pop("$defs", {}))
    schemas[model.__name__] = js
    return {"$ref": REF.format(model=model.__name__)}


def complete_openapi(spec: dict[str, Any], models: dict[str, tuple[type[BaseModel], type[BaseModel]]],
                     token: bool) -> dict[str, Any]:
    """The service's OpenAPI with exact request/response schemas, our error responses and the bearer scheme.

    Why rewrite the bodies: BentoML flattens ``anyOf`` to its first member (a nullable field is published as
    non-null) and declares 3.0.2 while embedding JSON Schema 2020-12; the models' own schemas under 3.1 are exact.
    """
    spec["openapi"] = "3.1.0"
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    err = {"content": {"application/json": {"schema": _schema_ref(ErrorResponse, schemas)}}}
    for path, item in spec.get("paths", {}).items():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if path in models:
                req, resp = models[path]
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": _schema_ref(req, schemas)}}}
                ok = {"description": "Successful Response",
                      "content": {"application/json": {"schema": _schema_ref(resp, schemas)}}}
                op["responses"] = {"200": ok, **{str(c): {"description": d, **err} for c, d in ERRORS.items()}}
            elif path == "/readyz":
                op["responses"]["503"] = {"description": "No model loaded yet", **err}
            if token and path not in OPEN_PATHS:
                op["security"] = [{"bearer": []}]
                op["responses"].setdefault("401", {"description": ERRORS[401], **err})
    if token:
        spec["components"].setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    return spec


class Guard:
    """ASGI middleware: auth (``hmac.compare_digest``), 413/415, 400s in the API's words, ``X-Model-Version``, the
    completed OpenAPI."""

    def __init__(self, app, *, token: str | None, max_body: int, api_paths: set[str] | dict,
                 version: Callable[[], str | None], openapi: Callable[[], dict],
                 own_auth: tuple[str, ...] = ()) -> None:
        self.app = app
        self.own_auth = own_auth  # mounted apps that check their own (role) tokens
        self.token = token.encode() if token else None
        self.max_body = max_body
        self.api_paths = api_paths
        self.version = version
        self.openapi = openapi
        self._spec: bytes | None = None

    @staticmethod
    async def _answer_400(send, held: list[dict], model: type[BaseModel], body: bytes, path: str, version: bytes,
                          vh: list) -> None:
        """BentoML refused the body: say why in the API's words (one log line); any other 400 (the engine's own,
        already in our words) goes out as it was. Only refused requests pay for this second parse."""
        try:
            model.model_validate_json(body)
        except ValidationError as exc:
            answer = invalid_body(exc)
            log.info("400 on %s: %s", path, answer["error"][:300])
            return await send_json(send, 400, {**answer, "model_version": version.decode() or None}, vh)
        for msg in held:
            await send(msg)

    def _authorised(self, scope) -> bool:
        if self.token is None:
            return True
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else headers.get(b"x-api-token", b"")
        return hmac.compare_digest(given, self.token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or any(path == p or path.startswith(p + "/") for p in self.own_auth):
            return await self.app(scope, receive, send)
        if not self._authorised(scope):  # nothing about the model before the caller is known
            return await send_json(send, 401, {"error": "missing or wrong API token: send 'Authorization: Bearer "
                                                        "<token>'"}, [(b"www-authenticate", b"Bearer")])
        version = (self.version() or "").encode()
        vh = [(b"x-model-version", version)] if version else []
        if path == "/docs.json" and scope["method"] == "GET":
            if self._spec is None:
                self._spec = json.dumps(self.openapi()).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            return await send({"type": "http.response.body", "body": self._spec})
        if path not in self.api_paths:
            return await self.app(scope, receive, send)

        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            return await send_json(send, 415, {"error": f"body must be application/json, not {ctype.decode()!r}"}, vh)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await send_json(send, 413, {"error": f"body larger than {self.max_body} bytes"}, vh)
        body, more = b"", True
        while more:  # read (bounded) and replay: chunked bodies are limited too
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.max_body:
                return await send_json(send, 413, {"error": f"body larger than {self.max_body} bytes"}, vh)
        model = self.api_paths[path][0] if isinstance(self.api_paths, dict) else None
        sent = False
        held: list[dict] = []  # a 400 from BentoML, held until we know whether to say it in our words

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_version(msg):
            if msg["type"] == "http.response.start":
                if vh:
                    msg = {**msg, "headers": [*msg.get("headers", []), *vh]}
                if msg["status"] == 400 and model is not None:
                    held.append(msg)
                    return
            elif held:
                held.append(msg)
                if msg.get("more_body", False):
                    return
                return await self._answer_400(send, held, model, body, path, version, vh)
            await send(msg)

        await self.app(scope, replay, send_with_version)
