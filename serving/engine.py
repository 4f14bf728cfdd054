"""The API's core: the loaded champion state (forecasts, precomputed window demand, master data) and the requests.

Why a state object swapped whole: a model switch builds the next state off the request path (load, validate,
precompute) and replaces the reference in one assignment, so a request always sees one consistent model, and a
failed load leaves the previous one serving. Requests only look up precomputed window-demand quantiles and apply
the policy (``forecasting.inventory.proposal.line_fields``): no sampling, no model call, and no database read: the
request carries its own inventory or the store's latest counts are in memory (``serving.counts``, refreshed in the
background). ``replenish_json`` serialises the lines' plain dicts straight to the bytes ``replenish`` would give
through the pydantic models (the API's fast path); answers from the source's counts are kept as bytes until the
counts or the model change. Nothing here imports BentoML; ``serving.service`` adapts HTTP to these methods.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pydantic_core

from forecasting.config import HourlyConfig, Settings
from forecasting.errors import DataError, SourceUnavailable
from forecasting.inventory.hourly_demand import HourlyShares, fit_configured, hourly_quantiles
from forecasting.inventory.material_demand import validate_forecasts
from forecasting.inventory.policy import CountAssessment, Position
from forecasting.inventory.proposal import ProposalLine, WindowDemand, line_fields, positions, precompute_window_demand
from forecasting.uncertainty import nb_quantile
from serving.counts import CountsCache, Held
from serving.schemas import (
    BakePlanRequest,
    BakePlanResponse,
    BatchRequest,
    BatchResponse,
    DayForecast,
    ForecastRequest,
    ForecastResponse,
    HourShare,
    InventoryItem,
    ProductForecast,
    ReplenishmentRequest,
    ReplenishmentResponse,
    StatusResponse,
)
from serving.source import MasterData, SourceReader

log = logging.getLogger("bentoml.replenishment.engine")
_MISSING = CountAssessment(None, None, 0.0, "missing", "not in the request's inventory: on hand taken as 0", 0.0)
_NOTHING = Position(0.0, 0.0, 0.0, 0.0, 0.0, [])  # shared by every missing line (read, never changed)
ANSWERS_MAX_BYTES = 64 * 2**20  # serialised answers from the counts in memory kept (~120 kB each for 100 lines)


class ServingError(Exception):
    """An expected failure with its HTTP status; the message says what is wrong (never credentials)."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status or self.status


class BadRequest(ServingError):
    status = 400


class NotFound(ServingError):
    status = 404


class Unavailable(ServingError):
    status = 503


def _ids(values, limit: int = 20) -> str:
    v = sorted(int(x) for x in values)
    return ", ".join(map(str, v[:limit])) + (f", ... ({len(v)} in all)" if len(v) > limit else "")


@dataclass(frozen=True)
class StoreForecast:
    """One store's daily forecasts as dense arrays: ``mean[p, t]``, ``alpha[p, t]`` on consecutive days."""

    product_ids: np.ndarray  # (P,) sorted
    first: date
    mean: np.ndarray  # (P, T)
    alpha: np.ndarray  # (P, T)
    present: np.ndarray  # (P, T) bool: the cache has the row


@dataclass(frozen=True)
class ModelRef:
    """Which model to serve and where its cached forecasts are."""

    version: str
    source: str  # mlflow | bentoml
    cache_root: str
    uri: str | None = None


@dataclass(frozen=True)
class ServingState:
    model_version: str
    model_source: str
    data_date: date
    master: MasterData
    windows: dict[date, WindowDemand]
    store_ids: frozenset[int]
    material_ids: frozenset[int]
    forecasts: dict[int, StoreForecast]
    fc_first: date
    fc_last: date
    hourly: HourlyShares | None
    loaded_at: str
    load_seconds: float
    cache_key: tuple = ()


def forecasts_by_store(frame: pd.DataFrame) -> dict[int, StoreForecast]:
    out: dict[int, StoreForecast] = {}
    d0 = frame["date"].min()
    T = int((frame["date"].max() - d0).days) + 1
    for store, g in frame.groupby("store_id", sort=True):
        prods = np.sort(g["product_id"].unique())
        pi = np.searchsorted(prods, g["product_id"].to_numpy())
        ti = (g["date"] - d0).dt.days.to_numpy()
        mean, alpha = np.zeros((len(prods), T)), np.zeros((len(prods), T))
        present = np.zeros((len(prods), T), dtype=bool)
        mean[pi, ti] = g["mean"].to_numpy(float)
        alpha[pi, ti] = g["dispersion"].to_numpy(float)
        present[pi, ti] = True
        out[int(store)] = StoreForecast(prods, d0.date(), mean, alpha, present)
    return out


def _hours(prof: tuple[np.ndarray, np.ndarray], day_mean: float, alpha: float, qs: list[float]) -> list[HourShare]:
    """The day split over its open hours, each hour with its own quantiles (the day's dispersion: an hour is a
    thinning of the day's gamma-Poisson count, ``forecasting.inventory.hourly_demand``)."""
    hours, shares = prof
    means = day_mean * shares
    hq = hourly_quantiles(means, alpha, qs)
    return [HourShare(hour=int(h), share=float(s), mean=float(mu), quantiles={str(q): float(hq[q][i]) for q in qs})
            for i, (h, s, mu) in enumerate(zip(hours, shares, means, strict=True))]


def hourly_profiles(features_dir: str, hourly: HourlyConfig) -> HourlyShares | None:
    """Hour-level shares (``forecasting.inventory.hourly_demand``, the model the backtest scores per hour) fitted on
    the feature store's last ``hourly.lookback_days``, with the day covariates of the store's planned calendar
    (forecast temperature, campaigns) as known on its last day; None (hourly answers unavailable) when there is no
    store or panel."""
    from features.store import FeatureStore
    from training.future import PlannedCalendar

    fs = FeatureStore(features_dir)
    if not fs.exists():
        return None
    try:
        last = pd.Timestamp(fs.manifest().get("watermark") or fs.manifest().get("last_date"))
        start = last - pd.Timedelta(days=hourly.lookback_days - 1)
        h = fs.read("hourly", start=start, end=last,
                    columns=["store_id", "product_id", "date", "local_hour", "qty", "censored"])
        if not len(h):
            return None
        return fit_configured(h, hourly, PlannedCalendar.from_manifest(fs.manifest()).hour_inputs(last.date()))
    except (DataError, ValueError, OSError, KeyError) as exc:
        log.warning("hourly profiles unavailable: %s", exc)
        return None


def build_state(ref: ModelRef, frame: pd.DataFrame, data_date: date, master: MasterData, settings: Settings,
                hourly: HourlyShares | None) -> ServingState:
    """Validate a model's cached forecasts against the source and precompute window demand for every order date.

    Raises DataError with the reason when the forecasts cannot be served (the caller keeps the previous state).
    """
    t0 = time.perf_counter()
    fc = validate_forecasts(frame)
    if not np.isfinite(fc["mean"].to_numpy(float)).all() or not np.isfinite(fc["dispersion"].to_numpy(float)).all():
        raise DataError("forecasts: non-finite mean or dispersion")
    known = set(master.stores["store_id"].astype(int))
    stray = set(fc["store_id"].astype(int)) - known
    if stray:
        raise DataError(f"forecasts name stores the source does not know: {_ids(stray)}")
    if not set(fc["product_id"].astype(int)) & set(master.bom["product_id"].astype(int)):
        raise DataError("no forecast product has a recipe in the source's bom")
    first, last = fc["date"].min().date(), fc["date"].max().date()
    windows: dict[date, WindowDemand] = {}
    cfg = settings.replenishment
    d = max(first, data_date + timedelta(days=1))
    while d <= last:
        try:
            windows[d] = precompute_window_demand(fc, master.materials, master.bom, master.suppliers, d, cfg,
                                                  keep_quantiles=True)
        except DataError as exc:
            log.info("order date %s not servable: %s", d, exc)
        d += timedelta(days=1)
    if not windows:
        raise DataError(f"forecasts {first}..{last} cover no order date after data date {data_date}")
    return ServingState(
        model_version=ref.version,
        model_source=ref.source,
        data_date=data_date,
        master=master,
        windows=windows,
        store_ids=frozenset(known),
        material_ids=frozenset(master.materials["material_id"].astype(int)),
        forecasts=forecasts_by_store(fc),
        fc_first=first,
        fc_last=last,
        hourly=hourly,
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_seconds=round(time.perf_counter() - t0, 3),
    )


@dataclass
class Engine:
    """Answers requests from the current state; ``swap`` installs a new one (called by ``serving.lifecycle``)."""

    settings: Settings
    source: SourceReader
    state: ServingState | None = None
    last_error: str | None = None
    last_poll_at: str | None = None
    refused: dict[str, str] = field(default_factory=dict)  # model version -> why it was refused at load
    counts: CountsCache | None = None  # every store's latest counts (None: built from source and settings)
    _answers: dict[tuple, bytes] = field(default_factory=dict)  # serialised answers from the counts in memory
    _answers_of: tuple = ()  # the (model load, counts read) they were computed from
    _answers_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _decisions: dict = field(default_factory=dict)  # (store, date) -> (read at, token, {material: planner's side})

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = CountsCache(self.source, self.settings)

    def ready(self) -> bool:
        return self.state is not None

    def swap(self, state: ServingState) -> None:
        with self._lock:
            self.state = state
            self._answers, self._answers_bytes = {}, 0
            self.last_error = None
        # The state holds many long-lived objects; moving them out of the collector's reach keeps full (gen 2)
        # collections, triggered by the per-request allocations, from pausing requests for tens of milliseconds.
        gc.collect()
        gc.freeze()

    def model_version(self) -> str | None:
        st = self.state
        return st.model_version if st else None

    # ---------------------------------------------------------------------------------------------------------
    def _state(self) -> ServingState:
        st = self.state
        if st is None:
            why = f": {self.last_error}" if self.last_error else ""
            raise Unavailable(f"no model loaded yet{why}")
        return st

    def _window(self, st: ServingState, store_id: int, order_date: date) -> tuple[WindowDemand, int]:
        if store_id not in st.store_ids:
            raise NotFound(f"unknown store_id {store_id}: the source has stores {_ids(st.store_ids)}")
        wd = st.windows.get(order_date)
        if wd is None:
            days = sorted(st.windows)
            raise BadRequest(f"order_date {order_date} is outside what model {st.model_version} (data date "
                             f"{st.data_date}) can forecast: order dates {days[0]} to {days[-1]}")
        si = wd.store_index(store_id)
        if si is None:
            raise NotFound(f"store_id {store_id} has no forecasts in model {st.model_version}")
        return wd, si

    def _plan(self, wd: WindowDemand, si: int) -> tuple[list[tuple[int, int, bool]], frozenset[int]]:
        """Per store and order date: the (material index, id, has demand) that may get a line, and all used ids."""
        key = ("plan", si)
        hit = wd.memo.get(key)
        if hit is None:
            emit = self.settings.replenishment.emit_non_order_days
            demand = (wd.prot_mean[si] > 0).tolist()
            plan = [(mi, mid, demand[mi]) for mi, mid in enumerate(wd.material_ids.tolist())
                    if wd.wins[mi].is_order_day or emit]
            hit = wd.memo[key] = (plan, frozenset(wd.material_ids.tolist()))
        return hit

    def _request_held(self, st: ServingState, wd: WindowDemand, si: int, items: list[InventoryItem],
                      scope: str = "complete", store_id: int | None = None) -> tuple[Held, list[str]]:
        """Positions from the request's counts: on hand as counted, on order assumed to arrive by the delivery.

        Materials the request does not list are never silent zeros: 'complete' takes them as 0 and says which,
        'partial' takes the source's latest counts for them and says which."""
        given = {i.material_id: i for i in items}
        unknown = given.keys() - st.material_ids
        if unknown:
            raise NotFound(f"unknown material_id {_ids(unknown)} in inventory")
        plan, used = self._plan(wd, si)
        warnings = []
        unused = given.keys() - used
        if unused:
            warnings.append(f"material_id {_ids(unused)} is not used by any forecast product: no line")
        unlisted = [mid for _, mid, has_demand in plan if has_demand and mid not in given]
        listed = f"inventory lists {len(given)} material{'s' if len(given) != 1 else ''}"
        from_source: dict[int, tuple] = {}
        if unlisted and scope == "partial":  # the source's latest counts for what the request does not list
            src, _ = self._source_held(st, wd, si, store_id)
            from_source = {mi: (c, p) for mi, c, p in src}
            warnings.append(f"{listed}; {len(unlisted)} it does not list use the "
                            f"source's latest counts (inventory_scope 'partial'): material_id {_ids(unlisted)}")
        elif unlisted:
            warnings.append(f"{listed}; {len(unlisted)} it does not list are taken as 0 "
                            f"on hand and 0 on order (inventory_scope 'complete'): material_id {_ids(unlisted)}; "
                            "send their counts, or inventory_scope 'partial' to use the source's latest counts")
        position_date = wd.order_date - timedelta(days=1)
        held: Held = []
        for mi, mid, has_demand in plan:
            item = given.get(mid)
            if item is None:
                if has_demand:
                    held.append((mi, *from_source.get(mi, (_MISSING, _NOTHING))))
                continue
            on_hand, on_order = float(item.on_hand), float(item.on_order)
            count = CountAssessment(on_hand, position_date, on_hand, "ok", "", 0.0)
            held.append((mi, count, Position(on_hand, on_order, 0.0, on_order, 0.0, [])))
        return held, warnings

    def _source_held(self, st: ServingState, wd: WindowDemand, si: int, store_id: int) -> tuple[Held, tuple | None]:
        """Positions from the source's latest counts and orders, and a key for the serialised answer (or None).

        With ``serving.inventory_ttl_s`` > 0 they come from the counts in memory (``serving.counts``); 0 reads the
        source on every request (always current, but two queries and a pandas pass per request).
        """
        unavailable = ("the latest counts are unavailable; send `inventory` in the request to get order quantities "
                       "from the cached forecasts")
        if self.settings.serving.inventory_ttl_s <= 0:
            try:
                counts, orders = self.source.store_inventory(store_id, wd.order_date - timedelta(days=1),
                                                             self.settings.replenishment.counts.lookback_days)
            except SourceUnavailable as exc:
                raise Unavailable(f"{exc}: {unavailable}") from None
            got = positions(wd.for_store(si), counts, self.settings.replenishment, orders=orders)
            return [(mi, c, p) for (_, mi), (c, p) in got.items()], None
        try:
            held, snap = self.counts.held(st, wd, si, store_id)
        except SourceUnavailable as exc:
            raise Unavailable(f"{exc}: {unavailable}") from None
        return held, (st.cache_key, snap.version)

    def _prepare(self, req: ReplenishmentRequest) -> tuple[ServingState, WindowDemand, int, Held, list[str],
                                                            tuple | None]:
        st = self._state()
        wd, si = self._window(st, req.store_id, req.order_date)
        if req.inventory is not None:
            held, warnings = self._request_held(st, wd, si, req.inventory, req.inventory_scope, req.store_id)
            return st, wd, si, held, warnings, None
        held, version = self._source_held(st, wd, si, req.store_id)
        key = None if version is None else (*version, req.store_id, req.order_date, req.service_level)
        return st, wd, si, held, [], key

    def decisions(self, store_id: int, order_date: date) -> tuple[int, dict]:
        """The planner's side of a stored proposal (overrides, state) for one store and date, and a token that
        changes with it; re-read at most every ``serving.inventory_ttl_s`` (a failed read keeps the last one)."""
        key = (store_id, order_date)
        hit = self._decisions.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.settings.serving.inventory_ttl_s:
            return hit[1], hit[2]
        try:
            from planning.lifecycle import decisions

            got = decisions(self.source._get_engine(), self.source.schema, store_id, order_date)
        except Exception:  # noqa: BLE001 - no proposal table or the source is down: the engine's numbers stand
            got = hit[2] if hit else {}
        token = hash(tuple(sorted(got.items())))
        if len(self._decisions) > 10_000:
            self._decisions.clear()
        self._decisions[key] = (now, token, got)
        return token, got

    def _lines(self, st: ServingState, wd: WindowDemand, si: int, held: Held, level: float | None,
               dec: dict | None = None) -> list[dict]:
        cfg = self.settings.replenishment
        lines = [line_fields(wd, si, mi, c, p, cfg, st.model_version, st.data_date, service_level=level)
                 for mi, c, p in held]
        for ln in lines if dec else ():
            got = dec.get(ln["material_id"])
            if got is not None:
                planner, reason, status = got
                ln["planner_packs"], ln["override_reason"], ln["proposal_status"] = planner, reason, status
                if planner is not None:
                    ln["final_packs"] = planner
        return lines

    # ---------------------------------------------------------------------------------------------------------
    def replenish(self, req: ReplenishmentRequest) -> ReplenishmentResponse:
        """The answer as the response model (the batch endpoint and tests); same content as ``replenish_json``."""
        st, wd, si, held, warnings, _ = self._prepare(req)
        _, dec = self.decisions(req.store_id, req.order_date)
        lines = [ProposalLine(**d) for d in self._lines(st, wd, si, held, req.service_level, dec)]
        return ReplenishmentResponse(
            store_id=req.store_id, order_date=req.order_date, model_version=st.model_version, data_date=st.data_date,
            inventory_source="request" if req.inventory is not None else "source", lines=lines, warnings=warnings,
        )

    def cached_answer(self, req: ReplenishmentRequest) -> bytes | None:
        """The serialised answer to a request without inventory when it is already known (no work, no read)."""
        st, snap = self.state, self.counts.snapshot
        if req.inventory is not None or st is None or snap is None or self.settings.serving.inventory_ttl_s <= 0:
            return None
        if self.counts.stale() is not None:  # the source stopped answering: never answer from unconfirmed counts
            return None
        token, _ = self.decisions(req.store_id, req.order_date)
        return self._answers.get((st.cache_key, snap.version, req.store_id, req.order_date, req.service_level, token))

    def replenish_json(self, req: ReplenishmentRequest) -> bytes:
        """The answer as JSON bytes, equal to ``replenish(req).model_dump_json()`` without building the models.

        Why: validating and dumping ~100 lines of ~45 fields through pydantic was most of a request's CPU; the
        lines are built here with the model's types and field order, so ``pydantic_core.to_json`` gives the same
        bytes (tests compare the two).
        """
        st, wd, si, held, warnings, key = self._prepare(req)
        token, dec = self.decisions(req.store_id, req.order_date)
        key = None if key is None else (*key, token)
        if key is not None and (hit := self._answers.get(key)) is not None:
            return hit
        body = pydantic_core.to_json({
            "store_id": req.store_id, "order_date": req.order_date, "model_version": st.model_version,
            "data_date": st.data_date, "inventory_source": "request" if req.inventory is not None else "source",
            "lines": self._lines(st, wd, si, held, req.service_level, dec), "warnings": warnings,
        })
        if key is not None:  # kept until the model or the counts change (bounded; races only cost a recompute)
            if key[:2] != self._answers_of or self._answers_bytes + len(body) > ANSWERS_MAX_BYTES:
                self._answers, self._answers_of, self._answers_bytes = {}, key[:2], 0
            self._answers[key] = body
            self._answers_bytes += len(body)
        return body

    def replenish_batch(self, req: BatchRequest) -> BatchResponse:
        st = self._state()
        limit = self.settings.serving.max_batch_stores
        stores = sorted(set(req.store_ids)) if req.store_ids else sorted(st.forecasts)
        if len(stores) > limit:
            raise BadRequest(f"{len(stores)} stores in one batch: at most {limit}")
        unknown = set(stores) - st.store_ids
        if unknown:
            raise NotFound(f"unknown store_id {_ids(unknown)}: the source has stores {_ids(st.store_ids)}")
        out = [self.replenish(ReplenishmentRequest(store_id=s, order_date=req.order_date,
                                                   service_level=req.service_level)) for s in stores]
        return BatchResponse(order_date=req.order_date, model_version=st.model_version, data_date=st.data_date,
                             stores=out)

    def forecast(self, req: ForecastRequest) -> ForecastResponse:
        st = self._state()
        if req.store_id not in st.store_ids:
            raise NotFound(f"unknown store_id {req.store_id}: the source has stores {_ids(st.store_ids)}")
        sf = st.forecasts.get(req.store_id)
        if sf is None:
            raise NotFound(f"store_id {req.store_id} has no forecasts in model {st.model_version}")
        end = req.start_date + timedelta(days=req.days - 1)
        if req.start_date < st.fc_first or end > st.fc_last:
            raise BadRequest(f"{req.start_date} to {end} is outside what model {st.model_version} forecasts: "
                             f"{st.fc_first} to {st.fc_last}")
        if req.product_ids is None:
            pidx = np.arange(len(sf.product_ids))
        else:
            wanted = np.array(sorted(set(req.product_ids)))
            pidx = np.searchsorted(sf.product_ids, wanted)
            ok = (pidx < len(sf.product_ids)) & (sf.product_ids[np.minimum(pidx, len(sf.product_ids) - 1)] == wanted)
            if not ok.all():
                raise NotFound(f"product_id {_ids(wanted[~ok])} has no forecast for store {req.store_id}")
        if req.hourly and st.hourly is None:
            raise Unavailable("hourly profiles unavailable: the feature store has no hourly panel")
        t0 = (req.start_date - sf.first).days
        sl = slice(t0, t0 + req.days)
        mean, alpha = sf.mean[pidx, sl], sf.alpha[pidx, sl]
        qs = sorted(set(req.quantiles))
        qv = {q: nb_quantile(mean, alpha, q) for q in qs}
        days = [req.start_date + timedelta(days=k) for k in range(req.days)]
        products = []
        for r, p in enumerate(pidx.tolist()):
            pid = int(sf.product_ids[p])
            out = []
            for k, d in enumerate(days):
                m = float(mean[r, k])
                hourly = None
                if req.hourly:
                    prof = st.hourly.on_day(req.store_id, pid, d)
                    hourly = [] if prof is None else _hours(prof, m, float(alpha[r, k]), qs)
                out.append(DayForecast(date=d, mean=m, dispersion=float(alpha[r, k]),
                                       quantiles={str(q): float(qv[q][r, k]) for q in qs}, hourly=hourly))
            products.append(ProductForecast(product_id=pid, days=out))
        return ForecastResponse(store_id=req.store_id, model_version=st.model_version, data_date=st.data_date,
                                quantiles=qs, products=products)

    def bake_plan(self, req: BakePlanRequest) -> BakePlanResponse:
        """The thaw and bake plan of one store and day (``serving.bakeplan``): the API's and the workbench's."""
        from forecasting.inventory.bake import hhmm
        from serving.bakeplan import plan_json, store_plan

        st = self._state()
        if req.store_id not in st.store_ids:
            raise NotFound(f"unknown store_id {req.store_id}: the source has stores {_ids(st.store_ids)}")
        try:
            plan, food, warnings, basis = store_plan(st, self.settings, req.store_id, req.date)
        except KeyError as exc:
            raise NotFound(str(exc.args[0])) from None
        except LookupError as exc:
            raise BadRequest(str(exc)) from None
        except ValueError as exc:  # e.g. a store whose closing hour is not after its opening hour in the source
            raise BadRequest(f"store_id {req.store_id}: {exc}") from None
        items = plan_json(plan, food)
        return BakePlanResponse(
            store_id=req.store_id, date=req.date, model_version=st.model_version, data_date=st.data_date,
            opening=hhmm(plan.open_hour), closing=hhmm(plan.close_hour),
            release_times=[hhmm(t) for t in plan.release_times], hourly_basis=basis,
            pieces=sum(i["pieces"] for i in items),
            expected_waste_pcs=round(sum(i["expected_waste_pcs"] for i in items), 2),
            waste_usd=round(sum(i["waste_usd"] for i in items), 2),
            expected_lost_pcs=round(sum(i["expected_lost_pcs"] for i in items), 2),
            lost_margin_usd=round(sum(i["lost_margin_usd"] for i in items), 2),
            items=items, assumptions=plan.assumptions, warnings=warnings)

    def status(self) -> StatusResponse:
        st = self.state
        snap = self.counts.snapshot
        stale = self.counts.stale()
        base = dict(ready=st is not None, last_poll_at=self.last_poll_at, last_error=self.last_error,
                    source_ok=False if stale else self.source.ok,
                    counts_read_at=snap.read_at if snap and not stale else None,
                    counts_error=stale or self.counts.error, refused_versions=dict(self.refused))
        if st is None:
            return StatusResponse(**base)
        days = sorted(st.windows)
        return StatusResponse(
            **base, model_version=st.model_version, model_source=st.model_source, data_date=st.data_date,
            order_dates=[days[0], days[-1]], forecast_dates=[st.fc_first, st.fc_last], stores=sorted(st.forecasts),
            loaded_at=st.loaded_at, load_seconds=st.load_seconds, hourly_available=st.hourly is not None,
        )
