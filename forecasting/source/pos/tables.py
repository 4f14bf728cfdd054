"""Turn validated sale lines into source-schema rows: stores, products, orders, items (and identity materials).

Why derived this way: a POS log only records sales, so master data is inferred from them (a store opens on its
first sale, a product launches on its first sale, its list price is the price it usually sold at) and the
replenishment side gets one material per product so downstream stages run without recipes. Ids are the source's
own integers, or dense ids from the stored key map (``keys.py``) for text keys.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from forecasting.errors import DataError
from forecasting.source.pos.calendar import META_COUNTRY, META_SUBDIV
from forecasting.source.pos.keys import KeyMap
from forecasting.source.pos.mapping import PosMapping
from forecasting.source.pos.reader import ValidatedLog

INT32_MAX = 2**31 - 1
INT63_MAX = 2**63 - 1


def _mode(df: pd.DataFrame, key: str, value: str) -> pd.Series:
    """The most frequent value per key (ties: the smallest), ignoring empty values."""
    d = df.loc[df[value] != "", [key, value]] if df[value].dtype != float else df[[key, value]]
    counts = d.groupby([key, value], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values([key, "n", value], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates(key).set_index(key)[value]


def build_tables(log: ValidatedLog, m: PosMapping, source_file: str, keys: KeyMap | None = None
                 ) -> dict[str, pd.DataFrame]:
    """Logical table name -> rows (columns named as in ``forecasting.source.schema``); ``source_keys``: the new key
    map rows."""
    keys = keys or KeyMap()
    ln = log.lines.copy()
    ln["store_id"] = keys.ids(ln["store"], "store", INT32_MAX)
    ln["product_id"] = keys.ids(ln["product"], "product", INT32_MAX)
    ln["order_id"] = keys.ids(ln["order_key"], "order", INT63_MAX)
    ln["local_date"] = ln["local_ts"].dt.normalize()
    ln["hour"] = ln["local_ts"].dt.hour
    ln["unit_price"] = ln["unit_price"].round(2)

    g = ln.groupby("store_id", sort=True)
    stores = pd.DataFrame({"open_date": g["local_date"].min(), "open_hour": g["hour"].min(),
                           "close_hour": g["hour"].max() + 1, "source_key": g["store"].first()})
    names = _mode(ln, "store_id", "store_name").reindex(stores.index)
    stores["store_name"] = names.fillna("Store " + stores["source_key"]).str.slice(0, 100)
    if m.open_hour is not None:
        stores["open_hour"] = m.open_hour
    if m.close_hour is not None:
        stores["close_hour"] = m.close_hour
    stores["close_date"] = pd.NaT
    stores["timezone"] = m.timezone
    stores = stores.reset_index()[["store_id", "store_name", "open_date", "close_date", "timezone", "open_hour",
                                   "close_hour"]]

    g = ln.groupby("product_id", sort=True)
    products = pd.DataFrame({"launch_date": g["local_date"].min(), "source_key": g["product"].first()})
    products["product_name"] = _mode(ln, "product_id", "product_name").reindex(products.index).fillna(
        "Product " + products["source_key"]).str.slice(0, 100)
    products["category"] = _mode(ln, "product_id", "category").reindex(products.index).fillna(
        "uncategorized").str.slice(0, 50)
    products["subcategory"] = _mode(ln, "product_id", "subcategory").reindex(products.index).fillna("")
    products["list_price"] = _mode(ln, "product_id", "unit_price").reindex(products.index)
    products["is_drink"] = m.is_drink.apply(products[m.is_drink.field]).astype(bool) if m.is_drink else False
    products["is_iced"] = m.is_iced.apply(products[m.is_iced.field]).astype(object) if m.is_iced else None
    retire = products["source_key"].map(m.retire_dates)
    products["retire_date"] = pd.to_datetime(retire)
    products = products.reset_index()[["product_id", "product_name", "category", "is_drink", "is_iced",
                                       "launch_date", "retire_date", "list_price"]]

    g = ln.groupby("order_id", sort=False)
    orders = pd.DataFrame({"store_id": g["store_id"].first(), "created_at": g["utc_ts"].min(),
                           "pay_amount": g["amount"].sum().round(2)}).reset_index()
    orders = orders.sort_values(["created_at", "order_id"], kind="stable")
    orders["completed_at"] = orders["created_at"]
    orders["user_id"] = None
    orders["channel"] = "other"
    orders["status"] = "completed"
    orders["currency"] = m.currency
    orders["production_seconds"] = None

    items = pd.DataFrame({
        "order_id": ln["order_id"],
        "line_no": ln.groupby("order_id", sort=False).cumcount() + 1,
        "product_id": ln["product_id"],
        "quantity": ln["quantity"],
        "unit_price": ln["unit_price"],
        "discount": 0.0,
    })
    if items["line_no"].max() > 32767:
        raise DataError(f"{log.name}: a transaction has more than 32767 lines; check columns.transaction_id")

    out = {"stores": stores, "products": products, "orders": orders, "order_items": items}
    if m.materials.mode == "identity":
        s = m.materials.supplier
        out["suppliers"] = pd.DataFrame([{"supplier_id": s.supplier_id, "supplier_name": s.name,
                                          "lead_time_days": s.lead_time_days,
                                          "delivery_weekdays": s.delivery_weekdays, "order_cutoff": s.order_cutoff}])
        out["materials"] = pd.DataFrame({
            "material_id": products["product_id"], "material_name": products["product_name"],
            "unit": m.materials.unit, "pack_size": 1.0, "shelf_life_days": None, "is_perishable": False,
            "storage_class": "ambient", "supplier_id": s.supplier_id, "unit_cost": None,
        })
        out["bom"] = pd.DataFrame({"product_id": products["product_id"], "material_id": products["product_id"],
                                   "qty_per_unit": 1.0})
    first, last = ln["local_date"].min(), ln["local_date"].max()
    meta = {
        "source_kind": "pos",
        "pos_source": m.name,
        "pos_file": source_file,
        "pos_imported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pos_rows_read": str(log.rows_read),
        "pos_rows_loaded": str(len(ln)),
        "pos_rows_rejected": str(log.rows_rejected),
        "period_start": first.date().isoformat(),
        "period_end": last.date().isoformat(),
        "timezone": m.timezone,
        "currency": m.currency,
        "materials": m.materials.mode,
    }
    if m.holidays is not None:
        meta[META_COUNTRY] = m.holidays.country
        meta[META_SUBDIV] = m.holidays.subdivision or ""
    out["meta"] = pd.DataFrame({"key": list(meta), "value": list(meta.values())})
    out["source_keys"] = keys.rows()
    return out
