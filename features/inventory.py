"""The ireplenishment history: on-hand, deliveries, waste, incumbent forecasts, stockouts, and censoring.

Why censoring matters: on a day a needed material ran out, recorded sales understate demand. Flagging those
store x product x days lets training drop or down-weight them instead of learning the shortage as low demand.
A product-day is censored when any material in its bill of materials shows a stockout that day
(``stockout_hours > 0`` or counted on-hand at/below zero). Without the ireplenishment tables nothing is censored.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from features import extract
from features.registry import dataset_schema, incumbent_column

INV_KEYS = ["store_id", "material_id", "date"]


def has_inventory(src: extract.Source) -> bool:
    return src.has("inventory_snapshots")


def empty_inventory(horizons: list[int]) -> pd.DataFrame:
    return dataset_schema("inventory_daily", horizons).empty_table().to_pandas()


def inventory_daily(conn: Connection, src: extract.Source, d0: date, d1: date, horizons: list[int]) -> pd.DataFrame:
    """store x material x date in [d0, d1]: snapshot, receipts, orders placed and incumbent forecasts, outer-joined."""
    if not has_inventory(src):
        return empty_inventory(horizons)
    parts = [extract.inventory_rows(conn, src, d0, d1)]
    if src.has("replenishment_orders"):
        parts += [extract.receipts(conn, src, d0, d1), extract.orders_placed(conn, src, d0, d1)]
    if src.has("replenishment_forecasts") and horizons:
        fc = extract.incumbent_forecasts(conn, src, d0, d1, horizons)
        fc["h"] = fc["h"].astype(int).map(incumbent_column)
        parts.append(fc.pivot_table(index=INV_KEYS, columns="h", values="predicted_qty", aggfunc="mean")
                     .reset_index())
    out = None
    for p in parts:
        p = p.astype({"store_id": "int32", "material_id": "int32"})
        out = p if out is None else out.merge(p, on=INV_KEYS, how="outer")
    schema = dataset_schema("inventory_daily", horizons)
    for name in schema.names:
        if name not in out.columns:
            out[name] = np.nan
    for c in schema.names[3:]:
        if c != "stockout":
            out[c] = pd.to_numeric(out[c]).astype("float64")
    for c in ("received", "ordered"):
        out[c] = out[c].fillna(0.0)
    out["stockout_hours"] = out["stockout_hours"].astype("float32")
    out["stockout"] = (out["stockout_hours"].fillna(0) > 0) | (out["on_hand"] <= 0)  # NaN on_hand: not counted
    return out[schema.names].sort_values(INV_KEYS, ignore_index=True)


def censor_flags(inv: pd.DataFrame, bom: pd.DataFrame) -> pd.DataFrame:
    """(store_id, product_id, date, stockout_hours) for product-days with a stocked-out material."""
    out = inv.loc[inv["stockout"], INV_KEYS + ["stockout_hours"]].merge(bom[["product_id", "material_id"]],
                                                                       on="material_id")
    out["stockout_hours"] = out["stockout_hours"].fillna(0).astype("float32")
    return out.groupby(["store_id", "product_id", "date"], sort=False)["stockout_hours"].max().reset_index()


def apply_censoring(panel: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """Add ``censored`` (and ``stockout_hours`` for daily panels) by store x product x date."""
    out = panel.merge(flags, on=["store_id", "product_id", "date"], how="left")
    out["censored"] = out["stockout_hours"].notna()
    out["stockout_hours"] = out["stockout_hours"].fillna(0).astype("float32")
    return out
