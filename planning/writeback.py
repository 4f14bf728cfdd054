"""Write the proposal into ``t_replenishment_proposal``: one transaction per run, replace never duplicate.

Why delete + insert in one transaction: a re-run for the same order date must replace that date's lines for the
stores it planned (and only those), and a crash half-way must leave the previous proposal exactly as it was. A
planner's override on a line survives a re-run of the same date (the engine's number is refreshed beside it).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

import pandas as pd
from sqlalchemy import Engine, and_, inspect, select, text
from sqlalchemy.exc import OperationalError

from forecasting.source.db import ensure_schemas
from forecasting.source.schema import LIFECYCLE_TABLES, SourceSchema

OVERRIDE_COLS = ("planner_qty", "override_reason", "overridden_by", "overridden_at")
DEADLOCK_RETRIES = 5
RETRY_CODES = (1213, 1205)  # MySQL/MariaDB: deadlock found, lock wait timeout (the transaction is rolled back)


LIFECYCLE_COLS = ("status", "replan_packs", "replan_at")


def ensure_table(engine: Engine, schema: SourceSchema) -> None:
    """Create the proposal and lifecycle tables when missing (older sources were initialised before they existed)
    and add the lifecycle columns to a proposal table created before them (every line there is a draft)."""
    ensure_schemas(engine, schema)
    for name in ("proposals", *LIFECYCLE_TABLES):
        schema[name].create(engine, checkfirst=True)
    t = schema["proposals"]
    have = {c["name"] for c in inspect(engine).get_columns(t.name, schema=t.schema)}
    missing = [c for c in LIFECYCLE_COLS if c not in have]
    if missing:
        prep = engine.dialect.identifier_preparer
        with engine.begin() as conn:
            for c in missing:
                col = t.c[c]
                ddl = f"ALTER TABLE {prep.format_table(t)} ADD COLUMN {prep.quote(c)} " \
                      f"{col.type.compile(engine.dialect)}" + (" NOT NULL DEFAULT 'draft'" if c == "status" else "")
                conn.execute(text(ddl))


def _json_default(value):
    if isinstance(value, (date, datetime, pd.Timestamp)):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def proposal_rows(lines: pd.DataFrame, exceptions: dict[tuple[int, int], list[dict]] | None,
                  created_at: datetime) -> list[dict]:
    """Table rows from ``lines_to_frame`` output (``explanation`` keeps the full line and its exceptions as JSON)."""
    rows = []
    for rec in lines.to_dict("records"):
        key = (int(rec["store_id"]), int(rec["material_id"]))
        detail = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in rec.items()}
        detail["exceptions"] = (exceptions or {}).get(key, [])
        rows.append({
            "proposal_date": rec["order_date"],
            "store_id": key[0],
            "material_id": key[1],
            "qty": rec["qty_units"],
            "packs": None if rec["qty_packs"] is None else int(rec["qty_packs"]),
            "pack_size": float(rec["pack_size"]),
            "delivery_date": rec["delivery_date"],
            "needs_review": bool(rec["needs_review"]) or bool(detail["exceptions"]),
            "reason_codes": ",".join(rec["reason_codes"])[:255],
            "explanation": json.dumps(detail, default=_json_default),
            "model_version": str(rec["model_version"]),
            "data_date": rec["data_date"],
            "created_at": created_at,
            "status": "draft",
        })
    return rows


def write_proposals(
    engine: Engine,
    schema: SourceSchema,
    proposal_date: date,
    store_ids: list[int],
    rows: list[dict],
    *,
    batch_size: int = 500,
    hook: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Replace the draft proposal of ``proposal_date`` for ``store_ids`` with ``rows`` in ONE transaction.

    Only draft lines are rewritten: a store that is approved, released or cancelled keeps its lines, and where the
    engine's new number differs from one of them it is recorded in ``replan_packs`` (an exception for the planner,
    never a silent change). A line for a material such a store did not have is not added either (a lone draft line
    in an approved store could never be approved or released): it is returned in ``held_new`` as
    ``(store_id, material_id, packs)`` so the command can say "reopen the store to take it". Overrides on a
    rewritten line are carried over. ``hook(n)`` runs after the delete (n = 0) and after each inserted batch (n rows
    so far): tests use it to fail mid-write.

    Why a retry: two plans for the same new date on MariaDB both take gap locks with their delete and then block
    each other's insert; InnoDB rolls one back (deadlock 1213). That one is re-run whole, after the other committed,
    up to ``DEADLOCK_RETRIES`` times, so both succeed and the last writer's proposal stands.
    """
    ensure_table(engine, schema)
    t = schema["proposals"]
    if not store_ids:
        return {"deleted": 0, "inserted": 0, "overrides_kept": 0, "held": 0, "held_changed": 0, "held_new": [],
                "retries": 0}
    where = and_(t.c.proposal_date == proposal_date, t.c.store_id.in_([int(s) for s in store_ids]))
    stamp = datetime.now(UTC).replace(tzinfo=None)
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            with engine.begin() as conn:
                old = {(int(r.store_id), int(r.material_id)): r for r in conn.execute(
                    select(t.c.store_id, t.c.material_id, t.c.packs, t.c.status, *[t.c[c] for c in OVERRIDE_COLS])
                    .where(where))}
                deleted = conn.execute(t.delete().where(where, t.c.status == "draft")).rowcount
                if hook is not None:
                    hook(0)
                n_kept = held = changed = 0
                frozen = {k[0] for k, v in old.items() if v.status != "draft"}  # stores signed off or released
                out, held_new = [], []
                for r in rows:
                    prev = old.get((r["store_id"], r["material_id"]))
                    if prev is None and r["store_id"] in frozen:
                        held_new.append((int(r["store_id"]), int(r["material_id"]), r["packs"]))
                        continue
                    if prev is not None and prev.status != "draft":
                        held += 1
                        moved = prev.packs != r["packs"]
                        changed += moved
                        conn.execute(t.update().where(t.c.proposal_date == proposal_date,
                                                      t.c.store_id == r["store_id"],
                                                      t.c.material_id == r["material_id"])
                                     .values(replan_packs=r["packs"] if moved else None,
                                             replan_at=stamp if moved else None))
                        continue
                    if prev is not None and prev.planner_qty is not None:
                        n_kept += 1
                        out.append({**r, **{c: getattr(prev, c) for c in OVERRIDE_COLS}})
                    else:
                        out.append({**r, **dict.fromkeys(OVERRIDE_COLS)})
                for i in range(0, len(out), batch_size):
                    conn.execute(t.insert(), out[i: i + batch_size])
                    if hook is not None:
                        hook(min(i + batch_size, len(out)))
        except OperationalError as exc:
            code = getattr(exc.orig, "args", (None,))[0]
            if code not in RETRY_CODES or attempt == DEADLOCK_RETRIES:
                raise
            # The transaction was rolled back whole; the other writer holds the locks now: let it finish first.
            time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
            continue
        return {"deleted": int(deleted or 0), "inserted": len(out), "overrides_kept": n_kept, "held": held,
                "held_changed": changed, "held_new": held_new, "retries": attempt}
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def read_proposals(engine: Engine, schema: SourceSchema, proposal_date: date | None = None,
                   store_ids: list[int] | None = None) -> pd.DataFrame:
    """The stored proposal rows (all dates, or one), optionally for some stores."""
    ensure_table(engine, schema)
    t = schema["proposals"]
    stmt = select(t)
    if proposal_date is not None:
        stmt = stmt.where(t.c.proposal_date == proposal_date)
    if store_ids:
        stmt = stmt.where(t.c.store_id.in_(store_ids))
    with engine.connect() as conn:
        return pd.read_sql(stmt.order_by(t.c.proposal_date, t.c.store_id, t.c.material_id), conn)
