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

Hour-level uncertainty follows from the daily model: the day's count is negative binomial (a gamma day level times
Poisson noise, the generator's and the models' family) and an hour is a thinning of it, so the hour's count is
negative binomial with mean ``daily mean x share`` and the *same* dispersion. Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from forecasting import uncertainty as unc

HOURS = 24
KAPPA_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1_000.0, 3_000.0, 10_000.0, 1e6)
_TINY = 1e-12


@dataclass(frozen=True)
class HourlyShares:
    """Shares of a day's units per local hour, per (store, product, weekday) (weekday 0 = Monday)."""

    store_ids: np.ndarray  # (S,)
    product_ids: np.ndarray  # (P,)
    series: np.ndarray  # (S, P, 7, 24): each open-hours row sums to 1
    store: np.ndarray  # (S, 7, 24): the store's all-product shape, for products it has not sold yet
    chain: np.ndarray  # (7, 24): for a store with no history (a new store)
    kappa: dict[str, float]
    last_date: date | None = None

    def _si(self, store: int) -> int | None:
        i = int(np.searchsorted(self.store_ids, store))
        return i if i < len(self.store_ids) and self.store_ids[i] == store else None

    def _pi(self, product: int) -> int | None:
        i = int(np.searchsorted(self.product_ids, product))
        return i if i < len(self.product_ids) and self.product_ids[i] == product else None

    def share(self, store: int, product: int, dow: int) -> np.ndarray:
        """(24,) shares for one store x product x weekday; the store's shape for an unknown product, the chain's for
        an unknown store."""
        si, pi = self._si(store), self._pi(product)
        if si is None:
            return self.chain[dow]
        if pi is None or self.series[si, pi, dow].sum() <= 0:
            return self.store[si, dow]
        return self.series[si, pi, dow]

    def get(self, store: int, product: int, dow: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(hours, shares) over the hours with demand (the open hours), as the API lists them; None if none."""
        s = self.share(store, product, dow)
        hours = np.flatnonzero(s > 0)
        return (hours, s[hours]) if len(hours) else None

    def split(self, frame: pd.DataFrame, mean_col: str = "mean") -> pd.DataFrame:
        """Daily rows (``store_id, product_id, ds`` and ``mean_col``) -> one row per open hour with ``local_hour``,
        ``share`` and ``mean_col`` x share. Vectorised: the backtest splits every origin's forecasts with it."""
        dow = pd.to_datetime(frame["ds"]).dt.dayofweek.to_numpy()
        tab = self.share_table(frame["store_id"].to_numpy(), frame["product_id"].to_numpy(), dow)  # (n, 24)
        r, h = np.nonzero(tab > 0)
        out = frame.iloc[r].reset_index(drop=True)
        out["local_hour"] = h.astype("int16")
        out["share"] = tab[r, h]
        out[mean_col] = out[mean_col].to_numpy(float) * out["share"].to_numpy()
        return out

    def share_table(self, stores: np.ndarray, products: np.ndarray, dows: np.ndarray) -> np.ndarray:
        """(n, 24) shares for arrays of store, product and weekday (the fallbacks of ``share``)."""
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
        return out


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
) -> HourlyShares:
    """Fit the share hierarchy on an hourly panel (``store_id, product_id, date, local_hour, qty[, censored]``).

    ``kappa`` fixes the three prior strengths (``store``, ``product``, ``series``, in units; 0 = the level's own
    shares); otherwise each is chosen on the grid by the held-out log-likelihood of the last ``holdout_days``
    (the store level on store counts, then product and series jointly on series counts)."""
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
    if kappa is None:
        kappa = {"store": 100.0, "product": 100.0, "series": 100.0}
        split = last - pd.Timedelta(days=holdout_days)
        early = dates <= split
        if holdout_days > 0 and early.any() and (~early).any():
            c_fit, _ = _tensor(p[early.to_numpy()], stores, products)
            c_hold, _ = _tensor(p[~early.to_numpy()], stores, products)
            ks = max(grid, key=lambda k: _loglik(c_hold.sum(1), _shapes(c_fit, open_, k, 0.0, 0.0)[1]))
            best = max(((kp, kq) for kp in grid for kq in grid),
                       key=lambda kk: _loglik(c_hold, _shapes(c_fit, open_, ks, kk[0], kk[1])[0]))
            kappa = {"store": float(ks), "product": float(best[0]), "series": float(best[1])}
    series, store, chain = _shapes(counts, open_, kappa["store"], kappa["product"], kappa["series"])
    return HourlyShares(stores, products, series, store, chain, dict(kappa), last.date())


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
