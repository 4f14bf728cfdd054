"""Material demand from product forecasts: joint sample paths through the BOM, window totals, quantiles, speed."""

from __future__ import annotations

import time
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from forecasting.config import ReplenishmentConfig
from forecasting.errors import DataError
from forecasting.inventory.material_demand import (
    daily_material_summary,
    draw_product_samples,
    material_samples,
    sample_quantile,
    window_totals,
)

D0 = date(2025, 3, 3)


def forecast_frame(stores, products, days: int, mean_fn, dispersion: float = 0.0) -> pd.DataFrame:
    rows = [(s, p, D0 + timedelta(days=t)) for s in stores for p in products for t in range(days)]
    df = pd.DataFrame(rows, columns=["store_id", "product_id", "date"])
    df["mean"] = [mean_fn(s, p, (d - D0).days) for s, p, d in rows]
    df["dispersion"] = dispersion
    df["date"] = pd.to_datetime(df["date"])
    return df


def test_window_quantiles_match_poisson_sum():
    """Sum of independent Poissons is Poisson(sum of means): window quantiles must match it."""
    fc = forecast_frame([1], [10, 11], 7, lambda s, p, t: (3.0 if p == 10 else 1.5) + 0.5 * t)
    bom = pd.DataFrame({"product_id": [10, 11], "material_id": [1, 1], "qty_per_unit": [1.0, 1.0]})
    ps = draw_product_samples(fc, 20000, seed=1)
    ms = material_samples(ps, bom)
    tot, covered = window_totals(ms, np.array([1]), np.array([6]))  # days 1..5
    assert covered.tolist() == [5]
    lam = fc[fc["date"].between(pd.Timestamp(D0 + timedelta(days=1)), pd.Timestamp(D0 + timedelta(days=5)))][
        "mean"
    ].sum()
    assert tot[0, 0].mean() == pytest.approx(lam, rel=0.01)
    for q in (0.5, 0.9, 0.95, 0.99):
        assert abs(sample_quantile(tot[0, 0], q) - stats.poisson.ppf(q, lam)) <= 1


def test_window_quantile_is_not_the_sum_of_daily_quantiles():
    fc = forecast_frame([1], [10], 7, lambda s, p, t: 5.0, dispersion=0.3)
    bom = pd.DataFrame({"product_id": [10], "material_id": [1], "qty_per_unit": [2.0]})
    ms = material_samples(draw_product_samples(fc, 4000, seed=3), bom)
    tot, _ = window_totals(ms, np.array([0]), np.array([7]))
    window_q95 = sample_quantile(tot[0, 0], 0.95)
    daily = daily_material_summary(ms)
    assert len(daily) == 7 and (daily["q95"] >= daily["q50"]).all()
    assert window_q95 < 0.85 * daily["q95"].sum()
    assert window_q95 > tot[0, 0].mean()


def test_bom_multiplies_joint_paths_and_variance_matches_negative_binomial():
    alpha = 0.25
    fc = forecast_frame([1], [10, 11], 5, lambda s, p, t: 8.0, dispersion=alpha)
    bom = pd.DataFrame(
        {"product_id": [10, 10, 11], "material_id": [1, 2, 2], "qty_per_unit": [0.5, 1.0, 1.0]}
    )
    ps = draw_product_samples(fc, 20000, seed=5)
    ms = material_samples(ps, bom)
    # material 1 is exactly half of product 10 on every path and day (same random numbers)
    np.testing.assert_allclose(ms.samples[0, 0], 0.5 * ps.samples[0, 0])
    np.testing.assert_allclose(ms.samples[0, 1], ps.samples[0, 0] + ps.samples[0, 1])
    np.testing.assert_allclose(ms.mean[0, 1], 16.0)
    tot, _ = window_totals(ms, np.array([0, 0]), np.array([5, 5]))
    # independent NB days: Var(product total) = sum(mu + alpha mu^2) = 5 * (8 + 16) = 120
    assert np.var(tot[0, 0] * 2) == pytest.approx(120, rel=0.06)


def test_shared_dispersion_widens_window_as_fitted_model_says():
    alpha, b, mu = 0.3, 0.1, np.full(7, 6.0)
    fc = forecast_frame([1], [10], 7, lambda s, p, t: 6.0, dispersion=alpha)
    fc["shared_dispersion"] = b
    bom = pd.DataFrame({"product_id": [10], "material_id": [1], "qty_per_unit": [1.0]})
    ms = material_samples(draw_product_samples(fc, 30000, seed=9), bom)
    tot, _ = window_totals(ms, np.array([0]), np.array([7]))
    m, q = mu.sum(), (mu**2).sum()
    assert np.var(tot[0, 0]) == pytest.approx(m + alpha * q + b * (m * m - q), rel=0.07)
    day_var = np.var(ms.samples[0, 0, 0])
    assert day_var == pytest.approx(6 + alpha * 36, rel=0.07)  # a single day stays NB(alpha)


def test_seeded_draws_are_reproducible_and_independent_of_the_batch():
    fc = forecast_frame([1, 2], [10, 11], 4, lambda s, p, t: 2.0 + s + p / 10, dispersion=0.2)
    a = draw_product_samples(fc, 300, seed=11)
    b = draw_product_samples(fc, 300, seed=11)
    np.testing.assert_array_equal(a.samples, b.samples)
    c = draw_product_samples(fc, 300, seed=12)
    assert not np.array_equal(a.samples, c.samples)
    only_store_1 = draw_product_samples(fc[fc["store_id"] == 1], 300, seed=11)
    np.testing.assert_array_equal(only_store_1.samples[0], a.samples[0])  # common random numbers per store x product


def test_pre_drawn_samples_are_used_as_given():
    fc = forecast_frame([1], [10, 11], 3, lambda s, p, t: 1.0).drop(columns="dispersion")
    rng = np.random.default_rng(0)
    fc["samples"] = [rng.integers(0, 5, 50).astype(float) for _ in range(len(fc))]
    bom = pd.DataFrame({"product_id": [10, 11], "material_id": [1, 1], "qty_per_unit": [1.0, 3.0]})
    ms = material_samples(draw_product_samples(fc, 999, seed=0), bom)
    assert ms.samples.shape == (1, 1, 3, 50)
    by = {(r.product_id, r.date.date()): r.samples for r in fc.itertuples()}
    d1 = D0 + timedelta(days=1)
    np.testing.assert_allclose(ms.samples[0, 0, 1], by[(10, d1)] + 3 * by[(11, d1)])


def test_missing_rows_are_zero_and_contract_errors_are_clear():
    fc = forecast_frame([1], [10, 11], 3, lambda s, p, t: 4.0, dispersion=0.1)
    fc = fc[~((fc["product_id"] == 11) & (fc["date"] == pd.Timestamp(D0)))]
    ps = draw_product_samples(fc, 100, seed=0)
    assert ps.samples[0, 1, 0].sum() == 0 and ps.mean[0, 1, 0] == 0
    with pytest.raises(DataError, match="dispersion"):
        draw_product_samples(fc.drop(columns="dispersion"), 10, 0)
    with pytest.raises(DataError, match="mean"):
        draw_product_samples(fc.assign(mean=-1.0), 10, 0)
    with pytest.raises(DataError, match="duplicate"):
        draw_product_samples(pd.concat([fc, fc.head(1)]), 10, 0)
    with pytest.raises(DataError, match="columns"):
        draw_product_samples(fc.drop(columns="date"), 10, 0)


def test_sample_quantile_is_inverse_cdf_per_line():
    x = np.arange(1, 101, dtype=float)[None, :].repeat(2, axis=0)
    np.testing.assert_array_equal(sample_quantile(x, np.array([0.5, 0.95])), [50, 95])
    assert sample_quantile(x[0], 0.951) == 96


def test_vectorised_path_is_fast_for_10_stores_100_materials_14_days():
    """10 stores x 80 products x 14 days -> 100 materials, with the configured sample count."""
    n = ReplenishmentConfig().n_samples
    rng = np.random.default_rng(0)
    fc = forecast_frame(range(1, 11), range(1, 81), 14, lambda s, p, t: 0.0, dispersion=0.2)
    fc["mean"] = rng.gamma(1.5, 6.0, len(fc))
    bom = pd.DataFrame(
        [(p, int(m), 0.5) for p in range(1, 81) for m in rng.choice(np.arange(1, 101), 6, replace=False)],
        columns=["product_id", "material_id", "qty_per_unit"],
    )
    bom = pd.concat([bom, pd.DataFrame({"product_id": 1, "material_id": range(1, 101), "qty_per_unit": 0.1})])
    bom = bom.drop_duplicates(["product_id", "material_id"])
    t0 = time.perf_counter()
    ms = material_samples(draw_product_samples(fc, n, seed=1), bom)
    M = len(ms.material_ids)
    tot, _ = window_totals(ms, np.zeros(M, dtype=int), np.full(M, 14))
    q = sample_quantile(tot, 0.95)
    elapsed = time.perf_counter() - t0
    assert ms.samples.shape == (10, 100, 14, n) and q.shape == (10, 100)
    print(f"10 stores x 100 materials x 14 days x {n} paths: {elapsed:.2f} s")
    assert elapsed < 6.0  # ~1.3 s on 2 shared cores; the bound leaves room for a busy machine
