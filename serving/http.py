"""HTTP concerns BentoML leaves to us, as one ASGI middleware: token, body size, media type, model header, OpenAPI.

Why in front of the API: a request that is unauthorised, too large or not JSON must be refused before BentoML
parses it (never a 5xx, never a body read into memory without bound); health checks stay open for the orchestrator.
The published OpenAPI document is completed with the error responses the API really returns (BentoML lists only
its own), so a client or a schema-driven test can rely on it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from serving.schemas import ErrorResponse

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
    """ASGI middleware: auth (``hmac.compare_digest``), 413/415, ``X-Model-Version``, the completed OpenAPI."""

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
        version = (self.version() or "").encode()
        vh = [(b"x-model-version", version)] if version else []
        if not self._authorised(scope):
            return await send_json(send, 401, {"error": "missing or wrong API token: send 'Authorization: Bearer "
                                                        "<token>'"}, [(b"www-authenticate", b"Bearer"), *vh])
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
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_version(msg):
            if msg["type"] == "http.response.start" and vh:
                msg = {**msg, "headers": [*msg.get("headers", []), *vh]}
            await send(msg)

        await self.app(scope, replay, send_with_version)
