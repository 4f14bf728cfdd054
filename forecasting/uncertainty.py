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
    quantiles is the randomized-PIT check, exact for a correct discrete forecast (see ``forecasting.metrics``).
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
    m, q = mu.sum(), (mu * mu).sum()
    return float(m + alpha * q + shared * (m * m - q))
