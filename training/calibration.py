"""Window calibration learned by ``train`` from the backtest, stored with the model and applied by the batch forecast.

Why: the replenishment engine orders on the quantile of a window's total (review period + lead time), not on daily
means. A model that is biased on a group of series (ready food under-forecast because its history is censored, a
new seasonal drink) gets tight windows around the wrong level, and the order-up-to misses; and the products of a
store share a level (footfall), which independent per-product noise averages away in a material's total. Both are
measured on the backtest's out-of-sample windows and corrected with ``forecasting.uncertainty``'s pure functions:

* a level factor and a shared level variance per product (shrunk towards 1 by ``prior_units`` pseudo-units, so a
  product with little evidence stays as forecast; ``fit_window_calibration``);
* a level variance common to a store's *pooled* products (those that share a material with many others), fitted
  on store totals (``fit_common_variance``). In the default catalog that is every product (napkins and order labels
  go with each item: footfall moves drinks and food alike); on a source without a bill of materials (a POS import,
  materials = products one to one) no product is pooled and each keeps its own level.

The replay in ``planning/simulate.py`` fits the same corrections the same way on the windows before its period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecasting import uncertainty as unc
from forecasting.config import WindowCalibrationConfig

POOLED_MIN_PRODUCTS = 5  # a material used by at least this many products makes its products share a store level


@dataclass
class WindowCalibration:
    """Per product: (level factor, shared variance); the store-level variance of pooled products."""

    factors: dict[int, tuple[float, float]] = field(default_factory=dict)
    store_dispersion: float = 0.0
    pooled: frozenset[int] = frozenset()
    windows: int = 0

    def apply(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Rows with ``product_id, mean, dispersion, shared_dispersion``: the calibrated mean, the raised shared
        variance and a ``store_dispersion`` column (0 for products that do not share their store's level)."""
        out = rows.copy()
        pid = out["product_id"].astype(int)
        f, b = factor_arrays(self.factors, pid)
        alpha, shared = unc.raise_shared(out["dispersion"].to_numpy(float), out["shared_dispersion"].to_numpy(float), b)
        out["mean"] = out["mean"].to_numpy(float) * f
        out["dispersion"], out["shared_dispersion"] = alpha, shared
        out["store_dispersion"] = np.where(pid.isin(self.pooled), self.store_dispersion, 0.0)
        return out

    def to_dict(self) -> dict:
        """JSON form (MLflow artifact ``model/calibration.json``)."""
        return {"factors": {str(k): [round(f, 5), round(b, 6)] for k, (f, b) in sorted(self.factors.items())},
                "store_dispersion": round(self.store_dispersion, 6), "pooled_products": sorted(self.pooled),
                "windows": self.windows}


def pooled_products(bom: pd.DataFrame | None, min_products: int = POOLED_MIN_PRODUCTS) -> frozenset[int]:
    """Products that use a material shared by at least ``min_products`` products (drinks: beans, milk, cups)."""
    if bom is None or bom.empty:
        return frozenset()
    users = bom.groupby("material_id")["product_id"].nunique()
    shared = users[users >= min_products].index
    return frozenset(int(p) for p in bom.loc[bom["material_id"].isin(shared), "product_id"].unique())


def window_table(preds: pd.DataFrame, frame_df: pd.DataFrame, col: str, params: dict[str, tuple[float, float]],
                 window_days: int) -> pd.DataFrame:
    """Complete windows (horizons 1..``window_days``) of out-of-sample rows ``unique_id, store_id, product_id, ds,
    cutoff, horizon, segment, <col>``: latent actual ``A`` (``y_filled``: censored days unconstrained, so stockouts do
    not teach the correction the bias it is meant to remove), sum ``M`` and square sum ``Q`` of the daily means, and
    the segment's NB ``alpha`` / ``shared``."""
    rows = preds[(preds["horizon"] >= 1) & (preds["horizon"] <= window_days)]
    if "y_filled" not in rows:
        rows = rows.merge(frame_df[["unique_id", "ds", "y_filled"]], on=["unique_id", "ds"], how="inner")
    win = (rows.assign(mu2=rows[col] ** 2)
           .groupby(["unique_id", "cutoff"], as_index=False)
           .agg(store_id=("store_id", "first"), product_id=("product_id", "first"), A=("y_filled", "sum"),
                M=(col, "sum"), Q=("mu2", "sum"), n=("ds", "size"), segment=("segment", "first")))
    win = win[win["n"] == window_days].reset_index(drop=True)
    fallback = params.get("all", (0.3, 0.0))
    p = win["segment"].map(lambda s: params.get(s, fallback))
    win["alpha"] = [float(a) for a, _ in p]
    win["shared"] = [float(min(b, a)) for a, b in p]
    if f"{col}_alpha" in rows:  # the dispersion each origin had, fitted on windows before it: out of sample
        own = rows.groupby(["unique_id", "cutoff"])[[f"{col}_alpha", f"{col}_shared"]].first()
        key = pd.MultiIndex.from_frame(win[["unique_id", "cutoff"]])
        win["alpha"] = own[f"{col}_alpha"].reindex(key).fillna(pd.Series(win["alpha"].to_numpy(), index=key)).to_numpy()
        b = own[f"{col}_shared"].reindex(key).to_numpy()
        win["shared"] = np.where(np.isfinite(b), np.minimum(b, win["alpha"]), win["shared"])
    return win


def fit_windows(win: pd.DataFrame, cfg: WindowCalibrationConfig, pooled: frozenset[int]) -> WindowCalibration:
    """Product factors and the store level of ``pooled`` products from a ``window_table``."""
    if win.empty:
        return WindowCalibration()
    A, M, Q, alpha, base_b = (win[c].to_numpy(float) for c in ("A", "M", "Q", "alpha", "shared"))
    fitted = unc.fit_window_calibration(A, M, Q, win["product_id"].astype(int).to_numpy(), alpha, cfg.prior_units,
                                        (cfg.min_factor, cfg.max_factor))
    factors = {int(k): v for k, v in fitted.items()}
    pooled = pooled & frozenset(int(x) for x in win["product_id"].unique())
    store_c = 0.0
    if pooled:
        f, b = factor_arrays(factors, win["product_id"])
        al2, b2 = unc.raise_shared(alpha, base_b, b)
        m2, q2 = f * M, f * f * Q
        per = pd.DataFrame({"store_id": win["store_id"].to_numpy(), "cutoff": win["cutoff"].to_numpy(), "A": A,
                            "M": m2, "V": unc.moment_variance(m2, q2, al2, b2), "P2": m2 * m2})
        per = per[win["product_id"].isin(pooled).to_numpy()]
        st = per.groupby(["store_id", "cutoff"])[["A", "M", "V", "P2"]].sum()
        store_c = unc.fit_common_variance(st["A"], st["M"], st["V"], st["P2"])
    return WindowCalibration(factors, store_c, pooled, int(len(win)))


def factor_arrays(factors: dict[int, tuple[float, float]], product_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(level factor, shared variance) per row; 1 and 0 for products without a fitted factor."""
    pid = product_ids.astype(int)
    return (pid.map(lambda k: factors.get(k, (1.0, 0.0))[0]).to_numpy(float),
            pid.map(lambda k: factors.get(k, (1.0, 0.0))[1]).to_numpy(float))


def fit_calibration(preds: pd.DataFrame, frame_df: pd.DataFrame, col: str,
                    params: dict[str, tuple[float, float]], cfg: WindowCalibrationConfig,
                    bom: pd.DataFrame | None = None) -> WindowCalibration:
    """``window_table`` + ``fit_windows``: what ``train`` stores with the model."""
    return fit_windows(window_table(preds, frame_df, col, params, cfg.window_days), cfg, pooled_products(bom))
