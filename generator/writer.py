"""Bulk writes of a whole history in ONE transaction (SQLite or MariaDB).

Why the DBAPI cursor: SQLAlchemy Core inserts of dicts cost several seconds per million rows; ``executemany`` of
tuples is several times faster (pymysql rewrites it into multi-row INSERTs). One transaction means an interrupted
seed leaves the previous history untouched, and ``--replace`` deletes the old rows (the planners' proposals and their
lifecycle included) inside that same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
from sqlalchemy import Boolean, Date, DateTime, Engine, Float, Integer, Numeric, Table, select, text
from sqlalchemy.engine import Connection

from forecasting.errors import DataError
from forecasting.source.db import table_columns
from forecasting.source.schema import HISTORY_TABLES, PLAN_TABLES, SourceSchema

CHUNK = 50_000
WRITE_ORDER = [
    "meta", "stores", "suppliers", "materials", "products", "bom", "weather_events", "weather_daily",
    "coupon_templates", "users", "orders", "order_items", "coupon_redemptions", "demand_truth", "demand_truth_hourly",
    "inventory_snapshots", "replenishment_orders", "replenishment_forecasts",
]
Progress = Callable[[str, int, int], None]


def _qualified(conn: Connection, table: Table) -> str:
    q = conn.dialect.identifier_preparer.quote
    if conn.dialect.name != "sqlite" and table.schema:
        return f"{q(table.schema)}.{q(table.name)}"
    return q(table.name)


def _dates(values: np.ndarray) -> list:
    if values.dtype.kind == "M":
        out = np.datetime_as_string(values.astype("datetime64[D]"), unit="D").astype(object)
        out[np.isnat(values)] = None
        return out.tolist()
    return [v.isoformat() if isinstance(v, dt.date) else v for v in values.tolist()]


def _datetimes(values: np.ndarray, sqlite: bool) -> list:
    s = np.char.replace(np.datetime_as_string(values.astype("datetime64[s]"), unit="s"), "T", " ")
    if sqlite:
        s = np.char.add(s, ".000000")
    out = s.astype(object)
    out[np.isnat(values)] = None
    return out.tolist()


def _column(values: np.ndarray, coltype, sqlite: bool) -> list:
    """One column as Python values the DBAPI accepts (no numpy scalars; NaN/NaT -> NULL)."""
    if isinstance(coltype, DateTime):
        return _datetimes(values, sqlite)
    if isinstance(coltype, Date):
        return _dates(values)
    if values.dtype == object:
        return [None if v is None else (int(v) if isinstance(v, (bool, np.bool_)) else v) for v in values.tolist()]
    if isinstance(coltype, Boolean):
        return values.astype(int).tolist()
    if values.dtype.kind == "f":
        if isinstance(coltype, Integer):
            out = np.where(np.isnan(values), 0, values).astype(np.int64).astype(object)
            out[np.isnan(values)] = None
            return out.tolist()
        if np.isnan(values).any():
            out = values.astype(object)
            out[np.isnan(values)] = None
            return out.tolist()
        return values.tolist()
    if isinstance(coltype, (Float, Numeric)):
        return values.astype(float).tolist()
    return values.tolist()


def history_present(conn: Connection, schema: SourceSchema) -> bool:
    for logical in ("meta", "stores", "orders"):
        if conn.execute(select(1).select_from(schema[logical]).limit(1)).first() is not None:
            return True
    return False


def _refusal(engine: Engine) -> DataError:
    url = engine.url.render_as_string(hide_password=True)
    return DataError(f"{url} already holds a generated history; pass --replace to overwrite it")


def add_missing_columns(engine: Engine, schema: SourceSchema, logical: str) -> list[str]:
    """Add the schema's nullable columns a table lacks (a source created by an older version); returns them.

    Why before the write transaction: DDL commits implicitly on MySQL, so it must not sit inside the one transaction
    that writes the history.
    """
    have = table_columns(engine, schema, logical)
    table = schema[logical]
    missing = [c for c in table.columns if have and c.name not in have and c.nullable]
    if missing:
        with engine.begin() as conn:
            for c in missing:
                ddl = c.type.compile(dialect=conn.dialect)
                q = conn.dialect.identifier_preparer.quote
                conn.execute(text(f"ALTER TABLE {_qualified(conn, table)} ADD COLUMN {q(c.name)} {ddl}"))
    return [c.name for c in missing]


def refuse_existing(engine: Engine, schema: SourceSchema) -> None:
    """Raise DataError (naming --replace) when the database already holds a history."""
    with engine.connect() as conn:
        if history_present(conn, schema):
            raise _refusal(engine)


def write_history(
    engine: Engine,
    schema: SourceSchema,
    tables: dict[str, dict[str, np.ndarray]],
    replace: bool = False,
    progress: Progress | None = None,
    hook: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write every table in one transaction; refuse (DataError) when a history exists and ``replace`` is false.

    ``hook(logical_name)`` runs after each table is written (tests use it to interrupt a seed midway).
    """
    counts: dict[str, int] = {}
    total = sum(len(next(iter(cols.values()))) for cols in tables.values() if cols)
    done = 0
    with engine.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if history_present(conn, schema):
            if not replace:
                raise _refusal(engine)
            for logical in (*PLAN_TABLES, *HISTORY_TABLES):  # the old history's proposals go with it
                conn.execute(schema[logical].delete())
        cur = conn.connection.dbapi_connection.cursor()
        mark = "?" if sqlite else "%s"
        try:
            for logical in WRITE_ORDER:
                cols = tables.get(logical)
                table = schema[logical]
                if not cols:
                    counts[logical] = 0
                    continue
                names = list(cols)
                quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in names)
                sql = f"INSERT INTO {_qualified(conn, table)} ({quoted}) VALUES ({', '.join([mark] * len(names))})"
                n = len(cols[names[0]])
                for lo in range(0, n, CHUNK):
                    hi = min(n, lo + CHUNK)
                    data = [_column(np.asarray(cols[c][lo:hi]), table.c[c].type, sqlite) for c in names]
                    cur.executemany(sql, list(zip(*data, strict=True)))
                    done += hi - lo
                    if progress is not None:
                        progress(logical, done, total)
                counts[logical] = n
                if hook is not None:
                    hook(logical)
        finally:
            cur.close()
    return counts
