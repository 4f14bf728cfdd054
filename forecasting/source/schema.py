"""The source schema, in one place (SQLAlchemy Core).

Luckin keeps orders in its sales databases and the replenishment history in ``ireplenishment``; every logical table
here maps to a physical name from ``configs/`` (``schema.table`` is schema-qualified on MySQL), so pointing the
service at the real MySQL is a configuration change. Key columns follow the contract in the README.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
)

Money = Numeric(10, 2, asdecimal=False)

# Logical name -> default physical name (configs/default.yaml may remap any of them).
DEFAULT_TABLES: dict[str, str] = {
    "stores": "t_store",
    "users": "t_user",
    "products": "t_product",
    "orders": "t_order",
    "order_items": "t_order_item",
    "coupon_templates": "t_coupon_template",
    "coupon_redemptions": "t_coupon_redemption",
    "weather_events": "t_weather_event",
    "weather_daily": "t_weather_daily",
    "suppliers": "t_supplier",
    "materials": "t_material",
    "bom": "t_bom",
    "inventory_snapshots": "t_inventory_snapshot",
    "replenishment_orders": "t_replenishment_order",
    "replenishment_forecasts": "t_replenishment_forecast",
    "demand_truth": "t_demand_truth",
    "demand_truth_hourly": "t_demand_truth_hourly",
    "meta": "t_source_meta",
    "proposals": "t_replenishment_proposal",
    "proposal_states": "t_replenishment_proposal_state",
    "proposal_overrides": "t_replenishment_override",
    "releases": "t_replenishment_release",
}

# The planners' lifecycle: a store x order date proposal and each of its lines move draft -> approved -> released
# (or cancelled); written by `planning.lifecycle`, never by `seed`.
PROPOSAL_STATUSES = ("draft", "approved", "released", "cancelled")
LIFECYCLE_TABLES = ("proposal_states", "proposal_overrides", "releases")
# The planners' tables of one history: ``seed --replace`` clears them with the history they were planned on (their
# stores, materials and dates are the old history's).
PLAN_TABLES = ("proposals", *LIFECYCLE_TABLES)

# Tables that hold a generated history (cleared together by ``seed --replace``); ground truth included.
HISTORY_TABLES = [
    "order_items", "coupon_redemptions", "orders", "coupon_templates", "users", "weather_events", "weather_daily",
    "inventory_snapshots", "replenishment_orders", "replenishment_forecasts", "demand_truth",
    "demand_truth_hourly", "bom", "materials", "suppliers", "products", "stores", "meta",
]

# Tables that features and training must never read: the generator's latent truth (evaluation only).
TRUTH_TABLES = ("demand_truth", "demand_truth_hourly")


@dataclass(frozen=True)
class SourceSchema:
    """The bound metadata plus a lookup by logical name."""

    metadata: MetaData
    tables: dict[str, Table]

    def __getitem__(self, logical: str) -> Table:
        return self.tables[logical]


def _split(physical: str) -> tuple[str | None, str]:
    schema, _, name = physical.rpartition(".")
    return (schema or None), name


def build_schema(mapping: dict[str, str] | None = None) -> SourceSchema:
    """Build the metadata with physical names from ``mapping`` (logical -> ``[schema.]table``)."""
    names = {**DEFAULT_TABLES, **(mapping or {})}
    md = MetaData()

    def table(logical: str, *cols, **kw) -> Table:
        schema, name = _split(names[logical])
        return Table(name, md, *cols, schema=schema, **kw)

    def fk(logical: str, col: str) -> ForeignKey:
        schema, name = _split(names[logical])
        return ForeignKey(f"{schema + '.' if schema else ''}{name}.{col}")

    t: dict[str, Table] = {}
    t["stores"] = table(
        "stores",
        Column("store_id", Integer, primary_key=True, autoincrement=False),
        Column("store_name", String(100), nullable=False),
        Column("open_date", Date, nullable=False),
        Column("close_date", Date),
        Column("timezone", String(64), nullable=False, default="America/New_York"),
        Column("open_hour", SmallInteger, nullable=False),
        Column("close_hour", SmallInteger, nullable=False),
        Column("district", String(32)),
        Column("latitude", Double),
        Column("longitude", Double),
    )
    t["users"] = table(
        "users",
        Column("user_id", BigInteger, primary_key=True, autoincrement=False),
        Column("registered_at", DateTime, nullable=False),
    )
    t["products"] = table(
        "products",
        Column("product_id", Integer, primary_key=True, autoincrement=False),
        Column("product_name", String(100), nullable=False),
        Column("category", String(50), nullable=False),
        Column("is_drink", Boolean, nullable=False),
        Column("is_iced", Boolean),
        Column("launch_date", Date),
        Column("retire_date", Date),
        Column("list_price", Money, nullable=False),
    )
    t["orders"] = table(
        "orders",
        Column("order_id", BigInteger, primary_key=True, autoincrement=False),
        Column("store_id", Integer, nullable=False),
        Column("user_id", BigInteger),
        Column("channel", String(16), nullable=False),
        Column("status", String(16), nullable=False),
        Column("currency", String(3), nullable=False, default="USD"),
        Column("created_at", DateTime, nullable=False),
        Column("completed_at", DateTime),
        Column("pay_amount", Money, nullable=False),
        Column("production_seconds", Integer),
        Index(None, "store_id", "created_at"),
        Index(None, "created_at"),
    )
    t["order_items"] = table(
        "order_items",
        Column("order_id", BigInteger, nullable=False),
        Column("line_no", SmallInteger, nullable=False, default=1),
        Column("product_id", Integer, nullable=False),
        Column("quantity", Integer, nullable=False),
        Column("unit_price", Money, nullable=False),
        Column("discount", Money, nullable=False, default=0),
        Index(None, "order_id"),
    )
    t["coupon_templates"] = table(
        "coupon_templates",
        Column("template_id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(100), nullable=False),
        Column("product_id", Integer),
        Column("category", String(50)),
        Column("discount_pct", Double, nullable=False),
        Column("valid_from", Date, nullable=False),
        Column("valid_to", Date, nullable=False),
        Column("is_campaign", Boolean, nullable=False, default=False),
    )
    t["coupon_redemptions"] = table(
        "coupon_redemptions",
        Column("redemption_id", BigInteger, primary_key=True, autoincrement=False),
        Column("template_id", Integer, nullable=False),
        Column("order_id", BigInteger, nullable=False),
        Column("product_id", Integer),
        Column("discount", Money, nullable=False),
        Index(None, "order_id"),
    )
    t["weather_events"] = table(
        "weather_events",
        Column("event_date", Date, primary_key=True),
        Column("kind", String(32), nullable=False),
        Column("demand_factor", Double, nullable=False),
    )
    # Daily mean temperature (degrees C) and the forecast of it issued on forecast_issued_on (the day before for
    # history days; the history's last day for the days after it, where temp_c is NULL). Written by the realistic
    # scenario only; empty otherwise, and readers must tolerate its absence (an older source).
    t["weather_daily"] = table(
        "weather_daily",
        Column("weather_date", Date, primary_key=True),
        Column("temp_c", Double),
        Column("temp_forecast_c", Double, nullable=False),
        Column("forecast_issued_on", Date, nullable=False),
    )
    t["suppliers"] = table(
        "suppliers",
        Column("supplier_id", Integer, primary_key=True, autoincrement=False),
        Column("supplier_name", String(100), nullable=False),
        Column("lead_time_days", SmallInteger, nullable=False),
        Column("delivery_weekdays", String(32), nullable=False),  # e.g. "Mon,Wed,Fri"
        Column("order_cutoff", String(5), nullable=False),  # local "HH:MM" on the ordering day
    )
    t["materials"] = table(
        "materials",
        Column("material_id", Integer, primary_key=True, autoincrement=False),
        Column("material_name", String(100), nullable=False),
        Column("unit", String(16), nullable=False),
        Column("pack_size", Double, nullable=False),
        Column("shelf_life_days", SmallInteger),
        Column("is_perishable", Boolean, nullable=False),
        Column("storage_class", String(16), nullable=False),  # ambient / chilled / frozen
        Column("supplier_id", Integer, fk("suppliers", "supplier_id"), nullable=False),
        Column("unit_cost", Double),
    )
    t["bom"] = table(
        "bom",
        Column("product_id", Integer, primary_key=True, autoincrement=False),
        Column("material_id", Integer, primary_key=True, autoincrement=False),
        Column("qty_per_unit", Double, nullable=False),
    )
    t["inventory_snapshots"] = table(
        "inventory_snapshots",
        Column("store_id", Integer, primary_key=True, autoincrement=False),
        Column("material_id", Integer, primary_key=True, autoincrement=False),
        Column("snapshot_date", Date, primary_key=True),
        Column("on_hand_qty", Double, nullable=False),
        Column("waste_qty", Double, nullable=False, default=0),
        Column("stockout_hours", Double),
    )
    t["replenishment_orders"] = table(
        "replenishment_orders",
        Column("order_no", BigInteger, primary_key=True, autoincrement=False),
        Column("store_id", Integer, nullable=False),
        Column("material_id", Integer, nullable=False),
        Column("ordered_on", Date, nullable=False),
        Column("qty", Double, nullable=False),
        Column("expected_delivery", Date, nullable=False),
        Column("received_on", Date),
        Column("received_qty", Double),
        Column("status", String(16), nullable=False),
        Index(None, "store_id", "ordered_on"),
    )
    t["replenishment_forecasts"] = table(
        "replenishment_forecasts",
        Column("store_id", Integer, primary_key=True, autoincrement=False),
        Column("material_id", Integer, primary_key=True, autoincrement=False),
        Column("issued_on", Date, primary_key=True),
        Column("target_date", Date, primary_key=True),
        Column("predicted_qty", Double, nullable=False),
        Column("model_version", String(32), nullable=False),
    )
    t["demand_truth"] = table(
        "demand_truth",
        Column("store_id", Integer, primary_key=True, autoincrement=False),
        Column("product_id", Integer, primary_key=True, autoincrement=False),
        Column("date", Date, primary_key=True),
        Column("expected_qty", Double, nullable=False),
        # realised demand before censoring (what would have sold with stock); nullable so sources written before
        # it existed stay valid: readers check the column is there (forecasting.source.db.table_columns)
        Column("realised_qty", Double),
    )
    t["demand_truth_hourly"] = table(
        "demand_truth_hourly",
        Column("store_id", Integer, primary_key=True, autoincrement=False),
        Column("date", Date, primary_key=True),
        Column("local_hour", SmallInteger, primary_key=True, autoincrement=False),
        Column("share", Double, nullable=False),
    )
    t["meta"] = table(
        "meta",
        Column("key", String(64), primary_key=True),
        Column("value", String(4000), nullable=False),
    )
    # Written by `replenish plan` (one row per order date x store x material; a re-run replaces the date's rows).
    # qty/packs are the engine's; planner_qty (packs) and override_reason keep the planner's number beside it.
    t["proposals"] = table(
        "proposals",
        Column("proposal_date", Date, primary_key=True),
        Column("store_id", Integer, primary_key=True, autoincrement=False),
        Column("material_id", Integer, primary_key=True, autoincrement=False),
        Column("qty", Double, nullable=False),  # units (packs x pack_size)
        Column("packs", Integer, nullable=False),
        Column("pack_size", Double, nullable=False),
        Column("delivery_date", Date, nullable=False),
        Column("needs_review", Boolean, nullable=False, default=False),
        Column("reason_codes", String(255), nullable=False, default=""),
        Column("explanation", Text, nullable=False),  # JSON: the full proposal line and its exceptions
        Column("model_version", String(64), nullable=False),
        Column("data_date", Date, nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("planner_qty", Double),  # packs the planner wants instead (NULL = accepted as proposed)
        Column("override_reason", String(500)),
        Column("overridden_by", String(64)),
        Column("overridden_at", DateTime),
        # Lifecycle: draft -> approved -> released | cancelled. A re-plan rewrites draft lines only; on a line it may
        # not rewrite whose engine number moved it records that number here (an exception for the planner).
        Column("status", String(16), nullable=False, default="draft"),
        Column("replan_packs", Integer),
        Column("replan_at", DateTime),
        Index(None, "store_id", "proposal_date"),
    )
    # One row per store x order date: the proposal's state and who moved it when.
    t["proposal_states"] = table(
        "proposal_states",
        Column("proposal_date", Date, primary_key=True),
        Column("store_id", Integer, primary_key=True, autoincrement=False),
        Column("status", String(16), nullable=False, default="draft"),
        Column("approved_by", String(64)),
        Column("approved_at", DateTime),
        Column("released_by", String(64)),
        Column("released_at", DateTime),
        Column("cancelled_by", String(64)),
        Column("cancelled_at", DateTime),
        Column("updated_at", DateTime, nullable=False),
    )
    # Append-only: every planner number with its reason, user and time; the newest not withdrawn one counts.
    t["proposal_overrides"] = table(
        "proposal_overrides",
        Column("override_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("proposal_date", Date, nullable=False),
        Column("store_id", Integer, nullable=False),
        Column("material_id", Integer, nullable=False),
        Column("packs", Integer, nullable=False),
        Column("reason", String(500), nullable=False),
        Column("created_by", String(64), nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("withdrawn_by", String(64)),
        Column("withdrawn_at", DateTime),
        Index(None, "proposal_date", "store_id", "material_id"),
    )
    # One row per release to ordering; release_id is the ordering system's cursor, idempotency_key makes a retry a
    # replay (same body) or a 409 (another body), and (proposal_date, store_id) is released at most once.
    t["releases"] = table(
        "releases",
        Column("release_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("idempotency_key", String(128), nullable=False, unique=True),
        Column("body_hash", String(64), nullable=False),
        Column("proposal_date", Date, nullable=False),
        Column("store_id", Integer, nullable=False),
        Column("released_by", String(64), nullable=False),
        Column("released_at", DateTime, nullable=False),
        Column("n_orders", Integer, nullable=False),
        Column("packs", Integer, nullable=False),
        Column("order_value", Double),
        Index(None, "proposal_date", "store_id", unique=True),
    )
    return SourceSchema(md, t)
