"""Issue #5's forecast-side fixes for the replay: unconstrained censored days, window calibration, expiring stock."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting import uncertainty as unc
from forecasting.inventory.policy import batches_on_hand, usable_on_hand
from training.data import UnconstrainRule, share_before_stockout, unconstrain_censored

# ---- expiring stock (FIFO age of the on hand) -----------------------------------------------------------------------

POS = date(2025, 3, 10)  # end of the day before the order date (the 11th)


def test_the_on_hand_is_matched_to_the_newest_receipts():
    rec = {POS - timedelta(days=2): 6.0, POS: 6.0}  # received the 8th (sells 8..10) and the 10th (sells 10..12)
    assert batches_on_hand(8.0, rec, POS, 3) == [(POS, 2.0), (POS + timedelta(days=2), 6.0)]
    assert batches_on_hand(5.0, rec, POS, 3) == [(POS + timedelta(days=2), 5.0)]
    older = batches_on_hand(10.0, {POS - timedelta(days=1): 4.0}, POS, 3)  # 6 older than the only receipt known
    assert {d for d, _ in older} == {POS + timedelta(days=1)} and sum(q for _, q in older) == pytest.approx(10.0)
    assert batches_on_hand(10.0, None, POS, 3) == [(None, 10.0)]  # receipts unknown: age unknown
    assert batches_on_hand(10.0, {POS + timedelta(days=1): 50.0}, POS, 3) == [(None, 10.0)]  # not in the count yet


def test_stock_expiring_before_the_delivery_counts_only_up_to_the_sales_until_then():
    rec = {POS - timedelta(days=2): 6.0, POS: 6.0}
    delivery = POS + timedelta(days=2)  # ordered on the 11th for the 12th
    # 2 units sell until the 10th (expire before the delivery), 6 until the 12th (count in full)
    assert usable_on_hand(8.0, rec, POS, 3, delivery, sells_before=3.0) == (pytest.approx(8.0), pytest.approx(2.0))
    assert usable_on_hand(8.0, rec, POS, 3, delivery, sells_before=0.5) == (pytest.approx(6.5), pytest.approx(2.0))
    assert usable_on_hand(8.0, rec, POS, 10, delivery, sells_before=0.5) == (8.0, 0.0)  # keeps past the delivery
    assert usable_on_hand(8.0, None, POS, 3, delivery, sells_before=0.5) == (8.0, 0.0)  # age unknown: trusted


# ---- unconstraining censored days -----------------------------------------------------------------------------------


def _profile(open_h: int = 7, close_h: int = 19) -> pd.DataFrame:
    shares = np.zeros(24)
    shares[open_h:close_h] = 1.0 / (close_h - open_h)
    return pd.DataFrame([shares] * 7, index=pd.MultiIndex.from_product([[1], range(7)], names=["store_id", "dow"]),
                        columns=range(24))


def test_share_before_stockout_from_the_last_open_hours():
    day = pd.Timestamp("2025-03-03")
    daily = pd.DataFrame({"store_id": 1, "date": [day] * 4, "censored": [True, True, True, False],
                          "stockout_hours": [3.0, 1.5, 0.0, 0.0]})
    share = share_before_stockout(daily, _profile())  # 12 flat open hours
    assert share.iloc[0] == pytest.approx(9 / 12)
    assert share.iloc[1] == pytest.approx(10.5 / 12)
    assert np.isnan(share.iloc[2]) and np.isnan(share.iloc[3])  # no stockout time / not censored


def test_unconstrained_days_are_scaled_up_and_weighted_early_stockouts_imputed_with_weight_zero():
    ds = pd.date_range("2025-01-06", periods=36, freq="D")
    y = np.full(36, 10.0)
    cens = np.zeros(36, dtype=bool)
    cens[[29, 35]] = True
    y[29], y[35] = 6.0, 1.0  # out at 60% of the day's demand; out by 10% of it
    df = pd.DataFrame({"unique_id": "1_1", "ds": ds, "y": y, "censored": cens})
    share = pd.Series(np.where(cens, 0.0, np.nan))
    share.iloc[29], share.iloc[35] = 0.6, 0.1
    target, weight = unconstrain_censored(df, share, UnconstrainRule(min_share=0.3, weight=0.5))
    assert target.iloc[29] == pytest.approx(10.0) and weight.iloc[29] == 0.5
    assert target.iloc[35] == pytest.approx(10.0) and weight.iloc[35] == 0.0  # the weekday mean, not 1 / 0.1
    assert (weight[~cens] == 1.0).all() and (target[~cens] == y[~cens]).all()
    old, w0 = unconstrain_censored(df, share, UnconstrainRule(min_share=0.0))  # switched off: imputation only
    assert (w0[cens] == 0.0).all() and old.iloc[29] == pytest.approx(10.0)


# ---- window calibration ---------------------------------------------------------------------------------------------


def _windows(n: int, level: float, rng: np.random.Generator, b: float = 0.02, alpha: float = 0.1):
    mu = rng.uniform(1, 8, (n, 7))
    lev = rng.gamma(1 / b, b, (n, 1))
    a = (alpha - b) / (1 + b)
    y = rng.poisson(level * mu * lev * rng.gamma(1 / a, a, mu.shape))
    return y.sum(1), mu.sum(1), (mu**2).sum(1)


def test_window_calibration_corrects_the_level_and_covers_the_service_level():
    rng = np.random.default_rng(3)
    a1, m1, q1 = _windows(3000, 1.2, rng)  # food: the model says 100, the latent demand is 120
    a2, m2, q2 = _windows(3000, 1.0, rng)  # drinks: right
    groups = np.array(["food"] * 3000 + ["drinks"] * 3000)
    cal = unc.fit_window_calibration(np.r_[a1, a2], np.r_[m1, m2], np.r_[q1, q2], groups, 0.1)
    assert cal["food"][0] == pytest.approx(1.2, abs=0.02) and cal["drinks"][0] == pytest.approx(1.0, abs=0.02)
    # held-out windows: raw coverage of the 95% quantile is far too low for food, calibrated it is about 95%
    h_a, h_m, h_q = _windows(4000, 1.2, rng)
    raw = unc.window_coverage(h_a, h_m, h_q, 0.1, 0.0, 0.95)
    f, b = cal["food"]
    alpha, shared = unc.raise_shared(np.full(4000, 0.1), np.zeros(4000), b)
    fixed = unc.window_coverage(h_a, f * h_m, f * f * h_q, alpha, shared, 0.95)
    assert raw < 0.8 and fixed == pytest.approx(0.95, abs=0.02)


def test_small_segments_shrink_towards_one_and_factors_are_bounded():
    rng = np.random.default_rng(4)
    a, m, q = _windows(3, 2.0, rng)
    cal = unc.fit_window_calibration(a, m, q, np.array(["new"] * 3), 0.1, prior_units=500.0, bounds=(0.7, 1.5))
    assert 1.0 < cal["new"][0] < 1.5  # ~100 units of evidence against 500 of prior
    big = unc.fit_window_calibration(*_windows(2000, 3.0, rng), np.array(["x"] * 2000), 0.1, bounds=(0.7, 1.5))
    assert big["x"][0] == 1.5


def test_raise_shared_keeps_the_daily_noise_and_never_lowers_the_level_variance():
    alpha, b = unc.raise_shared(np.array([0.3, 0.3]), np.array([0.05, 0.2]), np.array([0.1, 0.1]))
    a_before = (0.3 - 0.05) / 1.05
    assert b.tolist() == [0.1, 0.2]
    assert (alpha[0] - b[0]) / (1 + b[0]) == pytest.approx(a_before)
    assert alpha[1] == pytest.approx(0.3)


# ---- a level shared by the products of a store ----------------------------------------------------------------------


def test_store_dispersion_correlates_products_and_keeps_each_products_marginal():
    from forecasting.inventory.material_demand import draw_product_samples

    days = pd.date_range("2025-03-03", periods=5, freq="D")
    fc = pd.DataFrame([(1, p, d, 4.0) for p in range(1, 41) for d in days],
                      columns=["store_id", "product_id", "date", "mean"])
    fc["dispersion"], fc["shared_dispersion"] = 0.2, 0.05
    n = 4000
    indep = draw_product_samples(fc, n, seed=1).samples[0].sum(axis=1)  # (P, n) window totals per product
    both = draw_product_samples(fc.assign(store_dispersion=0.04), n, seed=1).samples[0].sum(axis=1)
    m_p = 20.0  # 5 days x 4
    # a product's window variance stays ~ as fitted: M + alpha Q + b (M^2 - Q) with the product's own b
    expected = unc.window_variance(np.full(5, 4.0), 0.2, 0.05)
    assert both.var(axis=1).mean() == pytest.approx(expected, rel=0.1)
    assert indep.var(axis=1).mean() == pytest.approx(expected, rel=0.1)
    # the store total: independent levels average out, the store level adds c (M^2 - sum M_p^2)
    tot_i, tot_s = indep.sum(axis=0).var(), both.sum(axis=0).var()
    extra = 0.04 * ((40 * m_p) ** 2 - 40 * m_p**2)
    assert tot_s - tot_i == pytest.approx(extra, rel=0.25)


def test_fit_common_variance_recovers_a_store_level():
    rng = np.random.default_rng(8)
    w, p = 3000, 30
    mu = rng.uniform(5, 15, (w, p))
    level = rng.gamma(1 / 0.03, 0.03, (w, 1))
    y = rng.poisson(mu * level)
    c = unc.fit_common_variance(y.sum(1), mu.sum(1), mu.sum(1), (mu**2).sum(1))
    assert c == pytest.approx(0.03, abs=0.006)
