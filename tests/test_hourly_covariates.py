"""Day covariates of the hour-level model (forecasting.inventory.hourly_demand): temperature-band and campaign tilts
on the shares. Panels drawn from known shapes with and without such an effect: the tilt must be learned where it
exists (better held-out likelihood, shares closer to the truth) and cost nothing where it does not; without inputs
the model is the base model exactly."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting.inventory.hourly_demand import (
    HOURS,
    TILT_OFF,
    DayCovariates,
    HourInputs,
    fit_hourly_shares,
)

OPEN = np.arange(7, 20)
START = date(2025, 6, 2)
DAYS = 84  # fitted on the first 70, scored on the last 14
FIT_DAYS = 70
STORES = (1, 2, 3)
PRODUCTS = tuple(range(1, 9))  # 1-4 drinks, 5-8 food
CATEGORY = {p: ("drinks" if p <= 4 else "food") for p in PRODUCTS}
LUNCH_PRODUCT = 6
MORNING, AFTERNOON = np.arange(7, 11), np.arange(13, 17)


def _shape(peak: int) -> np.ndarray:
    s = np.zeros(HOURS)
    s[OPEN] = np.exp(-0.5 * ((OPEN - peak) / 3.0) ** 2)
    return s / s.sum()


def _warm(s: np.ndarray) -> np.ndarray:
    """20% of the morning's demand moves to the afternoon."""
    out = s.copy()
    moved = 0.2 * s[MORNING].sum()
    out[MORNING] *= 0.8
    out[AFTERNOON] += moved * s[AFTERNOON] / s[AFTERNOON].sum()
    return out


def _lunch(s: np.ndarray) -> np.ndarray:
    """Half the day's demand concentrated at 12-13."""
    out = 0.5 * s
    out[[12, 13]] += 0.25
    return out


def _world(effect: bool, seed: int) -> tuple[pd.DataFrame, HourInputs, dict]:
    """(panel, inputs, true shares by (store, product, day)): stores with a morning or a lunch shape, a temperature
    with warm spells, campaigns on one food product; with ``effect`` warm days and campaign days change the shape."""
    rng = np.random.default_rng(seed)
    days = [START + timedelta(days=d) for d in range(DAYS)]
    anomaly = 4.5 * np.sin(2 * np.pi * np.arange(DAYS) / 9) + rng.normal(0, 1.0, DAYS)  # spells every few days
    temp = pd.Series(22.0 + anomaly, index=pd.to_datetime(days))
    camp_days = [d for i, d in enumerate(days) if (i // 7) % 2 == 1]  # every other week (in each held-out window)
    inputs = HourInputs(temp, pd.DataFrame({"product_id": LUNCH_PRODUCT, "date": pd.to_datetime(camp_days)}),
                        CATEGORY, as_of=days[FIT_DAYS - 1])
    camp = set(camp_days)
    rows, truth = [], {}
    for day in days:
        warm = inputs.day(1, day).temp_anomaly_c >= 3.0
        for s in STORES:
            for p in PRODUCTS:
                sh = _shape(9 if s == 1 else 12 if s == 2 else 15)
                if effect and warm and CATEGORY[p] == "food":
                    sh = _warm(sh)
                if effect and p == LUNCH_PRODUCT and day in camp:
                    sh = _lunch(sh)
                truth[(s, p, day)] = sh
                n = rng.poisson(30.0 if p != LUNCH_PRODUCT else 40.0)
                counts = rng.multinomial(n, sh)
                rows.extend((s, p, day, int(h), int(counts[h]), False) for h in OPEN)
    panel = pd.DataFrame(rows, columns=["store_id", "product_id", "date", "local_hour", "qty", "censored"])
    return panel, inputs, truth


def _split(panel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = pd.Timestamp(START + timedelta(days=FIT_DAYS - 1))
    d = pd.to_datetime(panel["date"])
    return panel[d <= cut], panel[d > cut]


def _heldout(model, test: pd.DataFrame) -> float:
    """Multinomial log-likelihood of the held-out days under the model's shares for each day (its covariates)."""
    g = test.groupby(["store_id", "product_id", "date"])
    keys = np.array(list(g.groups.keys()), dtype=object)
    counts = np.zeros((len(keys), HOURS))
    for r, (_, grp) in enumerate(g):
        counts[r, grp["local_hour"].to_numpy(int)] = grp["qty"].to_numpy(float)
    stores, prods = keys[:, 0].astype(int), keys[:, 1].astype(int)
    dates = pd.to_datetime(keys[:, 2])
    anom, camp = model.inputs.rows(prods, dates) if model.inputs is not None else (None, None)
    share = model.share_table(stores, prods, dates.dayofweek.to_numpy(), anom, camp)
    m = counts > 0
    return float((counts[m] * np.log(np.maximum(share[m], 1e-9))).sum())


def _l1_to_truth(model, truth: dict, pick) -> float:
    """Mean L1 distance of the model's shares to the truth over the held-out store x product x days ``pick`` keeps."""
    out = []
    for (s, p, day), sh in truth.items():
        if day < START + timedelta(days=FIT_DAYS) or not pick(p, day):
            continue
        cov = model.covariates(p, day)
        out.append(np.abs(model.share(s, p, day.weekday(), cov) - sh).sum())
    return float(np.mean(out))


@pytest.fixture(scope="module")
def with_effect():
    panel, inputs, truth = _world(True, 0)
    fit, test = _split(panel)
    return fit_hourly_shares(fit, 14), fit_hourly_shares(fit, 14, inputs=inputs), test, truth, inputs


def test_tilts_are_learned_where_the_effect_exists(with_effect):
    base, tilted, test, truth, inputs = with_effect
    assert tilted.tilts is not None and tilted.tilts.temp_chain is not None and tilted.tilts.camp_chain is not None
    gain = _heldout(tilted, test) - _heldout(base, test)
    assert gain > 0.002 * abs(_heldout(base, test))  # held-out days the tilts never saw
    warm_food = lambda p, d: CATEGORY[p] == "food" and inputs.day(p, d).temp_anomaly_c >= 3.0  # noqa: E731
    campaign = lambda p, d: p == LUNCH_PRODUCT and inputs.day(p, d).campaign  # noqa: E731
    drinks = lambda p, d: CATEGORY[p] == "drinks"  # noqa: E731
    assert _l1_to_truth(tilted, truth, warm_food) < 0.75 * _l1_to_truth(base, truth, warm_food)
    assert _l1_to_truth(tilted, truth, campaign) < 0.5 * _l1_to_truth(base, truth, campaign)
    assert _l1_to_truth(tilted, truth, drinks) < _l1_to_truth(base, truth, drinks) + 0.01  # untouched by either
    # the learned direction: warm food days sell more in the afternoon, campaign days at lunch
    t = tilted.tilts
    food = t.category_names.index("food")
    assert t.temp_category[food, 2, AFTERNOON].mean() > 1.05 > 0.95 > t.temp_category[food, 2, MORNING].mean()
    pi = int(np.searchsorted(tilted.product_ids, LUNCH_PRODUCT))
    assert (t.camp_product[pi, 1, [12, 13]] / t.camp_product[pi, 0, [12, 13]]).min() > 2.0  # on vs off days
    assert tilted.kappa["campaign_product"] < TILT_OFF or tilted.kappa["campaign_category"] < TILT_OFF


def test_no_effect_costs_nothing():
    panel, inputs, _ = _world(False, 1)
    fit, test = _split(panel)
    base, tilted = fit_hourly_shares(fit, 14), fit_hourly_shares(fit, 14, inputs=inputs)
    lb, lt = _heldout(base, test), _heldout(tilted, test)
    assert lt > lb - 0.0005 * abs(lb)  # within noise (an effect above is worth > 0.2%)
    if tilted.tilts is not None and tilted.tilts.temp_category is not None:
        assert np.abs(tilted.tilts.temp_category[:, :, OPEN] - 1).max() < 0.1


def test_without_inputs_the_model_is_the_base_model_exactly(with_effect):
    panel, inputs, _ = _world(True, 2)
    fit, _ = _split(panel)
    base = fit_hourly_shares(fit, 14)
    for none in (None, HourInputs(), HourInputs(pd.Series(dtype=float), pd.DataFrame(columns=["product_id", "date"]))):
        m = fit_hourly_shares(fit, 14, inputs=none)
        assert m.tilts is None and m.kappa == base.kappa
        np.testing.assert_array_equal(m.series, base.series)
        day = START + timedelta(days=FIT_DAYS + 3)
        np.testing.assert_array_equal(m.share(1, LUNCH_PRODUCT, day.weekday(), m.covariates(LUNCH_PRODUCT, day)),
                                      base.share(1, LUNCH_PRODUCT, day.weekday()))
    # a covariate that never varies in the window (all days normal, no campaign) fits no tilt either
    flat = HourInputs(pd.Series(20.0, index=pd.date_range(START, periods=DAYS)), None, CATEGORY)
    m = fit_hourly_shares(fit, 14, inputs=flat)
    assert m.tilts is None
    np.testing.assert_array_equal(m.series, base.series)
    # the base shares of the tilted model are the base model's: the tilts only act through the covariates
    tilted = fit_hourly_shares(fit, 14, inputs=inputs)
    np.testing.assert_array_equal(tilted.series, base.series)
    np.testing.assert_array_equal(tilted.share(2, 3, 4), base.share(2, 3, 4))


def test_lookups_agree_and_fall_back(with_effect):
    _, tilted, _, _, inputs = with_effect
    day = START + timedelta(days=FIT_DAYS + 1)
    rows = [(1, LUNCH_PRODUCT), (2, 2), (42, 5), (3, 99)]  # 42: an unknown store, 99: an unknown product
    covs = [tilted.covariates(p, day) for _, p in rows]
    one = np.stack([tilted.share(s, p, day.weekday(), c) for (s, p), c in zip(rows, covs, strict=True)])
    anom, camp = inputs.rows([p for _, p in rows], [day] * len(rows))
    tab = tilted.share_table(np.array([s for s, _ in rows]), np.array([p for _, p in rows]),
                             np.full(len(rows), day.weekday()), anom, camp)
    np.testing.assert_allclose(one, tab)
    np.testing.assert_allclose(tab.sum(1), 1.0)
    assert (tab[:, :7] == 0).all() and (tab[:, 20:] == 0).all()
    hours, shares = tilted.get(1, LUNCH_PRODUCT, day.weekday(), covs[0])
    assert list(hours) == list(OPEN) and shares.sum() == pytest.approx(1.0)
    # an unknown temperature and no campaign: the base shares times nothing
    plain = tilted.share(2, 2, day.weekday(), DayCovariates(None, False))
    assert plain.sum() == pytest.approx(1.0)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="temperature series holds no numbers"):
        HourInputs(pd.Series(["warm", "cold"], index=pd.to_datetime(["2025-01-01", "2025-01-02"])))
    with pytest.raises(ValueError, match="campaigns need columns product_id and date"):
        HourInputs(campaigns=pd.DataFrame({"product": [1], "day": ["2025-01-01"]}))
    panel, inputs, _ = _world(False, 3)
    with pytest.raises(ValueError, match="band_c must be > 0"):
        fit_hourly_shares(panel, 14, inputs=inputs, band_c=0.0)


def test_normal_is_the_time_of_year():
    """A warm day is warm for the season: a yearly cycle alone makes no anomaly (normal fitted on the past)."""
    days = pd.date_range("2024-06-01", "2025-12-31")
    season = 13.0 - 12.5 * np.cos(2 * np.pi * (days.dayofyear - 20) / 365.25)
    inp = HourInputs(pd.Series(season, index=days), as_of=date(2025, 12, 20))
    anom, _ = inp.rows([1] * len(days), days)
    assert np.abs(anom).max() < 0.5
    short = HourInputs(pd.Series(season[:40] + 5.0, index=days[:40]), as_of=days[39].date())  # under 120 days
    a, _ = short.rows([1], [days[39]])
    assert abs(a[0]) < 3.0


def _calendar(inputs_days: list[date], temp: pd.Series, camp_days: list[date]):
    """The planned calendar of the test world, through the manifest as the feature build writes it."""
    from features.calendar import planned_events
    from training.future import PlannedCalendar

    camps = pd.DataFrame({"product_id": [LUNCH_PRODUCT] * len(camp_days), "category": None, "discount_pct": 0.3,
                          "valid_from": pd.to_datetime(camp_days), "valid_to": pd.to_datetime(camp_days)})
    planned = planned_events(pd.DataFrame(columns=["store_id", "open_date", "close_date"]), camps, "US", "NY",
                             temperature=pd.DataFrame({"date": temp.index, "temp_forecast_c": temp.to_numpy()}))
    menu = [{"product_id": p, "category": c, "launch_date": None, "retire_date": None} for p, c in CATEGORY.items()]
    return PlannedCalendar.from_manifest({"calendar": planned, "products": menu})


def test_the_calendar_gives_the_same_inputs_and_the_backtest_scores_the_tilts():
    """Manifest -> PlannedCalendar.hour_inputs is the one source of covariates; the backtest fits with them per
    origin and scores the split with and without them (final_no_covariates)."""
    from forecasting.config import HourlyConfig
    from training.hourly_eval import hourly_backtest

    panel, inputs, truth = _world(True, 0)
    days = sorted({d for (_, _, d) in truth})
    camp_days = [d for d in days if inputs.day(LUNCH_PRODUCT, d).campaign]
    temp = pd.Series(inputs.anomaly.to_numpy() + 22.0, index=pd.to_datetime(inputs.anomaly.index, unit="D"))
    cal = _calendar(days, temp, camp_days)
    got = cal.hour_inputs(days[FIT_DAYS - 1])
    a1, c1 = got.rows([LUNCH_PRODUCT] * len(days), days)
    a0, c0 = inputs.rows([LUNCH_PRODUCT] * len(days), days)
    np.testing.assert_array_equal(c1, c0)
    assert np.corrcoef(a1, a0)[0, 1] > 0.99  # the same spells (the normal is fitted on the calendar's series)
    assert got.category_codes([5, 1, 99]).tolist() == [got.category_names.index("food"),
                                                         got.category_names.index("drinks"), -1]
    cutoff = pd.Timestamp(days[FIT_DAYS - 1])
    fut = panel[pd.to_datetime(panel["date"]) > cutoff]
    preds = fut.groupby(["store_id", "product_id", "date"], as_index=False)["qty"].sum()
    preds = preds.rename(columns={"date": "ds"}).assign(ds=lambda d: pd.to_datetime(d["ds"]), cutoff=cutoff,
                                                        final=lambda d: np.where(d["product_id"] == 6, 40.0, 30.0),
                                                        final_alpha_served=0.01, censored=False)
    cfg = HourlyConfig(lookback_days=70, holdout_days=14)
    res = hourly_backtest(preds, panel, cfg, [0.5, 0.9], calendar=cal)
    m = res["models"]
    assert m["final"]["pinball_per_unit"] < m["final_no_covariates"]["pinball_per_unit"]
    assert "temp_chain" in res["kappa_by_origin"][str(cutoff.date())]
    off = hourly_backtest(preds, panel, HourlyConfig(lookback_days=70, holdout_days=14, covariates=False),
                          [0.5, 0.9], calendar=cal)
    assert "final_no_covariates" not in off["models"]
    assert off["models"]["final"] == pytest.approx(m["final_no_covariates"])
