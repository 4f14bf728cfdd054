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

from forecasting.proposal import ProposalLine

Id = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
Qty = Annotated[float, Field(strict=True, ge=0.0, le=1e9, allow_inf_nan=False)]
ServiceLevel = Annotated[float, Field(strict=True, ge=0.5, le=0.999, allow_inf_nan=False)]
Level = Annotated[float, Field(strict=True, gt=0.0, lt=1.0, allow_inf_nan=False)]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InventoryItem(_Req):
    """What the store holds of one material now: counted on hand and quantity on order (in the material's unit)."""

    material_id: Id
    on_hand: Qty
    on_order: Qty = 0.0


class ReplenishmentRequest(_Req):
    """Order quantities for one store and order date; without ``inventory`` the source's latest counts are used."""

    store_id: Id
    order_date: date
    inventory: list[InventoryItem] | None = Field(None, max_length=2000)
    service_level: ServiceLevel | None = Field(
        None, description="Replaces the configured level of service-level materials (newsvendor lines keep theirs)."
    )

    @model_validator(mode="after")
    def _unique_materials(self) -> ReplenishmentRequest:
        if self.inventory:
            seen: set[int] = set()
            dup = sorted({i.material_id for i in self.inventory if i.material_id in seen or seen.add(i.material_id)})
            if dup:
                raise ValueError(f"inventory lists material_id {dup[:10]} more than once")
        return self


class ReplenishmentResponse(BaseModel):
    store_id: int
    order_date: date
    model_version: str
    data_date: date
    inventory_source: Literal["request", "source"]
    lines: list[ProposalLine]
    warnings: list[str] = Field(default_factory=list)


class BatchRequest(_Req):
    """Every store (or ``store_ids``) for one order date, from the source's latest counts."""

    order_date: date
    store_ids: list[Id] | None = Field(None, min_length=1, max_length=1000)
    service_level: ServiceLevel | None = None


class BatchResponse(BaseModel):
    order_date: date
    model_version: str
    data_date: date
    stores: list[ReplenishmentResponse]


class ForecastRequest(_Req):
    """Daily demand quantiles per product for ``days`` days from ``start_date`` (and the hourly profile)."""

    store_id: Id
    product_ids: list[Id] | None = Field(None, min_length=1, max_length=1000)
    start_date: date
    days: int = Field(..., strict=True, ge=1, le=60)
    quantiles: list[Level] = Field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 0.99], min_length=1, max_length=20)
    hourly: bool = Field(False, strict=True)


class HourShare(BaseModel):
    hour: int  # local hour of the store
    share: float  # share of the day's units sold in this hour (recent same weekdays)
    mean: float  # the day's mean times the share


class DayForecast(BaseModel):
    date: date
    mean: float
    dispersion: float  # negative binomial alpha: Var = mean + alpha mean^2
    quantiles: dict[str, float]  # "0.9" -> units
    hourly: list[HourShare] | None = None


class ProductForecast(BaseModel):
    product_id: int
    days: list[DayForecast]


class ForecastResponse(BaseModel):
    store_id: int
    model_version: str
    data_date: date
    quantiles: list[float]
    products: list[ProductForecast]


class StatusResponse(BaseModel):
    """What the service serves now and how its dependencies are."""

    ready: bool
    model_version: str | None = None
    model_source: str | None = None
    data_date: date | None = None
    order_dates: list[date] = Field(default_factory=list)  # first and last order date the API can answer
    forecast_dates: list[date] = Field(default_factory=list)  # first and last forecast day
    stores: list[int] = Field(default_factory=list)
    loaded_at: str | None = None
    load_seconds: float | None = None
    last_poll_at: str | None = None
    last_error: str | None = None
    source_ok: bool | None = None
    counts_read_at: str | None = None  # when every store's latest counts were last read (None: not in memory)
    counts_error: str | None = None  # why they are not in memory (requests without inventory get 503)
    hourly_available: bool = False
    refused_versions: dict[str, str] = Field(default_factory=dict)  # model version -> why it was refused at load


class StatusRequest(_Req):
    pass


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: ``error`` says what is wrong (never credentials); ``detail`` lists field errors."""

    error: str
    detail: Any = None
    model_version: str | None = None  # the model serving when the request was refused
