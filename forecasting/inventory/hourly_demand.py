"""Hour-level demand: how a store x product x day forecast splits over the local hours, with hour-level quantiles.

Why shares of the daily forecast, and why shrunk: the daily models already carry level, trend, holidays and
campaigns; what an hour adds is the *shape* of the day. A slow item's own last weeks hold a handful of units per
weekday, so its raw hourly shares (what ``/forecast`` served before) are mostly noise. The shape is estimated as a
hierarchy fitted by empirical Bayes (Dirichlet-multinomial shrinkage, each level towards its parent):

    chain x weekday  ->  store x weekday               (a station store's morning rush, an office store's lunch)
    chain x weekday  ->  product x weekday, as a tilt  (a sandwich sells at lunch wherever it is sold)
    store x weekday x product tilt  ->  store x product x weekday  (what the series' own sales add)

``share = (counts + kappa x parent) / (units + kappa)`` at each level, the three ``kappa`` (in units) chosen by the
held-out multinomial log-likelihood of the last ``holdout_days`` of the fitting window (fitted on the days before
them), then refitted on the whole window; the smallest ``kappa`` is 1 unit, so an open hour never gets a share of
exactly 0 (a quantile of 0 for a whole hour would be a promise). A shape that really differs by product or store is
kept; one that does not is pooled. Censored days (a material ran out: the later hours are missing) are left out of
the fit.

Day covariates (``HourInputs``, known in advance for the forecast day): the weekday shares are the average over the
window's days, but a warm day moves demand to the afternoon and a campaign to its own hours. Two multiplicative tilts
per hour on the shares, each a contrast between the states of a day (temperature band: the forecast temperature's
departure from its normal <= -``band_c`` cold, >= ``band_c`` warm; campaign off / on), shrunk the same way:

    chain -> category                       temperature band x hour
    chain -> category -> product            campaign off / on x hour

A level's tilt = its shrunk shares over the shares the base model expects for the same rows, divided by the unit-
weighted mean over its states (so a group that saw one state only keeps exactly its base shares); each ``kappa``
chosen on the same held-out likelihood, the grid ending in ``TILT_OFF`` (the parent's tilt exactly), so data
without such an effect shrinks the tilt to nothing; a level whose contrast the held-out days do not show (no
campaign in them) cannot be chosen and stays off. Without inputs (a plain POS log) nothing of this is fitted and
the shares are exactly the base model's.

Hour-level uncertainty follows from the daily model: the day's count is negative binomial (a gamma day level times
Poisson noise, the generator's and the models' family) and an hour is a thinning of it, so the hour's count is
negative binomial with mean ``daily mean x share`` and the *same* dispersion. Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecasting import uncertainty as unc

if TYPE_CHECKING:
    from forecasting.config import HourlyConfig

HOURS = 24
KAPPA_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1_000.0, 3_000.0, 10_000.0, 1e6)
_TINY = 1e-12
TILT_OFF = 1e9  # a tilt's prior strength meaning "no tilt of its own": the parent's tilt, exactly
TILT_GRID: tuple[float, ...] = (*KAPPA_GRID, TILT_OFF)
TILT_DEFAULT = 1_000.0  # a tilt's strength when there are no held-out days at all (holdout_days 0)
TEMP_BANDS = ("cold", "normal", "warm")
TILT_KEYS = ("temp_chain", "temp_category", "campaign_chain", "campaign_category", "campaign_product")
_MIN_CLIMATE_DAYS = 120  # fewer days of temperature than this: the normal is their last 28 days' mean
_TILT_CLIP = (0.02, 50.0)  # an hour's tilt stays within these factors (an expected share near 0 cannot explode)


@dataclass(frozen=True)
class DayCovariates:
    """One product's day as the tilts see it: the forecast temperature's departure from its normal (degrees C; None
    when unknown: no temperature tilt) and whether a campaign covers the product or its category."""

    temp_anomaly_c: float | None = None
    campaign: bool = False


def _days(values) -> np.ndarray:
    """Dates (date, datetime64, Timestamp, str) -> int days since 1970-01-01."""
    return pd.to_datetime(pd.Series(np.asarray(values).ravel())).to_numpy("datetime64[D]").astype(np.int64)


class HourInputs:
    """The known-in-advance inputs of every day: the chain's forecast daily temperature (one city) and the campaign
    calendar, with each product's category (the level the tilts pool over).

    Why the forecast and a normal fitted up to ``as_of``: the forecast day has no actual temperature, so the model is
    fitted on what it will have (``t_weather_daily.temp_forecast_c``: the day-ahead forecast for past days, the
    latest one for the days after), and "warm" means warm for the time of year: the normal is a yearly harmonic fitted
    on the forecasts up to ``as_of`` (the mean of their last 28 days when fewer than 120 days are known)."""

    def __init__(self, temperature: pd.Series | None = None, campaigns: pd.DataFrame | None = None,
                 categories: dict[int, str] | None = None, as_of: date | None = None) -> None:
        self.anomaly = pd.Series(dtype=float)
        if temperature is not None and len(temperature):
            t = pd.to_numeric(pd.Series(temperature), errors="coerce")
            if t.isna().all():
                raise ValueError("hour inputs: the temperature series holds no numbers")
            day = _days(t.index)
            normal = _normal(day, t.to_numpy(float), None if as_of is None else int(_days([as_of])[0]))
            self.anomaly = pd.Series(t.to_numpy(float) - normal, index=day) if normal is not None else self.anomaly
            self.anomaly = self.anomaly[~self.anomaly.index.duplicated(keep="last")].dropna()
        self._camp = np.zeros(0, dtype=np.int64)
        if campaigns is not None and len(campaigns):
            missing = {"product_id", "date"} - set(campaigns.columns)
            if missing:
                raise ValueError(f"hour inputs: campaigns need columns product_id and date (missing {sorted(missing)})")
            self._camp = np.unique(_key(campaigns["product_id"].to_numpy(np.int64), _days(campaigns["date"])))
        cats = categories or {}
        self.category_names: tuple[str, ...] = tuple(sorted({str(c) for c in cats.values() if c is not None}))
        code = {c: i for i, c in enumerate(self.category_names)}
        self._cat = {int(p): code[str(c)] for p, c in cats.items() if c is not None}

    @property
    def empty(self) -> bool:
        """No temperature and no campaign: the tilts have nothing to learn from."""
        return self.anomaly.empty and not len(self._camp)

    def rows(self, products, dates) -> tuple[np.ndarray, np.ndarray]:
        """(temperature anomaly, NaN where unknown; campaign on) for arrays of product and date."""
        prods = np.asarray(products).astype(np.int64).ravel()
        day = _days(dates)
        anom = self.anomaly.reindex(day).to_numpy(float) if len(self.anomaly) else np.full(len(day), np.nan)
        camp = np.isin(_key(prods, day), self._camp) if len(self._camp) else np.zeros(len(day), dtype=bool)
        return anom, camp

    def day(self, product: int, day: date) -> DayCovariates:
        """One product's day (the API's and the bake plan's lookup)."""
        a, c = self.rows([product], [day])
        return DayCovariates(None if np.isnan(a[0]) else float(a[0]), bool(c[0]))

    def category_codes(self, products) -> np.ndarray:
        """Category index per product (-1: unknown)."""
        return np.array([self._cat.get(int(p), -1) for p in np.asarray(products).ravel()], dtype=np.int64)


def _key(products: np.ndarray, days: np.ndarray) -> np.ndarray:
    return products.astype(np.int64) * (1 << 22) + days.astype(np.int64)


def _normal(day: np.ndarray, temp: np.ndarray, as_of: int | None) -> np.ndarray | None:
    """The normal temperature of each day from the days up to ``as_of`` (see ``HourInputs``); None if none known."""
    ok = np.isfinite(temp) & (day <= as_of if as_of is not None else True)
    if not ok.any():
        return None
    d, t = day[ok], temp[ok]
    if len(d) >= _MIN_CLIMATE_DAYS and d.max() - d.min() >= _MIN_CLIMATE_DAYS:
        w = 2 * np.pi / 365.25

        def design(x: np.ndarray) -> np.ndarray:
            return np.column_stack([np.ones(len(x)), np.cos(w * x), np.sin(w * x)])

        coef = np.linalg.lstsq(design(d), t, rcond=None)[0]
        return design(day) @ coef
    last = d >= d.max() - 27
    return np.full(len(day), float(t[last].mean()))


@dataclass(frozen=True)
class HourTilts:
    """Fitted tilts: per hour, a factor on the base shares per temperature band and per campaign state (1 = none).

    ``temp_*``: (.., 3, 24) cold / normal / warm; ``camp_*``: (.., 2, 24) off / on; None when the level was not
    fitted (no such input, or it never varied in the window). Rows: categories as ``category_names``, products as
    the model's ``product_ids``."""

    band_c: float
    category_names: tuple[str, ...]
    product_category: np.ndarray  # (P,) category index of each fitted product (-1 unknown)
    temp_chain: np.ndarray | None = None  # (3, 24)
    temp_category: np.ndarray | None = None  # (K, 3, 24)
    camp_chain: np.ndarray | None = None  # (2, 24)
    camp_category: np.ndarray | None = None  # (K, 2, 24)
    camp_product: np.ndarray | None = None  # (P, 2, 24)

    def band(self, anomaly: np.ndarray) -> np.ndarray:
        """0 cold, 1 normal, 2 warm, -1 unknown."""
        a = np.asarray(anomaly, dtype=float)
        out = np.where(a <= -self.band_c, 0, np.where(a >= self.band_c, 2, 1))
        return np.where(np.isnan(a), -1, out)

    def factors(self, pi: np.ndarray, cat: np.ndarray, anomaly: np.ndarray | None,
                campaign: np.ndarray | None) -> np.ndarray:
        """(n, 24) product of the temperature and the campaign tilt for rows of (product index or -1, category
        index or -1, anomaly, campaign): the product's tilt, else its category's, else the chain's."""
        n = len(pi)
        out = np.ones((n, HOURS))
        pi, cat = np.asarray(pi, dtype=np.int64), np.asarray(cat, dtype=np.int64)
        k = len(self.category_names)
        cat_i = np.where((cat >= 0) & (cat < k), cat, k)
        if anomaly is not None and self.temp_chain is not None:
            b = self.band(anomaly)
            known = b >= 0
            tab = np.concatenate([self.temp_category, self.temp_chain[None]])  # (K + 1, 3, 24)
            out[known] = tab[cat_i[known], b[known]]
        if campaign is not None and self.camp_chain is not None:
            tab = np.concatenate([self.camp_product, self.camp_category, self.camp_chain[None]])  # (P + K + 1, 2, 24)
            row = np.where(pi >= 0, pi, len(self.camp_product) + cat_i)
            out *= tab[row, np.asarray(campaign, dtype=bool).astype(np.int64)]
        return out


@dataclass(frozen=True)
class HourlyShares:
    """Shares of a day's units per local hour, per (store, product, weekday) (weekday 0 = Monday), optionally tilted
    by the day's covariates (``tilts``, fitted with ``inputs``: the calendar lookups by date go through them)."""

    store_ids: np.ndarray  # (S,)
    product_ids: np.ndarray  # (P,)
    series: np.ndarray  # (S, P, 7, 24): each open-hours row sums to 1
    store: np.ndarray  # (S, 7, 24): the store's all-product shape, for products it has not sold yet
    chain: np.ndarray  # (7, 24): for a store with no history (a new store)
    kappa: dict[str, float]
    last_date: date | None = None
    tilts: HourTilts | None = None
    inputs: HourInputs | None = None

    def _si(self, store: int) -> int | None:
        i = int(np.searchsorted(self.store_ids, store))
        return i if i < len(self.store_ids) and self.store_ids[i] == store else None

    def _pi(self, product: int) -> int | None:
        i = int(np.searchsorted(self.product_ids, product))
        return i if i < len(self.product_ids) and self.product_ids[i] == product else None

    def covariates(self, product: int, day: date) -> DayCovariates | None:
        """The product's day from the inputs the model was fitted with (None without inputs): what the API, the
        bake plan and the backtest pass to ``get`` / ``share_table``."""
        return None if self.inputs is None else self.inputs.day(product, day)

    def share(self, store: int, product: int, dow: int, cov: DayCovariates | None = None) -> np.ndarray:
        """(24,) shares for one store x product x weekday (and the day's covariates); the store's shape for an
        unknown product, the chain's for an unknown store."""
        si, pi = self._si(store), self._pi(product)
        if si is None:
            base = self.chain[dow]
        elif pi is None or self.series[si, pi, dow].sum() <= 0:
            base = self.store[si, dow]
        else:
            base = self.series[si, pi, dow]
        if cov is None or self.tilts is None:
            return base
        anom = np.array([np.nan if cov.temp_anomaly_c is None else cov.temp_anomaly_c])
        return self._tilt(base[None], np.array([product]), anom, np.array([cov.campaign]))[0]

    def get(self, store: int, product: int, dow: int,
            cov: DayCovariates | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(hours, shares) over the hours with demand (the open hours), as the API lists them; None if none."""
        s = self.share(store, product, dow, cov)
        hours = np.flatnonzero(s > 0)
        return (hours, s[hours]) if len(hours) else None

    def on_day(self, store: int, product: int, day: date) -> tuple[np.ndarray, np.ndarray] | None:
        """``get`` for a calendar day with that day's inputs: the one lookup the API, the bake plan and the intraday
        replay make, so they cannot pass the weekday or the covariates differently."""
        return self.get(store, product, day.weekday(), self.covariates(product, day))

    def split(self, frame: pd.DataFrame, mean_col: str = "mean") -> pd.DataFrame:
        """Daily rows (``store_id, product_id, ds`` and ``mean_col``) -> one row per open hour with ``local_hour``,
        ``share`` and ``mean_col`` x share, each day with its covariates. Vectorised: the backtest splits every
        origin's forecasts with it."""
        ds = pd.to_datetime(frame["ds"])
        prods = frame["product_id"].to_numpy()
        anom, camp = self.inputs.rows(prods, ds) if self.inputs is not None else (None, None)
        tab = self.share_table(frame["store_id"].to_numpy(), prods, ds.dt.dayofweek.to_numpy(), anom, camp)
        r, h = np.nonzero(tab > 0)
        out = frame.iloc[r].reset_index(drop=True)
        out["local_hour"] = h.astype("int16")
        out["share"] = tab[r, h]
        out[mean_col] = out[mean_col].to_numpy(float) * out["share"].to_numpy()
        return out

    def share_table(self, stores: np.ndarray, products: np.ndarray, dows: np.ndarray,
                    anomaly: np.ndarray | None = None, campaign: np.ndarray | None = None) -> np.ndarray:
        """(n, 24) shares for arrays of store, product and weekday (the fallbacks of ``share``), tilted by the rows'
        temperature anomaly and campaign flag when given (``HourInputs.rows``)."""
        stores, products, dows = (np.asarray(a).astype(np.int64) for a in (stores, products, dows))
        out = self.chain[dows].copy()
        si = np.searchsorted(self.store_ids, stores)
        s_ok = (si < len(self.store_ids)) & (self.store_ids[np.minimum(si, len(self.store_ids) - 1)] == stores)
        if len(self.store_ids):
            out[s_ok] = self.store[si[s_ok], dows[s_ok]]
        pi = np.searchsorted(self.product_ids, products)
        p_ok = s_ok & (pi < len(self.product_ids))
        if len(self.product_ids):
            p_ok &= self.product_ids[np.minimum(pi, len(self.product_ids) - 1)] == products
        if p_ok.any():
            ser = self.series[si[p_ok], pi[p_ok], dows[p_ok]]
            has = ser.sum(axis=1) > 0
            idx = np.flatnonzero(p_ok)[has]
            out[idx] = ser[has]
        if self.tilts is None or (anomaly is None and campaign is None):
            return out
        return self._tilt(out, products, anomaly, campaign)

    def _tilt(self, base: np.ndarray, products: np.ndarray, anomaly: np.ndarray | None,
              campaign: np.ndarray | None) -> np.ndarray:
        """Base shares (n, 24) times the rows' tilts, renormalised over the open hours."""
        t = self.tilts
        products = np.asarray(products).astype(np.int64)
        pi = np.searchsorted(self.product_ids, products)
        known = (pi < len(self.product_ids)) & (self.product_ids[np.minimum(pi, len(self.product_ids) - 1)]
                                                == products) if len(self.product_ids) else np.zeros(len(pi), bool)
        pi = np.where(known, pi, -1)
        cat = np.where(known, t.product_category[np.maximum(pi, 0)], -1)
        if self.inputs is not None and (~known).any():
            cat[~known] = self.inputs.category_codes(products[~known])
        return _normalise(base * t.factors(pi, cat, anomaly, campaign))


def _normalise(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    if mask is not None:
        x = x * mask
    tot = x.sum(axis=-1, keepdims=True)
    return np.divide(x, tot, out=np.zeros_like(x), where=tot > 0)


def _tensor(panel: pd.DataFrame, stores: np.ndarray, products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts (S, P, 7, 24), open (S, 7, 24)): units by store x product x weekday x hour, and which hours the store
    is open on that weekday (a row of the zero-filled panel exists)."""
    S, P = len(stores), len(products)
    si = np.searchsorted(stores, panel["store_id"].to_numpy())
    pi = np.searchsorted(products, panel["product_id"].to_numpy())
    dw = pd.to_datetime(panel["date"]).dt.dayofweek.to_numpy()
    hr = panel["local_hour"].to_numpy(int)
    counts = np.zeros((S, P, 7, HOURS))
    np.add.at(counts, (si, pi, dw, hr), panel["qty"].to_numpy(float))
    open_ = np.zeros((S, 7, HOURS), dtype=bool)
    open_[si, dw, hr] = True
    return counts, open_


def _shapes(counts: np.ndarray, open_: np.ndarray, k_store: float, k_prod: float,
            k_series: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(series, store, chain) shares for given prior strengths (units)."""
    chain_open = open_.any(axis=0)  # (7, 24)
    chain = _normalise(counts.sum(axis=(0, 1)) + 0.5 * chain_open, chain_open)  # an open hour is never certain 0
    sc = counts.sum(axis=1)  # (S, 7, 24)
    store = _normalise(sc + k_store * chain[None], open_)
    pc = counts.sum(axis=0)  # (P, 7, 24)
    prod = (pc + k_prod * chain[None]) / np.maximum(pc.sum(-1, keepdims=True) + k_prod, _TINY)
    tilt = np.divide(prod, chain[None], out=np.ones_like(prod), where=chain[None] > 0)
    parent = _normalise(store[:, None] * tilt[None], open_[:, None])  # (S, P, 7, 24)
    series = _normalise(counts + k_series * parent, open_[:, None])
    return series, store, chain


def _loglik(counts: np.ndarray, shares: np.ndarray) -> float:
    """Multinomial log-likelihood (up to a constant) of held-out hourly counts under the shares."""
    m = counts > 0
    return float((counts[m] * np.log(np.maximum(shares[m], 1e-9))).sum())


def fit_hourly_shares(
    panel: pd.DataFrame,
    holdout_days: int = 14,
    grid: Sequence[float] = KAPPA_GRID,
    kappa: dict[str, float] | None = None,
    inputs: HourInputs | None = None,
    band_c: float = 3.0,
) -> HourlyShares:
    """Fit the share hierarchy on an hourly panel (``store_id, product_id, date, local_hour, qty[, censored]``).

    ``kappa`` fixes the three prior strengths (``store``, ``product``, ``series``, in units; 0 = the level's own
    shares); otherwise each is chosen on the grid by the held-out log-likelihood of the last ``holdout_days``
    (the store level on store counts, then product and series jointly on series counts). With ``inputs`` the day
    tilts (``TILT_KEYS``) are fitted on top, each strength taken from ``kappa`` or chosen on the same held-out days
    (over ``TILT_GRID``), one level after the other; without them the result is the base model exactly."""
    if band_c <= 0:
        raise ValueError(f"hourly shares: band_c must be > 0 degrees C, got {band_c}")
    p = panel
    if "censored" in p:
        p = p[~p["censored"].astype(bool)]
    if p.empty:
        raise ValueError("no uncensored hourly rows to fit hourly shares on")
    stores = np.sort(p["store_id"].unique()).astype(np.int64)
    products = np.sort(p["product_id"].unique()).astype(np.int64)
    counts, open_ = _tensor(p, stores, products)
    dates = pd.to_datetime(p["date"])
    last = dates.max()
    split = last - pd.Timedelta(days=holdout_days)
    early = (dates <= split).to_numpy()
    can_hold = holdout_days > 0 and early.any() and (~early).any()
    kappa = dict(kappa) if kappa is not None else None
    c_fit = None
    if kappa is None:
        kappa = {"store": 100.0, "product": 100.0, "series": 100.0}
        if can_hold:
            c_fit, _ = _tensor(p[early], stores, products)
            c_hold, _ = _tensor(p[~early], stores, products)
            ks = max(grid, key=lambda k: _loglik(c_hold.sum(1), _shapes(c_fit, open_, k, 0.0, 0.0)[1]))
            best = max(((kp, kq) for kp in grid for kq in grid),
                       key=lambda kk: _loglik(c_hold, _shapes(c_fit, open_, ks, kk[0], kk[1])[0]))
            kappa = {"store": float(ks), "product": float(best[0]), "series": float(best[1])}
    series, store, chain = _shapes(counts, open_, kappa["store"], kappa["product"], kappa["series"])
    tilts = None
    if inputs is not None and not inputs.empty:
        rows = _day_rows(p, dates, stores, products, inputs)
        cats = inputs.category_codes(products)
        if any(k not in kappa for k in TILT_KEYS) and can_hold:
            if c_fit is None:
                c_fit, _ = _tensor(p[early], stores, products)
            base_early = _shapes(c_fit, open_, kappa["store"], kappa["product"], kappa["series"])[0]
            hold = rows["day"] > (split.to_datetime64().astype("datetime64[D]").astype(np.int64))
            hold_rows = _take(rows, hold)
            fitter = _TiltFit(_take(rows, ~hold), base_early, cats, band_c, inputs.category_names)
            hold_band = HourTilts(band_c, (), cats).band(hold_rows["anomaly"])
            seen = {"temp": fitter.temp_sums is not None and len(np.unique(hold_band[hold_band >= 0])) > 1,
                    "campaign": fitter.has_camp and bool(hold_rows["campaign"].any())}
            for key in TILT_KEYS:
                if key in kappa:
                    continue
                if not seen[key.split("_")[0]]:  # the held-out days cannot choose (no such contrast in them): off
                    kappa[key] = TILT_OFF
                    continue
                trial = {**kappa}
                for later in TILT_KEYS[TILT_KEYS.index(key) + 1:]:
                    trial.setdefault(later, TILT_OFF)

                def score(k: float, key: str = key, trial: dict = trial) -> float:
                    return _loglik_rows(hold_rows, base_early, fitter.fit({**trial, key: k}))

                scores = [score(k) for k in TILT_GRID]
                flat = max(scores) - min(scores) < 1e-9  # the level has nothing to fit (no such input varies)
                kappa[key] = TILT_OFF if flat else float(TILT_GRID[int(np.argmax(scores))])
        for key in TILT_KEYS:
            kappa.setdefault(key, TILT_DEFAULT)
        tilts = _TiltFit(rows, series, cats, band_c, inputs.category_names).fit(kappa)
    return HourlyShares(stores, products, series, store, chain, dict(kappa), last.date(), tilts,
                        inputs if tilts is not None else None)


def _day_rows(p: pd.DataFrame, dates: pd.Series, stores: np.ndarray, products: np.ndarray,
              inputs: HourInputs) -> dict[str, np.ndarray]:
    """The panel as one row per store x product x day with units: indices, weekday, day, hourly counts (n, 24),
    and the day's temperature anomaly and campaign flag."""
    si = np.searchsorted(stores, p["store_id"].to_numpy()).astype(np.int64)
    pi = np.searchsorted(products, p["product_id"].to_numpy()).astype(np.int64)
    day = dates.to_numpy("datetime64[D]").astype(np.int64)
    d0 = day.min()
    span = int(day.max() - d0) + 1
    key = (si * len(products) + pi) * span + (day - d0)
    uniq, inv = np.unique(key, return_inverse=True)
    hr = p["local_hour"].to_numpy(np.int64)
    c = np.bincount(inv * HOURS + hr, weights=p["qty"].to_numpy(float), minlength=len(uniq) * HOURS)
    c = c.reshape(-1, HOURS)
    keep = c.sum(1) > 0
    uniq, c = uniq[keep], c[keep]
    dd = uniq % span + d0
    sp = uniq // span
    r = {"si": sp // len(products), "pi": sp % len(products), "day": dd, "counts": c}
    r["dow"] = (dd + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    r["anomaly"], r["campaign"] = inputs.rows(products[r["pi"]], dd.astype("datetime64[D]"))
    return r


def _take(rows: dict[str, np.ndarray], m: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[m] for k, v in rows.items()}


def _level_tilts(obs: np.ndarray, exp: np.ndarray, groups: list[np.ndarray],
                 kappas: list[float]) -> list[np.ndarray]:
    """Nested tilt levels from observed and base-expected units per product x state x hour (P, B, 24).

    ``groups[l]`` maps each product to its group at level l (chain, category, product: each inside the last). Per
    group and state: shrunk shares ``(obs + kappa x prior) / (units + kappa)`` (prior: the expected shares times the
    parent level's tilt) over the expected shares, then divided by its unit-weighted mean over the states, so it is
    a contrast between states (a group with one state gets 1). Returns each level's tilts (G_l, B, 24)."""
    prev = np.ones_like(obs)
    out = []
    for g, k in zip(groups, kappas, strict=True):
        n_g = int(g.max()) + 1
        o, e = np.zeros((n_g, *obs.shape[1:])), np.zeros((n_g, *obs.shape[1:]))
        np.add.at(o, g, obs)
        np.add.at(e, g, exp)
        rep = np.zeros(n_g, dtype=np.int64)
        rep[g[::-1]] = np.arange(len(g))[::-1]  # a product of each group (the groups nest: any one will do)
        par = prev[rep]
        if k >= TILT_OFF:
            raw = par
        else:
            units = o.sum(-1, keepdims=True)
            e_share = _normalise(e)
            prior = _normalise(e * par)
            shrunk = (o + k * prior) / np.maximum(units + k, _TINY)
            raw = np.where(e_share > 0, shrunk / np.maximum(e_share, _TINY), par)
            raw = np.clip(raw, *_TILT_CLIP)
        units = o.sum(-1)
        w = np.divide(units, units.sum(1, keepdims=True), out=np.zeros_like(units),
                      where=units.sum(1, keepdims=True) > 0)
        z = (w[..., None] * raw).sum(1, keepdims=True)
        t = np.divide(raw, z, out=np.ones_like(raw), where=z > 0)
        out.append(t)
        prev = t[g]
    return out


class _TiltFit:
    """The tilts of day rows under base shares for any strengths: the per-product sums the levels need are computed
    once (the temperature's) or once per temperature fit (the campaign's), so a grid search costs little."""

    def __init__(self, rows: dict[str, np.ndarray], base: np.ndarray, cats: np.ndarray, band_c: float,
                 category_names: tuple[str, ...]) -> None:
        self.rows, self.cats, self.band_c, self.names = rows, cats, band_c, category_names
        self.n_p = base.shape[1]
        k_cat = len(category_names)
        self.cat_g = np.where(cats >= 0, cats, k_cat)  # an uncategorised product: a group of its own kind
        self.share = base[rows["si"], rows["pi"], rows["dow"]]
        self.units = rows["counts"].sum(1, keepdims=True)
        self.band = HourTilts(band_c, category_names, cats).band(rows["anomaly"])
        known = self.band >= 0
        self.temp_sums = None
        if len(np.unique(self.band[known])) > 1:
            self.temp_sums = self._sums(rows["pi"][known] * 3 + self.band[known], rows["counts"][known],
                                        self.units[known] * self.share[known], 3)
        camp = rows["campaign"]
        self.has_camp = bool(camp.any() and not camp.all())
        self._camp_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def _sums(self, idx: np.ndarray, obs: np.ndarray, exp: np.ndarray, states: int) -> tuple[np.ndarray, np.ndarray]:
        """Observed and expected units per product x state x hour (P, states, 24) for rows' flat indices."""
        n = self.n_p * states
        o = np.stack([np.bincount(idx, obs[:, h], minlength=n) for h in range(HOURS)], -1)
        e = np.stack([np.bincount(idx, exp[:, h], minlength=n) for h in range(HOURS)], -1)
        return o.reshape(self.n_p, states, HOURS), e.reshape(self.n_p, states, HOURS)

    def fit(self, kappa: dict[str, float]) -> HourTilts | None:
        k_cat = len(self.names)
        temp_chain = temp_cat = None
        t = HourTilts(self.band_c, self.names, self.cats)
        if self.temp_sums is not None:
            chain_t, cat_t = _level_tilts(*self.temp_sums, [np.zeros(self.n_p, np.int64), self.cat_g],
                                          [kappa["temp_chain"], kappa["temp_category"]])
            temp_chain, temp_cat = chain_t[0], cat_t[:k_cat]
            t = HourTilts(self.band_c, self.names, self.cats, temp_chain, temp_cat)
        ck = (kappa["campaign_chain"], kappa["campaign_category"], kappa["campaign_product"])
        if self.has_camp and min(ck) < TILT_OFF:
            tk = (kappa["temp_chain"], kappa["temp_category"]) if temp_chain is not None else None
            if tk not in self._camp_cache:
                r = self.rows
                share = self.share
                if temp_chain is not None:
                    share = _normalise(share * t.factors(r["pi"], self.cats[r["pi"]], r["anomaly"], None))
                self._camp_cache[tk] = self._sums(r["pi"] * 2 + r["campaign"].astype(np.int64), r["counts"],
                                                  self.units * share, 2)
            chain_t, cat_t, prod_t = _level_tilts(
                *self._camp_cache[tk], [np.zeros(self.n_p, np.int64), self.cat_g, np.arange(self.n_p)], list(ck))
            t = HourTilts(self.band_c, self.names, self.cats, temp_chain, temp_cat, chain_t[0], cat_t[:k_cat],
                          prod_t)
        if t.temp_chain is None and t.camp_chain is None:
            return None
        return t


def _loglik_rows(rows: dict[str, np.ndarray], base: np.ndarray, tilts: HourTilts | None) -> float:
    """Held-out multinomial log-likelihood of day rows under the base shares times the tilts."""
    share = base[rows["si"], rows["pi"], rows["dow"]]
    if tilts is not None:
        share = _normalise(share * tilts.factors(rows["pi"], tilts.product_category[rows["pi"]], rows["anomaly"],
                                                 rows["campaign"]))
    return _loglik(rows["counts"], share)


def fit_configured(panel: pd.DataFrame, cfg: HourlyConfig, inputs: HourInputs | None = None) -> HourlyShares:
    """The fit every caller uses (``/forecast``, the bake plan, the backtest, the benchmark): ``training.hourly``'s
    held-out days and band, the day covariates only when ``covariates`` is on and the caller has them (the calendar's
    ``PlannedCalendar.hour_inputs`` as known on the fit's last day)."""
    return fit_hourly_shares(panel, cfg.holdout_days, inputs=inputs if cfg.covariates else None,
                             band_c=cfg.temp_band_c)


def raw_shares(panel: pd.DataFrame) -> HourlyShares:
    """The unpooled shares (each store x product x weekday's own, the store's where it sold nothing): what
    ``/forecast`` served before, kept as the baseline the hour-level backtest compares with."""
    return fit_hourly_shares(panel, kappa={"store": 0.0, "product": 0.0, "series": 0.0})


def hourly_quantiles(mean: np.ndarray, alpha: np.ndarray | float, quantiles: Sequence[float],
                     max_count: int = 64) -> dict[float, np.ndarray]:
    """Integer quantiles of an hour's count: negative binomial with the hour's mean and the day's dispersion (an hour
    is a thinning of a gamma-Poisson day, which keeps the gamma's shape).

    Hours are small counts, so the CDF is summed up to ``max_count`` once for every row (the pmf's recursion) and all
    quantiles are read from it: ~20x faster than scipy's ``ppf`` per quantile on a backtest's 500K hours; rows whose
    quantile lies beyond ``max_count`` fall back to ``ppf``."""
    mu = np.atleast_1d(np.asarray(mean, dtype=float))
    a = np.broadcast_to(np.maximum(np.asarray(alpha, dtype=float), 1e-6), mu.shape)
    n = 1.0 / a
    p = n / (n + np.maximum(mu, 1e-9))
    pmf = np.exp(n * np.log(p))  # P(0)
    cdf = pmf.copy()
    qs = [float(q) for q in quantiles]
    out = {q: np.full(mu.shape, -1.0) for q in qs}
    for k in range(max_count + 1):
        for q in qs:
            hit = (out[q] < 0) & (cdf >= q - 1e-12)
            out[q][hit] = k
        pmf = pmf * (k + n) / (k + 1) * (1.0 - p)
        cdf = cdf + pmf
    for q in qs:
        rest = out[q] < 0
        if rest.any():
            out[q][rest] = unc.nb_quantile(mu[rest], a[rest], q)
    return out
