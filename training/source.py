"""What the backtest reads from the source database besides the feature store: BOM, ground truth, incumbent records.

Each is optional: a plain POS import has neither ground truth nor incumbent records, and then the backtest simply
has no ``oracle`` / ``incumbent_records`` entries. The truth is read for evaluation only, never for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, select

from forecasting.source.db import existing_tables, table_columns
from forecasting.source.schema import SourceSchema


@dataclass
class EvalSources:
    bom: pd.DataFrame | None = None  # product_id, material_id, qty_per_unit[, unit_cost]
    truth: pd.DataFrame | None = None  # store_id, product_id, ds, expected_qty[, realised_qty]
    incumbent: pd.DataFrame | None = None  # store_id, material_id, issued_on, ds, predicted_qty
    stores: dict[int, str] | None = None  # store_id -> store name, for plot titles people can read
    products: dict[int, str] | None = None  # product_id -> product name
    truth_alpha: float | None = None  # NB alpha of the truth's daily noise (generator meta): the oracle's spread
    truth_hourly: pd.DataFrame | None = None  # store_id, date, local_hour, share: the truth's hourly profile
    hourly: pd.DataFrame | None = None  # the feature store's hourly panel (observed), for the hour-level scores


def _read(engine: Engine, stmt) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(stmt, conn)


def load_eval_sources(engine: Engine, schema: SourceSchema, since: pd.Timestamp | None = None) -> EvalSources:
    """Tables that exist and hold rows; ``since`` limits truth and incumbent rows to the evaluated dates."""
    have = set(existing_tables(engine, schema))
    out = EvalSources()
    for key, table, id_col, name_col in (("stores", "stores", "store_id", "store_name"),
                                         ("products", "products", "product_id", "product_name")):
        if table in have:
            t = schema[table]
            names = _read(engine, select(t.c[id_col], t.c[name_col]))
            setattr(out, key, {int(i): str(n) for i, n in names.itertuples(index=False)} or None)
    if "bom" in have:
        t = schema["bom"]
        bom = _read(engine, select(t.c.product_id, t.c.material_id, t.c.qty_per_unit))
        if len(bom) and "materials" in have and "unit_cost" in table_columns(engine, schema, "materials"):
            m = schema["materials"]
            cost = _read(engine, select(m.c.material_id, m.c.unit_cost))
            bom = bom.merge(cost, on="material_id", how="left")  # material error in $ at cost
        out.bom = bom if len(bom) else None
    if "demand_truth" in have:
        t = schema["demand_truth"]
        cols = [t.c.store_id, t.c.product_id, t.c.date, t.c.expected_qty]
        if "realised_qty" in table_columns(engine, schema, "demand_truth"):
            cols.append(t.c.realised_qty)  # realised demand before censoring (newer generator versions)
        stmt = select(*cols)
        if since is not None:
            stmt = stmt.where(t.c.date > since.date())
        truth = _read(engine, stmt)
        if len(truth):
            truth["ds"] = pd.to_datetime(truth.pop("date"))
            out.truth = truth
        if "demand_truth_hourly" in have:
            t = schema["demand_truth_hourly"]
            stmt = select(t.c.store_id, t.c.date, t.c.local_hour, t.c.share)
            if since is not None:
                stmt = stmt.where(t.c.date > since.date())
            th = _read(engine, stmt)
            out.truth_hourly = th if len(th) else None
        if "meta" in have:
            t = schema["meta"]
            alpha = _read(engine, select(t.c.value).where(t.c.key == "truth_nb_alpha"))
            out.truth_alpha = float(alpha["value"].iloc[0]) if len(alpha) else None
    if "replenishment_forecasts" in have:
        t = schema["replenishment_forecasts"]
        stmt = select(t.c.store_id, t.c.material_id, t.c.issued_on, t.c.target_date, t.c.predicted_qty)
        if since is not None:
            stmt = stmt.where(t.c.target_date > since.date())
        inc = _read(engine, stmt)
        if len(inc):
            inc["ds"] = pd.to_datetime(inc.pop("target_date"))
            inc["issued_on"] = pd.to_datetime(inc["issued_on"])
            out.incumbent = inc
    return out
