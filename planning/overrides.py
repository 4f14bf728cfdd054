"""Planner overrides: the planner's number (packs) and reason beside the engine's, never instead of it.

Append-only (``t_replenishment_override``, see ``planning.lifecycle``): a second override adds a row, the newest
not withdrawn one counts, and the line mirrors it for readers of one table.

Why both numbers: forecast value added (did the change help?) needs the engine's proposal and the planner's side by
side. An import is all or nothing: every row is checked first (readable values, a reason, an existing line), the
first problem is reported as one line, and nothing is written unless every row is good.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, select, tuple_

from forecasting.errors import DataError
from forecasting.source.schema import SourceSchema
from planning.lifecycle import record_overrides
from planning.writeback import ensure_table

REQUIRED = ("store_id", "material_id", "planner_qty", "override_reason")
DATE_COLS = ("order_date", "proposal_date")


@dataclass(frozen=True)
class Override:
    proposal_date: date
    store_id: int
    material_id: int
    planner_qty: int  # packs
    reason: str
    where: str = ""  # "file.csv line 4" for messages


def default_user() -> str:
    return os.environ.get("REPLENISH_USER") or os.environ.get("USER") or "planner"


def parse_packs(value: object, where: str) -> int:
    """A whole, non-negative number of packs ("3", "3.0"); anything else is a DataError naming the row."""
    try:
        x = float(str(value).strip())
    except ValueError:
        raise DataError(f"{where}: planner_qty {value!r} is not a number of packs") from None
    if not math.isfinite(x) or x < 0 or abs(x - round(x)) > 1e-9:
        raise DataError(f"{where}: planner_qty {value!r} must be a whole number of packs >= 0")
    return int(round(x))


def _int(value: object, col: str, where: str) -> int:
    try:
        x = float(str(value).strip())
        if x != int(x):
            raise ValueError
        return int(x)
    except ValueError:
        raise DataError(f"{where}: {col} {value!r} is not an id") from None


def _date(value: object, where: str) -> date:
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise DataError(f"{where}: date {value!r} is not YYYY-MM-DD") from None


def read_override_csv(path: str | Path) -> list[Override]:
    """Rows of an edited plan CSV whose ``planner_qty`` is filled in; the first bad row raises (with a count)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"override file not found: {p}")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            records = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{p}: not a readable CSV ({exc})") from None
    date_col = next((c for c in DATE_COLS if c in cols), None)
    missing = [c for c in REQUIRED if c not in cols] + ([] if date_col else ["order_date"])
    if missing:
        raise DataError(f"{p}: missing columns {missing} (export it with `replenish plan`, then edit planner_qty "
                        "and override_reason)")
    out: list[Override] = []
    errors: list[str] = []
    for i, row in enumerate(records, start=2):  # line 1 is the header
        where = f"{p.name} line {i}"
        raw = (row.get("planner_qty") or "").strip()
        if not raw:
            continue
        try:
            qty = parse_packs(raw, where)
            reason = (row.get("override_reason") or "").strip()
            if not reason:
                raise DataError(f"{where}: planner_qty set without an override_reason")
            out.append(Override(_date(row[date_col], where), _int(row["store_id"], "store_id", where),
                                _int(row["material_id"], "material_id", where), qty, reason[:500], where))
        except DataError as exc:
            errors.append(str(exc))
    if errors:
        more = f" (and {len(errors) - 1} more bad rows)" if len(errors) > 1 else ""
        raise DataError(f"{errors[0]}{more}; nothing was changed")
    if not out:
        raise DataError(f"{p}: no row has a planner_qty; nothing to import")
    keys = [(o.proposal_date, o.store_id, o.material_id) for o in out]
    if len(set(keys)) < len(keys):
        dup = next(o for o in out if keys.count((o.proposal_date, o.store_id, o.material_id)) > 1)
        raise DataError(f"{dup.where}: store {dup.store_id} material {dup.material_id} appears twice; nothing was "
                        "changed")
    return out


def apply_overrides(engine: Engine, schema: SourceSchema, overrides: list[Override], user: str | None = None) -> int:
    """Append every override to the log in one transaction (``planning.lifecycle``); a line missing from the
    proposal table, not a draft, or not orderable that day aborts them all. Returns how many were appended."""
    ensure_table(engine, schema)
    t = schema["proposals"]
    who = (user or default_user())[:64]
    keys = [(o.proposal_date, o.store_id, o.material_id) for o in overrides]
    with engine.begin() as conn:
        found: set[tuple[date, int, int]] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i: i + 500]
            stmt = select(t.c.proposal_date, t.c.store_id, t.c.material_id).where(
                tuple_(t.c.proposal_date, t.c.store_id, t.c.material_id).in_(chunk))
            found |= {(r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0])[:10]), int(r[1]), int(r[2]))
                      for r in conn.execute(stmt)}
        missing = [o for o, k in zip(overrides, keys, strict=True) if k not in found]
        if missing:
            o = missing[0]
            where = f"{o.where}: " if o.where else ""
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{where}no proposal for {o.proposal_date} store {o.store_id} material {o.material_id}"
                            f"{more}: run `replenish plan --date {o.proposal_date}` first; nothing was changed")
        try:
            return record_overrides(conn, schema, [(o.proposal_date, o.store_id, o.material_id, o.planner_qty,
                                                    o.reason) for o in overrides], who)
        except DataError as exc:
            bad = next((o for o in overrides if f"material {o.material_id}" in str(exc)), None)
            where = f"{bad.where}: " if bad is not None and bad.where else ""
            raise type(exc)(f"{where}{exc}; nothing was changed") from None
