"""Product demand forecasts -> joint sample paths -> material demand through the bill of materials.

Why sample paths: the order-up-to level needs a quantile of the *total* material demand over a multi-day window
summed over many products, and quantiles do not add (the sum of daily 95% quantiles over-protects badly). Drawing
joint paths (sample j of every product and day of a store is one possible future) and pushing them through the BOM
gives every window total exactly, with common random numbers: a fixed seed per (store, product) makes a line
reproducible and independent of which other stores or products are in the batch.

Input contract (a pandas DataFrame, one row per store x product x day, horizons 1-14):

``store_id``, ``product_id``, ``date``, ``mean`` (expected units sold, >= 0), and either

* ``dispersion`` (alpha >= 0: negative binomial, ``Var = mean + alpha mean^2``; 0 = Poisson), optionally with
  ``shared_dispersion`` (b in [0, alpha]: the variance of a level error shared by all days of a store x product,
  as fitted in ``forecasting.uncertainty``; daily noise then has ``a = (alpha - b) / (1 + b)``), or
* ``samples`` (a sequence of N draws per row; draw j of all rows of a store is one joint path, so correlation
  the model built in is kept).

Optional with ``dispersion``: ``store_dispersion`` (c >= 0 per row, one value per store; 0 = not shared): the
variance of a level error shared over the days drawn by the products of a store with c > 0 (a post-holiday
recovery or a slow week moves all of a store's drinks together, and a material used by 60 drinks sees it whole
while independent product errors average out). It is taken out of each product's own shared level variance
(``max(b - c, 0)``, daily noise kept), so a product's marginal stays about as fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting.errors import DataError

FORECAST_KEYS = ("store_id", "product_id", "date")
_EPS = 1e-9


@dataclass(frozen=True)
class ProductSamples:
    """Joint demand paths of products: ``samples[s, p, t, j]``; missing store x product x day rows are zero."""

    store_ids: np.ndarray  # (S,)
    product_ids: np.ndarray  # (P,)
    dates: np.ndarray  # (T,) datetime64[D], consecutive days
    mean: np.ndarray  # (S, P, T) float64
    samples: np.ndarray  # (S, P, T, N) float32

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[-1])


@dataclass(frozen=True)
class MaterialSamples:
    """Joint material demand paths ``samples[s, m, t, j]``; draw j of every material of a store is one future."""

    store_ids: np.ndarray  # (S,)
    material_ids: np.ndarray  # (M,)
    dates: np.ndarray  # (T,) datetime64[D]
    mean: np.ndarray  # (S, M, T) float64, exact (mean through the BOM, not estimated from samples)
    samples: np.ndarray  # (S, M, T, N) float32

    def day_index(self, day) -> int:
        """Index of ``day`` on the date axis (may be outside [0, T) when the forecast does not cover it)."""
        return int((np.datetime64(pd.Timestamp(day).date(), "D") - self.dates[0]).astype(int))


def validate_forecasts(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Check the input contract and return a clean, sorted copy (dates as day-resolution datetime64)."""
    missing = [c for c in (*FORECAST_KEYS, "mean") if c not in forecasts.columns]
    if missing:
        raise DataError(f"forecasts: missing columns {missing} (need store_id, product_id, date, mean)")
    if "dispersion" not in forecasts.columns and "samples" not in forecasts.columns:
        raise DataError("forecasts: need a 'dispersion' column (negative binomial) or a 'samples' column")
    df = forecasts.copy()
    df["date"] = pd.to_datetime(df["date"]).dt.normalize()
    df["mean"] = df["mean"].astype(float)
    if df["mean"].isna().any() or (df["mean"] < 0).any():
        raise DataError("forecasts: 'mean' must be a non-negative number on every row")
    if "samples" not in df.columns:
        df["dispersion"] = df["dispersion"].astype(float)
        if df["dispersion"].isna().any() or (df["dispersion"] < 0).any():
            raise DataError("forecasts: 'dispersion' must be >= 0 on every row")
        for c in ("shared_dispersion", "store_dispersion"):
            if c in df.columns:
                df[c] = df[c].fillna(0.0).astype(float).clip(lower=0.0)
    if df.duplicated(list(FORECAST_KEYS)).any():
        raise DataError("forecasts: duplicate store_id x product_id x date rows")
    return df.sort_values(list(FORECAST_KEYS), kind="mergesort").reset_index(drop=True)


def _pair_rng(seed: int, store_id: int, product_id: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(store_id) & 0xFFFFFFFF, int(product_id) & 0xFFFFFFFF])


def _draw_pair(
    rng: np.random.Generator, mean: np.ndarray, alpha: np.ndarray, shared: float, n: int,
    common: np.ndarray | None = None,
) -> np.ndarray:
    """Paths (T, n) for one store x product: Poisson(mean * level * daily) with gamma level and daily noise;
    ``common`` (n,) is the store's level shared by its products (None: 1)."""
    lam = np.broadcast_to(mean[:, None], (len(mean), n)).astype(float)
    if common is not None:
        lam = lam * common[None, :]
    if shared > 1e-6:
        lam = lam * rng.gamma(1.0 / shared, shared, size=(1, n))
    a = np.clip((alpha - shared) / (1.0 + shared), 0.0, None)
    noisy = a > 1e-6
    if noisy.any():
        a_safe = np.where(noisy, a, 1.0)[:, None]
        g = rng.gamma(1.0 / a_safe, a_safe, size=(len(mean), n))
        lam = np.where(noisy[:, None], lam * g, lam)
    return rng.poisson(lam)


def draw_product_samples(
    forecasts: pd.DataFrame,
    n_samples: int,
    seed: int,
    start=None,
    end=None,
) -> ProductSamples:
    """Joint paths for the forecast days in [start, end] (inclusive; None = all), zero where a row is missing.

    Restricting the days to the ones a proposal needs is the main speed lever (drawing is ~90% of the cost).
    """
    df = validate_forecasts(forecasts)
    if start is not None:
        df = df[df["date"] >= pd.Timestamp(start)]
    if end is not None:
        df = df[df["date"] <= pd.Timestamp(end)]
    if df.empty:
        raise DataError("forecasts: no rows in the requested date range")
    stores = np.sort(df["store_id"].unique())
    products = np.sort(df["product_id"].unique())
    d0 = df["date"].min().to_datetime64().astype("datetime64[D]")
    d1 = df["date"].max().to_datetime64().astype("datetime64[D]")
    dates = np.arange(d0, d1 + np.timedelta64(1, "D"), dtype="datetime64[D]")
    si = np.searchsorted(stores, df["store_id"].to_numpy())
    pi = np.searchsorted(products, df["product_id"].to_numpy())
    ti = (df["date"].to_numpy().astype("datetime64[D]") - d0).astype(int)

    S, P, T = len(stores), len(products), len(dates)
    mean = np.zeros((S, P, T))
    mean[si, pi, ti] = df["mean"].to_numpy()

    if "samples" in df.columns:
        arr = [np.asarray(x, dtype=np.float32).ravel() for x in df["samples"]]
        lengths = {len(a) for a in arr}
        if len(lengths) != 1 or 0 in lengths:
            raise DataError(f"forecasts: every 'samples' row needs the same number of draws (got {sorted(lengths)})")
        n = lengths.pop()
        if any((a < 0).any() or not np.isfinite(a).all() for a in arr):
            raise DataError("forecasts: 'samples' must be finite and non-negative")
        samples = np.zeros((S, P, T, n), dtype=np.float32)
        samples[si, pi, ti] = np.stack(arr)
        return ProductSamples(stores, products, dates, mean, samples)

    alpha = np.zeros((S, P, T))
    alpha[si, pi, ti] = df["dispersion"].to_numpy()
    shared = np.zeros((S, P))
    if "shared_dispersion" in df.columns:
        b = df.groupby(["store_id", "product_id"])["shared_dispersion"].mean()
        bs = np.searchsorted(stores, b.index.get_level_values(0))
        shared[bs, np.searchsorted(products, b.index.get_level_values(1))] = b.to_numpy()
    shared = np.minimum(shared, alpha.max(axis=2))
    common: dict[int, np.ndarray] = {}
    joins = np.zeros((S, P), dtype=bool)  # products that share their store's level
    if "store_dispersion" in df.columns:
        c_pair = np.zeros((S, P))
        c_pair[si, pi] = df["store_dispersion"].to_numpy()
        joins = c_pair > 1e-6
        for s_i in np.nonzero(joins.any(axis=1))[0]:
            c = float(c_pair[s_i].max())
            rng = _pair_rng(seed, stores[s_i], 0xFFFFFFFF)  # no product has this id: the store's own stream
            common[s_i] = rng.gamma(1.0 / c, c, size=n_samples)
            j = joins[s_i]
            b = shared[s_i, j][:, None]
            daily = np.clip((alpha[s_i, j] - b) / (1.0 + b), 0.0, None)  # the daily noise stays as fitted
            shared[s_i, j] = np.maximum(shared[s_i, j] - c, 0.0)
            b2 = shared[s_i, j][:, None]
            alpha[s_i, j] = np.where(alpha[s_i, j] > 0, daily + b2 + daily * b2, alpha[s_i, j])
    samples = np.zeros((S, P, T, n_samples), dtype=np.float32)
    present = np.zeros((S, P), dtype=bool)
    present[si, pi] = True
    for s, p in zip(*np.nonzero(present), strict=True):
        if mean[s, p].max() <= 0:
            continue
        rng = _pair_rng(seed, stores[s], products[p])
        samples[s, p] = _draw_pair(rng, mean[s, p], alpha[s, p], float(shared[s, p]), n_samples,
                                   common.get(s) if joins[s, p] else None)
    return ProductSamples(stores, products, dates, mean, samples)


def bom_matrix(bom: pd.DataFrame, product_ids: np.ndarray, material_ids: np.ndarray | None = None):
    """(P, M) recipe quantities; products without a recipe row use no material. Returns (matrix, material_ids)."""
    for c in ("product_id", "material_id", "qty_per_unit"):
        if c not in bom.columns:
            raise DataError(f"bom: missing column {c!r}")
    b = bom[bom["product_id"].isin(product_ids)]
    if (b["qty_per_unit"] < 0).any():
        raise DataError("bom: negative qty_per_unit")
    if material_ids is None:
        material_ids = np.sort(b["material_id"].unique())
    material_ids = np.asarray(material_ids)
    b = b[b["material_id"].isin(material_ids)]
    mat = np.zeros((len(product_ids), len(material_ids)), dtype=np.float64)
    rows = np.searchsorted(product_ids, b["product_id"].to_numpy())
    cols = np.searchsorted(material_ids, b["material_id"].to_numpy())
    np.add.at(mat, (rows, cols), b["qty_per_unit"].to_numpy(dtype=float))
    return mat, material_ids


def material_samples(ps: ProductSamples, bom: pd.DataFrame, material_ids: np.ndarray | None = None) -> MaterialSamples:
    """Material demand paths: product paths times recipe quantities, summed over products (one matmul)."""
    mat, mids = bom_matrix(bom, ps.product_ids, material_ids)
    S, P, T, N = ps.samples.shape
    # Per store one contiguous GEMM: (M, P) @ (P, T*N) -> (M, T*N).
    samples = np.matmul(mat.T.astype(np.float32)[None], ps.samples.reshape(S, P, T * N)).reshape(S, len(mids), T, N)
    mean = np.einsum("spt,pm->smt", ps.mean, mat)
    return MaterialSamples(ps.store_ids, mids, ps.dates, mean, samples)


def window_totals(ms: MaterialSamples, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Totals over days [start_m, end_m) per material (indices on ``ms.dates``): (S, M, N) totals, (M,) covered days.

    Days outside the forecast are not invented here; the caller sees how many days were covered and decides.
    """
    S, M, T, N = ms.samples.shape
    starts = np.clip(np.asarray(starts, dtype=int), 0, T)
    ends = np.clip(np.asarray(ends, dtype=int), 0, T)
    ends = np.maximum(ends, starts)
    out = np.zeros((S, M, N), dtype=np.float64)
    for s0, e0 in set(zip(starts.tolist(), ends.tolist(), strict=True)):
        if e0 <= s0:
            continue
        idx = np.nonzero((starts == s0) & (ends == e0))[0]
        out[:, idx, :] = ms.samples[:, idx, s0:e0, :].sum(axis=2, dtype=np.float64)
    return out, ends - starts


def sample_quantile(samples: np.ndarray, levels: np.ndarray | float) -> np.ndarray:
    """Quantile along the last axis as F^-1(p) = the smallest draw x with share(draws <= x) >= p.

    ``levels`` broadcasts against ``samples.shape[:-1]`` (one level per line). Always an attained value, which is
    the newsvendor's Q* = F^-1(CR) and keeps integer demand integer.
    """
    n = samples.shape[-1]
    srt = np.sort(samples, axis=-1)
    lv = np.broadcast_to(np.asarray(levels, dtype=float), samples.shape[:-1])
    k = np.clip(np.ceil(lv * n - 1e-9).astype(int) - 1, 0, n - 1)
    return np.take_along_axis(srt, k[..., None], axis=-1)[..., 0]


def daily_material_summary(ms: MaterialSamples, quantiles=(0.5, 0.8, 0.9, 0.95, 0.99)) -> pd.DataFrame:
    """Per store x material x day: mean and quantiles of the day's material demand (for reports and checks)."""
    S, M, T, N = ms.samples.shape
    frame = {
        "store_id": np.repeat(ms.store_ids, M * T),
        "material_id": np.tile(np.repeat(ms.material_ids, T), S),
        "date": np.tile(ms.dates, S * M),
        "mean": ms.mean.reshape(-1),
    }
    for q in quantiles:
        frame[f"q{round(q * 100):02d}"] = sample_quantile(ms.samples, q).reshape(-1)
    return pd.DataFrame(frame)
