"""Configuration: YAML files in ``configs/`` validated by pydantic, overridable by environment variables.

Why environment overrides: URLs and secrets differ per deployment (SQLite for the demo, MySQL in production) and
must never be committed, so ``REPLENISH__SECTION__KEY`` replaces any value and ``REPLENISH_DB_URL`` the source URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecasting.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
ENV_PREFIX = "REPLENISH__"
# The default synthetic history (issue #16): the realistic one. The pre-#16 history is configs/scenarios/classic.yaml.
DEFAULT_SCENARIO = "configs/scenarios/realistic.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Section):
    url: str = "sqlite:///data/luckin.db"
    connect_timeout_s: int = Field(5, ge=1, le=60)
    tables: dict[str, str] = Field(default_factory=dict)


class GeneratorConfig(_Section):
    seed: int = 42
    catalog: str = "configs/catalog.yaml"
    scenario: str = DEFAULT_SCENARIO


class FeaturesConfig(_Section):
    """The feature job (``features/``): where the store lives and which source rows count."""

    out_dir: str = "data/features"
    completed_statuses: list[str] = Field(default_factory=lambda: ["completed"])
    # Re-read the last days on an incremental run: late orders and corrected counts land after the watermark.
    reread_days: int = Field(2, ge=1, le=31)
    # The job fails (DataError) when quarantined order lines pass this share of the lines read.
    max_bad_share: float = Field(0.01, ge=0.0, le=1.0)
    holiday_country: str = "US"
    holiday_subdiv: str | None = "NY"
    # Incumbent (ireplenishment) forecasts kept as features: days between issued_on and target_date.
    incumbent_horizons: list[int] = Field(default_factory=lambda: [1, 7])
    # Reference time for "future timestamp" checks (ISO, UTC); default: the wall clock.
    now: str | None = None
    # Zone used for rows whose store is unknown (they have no timezone of their own).
    default_timezone: str = "America/New_York"


class MlflowConfig(_Section):
    tracking_uri: str = "mlruns"


class ClassPolicy(_Section):
    """Replenishment settings for one material class (a storage class, or e.g. ``food`` for ready food)."""

    service_level: float = Field(0.95, gt=0.0, lt=1.0)
    # Perishables (newsvendor): lost margin per unit short, as a multiple of unit cost; salvage as a share of cost.
    underage_cost_ratio: float = Field(3.0, gt=0.0)
    salvage_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    moq_packs: int = Field(1, ge=0)
    # Most stock of one material the store can hold after a delivery (shelf/fridge space); None = no limit.
    max_stock_packs: float | None = Field(None, gt=0.0)
    max_stock_units: float | None = Field(None, gt=0.0)


class MaterialOverride(_Section):
    """Per-material exceptions to its class (planner-maintained); unset fields fall back to the class."""

    policy_class: str | None = None
    service_level: float | None = Field(None, gt=0.0, lt=1.0)
    underage_cost: float | None = Field(None, gt=0.0)  # $ per unit short
    overage_cost: float | None = Field(None, gt=0.0)  # $ per unit wasted (cost - salvage)
    moq_packs: int | None = Field(None, ge=0)
    max_stock_packs: float | None = Field(None, gt=0.0)
    max_stock_units: float | None = Field(None, gt=0.0)


class CountCheckConfig(_Section):
    """When an inventory count is implausible (counting errors are common: unit confusion, typos, missed counts)."""

    lookback_days: int = Field(28, ge=2, le=365)
    max_ratio: float = Field(3.0, gt=1.0)  # count > ratio x the usual (plausible) max
    jump_usage_days: float = Field(2.0, gt=0.0)  # a jump must also exceed this many days of usual usage ...
    jump_rel: float = Field(1.0, gt=0.0)  # ... and this share of the expected on hand (x10 confusion: 9.0)
    jump_low_ratio: float = Field(0.2, ge=0.0, lt=1.0)  # count below this share of expected is a jump down
    stale_after_days: int = Field(2, ge=1)  # latest count older than this (before the order date) is flagged


def _default_classes() -> dict[str, ClassPolicy]:
    return {
        "ambient": ClassPolicy(service_level=0.98, underage_cost_ratio=4.0),
        "chilled": ClassPolicy(service_level=0.95, underage_cost_ratio=6.0),
        "frozen": ClassPolicy(service_level=0.97, underage_cost_ratio=4.0),
        "food": ClassPolicy(service_level=0.90, underage_cost_ratio=2.5),
    }


class ReplenishmentConfig(_Section):
    """The (R, S) engine: sampling, service levels / newsvendor costs per class, rounding, counts, costs."""

    n_samples: int = Field(1000, ge=50, le=20000)  # joint demand paths per store x product
    seed: int = 20240901
    rounding_threshold: float = Field(0.3, ge=0.0, le=1.0)  # round up when the fractional pack >= this
    # ... for a perishable that goes into one product only (ready food): its newsvendor S prices its own stockout,
    # the expected cost is flat around S and the nearest pack is as cheap, so it rounds at half a pack
    rounding_threshold_single: float = Field(0.5, ge=0.0, le=1.0)
    # Never round a pack down below S (shelf-stable) or the median need (perishables): ``policy.decide_quantity``.
    rounding_guard: bool = True
    # Perishables: leftovers of a window still sell until they expire (``policy.carryover_newsvendor``).
    perishable_carryover: bool = True
    # perishables: the class service level is a floor under the newsvendor level (a stockout of one material blocks
    # every product of its recipes, which a per-material critical ratio does not price)
    perishable_service_floor: bool = True
    # perishables: the share of deliveries that arrive a day late (the supplier's record); that share of the window's
    # sample paths runs a day longer (the next delivery late), so the newsvendor prices the miss. 0 = off
    late_delivery_rate: float = Field(0.0, ge=0.0, le=0.5)
    default_class: str = "ambient"
    classes: dict[str, ClassPolicy] = Field(default_factory=_default_classes)
    # Class of every material of a supplier (e.g. the bakery's -> food) when t_material has no class column.
    supplier_classes: dict[int, str] = Field(default_factory=dict)
    material_overrides: dict[int, MaterialOverride] = Field(default_factory=dict)
    counts: CountCheckConfig = Field(default_factory=CountCheckConfig)
    # Replenishment orders in these statuses are not on order any more (anything else, unreceived, is).
    closed_order_statuses: list[str] = Field(
        default_factory=lambda: ["received", "cancelled", "canceled", "rejected", "closed"]
    )
    emit_non_order_days: bool = True  # a zero line explaining the next order day, or no line at all
    # Simulation / cost reporting: holding cost per unit-day as a share of unit cost.
    holding_cost_daily_ratio: float = Field(0.001, ge=0.0)


class PromoteRule(_Section):
    """When a challenger replaces the champion: relative gain in the selection loss (scaled pinball of window totals)
    on the same backtest, its window bias inside the guard, coverage in band."""

    metric_model: str = "final"
    metric: Literal["window_spl", "wape"] = "window_spl"
    max_bias: float = Field(0.10, gt=0)  # |relative bias of window totals| the challenger may have
    min_rel_improvement: float = Field(0.01, ge=0, lt=1)
    coverage_80: tuple[float, float] = (0.77, 0.83)
    coverage_95: tuple[float, float] = (0.93, 0.97)


class TuneConfig(_Section):
    trials: int = Field(20, ge=1)
    origins: int = Field(3, ge=1)
    timeout_s: int | None = None
    startup_trials: int = Field(5, ge=0)
    min_rel_improvement: float = Field(0.01, ge=0.0, lt=1.0)


class WindowCalibrationConfig(_Section):
    """Level factor and shared variance of window demand per product, and the store level of pooled products
    (``training.calibration``, fitted by ``train`` on the backtest and applied by the batch forecast)."""

    enabled: bool = True
    window_days: int = Field(7, ge=1, le=28)  # window totals over horizons 1..window_days
    prior_units: float = Field(500.0, ge=0)  # shrinkage towards a factor of 1, in pseudo-units of forecast
    min_factor: float = Field(0.7, gt=0)
    max_factor: float = Field(1.5, gt=0)


class LaunchConfig(_Section):
    """Products launching with no series yet: forecast as the mean of their category in the store
    (``training.launch``)."""

    enabled: bool = True
    factor: float = Field(1.0, gt=0, le=5)  # launch demand relative to the category's average product
    grace_days: int = Field(7, ge=0, le=56)  # launched this many days ago without a sale in a store: still cloned
    # stores opening in the horizon (or up to grace_days ago) with no series: each product at its mean over the open
    # stores times this (a new store ramps up); 0 = off
    store_factor: float = Field(0.6, ge=0, le=5)


# the models the final blend can weigh (training.blend); window_mean is the sparse series' rule, not a candidate:
# over the Christmas lull its 28-day average won the inner windows of the generated history and lost the next
# fortnight by far (WAPE 0.49 vs 0.41)
BLEND_CANDIDATES = ("lightgbm", "lightgbm_month", "twoway", "auto_ets", "croston", "seasonal_naive", "incumbent",
                    "weekday_mean", "ensemble")


class SelectionConfig(_Section):
    """How the final blend weighs its candidates (``training.blend``): scaled pinball of protection-window totals at
    the policy's service levels, with a bias guard and shrinkage towards the pooled weights."""

    # protection windows scored: totals over horizons 1..d for each d (2: daily food deliveries, 7: a weekly supplier)
    window_days: list[Annotated[int, Field(ge=1, le=28)]] = Field(default_factory=lambda: [2, 7], min_length=1)
    # the replenishment classes' service levels (chilled 0.95, frozen 0.97, food 0.90); ambient's 0.998 is left out:
    # a few hundred held-out windows cannot estimate a 1-in-500 quantile's loss
    service_levels: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.9, 0.95, 0.97],
                                                                      min_length=1)
    max_bias: float = Field(0.10, gt=0)  # bias guard: |sum forecast - sum actual| / sum actual of window totals
    method: Literal["greedy", "tolerance"] = "greedy"  # greedy ensemble selection in 1/steps quanta, or the
    steps: int = Field(10, ge=1, le=100)  # tolerance rule below (training.blend)
    tolerance: float = Field(0.05, ge=0)  # candidates within this share of the best loss share the weight ...
    power: float = Field(4.0, gt=0)  # ... as loss ** -power
    shrink_windows: float = Field(100.0, ge=0)  # a segment's weights move from the pooled ones by n / (n + this)
    candidates: list[Literal[BLEND_CANDIDATES]] = Field(default_factory=list)  # the models the blend may weigh;
    # empty: every one of BLEND_CANDIDATES


class HourlyConfig(_Section):
    """Hour-level demand (``forecasting.inventory.hourly_demand``): the daily forecast split by shares per store x
    product x weekday, shrunk towards the store's and the product's shapes; used by ``/forecast`` (hourly), the
    thaw and bake plan and the backtest's hour-level scores, all with these settings."""

    lookback_days: int = Field(56, ge=7, le=365)  # shares fitted on this many days before the data date
    holdout_days: int = Field(14, ge=0, le=56)  # the last days of that window choose the shrinkage (held out)
    score: bool = True  # the backtest scores the final model per hour (against the truth where the source has it)
    covariates: bool = True  # tilt the shares by the day's forecast temperature band and campaigns (when known)
    temp_band_c: float = Field(3.0, gt=0)  # forecast this far (degrees C) above / below the normal: warm / cold


class SparseConfig(_Section):
    """Series with too little history for any model's pattern get the window mean (``training.forecaster``)."""

    min_sale_days: int = Field(4, ge=1)  # fewer days with a sale than this: sparse
    window_days: int = Field(28, ge=7, le=112)  # units over the last window_days / window_days


class TwowayConfig(_Section):
    """The ``twoway`` blend candidate (``training.twoway``): store total x product share x a shrunk store x product
    affinity, from LightGBM's own forecasts; weighed by the selection like every candidate."""

    enabled: bool = True
    window_days: int = Field(91, ge=14, le=182)  # the affinity's window (the days the series existed in it)
    shrink_units: float = Field(20.0, ge=0)  # prior pseudo-units pulling the affinity towards 1
    min_days: int = Field(14, ge=1)  # fewer days in the window: a new series keeps LightGBM's forecast


class CleansingConfig(_Section):
    """Demand-history cleansing for the global models (``training.cleansing``): abnormal store-days (closures,
    slumps, storms: departures the robust spread calls events) taken out of the lags; calendar holidays left as
    sold (the trees learn them from ``is_holiday``). Off by default: not adopted on the tuning periods (session 9,
    docs/experiments.md)."""

    enabled: bool = False
    weeks: int = Field(4, ge=1, le=8)  # same weekday this many weeks either side gives a day's expectation
    z: float = Field(5.0, gt=0)  # robust z-score a store-day's departure must pass
    chain_floor: float = Field(0.22, ge=0)  # ... and this log departure for the chain (0.22: 20%)
    store_floor: float = Field(0.36, ge=0)  # ... and this for one store (0.36: 30%)
    holiday_days_around: int = Field(1, ge=0, le=7)  # days either side of a holiday left as sold with it


class TrainingConfig(_Section):
    """Models, backtest and tracking defaults (see training/)."""

    horizon: int = Field(14, ge=1, le=60)
    origins: int = Field(4, ge=1)
    step_days: int = Field(7, ge=1)
    seed: int = 42
    num_threads: int = Field(1, ge=1)  # LightGBM threads: 2 on 2 shared cores measured 11x slower than 1
    strategy: str = Field("auto", pattern="^(auto|recursive|direct|both)$")  # auto: direct when horizon <= 7
    lags: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 14, 21, 28])
    # LightGBM: the same calendar day k months back, as a ratio to that month's mean (training.models); off by default
    month_lags: list[Annotated[int, Field(ge=1, le=12)]] = Field(default_factory=list)
    month_lag_levels: list[Literal["series", "store", "product"]] = Field(
        default_factory=lambda: ["series", "store", "product"], min_length=1)
    lgbm: dict[str, Any] = Field(default_factory=dict)
    tuned_params: str | None = "configs/tuned_lgbm.yaml"  # written only by `replenish tune apply RUN_ID`
    run_ets: bool = True
    ets_model: str = "ZNA"
    calib_windows: int = Field(1, ge=1)
    blend_windows: int = Field(6, ge=3)  # inner windows before each origin that learn the final blend's weights
    quantiles: list[float] = Field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 0.99])
    final: str = Field("auto", pattern="^(auto|blend|lightgbm|ensemble|auto_ets|croston|seasonal_naive)$")
    new_days: int = Field(56, ge=1)
    slow_mean: float = Field(5.0, ge=0)
    intermittent_zero_share: float = Field(0.3, ge=0, le=1)
    # censored days (a needed material out): unconstrained to sales / share of the day's demand before the stockout
    # when that share is >= censored_min_share, trained with censored_weight; otherwise imputed with weight 0
    censored_min_share: float = Field(0.3, ge=0, le=1)
    censored_weight: float = Field(1.0, ge=0, le=1)
    calibration: WindowCalibrationConfig = Field(default_factory=WindowCalibrationConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    experiment: str = "replenishment"
    registry_name: str = "replenishment-forecaster"
    promote: PromoteRule = Field(default_factory=PromoteRule)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    sparse: SparseConfig = Field(default_factory=SparseConfig)
    hourly: HourlyConfig = Field(default_factory=HourlyConfig)
    twoway: TwowayConfig = Field(default_factory=TwowayConfig)
    cleansing: CleansingConfig = Field(default_factory=CleansingConfig)
    dead_days: int = Field(28, ge=1)  # no sale in the last dead_days days: a dead item, neither forecast nor scored
    # a second LightGBM candidate with these month lags (``lightgbm_month``), weighed by the selection on inner
    # windows like every candidate; [] = off (also off when month_lags already gives the main model month lags)
    month_candidate: list[Annotated[int, Field(ge=1, le=12)]] = Field(default_factory=lambda: [1, 2, 3])


class ServingConfig(_Section):
    """The BentoML API (``serving/``): where the champion's forecasts are, how often the registry is polled, limits."""

    forecast_cache: str | None = None  # None: planning.forecasts_dir, where the batch job writes (version, data date)
    model_source: str = Field("auto", pattern="^(auto|mlflow|bentoml)$")  # auto: MLflow registry, else BentoML store
    bentoml_model: str = "replenishment-forecaster"  # BentoML store name used by `replenish serve import-model`
    poll_interval_s: float = Field(30.0, ge=0.2)  # registry poll for a moved champion alias (and a retry when down)
    inventory_ttl_s: float = Field(30.0, ge=0.0)  # counts in memory, checked this often (0: per request)
    source_timeout_s: int = Field(3, ge=1, le=60)  # connect timeout of the source at request time
    source_query_timeout_s: int = Field(5, ge=1, le=300)  # longest wait for one read (handshake, ping, query)
    source_recycle_s: int = Field(300, ge=10)  # pooled connections re-authenticate this often (a revoked user)
    max_body_bytes: int = Field(262144, ge=1024)  # larger request bodies get a 413
    max_batch_stores: int = Field(100, ge=1)
    token_env: str = "REPLENISH_API_TOKEN"  # when this variable is set, every endpoint but health checks needs it
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=16)


class IncumbentRuleConfig(_Section):
    """The ireplenishment order rule the simulation replays as ``incumbent`` (its own forecasts, its own rule)."""

    safety_factor: float = Field(0.3, ge=0)  # order-up-to = (1 + k) x forecast over the protection window ...
    safety_factor_shelf_stable: float = Field(0.8, ge=0)  # ... k for non-perishables
    safety_z: float = Field(1.6, ge=0)  # ... + z x sqrt(expected product units in the window)
    round_up_fraction: float = Field(0.3, ge=0, le=1)  # a shortfall remainder below this share of a pack: round down


class SimulationConfig(_Section):
    """Policy replay (``replenish simulate``): period, demand source, refit cadence, sampling."""

    weeks: int = Field(8, ge=1, le=52)  # default period: the last weeks of the history
    policies: list[str] = Field(default_factory=lambda: ["ours", "incumbent", "seasonal_naive", "oracle"])
    demand: str = Field("auto", pattern="^(auto|truth|sales)$")  # auto: sampled latent truth when present
    # NB alpha of the latent truth's daily noise; None: the source's own (``truth_nb_alpha`` in its meta table, which
    # the generator writes per scenario: 1/12 default, 0.105 realistic), else 1/12 (planning.inputs)
    truth_dispersion: float | None = Field(None, ge=0)
    seed: int = 101  # first demand seed (seed 7 was the one the settings were tuned on: not reported)
    seeds: int = Field(5, ge=1, le=50)  # demand seeds seed .. seed + seeds - 1; policies compared paired over them
    delivery_risk: bool = True  # late and short deliveries at the rates the source's own orders show
    n_samples: int = Field(500, ge=50, le=20000)  # sample paths per proposal in the replay (speed)
    refit_days: int = Field(14, ge=1, le=56)  # `ours`: LightGBM refit cadence; re-forecast daily in between
    calib_days: int = Field(14, ge=7, le=56)  # out-of-sample days before the period that fit the dispersion
    calibrate_level: bool = True  # `ours`: window calibration (level factor, shared variance) from those days
    workers: int = Field(2, ge=1, le=16)  # policies replayed in parallel processes
    # the forecasters' daily forecasts kept here (forecast-cache layout) under a fingerprint of the data, the model
    # code and the forecasting settings: a re-run with other policy settings or seeds reads them; None = off
    forecast_cache: str | None = None
    incumbent: IncumbentRuleConfig = Field(default_factory=IncumbentRuleConfig)


class ExceptionConfig(_Section):
    """What the planner's report puts first."""

    high_order_ratio: float = Field(2.0, gt=1.0)  # packs > ratio x the usual order of that store x material ...
    high_order_min_packs: int = Field(2, ge=1)  # ... and at least this many packs above it
    usual_order_weeks: int = Field(8, ge=1, le=52)
    new_item_days: int = Field(28, ge=1)  # fewer days of counts / sales than this: a new item, little history


class WorkbenchConfig(_Section):
    """The planners' workbench (``/workbench/`` on the API server): one token per role, named by variable.

    Why two tokens: planners change, approve and release proposals; the ordering system only reads released
    orders. Neither variable set: the API token (``serving.token_env``) grants both roles; none set: open (dev).
    """

    planner_token_env: str = "REPLENISH_PLANNER_TOKEN"
    ordering_token_env: str = "REPLENISH_ORDERING_TOKEN"
    history_days: int = Field(14, ge=3, le=90)  # daily use shown in the charts of the store page


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class SellDownConfig(_Section):
    """The end-of-day app coupon on ready food that would expire tonight (``forecasting.inventory.bake``)."""

    hours_before_close: float = Field(2.0, gt=0, le=12)  # hours: the coupon runs from closing - this to closing
    discount: float = Field(0.30, gt=0, lt=1)  # share off the list price
    lift: float = Field(0.5, ge=0, le=5)  # assumed extra demand in the window with the coupon (0.5 = +50%)
    min_saved_pieces: float = Field(1.0, ge=0)  # pieces: suggest a coupon only when it saves at least this many


class BakeConfig(_Section):
    """The thaw and bake plan for ready food: release times, shelf hours after thaw/bake, the coupon.

    Why settings: each chain thaws and bakes on its own rhythm, and shelf life after thawing differs by item.
    """

    release_times: list[Annotated[str, Field(pattern=_HHMM)]] = Field(
        default_factory=lambda: ["07:00", "09:30", "12:00", "14:30", "17:00"],
        min_length=1)  # local HH:MM when pieces go out
    lead_minutes: int = Field(30, ge=0, le=720)  # minutes of thawing or baking before a release
    # the demand a release covers: until the next release, or until its pieces go stale (both end at closing)
    cover: str = Field("shelf_life", pattern="^(next_release|shelf_life)$")
    # what the store does at a release: fill the shelf up to its target counting the fresh pieces it has (top_up),
    # or put out the planned pieces whatever the shelf holds (fixed)
    rule: str = Field("top_up", pattern="^(top_up|fixed)$")
    # top_up only: search the shelf targets that minimise the day's expected cost under the rule, from the
    # per-release newsvendor ones (a piece left at a release lowers the next fill: its overage costs less)
    search_targets: bool = True
    # a piece thrown away counts as this many times its cost in the plan's decisions (1: its cost); the chain's own
    # price on waste (disposal, a waste goal); reported dollars stay at cost
    waste_weight: float = Field(1.2, ge=1.0, le=10.0)
    default_shelf_hours: float = Field(8.0, gt=0, le=72)  # hours a piece sells after thaw/bake (other categories)
    shelf_hours_by_category: dict[str, float] = Field(  # product category -> hours after thaw/bake
        default_factory=lambda: {"Bakery": 8.0, "Food": 12.0})
    material_shelf_hours: dict[int, float] = Field(default_factory=dict)  # material_id -> hours (overrides)
    food_classes: list[str] = Field(default_factory=lambda: ["food"])  # replenishment classes that are ready food
    slot_minutes: int = Field(15, ge=5, le=60)  # time step of the day's simulation (minutes)
    n_samples: int = Field(1000, ge=100, le=20000)  # demand paths per item (seeded)
    seed: int = 20261207
    sell_down: SellDownConfig = Field(default_factory=SellDownConfig)
    # the intraday replay (planning.intraday): share of the units a stockout loses that buy the like item instead
    substitution_share: float = Field(0.5, ge=0, le=1)


class PlanningConfig(_Section):
    """Batch forecasts, the planners' daily proposal and its reports (``replenish forecast | plan | nightly``)."""

    forecasts_dir: str = "data/forecasts"
    reports_dir: str = "reports"
    inventory_days: int = Field(35, ge=2, le=365)  # count history read per plan (count checks look back 28)
    plot_materials: int = Field(6, ge=0, le=40)  # main materials plotted per store
    plot_history_days: int = Field(28, ge=7, le=365)
    stale_count_days: int = Field(2, ge=0, le=60)  # newest count older than this many days before the order
    # date's evening: one banner, lines flagged, `plan` exits non-zero unless --allow-stale
    exceptions: ExceptionConfig = Field(default_factory=ExceptionConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    workbench: WorkbenchConfig = Field(default_factory=WorkbenchConfig)
    bake: BakeConfig = Field(default_factory=BakeConfig)


class ClusterConfig(_Section):
    """Where the heavy stages run (``forecasting/cluster.py``): in-process (default) or on Dask.

    ``scheduler_address`` set: a real cluster (e.g. ``tcp://scheduler:8786``); unset: a LocalCluster of
    ``n_workers`` x ``threads_per_worker`` on this machine.
    """

    engine: str = Field("local", pattern="^(local|dask)$")
    scheduler_address: str | None = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    processes: bool = True  # LocalCluster workers as processes (real parallelism) or threads (fast start, tests)
    memory_limit: str = "auto"  # per LocalCluster worker, e.g. "4GB"
    stores_per_task: int = Field(25, ge=1)  # feature build: one Dask task per month x group of this many stores
    series_per_partition: int = Field(20000, ge=1)  # models: series per Dask partition (whole series per partition)


class Settings(_Section):
    source: SourceConfig = Field(default_factory=SourceConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    replenishment: ReplenishmentConfig = Field(default_factory=ReplenishmentConfig)
    planning: PlanningConfig = Field(default_factory=PlanningConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    over: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        node = over
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts:
            node[parts[-1]] = value
    if environ.get("REPLENISH_DB_URL"):
        over.setdefault("source", {})["url"] = environ["REPLENISH_DB_URL"]
    return over


def format_validation_error(exc: ValidationError, origin: str) -> str:
    """One line naming the first wrong field, e.g. ``scenario.yaml: events.0.date: invalid date``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{origin}: {loc}: {err['msg']}{more}"


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load ``configs/default.yaml`` (or ``path`` / ``$REPLENISH_CONFIG`` merged over it) plus env overrides."""
    env = dict(os.environ if environ is None else environ)
    data = read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else {}
    extra = path or env.get("REPLENISH_CONFIG")
    if extra:
        data = _deep_merge(data, read_yaml(extra))
    data = _deep_merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "configuration")) from None


def shared_data_path(name: str) -> Path:
    """A file of the shared data next to the repository (``../shared/data/NAME``), never copied into it;
    ``REPLENISH_SHARED_DATA`` names another folder."""
    base = os.environ.get("REPLENISH_SHARED_DATA")
    return (Path(base) if base else PROJECT_ROOT.parent / "shared" / "data") / name


def resolve_path(path: str | Path) -> Path:
    """Config paths are relative to the project root, so commands work from any working directory."""
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p
