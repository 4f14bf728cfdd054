"""Demand uncertainty around a point forecast: negative binomial days, gamma-shared windows, sample paths.

Why parametric and not conformal: replenishment needs the distribution of a *multi-day total* (review period plus
lead time), which conformal per-day intervals cannot give, and counts of slow items are discrete. The model:

    Y_d | L, G_d ~ Poisson(mu_d * L * G_d),  L ~ Gamma(mean 1, var b) shared by the days of one window,
                                              G_d ~ Gamma(mean 1, var a) independent per day,

so a single day is (very nearly) negative binomial with ``Var = mu + alpha mu^2`` where
``alpha = a + b + a b``, and a window total has ``Var(S) = M + alpha Q + b (M^2 - Q)`` (``M = sum mu``,
``Q = sum mu^2``): the shared part ``b`` is the forecast's level error, which does not average out over days.
``alpha`` is fitted by maximum likelihood on out-of-sample residuals and ``b`` by moments on window totals.
Pure numpy/scipy: the replenishment engine uses it without any training dependency.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

QUANTILES: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)
_EPS = 1e-9


def _nb_params(mean: np.ndarray, alpha: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """scipy's (n, p) for mean ``mean`` and variance ``mean + alpha mean^2``; tiny alpha approaches Poisson."""
    mu = np.maximum(np.asarray(mean, dtype=float), _EPS)
    a = np.maximum(np.asarray(alpha, dtype=float), 1e-6)
    n = 1.0 / a
    return n, n / (n + mu)


def nb_quantile(mean, alpha, q: float) -> np.ndarray:
    """Integer daily demand quantile (what a planner orders against)."""
    n, p = _nb_params(mean, alpha)
    return stats.nbinom.ppf(q, n, p)


def nb_interp_quantile(mean, alpha, q: float) -> np.ndarray:
    """Quantile of ``Y - U`` (U uniform on [0, 1)): the NB with each integer's mass spread over (k-1, k].

    Why: integer quantiles of slow items over-cover any nominal level; scoring ``y - u`` against these continuous
    quantiles is the randomized-PIT check, exact for a correct discrete forecast (see
    ``forecasting.evaluation.metrics``).
    """
    n, p = _nb_params(mean, alpha)
    k = stats.nbinom.ppf(q, n, p)
    below = stats.nbinom.cdf(k - 1, n, p)
    mass = np.maximum(stats.nbinom.pmf(k, n, p), _EPS)
    return k - 1 + np.clip((q - below) / mass, 0.0, 1.0)


def nb_pit(y, mean, alpha, rng: np.random.Generator) -> np.ndarray:
    """Randomized probability integral transform; uniform on [0, 1] when the forecast distribution is right."""
    n, p = _nb_params(mean, alpha)
    y = np.asarray(y, dtype=float)
    lo = stats.nbinom.cdf(y - 1, n, p)
    hi = stats.nbinom.cdf(y, n, p)
    return lo + rng.random(y.shape) * (hi - lo)


def fit_dispersion(y, mean, max_alpha: float = 20.0) -> float:
    """Maximum-likelihood NB dispersion ``alpha`` given observations and (out-of-sample) means."""
    y = np.asarray(y, dtype=float)
    mu = np.maximum(np.asarray(mean, dtype=float), 1e-3)
    ok = np.isfinite(y) & np.isfinite(mu)
    y, mu = y[ok], mu[ok]
    if len(y) < 10:
        return 0.3

    def nll(log_alpha: float) -> float:
        n, p = _nb_params(mu, np.exp(log_alpha))
        return -float(stats.nbinom.logpmf(y, n, p).sum())

    res = optimize.minimize_scalar(nll, bounds=(np.log(1e-4), np.log(max_alpha)), method="bounded")
    return float(np.exp(res.x))


def fit_shared_variance(totals, m_sum, q_sum, alpha: float) -> float:
    """Moment estimate of the shared level variance ``b`` from window totals (clipped to [0, alpha])."""
    s, m, q = (np.asarray(v, dtype=float) for v in (totals, m_sum, q_sum))
    denom = float(np.sum(m * m - q))
    if denom <= 0:
        return 0.0
    b = float(np.sum((s - m) ** 2 - m - alpha * q)) / denom
    return float(np.clip(b, 0.0, alpha))


def _split(alpha: float, b: float) -> tuple[float, float]:
    b = float(np.clip(b, 0.0, alpha))
    return (alpha - b) / (1.0 + b), b


def sample_paths(mean, alpha: float, shared: float = 0.0, n_paths: int = 2000, seed: int = 0) -> np.ndarray:
    """Simulated demand paths, shape ``(n_paths, days)``, for one series' daily means over a window."""
    mu = np.maximum(np.asarray(mean, dtype=float).ravel(), 0.0)
    a, b = _split(alpha, shared)
    rng = np.random.default_rng(seed)
    level = rng.gamma(1.0 / b, b, size=(n_paths, 1)) if b > 1e-6 else np.ones((n_paths, 1))
    daily = rng.gamma(1.0 / a, a, size=(n_paths, len(mu))) if a > 1e-6 else np.ones((n_paths, len(mu)))
    return rng.poisson(mu[None, :] * level * daily)


def window_quantiles(
    mean, alpha: float, q=QUANTILES, shared: float = 0.0, days: int | None = None, n_paths: int = 4000, seed: int = 0
) -> dict[float, float]:
    """Quantiles of the total demand over the first ``days`` days (all by default) of ``mean``.

    Daily quantiles cannot be summed; this is the service-level order-up-to level for a protection window.
    """
    mu = np.asarray(mean, dtype=float).ravel()[: days or None]
    totals = sample_paths(mu, alpha, shared, n_paths, seed).sum(axis=1)
    qs = [q] if np.isscalar(q) else list(q)
    return {float(x): float(np.quantile(totals, x, method="inverted_cdf")) for x in qs}


def window_variance(mean, alpha: float, shared: float = 0.0) -> float:
    """Closed-form variance of a window total (checks the simulation; cheap for many series)."""
    mu = np.asarray(mean, dtype=float)
    return float(moment_variance(mu.sum(), (mu * mu).sum(), alpha, shared))


def moment_variance(mean_sum, mean_sq_sum, alpha, shared) -> np.ndarray:
    """``window_variance`` from a window's sum and square sum of daily means (element-wise over many windows)."""
    m, q = np.asarray(mean_sum, dtype=float), np.asarray(mean_sq_sum, dtype=float)
    return m + np.asarray(alpha, dtype=float) * q + np.asarray(shared, dtype=float) * np.maximum(m * m - q, 0.0)


# --------------------------------------------------------------------------------------------------------------
# Window calibration: a level factor and a shared variance per segment, from out-of-sample window totals
# --------------------------------------------------------------------------------------------------------------


def fit_window_calibration(
    actual: np.ndarray,
    mean_sum: np.ndarray,
    mean_sq_sum: np.ndarray,
    groups: np.ndarray,
    alpha: np.ndarray | float,
    prior_units: float = 500.0,
    bounds: tuple[float, float] = (0.7, 1.5),
) -> dict[str, tuple[float, float]]:
    """Per group: (level factor, shared variance b) from held-out window totals of one series each.

    Why: the per-day dispersion is fitted around the model's own means, so a model that under-forecasts a whole
    segment (censored ready food, new seasonal drinks) gets tight windows around the wrong level and the
    order-up-to misses. The factor is the ratio of actual to forecast window totals, shrunk towards 1 by
    ``prior_units`` pseudo-units of forecast (a small or new segment stays near 1) and clipped to ``bounds``; b is the
    moment estimate of the level variance left around the corrected means (``fit_shared_variance``), so the window
    quantile also covers how far the level still wanders. ``actual`` should be latent demand (censored days
    unconstrained), not observed sales, or the stockouts would teach the calibration the same bias.
    Arrays are per window: actual total, sum of daily means, sum of squared daily means, group key, NB alpha.
    """
    a, m, q = (np.asarray(v, dtype=float) for v in (actual, mean_sum, mean_sq_sum))
    g = np.asarray(groups).astype(str)
    al = np.broadcast_to(np.asarray(alpha, dtype=float), a.shape)
    out: dict[str, tuple[float, float]] = {}
    for key in np.unique(g):
        sel = g == key
        f = (a[sel].sum() + prior_units) / (m[sel].sum() + prior_units)
        f = float(np.clip(f, *bounds))
        b = fit_shared_variance(a[sel], f * m[sel], f * f * q[sel], float(np.average(al[sel], weights=m[sel] + _EPS)))
        out[str(key)] = (f, b)
    return out


def window_nb_quantile(mean_sum, mean_sq_sum, alpha, shared, q: float) -> np.ndarray:
    """Quantile of a window total from its first two moments (negative binomial with ``window_variance``'s variance).

    A fast closed-form check of window coverage over many held-out windows (the engine itself samples paths).
    """
    m = np.maximum(np.asarray(mean_sum, dtype=float), _EPS)
    var = moment_variance(m, mean_sq_sum, alpha, shared)
    over = np.maximum(var - m, 1e-9 * m)
    return nb_quantile(m, over / (m * m), q)


def window_coverage(actual, mean_sum, mean_sq_sum, alpha, shared, q: float) -> float:
    """Share of windows whose actual total is at most the window quantile ``q`` (calibrated: about ``q``)."""
    top = window_nb_quantile(mean_sum, mean_sq_sum, alpha, shared, q)
    return float(np.mean(np.asarray(actual, dtype=float) <= top))


def raise_shared(alpha, shared, shared_min) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, shared) with the shared level variance raised to at least ``shared_min``, the daily part kept.

    ``alpha = a + b + a b`` (see the module docstring), so a larger b needs a larger total alpha for the same daily
    noise a; raising b alone would be clipped to alpha by the sampler.
    """
    al, b = np.asarray(alpha, dtype=float), np.asarray(shared, dtype=float)
    b = np.clip(b, 0.0, al)
    a = (al - b) / (1.0 + b)
    b2 = np.maximum(b, np.asarray(shared_min, dtype=float))
    return a + b2 + a * b2, b2


def fit_common_variance(totals, mean_sum, within_var, parts_sq_sum, cap: float = 0.5) -> float:
    """Moment estimate of a level variance c shared by the parts of a total (the products of a store).

    With independent part levels a total's variance is the sum of the parts' (``within_var``); a common level adds
    ``c (M^2 - sum M_p^2)`` (the covariances ``c M_p M_q``). Per window: actual total, sum of the parts' means,
    sum of their variances, sum of their squared means. Clipped to [0, cap].
    """
    s, m, v, p2 = (np.asarray(x, dtype=float) for x in (totals, mean_sum, within_var, parts_sq_sum))
    denom = float(np.sum(m * m - p2))
    if denom <= 0:
        return 0.0
    return float(np.clip(np.sum((s - m) ** 2 - v) / denom, 0.0, cap))
