"""Window calibration: fitted from out-of-sample windows, stored with the model, applied by the batch forecast."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.config import WindowCalibrationConfig
from training.calibration import WindowCalibration, fit_calibration, pooled_products

W = 7


def _oos(rng: np.random.Generator, bias: dict[int, float], stores=(1, 2, 3), origins=8, mean=20.0) -> tuple:
    """Out-of-sample rows of a model whose forecast is ``mean`` while latent demand is ``bias[p] x mean``, plus a
    store-wide level (footfall) shared by every product of a store and origin."""
    rows, frame = [], []
    for s in stores:
        for k in range(origins):
            cutoff = pd.Timestamp("2026-01-01") + pd.Timedelta(days=7 * k)
            level = rng.gamma(1 / 0.04, 0.04)  # store level, CV 20%
            for p, f in bias.items():
                uid = f"{s}_{p}"
                for h in range(1, W + 1):
                    ds = cutoff + pd.Timedelta(days=h)
                    rows.append((uid, s, p, ds, cutoff, h, "fast", mean))
                    frame.append((uid, ds, float(rng.poisson(mean * f * level))))
    preds = pd.DataFrame(rows, columns=["unique_id", "store_id", "product_id", "ds", "cutoff", "horizon", "segment",
                                        "final"])
    fdf = pd.DataFrame(frame, columns=["unique_id", "ds", "y_filled"]).drop_duplicates(["unique_id", "ds"])
    return preds, fdf


def test_factors_follow_the_bias_and_pooled_products_share_the_store_level():
    rng = np.random.default_rng(0)
    bias = {1: 1.3, 2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 9: 0.8}
    preds, fdf = _oos(rng, bias)
    # products 1..6 share material 100 (a drink base); 9 is ordered one to one
    bom = pd.DataFrame({"product_id": [1, 2, 3, 4, 5, 6, 9], "material_id": [100] * 6 + [109]})
    assert pooled_products(bom) == frozenset({1, 2, 3, 4, 5, 6})
    cal = fit_calibration(preds, fdf, "final", {"all": (0.01, 0.0)}, WindowCalibrationConfig(prior_units=100), bom)
    assert cal.windows == 3 * 8 * len(bias)
    f = {p: cal.factors[p][0] for p in bias}
    assert f[1] > 1.2 and f[9] < 0.87 and all(abs(f[p] - 1.0) < 0.08 for p in (2, 3, 4, 5, 6))
    assert cal.store_dispersion > 0.01  # the store level is real (CV 20%: c ~ 0.04)
    rows = pd.DataFrame({"product_id": [1, 9, 42], "mean": [10.0, 10.0, 10.0], "dispersion": [0.05] * 3,
                         "shared_dispersion": [0.0] * 3})
    out = cal.apply(rows)
    assert out["mean"].tolist() == [10.0 * f[1], 10.0 * f[9], 10.0]  # unknown product: as forecast
    assert out.loc[0, "store_dispersion"] == cal.store_dispersion and out.loc[1, "store_dispersion"] == 0.0
    assert (out["dispersion"] >= rows["dispersion"]).all()  # variance only ever raised


def test_unbiased_independent_series_stay_as_forecast():
    rng = np.random.default_rng(1)
    bias = {p: 1.0 for p in range(1, 7)}
    preds, fdf = _oos(rng, bias, stores=(1,), origins=6)
    fdf["y_filled"] = rng.poisson(20.0, len(fdf)).astype(float)  # no store level, no bias
    cal = fit_calibration(preds, fdf, "final", {"all": (0.01, 0.0)}, WindowCalibrationConfig(), None)
    assert all(abs(f - 1.0) < 0.06 for f, _ in cal.factors.values())
    assert cal.pooled == frozenset() and cal.store_dispersion == 0.0
    assert WindowCalibration().apply(pd.DataFrame({"product_id": [1], "mean": [3.0], "dispersion": [0.1],
                                                   "shared_dispersion": [0.0]}))["mean"].iloc[0] == 3.0


def test_window_table_uses_each_origins_own_out_of_sample_dispersion():
    """The backtest stores, per row, the dispersion its origin had (fitted on windows before it); the calibration
    is fitted around that, not around a dispersion fitted on the very windows it calibrates."""
    from training.calibration import window_table

    rng = np.random.default_rng(2)
    preds, fdf = _oos(rng, {1: 1.0, 2: 1.0}, stores=(1,), origins=3)
    preds["final_alpha"] = preds["cutoff"].rank(method="dense") / 10.0  # 0.1, 0.2, 0.3 by origin
    preds["final_shared"] = 0.5  # capped at alpha
    win = window_table(preds, fdf, "final", {"all": (0.9, 0.0)}, W)
    got = win.groupby("cutoff")["alpha"].first().to_numpy()
    np.testing.assert_allclose(got, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(win["shared"], win["alpha"])
    plain = window_table(preds.drop(columns=["final_alpha", "final_shared"]), fdf, "final", {"all": (0.9, 0.0)}, W)
    assert (plain["alpha"] == 0.9).all()
