"""The BentoML service: adapts HTTP requests to ``serving.engine`` (all logic lives there).

``bentoml serve serving.service:Replenishment`` or ``replenish serve``. Errors the engine raises become JSON 4xx/503
with a message; every response carries the model version (body and ``X-Model-Version``). ``/replenishment`` returns
the engine's serialised bytes as a starlette Response: BentoML 1.4 passes a returned Response through
(``_bentoml_impl.server.app``, ``api_endpoint``) instead of dumping the declared model twice (``model_dump`` to
probe the type, then ``model_dump_json``), and the OpenAPI schema still comes from the annotations.
"""

from __future__ import annotations

import logging
import os
import sys

import anyio.to_thread
import bentoml
from starlette.responses import JSONResponse, Response

from forecasting.config import load_settings
from forecasting.version import package_version
from planning.workbench.app import create_app
from serving import lifecycle
from serving.engine import ServingError
from serving.http import (
    Guard,
    bound_host,
    complete_openapi,
    install_log_escaping,
    open_without_token,
    release_request_timers,
    serve_host,
)
from serving.schemas import (
    BakePlanRequest,
    BakePlanResponse,
    BatchRequest,
    BatchResponse,
    ForecastRequest,
    ForecastResponse,
    ReplenishmentRequest,
    ReplenishmentResponse,
    StatusRequest,
    StatusResponse,
)

SETTINGS = load_settings()
if (_OPEN := open_without_token(serve_host(), os.environ.get(SETTINGS.serving.token_env))) is not None:
    print(f"error: {_OPEN}", file=sys.stderr)  # noqa: T201 - one line, then no server at all
    raise SystemExit(2)
release_request_timers()  # before BentoML builds the app: no request's objects outlive it by 60 s
API_PATHS = {  # route -> (request model, response model), for the guard and the published OpenAPI
    "/replenishment": (ReplenishmentRequest, ReplenishmentResponse),
    "/replenishment/batch": (BatchRequest, BatchResponse),
    "/forecast": (ForecastRequest, ForecastResponse),
    "/bake-plan": (BakePlanRequest, BakePlanResponse),
    "/status": (StatusRequest, StatusResponse),
}
_ACTIVE: dict = {}  # this worker's engine, for the model-version header
TITLE = "Luckin USA replenishment API"
DESCRIPTION = """Order quantities and demand forecasts for Luckin Coffee USA stores, for the ordering system.

- `POST /replenishment`: how many packs of each material one store should order on a date, each line with its
  reasons (inventory from the request, or the source database's latest counts).
- `POST /replenishment/batch`: the same for every store (or a list) from the latest counts.
- `POST /forecast`: daily demand quantiles per product (units), optionally split by hour.
- `POST /bake-plan`: ready food to thaw or bake per release time of a store's day (whole pieces), with expected
  waste and lost sales (pieces and USD) and an end-of-day coupon suggestion.
- `GET /status` (or `POST /status` with `{}`): the model served, its data date and the dates it can answer.
- `GET /healthz`, `GET /readyz` (200 once a model is loaded), `GET /metrics` (Prometheus).

Quantities are in the material's unit (g, ml or pieces; `unit` on each line) and in whole packs (`qty_packs`).
Dates are ISO (YYYY-MM-DD), store-local. Every response names the model version (`model_version` and the
`X-Model-Version` header). Errors are JSON `{"error": ...}` with a 4xx status (503 while no model is loaded).
With a token configured, every endpoint but the health checks needs `Authorization: Bearer <token>`."""


def _bake_plan(store_id: int, day):
    """The workbench's bake plan: the same engine call as ``POST /bake-plan`` (None before a model is loaded)."""
    engine = _ACTIVE.get("engine")
    return None if engine is None else engine.bake_plan(BakePlanRequest(store_id=store_id, date=day))


# the planners' workbench (its own role tokens)
@bentoml.asgi_app(create_app(SETTINGS, bake_plan=_bake_plan), path="/workbench")
@bentoml.service(name="replenishment", workers=SETTINGS.serving.workers, traffic={"timeout": 60})
class Replenishment:
    """Order quantities and demand forecasts for Luckin Coffee USA stores, from the champion's cached forecasts."""

    def __init__(self) -> None:
        install_log_escaping()
        if (why := open_without_token(bound_host(), os.environ.get(SETTINGS.serving.token_env))) is not None:
            logging.getLogger("bentoml.replenishment").error("%s", why)
            raise SystemExit(2)  # a built Bento binds 0.0.0.0 unless told otherwise: never serve it open
        self.engine, self.watcher = lifecycle.start(SETTINGS)
        _ACTIVE["engine"] = self.engine

    def __is_ready__(self) -> bool:
        return self.engine.ready()

    async def _run(self, fn, req, offload: bool = False):
        try:
            return await anyio.to_thread.run_sync(fn, req) if offload else fn(req)
        except ServingError as exc:
            body = {"error": str(exc), "model_version": self.engine.model_version()}
            return JSONResponse(body, status_code=exc.status)

    def _replenish(self, req: ReplenishmentRequest) -> Response:
        return Response(self.engine.replenish_json(req), media_type="application/json")

    @bentoml.api(route="/replenishment")
    async def replenishment(self, req: ReplenishmentRequest, /) -> ReplenishmentResponse:
        """Order quantity per material for one store and order date (inventory from the request or the source)."""
        if (known := self.engine.cached_answer(req)) is not None:
            return Response(known, media_type="application/json")
        # Without inventory the first request for a store and date computes its positions (tens of ms): off the loop.
        return await self._run(self._replenish, req, offload=req.inventory is None)

    @bentoml.api(route="/replenishment/batch")
    async def replenishment_batch(self, req: BatchRequest, /) -> BatchResponse:
        """Order quantities for every (or the listed) store, from the source's latest counts."""
        return await self._run(self.engine.replenish_batch, req, offload=True)

    @bentoml.api(route="/forecast")
    async def forecast(self, req: ForecastRequest, /) -> ForecastResponse:
        """Daily demand quantiles per product (negative binomial), optionally the hourly profile of each day."""
        return await self._run(self.engine.forecast, req, offload=True)

    @bentoml.api(route="/bake-plan")
    async def bake_plan(self, req: BakePlanRequest, /) -> BakePlanResponse:
        """Thaw and bake plan for one store and day: pieces per release time, expected waste and lost sales."""
        return await self._run(self.engine.bake_plan, req, offload=True)

    @bentoml.api(route="/status")
    async def status(self, req: StatusRequest, /) -> StatusResponse:
        """The model served, its data date and order dates, the last load error and the source's state."""
        return self.engine.status()

    @bentoml.on_shutdown
    def _stop(self) -> None:
        self.watcher.stop()
        self.engine.source.close()


def openapi() -> dict:
    """The published OpenAPI: exact schemas (``complete_openapi``), this package's version and description, and
    ``GET /status`` beside the POST."""
    spec = complete_openapi(Replenishment.openapi_spec.asdict(), API_PATHS,
                            bool(os.environ.get(SETTINGS.serving.token_env)))
    spec["info"] = {"title": TITLE, "version": package_version(), "description": DESCRIPTION}
    status = spec.get("paths", {}).get("/status", {})
    if "post" in status:
        get = {k: v for k, v in status["post"].items() if k != "requestBody"}
        get["operationId"] = "status_get"
        get["description"] = "The model served, its data date and order dates, the last load error and the " \
                             "source's state (the same as POST /status with {})."
        status["get"] = get
    return spec


class StatusGet:
    """ASGI middleware: ``GET /status`` answers as ``POST /status`` with ``{}`` (monitors and browsers send GET)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/status" or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        headers = [(k, v) for k, v in scope.get("headers") or [] if k not in (b"content-type", b"content-length")]
        scope = {**scope, "method": "POST",
                 "headers": [*headers, (b"content-type", b"application/json"), (b"content-length", b"2")]}
        sent = False

        async def body():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"{}", "more_body": False}
            return await receive()

        await self.app(scope, body, send)


Replenishment.add_asgi_middleware(
    Guard,
    token=os.environ.get(SETTINGS.serving.token_env) or None,
    max_body=SETTINGS.serving.max_body_bytes,
    api_paths=API_PATHS,
    own_auth=("/workbench",),
    version=lambda: _ACTIVE["engine"].model_version() if _ACTIVE else None,
    openapi=openapi,
)
Replenishment.add_asgi_middleware(StatusGet)  # inside the Guard: the token is checked first

