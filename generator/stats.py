"""Calibration figures of a source database, compared with the business report (``calibration`` in the catalog).

Why from the database (not from the generator's memory): ``replenish stats`` must check what later stages will
actually read, on SQLite or MySQL alike. Figures use completed USD orders through the history end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pandas as pd
from sqlalchemy import Engine, distinct, func, select

from forecasting.errors import DataError
from forecasting.source.schema import SourceSchema

STAT_KEYS = [
    "stores_open", "completed_orders", "revenue_usd", "aov_usd", "weekday_orders_per_day", "weekend_orders_per_day",
    "products_sold", "top_product_name", "top_product_orders", "avg_production_seconds", "share_ios",
    "share_android", "share_delivery", "registered_users", "incumbent_forecast_records",
]


def _history_end(conn, schema: SourceSchema) -> dt.date:
    meta = schema["meta"]
    row = conn.execute(select(meta.c.value).where(meta.c.key == "history_end")).first()
    if row is not None:
        return dt.date.fromisoformat(row[0])
    o = schema["orders"]
    last = conn.execute(select(func.max(o.c.created_at))).scalar()
    if last is None:
        raise DataError("the source holds no orders: run `replenish seed` first")
    return pd.Timestamp(last).date()


def compute_stats(engine: Engine, schema: SourceSchema, timezone: str = "America/New_York") -> dict[str, Any]:
    """The calibration figures (keys ``STAT_KEYS``) of the history in the database."""
    o, oi, p = schema["orders"], schema["order_items"], schema["products"]
    st, u, fc = schema["stores"], schema["users"], schema["replenishment_forecasts"]
    with engine.connect() as conn:
        end = _history_end(conn, schema)
        cutoff = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(8, 0))  # end of the local day, in UTC
        done = (o.c.status == "completed") & (o.c.currency == "USD") & (o.c.created_at < cutoff)
        n, revenue, prod_s = conn.execute(
            select(func.count(), func.sum(o.c.pay_amount), func.avg(o.c.production_seconds)).where(done)
        ).one()
        if not n:
            raise DataError("the source holds no completed orders: run `replenish seed` first")
        channels = dict(conn.execute(select(o.c.channel, func.count()).where(done).group_by(o.c.channel)).all())
        joined = oi.join(o, oi.c.order_id == o.c.order_id)
        products_sold = conn.execute(select(func.count(distinct(oi.c.product_id))).select_from(joined)
                                     .where(done)).scalar()
        top = conn.execute(
            select(oi.c.product_id, func.count(distinct(oi.c.order_id)).label("n")).select_from(joined).where(done)
            .group_by(oi.c.product_id).order_by(func.count(distinct(oi.c.order_id)).desc()).limit(1)
        ).first()
        top_name = conn.execute(select(p.c.product_name).where(p.c.product_id == top[0])).scalar() if top else None
        stores = conn.execute(select(st.c.open_date, st.c.close_date)).all()
        users = conn.execute(select(func.count()).select_from(u)).scalar()
        fc_n = conn.execute(select(func.count()).select_from(fc)).scalar()

        last_sunday = end - dt.timedelta(days=(end.weekday() + 1) % 7)
        w0 = last_sunday - dt.timedelta(days=27)
        lo = dt.datetime.combine(w0, dt.time(0))
        ts = pd.read_sql(select(o.c.created_at).where(done & (o.c.created_at >= lo)), conn)["created_at"]
    local = pd.to_datetime(ts).dt.tz_localize("UTC").dt.tz_convert(timezone).dt.date
    per_day = local.value_counts()
    days = [w0 + dt.timedelta(days=i) for i in range(28)]
    wk = [float(per_day.get(d, 0)) for d in days if d.weekday() < 5]
    we = [float(per_day.get(d, 0)) for d in days if d.weekday() >= 5]

    def _d(x: Any) -> dt.date | None:
        return None if x is None else (x if isinstance(x, dt.date) else dt.date.fromisoformat(str(x)[:10]))

    open_now = sum(1 for a, b in stores if _d(a) <= end and (b is None or _d(b) > end))
    total = float(n)
    return {
        "stores_open": open_now,
        "completed_orders": int(n),
        "revenue_usd": round(float(revenue or 0), 2),
        "aov_usd": round(float(revenue or 0) / total, 3),
        "weekday_orders_per_day": round(sum(wk) / max(1, len(wk)), 1),
        "weekend_orders_per_day": round(sum(we) / max(1, len(we)), 1),
        "products_sold": int(products_sold),
        "top_product_name": top_name,
        "top_product_orders": int(top[1]) if top else 0,
        "avg_production_seconds": round(float(prod_s or 0), 1),
        "share_ios": round(channels.get("ios", 0) / total, 4),
        "share_android": round(channels.get("android", 0) / total, 4),
        "share_delivery": round(channels.get("delivery", 0) / total, 4),
        "registered_users": int(users),
        "incumbent_forecast_records": int(fc_n),
    }


def within(value: Any, spec: dict[str, Any]) -> bool:
    """Whether a generated figure is within the report's tolerance (exact / tol / rel / range / min)."""
    rep = spec.get("report")
    if value is None:
        return False
    if "range" in spec:
        lo, hi = spec["range"]
        return lo <= value <= hi
    if "min" in spec:
        return value >= spec["min"]
    if "tol" in spec:
        return abs(value - rep) <= spec["tol"]
    if "rel" in spec:
        return abs(value - rep) <= spec["rel"] * abs(rep)
    return value == rep


def compare(stats: dict[str, Any], calibration: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """``{key: {"report", "generated", "ok"}}`` for every calibration key."""
    out = {}
    for key in STAT_KEYS:
        spec = calibration.get(key, {})
        out[key] = {"report": spec.get("report"), "generated": stats.get(key), "ok": within(stats.get(key), spec)}
    return out


def content_hash(engine: Engine, schema: SourceSchema) -> str:
    """A hash of every history table's rows in primary-key order: equal iff two databases hold the same data."""
    h = hashlib.sha256()
    with engine.connect() as conn:
        for logical in sorted(schema.tables):
            t = schema[logical]
            cols = list(t.primary_key.columns) or list(t.columns)
            extra = [c for c in t.columns if c not in cols]
            h.update(logical.encode())
            for row in conn.execute(select(t).order_by(*cols, *extra)):
                h.update(repr(tuple(row)).encode())
    return h.hexdigest()
