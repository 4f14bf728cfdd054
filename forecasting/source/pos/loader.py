"""Import a point-of-sale log into the source database in one transaction.

Why one transaction and a refusal by default: a half-imported sales history would silently bias every forecast,
so either the whole file lands (replacing an existing history only when asked) or nothing does. ``dry_run`` runs
every step but the write, so a new mapping can be tried against a database without touching it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Connection, Date, DateTime, Dialect, Engine, Table, func, select

from forecasting.errors import DataError
from forecasting.source.db import existing_tables, init_db, safe_url
from forecasting.source.pos.keys import KEY_TABLE, KeyMap, key_table
from forecasting.source.pos.mapping import PosMapping, load_mapping
from forecasting.source.pos.reader import read_log, validate
from forecasting.source.pos.tables import build_tables
from forecasting.source.schema import HISTORY_TABLES, PLAN_TABLES, SourceSchema

CHUNK_ROWS = 20_000
INSERT_ORDER = ["suppliers", "materials", "stores", "products", "bom", "orders", "order_items", "meta", KEY_TABLE]
TOP_PRODUCTS = 5
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
    lines_in: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    top_products: list[dict[str, Any]] = field(default_factory=list)
    store_names: list[str] = field(default_factory=list)
    holidays: str | None = None
    dry_run: bool = False
    existing_history: dict[str, int] = field(default_factory=dict)
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


def _held(conn: Connection, schema: SourceSchema) -> dict[str, int]:
    return {name: n for name in GUARDED if (n := _count(conn, schema[name]))}


def _refuse_history(engine: Engine, held: dict[str, int]) -> DataError:
    what = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in held.items())
    return DataError(f"{safe_url(engine.url)} already holds a history ({what}); use --replace to replace it")


def existing_history(engine: Engine, schema: SourceSchema) -> dict[str, int]:
    """Rows per guarded table already in the source (read only; empty when the tables do not exist yet)."""
    present = set(existing_tables(engine, schema))
    if not set(GUARDED) <= present:
        return {}
    with engine.connect() as conn:
        return _held(conn, schema)


def write_tables(engine: Engine, schema: SourceSchema, tables: dict[str, pd.DataFrame], replace: bool) -> None:
    """Insert all rows in one transaction; refuse an existing history unless ``replace`` (then clear it first).

    The key map (``source_keys``) is not history: a replace keeps it, so re-imported keys keep their ids; the
    planners' tables (``PLAN_TABLES``) are cleared with the history they were planned on, as ``seed --replace`` does."""
    key_table(schema)
    held = existing_history(engine, schema)
    if held and not replace:  # before init_db, which would add the key table to an old source
        raise _refuse_history(engine, held)
    init_db(engine, schema)
    with engine.begin() as conn:
        held = _held(conn, schema)
        if held and not replace:
            raise _refuse_history(engine, held)
        if replace:  # the old history's proposals and planners' decisions go with it (its stores, dates)
            for logical in (*PLAN_TABLES, *HISTORY_TABLES):
                conn.execute(schema[logical].delete())
        for logical in INSERT_ORDER:
            df = tables.get(logical)
            if df is None or df.empty:
                continue
            _insert(conn, schema[logical], df)


def _top_products(tables: dict[str, pd.DataFrame], n: int) -> list[dict[str, Any]]:
    """The best sellers by units, with their revenue: what a planner checks first in a dry run."""
    items = tables["order_items"]
    by = items.assign(revenue=items["quantity"] * items["unit_price"]).groupby("product_id")[["quantity", "revenue"]]
    top = by.sum().sort_values(["quantity", "revenue"], ascending=False).head(n)
    names = tables["products"].set_index("product_id")["product_name"]
    return [{"product_id": int(pid), "name": str(names.get(pid, pid)), "units": int(r.quantity),
             "revenue": round(float(r.revenue), 2)} for pid, r in top.iterrows()]


def import_pos(
    path: str | Path,
    mapping: PosMapping | str | Path,
    engine: Engine | None,
    schema: SourceSchema,
    replace: bool = False,
    max_reject_share: float | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Read, validate, derive and load one POS file; DataError (nothing loaded) when the file or target is unfit.

    ``dry_run``: everything but the write (the database is only read, and may be None: not created yet).
    """
    m = mapping if isinstance(mapping, PosMapping) else load_mapping(mapping)
    t0 = time.perf_counter()
    raw = read_log(path, m)
    t1 = time.perf_counter()
    log = validate(raw, m, max_reject_share)
    t2 = time.perf_counter()
    tables = build_tables(log, m, Path(path).name, KeyMap(engine, schema))
    t3 = time.perf_counter()
    held: dict[str, int] = {}
    if dry_run:
        held = existing_history(engine, schema) if engine is not None else {}
    else:
        if engine is None:
            raise DataError("no database to import into")
        write_tables(engine, schema, tables, replace)
    t4 = time.perf_counter()

    items, orders = tables["order_items"], tables["orders"]
    unknown = sorted(set(m.retire_dates) - set(log.lines["product"].unique()))
    warnings = [f"retire_dates names products not in the file: {', '.join(unknown[:10])}"] if unknown else []
    if m.holidays is None:
        warnings.append("the mapping names no holiday calendar: the feature build uses the configured one "
                        "(US / NY by default); add holidays: {country: XX} for another country")
    if held and not replace:
        warnings.append(f"{_refuse_history(engine, held)} (the import would stop here)")
    period = (log.lines["local_ts"].min().date().isoformat(), log.lines["local_ts"].max().date().isoformat())
    return ImportReport(
        file=str(path), mapping=m.name, database=safe_url(engine.url) if engine is not None else "(none yet)",
        rows_read=log.rows_read, rows_loaded=len(log.lines), rows_rejected=log.rows_rejected,
        blank_lines=log.blank_lines, rejected=log.rejected, first_rejected=log.first_rejected,
        stores=len(tables["stores"]), products=len(tables["products"]), orders=len(orders), items=len(items),
        units=int(items["quantity"].sum()), revenue=round(float(log.lines["amount"].sum()), 2), period=period,
        materials=m.materials.mode, replaced=replace and not dry_run, warnings=warnings, lines_in=log.lines_in,
        filtered=log.filtered, top_products=_top_products(tables, TOP_PRODUCTS),
        store_names=tables["stores"]["store_name"].astype(str).tolist(),
        holidays=None if m.holidays is None else " / ".join(filter(None, [m.holidays.country, m.holidays.subdivision])),
        dry_run=dry_run, existing_history=held,
        seconds={"read": round(t1 - t0, 3), "validate": round(t2 - t1, 3), "derive": round(t3 - t2, 3),
                 "write": round(t4 - t3, 3), "total": round(t4 - t0, 3)},
    )
