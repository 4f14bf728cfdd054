"""The mapping that tells the importer how to read one point-of-sale export (``configs/sources/NAME.yaml``).

Why a declarative mapping: every POS vendor names and formats its columns differently; describing them in a
validated YAML file (unknown keys are errors) lets a new source be added without code, and a typo fails at once.
"""

from __future__ import annotations

import codecs
import re
from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecasting.config import format_validation_error, read_yaml, resolve_path
from forecasting.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Columns(_Strict):
    """Source column names per logical field; a timestamp column or a date plus a time column is required."""

    transaction_id: str | None = None
    timestamp: str | None = None
    date: str | None = None
    time: str | None = None
    store_id: str
    store_name: str | None = None
    product_id: str
    product_name: str | None = None
    category: str | None = None
    subcategory: str | None = None
    quantity: str
    price: str

    @model_validator(mode="after")
    def _when(self) -> Columns:
        if self.timestamp is None and (self.date is None or self.time is None):
            raise ValueError("give either 'timestamp' or both 'date' and 'time'")
        if self.timestamp is not None and (self.date is not None or self.time is not None):
            raise ValueError("give either 'timestamp' or 'date'+'time', not both")
        return self

    def required(self) -> dict[str, str]:
        """Logical field -> source column for the fields every row must carry."""
        names = ("transaction_id", "timestamp", "date", "time", "store_id", "product_id", "quantity", "price")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def mapped(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Rule(_Strict):
    """A product flag from its category (or subcategory / name): a listed value or a regex match, case-insensitive."""

    field: Literal["category", "subcategory", "product_name"] = "category"
    values: list[str] = Field(default_factory=list)
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v

    def apply(self, text: pd.Series) -> pd.Series:
        s = text.fillna("").astype(str).str.strip()
        hit = s.str.lower().isin([v.strip().lower() for v in self.values])
        if self.pattern:
            hit |= s.str.contains(self.pattern, flags=re.IGNORECASE, regex=True)
        return hit


class Supplier(_Strict):
    """The single default supplier the identity materials point to (a POS log knows no suppliers)."""

    supplier_id: int = Field(1, ge=1)
    name: str = "Default supplier"
    lead_time_days: int = Field(2, ge=0, le=60)
    delivery_weekdays: str = "Mon,Tue,Wed,Thu,Fri,Sat"
    order_cutoff: str = Field("14:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class Materials(_Strict):
    """``identity``: one material per product (pack size 1, ambient, not perishable) and a 1:1 BOM; ``none``: empty."""

    mode: Literal["identity", "none"] = "identity"
    unit: str = "unit"
    supplier: Supplier = Field(default_factory=Supplier)


class PosMapping(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    format: Literal["auto", "csv", "parquet"] = "auto"
    encoding: str = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)
    timezone: str
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    columns: Columns
    date_format: str = "%Y-%m-%d"
    time_format: str = "%H:%M:%S"
    timestamp_format: str | None = None  # None: ISO 8601
    price_kind: Literal["unit", "line_total"] = "unit"
    transaction_scope: Literal["global", "store"] = "global"
    is_drink: Rule
    is_iced: Rule | None = None
    open_hour: int | None = Field(None, ge=0, le=23)
    close_hour: int | None = Field(None, ge=1, le=24)
    retire_dates: dict[str, date] = Field(default_factory=dict)
    max_reject_share: float = Field(0.01, ge=0, le=1)
    materials: Materials = Field(default_factory=Materials)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("retire_dates", mode="before")
    @classmethod
    def _keys(cls, v: object) -> object:
        return {str(k): d for k, d in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _rules_have_columns(self) -> PosMapping:
        for label, rule in (("is_drink", self.is_drink), ("is_iced", self.is_iced)):
            if rule is not None and getattr(self.columns, rule.field) is None:
                raise ValueError(f"{label} uses {rule.field!r} but columns.{rule.field} is not mapped")
        if self.open_hour is not None and self.close_hour is not None and self.close_hour <= self.open_hour:
            raise ValueError("close_hour must be after open_hour")
        return self


def load_mapping(path: str | Path) -> PosMapping:
    """Read and validate a mapping; relative paths are tried from the working directory, then the project root."""
    p = Path(path)
    if not p.is_file() and not p.is_absolute():
        p = resolve_path(p)
    data = read_yaml(p)
    try:
        return PosMapping.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, p.name)) from None
