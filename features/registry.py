"""What the feature store holds: dataset schemas and the feature registry (known in advance or not).

Why a registry: a model may only use, at forecast time, features it will actually have then. Calendar facts and
planned campaigns are known ahead; sales, stockouts and weather shocks are only observed. The registry and the
schemas are hashed into the manifest, so a change in either forces a full rebuild instead of a mixed store.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

# Bump when the meaning of a column changes without its name or type changing.
FEATURE_VERSION = 1

_TS = pa.timestamp("ns")
_CAT = pa.dictionary(pa.int32(), pa.string())

SCHEMAS: dict[str, pa.Schema] = {
    "hourly": pa.schema([
        ("store_id", pa.int32()), ("product_id", pa.int32()), ("date", _TS), ("local_hour", pa.int8()),
        ("qty", pa.int32()), ("censored", pa.bool_()),
    ]),
    "daily": pa.schema([
        ("store_id", pa.int32()), ("product_id", pa.int32()), ("date", _TS), ("qty", pa.int32()),
        ("censored", pa.bool_()), ("stockout_hours", pa.float32()),
        ("dow", pa.int8()), ("is_weekend", pa.bool_()), ("month_of_year", pa.int8()), ("day_of_month", pa.int8()),
        ("is_holiday", pa.bool_()), ("holiday_name", _CAT),
        ("days_since_store_open", pa.int32()), ("days_since_launch", pa.float32()),
        ("campaign", pa.bool_()), ("campaign_discount_pct", pa.float32()),
        ("weather_shock", pa.bool_()), ("weather_kind", _CAT),
    ]),
    "material_daily": pa.schema([
        ("store_id", pa.int32()), ("material_id", pa.int32()), ("date", _TS), ("qty", pa.float64()),
        ("censored", pa.bool_()),
    ]),
    "inventory_daily": pa.schema([
        ("store_id", pa.int32()), ("material_id", pa.int32()), ("date", _TS), ("on_hand", pa.float64()),
        ("received", pa.float64()), ("ordered", pa.float64()), ("waste", pa.float64()),
        ("stockout_hours", pa.float32()), ("stockout", pa.bool_()),
    ]),
}


def incumbent_column(h: int) -> str:
    return f"incumbent_fc_h{h}"


def dataset_schema(name: str, horizons: list[int] | tuple[int, ...] = ()) -> pa.Schema:
    """The Arrow schema of a dataset; ``inventory_daily`` gets one column per incumbent forecast horizon."""
    schema = SCHEMAS[name]
    if name == "inventory_daily":
        for h in horizons:
            schema = schema.append(pa.field(incumbent_column(h), pa.float64()))
    return schema


# feature -> (dataset, known_in_advance, description)
_REGISTRY: dict[str, tuple[str, bool, str]] = {
    "qty": ("hourly,daily,material_daily", False, "target: completed units (materials: units x BOM)"),
    "censored": ("hourly,daily,material_daily", False, "a needed material was out of stock that day"),
    "stockout_hours": ("daily,inventory_daily", False, "max stockout hours over the product's materials"),
    "dow": ("daily", True, "day of week, Monday=0"),
    "is_weekend": ("daily", True, "Saturday or Sunday"),
    "month_of_year": ("daily", True, "1..12"),
    "day_of_month": ("daily", True, "1..31"),
    "is_holiday": ("daily", True, "public holiday of the source's calendar: the country / subdivision a POS import "
                                  "stored in t_source_meta, else features.holiday_country / holiday_subdiv "
                                  "(holidays package)"),
    "holiday_name": ("daily", True, "holiday name, null otherwise"),
    "days_since_store_open": ("daily", True, "days since t_store.open_date"),
    "days_since_launch": ("daily", True, "days since t_product.launch_date (NaN when unknown)"),
    "campaign": ("daily", True, "a campaign coupon (is_campaign) covers the product or its category"),
    "campaign_discount_pct": ("daily", True, "largest campaign discount that day, 0 otherwise"),
    "weather_shock": ("daily", False, "a t_weather_event day (observed, not forecast)"),
    "weather_kind": ("daily", False, "kind of weather event, null otherwise"),
    "on_hand": ("inventory_daily", False, "counted on-hand (t_inventory_snapshot)"),
    "received": ("inventory_daily", False, "received quantity by received_on"),
    "ordered": ("inventory_daily", True, "replenishment quantity ordered that day (known once placed)"),
    "waste": ("inventory_daily", False, "wasted quantity"),
    "stockout": ("inventory_daily", False, "stockout_hours > 0 or counted on-hand at/below zero"),
}


def feature_registry(horizons: list[int] | tuple[int, ...] = ()) -> dict[str, dict[str, object]]:
    """feature -> {datasets, known_in_advance, description}; written into the manifest."""
    reg = {k: {"datasets": d.split(","), "known_in_advance": known, "description": desc}
           for k, (d, known, desc) in _REGISTRY.items()}
    for h in horizons:
        reg[incumbent_column(h)] = {
            "datasets": ["inventory_daily"], "known_in_advance": True,
            "description": f"incumbent ireplenishment forecast issued {h} day(s) before the target date",
        }
    return reg


def schema_hash(horizons: list[int] | tuple[int, ...] = ()) -> str:
    """A short hash of every dataset schema and the registry: a change forces a full rebuild."""
    payload = {
        "version": FEATURE_VERSION,
        "schemas": {n: dataset_schema(n, horizons).to_string(show_schema_metadata=False) for n in SCHEMAS},
        "registry": feature_registry(horizons),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
