"""Catalog (configs/catalog.yaml) and scenario (configs/scenarios/*.yaml) models.

Why pydantic with extra="forbid": a typo in a scenario must fail loudly, naming the field, instead of silently
generating a different world than intended.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecasting.config import DEFAULT_SCENARIO, format_validation_error, read_yaml, resolve_path
from forecasting.errors import ConfigError

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSpec(_Strict):
    id: int = Field(ge=1)
    name: str
    open_date: dt.date
    close_date: dt.date | None = None
    open_hour: int = Field(7, ge=0, le=23)
    close_hour: int = Field(19, ge=1, le=24)
    district: str | None = None
    lat: float | None = None
    lon: float | None = None
    base_units: float = Field(gt=0)

    @model_validator(mode="after")
    def _hours(self) -> StoreSpec:
        if self.close_hour <= self.open_hour:
            raise ValueError("close_hour must be after open_hour")
        return self


class SupplierSpec(_Strict):
    id: int
    name: str
    lead_time_days: int = Field(ge=0, le=7)
    delivery_weekdays: str
    order_cutoff: str = Field(pattern=r"^\d\d:\d\d$")

    @field_validator("delivery_weekdays")
    @classmethod
    def _days(cls, v: str) -> str:
        days = [d.strip() for d in v.split(",")]
        if not days or any(d not in WEEKDAYS for d in days):
            raise ValueError(f"expected comma-separated weekdays from {','.join(WEEKDAYS)}")
        return ",".join(days)


class MaterialSpec(_Strict):
    name: str
    unit: str
    pack: float = Field(gt=0)
    life: int | None = Field(None, ge=1, le=60)
    storage: Literal["ambient", "chilled", "frozen"]
    supplier: int
    cost: float = Field(ge=0)


class DrinkSpec(_Strict):
    name: str
    cat: str
    iced: bool
    price: float = Field(gt=0)
    launch: dt.date | None = None
    retire: dt.date | None = None
    recipe: dict[str, float]
    popularity: float | None = Field(None, gt=0)  # overrides the Zipf weight (launches in scenarios)


class FoodSpec(_Strict):
    name: str
    cat: str
    price: float = Field(gt=0)
    pack: float = Field(gt=0)
    life: int = Field(ge=1, le=30)
    storage: Literal["ambient", "chilled", "frozen"]
    supplier: int
    cost: float = Field(ge=0)
    launch: dt.date | None = None
    retire: dt.date | None = None


class HolidaySpec(_Strict):
    closed: list[str]
    factors: dict[str, float]
    year_end_week: float
    day_after_thanksgiving: float


class WeatherSpec(_Strict):
    events: int = Field(ge=0)
    kinds: dict[str, tuple[float, float]]


class CampaignSpec(_Strict):
    count: int = Field(ge=0)
    days: tuple[int, int]
    lift: tuple[float, float]
    discount_pct: tuple[float, float]
    redeem_rate: float = Field(ge=0, le=1)


class DemandSpec(_Strict):
    scale: float = Field(gt=0)
    drink_zipf: float
    food_zipf: float
    food_share: float = Field(ge=0, lt=1)
    store_product_sd: float = Field(ge=0)
    nb_dispersion: float = Field(gt=0)
    ramp_start: float = Field(gt=0, le=1)
    ramp_days: float = Field(gt=0)
    weekday_factors: list[float] = Field(min_length=7, max_length=7)
    seasonal_iced_drop: float = Field(ge=0, lt=1)
    seasonal_hot_rise: float = Field(ge=0)
    launch_boost: float = Field(ge=0)
    launch_boost_days: float = Field(gt=0)
    holidays: HolidaySpec
    weather: WeatherSpec
    campaigns: CampaignSpec
    hourly_weekday: dict[int, float]
    hourly_weekend: dict[int, float]


class CouponSpec(_Strict):
    templates_per_category: int = Field(ge=1)
    discount_pct: tuple[float, float]
    redeem_rate: float = Field(ge=0, le=1)


class OrdersSpec(_Strict):
    basket_sizes: list[float] = Field(min_length=1)
    cancel_rate: float = Field(ge=0, lt=0.5)
    refund_rate: float = Field(ge=0, lt=0.5)
    channels: dict[str, float]
    production_base_s: float = Field(gt=0)
    production_per_item_s: float = Field(ge=0)
    production_shape: float = Field(gt=0)
    coupons: CouponSpec


class UsersSpec(_Strict):
    registered: int = Field(ge=1)
    ordering_share: float = Field(gt=0, le=1)
    pareto_alpha: float = Field(gt=0)


class InventorySpec(_Strict):
    safety_factor: float = Field(ge=0)
    safety_z: float = Field(0.0, ge=0)
    safety_factor_shelf_stable: float = Field(0.5, ge=0)
    round_up_fraction: float = Field(ge=0, le=1)
    opening_stock_days: int = Field(ge=1)
    late_rate: float = Field(ge=0, le=1)
    short_rate: float = Field(ge=0, le=1)
    short_range: tuple[float, float]
    count_noise_sd: float = Field(ge=0)
    implausible_rate: float = Field(ge=0, le=1)
    incumbent_weeks: int = Field(ge=1, le=8)
    horizon_days: int = Field(ge=1, le=28)
    model_version: str


class Catalog(_Strict):
    timezone: str
    stores: list[StoreSpec]
    suppliers: list[SupplierSpec]
    materials: dict[str, MaterialSpec]
    packaging: dict[str, dict[str, float]]
    drinks: list[DrinkSpec]
    food: list[FoodSpec]
    demand: DemandSpec
    orders: OrdersSpec
    users: UsersSpec
    inventory: InventorySpec
    calibration: dict[str, dict]

    @model_validator(mode="after")
    def _refs(self) -> Catalog:
        sup = {s.id for s in self.suppliers}
        for key, m in self.materials.items():
            if m.supplier not in sup:
                raise ValueError(f"material {key}: unknown supplier {m.supplier}")
        for d in self.drinks:
            for key in d.recipe:
                if key not in self.materials:
                    raise ValueError(f"drink {d.name!r}: unknown material {key!r}")
        for kind, pk in self.packaging.items():
            for key in pk:
                if key not in self.materials:
                    raise ValueError(f"packaging {kind}: unknown material {key!r}")
        return self


# --- scenario -----------------------------------------------------------------------------------------------------


class StoreOverride(_Strict):
    id: int
    open_date: dt.date | None = None
    close_date: dt.date | None = None
    open_hour: int | None = Field(None, ge=0, le=23)
    close_hour: int | None = Field(None, ge=1, le=24)
    base_units: float | None = Field(None, gt=0)


class ClosureEvent(_Strict):
    """All (or the listed) stores closed for a day, e.g. a blizzard; written to t_weather_event with factor 0."""

    type: Literal["closure"]
    date: dt.date
    kind: str = "blizzard"
    stores: list[int] | None = None


class WeatherEvent(_Strict):
    type: Literal["weather"]
    date: dt.date
    kind: str
    demand_factor: float = Field(gt=0, le=3)


class NewStoreEvent(_Strict):
    type: Literal["new_store"]
    store: StoreSpec


class LaunchEvent(_Strict):
    """A new drink (recipe from existing materials) from ``product.launch``."""

    type: Literal["launch"]
    product: DrinkSpec

    @model_validator(mode="after")
    def _has_launch(self) -> LaunchEvent:
        if self.product.launch is None:
            raise ValueError("product.launch is required for a launch event")
        return self


class ProductDatesEvent(_Strict):
    """Move the launch or retirement of an existing product."""

    type: Literal["product_dates"]
    product: str
    launch: dt.date | None = None
    retire: dt.date | None = None


class CampaignEvent(_Strict):
    type: Literal["campaign"]
    product: str
    start: dt.date
    end: dt.date
    discount_pct: float = Field(gt=0, lt=1)
    lift: float = Field(1.5, gt=0)


# --- the realistic scenario's effects (issue #16): all off unless a scenario sets ``realism`` (the default) ---------


class ArchetypeSpec(_Strict):
    """A store type's own week and day: office districts empty at weekends and peak at lunch, a station store has
    the morning commute, a residential one a flatter week with a weekend brunch."""

    weekday_factors: list[float] = Field(min_length=7, max_length=7)  # Mon..Sun, relative (normalised chain-wide)
    hourly_weekday: dict[int, float]
    hourly_weekend: dict[int, float]
    year_end_factor: float = Field(gt=0, le=1)  # Dec 26-31 (replaces the catalog's chain-wide year_end_week)
    ny_holiday_factor: float = Field(1.0, gt=0, le=1)  # New York-only holidays (Lincoln's Birthday, Election Day)


class TemperatureSpec(_Strict):
    """Daily mean temperature: seasonal cosine + AR(1) anomaly; a forecast of it with error, known in advance."""

    mean_c: float
    amplitude_c: float = Field(gt=0)
    coldest_doy: int = Field(20, ge=0, le=365)
    ar1: float = Field(ge=0, lt=1)
    anomaly_sd_c: float = Field(ge=0)  # stationary sd of the anomaly
    forecast_sd_c: float = Field(ge=0)  # day-ahead forecast error sd
    forecast_sd_growth_c: float = Field(0.0, ge=0)  # extra error sd per day of lead beyond one
    forecast_days: int = Field(7, ge=1, le=28)  # forecast rows past the history end (issued on the last day)
    response: float = Field(1.0, ge=0)  # weight of the anomaly in the iced / hot mix, relative to the season's


class CouponPushSpec(_Strict):
    """Everyday app coupons that move demand: on push days a category's coupons go out to more users."""

    rate: float = Field(ge=0, lt=1)  # share of category x days with a push
    lift: float = Field(ge=1)  # demand factor of the category on a push day (mean over days kept at 1)
    redeem_rate: float = Field(ge=0, le=1)  # share of the category's lines with a coupon on a push day


class CampaignEffectsSpec(_Strict):
    cannibalisation: float = Field(ge=0, le=1)  # share of a campaign's extra units taken from like products
    max_like_loss: float = Field(0.5, ge=0, lt=1)  # cap on a like product's loss
    post_dip: float = Field(ge=0, lt=1)  # the product's demand drop the day after the campaign ...
    post_dip_days: float = Field(gt=0)  # ... decaying with this e-folding time


class NoiseSpec(_Strict):
    """Daily counts: Poisson around a lognormal (not gamma) rate; sd_log 0.283 matches the NB(k=12) variance."""

    family: Literal["lognormal_poisson"] = "lognormal_poisson"
    sd_log: float = Field(gt=0, le=2)


class RealismSpec(_Strict):
    archetypes: dict[str, ArchetypeSpec]
    store_archetype: dict[int, str]  # store id -> archetype; cloned / unlisted stores cycle through default_cycle
    default_cycle: list[str] = Field(default_factory=list)
    store_day_sd: float = Field(ge=0, le=1)  # lognormal sd of a store-day shock shared by all its products
    temperature: TemperatureSpec
    coupons: CouponPushSpec
    campaigns: CampaignEffectsSpec
    substitution_share: float = Field(ge=0, le=1)  # share of units lost to a stockout bought as a like item
    noise: NoiseSpec

    @model_validator(mode="after")
    def _known(self) -> RealismSpec:
        for sid, a in self.store_archetype.items():
            if a not in self.archetypes:
                raise ValueError(f"store_archetype: store {sid}: unknown archetype {a!r}")
        for a in self.default_cycle:
            if a not in self.archetypes:
                raise ValueError(f"default_cycle: unknown archetype {a!r}")
        return self


Event = Annotated[
    ClosureEvent | WeatherEvent | NewStoreEvent | LaunchEvent | ProductDatesEvent | CampaignEvent,
    Field(discriminator="type"),
]


class Scenario(_Strict):
    name: str = "default"
    start_date: dt.date | None = None  # default: the first store opening
    end_date: dt.date = dt.date(2026, 2, 12)
    # the first n stores of the catalog (after overrides); more than it has: catalog stores cloned in turn under
    # new ids (same size, hours and opening date), for the scale scenarios
    n_stores: int | None = Field(None, ge=1)
    stores: list[StoreOverride] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    random_weather: bool = True
    random_campaigns: bool = True
    realism: RealismSpec | None = None  # the realistic effects (realistic.yaml, the default); None = off (classic.yaml)

    def digest(self) -> str:
        body = self.model_dump(mode="json")
        if body.get("realism") is None:
            body.pop("realism", None)  # scenarios without it keep the hash they had before the field existed
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate the catalog; ConfigError names the wrong field."""
    p = resolve_path(path or "configs/catalog.yaml")
    try:
        return Catalog.model_validate(read_yaml(p))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, p.name)) from None


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merged key by key (recursively), anything else (lists too) replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_scenario(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A scenario file's mapping with its ``extends:`` chain resolved (the key itself dropped).

    ``extends: FILE`` (relative to the project root, like every config path) starts from that scenario and applies
    this file's keys on top: mappings (``realism``) merge key by key, lists (``events``, ``stores``) and values
    replace. So ``realistic.yaml`` is ``classic.yaml``'s stores, dates and events plus its ``realism`` block, with
    one copy of each."""
    p = resolve_path(path)
    if p.resolve() in _seen:
        raise ConfigError(f"{p.name}: extends: a cycle ({' -> '.join(s.name for s in (*_seen, p))})")
    body = read_yaml(p)
    parent = body.pop("extends", None)
    if parent is None:
        return body
    if not isinstance(parent, str):
        raise ConfigError(f"{p.name}: extends: expected a scenario file path, got {parent!r}")
    return _merge(read_scenario(parent, (*_seen, p.resolve())), body)


def load_scenario(path: str | Path | Scenario | None = None) -> Scenario:
    """Load a scenario file (default: ``DEFAULT_SCENARIO``, the realistic history); ConfigError names the wrong
    field."""
    if isinstance(path, Scenario):
        return path
    p = resolve_path(path or DEFAULT_SCENARIO)
    try:
        return Scenario.model_validate(read_scenario(p))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, p.name)) from None
