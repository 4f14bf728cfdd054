"""Import a point-of-sale log into the source database in one transaction.

Why one transaction and a refusal by default: a half-imported sales history would silently bias every forecast,
so either the whole file lands (replacing an existing history only when asked) or nothing does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Connection, Date, DateTime, Dialect, Engine, Table, func, select

from forecasting.db import init_db, safe_url
from forecasting.errors import DataError
from forecasting.pos.mapping import PosMapping, load_mapping
from forecasting.pos.reader import read_log, validate
from forecasting.pos.tables import build_tables
from forecasting.schema import HISTORY_TABLES, SourceSchema

CHUNK_ROWS = 20_000
INSERT_ORDER = ["suppliers", "materials", "stores", "products", "bom", "orders", "order_items", "meta"]
GUARDED = ("orders", "order_items", "stores", "products")  # a non-empty one means: an existing history


@dataclass
class ImportReport:
    """What was read, loaded and rejected (with the first place per reason), and how long each step took."""

    file: str
    mapping: str
    database: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    blank_lines: int
    rejected: dict[str, int]
    first_rejected: dict[str, str]
    stores: int
    products: int
    orders: int
    items: int
    units: int
    revenue: float
    period: tuple[str, str]
    materials: str
    replaced: bool
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _driver_values(s: pd.Series, coltype: Any, dialect: Dialect) -> list[Any]:
    """Column values as the DB-API driver wants them, converted per column rather than per row.

    Why not Core's executemany: its per-row parameter processing is most of the load time. Dates on SQLite are
    formatted vectorised and checked against SQLAlchemy's own bind processor, so stored values read back the same.
    """
    proc = coltype._cached_bind_processor(dialect)  # noqa: SLF001 - the dialect's own conversion, used as the spec
    if isinstance(coltype, DateTime | Date):
        unit = "us" if isinstance(coltype, DateTime) else "D"
        arr = s.to_numpy(dtype=f"datetime64[{unit}]")
        py = arr.astype(object)
        if proc is None:
            return py.tolist()
        text = np.char.replace(np.datetime_as_string(arr, unit=unit), "T", " ").astype(object)
        text[np.isnat(arr)] = None
        firsts = [i for i in range(min(len(arr), 3)) if py[i] is not None]
        if all(proc(py[i]) == text[i] for i in firsts):
            return text.tolist()
        return [None if v is None else proc(v) for v in py]
    if s.dtype == object:
        vals = [None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v for v in s.tolist()]
    elif pd.api.types.is_bool_dtype(s):
        vals = s.astype(int).tolist()
    else:
        vals = s.astype(object).where(s.notna(), None).tolist()
    if proc is not None and not isinstance(coltype, Boolean):
        vals = [None if v is None else proc(v) for v in vals]
    return vals


def _insert(conn: Connection, table: Table, df: pd.DataFrame) -> None:
    """Bulk insert through the driver's executemany, in chunks, inside the caller's transaction."""
    dialect = conn.dialect
    translate = conn.get_execution_options().get("schema_translate_map")
    compiled = table.insert().compile(
        dialect=dialect, column_keys=list(df.columns), schema_translate_map=translate,
        render_schema_translate=bool(translate),
    )
    order = list(compiled.positiontup or []) if compiled.positional else list(df.columns)
    if set(order) != set(df.columns):
        raise RuntimeError(f"insert into {table.name}: parameters {order} do not match columns {list(df.columns)}")
    for start in range(0, len(df), CHUNK_ROWS):
        part = df.iloc[start:start + CHUNK_ROWS]
        cols = [_driver_values(part[c], table.c[c].type, dialect) for c in order]
        rows: list[Any] = list(zip(*cols, strict=True))
        if not compiled.positional:
            rows = [dict(zip(order, r, strict=True)) for r in rows]
        conn.exec_driver_sql(compiled.string, rows)


def _count(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def write_tables(engine: Engine, schema: SourceSchema, tables: dict[str, pd.DataFrame], replace: bool) -> None:
    """Insert all rows in one transaction; refuse an existing history unless ``replace`` (then clear it first)."""
    init_db(engine, schema)
    with engine.begin() as conn:
        held = {name: n for name in GUARDED if (n := _count(conn, schema[name]))}
        if held and not replace:
            what = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in held.items())
            raise DataError(f"{safe_url(engine.url)} already holds a history ({what}); use --replace to replace it")
        if replace:
            for logical in HISTORY_TABLES:
                conn.execute(schema[logical].delete())
        for logical in INSERT_ORDER:
            df = tables.get(logical)
            if df is None or df.empty:
                continue
            _insert(conn, schema[logical], df)


def import_pos(
    path: str | Path,
    mapping: PosMapping | str | Path,
    engine: Engine,
    schema: SourceSchema,
    replace: bool = False,
    max_reject_share: float | None = None,
) -> ImportReport:
    """Read, validate, derive and load one POS file; DataError (nothing loaded) when the file or target is unfit."""
    m = mapping if isinstance(mapping, PosMapping) else load_mapping(mapping)
    t0 = time.perf_counter()
    raw = read_log(path, m)
    t1 = time.perf_counter()
    log = validate(raw, m, max_reject_share)
    t2 = time.perf_counter()
    tables = build_tables(log, m, Path(path).name)
    t3 = time.perf_counter()
    write_tables(engine, schema, tables, replace)
    t4 = time.perf_counter()

    items, orders = tables["order_items"], tables["orders"]
    unknown = sorted(set(m.retire_dates) - set(log.lines["product"].unique()))
    warnings = [f"retire_dates names products not in the file: {', '.join(unknown[:10])}"] if unknown else []
    period = (log.lines["local_ts"].min().date().isoformat(), log.lines["local_ts"].max().date().isoformat())
    return ImportReport(
        file=str(path), mapping=m.name, database=safe_url(engine.url),
        rows_read=log.rows_read, rows_loaded=len(log.lines), rows_rejected=log.rows_rejected,
        blank_lines=log.blank_lines, rejected=log.rejected, first_rejected=log.first_rejected,
        stores=len(tables["stores"]), products=len(tables["products"]), orders=len(orders), items=len(items),
        units=int(items["quantity"].sum()), revenue=round(float(log.lines["amount"].sum()), 2), period=period,
        materials=m.materials.mode, replaced=replace, warnings=warnings,
        seconds={"read": round(t1 - t0, 3), "validate": round(t2 - t1, 3), "derive": round(t3 - t2, 3),
                 "write": round(t4 - t3, 3), "total": round(t4 - t0, 3)},
    )
