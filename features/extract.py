"""SQL side of the feature job: dimension reads and aggregated, windowed extracts (SQLAlchemy Core).

Why aggregate in the database: the order lines are the big table (~1M rows); grouped by store x product x UTC
hour they shrink tenfold, and only that crosses the wire. UTC->local conversion happens afterwards in pandas
(``panels.py``) because doing it portably in SQL is not possible; the only dialect-specific SQL lives in
``utc_hour_expr`` and ``date_diff_days``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql import ColumnElement, Select

from forecasting.errors import DataError
from forecasting.source.db import existing_tables
from forecasting.source.schema import TRUTH_TABLES, SourceSchema

REQUIRED = ("stores", "products", "orders", "order_items")

# Order lines carried in quarantine files (the bad rows, one per line).
LINE_COLUMNS = ["order_id", "line_no", "store_id", "product_id", "created_at", "quantity", "status"]


@dataclass
class Source:
    """The engine, the schema and which logical tables exist (the ireplenishment side may be absent)."""

    engine: Engine
    schema: SourceSchema
    present: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, engine: Engine, schema: SourceSchema) -> Source:
        present = set(existing_tables(engine, schema)) - set(TRUTH_TABLES)  # never read the latent truth
        missing = [schema[t].name for t in REQUIRED if t not in present]
        if missing:
            raise DataError(f"source has no {', '.join(missing)} table(s): run `replenish db init` and load orders")
        return cls(engine, schema, present)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def has(self, logical: str) -> bool:
        return logical in self.present

    def t(self, logical: str):
        if logical in TRUTH_TABLES:
            raise DataError(f"features must never read the ground truth table {logical}")
        return self.schema[logical]


# --- the dialect differences, in one place -------------------------------------------------------------------

def utc_hour_expr(col: ColumnElement, dialect: str) -> ColumnElement:
    """Whole hours since 1970-01-01 of a naive-UTC DATETIME, as an integer (a cheap GROUP BY key)."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", col), Integer) // 3600  # renders as integer division on SQLite
    return func.timestampdiff(literal_column("HOUR"), literal_column("'1970-01-01 00:00:00'"), col)


def date_diff_days(later: ColumnElement, earlier: ColumnElement, dialect: str) -> ColumnElement:
    """Whole days from ``earlier`` to ``later`` (DATE columns)."""
    if dialect == "sqlite":
        return func.julianday(later) - func.julianday(earlier)  # whole-valued REAL for DATEs; no CAST (2x faster)
    return func.datediff(later, earlier)


# --- helpers -------------------------------------------------------------------------------------------------

def frame(conn: Connection, stmt: Select, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Run a statement into a DataFrame (column names from the statement).

    Rows come straight from the DBAPI cursor: SQLAlchemy's per-value result processing costs more than the query
    on aggregates of a million rows, and callers convert whole columns (dates, decimals) with pandas instead.
    """
    result = conn.execute(stmt)
    try:
        names = list(columns or result.keys())
        rows = result.cursor.fetchall() if result.cursor is not None else []
    finally:
        result.close()
    return pd.DataFrame(rows, columns=names)


def _dates(s: pd.Series) -> pd.Series:
    if s.dtype == object and len(s) and isinstance(s.iloc[0], str):
        return pd.to_datetime(s, format="%Y-%m-%d").astype("datetime64[ns]")
    return pd.to_datetime(s).astype("datetime64[ns]")


def raw_date(col: ColumnElement, dialect: str, label: str = "date") -> ColumnElement:
    """A DATE column fetched without per-value Python conversion on SQLite (its raw 'YYYY-MM-DD' text)."""
    return (type_coerce(col, String) if dialect == "sqlite" else col).label(label)


# --- dimensions ----------------------------------------------------------------------------------------------

def read_stores(conn: Connection, src: Source, default_tz: str = "America/New_York") -> pd.DataFrame:
    """Stores with their opening dates, hours and time zone (``default_tz`` where the source has none)."""
    t = src.t("stores")
    df = frame(conn, select(t.c.store_id, t.c.open_date, t.c.close_date, t.c.timezone, t.c.open_hour,
                            t.c.close_hour).order_by(t.c.store_id))
    df["store_id"] = df["store_id"].astype("int32")
    for c in ("open_date", "close_date"):
        df[c] = _dates(df[c])
    df["timezone"] = df["timezone"].fillna(default_tz).astype(str)
    df[["open_hour", "close_hour"]] = df[["open_hour", "close_hour"]].astype("int16")
    return df


def read_products(conn: Connection, src: Source) -> pd.DataFrame:
    t = src.t("products")
    df = frame(conn, select(t.c.product_id, t.c.category, t.c.launch_date, t.c.retire_date).order_by(t.c.product_id))
    df["product_id"] = df["product_id"].astype("int32")
    for c in ("launch_date", "retire_date"):
        df[c] = _dates(df[c])
    return df


def read_bom(conn: Connection, src: Source, products: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """(product_id, material_id, qty_per_unit) and whether it is real; without a BOM, material = product, 1:1."""
    if src.has("bom"):
        t = src.t("bom")
        bom = frame(conn, select(t.c.product_id, t.c.material_id, t.c.qty_per_unit))
        if len(bom):
            bom = bom.astype({"product_id": "int32", "material_id": "int32", "qty_per_unit": "float64"})
            return bom, True
    ident = pd.DataFrame({"product_id": products["product_id"].astype("int32"),
                          "material_id": products["product_id"].astype("int32"), "qty_per_unit": 1.0})
    return ident, False


def read_campaigns(conn: Connection, src: Source) -> pd.DataFrame:
    """Campaign coupon templates (product_id or category, discount, validity); empty when the table is absent."""
    cols = ["product_id", "category", "discount_pct", "valid_from", "valid_to"]
    if not src.has("coupon_templates"):
        return pd.DataFrame(columns=cols)
    t = src.t("coupon_templates")
    df = frame(conn, select(*(t.c[c] for c in cols)).where(t.c.is_campaign.is_(True)))
    for c in ("valid_from", "valid_to"):
        df[c] = _dates(df[c])
    return df


def read_weather(conn: Connection, src: Source) -> pd.DataFrame:
    """Weather shock days (event_date, kind); the demand factor is deliberately not read (not observable)."""
    if not src.has("weather_events"):
        return pd.DataFrame(columns=["date", "weather_kind"])
    t = src.t("weather_events")
    df = frame(conn, select(t.c.event_date.label("date"), t.c.kind.label("weather_kind")))
    df["date"] = _dates(df["date"])
    return df


def read_weather_daily(conn: Connection, src: Source) -> pd.DataFrame:
    """The daily temperature *forecast* (date, temp_forecast_c): known in advance, what the hour-level model may use
    (the actual ``temp_c`` is deliberately not read); empty when the table is absent (the default history, a POS
    log)."""
    if not src.has("weather_daily"):
        return pd.DataFrame(columns=["date", "temp_forecast_c"])
    t = src.t("weather_daily")
    df = frame(conn, select(t.c.weather_date.label("date"), t.c.temp_forecast_c))
    df["date"] = _dates(df["date"])
    return df


def completed_bounds(conn: Connection, src: Source, statuses: list[str], now: datetime
                     ) -> tuple[datetime | None, datetime | None]:
    """First and last created_at of completed orders up to ``now`` (None, None when there are none)."""
    o = src.t("orders")
    row = conn.execute(select(func.min(o.c.created_at), func.max(o.c.created_at))
                       .where(o.c.status.in_(statuses), o.c.created_at <= now)).one()
    return row[0], row[1]


# --- order extracts (one UTC window, one store group) --------------------------------------------------------

def _lines_join(src: Source):
    o, i = src.t("orders"), src.t("order_items")
    return o, i, o.join(i, i.c.order_id == o.c.order_id)


def _window(o, statuses: list[str], lo: datetime, hi: datetime, store_ids: Iterable[int] | None):
    conds = [o.c.status.in_(statuses), o.c.created_at >= lo, o.c.created_at < hi]
    if store_ids is not None:
        conds.append(o.c.store_id.in_([int(s) for s in store_ids]))
    return conds


def hourly_sales(conn: Connection, src: Source, statuses: list[str], lo: datetime, hi: datetime,
                 store_ids: Iterable[int], product_ids: Iterable[int], exclude_orders: Sequence[int] = ()
                 ) -> pd.DataFrame:
    """Completed units per store x product x UTC hour (int hours since epoch), with the line count and ``bad``.

    ``bad`` marks buckets of lines with a non-positive quantity or an unknown product: one scan both aggregates
    the good lines and tells whether the (rare) detail query for quarantine is needed.
    """
    o, i, j = _lines_join(src)
    hour = utc_hour_expr(o.c.created_at, src.dialect).label("utc_hour")
    bad = case((or_(func.coalesce(i.c.quantity, 0) <= 0,
                    func.coalesce(i.c.product_id, -1).not_in([int(p) for p in product_ids])), 1), else_=0).label("bad")
    conds = _window(o, statuses, lo, hi, store_ids)
    if len(exclude_orders):
        conds.append(o.c.order_id.not_in([int(x) for x in exclude_orders]))
    stmt = (select(o.c.store_id, i.c.product_id, hour, bad, func.sum(i.c.quantity).label("qty"),
                   func.count().label("lines"))
            .select_from(j).where(*conds).group_by(o.c.store_id, i.c.product_id, hour, bad))
    df = frame(conn, stmt, ["store_id", "product_id", "utc_hour", "bad", "qty", "lines"])
    df["product_id"] = df["product_id"].fillna(-1)
    df["qty"] = df["qty"].fillna(0)
    return df.astype({"store_id": "int32", "product_id": "int32", "utc_hour": "int64", "bad": "bool",
                      "qty": "int64", "lines": "int64"})


def _line_select(src: Source):
    o, i, j = _lines_join(src)
    return o, i, select(o.c.order_id, i.c.line_no, o.c.store_id, i.c.product_id, o.c.created_at, i.c.quantity,
                        o.c.status).select_from(j)


def invalid_lines(conn: Connection, src: Source, statuses: list[str], lo: datetime, hi: datetime,
                  store_ids: Iterable[int], product_ids: Iterable[int], exclude_orders: Sequence[int] = ()
                  ) -> pd.DataFrame:
    """Completed lines in the window with a non-positive quantity or an unknown product id."""
    o, i, stmt = _line_select(src)
    conds = _window(o, statuses, lo, hi, store_ids) + [or_(
        func.coalesce(i.c.quantity, 0) <= 0,
        func.coalesce(i.c.product_id, -1).not_in([int(p) for p in product_ids]))]
    if len(exclude_orders):
        conds.append(o.c.order_id.not_in([int(x) for x in exclude_orders]))
    return frame(conn, stmt.where(*conds), LINE_COLUMNS)


def duplicate_keys(conn: Connection, src: Source) -> tuple[list[int], list[int]]:
    """Order ids seen twice in the orders table, and order ids with a repeated (order_id, line_no).

    Checked once per job over whole tables (two index-backed GROUP BYs, ~0.3 s for 500K orders): cheaper than a
    per-window check over the join, and a duplicate is a duplicate whatever its window.
    """
    o, i = src.t("orders"), src.t("order_items")
    dup_orders = conn.execute(select(o.c.order_id).group_by(o.c.order_id).having(func.count() > 1)).scalars().all()
    dup_lines = conn.execute(select(i.c.order_id).group_by(i.c.order_id, i.c.line_no)
                             .having(func.count() > 1)).scalars().all()
    dup_orders = sorted({int(x) for x in dup_orders})
    dup_lines = sorted({int(x) for x in dup_lines} - set(dup_orders))
    return dup_orders, dup_lines


def lines_of_orders(conn: Connection, src: Source, statuses: list[str], lo: datetime, hi: datetime,
                    order_ids: Sequence[int]) -> pd.DataFrame:
    """Every completed line (in the window) of the given orders, for quarantine files."""
    o, _, stmt = _line_select(src)
    out = [frame(conn, stmt.where(*_window(o, statuses, lo, hi, None),
                                  o.c.order_id.in_([int(x) for x in order_ids[k:k + 1000]])), LINE_COLUMNS)
           for k in range(0, len(order_ids), 1000)]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=LINE_COLUMNS)


def lines_in_hours(conn: Connection, src: Source, statuses: list[str], buckets: pd.DataFrame,
                   product_ids: Iterable[int], exclude_orders: Sequence[int] = ()) -> pd.DataFrame:
    """Valid completed lines in given (store_id, product_id, utc_hour) buckets: sales outside opening hours."""
    o, i, stmt = _line_select(src)
    out = []
    rows = buckets[["store_id", "product_id", "utc_hour"]].drop_duplicates().to_numpy()
    for k in range(0, len(rows), 200):
        ranges = [and_(o.c.store_id == int(s), i.c.product_id == int(p),
                       o.c.created_at >= _epoch_hour(int(h)), o.c.created_at < _epoch_hour(int(h) + 1))
                  for s, p, h in rows[k:k + 200]]
        conds = [o.c.status.in_(statuses), or_(*ranges), i.c.quantity > 0,
                 i.c.product_id.in_([int(p) for p in product_ids])]
        if len(exclude_orders):
            conds.append(o.c.order_id.not_in([int(x) for x in exclude_orders]))
        out.append(frame(conn, stmt.where(*conds), LINE_COLUMNS))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=LINE_COLUMNS)


def orphan_lines(conn: Connection, src: Source, statuses: list[str], lo: datetime, hi: datetime,
                 store_ids: Iterable[int]) -> pd.DataFrame:
    """Completed lines whose store id is not in the stores table."""
    o, _, stmt = _line_select(src)
    conds = _window(o, statuses, lo, hi, None) + [
        func.coalesce(o.c.store_id, -1).not_in([int(s) for s in store_ids])]
    return frame(conn, stmt.where(*conds), LINE_COLUMNS)


def future_lines(conn: Connection, src: Source, statuses: list[str], now: datetime) -> pd.DataFrame:
    """Completed lines stamped after the reference time (clock errors, bad imports)."""
    o, _, stmt = _line_select(src)
    return frame(conn, stmt.where(o.c.status.in_(statuses), o.c.created_at > now), LINE_COLUMNS)


def _epoch_hour(h: int) -> datetime:
    return datetime(1970, 1, 1) + pd.Timedelta(hours=h).to_pytimedelta()


# --- ireplenishment history ----------------------------------------------------------------------------------

def inventory_rows(conn: Connection, src: Source, d0: date, d1: date) -> pd.DataFrame:
    """Counted on-hand, waste and stockout hours per store x material x snapshot date in [d0, d1]."""
    t = src.t("inventory_snapshots")
    df = frame(conn, select(t.c.store_id, t.c.material_id, raw_date(t.c.snapshot_date, src.dialect),
                            t.c.on_hand_qty.label("on_hand"), t.c.waste_qty.label("waste"), t.c.stockout_hours)
               .where(t.c.snapshot_date >= d0, t.c.snapshot_date <= d1))
    df["date"] = _dates(df["date"])
    return df


def receipts(conn: Connection, src: Source, d0: date, d1: date) -> pd.DataFrame:
    """Received quantity per store x material x received_on in [d0, d1]."""
    t = src.t("replenishment_orders")
    stmt = (select(t.c.store_id, t.c.material_id, raw_date(t.c.received_on, src.dialect),
                   func.sum(t.c.received_qty).label("received"))
            .where(t.c.received_on >= d0, t.c.received_on <= d1, t.c.received_qty.is_not(None))
            .group_by(t.c.store_id, t.c.material_id, t.c.received_on))
    df = frame(conn, stmt)
    df["date"] = _dates(df["date"])
    return df


def orders_placed(conn: Connection, src: Source, d0: date, d1: date) -> pd.DataFrame:
    """Ordered quantity per store x material x ordered_on in [d0, d1]."""
    t = src.t("replenishment_orders")
    stmt = (select(t.c.store_id, t.c.material_id, raw_date(t.c.ordered_on, src.dialect),
                   func.sum(t.c.qty).label("ordered"))
            .where(t.c.ordered_on >= d0, t.c.ordered_on <= d1)
            .group_by(t.c.store_id, t.c.material_id, t.c.ordered_on))
    df = frame(conn, stmt)
    df["date"] = _dates(df["date"])
    return df


def incumbent_forecasts(conn: Connection, src: Source, d0: date, d1: date, horizons: list[int]) -> pd.DataFrame:
    """The incumbent's forecasts for target dates in [d0, d1] issued ``h`` days before, for each horizon h."""
    t = src.t("replenishment_forecasts")
    h = date_diff_days(t.c.target_date, t.c.issued_on, src.dialect).label("h")
    # one forecast per key and horizon: (issued_on, target_date) is part of the primary key
    stmt = (select(t.c.store_id, t.c.material_id, raw_date(t.c.target_date, src.dialect), h, t.c.predicted_qty)
            .where(t.c.target_date >= d0, t.c.target_date <= d1, h.in_([int(x) for x in horizons])))
    df = frame(conn, stmt)
    df["date"] = _dates(df["date"])
    return df
