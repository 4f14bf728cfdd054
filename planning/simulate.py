"""Policy replay on the source history: our engine vs the incumbent vs seasonal naive vs an oracle, same days.

Why these four on one replay (``forecasting.evaluation.simulation.replay``): every policy faces the same realised
demand (sampled from the generator's latent truth ``t_demand_truth`` when present, else the recorded sales), the
same starting stock and in-flight orders, the same supplier calendars, shelf lives and costs; only how much is
ordered differs. ``ours``, ``seasonal_naive`` and ``oracle`` run the production engine
(``forecasting.inventory.proposal.propose``) with different forecasts, so the gaps between them are the forecasts'
value; ``incumbent`` replays ireplenishment's own forecast records through its own order rule.

Forecasts are issued as of each order day (no look-ahead): ``ours`` refits LightGBM every ``refit_days`` on the
history up to the day before and re-forecasts every day from the newest data with the fitted trees; its dispersion
and window calibration (level factor and shared variance per product, and the level variance a store's pooled
products share: ``training.calibration``, the functions ``train`` fits on its backtest) are fitted on the
out-of-sample windows of the ``calib_days`` before the period, forecast the same way, against latent demand
(censored days unconstrained, ``training.data``). A product sells only
while every material of its recipe is in stock; stockout hours come from the hourly demand profile. The engine sees
each series' receipts of the last shelf life, so it can tell stock about to expire from fresh stock.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, select

from forecasting.config import ReplenishmentConfig, Settings, resolve_path
from forecasting.errors import DataError
from forecasting.evaluation.metrics import mean_interval, paired_difference
from forecasting.evaluation.simulation import DayState, DeliveryRisk, MaterialCosts, Recipes, SimulationResult, replay
from forecasting.inventory.policy import assess_count, resolve_policy
from forecasting.inventory.proposal import WindowDemand, precompute_window_demand, propose
from forecasting.inventory.schedule import DeliverySchedule, order_window
from forecasting.source.db import existing_tables
from forecasting.source.schema import SourceSchema
from planning.inputs import read, read_table, with_truth_dispersion

POLICIES = ("ours", "incumbent", "seasonal_naive", "oracle")
HORIZON = 14
Progress = Callable[[str], None]


# ----------------------------------------------------------------------------------------------------------------
# The world the policies share
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class World:
    days: list[date]
    store_ids: np.ndarray  # (n,)
    material_ids: np.ndarray  # (n,)
    demand: np.ndarray  # (n, D) realised material demand
    demand_source: str
    materials: pd.DataFrame
    bom: pd.DataFrame
    suppliers: pd.DataFrame
    schedules: list[DeliverySchedule]  # per series
    supplier_of: np.ndarray  # (n,) supplier id
    life: np.ndarray  # (n,) shelf life days, 0 = none
    pack: np.ndarray  # (n,)
    start_on_hand: np.ndarray
    start_pipeline: np.ndarray  # (D + 43, n)
    costs: list[MaterialCosts]
    qpu: np.ndarray  # typical material quantity per product unit
    hour_shares: np.ndarray  # (n, D, H)
    truth: pd.DataFrame | None  # store_id, product_id, date, expected_qty (oracle)
    recipes: Recipes  # product demand and recipe columns: a drink needs every material of its recipe
    period_truth: pd.DataFrame | None = None  # the truth's rows inside the period: demand is sampled from them
    demand_seed: int | None = None  # the seed the demand was sampled with (None: recorded sales)
    delivery_rates: dict[str, Any] | None = None  # late / short delivery rates measured on the source's orders
    policy_class: np.ndarray | None = None  # (n,) each series' replenishment class (food, chilled, ambient...)

    @property
    def start(self) -> date:
        return self.days[0]

    @property
    def end(self) -> date:
        return self.days[-1]


def history_end(engine: Engine, schema: SourceSchema) -> date:
    t = schema["inventory_snapshots"]
    with engine.connect() as conn:
        last = conn.execute(select(t.c.snapshot_date).order_by(t.c.snapshot_date.desc()).limit(1)).scalar()
    if last is None:
        raise DataError("the source has no inventory counts: nothing to replay")
    return pd.Timestamp(last).date()


def _schedules(suppliers: pd.DataFrame) -> dict[int, DeliverySchedule]:
    return {int(r.supplier_id): DeliverySchedule.from_supplier(r.delivery_weekdays, r.order_cutoff, r.lead_time_days)
            for r in suppliers.itertuples(index=False)}


def _costs(materials: pd.DataFrame, cfg: ReplenishmentConfig) -> dict[int, MaterialCosts]:
    """Purchase cost, lost margin (the class's underage ratio x cost, or the override) and salvage per material."""
    out = {}
    for row in materials.to_dict("records"):
        mid = int(row["material_id"])
        cost = row.get("unit_cost")
        cost = float(cost) if cost is not None and pd.notna(cost) and float(cost) > 0 else 1.0
        pol = resolve_policy(row, cfg)
        cp = cfg.classes.get(pol.policy_class) or cfg.classes[cfg.default_class]
        ov = cfg.material_overrides.get(mid)
        margin = ov.underage_cost if ov and ov.underage_cost else cp.underage_cost_ratio * cost
        out[mid] = MaterialCosts(cost, float(margin), cp.salvage_ratio)
    return out


def _units(prod: pd.DataFrame, uniq: np.ndarray, products: np.ndarray, start: date, D: int) -> np.ndarray:
    """(S, P, D) product units of the rows ``prod`` (store_id, product_id, date, qty) on the replay's axes."""
    units = np.zeros((len(uniq), len(products), D))
    s_ids = prod["store_id"].to_numpy()
    si = np.searchsorted(uniq, s_ids)
    keep = (si < len(uniq)) & (uniq[np.minimum(si, len(uniq) - 1)] == s_ids)
    pi = np.searchsorted(products, prod["product_id"].to_numpy())
    di = (prod["date"] - pd.Timestamp(start)).dt.days.to_numpy()
    np.add.at(units, (si[keep], pi[keep], di[keep]), prod["qty"].to_numpy(float)[keep])
    return units


def with_demand_seed(w: World, seed: int, alpha: float) -> World:
    """The same world (series, stock, calendars, costs) with demand sampled from the latent truth by ``seed``.

    Why: one demand sample is one draw of the noise (the incumbent's total cost moves +-5% between seeds), so
    policies are compared over several seeds, each policy facing the same draws (paired).
    """
    if w.period_truth is None:
        raise DataError("demand seeds need t_demand_truth: the recorded sales are a single history")
    prod = w.period_truth.assign(qty=_sample_truth(w.period_truth, alpha, seed))
    units = _units(prod, np.unique(w.store_ids), np.sort(w.bom["product_id"].unique()), w.start, len(w.days))
    r = w.recipes
    demand = np.einsum("npd,pn->nd", units[r.store_idx], r.qty)
    return replace(w, demand=demand, recipes=Recipes(r.store_idx, units, r.qty), demand_seed=seed)


def delivery_rates(orders: pd.DataFrame, start: date) -> dict[str, Any]:
    """Late and short delivery rates of the orders received before ``start`` (the source's own suppliers): late =
    received after the expected date, short = received less than ordered (and the range of the received share)."""
    got = orders[orders["received_on"].notna() & (orders["received_on"] < pd.Timestamp(start))] if len(orders) \
        else orders
    if not len(got):
        return {"orders": 0, "late_rate": 0.0, "short_rate": 0.0, "short_range": [1.0, 1.0]}
    late = got["received_on"] > got["expected_delivery"]
    share = got["received_qty"] / got["qty"].where(got["qty"] > 0)
    short = share < 1.0 - 1e-6
    rng = [float(share[short].min()), float(share[short].max())] if short.any() else [1.0, 1.0]
    return {"orders": int(len(got)), "late_rate": round(float(late.mean()), 4),
            "short_rate": round(float(short.mean()), 4), "short_range": [round(x, 3) for x in rng]}


def _sample_truth(truth: pd.DataFrame, alpha: float, seed: int) -> np.ndarray:
    """Realised units: negative binomial around the latent mean (gamma-Poisson, as the generator draws them)."""
    rng = np.random.default_rng(seed)
    mu = truth["expected_qty"].to_numpy(float)
    lam = mu * rng.gamma(1.0 / alpha, alpha, size=len(mu)) if alpha > 1e-9 else mu
    return rng.poisson(lam).astype(float)


def build_world(
    settings: Settings,
    engine: Engine,
    schema: SourceSchema,
    start: date,
    end: date,
    features_dir: str | Path | None = None,
) -> World:
    """Read and assemble everything the replay needs for [start, end] (``settings`` as ``run_simulation`` resolved
    them: the truth's dispersion read from the source)."""
    sim = settings.planning.simulation
    have = set(existing_tables(engine, schema))
    materials = read_table(engine, schema, "materials")
    bom = read_table(engine, schema, "bom")
    suppliers = read_table(engine, schema, "suppliers")
    stores = read_table(engine, schema, "stores")
    days = [start + timedelta(days=k) for k in range((end - start).days + 1)]
    D = len(days)
    use_truth = sim.demand in ("auto", "truth") and "demand_truth" in have
    truth = None
    if use_truth:
        t = schema["demand_truth"]
        truth = read(engine, select(t).where(t.c.date >= start, t.c.date <= end + timedelta(days=HORIZON + 31)))
        if truth.empty:
            use_truth = False
            truth = None
        else:
            truth["date"] = pd.to_datetime(truth["date"])
    if sim.demand == "truth" and not use_truth:
        raise DataError("simulation.demand is 'truth' but the source has no t_demand_truth rows for the period")
    period_truth = None
    if use_truth:
        period_truth = truth[truth["date"] <= pd.Timestamp(end)][["store_id", "product_id", "date", "expected_qty"]]
        prod = period_truth.assign(qty=period_truth["expected_qty"])  # picks the series; sampled per seed below
        source = "sampled latent truth"
    else:
        path = resolve_path(features_dir or settings.features.out_dir) / "daily"
        if not path.exists():
            raise DataError(f"no t_demand_truth and no feature store at {path.parent}: nothing to replay as demand")
        prod = pd.read_parquet(path, columns=["store_id", "product_id", "date", "qty"],
                               filters=[("date", ">=", pd.Timestamp(start)), ("date", "<=", pd.Timestamp(end))])
        prod["qty"] = prod["qty"].astype(float)
        source = "recorded sales (censored by past stockouts)"
    prod["date"] = pd.to_datetime(prod["date"])
    prod = prod[prod["product_id"].isin(bom["product_id"])]
    m = prod.merge(bom, on="product_id")
    m["qty"] = m["qty"] * m["qty_per_unit"]
    mat = m.groupby(["store_id", "material_id", "date"], as_index=False)["qty"].sum()
    piv = mat.pivot_table(index=["store_id", "material_id"], columns="date", values="qty", aggfunc="sum")
    piv = piv.reindex(columns=pd.to_datetime(days)).fillna(0.0)
    piv = piv[piv.sum(axis=1) > 0]
    if piv.empty:
        raise DataError(f"no demand between {start} and {end}: nothing to replay")
    keys = piv.index.to_frame(index=False).astype(int)
    store_ids, material_ids = keys["store_id"].to_numpy(), keys["material_id"].to_numpy()
    n = len(keys)
    mat_idx = materials.drop_duplicates("material_id").set_index("material_id")
    unknown = sorted(set(material_ids) - set(mat_idx.index))
    if unknown:
        raise DataError(f"bom uses materials missing from t_material: {unknown[:10]}")
    scheds = _schedules(suppliers)
    sup = mat_idx.loc[material_ids, "supplier_id"].astype(int).to_numpy()
    life = mat_idx.loc[material_ids].apply(
        lambda r: int(r["shelf_life_days"]) if bool(r["is_perishable"]) and pd.notna(r["shelf_life_days"]) else 0,
        axis=1).to_numpy()
    costs_by = _costs(materials, settings.replenishment)
    qpu_by = bom.groupby("material_id")["qty_per_unit"].mean()
    qpu = qpu_by.reindex(material_ids).fillna(1.0).to_numpy()

    # Starting stock: the plausible count of the evening before (the engine's own count check), and the orders
    # already placed (before the period, or for a store's opening) that arrive inside it, for every policy alike.
    t_inv = schema["inventory_snapshots"]
    inv = read(engine, select(t_inv).where(t_inv.c.snapshot_date >= start - timedelta(days=28),
                                           t_inv.c.snapshot_date < start))
    inv["snapshot_date"] = pd.to_datetime(inv["snapshot_date"]).dt.date
    orders = pd.DataFrame()
    if "replenishment_orders" in have:
        t_o = schema["replenishment_orders"]
        orders = read(engine, select(t_o).where(t_o.c.ordered_on >= start - timedelta(days=60),
                                                t_o.c.ordered_on <= end))
    start_on_hand = np.zeros(n)
    receipts: dict[tuple[int, int], dict[date, float]] = {}
    if len(orders):
        for c in ("ordered_on", "expected_delivery", "received_on"):
            orders[c] = pd.to_datetime(orders[c])
        got = orders[orders["received_on"].notna()]
        for (s, m, d), q in got.groupby(["store_id", "material_id", got["received_on"].dt.date])["received_qty"].sum() \
                .items():
            receipts.setdefault((int(s), int(m)), {})[d] = float(q)
    inv_idx = inv.groupby(["store_id", "material_id"]).indices
    cc = settings.replenishment.counts
    for i, (s, m) in enumerate(zip(store_ids, material_ids, strict=True)):
        ii = inv_idx.get((s, m))
        if ii is None:
            continue
        sub = inv.iloc[ii]
        a = assess_count(list(sub["snapshot_date"]), sub["on_hand_qty"].to_numpy(float),
                         sub["waste_qty"].to_numpy(float), receipts.get((int(s), int(m)), {}),
                         start - timedelta(days=1), float(mat_idx.loc[m, "pack_size"]), cc)
        start_on_hand[i] = a.on_hand
    lookahead = 42
    pipeline = np.zeros((D + lookahead + 1, n))
    if len(orders):
        opens = stores.set_index("store_id")["open_date"].map(lambda x: pd.Timestamp(x))
        o = orders.copy()
        o["open"] = o["store_id"].map(opens)
        before = (o["ordered_on"] < pd.Timestamp(start)) | (o["ordered_on"] < o["open"])
        arrive = o["received_on"].fillna(o["expected_delivery"])
        qty = o["received_qty"].fillna(o["qty"])
        o = o.assign(arrive=arrive, q=qty)[before & (arrive >= pd.Timestamp(start))]
        pos = pd.Series(np.arange(n), index=pd.MultiIndex.from_arrays([store_ids, material_ids]))
        for r in o.itertuples(index=False):
            i = pos.get((int(r.store_id), int(r.material_id)))
            k = (r.arrive.date() - start).days
            if i is not None and k < len(pipeline):
                pipeline[k, int(i)] += float(r.q)

    hour_shares = _hour_shares(engine, schema, have, stores, store_ids, days)
    uniq = np.unique(store_ids)
    products = np.sort(bom["product_id"].unique())
    units = _units(prod, uniq, products, start, D)
    q = bom.pivot_table(index="product_id", columns="material_id", values="qty_per_unit", aggfunc="sum")
    q = q.reindex(index=products, columns=np.unique(material_ids)).fillna(0.0)
    recipes = Recipes(np.searchsorted(uniq, store_ids), units, q[material_ids].to_numpy(float))
    world = World(
        days=days, store_ids=store_ids, material_ids=material_ids, demand=piv.to_numpy(float), demand_source=source,
        materials=materials, bom=bom, suppliers=suppliers, schedules=[scheds[int(x)] for x in sup], supplier_of=sup,
        life=life, pack=mat_idx.loc[material_ids, "pack_size"].to_numpy(float), start_on_hand=start_on_hand,
        start_pipeline=pipeline, costs=[costs_by[int(m)] for m in material_ids], qpu=qpu,
        hour_shares=hour_shares, truth=truth, recipes=recipes, period_truth=period_truth,
        delivery_rates=delivery_rates(orders, start) if sim.delivery_risk else None,
        policy_class=np.array([resolve_policy(mat_idx.loc[m].to_dict() | {"material_id": m},
                                              settings.replenishment).policy_class for m in material_ids]),
    )
    return with_demand_seed(world, sim.seed, sim.truth_dispersion) if use_truth else world


def _hour_shares(engine: Engine, schema: SourceSchema, have: set[str], stores: pd.DataFrame, store_ids: np.ndarray,
                 days: list[date]) -> np.ndarray:
    """(n, D, 24) hourly demand shares: the latent hourly profile when present, else uniform over opening hours."""
    D = len(days)
    uniq = np.unique(store_ids)
    prof = np.zeros((len(uniq), D, 24))
    st = stores.set_index("store_id")
    for j, s in enumerate(uniq):
        lo, hi = int(st.loc[s, "open_hour"]), int(st.loc[s, "close_hour"])
        prof[j, :, lo:hi] = 1.0 / max(hi - lo, 1)
    if "demand_truth_hourly" in have:
        t = schema["demand_truth_hourly"]
        h = read(engine, select(t).where(and_(t.c.date >= days[0], t.c.date <= days[-1])))
        if len(h):
            h["date"] = pd.to_datetime(h["date"]).dt.date
            si = np.searchsorted(uniq, h["store_id"].to_numpy())
            ok = (si < len(uniq)) & (uniq[np.minimum(si, len(uniq) - 1)] == h["store_id"].to_numpy())
            h = h[ok]
            di = np.array([(d - days[0]).days for d in h["date"]])
            covered = np.zeros((len(uniq), D), dtype=bool)
            covered[si[ok], di] = True
            prof[covered] = 0.0
            prof[si[ok], di, h["local_hour"].to_numpy(int)] = h["share"].to_numpy(float)
    return prof[np.searchsorted(uniq, store_ids)]


# ----------------------------------------------------------------------------------------------------------------
# Forecast providers (as of each order day) and the policies
# ----------------------------------------------------------------------------------------------------------------


class OracleForecasts:
    """Perfect foresight of the latent means, with the latent noise's own dispersion."""

    def __init__(self, world: World, alpha: float) -> None:
        if world.truth is None:
            raise DataError("the oracle needs t_demand_truth (generator ground truth)")
        self.truth = world.truth.rename(columns={"expected_qty": "mean"})
        self.alpha = alpha

    def __call__(self, day: date) -> pd.DataFrame:
        t = self.truth
        f = t[(t["date"] >= pd.Timestamp(day)) & (t["date"] < pd.Timestamp(day + timedelta(days=HORIZON)))]
        return f.assign(dispersion=self.alpha, shared_dispersion=0.0)[
            ["store_id", "product_id", "date", "mean", "dispersion", "shared_dispersion"]]


class _FrameForecasts:
    """Shared parts of the model-based providers: the feature-store frame, segments and calibrated dispersion."""

    name = "model"

    def __init__(self, settings: Settings, frame, start: date, progress: Progress) -> None:
        from training.data import SegmentRule

        self.settings = settings
        self.cfg = settings.training
        self.frame = frame
        self.start = start
        self.say = progress
        self.rule = SegmentRule(new_days=self.cfg.new_days, slow_mean=self.cfg.slow_mean,
                                intermittent_zero_share=self.cfg.intermittent_zero_share)
        self._segments: dict[pd.Timestamp, pd.Series] = {}
        self.keys = frame.df.drop_duplicates("unique_id").set_index("unique_id")[["store_id", "product_id"]]

    def segments(self, cutoff: pd.Timestamp) -> pd.Series:
        from training.data import segment_series

        if cutoff not in self._segments:
            self._segments[cutoff] = segment_series(self.frame.until(cutoff).df, rule=self.rule)
        return self._segments[cutoff]

    def calibrate(self, preds: pd.DataFrame, col: str, cutoff: pd.Timestamp) -> dict[str, tuple[float, float]]:
        """Dispersion by segment from out-of-sample forecasts ``preds`` (unique_id, ds, <col>) after ``cutoff``."""
        from training.backtest import fit_uncertainty

        act = self.frame.df[["unique_id", "ds", "y", "censored"]]
        cal = preds.merge(act, on=["unique_id", "ds"], how="inner")
        cal["segment"] = cal["unique_id"].map(self.segments(cutoff)).fillna("fast")
        cal["cutoff"] = cutoff
        return fit_uncertainty(cal, [col])[col]

    def finish(self, means: pd.DataFrame, col: str, seg_cutoff: pd.Timestamp, params,
               last: pd.Timestamp | None = None) -> pd.DataFrame:
        """Policy-contract rows: keys, segment (as of ``seg_cutoff``, refreshed weekly) and its dispersion."""
        from training.batch import with_uncertainty

        out = means.rename(columns={col: "mean", "segment": "own_segment"}).merge(
            self.keys, left_on="unique_id", right_index=True)
        seg = out["unique_id"].map(self.segments(seg_cutoff))
        if "own_segment" in out:  # a series with no history yet keeps the forecaster's segment (new_store, ...)
            seg = seg.fillna(out.pop("own_segment"))
        out["segment"] = seg.fillna("new_product")
        return with_uncertainty(out, params, last if last is not None else seg_cutoff, [])


class SeasonalNaiveForecasts(_FrameForecasts):
    """SeasonalNaive(7): each day is the same weekday of the last week (censoring-imputed sales, as in training)."""

    name = "seasonal_naive"

    def __init__(self, settings: Settings, frame, start: date, progress: Progress) -> None:
        super().__init__(settings, frame, start, progress)
        df = frame.df
        self.wide = df.pivot_table(index="unique_id", columns="ds", values="y_filled", aggfunc="sum")
        self.present = df.pivot_table(index="unique_id", columns="ds", values="y", aggfunc="size").notna()
        days = min(settings.planning.simulation.calib_days, HORIZON)  # one forecast of the horizon, as replayed
        cal_cut = pd.Timestamp(start - timedelta(days=1 + days))
        self.params = self.calibrate(self.means(cal_cut, days), self.name, cal_cut)

    def means(self, cutoff: pd.Timestamp, h: int) -> pd.DataFrame:
        cols = [cutoff - pd.Timedelta(days=6 - k) for k in range(7)]
        if cutoff not in self.present.columns:
            return pd.DataFrame(columns=["unique_id", "ds", self.name])
        active = self.present.index[self.present[cutoff]]
        last = self.wide.reindex(index=active, columns=cols).fillna(0.0).to_numpy()
        ds = [cutoff + pd.Timedelta(days=k) for k in range(1, h + 1)]
        vals = np.concatenate([last[:, (k - 1) % 7][:, None] for k in range(1, h + 1)], axis=1)
        return pd.DataFrame({"unique_id": np.repeat(active.to_numpy(), h), "ds": np.tile(ds, len(active)),
                             self.name: vals.reshape(-1)})

    def __call__(self, day: date) -> pd.DataFrame:
        cutoff = pd.Timestamp(day - timedelta(days=1))
        week = pd.Timestamp(self.start - timedelta(days=1) + timedelta(days=7 * ((day - self.start).days // 7)))
        return self.finish(self.means(cutoff, HORIZON), self.name, week, self.params, cutoff)


class OurForecasts(_FrameForecasts):
    """The model ``train`` registers, through its one predict path (``training.batch.forecast_means`` ->
    ``DemandForecaster.forecast``): the blend with weights chosen on the inner windows before the period (as
    ``train`` chooses them), refit every ``refit_days``, re-forecast daily from the newest data."""

    name = "final"

    def __init__(self, settings: Settings, frame, start: date, progress: Progress,
                 bom: pd.DataFrame | None = None) -> None:
        super().__init__(settings, frame, start, progress)
        from training.backtest import lgbm_params

        self.bom = bom  # which products share their store's level: as `train` decides it (training.calibration)
        from training.pipeline import read_tuned

        self.params_lgbm = lgbm_params(self.cfg, read_tuned(self.cfg))
        self.weights = self._learn_weights(start)
        self.models: dict[pd.Timestamp, Any] = {}
        self.fit_seconds = 0.0
        sim = settings.planning.simulation
        self.calibration = None  # training.calibration.WindowCalibration
        self.calibration_check: dict[str, float] = {}
        self.window = min(self.cfg.calibration.window_days, sim.calib_days)
        if sim.calibrate_level:
            self.params = self._calibrate_windows(start)
            return
        days = min(sim.calib_days, HORIZON)
        cal_cut = pd.Timestamp(start - timedelta(days=1 + days))
        cal_model = self._fit(cal_cut)
        preds = self._means(cal_model, frame.until(cal_cut), days)
        self.models.pop(cal_cut, None)  # only for calibration: the replay refits at its own origins
        self.params = self.calibrate(preds, self.name, cal_cut)

    def _calibrate_windows(self, start: date) -> dict[str, tuple[float, float]]:
        """Dispersion by segment and the window calibration (``training.calibration``: the same functions ``train``
        fits on its backtest) from the ``calib_days`` before the period, forecast exactly as the replay does (refit
        every ``refit_days``, re-forecast daily) and held fixed through the replay, as a trained model's would be.

        Why not re-learned as the replay goes: windows over Christmas - New Year are over-forecast (the lull is no
        calendar feature), and a calibration chasing them under-forecasts January (measured: total cost +20%).

        ``calibration_check``: coverage of window quantiles on the later half of those windows, raw and with the
        calibration fitted on the earlier half (how well a calibration learned on past windows carries forward).
        """
        from forecasting import uncertainty as unc
        from training.backtest import fit_uncertainty
        from training.calibration import factor_arrays, fit_windows, pooled_products, window_table

        sim = self.settings.planning.simulation
        W = self.window
        first = pd.Timestamp(start - timedelta(days=1 + sim.calib_days))
        parts, fitted = [], set()
        for k in range(sim.calib_days - W + 1):  # the last window ends the day before the period
            origin = first + pd.Timedelta(days=k)
            m0 = first + pd.Timedelta(days=sim.refit_days * (k // sim.refit_days))
            fitted.add(m0)
            parts.append(self._means(self._fit(m0), self.frame.until(origin), W).assign(cutoff=origin))
        for m0 in fitted:
            self.models.pop(m0, None)  # only for calibration: the replay refits at its own origins
        col = self.name
        cal = pd.concat(parts, ignore_index=True).merge(
            self.frame.df[["unique_id", "ds", "y", "y_filled", "censored"]], on=["unique_id", "ds"], how="inner")
        cal["segment"] = cal["unique_id"].map(self.segments(first)).fillna("new_product")
        cal["store_id"] = cal["unique_id"].map(self.keys["store_id"])
        cal["product_id"] = cal["unique_id"].map(self.keys["product_id"])
        cal["horizon"] = (cal["ds"] - cal["cutoff"]).dt.days
        params = fit_uncertainty(cal, [col])[col]
        win = window_table(cal, self.frame.df, col, params, W)
        pooled = pooled_products(self.bom)
        late = (win["cutoff"] >= first + pd.Timedelta(days=(sim.calib_days - W + 1) // 2)).to_numpy()
        early = fit_windows(win[~late], self.cfg.calibration, pooled)
        f, b = factor_arrays(early.factors, win["product_id"])
        A, M, Q, alpha, base_b = (win[c].to_numpy(float) for c in ("A", "M", "Q", "alpha", "shared"))
        al2, b2 = unc.raise_shared(alpha, base_b, b)
        for q in (0.9, 0.95, 0.98):
            self.calibration_check[f"coverage_{q}_raw"] = round(unc.window_coverage(
                A[late], M[late], Q[late], alpha[late], base_b[late], q), 4)
            self.calibration_check[f"coverage_{q}_calibrated"] = round(unc.window_coverage(
                A[late], f[late] * M[late], f[late] ** 2 * Q[late], al2[late], b2[late], q), 4)
        self.calibration_check["ratio_late_raw"] = round(float(A[late].sum() / M[late].sum()), 4)
        self.calibration_check["ratio_late_calibrated"] = round(float(A[late].sum() / (f[late] * M[late]).sum()), 4)
        self.calibration = fit_windows(win, self.cfg.calibration, pooled)
        self.calibration_check["store_dispersion"] = round(self.calibration.store_dispersion, 5)
        self.say(f"ours: window calibration over {self.calibration.windows} windows; check {self.calibration_check}")
        return params

    def _apply_calibration(self, out: pd.DataFrame) -> pd.DataFrame:
        """The calibration as the batch forecast applies it (``WindowCalibration.apply``)."""
        return out if self.calibration is None else self.calibration.apply(out)

    def _learn_weights(self, start: date):
        """The blend's weights from the ``blend_windows`` inner windows that end the day before the period (what
        ``train`` does before each origin): the period itself never chooses them."""
        from training.backtest import MIN_BLEND_WINDOWS, Backtester

        bt = Backtester(self.cfg, self.params_lgbm, progress=self.say)
        cut = pd.Timestamp(start - timedelta(days=1))
        first = self.frame.df["ds"].min()
        step = self.cfg.step_days
        # as many windows as the history holds, at the full horizon first, then at the longest selection window
        # (horizons 1..window_days)
        for h in (self.cfg.horizon, max(self.cfg.selection.window_days)):
            n = bt.windows_that_fit(cut, h, step, first)
            if n:
                break
        else:
            self.say(f"ours: too little history before {start} for {MIN_BLEND_WINDOWS} selection windows: "
                     "LightGBM alone")
            return {"all": {"lightgbm": 1.0}}
        bt.blend_windows = n
        inner = [bt.forecast_at(self.frame, c, h) for c in bt.inner_cutoffs(cut, h, step, n)]
        weights = bt.learn(pd.concat(inner, ignore_index=True), bt.candidates)
        self.say(f"ours: blend weights from {len(inner)} windows before {start}: {weights}")
        return weights

    @staticmethod
    def _means(model, frame, h: int) -> pd.DataFrame:
        from training.batch import forecast_means

        return forecast_means(model, frame, h)[["unique_id", "ds", "segment", "mean"]].rename(
            columns={"mean": "final"})

    def _fit(self, cutoff: pd.Timestamp):
        from training.forecaster import DemandForecaster

        if cutoff not in self.models:
            self.say(f"ours: fitting the registered model (blend) on data through {cutoff.date()}")
            t0 = time.perf_counter()
            self.models[cutoff] = DemandForecaster(self.cfg, "blend", self.params_lgbm, None, self.weights).fit(
                self.frame.until(cutoff))
            self.fit_seconds += time.perf_counter() - t0
        return self.models[cutoff]

    def __call__(self, day: date) -> pd.DataFrame:
        refit = self.settings.planning.simulation.refit_days
        age = (day - self.start).days
        origin = pd.Timestamp(self.start - timedelta(days=1) + timedelta(days=refit * (age // refit)))
        model = self._fit(origin)
        cutoff = pd.Timestamp(day - timedelta(days=1))
        means = self._means(model, self.frame.until(cutoff), HORIZON)  # launches included, as the batch forecast
        week = pd.Timestamp(self.start - timedelta(days=1) + timedelta(days=7 * (age // 7)))
        return self._apply_calibration(self.finish(means, self.name, week, self.params, cutoff))


class EnginePolicy:
    """The production engine (``propose``) on a provider's forecasts, ordering only on the suppliers' order days."""

    def __init__(self, world: World, forecasts: Callable[[date], pd.DataFrame], settings: Settings, name: str) -> None:
        self.w = world
        self.forecasts = forecasts
        self.name = name
        self.cfg = settings.replenishment.model_copy(update={"n_samples": settings.planning.simulation.n_samples,
                                                             "emit_non_order_days": False})
        self.stores = set(world.store_ids.tolist())
        self.pos = {(int(s), int(m)): i for i, (s, m) in enumerate(zip(world.store_ids, world.material_ids,
                                                                        strict=True))}
        self.sched = _schedules(world.suppliers)
        self.mat_sup = world.materials.set_index("material_id")["supplier_id"].astype(int)
        self.seconds = {"forecast": 0.0, "window_demand": 0.0, "propose": 0.0}
        self.got = np.zeros((len(world.store_ids), len(world.days)))  # receipts so far: the age of perishable stock

    def _window_demand(self, day: date, mats: set[int]) -> WindowDemand | None:
        """The demand side of the day's proposal (``precompute_window_demand`` on the day's forecasts for the
        materials whose supplier takes orders today), drawn once per day and shared by every demand seed through
        the memo; None when no forecast covers the day."""
        memo = getattr(self.forecasts, "window_demand", None)
        if memo is not None and day in memo:
            return memo[day]
        t0 = time.perf_counter()
        fc = self.forecasts(day)
        self.seconds["forecast"] += time.perf_counter() - t0
        bom = self.w.bom[self.w.bom["material_id"].isin(mats)]
        fc = fc[fc["store_id"].isin(self.stores) & fc["product_id"].isin(bom["product_id"])]
        wd = None
        if not fc.empty and pd.Timestamp(fc["date"].min()) <= pd.Timestamp(day):
            t0 = time.perf_counter()
            wd = precompute_window_demand(fc, self.w.materials, bom, self.w.suppliers, day, self.cfg)
            self.seconds["window_demand"] += time.perf_counter() - t0
        if memo is not None:
            memo[day] = wd
        return wd

    def _receipts(self, idx: np.ndarray, t: int) -> pd.DataFrame:
        """Receipts of the perishable series ``idx`` over their shelf life before day ``t`` (t_replenishment_order
        rows, as the plan reads them), so the engine can tell stock about to expire from fresh stock."""
        w = self.w
        per = idx[w.life[idx] > 0]
        back = int(w.life[per].max(initial=0)) + 1
        lo = max(0, t - back)
        k, i = np.nonzero(self.got[per, lo:t].T > 1e-9)
        on = [w.days[lo + int(x)] for x in k]
        q = self.got[per[i], lo + k]
        return pd.DataFrame({"store_id": w.store_ids[per[i]], "material_id": w.material_ids[per[i]],
                             "expected_delivery": on, "received_on": pd.to_datetime(on), "qty": q,
                             "received_qty": q, "status": "received"})

    def __call__(self, state: DayState) -> np.ndarray:
        w, day = self.w, state.day
        n = len(w.store_ids)
        qty = np.zeros(n)
        self.got[:, state.t] = state.received
        ordering = {s for s, sc in self.sched.items() if sc.is_order_day(day)}
        mats = set(self.mat_sup.index[self.mat_sup.isin(ordering)].astype(int))
        in_play = np.array([int(m) in mats for m in w.material_ids])
        if not in_play.any():
            return qty
        wd = self._window_demand(day, mats)
        if wd is None:
            return qty
        idx = np.nonzero(in_play)[0]
        inv = pd.DataFrame({"store_id": w.store_ids[idx], "material_id": w.material_ids[idx],
                            "snapshot_date": day - timedelta(days=1), "on_hand_qty": state.on_hand_prev[idx],
                            "waste_qty": 0.0})
        arr = np.vstack([state.received[None, :], state.pipeline])  # today's receipt is not in the evening count
        k, i = np.nonzero(arr[:, idx] > 1e-9)
        orders = pd.DataFrame({"store_id": w.store_ids[idx[i]], "material_id": w.material_ids[idx[i]],
                               "expected_delivery": [day + timedelta(days=int(x)) for x in k],
                               "received_on": pd.NaT, "qty": arr[k, idx[i]], "status": "open"})
        got = self._receipts(idx, state.t)
        if len(got):
            orders = pd.concat([orders.astype({"received_on": "datetime64[ns]"}), got], ignore_index=True)
        t0 = time.perf_counter()
        lines = propose(pd.DataFrame(), w.materials, w.bom, w.suppliers, inv, day, self.cfg, self.name,
                        day - timedelta(days=1), orders=orders, window_demand=wd)
        self.seconds["propose"] += time.perf_counter() - t0
        for ln in lines:
            j = self.pos.get((ln.store_id, ln.material_id))
            if j is not None and ln.qty_units > 0:
                qty[j] = ln.qty_units
        return qty


class IncumbentPolicy:
    """ireplenishment: its own forecast records (issued the evening before) through its order-up-to rule."""

    def __init__(self, world: World, engine: Engine, schema: SourceSchema, settings: Settings) -> None:
        rule = settings.planning.simulation.incumbent
        w = self.w = world
        t = schema["replenishment_forecasts"]
        if "replenishment_forecasts" not in existing_tables(engine, schema):
            raise DataError("the incumbent needs its forecast records (t_replenishment_forecast)")
        rec = read(engine, select(t.c.store_id, t.c.material_id, t.c.issued_on, t.c.target_date, t.c.predicted_qty)
                   .where(t.c.issued_on >= w.start - timedelta(days=1), t.c.issued_on < w.end))
        if rec.empty:
            raise DataError(f"no incumbent forecast records issued between {w.start - timedelta(days=1)} and {w.end}")
        n, D = len(w.store_ids), len(w.days)
        self.fc = np.zeros((D, HORIZON, n))
        pos = pd.Series(np.arange(n), index=pd.MultiIndex.from_arrays([w.store_ids, w.material_ids]))
        rec["issued_on"] = pd.to_datetime(rec["issued_on"])
        rec["target_date"] = pd.to_datetime(rec["target_date"])
        ti = (rec["issued_on"] - pd.Timestamp(w.start)).dt.days + 1  # issued the evening before day t
        ki = (rec["target_date"] - rec["issued_on"]).dt.days - 1
        ii = pos.reindex(pd.MultiIndex.from_arrays([rec["store_id"], rec["material_id"]])).to_numpy()
        ti, ki = ti.to_numpy(), ki.to_numpy()
        ok = ~np.isnan(ii) & (ti >= 0) & (ti < D) & (ki >= 0) & (ki < HORIZON)
        self.fc[ti[ok], ki[ok], ii[ok].astype(int)] = rec["predicted_qty"].to_numpy()[ok]
        perish = w.life > 0
        self.safety = np.where(perish, rule.safety_factor, rule.safety_factor_shelf_stable)
        self.rule = rule

    def __call__(self, state: DayState) -> np.ndarray:
        w, t, day = self.w, state.t, state.day
        cache: dict[DeliverySchedule, tuple[bool, int]] = {}
        order_today = np.zeros(len(w.store_ids), dtype=bool)
        wend = np.zeros(len(w.store_ids), dtype=int)
        for i, s in enumerate(w.schedules):
            if s not in cache:
                win = order_window(s, day)
                cache[s] = (win.is_order_day, (win.window_end - day).days)
            order_today[i], wend[i] = cache[s]
        mask = np.arange(HORIZON)[:, None] < wend[None, :]
        cover = (self.fc[t] * mask).sum(axis=0)
        level = (1 + self.safety) * cover + self.rule.safety_z * np.sqrt(np.maximum(cover * w.qpu, 0.0)) * (cover > 0)
        ip = state.on_hand + state.on_order
        short = level - ip
        packs = np.ceil(short / w.pack - self.rule.round_up_fraction)
        packs = np.where(ip < cover, np.maximum(packs, 1), packs)
        packs = np.where((short > 0) & order_today, np.maximum(packs, 0), 0)
        return packs * w.pack


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def delivery_risk(w: World, seed: int) -> DeliveryRisk | None:
    """The late and short deliveries of one seed, at the rates the source's own orders show (None: off)."""
    r = w.delivery_rates
    if not r or not (r["late_rate"] or r["short_rate"]):
        return None
    return DeliveryRisk.draw(len(w.store_ids), len(w.days), r["late_rate"], r["short_rate"],
                             tuple(r["short_range"]), seed)


def replay_world(w: World, policy, settings: Settings) -> SimulationResult:
    """``replay`` on the world: product units for fill rate (recipes), unit cost for waste % and cover; late and
    short deliveries drawn from the world's demand seed (the same for every policy)."""
    seed = w.demand_seed if w.demand_seed is not None else settings.planning.simulation.seed
    return replay(w.days, w.store_ids, w.material_ids, w.demand, policy, w.schedules, w.life, w.start_on_hand,
                  w.costs, recipes=w.recipes, start_pipeline=w.start_pipeline,
                  weights=np.array([c.unit_cost for c in w.costs]), hour_shares=w.hour_shares,
                  holding_cost_daily_ratio=settings.replenishment.holding_cost_daily_ratio,
                  deliveries=delivery_risk(w, seed))


def _metrics(res: SimulationResult, w: World, seconds: float) -> dict[str, float]:
    d = res.daily
    store_days = max(1, d.groupby(["store_id", "date"]).ngroups)
    return {
        "fill_rate": round(res.fill_rate, 5),
        "cycle_service_level": round(res.cycle_service_level, 5),
        "in_stock_day_rate": round(res.in_stock_day_rate, 5),
        "stockout_hours": round(res.stockout_hours, 1),
        "stockout_hours_per_store_day": round(res.stockout_hours / store_days, 3),
        "waste_pct": round(res.waste_pct, 5),
        "days_of_cover": round(res.days_of_cover, 2),
        "holding_cost": round(res.holding_cost, 2),
        "waste_cost": round(res.waste_cost, 2),
        "lost_margin_cost": round(res.lost_margin_cost, 2),
        "total_cost": round(res.total_cost, 2),
        "demand_units": round(res.demand, 1),
        "lost_units": round(res.lost, 1),
        "wasted_value": round(res.wasted, 2),
        "orders": int((d["ordered"] > 0).sum()),
        "seconds": round(seconds, 1),
        "by_class": _by_class(res, w),
        "stockout_hours_by_store": {str(k): round(float(v), 1) for k, v in
                                    res.daily.groupby("store_id")["stockout_hours"].sum().items()}
        if "stockout_hours" in res.daily else {},
    }


def _by_class(res: SimulationResult, w: World) -> dict[str, dict[str, float]]:
    """Stockout hours, wasted value ($ at cost) and lost margin ($) per policy class (food, chilled, ambient...):
    where a policy's misses come from, so a setting is changed for the class that causes them."""
    d = res.daily
    cls = pd.Series(w.policy_class, index=pd.MultiIndex.from_arrays([w.store_ids, w.material_ids]))
    c = cls.reindex(pd.MultiIndex.from_arrays([d["store_id"], d["material_id"]])).to_numpy()
    cost = {int(m): x for m, x in zip(w.material_ids, w.costs, strict=True)}
    unit = d["material_id"].map(lambda m: cost[int(m)].unit_cost * (1.0 - cost[int(m)].salvage_ratio)).to_numpy(float)
    margin = d["material_id"].map(lambda m: cost[int(m)].lost_margin).to_numpy(float)
    f = pd.DataFrame({"cls": c, "stockout_hours": d.get("stockout_hours", 0.0), "waste_cost": d["wasted"] * unit,
                      "lost_margin_cost": d["lost"] * margin})
    g = f.groupby("cls")[["stockout_hours", "waste_cost", "lost_margin_cost"]].sum().round(1)
    return {str(k): {c2: float(v) for c2, v in row.items()} for k, row in g.iterrows()}


def override_value_added(engine: Engine, schema: SourceSchema, w: World) -> dict[str, Any] | None:
    """Forecast value added of the planners' overrides in the period: did the planner's quantity bring the
    position after ordering closer to the realised demand of the protection window than the engine's?"""
    import json

    if "proposals" not in existing_tables(engine, schema):
        return None
    t = schema["proposals"]
    rows = read(engine, select(t.c.proposal_date, t.c.store_id, t.c.material_id, t.c.qty, t.c.pack_size,
                               t.c.planner_qty, t.c.explanation)
                .where(t.c.planner_qty.is_not(None), t.c.proposal_date >= w.start, t.c.proposal_date <= w.end))
    if rows.empty:
        return None
    pos = {(int(s), int(m)): i for i, (s, m) in enumerate(zip(w.store_ids, w.material_ids, strict=True))}
    cost = np.array([c.unit_cost for c in w.costs])
    model_err = planner_err = 0.0
    better = worse = used = 0
    for r in rows.itertuples(index=False):
        i = pos.get((int(r.store_id), int(r.material_id)))
        if i is None:
            continue
        info = json.loads(r.explanation)
        d0 = (pd.Timestamp(r.proposal_date).date() - w.start).days
        d1 = (date.fromisoformat(str(info["next_delivery_date"])[:10]) - w.start).days
        realised = float(w.demand[i, max(d0, 0): max(min(d1, len(w.days)), 0)].sum())
        ip = float(info["inventory_position"])
        em = abs(ip + float(r.qty) - realised) * cost[i]
        ep = abs(ip + float(r.planner_qty) * float(r.pack_size) - realised) * cost[i]
        model_err += em
        planner_err += ep
        better += ep < em - 1e-9
        worse += ep > em + 1e-9
        used += 1
    if not used:
        return None
    return {"overrides": used, "better": int(better), "worse": int(worse),
            "model_abs_error_value": round(model_err, 2), "planner_abs_error_value": round(planner_err, 2),
            "fva": round((model_err - planner_err) / model_err, 4) if model_err > 0 else 0.0}


def default_period(engine: Engine, schema: SourceSchema, weeks: int, start: date | None,
                   end: date | None) -> tuple[date, date]:
    last = history_end(engine, schema)
    end = end or last
    start = start or end - timedelta(days=7 * weeks - 1)
    if start > end:
        raise DataError(f"--start {start} is after --end {end}")
    if end > last:
        raise DataError(f"--end {end} is after the history's last count ({last})")
    return start, end


_SHARED: dict[str, Any] = {}  # the world and settings, inherited by forked workers (never pickled)


class _Memo:
    """A forecast provider's answers kept by day, and the window demand drawn from them: both depend on the history
    and the order date, not on the replayed demand or what the store holds, so every demand seed reuses them (the
    seeds then cost only the policy's arithmetic on each seed's stock, as an API request does on a precomputed
    ``WindowDemand``)."""

    def __init__(self, provider: Callable[[date], pd.DataFrame]) -> None:
        self.provider = provider
        self.days: dict[date, pd.DataFrame] = {}
        self.window_demand: dict[date, WindowDemand | None] = {}

    def __call__(self, day: date) -> pd.DataFrame:
        if day not in self.days:
            self.days[day] = self.provider(day)
        return self.days[day]


class _CachedForecasts:
    """A forecaster's daily forecasts read from the forecast cache (``forecasting.source.forecast_cache``, the
    layout the batch forecast writes and the plan reads) under ``key``, made by ``make()`` and written on a miss.

    Why: forecasts depend on the history, the model code and the forecasting settings, never on the policy settings
    or the demand seeds; choosing a service level on the selection period should not refit the models each time.
    ``key`` fingerprints all three (``forecast_key``), so a changed line of model code or data is a miss.
    """

    def __init__(self, root: Path, key: str, make: Callable[[], Any]) -> None:
        self.root, self.key, self.make = root, key, make
        self.provider: Any = None
        info = root / key / "provider.json"
        self.info: dict[str, Any] = json.loads(info.read_text()) if info.is_file() else {}

    def __call__(self, day: date) -> pd.DataFrame:
        from forecasting.source.forecast_cache import cache_dir, read_cache, write_cache

        if (cache_dir(self.root, self.key, day) / "forecasts.parquet").is_file():
            return read_cache(self.root, self.key, day).frame
        if self.provider is None:
            self.provider = self.make()
        fc = self.provider(day)
        write_cache(self.root, fc, self.key, day, {"forecaster": self.key})
        return fc

    def save_info(self, info: dict[str, Any]) -> None:
        """What the replay reports about the forecaster (its calibration), kept beside its forecasts."""
        (self.root / self.key).mkdir(parents=True, exist_ok=True)
        (self.root / self.key / "provider.json").write_text(json.dumps(info, indent=1))
        self.info = info


# forecasting/ modules left out of the key: the ordering engine and the replays (inventory/, evaluation/simulation.py,
# evaluation/intraday.py), which no forecaster imports, and config.py, whose training values are hashed as settings:
# a policy setting or rule changed keeps the cache
_NOT_FORECASTS = frozenset({"policy", "proposal", "material_demand", "simulation", "intraday", "bake", "schedule",
                            "config"})


def forecast_key(name: str, settings: Settings, frame, start: date) -> str:
    """``<forecaster>-<fingerprint>`` of what its forecasts depend on: the feature data, the model code
    (``training/``, ``forecasting/`` but the modules in ``_NOT_FORECASTS``, and the forecaster classes here), the
    training settings and tuned parameters, the replay's refit and calibration settings and the period's first
    day."""
    import inspect

    from training.pipeline import read_tuned

    h = hashlib.sha1(pd.util.hash_pandas_object(frame.df, index=False).to_numpy())
    for pkg in ("forecasting", "training"):
        for f in sorted(resolve_path(pkg).rglob("*.py")):
            if f.stem not in _NOT_FORECASTS:
                h.update(f.relative_to(resolve_path(".")).as_posix().encode() + f.read_bytes())
    for cls in (_FrameForecasts, SeasonalNaiveForecasts, OurForecasts):
        h.update(inspect.getsource(cls).encode())
    sim = settings.planning.simulation
    h.update(json.dumps({"name": name, "start": start.isoformat(), "tuned": read_tuned(settings.training),
                         "training": settings.training.model_dump(mode="json"),
                         "replay": [sim.refit_days, sim.calib_days, sim.calibrate_level, HORIZON]},
                        sort_keys=True, default=str).encode())
    return f"{name}-{h.hexdigest()[:16]}"


def _provider(name: str) -> Any:
    """The policy's forecast provider (None for the incumbent, which replays its own records)."""
    c = _SHARED
    w, settings, frame, say = c["worlds"][0], c["settings"], c["frame"], c["say"]
    if name == "incumbent":
        return None
    if name == "oracle":
        return OracleForecasts(w, settings.planning.simulation.truth_dispersion)
    makers = {"seasonal_naive": lambda: SeasonalNaiveForecasts(settings, frame, w.start, say),
              "ours": lambda: OurForecasts(settings, frame, w.start, say, w.bom)}
    if name in makers:
        root = settings.planning.simulation.forecast_cache
        if root is None:
            return makers[name]()
        cached = _CachedForecasts(resolve_path(root), forecast_key(name, settings, frame, w.start), makers[name])
        say(f"{name}: forecasts cached under {cached.root / cached.key}")
        return cached
    raise DataError(f"unknown policy {name!r}: choose from {', '.join(POLICIES)}")


# the metrics averaged over demand seeds, with a 95% interval (``ci95``) for these
INTERVAL_KEYS = ("fill_rate", "cycle_service_level", "stockout_hours", "waste_pct", "days_of_cover", "holding_cost",
                 "waste_cost", "lost_margin_cost", "total_cost")


def _replay_one(name: str) -> tuple[str, dict[str, Any]]:
    """Build one policy and replay it on every demand seed's world (in a worker process or in-process)."""
    t0 = time.perf_counter()
    _SHARED["say"](f"replaying {name}")
    settings = _SHARED["settings"]
    provider = _provider(name)
    memo = _Memo(provider) if provider is not None else None
    runs, detail = [], {"forecast": 0.0, "window_demand": 0.0, "propose": 0.0}
    for w in _SHARED["worlds"]:
        t1 = time.perf_counter()
        pol = _SHARED["prebuilt"]["incumbent"] if memo is None else EnginePolicy(w, memo, settings, name)
        res = replay_world(w, pol, settings)
        runs.append(_metrics(res, w, time.perf_counter() - t1) | {"seed": w.demand_seed})
        if isinstance(pol, EnginePolicy):
            for k, v in pol.seconds.items():
                detail[k] += v
    m = {k: v for k, v in runs[0].items() if k != "seed"}
    for k in runs[0]:
        if k != "seed" and isinstance(runs[0][k], (int, float)):
            m[k] = round(float(np.mean([r[k] for r in runs])), 5)
    if len(runs) > 1:
        m["ci95"] = {k: [round(v, 5) for v in (i["lo"], i["hi"])] for k in INTERVAL_KEYS
                     for i in [mean_interval(np.array([r[k] for r in runs]))]}
    m["by_seed"] = runs
    m["seconds"] = round(time.perf_counter() - t0, 1)
    if memo is not None:
        m["seconds_detail"] = {k: round(v, 1) for k, v in detail.items()}
        cached = provider if isinstance(provider, _CachedForecasts) else None
        built = cached.provider if cached is not None else provider
        fits = getattr(built, "fit_seconds", None)
        if fits is not None:
            m["seconds_detail"]["fit"] = round(fits, 1)
        info: dict[str, Any] = {}
        if getattr(built, "calibration", None) is not None:
            cal = built.calibration.to_dict()
            info["calibration"] = {"store_dispersion": cal["store_dispersion"], "windows": cal["windows"],
                                   "pooled_products": len(cal["pooled_products"]),
                                   "factor_range": [min((f for f, _ in cal["factors"].values()), default=1.0),
                                                    max((f for f, _ in cal["factors"].values()), default=1.0)]}
            info["calibration_check"] = built.calibration_check
        if cached is not None:
            if built is not None:
                cached.save_info(info)
            info = cached.info
            m["forecast_cache"] = {"key": cached.key, "hit": built is None}
        m.update(info)
    _SHARED["say"](f"{name}: done in {m['seconds']:.0f} s")
    return name, m


PAIRED_KEYS = ("fill_rate", "stockout_hours", "waste_pct", "total_cost")


def paired(policies: dict[str, dict[str, Any]], base: str = "ours",
           keys: tuple[str, ...] = PAIRED_KEYS) -> dict[str, dict[str, Any]]:
    """``base`` (``ours``) against every other policy, seed by seed: mean difference and mean ratio with 95%
    intervals, for each metric of ``keys``; entries named ``<base>_vs_<other>``.

    Why paired: every policy met the same demand draws and supplier misses, so the differences are far tighter
    than the policies' own seed-to-seed spread.
    """
    out: dict[str, dict[str, Any]] = {}
    if base not in policies:
        return out
    a = {r["seed"]: r for r in policies[base]["by_seed"]}
    for other, m in policies.items():
        if other == base:
            continue
        b = {r["seed"]: r for r in m["by_seed"]}
        seeds = [s for s in a if s in b]
        if not seeds:
            continue
        pair: dict[str, Any] = {"seeds": len(seeds)}
        for k in keys:
            x = np.array([a[s][k] for s in seeds], dtype=float)
            y = np.array([b[s][k] for s in seeds], dtype=float)
            ratio = np.divide(x, y, out=np.full_like(x, np.nan), where=np.abs(y) > 1e-12)
            pair[k] = {"difference": {q: round(v, 5) for q, v in paired_difference(x, y).items() if q != "n"},
                       "ratio": {q: round(v, 4) for q, v in mean_interval(ratio).items() if q != "n"}}
        out[f"{base}_vs_{other}"] = pair
    return out


# (metric, words, format of a value, format of a paired difference): units on every amount
_FIGURES = (
    ("fill_rate", "of product units filled", lambda v: f"{v:.2%}", lambda d: f"{100 * d:+.2f} points"),
    ("cycle_service_level", "of delivery cycles without a stockout", lambda v: f"{v:.1%}", None),
    ("stockout_hours", "stockout hours (store x material)", lambda v: f"{v:,.0f} h", lambda d: f"{d:+,.0f} h"),
    ("waste_pct", "of stock value wasted", lambda v: f"{v:.2%}", lambda d: f"{100 * d:+.2f} points"),
    ("days_of_cover", "of cover", lambda v: f"{v:.1f} days", None),
    ("total_cost", "total cost (holding + waste + lost margin)", lambda v: f"${v:,.0f}", lambda d: f"{d:+,.0f} $"),
)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The replay in words: each policy's figures as the mean over the demand seeds with its 95% interval, then
    ``ours`` against each other policy seed by seed (difference and ratio, each with its 95% interval)."""
    p, seeds = report["period"], report.get("protocol", {}).get("demand_seeds", [None])
    n = len(seeds)
    out = [f"Replay {p['start']}..{p['end']}: {p['days']} days, {p['stores']} stores, {p['series']:,} store x "
           f"material series, demand: {p['demand']}; "
           + (f"means over {n} demand seeds, 95% interval in brackets." if n > 1 else "one demand draw.")]
    for name, m in report["policies"].items():
        ci = m.get("ci95", {})
        parts = []
        for key, words, f, _ in _FIGURES:
            lo_hi = f" ({f(ci[key][0])}..{f(ci[key][1])})" if key in ci else ""
            parts.append(f"{f(m[key])}{lo_hi} {words}")
        out.append(f"  {name}: " + "; ".join(parts) + ".")
    for pair, d in report.get("paired", {}).items():
        other = pair.removeprefix("ours_vs_")
        out.append(f"ours against {other}, seed by seed over {d['seeds']} seeds (ours - {other}; ours / {other}):")
        for key, words, _, fd in _FIGURES:
            if fd is None or key not in d:
                continue
            df, r = d[key]["difference"], d[key]["ratio"]
            out.append(f"  {words}: {fd(df['mean'])} ({fd(df['lo'])}..{fd(df['hi'])}); "
                       f"x{r['mean']:.3f} ({r['lo']:.3f}..{r['hi']:.3f})")
    return out


def run_simulation(
    settings: Settings,
    engine: Engine,
    schema: SourceSchema,
    start: date | None = None,
    end: date | None = None,
    policies: list[str] | tuple[str, ...] = POLICIES,
    *,
    features_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay the policies over [start, end] (default: the last ``simulation.weeks`` weeks); one JSON-able dict.

    Policies run in ``simulation.workers`` forked processes (the slowest, ``ours``, first) on one shared world.
    """
    say = progress or (lambda _m: None)
    settings = with_truth_dispersion(settings, engine, schema)
    sim = settings.planning.simulation
    t0 = time.perf_counter()
    start, end = default_period(engine, schema, sim.weeks, start, end)
    say(f"reading the world {start}..{end}")
    w = build_world(settings, engine, schema, start, end, features_dir)
    seeds = [sim.seed + k for k in range(sim.seeds)] if w.period_truth is not None else [None]
    worlds = [w] + [with_demand_seed(w, s, sim.truth_dispersion) for s in seeds[1:]]
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        raise DataError(f"unknown policy {bad[0]!r}: choose from {', '.join(POLICIES)}")
    policies = sorted(dict.fromkeys(policies), key=lambda p: POLICIES.index(p))
    frame = None
    if {"ours", "seasonal_naive"} & set(policies):
        from training.pipeline import load_frame

        frame = load_frame(features_dir or settings.features.out_dir, settings.training)
        if frame.last_date < pd.Timestamp(end - timedelta(days=1)):
            raise DataError(f"the feature store ends on {frame.last_date.date()}: build features through {end}")
    prebuilt: dict[str, Any] = {}
    if "incumbent" in policies:  # reads its records here: the workers never touch the database
        prebuilt["incumbent"] = IncumbentPolicy(w, engine, schema, settings)
    _SHARED.update(worlds=worlds, settings=settings, frame=frame, prebuilt=prebuilt, say=say)
    try:
        workers = min(sim.workers, len(policies))
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            engine.dispose()  # no pooled connection crosses the fork
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                done = dict(pool.map(_replay_one, policies))
        else:
            done = dict(_replay_one(name) for name in policies)
    finally:
        _SHARED.clear()
    out = {name: done[name] for name in policies}
    cal_first = start - timedelta(days=sim.calib_days)
    report: dict[str, Any] = {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "days": len(w.days),
                   "series": int(len(w.store_ids)), "stores": int(len(np.unique(w.store_ids))),
                   "demand": w.demand_source},
        "protocol": {
            "demand_seeds": seeds,
            "calibration_days": [cal_first.isoformat(), (start - timedelta(days=1)).isoformat()],
            "deliveries": w.delivery_rates or "as ordered (simulation.delivery_risk off)",
            "note": "forecasters' dispersion and window calibration are fitted on the days before the period; "
                    "policy settings are chosen on the selection period (the weeks before), never on this one",
        },
        "units": "fill rate in product units (a product sells only while every material of its recipe is in "
                 "stock); waste % and days of cover by value at cost; stockout hours per store x material (open "
                 "hours out of stock, hourly demand profile); costs in $ (holding + waste + lost margin)",
        "policies": out,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if len(seeds) > 1:
        report["paired"] = paired(out)
    fva = override_value_added(engine, schema, w)
    if fva:
        report["overrides"] = fva
    return report


def write_chart(report: dict[str, Any], path: str | Path) -> Path:
    """One PNG comparing the policies on fill rate, waste %, stockout hours and total cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pol = report["policies"]
    names = list(pol)
    colors = {"ours": "#0b5cab", "incumbent": "#9aa5b1", "seasonal_naive": "#f0b429", "oracle": "#3ebd93"}
    panels = [("fill_rate", "unit fill rate", lambda v: f"{v:.1%}"), ("waste_pct", "waste %", lambda v: f"{v:.1%}"),
              ("stockout_hours", "stockout hours", lambda v: f"{v:,.0f}"),
              ("total_cost", "total cost ($)", lambda v: f"{v:,.0f}")]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (key, title, f) in zip(axes, panels, strict=True):
        vals = [pol[n][key] for n in names]
        bars = ax.bar(names, vals, color=[colors.get(n, "#829ab1") for n in names])
        for b, v in zip(bars, vals, strict=True):
            ax.annotate(f(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
        ax.spines[["top", "right"]].set_visible(False)
        if key == "fill_rate":
            lo = min(vals)
            ax.set_ylim(max(0.0, lo - (1 - lo) * 1.5 - 0.005), 1.0)
    p = report["period"]
    fig.suptitle(f"Policy replay {p['start']}..{p['end']} ({p['stores']} stores, {p['series']} store x material "
                 f"series, demand: {p['demand']})", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
