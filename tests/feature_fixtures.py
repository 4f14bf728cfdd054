"""Small hand-built source databases for the feature tests (real SQLite files or MariaDB, via the schema).

Why hand-built: every number a test asserts can be recomputed here from the raw rows with ``zoneinfo``,
independently of the pandas code under test; and bad rows can be injected one reason at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

from forecasting.source.db import init_db, make_engine
from forecasting.source.schema import SourceSchema, build_schema

NY = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")

# store_id, open_date, close_date, open_hour, close_hour
STORES = [
    (1, date(2025, 6, 1), None, 7, 20),
    (2, date(2025, 11, 1), None, 6, 18),  # opens inside the test window
    (3, date(2025, 6, 1), None, 0, 24),   # a 24-hour store: exercises the DST days
]
# product_id, category, launch_date, retire_date
PRODUCTS = [
    (101, "coffee", None, None),
    (102, "coffee", None, None),
    (103, "food", None, None),
    (104, "seasonal", date(2025, 11, 2), date(2025, 11, 4)),  # on the menu Nov 2..4 (retire day inclusive)
]
MATERIALS = [201, 202, 203, 204]  # beans, milk, cup, croissant
BOM = [
    (101, 201, 18.0), (101, 202, 200.0), (101, 203, 1.0),
    (102, 201, 18.0), (102, 202, 150.0), (102, 203, 1.0),
    (103, 204, 1.0),
    (104, 201, 18.0), (104, 203, 1.0),
]
START = date(2025, 10, 31)
DAYS = 5  # Oct 31 .. Nov 4: includes the fall-back day Nov 2
# stockouts: (store, material, date, stockout_hours, on_hand)
STOCKOUTS = [(1, 202, date(2025, 11, 1), 3.0, 5.0), (3, 204, date(2025, 11, 3), 0.0, 0.0)]


@dataclass
class Facts:
    """What was inserted, for independent expectations."""

    lines: list[dict] = field(default_factory=list)  # completed, valid order lines
    next_order_id: int = 1

    def local(self, created_at: datetime) -> datetime:
        return created_at.replace(tzinfo=UTC).astimezone(NY)


def utc_naive(local: datetime) -> datetime:
    """A local New York wall time (fold respected) -> naive UTC."""
    return local.replace(tzinfo=NY).astimezone(UTC).replace(tzinfo=None)


def _open_instants(open_hour: int, close_hour: int, day: date) -> list[datetime]:
    """UTC instants (naive) at minute 10 of every real local hour the store is open on ``day``."""
    out = []
    t = datetime(day.year, day.month, day.day, tzinfo=NY).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=NY).astimezone(UTC)
    while t < end:
        loc = t.astimezone(NY)
        if open_hour <= loc.hour < close_hour:
            out.append((t + timedelta(minutes=10)).replace(tzinfo=None))
        t += timedelta(hours=1)
    return out


def build_source(url: str, *, start: date = START, days: int = DAYS, seed: int = 7, ireplenishment: bool = True,
                 extras: bool = True) -> tuple[Engine, SourceSchema, Facts]:
    """Create and fill a source database; ``ireplenishment=False`` makes a plain point-of-sale import."""
    schema = build_schema()
    engine = make_engine(url, schema)
    if ireplenishment:
        init_db(engine, schema)
    else:
        pos = [schema[t] for t in ("stores", "products", "orders", "order_items")]
        schema.metadata.create_all(engine, tables=pos)
    rng = random.Random(seed)
    facts = Facts()
    with engine.begin() as conn:
        conn.execute(insert(schema["stores"]), [
            {"store_id": s, "store_name": f"Store {s}", "open_date": od, "close_date": cd,
             "timezone": "America/New_York", "open_hour": oh, "close_hour": ch} for s, od, cd, oh, ch in STORES])
        conn.execute(insert(schema["products"]), [
            {"product_id": p, "product_name": f"P{p}", "category": c, "is_drink": c != "food", "launch_date": ld,
             "retire_date": rd, "list_price": 4.5} for p, c, ld, rd in PRODUCTS])
        orders, items = [], []
        for k in range(days):
            day = start + timedelta(days=k)
            menu = [p for p, _, ld, rd in PRODUCTS if (ld is None or day >= ld) and (rd is None or day <= rd)]
            for s, od, _, oh, ch in STORES:
                if day < od:
                    continue
                for at in _open_instants(oh, ch, day):
                    for _ in range(rng.randint(0, 2)):
                        oid = facts.next_order_id
                        facts.next_order_id += 1
                        status = "completed" if rng.random() > 0.1 else rng.choice(["cancelled", "refunded"])
                        created = at + timedelta(minutes=rng.randint(0, 40))
                        orders.append(_order(oid, s, status, created))
                        for line in range(1, rng.randint(1, 2) + 1):
                            p, qn = rng.choice(menu), rng.randint(1, 3)
                            items.append({"order_id": oid, "line_no": line, "product_id": p, "quantity": qn,
                                          "unit_price": 4.5, "discount": 0})
                            if status == "completed":
                                facts.lines.append({"store_id": s, "product_id": p, "created_at": created,
                                                    "quantity": qn})
        conn.execute(insert(schema["orders"]), orders)
        conn.execute(insert(schema["order_items"]), items)
        if ireplenishment:
            _ireplenishment(conn, schema, start, days, rng)
            if extras:
                conn.execute(insert(schema["coupon_templates"]), [
                    {"template_id": 1, "name": "coffee week", "product_id": None, "category": "coffee",
                     "discount_pct": 0.3, "valid_from": date(2025, 11, 1), "valid_to": date(2025, 11, 2),
                     "is_campaign": True},
                    {"template_id": 2, "name": "croissant day", "product_id": 103, "category": None,
                     "discount_pct": 0.5, "valid_from": date(2025, 11, 4), "valid_to": date(2025, 11, 4),
                     "is_campaign": True},
                    {"template_id": 3, "name": "welcome", "product_id": None, "category": "food",
                     "discount_pct": 0.9, "valid_from": date(2025, 1, 1), "valid_to": date(2026, 12, 31),
                     "is_campaign": False},
                ])
                conn.execute(insert(schema["weather_events"]), [
                    {"event_date": date(2025, 11, 3), "kind": "storm", "demand_factor": 0.6}])
    return engine, schema, facts


def _order(oid: int, store_id: int, status: str, created: datetime) -> dict:
    return {"order_id": oid, "store_id": store_id, "user_id": None, "channel": "ios", "status": status,
            "currency": "USD", "created_at": created, "completed_at": created + timedelta(minutes=4),
            "pay_amount": 4.5, "production_seconds": 200}


def _ireplenishment(conn, schema: SourceSchema, start: date, days: int, rng: random.Random) -> None:
    conn.execute(insert(schema["suppliers"]), [{"supplier_id": 1, "supplier_name": "S", "lead_time_days": 1,
                                                "delivery_weekdays": "Mon,Wed,Fri", "order_cutoff": "14:00"}])
    conn.execute(insert(schema["materials"]), [
        {"material_id": m, "material_name": f"M{m}", "unit": "unit", "pack_size": 10, "shelf_life_days": 5,
         "is_perishable": True, "storage_class": "chilled", "supplier_id": 1, "unit_cost": 1.0} for m in MATERIALS])
    conn.execute(insert(schema["bom"]), [{"product_id": p, "material_id": m, "qty_per_unit": q} for p, m, q in BOM])
    outs = {(s, m, d): (h, oh) for s, m, d, h, oh in STOCKOUTS}
    snaps, repl, fcs = [], [], []
    order_no = 1
    for k in range(days):
        day = start + timedelta(days=k)
        for s, *_ in STORES:
            for m in MATERIALS:
                h, oh = outs.get((s, m, day), (0.0, 100.0 + m + k))
                snaps.append({"store_id": s, "material_id": m, "snapshot_date": day, "on_hand_qty": oh,
                              "waste_qty": 1.0, "stockout_hours": h})
                repl.append({"order_no": order_no, "store_id": s, "material_id": m, "ordered_on": day,
                             "qty": 10.0 * k, "expected_delivery": day + timedelta(days=1),
                             "received_on": day + timedelta(days=1), "received_qty": 10.0 * k + 1,
                             "status": "received"})
                order_no += 1
                for h_days in (1, 3, 7):
                    fcs.append({"store_id": s, "material_id": m, "issued_on": day - timedelta(days=h_days),
                                "target_date": day, "predicted_qty": 1000.0 * h_days + s * 10 + m + k,
                                "model_version": "incumbent"})
    conn.execute(insert(schema["inventory_snapshots"]), snaps)
    conn.execute(insert(schema["replenishment_orders"]), repl)
    conn.execute(insert(schema["replenishment_forecasts"]), fcs)


def add_order(engine: Engine, schema: SourceSchema, facts: Facts, store_id: int, created: datetime,
              lines: list[tuple[int, int]], status: str = "completed", record: bool = True) -> int:
    """Insert one order with (product_id, quantity) lines; ``record`` adds them to the expected valid lines."""
    oid = facts.next_order_id
    facts.next_order_id += 1
    with engine.begin() as conn:
        conn.execute(insert(schema["orders"]), [_order(oid, store_id, status, created)])
        conn.execute(insert(schema["order_items"]), [
            {"order_id": oid, "line_no": n, "product_id": p, "quantity": q, "unit_price": 4.5, "discount": 0}
            for n, (p, q) in enumerate(lines, start=1)])
    if record and status == "completed":
        facts.lines += [{"store_id": store_id, "product_id": p, "created_at": created, "quantity": q}
                        for p, q in lines]
    return oid


def expected_daily(facts: Facts) -> dict[tuple[int, int, date], int]:
    """(store, product, local date) -> units, computed with zoneinfo row by row."""
    out: dict[tuple[int, int, date], int] = {}
    for r in facts.lines:
        d = facts.local(r["created_at"]).date()
        key = (r["store_id"], r["product_id"], d)
        out[key] = out.get(key, 0) + r["quantity"]
    return out


def expected_hourly(facts: Facts) -> dict[tuple[int, int, date, int], int]:
    out: dict[tuple[int, int, date, int], int] = {}
    for r in facts.lines:
        loc = facts.local(r["created_at"])
        key = (r["store_id"], r["product_id"], loc.date(), loc.hour)
        out[key] = out.get(key, 0) + r["quantity"]
    return out
