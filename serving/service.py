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
    "/status": (StatusRequest, StatusResponse),
}
_ACTIVE: dict = {}  # this worker's engine, for the model-version header


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

    @bentoml.api(route="/status")
    async def status(self, req: StatusRequest, /) -> StatusResponse:
        """The model served, its data date and order dates, the last load error and the source's state."""
        return self.engine.status()

    @bentoml.on_shutdown
    def _stop(self) -> None:
        self.watcher.stop()
        self.engine.source.close()


Replenishment.add_asgi_middleware(
    Guard,
    token=os.environ.get(SETTINGS.serving.token_env) or None,
    max_body=SETTINGS.serving.max_body_bytes,
    api_paths=API_PATHS,
    version=lambda: _ACTIVE["engine"].model_version() if _ACTIVE else None,
    openapi=lambda: complete_openapi(Replenishment.openapi_spec.asdict(), API_PATHS,
                                     bool(os.environ.get(SETTINGS.serving.token_env))),
)

