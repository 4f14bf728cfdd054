"""Models on Dask: statsforecast baselines through its Fugue backend, LightGBM through mlforecast's distributed API.

Why these three pieces and not a process pool of our own:

* ``DaskStatsModels``: the same SeasonalNaive(7) / AutoETS / CrostonOptimized as ``training.models.StatsModels``,
  run by statsforecast's Fugue backend on a Dask DataFrame (one call per partition of whole series, see
  ``_fugue_forecast``). Each series is fitted on its own, so the forecasts equal the local ones up to the backend's
  float32 output.
* ``DaskLGBMModel``: the global LightGBM of ``training.models.LGBMModel`` (same lags, rolling features, date
  features, static ids as categoricals, censored days at weight 0) trained by ``DistributedMLForecast`` with
  ``DaskLGBMForecast`` (``lightgbm.dask``: data-parallel, histograms reduced over the workers). Not bit-identical to
  local training (bagging draws and histogram bins are per worker); tests compare accuracy, not values.
* ``dask_lgbm_forecast_from``: the nightly batch with an already trained champion: series partitions scored on the
  workers with the same fitted trees (``MLForecast.predict(new_df=...)``), so values equal the local batch.

Every entry point takes a ``distributed.Client``; the frames are built from a ``ModelFrame`` on the client here
(what fits one machine today); on a real cluster the workers would read the month partitions of the feature
store themselves (``dask.dataframe.read_parquet``), see docs/operations.md (Scale-out).
"""

from __future__ import annotations

import time
import warnings
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecasting.cluster import dask_client, worker_count
from forecasting.config import Settings
from training.data import ModelFrame
from training.forecaster import DemandForecaster
from training.models import ID_CODES, STAT_NAMES, LGBMModel, same_weekday_mean

if TYPE_CHECKING:  # pragma: no cover
    import dask.dataframe as dd
    from distributed import Client

    from training.batch import Champion

_ID_COLS = ["unique_id", "ds"]


def to_dask(df: pd.DataFrame, client: Client, npartitions: int | None = None) -> dd.DataFrame:
    """A Dask DataFrame with whole series per partition (sorted by ``unique_id``, split on series boundaries)."""
    import dask.dataframe as dd

    n = npartitions or worker_count(client)
    d = df.sort_values(_ID_COLS, kind="stable").set_index("unique_id", drop=True)
    n = max(1, min(n, d.index.nunique()))
    ddf = dd.from_pandas(d, npartitions=n, sort=True).reset_index()
    return client.persist(ddf)


def _partitions(client: Client, n_series: int, per_partition: int | None) -> int:
    """Enough partitions to give every worker work, more when series per partition would pass the limit."""
    by_size = -(-n_series // per_partition) if per_partition else 1
    return max(worker_count(client), by_size)


def _fugue_forecast(models: list[Any], ddf: dd.DataFrame, h: int) -> dd.DataFrame:
    """statsforecast's Fugue backend over the Dask partitions as they are (each holds whole series).

    ``StatsForecast.forecast(df=ddf)`` asks Fugue to partition by ``unique_id``, which Dask runs as a shuffle and one
    ``groupby.apply`` call per series: 6x the CPU of the local run at 50 stores. The backend's own forecast function
    mapped once per partition (one ``StatsForecast`` per partition, ``n_jobs=1``) gives the same numbers without it.
    """
    import fugue.api as fa
    from statsforecast.distributed.fugue import FugueBackend

    backend = FugueBackend()
    schema = backend._get_output_schema(df=ddf, models=models, level=None, mode="forecast", id_col="unique_id",
                                        time_col="ds", target_col="y")
    params = {"models": models, "fallback_model": None, "freq": "D", "h": h, "level": None,
              "prediction_intervals": None, "id_col": "unique_id", "time_col": "ds", "target_col": "y"}
    return fa.transform(ddf, backend._forecast_noX, params=params, schema=schema)


class DaskStatsModels:
    """statsforecast baselines on Dask (Fugue backend); same interface and output as ``StatsModels``."""

    def __init__(self, client: Client, season_length: int = 7, ets_model: str = "ZNA", use_ets: bool = True,
                 series_per_partition: int | None = None) -> None:
        self.client = client
        self.season_length = season_length
        self.ets_model = ets_model
        self.use_ets = use_ets
        self.series_per_partition = series_per_partition

    @property
    def names(self) -> list[str]:
        return [n for n in STAT_NAMES if self.use_ets or n != "auto_ets"]

    def fit(self, frame: ModelFrame) -> DaskStatsModels:
        """Keep the frame: the Fugue backend fits and forecasts in one pass (``forecast``), nothing is stored."""
        self.frame_ = frame
        n = frame.df.groupby("unique_id").size()
        self.long_ = n.index[n >= 2 * self.season_length].tolist()
        return self

    def predict(self, h: int, ids: list[str]) -> pd.DataFrame:
        """``unique_id, ds, seasonal_naive[, auto_ets], croston``; short series get the incumbent rule (as local)."""
        from statsforecast.models import AutoETS, CrostonOptimized, SeasonalNaive

        rule = same_weekday_mean(self.frame_, ids, h)
        out = rule[_ID_COLS].copy()
        if self.long_:
            models = [SeasonalNaive(self.season_length, alias="seasonal_naive")]
            if self.use_ets:
                models.append(AutoETS(season_length=self.season_length, model=self.ets_model, alias="auto_ets"))
            models.append(CrostonOptimized(alias="croston"))
            d = self.frame_.df[["unique_id", "ds", "y_filled"]].rename(columns={"y_filled": "y"})
            d = d[d["unique_id"].isin(self.long_)]
            ddf = to_dask(d, self.client, _partitions(self.client, len(self.long_), self.series_per_partition))
            pred = _fugue_forecast(models, ddf, h).compute()
            pred["ds"] = pd.to_datetime(pred["ds"]).astype("datetime64[ns]")
            pred["unique_id"] = pred["unique_id"].astype(str)
            out = out.merge(pred, on=_ID_COLS, how="left")
        for n in self.names:
            if n not in out:
                out[n] = np.nan
            out[n] = out[n].astype(float).fillna(rule["incumbent"]).clip(lower=0.0)
        return out[[*_ID_COLS, *self.names]]


class DaskLGBMModel:
    """``LGBMModel`` trained on Dask: ``DistributedMLForecast`` + ``DaskLGBMForecast`` (recursive strategy only)."""

    name = "lightgbm"

    def __init__(self, client: Client, params: dict[str, Any] | None = None, lags: list[int] | None = None,
                 horizon: int = 14, num_threads: int = 1, seed: int = 42,
                 series_per_partition: int | None = None) -> None:
        self.client = client
        self.local = LGBMModel(params, lags, "recursive", horizon, num_threads, seed)  # the feature definition
        self.series_per_partition = series_per_partition

    def _pipeline(self, cats: list[int]):
        from mlforecast.distributed import DistributedMLForecast
        from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast

        ts = self.local._pipeline().ts  # same lags, lag transforms and date features as the local model
        # categorical_feature cannot reach fit() through DistributedMLForecast: pass the column indices as the
        # LightGBM parameter alias instead (the static ids come first among the features, see ``fit``)
        reg = DaskLGBMForecast(
            **self.local.params, random_state=self.local.seed, n_jobs=self.local.num_threads, verbosity=-1,
            deterministic=True, client=self.client, categorical_column=",".join(map(str, cats)),
        )
        return DistributedMLForecast(
            models={self.name: reg}, freq="D", lags=ts.lags, lag_transforms=ts.lag_transforms,
            date_features=ts.date_features, num_threads=1,
        )

    def fit(self, frame: ModelFrame) -> DaskLGBMModel:
        d = frame.df
        self.static_ = list(frame.static)
        self.exog_ = list(frame.exog)
        weight = d["weight"].to_numpy(float) if "weight" in d else np.where(d["censored"], 0.0, 1.0)
        train = pd.DataFrame({"unique_id": d["unique_id"].to_numpy(), "ds": d["ds"].to_numpy(),
                              "y": d["y_filled"].to_numpy(), "weight": weight})
        for c in [*self.static_, *self.exog_]:
            train[c] = d[c].to_numpy()
        self.local.codes_ = {c: pd.Index(pd.unique(train[c].dropna())).sort_values() for c in ID_CODES
                             if c in self.static_}
        train = self.local._encode(train)  # dense id codes, as the local model
        # features = input columns minus id/time/target/weight, in order: the static ids are the first ones
        cats = [i for i, c in enumerate([*self.static_, *self.exog_]) if c in ("store_id", "product_id")]
        n_series = d["unique_id"].nunique()
        ddf = to_dask(train, self.client, _partitions(self.client, n_series, self.series_per_partition))
        self.mlf_ = self._pipeline(cats)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.mlf_.fit(ddf, static_features=self.static_, weight_col="weight")
        return self

    def predict(self, h: int, future: pd.DataFrame | None = None, ids: list[str] | None = None) -> pd.DataFrame:
        """``unique_id, ds, lightgbm`` for ``h`` days after each series' last training day (recursive)."""
        x_df = None
        if self.exog_:
            if future is None:
                raise ValueError("future exogenous values are required")
            x_df = future[["unique_id", "ds", *self.exog_]].astype({c: float for c in self.exog_})
            if ids is not None:
                x_df = x_df[x_df["unique_id"].isin(ids)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = self.mlf_.predict(h=h, X_df=x_df, ids=ids).compute()
        out["ds"] = pd.to_datetime(out["ds"]).astype("datetime64[ns]")
        out[self.name] = out[self.name].clip(lower=0.0)
        return out[[*_ID_COLS, self.name]].sort_values(_ID_COLS, ignore_index=True)

    @property
    def booster(self):
        return self.mlf_.models_[self.name].booster_

    def to_local(self) -> LGBMModel:
        """The trained trees as a local ``LGBMModel`` (to register as a champion, or score with the batch job).

        ``DistributedMLForecast.to_local`` gathers the series state to the client: fine for the model, not meant
        for 20,000-store histories (the batch scores with ``new_df`` anyway).
        """
        loc = LGBMModel(self.local.params, self.local.lags, "recursive", self.local.horizon, self.local.num_threads,
                        self.local.seed)
        loc.mlf_, loc.static_, loc.exog_ = self.mlf_.to_local(), list(self.static_), list(self.exog_)
        loc.mlfs_ = {"recursive": loc.mlf_}
        loc.codes_ = dict(self.local.codes_)
        return loc


def _score_part(model: LGBMModel, df: pd.DataFrame, static: list[str], exog: list[str], h: int,
                ids: list[str]) -> pd.DataFrame:
    """One partition of the batch, on a worker: ``training.batch.lgbm_forecast_from`` on these series only."""
    from training.batch import lgbm_forecast_from

    return lgbm_forecast_from(model, ModelFrame(df, static, exog), h, ids)


def dask_lgbm_forecast_from(model: LGBMModel, frame: ModelFrame, h: int, ids: list[str], client: Client,
                            series_per_partition: int | None = None) -> pd.DataFrame:
    """``training.batch.lgbm_forecast_from`` on Dask: the model is broadcast once, series partitions are scored.

    Each series is forecast from its own history only, so the partitions give exactly the local numbers.
    """
    from training.batch import NEW_DF_DAYS

    days = max(NEW_DF_DAYS, getattr(model, "history_days", 0))  # as training.batch.lgbm_forecast_from
    d = frame.df[frame.df["unique_id"].isin(ids) & (frame.df["ds"] > frame.last_date - pd.Timedelta(days=days))]
    n = _partitions(client, len(ids), series_per_partition)
    [model_fut] = client.scatter([model], broadcast=True)
    futures = []
    for g in np.array_split(np.array(sorted(ids), dtype=object), n):
        if len(g):
            part = d[d["unique_id"].isin(set(g))]
            futures.append(client.submit(_score_part, model_fut, part, list(frame.static), list(frame.exog), h,
                                         list(g), pure=False))
    out = pd.concat(client.gather(futures), ignore_index=True)
    return out.sort_values(_ID_COLS, ignore_index=True)


def dask_forecast_from(forecaster: DemandForecaster, frame: ModelFrame, client: Client, h: int | None = None,
                       series_per_partition: int | None = None) -> pd.DataFrame:
    """``training.batch.forecast_from`` with the LightGBM scoring and the statistical part on Dask."""
    from training.batch import forecast_from

    def lgbm_part(model: Any, fr: ModelFrame, hh: int, ids: list[str]) -> pd.DataFrame:
        return dask_lgbm_forecast_from(model, fr, hh, ids, client, series_per_partition)

    def stats_part(fr: ModelFrame, hh: int, ids: list[str], use_ets: bool) -> pd.DataFrame:
        st = DaskStatsModels(client, 7, forecaster.cfg.ets_model, use_ets, series_per_partition)
        return st.fit(fr).predict(hh, ids)

    return forecast_from(forecaster, frame, h, lgbm_part=lgbm_part, stats_part=stats_part)


def run_batch_dask(settings: Settings, features_dir: str | Path | None = None,
                   forecasts_dir: str | Path | None = None, data_date: date | None = None,
                   champion: Champion | None = None, client: Client | None = None) -> dict[str, Any]:
    """``training.batch.run_batch`` with ``dask_forecast_from``: same cache, same summary (plus ``engine``)."""
    from training.batch import frame_through, load_champion, save_forecasts

    t0 = time.perf_counter()
    champ = champion or load_champion(settings)
    sub, day = frame_through(settings, features_dir, data_date)
    with dask_client(settings.cluster, client) as cl:
        fc = dask_forecast_from(champ.forecaster, sub, cl, settings.training.horizon,
                                settings.cluster.series_per_partition)
    return {**save_forecasts(settings, champ, fc, day, forecasts_dir, t0), "engine": "dask"}
