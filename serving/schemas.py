"""Request and response models of the API (pydantic): what the ordering system sends and gets back.

Why strict, bounded fields: the API is called by another system, so a wrong type, a negative count, an unknown
key or an oversized list must come back as a 400 naming the field, never reach the engine as a silent coercion.
``ProposalLine`` (the engine's explained line) is the response line itself, so the API and the planners' report
can never disagree on a field.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forecasting.inventory.proposal import ProposalLine

Id = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
Qty = Annotated[float, Field(strict=True, ge=0.0, le=1e9, allow_inf_nan=False)]
ServiceLevel = Annotated[float, Field(strict=True, ge=0.5, le=0.999, allow_inf_nan=False)]
Level = Annotated[float, Field(strict=True, gt=0.0, lt=1.0, allow_inf_nan=False)]


def doc(description: str, example: Any, **kw: Any) -> Any:
    """A field's description (with its unit) and one example: what the OpenAPI document shows a client."""
    return Field(description=description, examples=[example], **kw)


# The response line is the engine's ProposalLine (one definition for the API and the planners' report); its fields
# are described for API clients here, where the contract is published, rather than in the engine's module.
PROPOSAL_LINE_DOCS: dict[str, tuple[str, Any]] = {
    "store_id": ("Store id.", 1),
    "material_id": ("Material id (t_material.material_id).", 12),
    "material_name": ("Material name.", "Whole milk"),
    "supplier_id": ("Supplier that delivers the material.", 3),
    "unit": ("The material's unit for every quantity in *_units and stock fields (g, ml or pcs).", "ml"),
    "order_date": ("The order date asked for (ISO date).", "2026-02-13"),
    "effective_order_date": ("The day the order really counts as placed: the next day when the supplier's cutoff "
                             "has passed (ISO date).", "2026-02-13"),
    "is_order_day": ("Whether the supplier takes orders for this material on the order date.", True),
    "next_order_day": ("The next day an order can be placed after this one (ISO date).", "2026-02-16"),
    "delivery_date": ("When an order placed now arrives (ISO date).", "2026-02-14"),
    "next_delivery_date": ("When the following delivery can arrive: the end of the window this order must cover "
                           "(ISO date, exclusive).", "2026-02-17"),
    "qty_units": ("Quantity to order, in the material's unit (packs x pack size).", 24000.0),
    "qty_packs": ("Quantity to order, in whole packs: the number to put on the order.", 2),
    "final_packs": ("The final quantity in whole packs: the planner's number where a planner overrode the line in "
                    "the stored proposal, else the engine's qty_packs.", 3),
    "planner_packs": ("The planner's number of packs from the stored proposal (null when not overridden).", 3),
    "override_reason": ("Why the planner changed the line (null when not overridden).", "office party Friday"),
    "proposal_status": ("State of the stored proposal for this store and date: draft, approved, released or "
                        "cancelled (null when none is stored).", "approved"),
    "pack_size": ("Units per pack, in the material's unit.", 12000.0),
    "order_value": ("Cost of the proposed quantity, in USD.", 41.5),
    "window_days": ("Days the order must cover (until the next delivery), in days.", 3),
    "lead_days": ("Supplier lead time, in days.", 1),
    "review_days": ("Days until the next order can be placed, in days.", 3),
    "policy_class": ("The material's replenishment class (storage class, or food).", "chilled"),
    "quantile_basis": ("How the demand quantile was chosen: a service level, or the newsvendor critical ratio of a "
                       "perishable.", "service_level"),
    "quantile_level": ("Probability level of the demand quantile used, 0-1.", 0.95),
    "demand_mean": ("Expected demand over the window, in the material's unit.", 17250.0),
    "demand_median": ("Median demand over the window, in the material's unit.", 17100.0),
    "demand_quantile": ("Demand over the window at quantile_level, in the material's unit.", 21400.0),
    "safety_stock": ("Stock held against uncertainty: demand_quantile - demand_median, in the material's unit.",
                     4300.0),
    "order_up_to": ("The stock level the order aims for (S), in the material's unit.", 21400.0),
    "inventory_position": ("Stock usable in the window: on hand used + on order - committed, in the material's "
                           "unit.", 2600.0),
    "on_hand_counted": ("The last count on hand, in the material's unit (null when there is none).", 2600.0),
    "count_date": ("Date of that count (ISO date).", "2026-02-12"),
    "on_hand_used": ("On hand the engine relied on (the count, or an expected value when the count was "
                     "implausible), in the material's unit.", 2600.0),
    "on_order": ("Ordered and not yet received, arriving inside the window, in the material's unit.", 0.0),
    "committed": ("Stock already spoken for before the delivery arrives, in the material's unit.", 0.0),
    "count_flag": ("Plausibility of the count: ok, negative, above_usual_max, jump_up, jump_down, missing or stale.",
                   "ok"),
    "need_units": ("max(0, order_up_to - inventory_position) before caps and rounding, in the material's unit.",
                   18800.0),
    "shelf_life_cap_units": ("Most the store can sell before the stock expires, when that capped the order, in "
                             "the material's unit.", None),
    "reason_codes": ("Machine-readable reasons: caps and rounding applied, exceptions raised.", ["rounded_up"]),
    "explanation": ("The line's reasons in one or two sentences for the planner.",
                    "Order 2 packs: window demand 17,100 ml (95% quantile 21,400 ml) against 2,600 ml in position."),
    "needs_review": ("True when a person should look at the line before it is sent (e.g. an implausible count).",
                     False),
    "model_version": ("The registered model version that produced the forecast (v + registry version).",
                      "v3"),
    "data_date": ("Last day of sales the forecast has seen (ISO date).", "2026-02-12"),
}


def _describe(model: type[BaseModel], docs: dict[str, tuple[str, Any]]) -> None:
    """Attach descriptions and examples to a model defined elsewhere (its behaviour is unchanged)."""
    for name, (text, example) in docs.items():
        info = model.model_fields.get(name)
        if info is not None:
            info.description, info.examples = text, [example]
    model.model_rebuild(force=True)


_describe(ProposalLine, PROPOSAL_LINE_DOCS)


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InventoryItem(_Req):
    """What the store holds of one material now: counted on hand and quantity on order (in the material's unit)."""

    material_id: Id = doc("Material id (t_material.material_id).", 12)
    on_hand: Qty = doc("Counted stock on hand now, in the material's unit (g, ml or pieces; see t_material.unit).",
                       1800.0)
    on_order: Qty = doc("Ordered but not yet received, in the material's unit.", 0.0, default=0.0)


class ReplenishmentRequest(_Req):
    """Order quantities for one store and order date; without ``inventory`` the source's latest counts are used."""

    store_id: Id = doc("Store id (t_store.store_id).", 1)
    order_date: date = doc("The day the order is placed (ISO date, store-local).", "2026-02-13")
    inventory: list[InventoryItem] | None = doc(
        "Current counts per material (at most 2,000); omit to use the source database's latest counts.",
        [{"material_id": 12, "on_hand": 1800.0, "on_order": 0.0}], default=None, max_length=2000)
    service_level: ServiceLevel | None = doc(
        "Probability of not running out before the next delivery, 0.5-0.999, replacing the configured level of "
        "service-level materials (newsvendor lines keep theirs); omit for the configured levels.", 0.98,
        default=None)
    inventory_scope: Literal["complete", "partial"] = doc(
        "With `inventory`: 'complete' takes materials it does not list as 0 on hand and 0 on order; 'partial' takes "
        "the source's latest counts for them. Either way the answer warns which materials' counts it did not "
        "receive.", "partial", default="complete")

    @model_validator(mode="after")
    def _unique_materials(self) -> ReplenishmentRequest:
        if self.inventory:
            seen: set[int] = set()
            dup = sorted({i.material_id for i in self.inventory if i.material_id in seen or seen.add(i.material_id)})
            if dup:
                raise ValueError(f"inventory lists material_id {dup[:10]} more than once")
        return self


MODEL_VERSION = doc("The registered model version that produced the forecasts (v + registry version).",
                    "v3")
DATA_DATE = doc("Last day of sales the forecasts have seen (ISO date).", "2026-02-12")


class ReplenishmentResponse(BaseModel):
    """One store's proposal: a line per material, each with its quantity in packs and its reasons."""

    store_id: int = doc("Store id.", 1)
    order_date: date = doc("The order date asked for (ISO date).", "2026-02-13")
    model_version: str = MODEL_VERSION
    data_date: date = DATA_DATE
    inventory_source: Literal["request", "source"] = doc(
        "Where the counts came from: the request's inventory, or the source database's latest counts.", "source")
    lines: list[ProposalLine] = doc("One line per material the store stocks, whether to order or not.", [])
    warnings: list[str] = Field(default_factory=list, description="Things to check before ordering, in words "
                                "(e.g. a count missing for a material).", examples=[[]])


class BatchRequest(_Req):
    """Every store (or ``store_ids``) for one order date, from the source's latest counts."""

    order_date: date = doc("The day the orders are placed (ISO date, store-local).", "2026-02-13")
    store_ids: list[Id] | None = doc("Stores to include (at most 1,000); omit for every open store.", [1, 4],
                                     default=None, min_length=1, max_length=1000)
    service_level: ServiceLevel | None = doc(
        "Probability of not running out before the next delivery, 0.5-0.999 (service-level materials); omit for "
        "the configured levels.", 0.98, default=None)


class BatchResponse(BaseModel):
    """One proposal per store, all from the same model and data date."""

    order_date: date = doc("The order date asked for (ISO date).", "2026-02-13")
    model_version: str = MODEL_VERSION
    data_date: date = DATA_DATE
    stores: list[ReplenishmentResponse] = doc("One proposal per store, by store id.", [])


class ForecastRequest(_Req):
    """Daily demand quantiles per product for ``days`` days from ``start_date`` (and the hourly profile)."""

    store_id: Id = doc("Store id.", 1)
    product_ids: list[Id] | None = doc("Products to forecast (at most 1,000); omit for every product the store "
                                       "sells.", [61, 62], default=None, min_length=1, max_length=1000)
    start_date: date = doc("First day forecast (ISO date, store-local).", "2026-02-13")
    days: int = doc("Number of days from start_date, 1-60.", 3, strict=True, ge=1, le=60)
    quantiles: list[Level] = Field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 0.99], min_length=1, max_length=20,
                                   description="Probability levels (between 0 and 1, at most 20) of the daily "
                                   "demand quantiles to return.", examples=[[0.5, 0.9]])
    hourly: bool = doc("Also return each day's split over the store's opening hours.", False, default=False,
                       strict=True)


class HourShare(BaseModel):
    """One local hour of a forecast day."""

    hour: int = doc("Store-local hour of the day, 0-23.", 8)
    share: float = doc("Share of the day's units expected in this hour, 0-1: the store x product x weekday shape of "
                       "recent weeks, shrunk towards the store's and the product's shapes.", 0.14)
    mean: float = doc("Expected units sold in this hour (the day's mean times the share).", 2.6)
    quantiles: dict[str, float] = doc("Units by quantile for this hour (whole units; the day's dispersion).",
                                      {"0.5": 2.0, "0.9": 5.0}, default_factory=dict)


class DayForecast(BaseModel):
    """One product's demand on one day."""

    date: Annotated[date, doc("The day (ISO date, store-local).", "2026-02-13")]
    mean: float = doc("Expected units sold (pieces of the product) that day.", 18.4)
    dispersion: float = doc("Negative binomial dispersion alpha (Var = mean + alpha x mean^2), unitless.", 0.05)
    quantiles: dict[str, float] = doc("Units such that demand stays at or below them with the given probability; "
                                      "key: the probability level as text.", {"0.5": 18.0, "0.9": 25.0})
    hourly: list[HourShare] | None = doc("The day split over opening hours, when the request asked for it.", None,
                                         default=None)


class ProductForecast(BaseModel):
    """One product's forecast days."""

    product_id: int = doc("Product id (t_product.product_id).", 61)
    days: list[DayForecast] = doc("One entry per day, in date order.", [])


class ForecastResponse(BaseModel):
    """Daily demand forecasts for one store."""

    store_id: int = doc("Store id.", 1)
    model_version: str = MODEL_VERSION
    data_date: date = DATA_DATE
    quantiles: list[float] = doc("The probability levels returned in every day's quantiles.", [0.5, 0.9])
    products: list[ProductForecast] = doc("One entry per product.", [])


class StatusResponse(BaseModel):
    """What the service serves now and how its dependencies are."""

    ready: bool = doc("True once a model and its forecasts are loaded (requests can be answered).", True)
    model_version: str | None = doc("The registered model version served (v + registry version).",
                                    "v3", default=None)
    model_source: str | None = doc("Where the model came from: the MLflow registry or the BentoML store.", "mlflow",
                                   default=None)
    data_date: date | None = doc("Last day of sales the forecasts have seen (ISO date).", "2026-02-12", default=None)
    order_dates: list[date] = Field(default_factory=list, description="First and last order date the API can answer "
                                    "(ISO dates).", examples=[["2026-02-13", "2026-02-19"]])
    forecast_dates: list[date] = Field(default_factory=list, description="First and last forecast day (ISO dates).",
                                       examples=[["2026-02-13", "2026-02-26"]])
    stores: list[int] = Field(default_factory=list, description="Store ids with forecasts.", examples=[[1, 2, 3]])
    loaded_at: str | None = doc("When the model was loaded (ISO timestamp, UTC).", "2026-02-13T02:10:04Z",
                                default=None)
    load_seconds: float | None = doc("How long loading the model and its forecasts took, in seconds.", 4.2,
                                     default=None)
    last_poll_at: str | None = doc("When the registry was last checked for a new champion (ISO timestamp, UTC).",
                                   "2026-02-13T08:00:00Z", default=None)
    last_error: str | None = doc("Why the last model load failed, if it did (the previous model stays).", None,
                                 default=None)
    source_ok: bool | None = doc("Whether the source database answered at the last check.", True, default=None)
    counts_read_at: str | None = doc("When every store's latest counts were last read (ISO timestamp, UTC); null: "
                                     "not in memory.", "2026-02-13T07:59:30Z", default=None)
    counts_error: str | None = doc("Why the counts are not in memory (requests without inventory then get 503).",
                                   None, default=None)
    hourly_available: bool = doc("Whether forecasts can be split by hour (the request's hourly flag).", True,
                                 default=False)
    refused_versions: dict[str, str] = Field(
        default_factory=dict, description="Model versions refused at load, each with why (the previous model kept "
        "serving).", examples=[{"v4": "predicts NaN on its input example"}])


class StatusRequest(_Req):
    """No fields: send ``{}`` (or use ``GET /status``)."""


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: ``error`` says what is wrong (never credentials); ``detail`` lists field errors."""

    error: str = doc("What is wrong, in one line.", "store_id 99 is not a known store")
    detail: Any = doc("Field errors of a malformed request (location, message), when there are any.", None,
                      default=None)
    model_version: str | None = doc("The model serving when the request was refused.", "v3",
                                    default=None)


class BakePlanRequest(_Req):
    """The thaw and bake plan of one store for one day (ready food, from the champion's cached forecasts)."""

    store_id: Id = doc("Store id.", 1)
    date: Annotated[date, doc("The day to plan (ISO date, store-local); a day the champion forecasts.",
                              "2026-02-13")]


class BakeRelease(BaseModel):
    """One release of one item: how many pieces to put out and what they are expected to do."""

    time: str = doc("Store-local release time (HH:MM): the pieces go out then.", "10:30")
    start_by: str = doc("When thawing or baking must start (HH:MM), planning.bake.lead_minutes before.", "10:00")
    covers_until: str = doc("End of the demand this release covers (HH:MM): when its pieces go stale or closing, "
                            "whichever comes first (planning.bake.cover: next_release also stops at the next "
                            "release).", "14:00")
    pieces: int = doc("Whole pieces to put out (thaw or bake): the usual number when the shelf is filled up to "
                      "shelf_target_pcs (rule top_up), or the pieces whatever the shelf holds (rule fixed).", 6)
    shelf_target_pcs: int = doc("The action: fill the shelf up to this many fresh pieces at the release, counting "
                                "the fresh pieces already there (planning.bake.rule top_up).", 8)
    demand_pcs: float = doc("Expected demand in the hours this release covers (pieces).", 5.4)
    fresh_carried_pcs: float = doc("Expected fresh pieces left from earlier releases at this time (pieces).", 1.2)
    expected_sold_pcs: float = doc("Expected pieces of this release sold (pieces).", 4.9)
    expected_waste_pcs: float = doc("Expected pieces of this release thrown away (stale or at closing).", 1.1)
    expected_lost_pcs: float = doc("Expected demand unserved between this release and the next (pieces).", 0.4)
    waste_usd: float = doc("Expected waste at unit cost (USD).", 1.21)
    lost_margin_usd: float = doc("Expected margin lost on unserved demand (USD).", 1.06)
    service_level: float = doc("Critical ratio margin / price: the share of likely days the release covers.", 0.71)
    reason: str = doc("Why this number, in plain words.", "Put out 6 pc at 10:30 for 10:30-14:00 ...")
    detail: str = doc("The trade-off behind it: margin, cost and critical ratio.", "a piece sold earns $2.65 ...")


class BakeSellDown(BaseModel):
    """The end-of-day coupon suggestion for an item whose leftovers expire tonight."""

    time: str = doc("When the coupon would start (HH:MM, closing - sell_down.hours_before_close).", "18:00")
    offer: bool = doc("True: offer the coupon; false: it would not pay (the reason says why).", True)
    discount: float = doc("Share off the list price (planning.bake.sell_down.discount).", 0.3)
    lift: float = doc("Assumed extra demand in the window with the coupon (0.5 = +50%).", 0.5)
    expected_leftover_pcs: float = doc("Pieces expected to be thrown away tonight without the coupon.", 3.2)
    expected_saved_pcs: float = doc("Pieces the coupon is expected to sell that would be thrown away.", 1.4)
    effect_usd: float = doc("Expected revenue with the coupon minus without it in the window (USD); the pieces' "
                            "cost is already spent.", 2.1)
    reason: str = doc("The suggestion in plain words, with the numbers.", "Offer an app coupon at 30% off ...")


class BakeItemPlan(BaseModel):
    """One ready-food item's day: releases, totals and the sell-down suggestion."""

    product_id: int = doc("Product id (t_product.product_id).", 65)
    material_id: int = doc("Material id of the item (t_material.material_id, one piece per unit sold).", 74)
    name: str = doc("Item name.", "Butter Croissant")
    category: str = doc("Product category (it picks the default shelf hours).", "Bakery")
    daily_mean_pcs: float = doc("Expected demand over the opening hours (pieces).", 14.2)
    shelf_hours: float = doc("Hours a piece sells after thaw or bake.", 8.0)
    unit_cost_usd: float = doc("Cost of one piece (USD).", 1.1)
    price_usd: float = doc("List price of one piece (USD).", 3.75)
    pieces: int = doc("Whole pieces over all releases.", 16)
    expected_sold_pcs: float = doc("Expected pieces sold.", 13.1)
    expected_waste_pcs: float = doc("Expected pieces thrown away.", 2.9)
    expected_lost_pcs: float = doc("Expected demand unserved (pieces).", 1.1)
    waste_usd: float = doc("Expected waste at unit cost (USD).", 3.19)
    lost_margin_usd: float = doc("Expected margin lost on unserved demand (USD).", 2.92)
    releases: list[BakeRelease] = doc("One entry per release time, in time order.", [])
    sell_down: BakeSellDown | None = doc("The end-of-day coupon suggestion; null when nothing is expected to be "
                                         "left tonight.", None, default=None)


class BakePlanResponse(BaseModel):
    """The thaw and bake plan of one store and day."""

    store_id: int = doc("Store id.", 1)
    date: Annotated[date, doc("The day planned (ISO date, store-local).", "2026-02-13")]
    model_version: str = MODEL_VERSION
    data_date: date = DATA_DATE
    opening: str = doc("Store opening time (HH:MM, t_store.open_hour).", "07:00")
    closing: str = doc("Store closing time (HH:MM, t_store.close_hour).", "20:00")
    release_times: list[str] = doc("Release times used (HH:MM, planning.bake.release_times before closing).",
                                   ["07:00", "11:00", "15:00"])
    hourly_basis: str = doc("Where the hourly demand comes from: 'profile' (the daily forecast times the store x "
                            "product x weekday hourly shares, forecasting.inventory.hourly_demand, as /forecast "
                            "hourly) or 'flat' (no profile).",
                            "profile")
    pieces: int = doc("Whole pieces over all items and releases.", 240)
    expected_waste_pcs: float = doc("Expected pieces thrown away, all items.", 31.0)
    waste_usd: float = doc("Expected waste at unit cost, all items (USD).", 38.5)
    expected_lost_pcs: float = doc("Expected demand unserved, all items (pieces).", 12.0)
    lost_margin_usd: float = doc("Expected margin lost, all items (USD).", 40.2)
    items: list[BakeItemPlan] = doc("One entry per ready-food item the store sells, most pieces first.", [])
    assumptions: list[str] = doc("What the plan assumes, in words (with the settings' values and units).", [])
    warnings: list[str] = doc("What the plan could not use (each with what to do).", [])
