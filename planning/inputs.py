"""What a plan reads from the source: master data, recent counts, open and recent replenishment orders.

Why one reader: the CLI plan, the nightly job and the policy replay need the same frames shaped like the ``t_*``
tables ``forecasting.inventory.proposal.propose`` expects, read with bounded date ranges so a plan stays fast on a
long history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, or_, select

from forecasting.config import Settings
from forecasting.errors import DataError
from forecasting.source.db import existing_tables
from forecasting.source.schema import SourceSchema

DEFAULT_TRUTH_DISPERSION = 1 / 12  # the default catalog's nb_dispersion 12


def with_truth_dispersion(settings: Settings, engine: Engine, schema: SourceSchema) -> Settings:
    """``settings`` with ``planning.simulation.truth_dispersion`` resolved: the configured value, else the source's
    ``truth_nb_alpha`` (what the generator drew the history with: a realistic history is noisier than the
    default), else 1/12. Why: replayed demand must be as noisy as the history it stands for."""
    sim = settings.planning.simulation
    if sim.truth_dispersion is not None:
        return settings
    alpha = DEFAULT_TRUTH_DISPERSION
    if "meta" in existing_tables(engine, schema):
        t = schema["meta"]
        with engine.connect() as conn:
            row = conn.execute(select(t.c.value).where(t.c.key == "truth_nb_alpha")).first()
        try:
            alpha = float(row[0]) if row is not None else alpha
        except (TypeError, ValueError):
            pass  # an unreadable value: the default, as for a source without it
    planning = settings.planning.model_copy(update={"simulation": sim.model_copy(update={"truth_dispersion": alpha})})
    return settings.model_copy(update={"planning": planning})


@dataclass
class PlanInputs:
    """Source frames for one order date (all stores; filter per store downstream)."""

    stores: pd.DataFrame  # t_store
    products: pd.DataFrame  # product_id, product_name, launch_date
    materials: pd.DataFrame  # t_material
    bom: pd.DataFrame  # t_bom
    suppliers: pd.DataFrame  # t_supplier
    inventory: pd.DataFrame  # t_inventory_snapshot rows in [order_date - inventory_days, order_date)
    orders: pd.DataFrame  # t_replenishment_order: ordered before order_date, recent or still open

    def open_stores(self, day: date) -> list[int]:
        """Stores open on ``day`` (opened on or before it, not closed)."""
        s = self.stores
        ts = pd.Timestamp(day)
        opened = pd.to_datetime(s["open_date"]) <= ts
        close = pd.to_datetime(s["close_date"])
        ok = opened & (close.isna() | (close > ts))
        return sorted(int(x) for x in s.loc[ok, "store_id"])


def read(engine: Engine, stmt) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(stmt, conn)


def read_table(engine: Engine, schema: SourceSchema, logical: str) -> pd.DataFrame:
    return read(engine, select(schema[logical]))


def read_plan_inputs(
    engine: Engine,
    schema: SourceSchema,
    order_date: date,
    inventory_days: int = 35,
    order_days: int = 56,
) -> PlanInputs:
    """Frames for a plan on ``order_date``: counts of the last ``inventory_days`` days, orders placed in the last
    ``order_days`` days (usual order sizes, receipts) plus any still unreceived."""
    have = set(existing_tables(engine, schema))
    need = {"stores", "materials", "bom", "suppliers", "inventory_snapshots"}
    missing = sorted(need - have)
    if missing:
        raise DataError(f"source lacks tables {missing}: run `replenish db init` and load the ireplenishment data")
    stores = read_table(engine, schema, "stores")
    materials = read_table(engine, schema, "materials")
    bom = read_table(engine, schema, "bom")
    suppliers = read_table(engine, schema, "suppliers")
    if stores.empty or materials.empty or bom.empty or suppliers.empty:
        raise DataError("source has no stores, materials, suppliers or bill of materials: nothing to plan")
    p = schema["products"]
    products = read(engine, select(p.c.product_id, p.c.product_name, p.c.launch_date)) if "products" in have else \
        pd.DataFrame(columns=["product_id", "product_name", "launch_date"])
    t = schema["inventory_snapshots"]
    lo = order_date - timedelta(days=inventory_days)
    inventory = read(engine, select(t).where(t.c.snapshot_date >= lo, t.c.snapshot_date < order_date))
    inventory["snapshot_date"] = pd.to_datetime(inventory["snapshot_date"]).dt.date
    if "replenishment_orders" in have:
        o = schema["replenishment_orders"]
        since = order_date - timedelta(days=max(order_days, inventory_days))
        stmt = select(o).where(o.c.ordered_on < order_date,
                               or_(o.c.ordered_on >= since, o.c.received_on.is_(None), o.c.received_on >= lo))
        orders = read(engine, stmt)
        for c in ("ordered_on", "expected_delivery", "received_on"):
            orders[c] = pd.to_datetime(orders[c])
    else:
        orders = pd.DataFrame(columns=["order_no", "store_id", "material_id", "ordered_on", "qty",
                                       "expected_delivery", "received_on", "received_qty", "status"])
    return PlanInputs(stores, products, materials, bom, suppliers, inventory, orders)
