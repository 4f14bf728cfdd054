"""The workbench as an ASGI app (Starlette), mounted under ``/workbench`` by ``serving.service``.

Why its own roles: planners change, approve and release; the ordering system reads released orders. Each role has
its own token (``planning.workbench`` in configs/); a request proves its role with ``Authorization: Bearer`` (API
clients) or the sign-in cookie (browsers), and a role asking for the other's action gets a 403 that says which
role may. Errors a user can act on are 4xx with one line; the database is only touched through
``planning.lifecycle`` and ``planning.workbench.data``.
"""

from __future__ import annotations

import hmac
import json
import os
from datetime import date
from urllib.parse import quote, unquote

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from forecasting.config import Settings
from forecasting.errors import DataError, ReplenishError, SourceUnavailable
from planning import lifecycle
from planning.workbench import data, pages

PLANNER, ORDERING = "planner", "ordering"
COOKIE, USER_COOKIE = "wb_token", "wb_user"


class Forbidden(Exception):
    pass


def _tokens(settings: Settings) -> dict[str, list[bytes]]:
    """role -> accepted tokens; neither role token set: the API token grants both; nothing set: open."""
    wb = settings.planning.workbench
    planner, ordering = os.environ.get(wb.planner_token_env), os.environ.get(wb.ordering_token_env)
    if planner or ordering:
        return {PLANNER: [planner.encode()] if planner else [], ORDERING: [ordering.encode()] if ordering else []}
    api = os.environ.get(settings.serving.token_env)
    return {PLANNER: [api.encode()], ORDERING: [api.encode()]} if api else {PLANNER: [], ORDERING: []}


def _json(obj, status: int = 200) -> Response:
    return Response(json.dumps(obj, default=str), status_code=status, media_type="application/json")


def create_app(settings: Settings, engine=None, schema=None) -> Starlette:
    """The workbench app; the source is opened on first use (the API must start even when the source is down)."""
    tokens = _tokens(settings)
    open_mode = not tokens[PLANNER] and not tokens[ORDERING]
    src: dict = {"engine": engine, "schema": schema}

    def db():
        if src["engine"] is None:
            from forecasting.source.db import open_source

            src["engine"], src["schema"] = open_source(settings.source.url, settings.source.tables)
        return src["engine"], src["schema"]

    def role_of(request: Request) -> set[str]:
        if open_mode:
            return {PLANNER, ORDERING}
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else unquote(request.cookies.get(COOKIE, ""))
        g = given.encode()
        return {r for r, toks in tokens.items() if g and any(hmac.compare_digest(g, t) for t in toks)}

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def user_of(request: Request, role: str) -> str:
        return (request.headers.get("x-user") or unquote(request.cookies.get(USER_COOKIE, "")) or role)[:64]

    def need(request: Request, role: str, page: bool = False):
        have = role_of(request)
        if role in have:
            return None
        if page and not have:
            nxt = request.url.path
            return RedirectResponse(f"{base(request)}/login?next={quote(nxt)}", status_code=303)
        other = "the ordering system" if role == ORDERING else "planners"
        if not have:
            return _json({"error": "missing or wrong token: send 'Authorization: Bearer <token>' for the "
                                   f"{role} role"}, 401)
        return _json({"error": f"this action is for {other} ({role} token); your token's role cannot do it"}, 403)

    def day(request: Request) -> date:
        try:
            d = date.fromisoformat(request.path_params["day"])
            if not 1900 <= d.year <= 9000:
                raise ValueError
            return d
        except ValueError:
            raise DataError(f"{request.path_params['day']!r} is not a date (YYYY-MM-DD, 1900-9000)") from None

    def page_day(request: Request) -> date | Response:
        """The date of a planner's page, or the answer instead of the page (sign-in, or a bad date)."""
        if (r := need(request, PLANNER, page=True)) is not None:
            return r
        try:
            return day(request)
        except DataError as exc:
            return HTMLResponse(pages.page("Bad date", "Bad date", "", pages.esc(exc)), 400)

    def error(exc: ReplenishError) -> Response:
        return _json({"error": str(exc)}, getattr(exc, "status", 400))

    # --------------------------------------------------------------------------------------------------- pages
    def home(request: Request) -> Response:
        if (r := need(request, PLANNER, page=True)) is not None:
            return r
        dates = data.proposal_dates(*db())
        d = dates[-1] if dates else date.today()
        return RedirectResponse(f"{base(request)}/d/{d}", status_code=303)

    def go(request: Request) -> Response:
        d = request.query_params.get("date", "")
        suffix = request.query_params.get("suffix", "")
        if not suffix.startswith("/store/") or not suffix[7:].isdigit():
            suffix = ""
        try:
            if not 1900 <= date.fromisoformat(d).year <= 9000:
                raise ValueError
        except ValueError:
            return HTMLResponse(pages.page("Bad date", "Bad date", "", f"{pages.esc(d)} is not a date"), 400)
        return RedirectResponse(f"{base(request)}/d/{d}{suffix}", status_code=303)

    def overview(request: Request) -> Response:
        if isinstance(d := page_day(request), Response):
            return d
        days = data.store_days(*db(), d)
        return HTMLResponse(pages.overview(base(request), d, days, data.chain_totals(days), user_of(request, PLANNER),
                                           request.query_params.get("msg")))

    def store_view(request: Request) -> Response:
        if isinstance(d := page_day(request), Response):
            return d
        sid = int(request.path_params["store"])
        eng, sch = db()
        got = data.store_days(eng, sch, d, sid)
        if not got:
            body = (pages.date_nav(base(request), d, f"/store/{sid}")
                    + f"<div class=ok>No proposal for store {sid} on {d}.</div>")
            return HTMLResponse(pages.page(f"Store {sid} {d}", f"Store {sid}", f"{d}", body), 404)
        sd = got[0]
        charts = _charts(sd)
        stale = data.count_age_days(eng, sch, sid, d)
        return HTMLResponse(pages.store_page(base(request), sd, user_of(request, PLANNER), charts, stale,
                                             settings.planning.stale_count_days, request.query_params.get("msg"),
                                             request.query_params.get("err")))

    def _charts(sd: data.StoreDay) -> dict[int, tuple[str, str]]:
        exc_ids = [int(e["material_id"]) for e in sd.exceptions if int(e["material_id"])]
        top = sd.lines.sort_values("final_value", ascending=False)["material_id"].astype(int).head(4).tolist()
        ids = list(dict.fromkeys(exc_ids + top))[:12]
        hist = data.daily_use(settings.features.out_dir, sd.store_id, ids, sd.order_date,
                              settings.planning.workbench.history_days)
        lines = sd.lines.set_index("material_id")
        out = {}
        for mid in ids:
            if mid not in lines.index:
                continue
            r = lines.loc[mid]
            per_day = float(r.get("demand_mean") or 0.0) / max(int(r.get("window_days") or 1), 1)
            out[mid] = (str(r.get("material_name") or mid), pages.chart_svg(hist[hist["material_id"] == mid],
                                                                              per_day, r.get("unit")))
        return out

    async def act(request: Request) -> Response:
        """Form posts from the store page: override, withdraw, approve, reopen, cancel, release."""
        if (r := need(request, PLANNER, page=True)) is not None:
            return r
        d, sid, what = request.path_params["day"], int(request.path_params["store"]), request.path_params["action"]
        back = f"{base(request)}/d/{d}/store/{sid}"
        form = await request.form()
        user = user_of(request, PLANNER)
        eng, sch = db()
        try:
            dd = day(request)
            if what == "override":
                mid = int(str(form.get("material_id", "")))
                packs = str(form.get("packs", "")).strip()
                if not packs.isdigit():
                    raise DataError(f"packs {packs!r} must be a whole number >= 0")
                reason = str(form.get("reason", "")).strip()
                n = lifecycle.override(eng, sch, dd, sid, mid, int(packs), reason, user)
                msg = f"material {mid}: {packs} packs recorded ({reason})" if n else "unchanged"
            elif what == "withdraw":
                mid = int(str(form.get("material_id", "")))
                lifecycle.withdraw(eng, sch, dd, sid, mid, user)
                msg = f"material {mid}: change withdrawn"
            elif what in ("approve", "reopen", "cancel"):
                getattr(lifecycle, what)(eng, sch, dd, sid, user)
                msg = {"approve": "approved", "reopen": "reopened", "cancel": "cancelled"}[what]
            elif what == "release":
                rel = lifecycle.release(eng, sch, dd, sid, user)
                msg = (f"released: {rel['n_orders']} orders, {rel['packs']} packs, ${rel['order_value']:,.2f}"
                       + (" (already released)" if rel["replayed"] else ""))
            else:
                return _json({"error": f"unknown action {what!r}"}, 404)
        except (ReplenishError, ValueError) as exc:
            return RedirectResponse(f"{back}?err={quote(str(exc))}", status_code=303)
        return RedirectResponse(f"{back}?msg={quote(msg)}", status_code=303)

    async def login(request: Request) -> Response:
        b = base(request)
        if request.method == "GET":
            return HTMLResponse(pages.login_page(b, nxt=request.query_params.get("next", "")))
        form = await request.form()
        token, user = str(form.get("token", "")), str(form.get("user", "")).strip()[:64]
        g = token.encode()
        if not open_mode and not any(g and hmac.compare_digest(g, t) for t in tokens[PLANNER]):
            return HTMLResponse(pages.login_page(b, "That is not a planner token.", str(form.get("next", ""))), 403)
        nxt = unquote(str(form.get("next", ""))) or f"{b}/"
        if not nxt.startswith(b + "/"):
            nxt = f"{b}/"
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, quote(token), httponly=True, samesite="strict", path=b or "/")
        resp.set_cookie(USER_COOKIE, quote(user or PLANNER), samesite="strict", path=b or "/")
        return resp

    def logout(request: Request) -> Response:
        resp = RedirectResponse(f"{base(request)}/login", status_code=303)
        resp.delete_cookie(COOKIE, path=base(request) or "/")
        return resp

    # ---------------------------------------------------------------------------------------------------- JSON
    def api_proposal(request: Request) -> Response:
        if (r := need(request, PLANNER)) is not None:
            return r
        try:
            d = day(request)
            got = data.store_days(*db(), d, int(request.path_params["store"]))
            if not got:
                raise lifecycle.Missing(f"no proposal for store {request.path_params['store']} on {d}")
        except ReplenishError as exc:
            return error(exc)
        sd = got[0]
        cols = ["material_id", "material_name", "unit", "pack_size", "final_packs", "engine_packs", "planner_packs",
                "override_reason", "overridden_by", "status", "replan_packs", "delivery_date"]
        lines = sd.lines[cols].astype(object).where(sd.lines[cols].notna(), None).to_dict("records")
        return _json({"store_id": sd.store_id, "order_date": d, "state": sd.state, "packs": sd.packs,
                      "order_value": round(sd.value, 2), "lines": lines,
                      "exceptions": [{k: v for k, v in e.items() if k != "detail"} for e in sd.exceptions]})

    async def api_action(request: Request) -> Response:
        if (r := need(request, PLANNER)) is not None:
            return r
        what, sid = request.path_params["action"], int(request.path_params["store"])
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return _json({"error": f"body must be a JSON object: {exc}"}, 400)
        user = user_of(request, PLANNER)
        eng, sch = db()
        try:
            d = day(request)
            if what == "release":
                rel = lifecycle.release(eng, sch, d, sid, user, key=request.headers.get("idempotency-key"),
                                        body=body)
                return _json(rel, 200 if rel["replayed"] else 201)
            if what in ("approve", "reopen", "cancel"):
                return _json(getattr(lifecycle, what)(eng, sch, d, sid, user))
            if what in ("override", "withdraw"):
                mid = body.get("material_id")
                if not isinstance(mid, int):
                    raise DataError("material_id (an integer) is required")
                if what == "withdraw":
                    return _json({"now": lifecycle.withdraw(eng, sch, d, sid, mid, user)})
                packs = body.get("packs")
                if not isinstance(packs, int) or packs < 0:
                    raise DataError("packs must be a whole number >= 0")
                n = lifecycle.override(eng, sch, d, sid, mid, packs, str(body.get("reason") or ""), user)
                return _json({"recorded": n})
            return _json({"error": f"unknown action {what!r}"}, 404)
        except ReplenishError as exc:
            return error(exc)

    def api_orders(request: Request) -> Response:
        """Released orders for the ordering system: ?store_id=&order_date=, or ?since=<cursor>."""
        if (r := need(request, ORDERING)) is not None:
            return r
        q = request.query_params
        unknown = set(q) - {"store_id", "order_date", "since", "limit"}
        try:
            if unknown:
                raise DataError(f"unknown query parameter {sorted(unknown)[0]!r}: use store_id, order_date, since, "
                                "limit")
            store = int(q["store_id"]) if "store_id" in q else None
            d = date.fromisoformat(q["order_date"]) if "order_date" in q else None
            since = int(q["since"]) if "since" in q else None
            limit = int(q.get("limit", 100))
            if not 1 <= limit <= 1000:
                raise DataError("limit must be 1..1000")
            if since is None and store is None and d is None:
                raise DataError("give store_id and/or order_date, or since=<cursor> (0 for the first)")
        except ValueError as exc:
            return _json({"error": f"bad query parameter: {exc}"}, 400)
        except DataError as exc:
            return error(exc)
        return _json(lifecycle.released_orders(*db(), store_id=store, order_date=d, since=since, limit=limit))

    routes = [
        Route("/", home), Route("/go", go), Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout), Route("/d/{day}", overview), Route("/d/{day}/store/{store:int}", store_view),
        Route("/d/{day}/store/{store:int}/{action}", act, methods=["POST"]),
        Route("/api/proposals/{day}/{store:int}", api_proposal),
        Route("/api/proposals/{day}/{store:int}/{action}", api_action, methods=["POST"]),
        Route("/api/orders", api_orders),
    ]
    async def unavailable(request: Request, exc: Exception) -> Response:
        return _json({"error": f"source database unavailable: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"},
                     503)

    return Starlette(routes=routes, exception_handlers={SourceUnavailable: unavailable,
                                                        SQLAlchemyError: unavailable})
