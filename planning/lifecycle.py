"""The proposal lifecycle: draft -> approved -> released (or cancelled), append-only overrides, release to ordering.

Why in the database and not in files: the planner's decision is what the ordering system acts on, so it must be
recorded with who and when, survive a re-plan (only drafts are rewritten), and reach ``t_replenishment_order`` in
the same transaction that marks the proposal released: a crash leaves both as they were, a retry writes once.
Every function here is plain SQLAlchemy Core over ``forecasting.source.schema``; the CLI and the workbench call them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.engine import Connection

from forecasting.errors import DataError
from forecasting.source.schema import SourceSchema

OPEN_ORDER_STATUS = "open"  # what ireplenishment's consumers read as still on order


class Conflict(DataError):
    """The action does not fit the proposal's state, or an idempotency key was reused with another body (409)."""

    status = 409


class Missing(DataError):
    """No proposal (or line, or override) for what was asked (404)."""

    status = 404


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _d(value) -> date:
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


def order_no(order_date: date, store_id: int, material_id: int) -> int:
    """The natural key of a released order line: one order number per date x store x material, never two."""
    return int(order_date.strftime("%Y%m%d")) * 10**10 + int(store_id) * 10**5 + int(material_id)


def _order_range(order_date: date, store_id: int) -> tuple[int, int]:
    lo = order_no(order_date, store_id, 0)
    return lo, lo + 10**5 - 1


def final_packs(packs, planner_qty) -> int:
    """The number that counts: the planner's where overridden, else the engine's."""
    if planner_qty is not None and planner_qty == planner_qty:  # not NULL / NaN
        return int(round(float(planner_qty)))
    return int(packs or 0)


# ------------------------------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------------------------------
def _lines_exist(conn: Connection, schema: SourceSchema, d: date, store: int) -> int:
    p = schema["proposals"]
    return int(conn.execute(select(func.count()).select_from(p).where(p.c.proposal_date == d,
                                                                      p.c.store_id == store)).scalar() or 0)


def _lock_state(conn: Connection, schema: SourceSchema, d: date, store: int):
    """The store x date state row, locked for this transaction (created as draft when lines exist without one)."""
    s = schema["proposal_states"]
    where = and_(s.c.proposal_date == d, s.c.store_id == store)
    row = conn.execute(select(s).where(where).with_for_update()).first()
    if row is None:
        if not _lines_exist(conn, schema, d, store):
            raise Missing(f"no proposal for store {store} on {d}: run `replenish plan --date {d}` first")
        conn.execute(s.insert().values(proposal_date=d, store_id=store, status="draft", updated_at=now()))
        row = conn.execute(select(s).where(where).with_for_update()).first()
    return row


def states(engine: Engine, schema: SourceSchema, d: date, stores: list[int] | None = None) -> dict[int, dict]:
    """store_id -> state row (as a dict) for the date; stores without a row are draft."""
    s = schema["proposal_states"]
    stmt = select(s).where(s.c.proposal_date == d)
    if stores:
        stmt = stmt.where(s.c.store_id.in_([int(x) for x in stores]))
    with engine.connect() as conn:
        return {int(r.store_id): dict(r._mapping) for r in conn.execute(stmt)}


def _move(engine: Engine, schema: SourceSchema, d: date, store: int, user: str, to: str,
          allowed: tuple[str, ...]) -> dict:
    p, s = schema["proposals"], schema["proposal_states"]
    with engine.begin() as conn:
        st = _lock_state(conn, schema, d, store)
        if st.status not in allowed:
            raise Conflict(f"store {store} on {d} is {st.status}: it can be {to} only when "
                           f"{' or '.join(allowed)}")
        t = now()
        who = {"approved": ("approved_by", "approved_at"), "cancelled": ("cancelled_by", "cancelled_at"),
               "draft": ("approved_by", "approved_at")}[to]
        values = {"status": to, "updated_at": t, who[0]: None if to == "draft" else user[:64],
                  who[1]: None if to == "draft" else t}
        conn.execute(s.update().where(s.c.proposal_date == d, s.c.store_id == store).values(**values))
        conn.execute(p.update().where(p.c.proposal_date == d, p.c.store_id == store, p.c.status.in_(allowed))
                     .values(status=to))
    return states(engine, schema, d, [store])[store]


def approve(engine: Engine, schema: SourceSchema, d: date, store: int, user: str) -> dict:
    """draft -> approved: the planner signs the store's lines off as they stand (final quantities)."""
    return _move(engine, schema, d, store, user, "approved", ("draft",))


def reopen(engine: Engine, schema: SourceSchema, d: date, store: int, user: str) -> dict:
    """approved -> draft: to change a number (or take a re-plan) after approving; released stays released."""
    return _move(engine, schema, d, store, user, "draft", ("approved",))


def cancel(engine: Engine, schema: SourceSchema, d: date, store: int, user: str) -> dict:
    """draft or approved -> cancelled: nothing of this store and date will be released."""
    return _move(engine, schema, d, store, user, "cancelled", ("draft", "approved"))


# ------------------------------------------------------------------------------------------------------------------
# Overrides: append-only, the newest not withdrawn one counts (mirrored on the line for readers of one table)
# ------------------------------------------------------------------------------------------------------------------
def _active(conn: Connection, schema: SourceSchema, d: date, store: int, material: int):
    o = schema["proposal_overrides"]
    return conn.execute(select(o).where(o.c.proposal_date == d, o.c.store_id == store, o.c.material_id == material,
                                        o.c.withdrawn_at.is_(None))
                        .order_by(o.c.override_id.desc()).limit(1)).first()


def _mirror(conn: Connection, schema: SourceSchema, d: date, store: int, material: int) -> None:
    p = schema["proposals"]
    cur = _active(conn, schema, d, store, material)
    vals = dict(planner_qty=None, override_reason=None, overridden_by=None, overridden_at=None) if cur is None else \
        dict(planner_qty=float(cur.packs), override_reason=cur.reason, overridden_by=cur.created_by,
             overridden_at=cur.created_at)
    conn.execute(p.update().where(p.c.proposal_date == d, p.c.store_id == store, p.c.material_id == material)
                 .values(**vals))


def _editable_line(conn: Connection, schema: SourceSchema, d: date, store: int, material: int):
    p = schema["proposals"]
    line = conn.execute(select(p).where(p.c.proposal_date == d, p.c.store_id == store, p.c.material_id == material)
                        ).first()
    if line is None:
        raise Missing(f"no proposal for {d} store {store} material {material}: run `replenish plan --date {d}` "
                      "first")
    if line.status != "draft":
        raise Conflict(f"store {store} material {material} on {d} is {line.status}: reopen the store to change it")
    detail = json.loads(line.explanation or "{}")
    if not detail.get("is_order_day", True):
        name = detail.get("material_name") or f"material {material}"
        nxt = detail.get("next_order_day")
        raise Conflict(f"{name} cannot be ordered from store {store} on {d} (not an order day for its supplier"
                       f"{'; next order day ' + str(nxt)[:10] if nxt else ''})")
    return line


def record_overrides(conn: Connection, schema: SourceSchema, rows: list[tuple[date, int, int, int, str]],
                     user: str) -> int:
    """Append (date, store, material, packs, reason) rows inside ``conn``'s transaction; the first bad one raises.

    A row equal to the line's current override (same packs and reason) is not appended again, so re-importing an
    exported CSV is idempotent.
    """
    o = schema["proposal_overrides"]
    t = now()
    n = 0
    for d, store, material, packs, reason in rows:
        if not reason or not reason.strip():
            raise DataError(f"store {store} material {material}: a reason is required with the planner's number")
        if int(packs) < 0:
            raise DataError(f"store {store} material {material}: packs must be >= 0")
        _editable_line(conn, schema, d, store, material)
        cur = _active(conn, schema, d, store, material)
        if cur is not None and int(cur.packs) == int(packs) and cur.reason == reason.strip()[:500]:
            continue
        conn.execute(o.insert().values(proposal_date=d, store_id=store, material_id=material, packs=int(packs),
                                       reason=reason.strip()[:500], created_by=user[:64], created_at=t))
        _mirror(conn, schema, d, store, material)
        n += 1
    return n


def override(engine: Engine, schema: SourceSchema, d: date, store: int, material: int, packs: int, reason: str,
             user: str) -> int:
    with engine.begin() as conn:
        return record_overrides(conn, schema, [(d, store, material, packs, reason)], user)


def withdraw(engine: Engine, schema: SourceSchema, d: date, store: int, material: int, user: str) -> dict | None:
    """Withdraw the override that counts now; the previous one (if any) counts again. Returns it, or None."""
    o = schema["proposal_overrides"]
    with engine.begin() as conn:
        _editable_line(conn, schema, d, store, material)
        cur = _active(conn, schema, d, store, material)
        if cur is None:
            raise Missing(f"store {store} material {material} on {d} has no override to withdraw")
        conn.execute(o.update().where(o.c.override_id == cur.override_id).values(withdrawn_by=user[:64],
                                                                                 withdrawn_at=now()))
        _mirror(conn, schema, d, store, material)
        nxt = _active(conn, schema, d, store, material)
    return None if nxt is None else dict(nxt._mapping)


def override_history(engine: Engine, schema: SourceSchema, d: date, store: int,
                     material: int | None = None) -> list[dict]:
    o = schema["proposal_overrides"]
    stmt = select(o).where(o.c.proposal_date == d, o.c.store_id == store)
    if material is not None:
        stmt = stmt.where(o.c.material_id == material)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt.order_by(o.c.override_id))]


# ------------------------------------------------------------------------------------------------------------------
# Release to ordering
# ------------------------------------------------------------------------------------------------------------------
def body_hash(d: date, store: int, body: dict | None = None) -> str:
    canon = json.dumps({"order_date": d.isoformat(), "store_id": int(store), **(body or {})}, sort_keys=True,
                       default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def _release_dict(conn: Connection, schema: SourceSchema, rel, replayed: bool) -> dict:
    out = dict(rel._mapping)
    out["orders"] = _orders_of(conn, schema, _d(rel.proposal_date), int(rel.store_id))
    out["replayed"] = replayed
    return out


def release(engine: Engine, schema: SourceSchema, d: date, store: int, user: str, *, key: str | None = None,
            body: dict | None = None, hook: Callable[[str], None] | None = None) -> dict:
    """Write the approved store's orders into ``t_replenishment_order`` and mark it released, in ONE transaction.

    Idempotent: the same ``key`` (or, without one, the natural key date x store) with the same body returns the
    first release (``replayed``); the same key with another body is a ``Conflict``; a store and date already
    released under another key returns that release. The state row is locked first (``SELECT ... FOR UPDATE``),
    so two concurrent releases serialise and the second replays. ``hook("updated")`` runs between the proposal
    update and the order insert (tests crash there).
    """
    r, p, s, od = schema["releases"], schema["proposals"], schema["proposal_states"], schema["replenishment_orders"]
    key = (key or f"natural:{d.isoformat()}:{int(store)}")[:128]
    h = body_hash(d, store, body)
    with engine.begin() as conn:
        st = _lock_state(conn, schema, d, store)
        prev = conn.execute(select(r).where(r.c.idempotency_key == key).with_for_update()).first()
        if prev is not None:
            if prev.body_hash != h:
                raise Conflict(f"Idempotency-Key {key!r} was used for store {prev.store_id} on {prev.proposal_date} "
                               "with another body: use a new key for a new release")
            return _release_dict(conn, schema, prev, True)
        done = conn.execute(select(r).where(r.c.proposal_date == d, r.c.store_id == store).with_for_update()).first()
        if done is not None:
            return _release_dict(conn, schema, done, True)
        if st.status != "approved":
            raise Conflict(f"store {store} on {d} is {st.status}: only an approved proposal can be released")
        lines = conn.execute(select(p).where(p.c.proposal_date == d, p.c.store_id == store,
                                             p.c.status == "approved")).all()
        t = now()
        conn.execute(p.update().where(p.c.proposal_date == d, p.c.store_id == store, p.c.status == "approved")
                     .values(status="released"))
        conn.execute(s.update().where(s.c.proposal_date == d, s.c.store_id == store)
                     .values(status="released", released_by=user[:64], released_at=t, updated_at=t))
        if hook is not None:
            hook("updated")
        m = schema["materials"]
        cost = {int(a): float(b or 0.0) for a, b in conn.execute(select(m.c.material_id, m.c.unit_cost))}
        orders, packs, value = [], 0, 0.0
        for ln in lines:
            n = final_packs(ln.packs, ln.planner_qty)
            if n <= 0:
                continue
            packs += n
            value += n * float(ln.pack_size) * cost.get(int(ln.material_id), 0.0)
            orders.append({"order_no": order_no(d, store, int(ln.material_id)), "store_id": int(store),
                           "material_id": int(ln.material_id), "ordered_on": d, "qty": n * float(ln.pack_size),
                           "expected_delivery": _d(ln.delivery_date), "received_on": None, "received_qty": None,
                           "status": OPEN_ORDER_STATUS})
        if orders:
            conn.execute(od.insert(), orders)
        res = conn.execute(r.insert().values(idempotency_key=key, body_hash=h, proposal_date=d, store_id=store,
                                             released_by=user[:64], released_at=t, n_orders=len(orders),
                                             packs=packs, order_value=round(value, 2)))
        rel = conn.execute(select(r).where(r.c.release_id == res.inserted_primary_key[0])).first()
        return _release_dict(conn, schema, rel, False)


def _orders_of(conn: Connection, schema: SourceSchema, d: date, store: int) -> list[dict]:
    od, m = schema["replenishment_orders"], schema["materials"]
    lo, hi = _order_range(d, store)
    rows = conn.execute(
        select(od.c.order_no, od.c.material_id, m.c.material_name, m.c.unit, m.c.pack_size, od.c.qty,
               od.c.expected_delivery, od.c.status)
        .select_from(od.outerjoin(m, m.c.material_id == od.c.material_id))
        .where(od.c.store_id == store, od.c.ordered_on == d, od.c.order_no.between(lo, hi))
        .order_by(od.c.order_no)).all()
    out = []
    for x in rows:
        ps = float(x.pack_size or 1.0)
        out.append({"order_no": int(x.order_no), "material_id": int(x.material_id), "material_name": x.material_name,
                    "packs": int(round(float(x.qty) / ps)), "pack_size": ps, "qty": float(x.qty),
                    "unit": x.unit, "expected_delivery": _d(x.expected_delivery).isoformat(), "status": x.status})
    return out


def released_orders(engine: Engine, schema: SourceSchema, *, store_id: int | None = None,
                    order_date: date | None = None, since: int | None = None, limit: int = 100) -> dict:
    """Released orders for the ordering system: by store and/or date, or every release after cursor ``since``."""
    r = schema["releases"]
    stmt = select(r)
    if since is not None:
        stmt = stmt.where(r.c.release_id > since)
    if store_id is not None:
        stmt = stmt.where(r.c.store_id == store_id)
    if order_date is not None:
        stmt = stmt.where(r.c.proposal_date == order_date)
    with engine.connect() as conn:
        rels = conn.execute(stmt.order_by(r.c.release_id).limit(limit)).all()
        out = []
        for rel in rels:
            d = _release_dict(conn, schema, rel, False)
            d.pop("replayed")
            d.pop("body_hash")
            out.append(d)
    cursor = max([x["release_id"] for x in out], default=since or 0)
    return {"releases": out, "cursor": int(cursor), "more": len(out) == limit}


def decisions(engine: Engine, schema: SourceSchema, store: int, d: date) -> dict[int, tuple]:
    """material_id -> (planner packs or None, reason, status) of the stored proposal (empty when none)."""
    p = schema["proposals"]
    with engine.connect() as conn:
        rows = conn.execute(select(p.c.material_id, p.c.planner_qty, p.c.override_reason, p.c.status)
                            .where(p.c.proposal_date == d, p.c.store_id == store)).all()
    return {int(r.material_id): (None if r.planner_qty is None else int(round(float(r.planner_qty))),
                                 r.override_reason, r.status) for r in rows}
