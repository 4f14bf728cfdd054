"""The ``twoway`` candidate (training.twoway): top-down store x product forecasts from LightGBM's own forecasts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.config import TrainingConfig
from training.blend import CANDIDATES
from training.data import to_model_frame
from training.forecaster import DemandForecaster, assemble, needs
from training.synthetic import synthetic_daily, synthetic_manifest
from training.twoway import affinity, twoway_forecast, twoway_part

CUTOFF = pd.Timestamp("2026-01-31")


def multiplicative(n_stores: int = 10, n_products: int = 10, hist: int = 56, h: int = 14, seed: int = 0):
    """History drawn (Poisson) from an exactly multiplicative truth store x product x day x affinity, and the
    truth of the ``h`` days after it."""
    rng = np.random.default_rng(seed)
    store = rng.uniform(0.6, 1.6, n_stores)
    prod = rng.uniform(2.0, 12.0, n_products)
    aff = rng.lognormal(0.0, 0.3, (n_stores, n_products))
    days = pd.date_range(end=CUTOFF + pd.Timedelta(days=h), periods=hist + h, freq="D")
    day = 1.0 + 0.3 * np.sin(np.arange(len(days)) * 2 * np.pi / 7)
    rows = []
    for s in range(n_stores):
        for p in range(n_products):
            mu = store[s] * prod[p] * aff[s, p] * day
            rows.append(pd.DataFrame({"unique_id": f"{s}_{p}", "store_id": s, "product_id": p, "ds": days,
                                      "mu": mu, "y": rng.poisson(mu).astype(float)}))
    df = pd.concat(rows, ignore_index=True)
    df["y_filled"] = df["y"]
    return df[df["ds"] <= CUTOFF].reset_index(drop=True), df[df["ds"] > CUTOFF].reset_index(drop=True)


def test_multiplicative_truth_is_recovered_better_than_noisy_series_levels():
    hist, fut = multiplicative()
    rng = np.random.default_rng(1)
    ids = sorted(hist["unique_id"].unique())
    level_error = pd.Series(rng.lognormal(0.0, 0.25, len(ids)), index=ids)  # a noisy level per series
    lg = fut[["unique_id", "ds"]].assign(lightgbm=fut["mu"] * fut["unique_id"].map(level_error).to_numpy())
    tw = twoway_part(hist, lg, ids, CUTOFF, window_days=56, shrink_units=0.0, min_days=14)
    got = fut.merge(tw, on=["unique_id", "ds"]).merge(lg, on=["unique_id", "ds"])
    assert len(got) == len(fut)
    wape = {m: (got[m] - got["mu"]).abs().sum() / got["mu"].sum() for m in ("twoway", "lightgbm")}
    assert wape["twoway"] < 0.6 * wape["lightgbm"], wape
    # with exact aggregates the only error left is the affinity's estimate from 56 days of Poisson history
    exact = fut[["unique_id", "ds"]].assign(lightgbm=fut["mu"].to_numpy())
    tw0 = twoway_part(hist, exact, ids, CUTOFF, 56, 0.0, 14).merge(fut, on=["unique_id", "ds"])
    assert (tw0["twoway"] - tw0["mu"]).abs().sum() / tw0["mu"].sum() < 0.06


def test_affinity_is_shrunk_towards_one_with_little_history():
    hist, _ = multiplicative(n_stores=3, n_products=3, seed=2)
    ids = sorted(hist["unique_id"].unique())
    hist = hist.copy()
    hist.loc[hist["unique_id"] == "0_0", "y_filled"] *= 3.0  # a strong affinity for this series
    hist.loc[hist["unique_id"] == "0_0", "y"] *= 3.0
    long = affinity(hist, ids, CUTOFF, 56, shrink_units=20.0).loc["0_0", "affinity"]
    short_hist = hist[~((hist["unique_id"] == "0_0") & (hist["ds"] <= CUTOFF - pd.Timedelta(days=3)))]
    short = affinity(short_hist, ids, CUTOFF, 56, shrink_units=20.0).loc["0_0"]
    raw = affinity(short_hist, ids, CUTOFF, 56, shrink_units=0.0).loc["0_0", "affinity"]
    assert short["days"] == 3
    assert long > 1.3  # enough history: the affinity shows (the series is part of its own totals, so < 3)
    assert 1.0 < short["affinity"] < long  # three days: pulled towards 1 ...
    assert short["affinity"] < raw  # ... from the unshrunk ratio
    # no prior, no shrinkage: a series with obs == exp has affinity exactly 1
    flat = affinity(hist.assign(y_filled=1.0), ids, CUTOFF, 56, shrink_units=0.0)
    assert np.allclose(flat["affinity"], 1.0)


def test_new_series_keeps_lightgbm_and_dead_series_get_zero():
    hist, fut = multiplicative(n_stores=3, n_products=3, seed=3)
    ids = sorted(hist["unique_id"].unique())
    hist = hist[~((hist["unique_id"] == "1_1") & (hist["ds"] <= CUTOFF - pd.Timedelta(days=5)))].copy()  # new
    hist.loc[hist["unique_id"] == "2_2", ["y", "y_filled"]] = 0.0  # no sale over the window: dead
    lg = fut[["unique_id", "ds"]].assign(lightgbm=fut["mu"].to_numpy() * 1.3)
    tw = twoway_part(hist, lg, ids, CUTOFF, 56, 20.0, 14).merge(lg, on=["unique_id", "ds"])
    new = tw[tw["unique_id"] == "1_1"]
    assert np.allclose(new["twoway"], new["lightgbm"])
    assert (tw.loc[tw["unique_id"] == "2_2", "twoway"] == 0).all()
    other = tw[~tw["unique_id"].isin(["1_1", "2_2"])]
    assert (other["twoway"] > 0).all() and not np.allclose(other["twoway"], other["lightgbm"])


def test_closed_store_day_stays_zero():
    hist, fut = multiplicative(n_stores=2, n_products=2, seed=4)
    ids = sorted(hist["unique_id"].unique())
    lg = fut[["unique_id", "ds"]].assign(lightgbm=fut["mu"].to_numpy())
    closed = (lg["unique_id"].str.startswith("0_")) & (lg["ds"] == lg["ds"].min())
    lg.loc[closed, "lightgbm"] = 0.0
    tw = twoway_forecast(lg, hist.drop_duplicates("unique_id").set_index("unique_id"),
                         affinity(hist, ids, CUTOFF, 56, 20.0), 14)
    assert (tw.loc[closed.to_numpy(), "twoway"] == 0).all()
    assert (tw.loc[~closed.to_numpy(), "twoway"] > 0).all()


def test_twoway_is_a_candidate_built_in_the_one_assembly():
    assert "twoway" in CANDIDATES
    assert needs({"all": {"twoway": 1.0}})[0]  # LightGBM is fitted for it
    d = synthetic_daily(n_stores=3, n_products=6, days=120)
    fr = to_model_frame(d, synthetic_manifest(d))
    cfg = TrainingConfig()
    ids = sorted(fr.df.loc[fr.df["ds"] == fr.last_date, "unique_id"].unique())
    h = 7
    ds = fr.last_date + pd.to_timedelta(np.arange(1, h + 1), unit="D")
    lg = pd.DataFrame({"unique_id": np.repeat(ids, h), "ds": np.tile(ds, len(ids)), "lightgbm": 2.0})
    parts = assemble(fr, ids, h, cfg, lg, None)
    assert "twoway" in parts and parts["twoway"].notna().all()
    assert not np.allclose(parts["twoway"], parts["lightgbm"])  # the affinity moved it
    off = assemble(fr, ids, h, cfg.model_copy(update={"twoway": cfg.twoway.model_copy(update={"enabled": False})}),
                   lg, None)
    assert "twoway" not in off
    fc = DemandForecaster(cfg, "blend", weights={"all": {"twoway": 1.0}})
    out = fc.forecast(fr, h, lg, None, ids)
    got = out.merge(parts[["unique_id", "ds", "twoway", "off_menu"]], on=["unique_id", "ds"])
    served = np.where(got["off_menu"], 0.0, got["twoway"])
    assert got["mean"].to_numpy() == pytest.approx(served)
