"""The daily plan: cached forecasts + the source's latest counts and open orders -> proposal, reports, write-back.

Why store by store: one store's bad data (a missing supplier, a broken count history) must not stop the other
stores' orders; each store's proposal is computed and reported on its own, failures are collected, and the stores
that succeeded are written back together in one transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from forecasting.config import Settings, resolve_path
from forecasting.errors import DataError, ReplenishError
from forecasting.inventory.proposal import lines_to_frame, propose
from forecasting.source.forecast_cache import CachedForecast, read_cache
from forecasting.source.schema import SourceSchema
from planning.exceptions import SEVERITY, PlanException, find_exceptions
from planning.inputs import PlanInputs, read_plan_inputs
from planning.lifecycle import final_packs
from planning.writeback import proposal_rows, read_proposals, write_proposals

CSV_COLS = [
    "order_date", "store_id", "material_id", "material_name", "supplier_id", "delivery_date", "packs", "pack_size",
    "qty_units", "unit", "order_value", "is_order_day", "needs_review", "exceptions", "reason_codes", "on_hand_used",
    "on_order", "inventory_position", "demand_median", "order_up_to", "count_flag", "explanation", "final_packs",
    "status", "planner_qty", "override_reason",
]


@dataclass
class StorePlan:
    store_id: int
    store_name: str
    lines: pd.DataFrame = field(repr=False)
    exceptions: list[PlanException]
    csv_path: Path | None = None
    html_path: Path | None = None
    status: str = "draft"  # the stored proposal's state before this run (a non-draft one is not rewritten)
    count_age_days: int | None = None  # newest count vs the evening before the order date (None: no count)
    stale: bool = False  # count_age_days > planning.stale_count_days: one banner, every line flagged


@dataclass
class PlanResult:
    order_date: date
    model_version: str
    data_date: date
    stores: list[StorePlan]
    failures: dict[int, str]
    index_path: Path | None
    written: dict[str, int] | None
    seconds: float
    stale_days: int = 2  # planning.stale_count_days

    @property
    def stale(self) -> dict[int, int | None]:
        """store -> count age (days) for the stores planned from stale counts."""
        return {s.store_id: s.count_age_days for s in self.stores if s.stale}

    def summary(self) -> dict[str, Any]:
        return {
            "order_date": self.order_date.isoformat(), "model_version": self.model_version,
            "data_date": self.data_date.isoformat(),
            "stores": {s.store_id: {"lines": int(len(s.lines)), "order_lines": int((s.lines["qty_packs"] > 0).sum()),
                                    "packs": int(s.lines["qty_packs"].sum()),
                                    "final_packs": int(s.lines["final_packs"].sum()), "status": s.status,
                                    "count_age_days": s.count_age_days, "stale": s.stale,
                                    "exceptions": len(s.exceptions),
                                    "csv": str(s.csv_path) if s.csv_path else None,
                                    "html": str(s.html_path) if s.html_path else None} for s in self.stores},
            "failures": {str(k): v for k, v in self.failures.items()},
            "index": str(self.index_path) if self.index_path else None,
            "written": self.written, "seconds": round(self.seconds, 2),
        }


def find_cache(root: str | Path, order_date: date, model_version: str | None = None) -> CachedForecast:
    """The newest cached batch whose data date is before ``order_date`` (the counts of the previous evening)."""
    base = Path(root)
    found: list[tuple[str, float, str]] = []
    versions = [base / model_version] if model_version else [p for p in base.glob("*") if p.is_dir()]
    for v in versions:
        for meta in v.glob("*/meta.json"):
            try:
                d = date.fromisoformat(meta.parent.name)
            except ValueError:
                continue
            if d < order_date:
                info = json.loads(meta.read_text())
                found.append((meta.parent.name, meta.stat().st_mtime, info["model_version"]))
    if not found:
        raise DataError(f"no cached forecasts under {base} with a data date before {order_date}: run "
                        "`replenish forecast` (or `replenish nightly`) first")
    day, _, version = max(found)
    return read_cache(base, version, date.fromisoformat(day))


def _csv_frame(lines: pd.DataFrame, exceptions: list[PlanException]) -> pd.DataFrame:
    by_key: dict[tuple[int, int], list[str]] = {}
    for e in exceptions:
        by_key.setdefault((e.store_id, e.material_id), []).append(e.kind)
    df = lines.copy()
    df["packs"] = df["qty_packs"]
    df["exceptions"] = [",".join(by_key.get((int(s), int(m)), [])) for s, m in zip(df["store_id"], df["material_id"],
                                                                                    strict=True)]
    df["reason_codes"] = df["reason_codes"].map(lambda c: ",".join(c))
    df["planner_qty"] = df["planner_qty"].map(lambda x: "" if x is None or pd.isna(x) else str(int(x)))
    df["override_reason"] = df["override_reason"].fillna("")
    return df[CSV_COLS]


def _stored(engine: Engine, schema: SourceSchema, order_date: date, store_ids: list[int]) -> pd.DataFrame:
    """The date's stored lines of these stores (state and overrides), empty when none or no table yet."""
    from sqlalchemy import inspect

    t = schema["proposals"]
    if not inspect(engine).has_table(t.name, schema=t.schema):
        return pd.DataFrame(columns=["store_id", "material_id", "packs", "planner_qty", "override_reason", "status"])
    return read_proposals(engine, schema, order_date, store_ids)


def decide(sp: StorePlan, stored: pd.DataFrame, order_date: date) -> None:
    """Put the final quantity (planner's, else engine's) beside the engine's on the plan's lines.

    A store whose stored proposal is approved, released or cancelled keeps its stored numbers (a re-plan never
    rewrites them); where the engine's new number differs, the line gets a ``replan`` exception instead.
    """
    mine = stored[stored["store_id"] == sp.store_id].set_index("material_id") if len(stored) else stored
    df = sp.lines
    status = "draft"
    if len(mine) and "status" in mine and (mine["status"] != "draft").any():
        status = str(mine.loc[mine["status"] != "draft", "status"].iloc[0])
    sp.status = status
    planner = [mine["planner_qty"].get(int(m)) if len(mine) else None for m in df["material_id"]]
    df["planner_qty"] = [None if x is None or pd.isna(x) else int(x) for x in planner]
    df["override_reason"] = [mine["override_reason"].get(int(m)) if len(mine) else None for m in df["material_id"]]
    df["status"] = status
    final = [final_packs(e, p) for e, p in zip(df["qty_packs"], df["planner_qty"], strict=True)]
    if status != "draft":
        for i, m in enumerate(df["material_id"].astype(int)):
            if m not in mine.index:
                continue
            old = final_packs(mine.loc[m, "packs"], mine.loc[m, "planner_qty"])
            if int(mine.loc[m, "packs"]) != int(df["qty_packs"].iloc[i]):
                name = df["material_name"].iloc[i] or f"material {m}"
                sp.exceptions.append(PlanException(
                    sp.store_id, m, "replan", f"{name}: the proposal is {status} with {old} packs; this re-plan asks "
                    f"for {int(df['qty_packs'].iloc[i])}. It was not changed: reopen the store to take the new number,"
                    f" or keep {old}."))
            final[i] = old
    df["final_packs"] = final
    sp.exceptions.sort(key=lambda e: (SEVERITY[e.kind], e.store_id, e.material_id))


def mark_stale(sp: StorePlan, order_date: date, limit_days: int) -> None:
    """Count age of the store's newest count; stale counts become one banner and a flag on every line."""
    dates = pd.to_datetime(sp.lines["count_date"], errors="coerce").dropna()
    if dates.empty:
        sp.count_age_days = None
        return
    sp.count_age_days = (order_date - dates.max().date()).days - 1
    sp.stale = sp.count_age_days > limit_days
    if sp.stale:
        sp.lines["needs_review"] = True
        sp.lines["count_flag"] = "stale"
        # the banner replaces one "old count" card per line
        sp.exceptions[:] = [e for e in sp.exceptions if not (e.kind == "implausible_count" and "old count" in
                                                             e.message)]


def plan_store(
    store_id: int,
    cache: CachedForecast,
    inputs: PlanInputs,
    order_date: date,
    settings: Settings,
    order_time: dtime | None = None,
) -> tuple[pd.DataFrame, list[PlanException]]:
    """Proposal lines (``lines_to_frame``) and exceptions for one store."""
    fc = cache.frame[cache.frame["store_id"] == store_id]
    if fc.empty:
        raise DataError(f"store {store_id}: no forecasts in the cache ({cache.model_version}, {cache.data_date})")
    inv = inputs.inventory[inputs.inventory["store_id"] == store_id]
    orders = inputs.orders[inputs.orders["store_id"] == store_id]
    lines = propose(fc, inputs.materials, inputs.bom, inputs.suppliers, inv, order_date, settings.replenishment,
                    cache.model_version, cache.data_date, orders=orders, order_time=order_time)
    frame = lines_to_frame(lines)
    if frame.empty:
        raise DataError(f"store {store_id}: the engine produced no lines")
    exc = find_exceptions(frame, fc, inputs.bom, inputs.materials, inv, orders, order_date,
                          settings.planning.exceptions, settings.replenishment)
    return frame, exc


def run_plan(
    settings: Settings,
    engine: Engine,
    schema: SourceSchema,
    order_date: date,
    *,
    store_ids: list[int] | None = None,
    forecasts_dir: str | Path | None = None,
    features_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    write: bool = True,
    reports: bool = True,
    order_time: dtime | None = None,
    progress=None,
) -> PlanResult:
    """Plan every open store (or ``store_ids``), write CSV + HTML per store and an index, write back the proposal."""
    from planning.report import load_actuals, write_index, write_store_report

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    cache = find_cache(resolve_path(forecasts_dir or settings.planning.forecasts_dir), order_date)
    inputs = read_plan_inputs(engine, schema, order_date, settings.planning.inventory_days,
                              7 * settings.planning.exceptions.usual_order_weeks)
    open_ids = inputs.open_stores(order_date)
    if store_ids:
        unknown = sorted(set(store_ids) - set(inputs.stores["store_id"].astype(int)))
        if unknown:
            raise DataError(f"unknown store {unknown[0]} (stores: {sorted(inputs.stores['store_id'].astype(int))})")
        targets = sorted(store_ids)
    else:
        cached = set(cache.frame["store_id"].astype(int))
        targets = [s for s in open_ids if s in cached]
        if not targets:
            raise DataError(f"no open store on {order_date} has cached forecasts ({cache.model_version}, "
                            f"{cache.data_date})")
    names = inputs.stores.set_index("store_id")["store_name"].to_dict()
    out = resolve_path(out_dir or settings.planning.reports_dir) / order_date.isoformat()
    actuals = load_actuals(features_dir or settings.features.out_dir, order_date, settings.planning.plot_history_days)
    plans: list[StorePlan] = []
    failures: dict[int, str] = {}
    stored = _stored(engine, schema, order_date, targets)
    for sid in targets:
        say(f"store {sid}")
        try:
            frame, exc = plan_store(sid, cache, inputs, order_date, settings, order_time)
        except ReplenishError as err:
            failures[sid] = str(err)
            continue
        except Exception as err:  # noqa: BLE001 - one store's failure must not stop the others; reported at the end
            failures[sid] = f"{type(err).__name__}: {err}"
            continue
        sp = StorePlan(sid, str(names.get(sid, f"Store {sid}")), frame, exc)
        mark_stale(sp, order_date, settings.planning.stale_count_days)
        decide(sp, stored, order_date)
        if reports:
            out.mkdir(parents=True, exist_ok=True)
            sp.csv_path = out / f"store_{sid}.csv"
            _csv_frame(frame, exc).to_csv(sp.csv_path, index=False)
            sp.html_path = write_store_report(out, sp, cache, inputs, actuals, settings)
        plans.append(sp)
    written = None
    if write and plans:
        created = datetime.now(UTC).replace(tzinfo=None)
        rows: list[dict] = []
        for sp in plans:
            exc_map: dict[tuple[int, int], list[dict]] = {}
            for e in sp.exceptions:
                exc_map.setdefault((e.store_id, e.material_id), []).append(e.to_dict())
            rows += proposal_rows(sp.lines, exc_map, created)
        written = write_proposals(engine, schema, order_date, [sp.store_id for sp in plans], rows)
    index = None
    if reports and (plans or failures):  # the whole day's index, also when only some stores were re-planned
        others = _stored(engine, schema, order_date, [])
        others = others[~others["store_id"].isin([sp.store_id for sp in plans])] if len(others) else others
        index = write_index(out, plans, failures, cache, order_date, others, names)
    return PlanResult(order_date, cache.model_version, cache.data_date, plans, failures, index, written,
                      time.perf_counter() - t0, settings.planning.stale_count_days)
