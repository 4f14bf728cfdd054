"""What the workbench pages show, read from the proposal tables (no HTML here).

Why from the database only: the workbench must show exactly what the ordering system will receive (the final
quantities, the state, who did what), so it reads the same rows ``planning.lifecycle`` writes, never a report file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, func, select

from forecasting.source.schema import SourceSchema
from planning import lifecycle
from planning.writeback import ensure_table


@dataclass
class StoreDay:
    """One store's proposal for one order date, with the final and the engine's numbers per line."""

    store_id: int
    store_name: str
    order_date: date
    state: dict
    lines: pd.DataFrame = field(repr=False)  # one row per material, detail fields unpacked
    exceptions: list[dict]

    @property
    def status(self) -> str:
        return str(self.state.get("status", "draft"))

    @property
    def ordering(self) -> pd.DataFrame:
        return self.lines[self.lines["final_packs"] > 0]

    @property
    def packs(self) -> int:
        return int(self.ordering["final_packs"].sum())

    @property
    def value(self) -> float:
        return float(self.ordering["final_value"].sum())


def proposal_dates(engine: Engine, schema: SourceSchema) -> list[date]:
    ensure_table(engine, schema)
    p = schema["proposals"]
    with engine.connect() as conn:
        return sorted(lifecycle._d(r[0]) for r in conn.execute(select(p.c.proposal_date).distinct()))


def _finals(engine: Engine, schema: SourceSchema, d: date) -> dict[tuple[int, int], int]:
    p = schema["proposals"]
    with engine.connect() as conn:
        rows = conn.execute(select(p.c.store_id, p.c.material_id, p.c.packs, p.c.planner_qty)
                            .where(p.c.proposal_date == d)).all()
    return {(int(r.store_id), int(r.material_id)): lifecycle.final_packs(r.packs, r.planner_qty) for r in rows}


def store_days(engine: Engine, schema: SourceSchema, d: date, store: int | None = None) -> list[StoreDay]:
    """Every planned store (or one) on ``d``: lines with final/engine packs, previous day and last week beside."""
    ensure_table(engine, schema)
    p, s, m = schema["proposals"], schema["stores"], schema["materials"]
    stmt = select(p).where(p.c.proposal_date == d)
    if store is not None:
        stmt = stmt.where(p.c.store_id == store)
    with engine.connect() as conn:
        rows = conn.execute(stmt.order_by(p.c.store_id, p.c.material_id)).all()
        names = {int(a): b for a, b in conn.execute(select(s.c.store_id, s.c.store_name))}
        cost = {int(a): float(b or 0.0) for a, b in conn.execute(select(m.c.material_id, m.c.unit_cost))}
    if not rows:
        return []
    states = lifecycle.states(engine, schema, d)
    prev, week = _finals(engine, schema, d - timedelta(days=1)), _finals(engine, schema, d - timedelta(days=7))
    recs = []
    exc: dict[int, list[dict]] = {}
    for r in rows:
        detail = json.loads(r.explanation or "{}")
        sid, mid = int(r.store_id), int(r.material_id)
        final = lifecycle.final_packs(r.packs, r.planner_qty)
        for e in detail.get("exceptions", []):
            exc.setdefault(sid, []).append({**e, "final_packs": final, "engine_packs": int(r.packs or 0),
                                            "material_name": detail.get("material_name"), "detail": detail})
        if r.replan_packs is not None:
            exc.setdefault(sid, []).append({
                "store_id": sid, "material_id": mid, "kind": "replan",
                "title": "Re-plan differs from the approved line",
                "message": f"{detail.get('material_name') or mid}: the newest plan asks for {int(r.replan_packs)} "
                           f"packs; the {r.status} line keeps {final}.",
                "final_packs": final, "engine_packs": int(r.replan_packs), "material_name": detail.get("material_name"),
                "detail": detail})
        recs.append({**detail, "store_id": sid, "material_id": mid, "engine_packs": int(r.packs or 0),
                     "planner_packs": None if r.planner_qty is None else int(r.planner_qty),
                     "override_reason": r.override_reason, "overridden_by": r.overridden_by,
                     "overridden_at": r.overridden_at, "final_packs": final, "status": r.status,
                     "replan_packs": None if r.replan_packs is None else int(r.replan_packs),
                     "final_value": final * float(r.pack_size) * cost.get(mid, 0.0),
                     "pack_size": float(r.pack_size), "delivery_date": lifecycle._d(r.delivery_date),
                     "prev_packs": prev.get((sid, mid)), "week_packs": week.get((sid, mid))})
    df = pd.DataFrame(recs)
    out = []
    for sid, g in df.groupby("store_id", sort=True):
        st = states.get(int(sid), {"status": "draft"})
        out.append(StoreDay(int(sid), str(names.get(int(sid), f"Store {sid}")), d, st, g.reset_index(drop=True),
                            exc.get(int(sid), [])))
    return out


def chain_totals(days: list[StoreDay]) -> dict:
    by_status: dict[str, int] = {}
    for sd in days:
        by_status[sd.status] = by_status.get(sd.status, 0) + 1
    return {"stores": len(days), "packs": sum(sd.packs for sd in days), "value": sum(sd.value for sd in days),
            "exceptions": sum(len(sd.exceptions) for sd in days), "by_status": by_status}


def daily_use(features_dir: str | Path | None, store: int, material_ids: list[int], d: date,
              days: int) -> pd.DataFrame:
    """Recent daily use of some materials in one store (the feature store's ``material_daily``), or empty."""
    from planning.report import load_actuals

    a = load_actuals(features_dir, d, days)
    if a is None or a.empty:
        return pd.DataFrame(columns=["material_id", "date", "qty"])
    return a[(a["store_id"] == store) & (a["material_id"].isin(material_ids))]


def count_age_days(engine: Engine, schema: SourceSchema, store: int, d: date) -> int | None:
    """Days between the newest count of the store before ``d`` and the evening before ``d`` (0 = fresh)."""
    inv = schema["inventory_snapshots"]
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(inv.c.snapshot_date)).where(inv.c.store_id == store,
                                                                         inv.c.snapshot_date < d)).scalar()
    if newest is None:
        return None
    return (d - timedelta(days=1) - lifecycle._d(newest)).days
