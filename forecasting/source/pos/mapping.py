"""The mapping that tells the importer how to read one point-of-sale export (``configs/sources/NAME.yaml``).

Why a declarative mapping: every POS vendor names, splits and formats its data differently; describing the log in a
validated YAML file (unknown keys are errors) lets a new source be added without code, and a typo fails at once
with the field named. The mapping can give constants for missing columns, filter rows, join side tables, try several
date formats, melt a wide layout and name the holiday calendar the feature build uses.
"""

from __future__ import annotations

import codecs
import re
from datetime import date, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from forecasting.config import read_yaml, resolve_path
from forecasting.errors import ConfigError, DataError
from forecasting.inventory.schedule import parse_cutoff, parse_weekdays
from forecasting.source.pos.calendar import check_calendar


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Const(_Strict):
    """A constant instead of a column, e.g. ``store_id: {value: 1}`` for a single-store log."""

    value: str | int | float


ColumnRef = str | Const

# strptime directives pandas and Python both understand (no locale-dependent %c/%x/%X).
_DIRECTIVES = set("aAwdbBmyYHIpMSfzZjUW%")
_PROBE = datetime(2001, 2, 13, 14, 5, 6, 700000)


def _check_format(fmt: str) -> str:
    """Reject a format that pandas cannot use or that silently ignores AM/PM (``%p`` with ``%H``)."""
    codes = re.findall(r"%(.?)", fmt.replace("%%", ""))
    if not codes:
        raise ValueError(f"{fmt!r} has no % directive (e.g. '%Y-%m-%d')")
    bad = [c for c in codes if c not in _DIRECTIVES]
    if bad:
        raise ValueError(f"{fmt!r}: unknown directive '%{bad[0]}' (use e.g. %Y %m %d %H %I %M %S %p)")
    if "p" in codes and "I" not in codes:
        raise ValueError(f"{fmt!r}: %p (AM/PM) needs the 12-hour %I, not %H")
    try:
        pd.to_datetime(pd.Series([_PROBE.strftime(fmt)]), format=fmt, errors="raise")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{fmt!r} cannot be used: {str(exc).splitlines()[0]}") from None
    return fmt


def _formats(v: object) -> object:
    if isinstance(v, str):
        v = [v]
    if isinstance(v, list):
        if not v:
            raise ValueError("give at least one format")
        for f in v:
            if isinstance(f, str):
                _check_format(f)
    return v


def _regex(v: str | None) -> str | None:
    if v is not None:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
    return v


class Columns(_Strict):
    """Logical field -> source column (or a constant); a timestamp column or a date plus a time column is required.

    Columns of joined side tables and the melted ``product`` / ``quantity`` of a wide log are named like any other.
    """

    transaction_id: ColumnRef | None = None
    timestamp: ColumnRef | None = None
    date: ColumnRef | None = None
    time: ColumnRef | None = None
    store_id: ColumnRef
    store_name: ColumnRef | None = None
    product_id: ColumnRef
    product_name: ColumnRef | None = None
    category: ColumnRef | None = None
    subcategory: ColumnRef | None = None
    quantity: ColumnRef
    price: ColumnRef

    @field_validator("*", mode="before")
    @classmethod
    def _number_is_constant(cls, v: object) -> object:
        """``quantity: 1`` means the constant 1 (a column name is text); ``{value: ...}`` is always a constant."""
        if isinstance(v, str) and not v.strip():
            raise ValueError("empty column name: give a column of the log or {value: ...}")
        return {"value": v} if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _when(self) -> Columns:
        if self.timestamp is None and (self.date is None or self.time is None):
            raise ValueError("give either 'timestamp' or both 'date' and 'time' (time may be {value: '12:00:00'})")
        if self.timestamp is not None and (self.date is not None or self.time is not None):
            raise ValueError("give either 'timestamp' or 'date'+'time', not both")
        return self

    def required(self) -> dict[str, str]:
        """Logical field -> source column for the fields every row must carry (constants always do)."""
        names = ("transaction_id", "timestamp", "date", "time", "store_id", "product_id", "quantity", "price")
        return {k: v for k in names if isinstance(v := getattr(self, k), str)}

    def mapped(self) -> dict[str, str]:
        """Logical field -> source column, constants left out."""
        return {k: v for k in type(self).model_fields if isinstance(v := getattr(self, k), str)}

    def constants(self) -> dict[str, str]:
        """Logical field -> the constant as text."""
        return {k: str(v.value) for k in type(self).model_fields if isinstance(v := getattr(self, k), Const)}


class Rule(_Strict):
    """A product flag from its category (or subcategory / name): a listed value or a regex match, case-insensitive."""

    field: Literal["category", "subcategory", "product_name"] = "category"
    values: list[str] = Field(default_factory=list)
    pattern: str | None = None

    _check = field_validator("pattern")(classmethod(lambda cls, v: _regex(v)))

    def apply(self, text: pd.Series) -> pd.Series:
        s = text.fillna("").astype(str).str.strip()
        hit = s.str.lower().isin([v.strip().lower() for v in self.values])
        if self.pattern:
            hit |= s.str.contains(self.pattern, flags=re.IGNORECASE, regex=True)
        return hit


class RowFilter(_Strict):
    """Keep or exclude lines by a source column's value (exact, after trimming) or a regex search: exactly one of
    ``keep``, ``exclude``, ``keep_pattern``, ``exclude_pattern``."""

    column: str
    keep: list[str | int | float] | None = None
    exclude: list[str | int | float] | None = None
    keep_pattern: str | None = None
    exclude_pattern: str | None = None
    ignore_case: bool = False

    _check = field_validator("keep_pattern", "exclude_pattern")(classmethod(lambda cls, v: _regex(v)))

    @model_validator(mode="after")
    def _one(self) -> RowFilter:
        given = [k for k in ("keep", "exclude", "keep_pattern", "exclude_pattern") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of keep, exclude, keep_pattern, exclude_pattern")
        return self

    @property
    def label(self) -> str:
        kind = next(k for k in ("keep", "exclude", "keep_pattern", "exclude_pattern") if getattr(self, k) is not None)
        return f"{kind} {self.column}"

    def passes(self, text: pd.Series) -> pd.Series:
        """True for the lines the filter lets through."""
        s = text.str.lower() if self.ignore_case else text
        if self.keep is not None or self.exclude is not None:
            listed = {str(v).strip() for v in (self.keep if self.keep is not None else self.exclude or [])}
            if self.ignore_case:
                listed = {v.lower() for v in listed}
            hit = s.isin(listed)
        else:
            pat = self.keep_pattern if self.keep_pattern is not None else self.exclude_pattern
            hit = text.str.contains(pat or "", regex=True, flags=re.IGNORECASE if self.ignore_case else 0)
        return hit if (self.keep is not None or self.keep_pattern is not None) else ~hit


class FileSpec(_Strict):
    """How to read one file (the log itself or a side table)."""

    format: Literal["auto", "csv", "parquet"] = "auto"
    encoding: str = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}") from None
        return v


class SideTable(FileSpec):
    """A table joined to the lines by key (many lines to one row): its own file (relative to the log's folder),
    format and encoding, or inline ``rows``. Its columns join the lines under their own name and as ``NAME.COLUMN``.

    A line whose key matches no row is rejected (counted); a key that matches no line at all stops the import."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = None
    rows: list[dict[str, str | int | float | None]] | None = None
    key: str | list[str]
    lines_key: str | list[str] | None = None  # the lines' columns; default: the same names as key

    @model_validator(mode="after")
    def _source(self) -> SideTable:
        if (self.file is None) == (self.rows is None):
            raise ValueError("give either 'file' or 'rows'")
        if len(self.keys) != len(self.ons):
            raise ValueError("'key' and 'lines_key' name different numbers of columns")
        return self

    @property
    def keys(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    @property
    def ons(self) -> list[str]:
        on = self.key if self.lines_key is None else self.lines_key
        return [on] if isinstance(on, str) else list(on)


class Wide(_Strict):
    """One row per order with one quantity column per product: the named or pattern-matched columns are melted
    into lines (``product`` = the column name, or the pattern's first group; ``quantity`` = the cell). Empty and
    zero cells are no sale. Each source row is one order unless ``columns.transaction_id`` says otherwise."""

    columns: list[str] = Field(default_factory=list)
    pattern: str | None = None
    product: str = "product"
    quantity: str = "quantity"

    _check = field_validator("pattern")(classmethod(lambda cls, v: _regex(v)))

    @model_validator(mode="after")
    def _some(self) -> Wide:
        if not self.columns and self.pattern is None:
            raise ValueError("give the product columns ('columns') or a 'pattern' that matches them")
        return self


class Checks(_Strict):
    """Plausibility checks: ``quarantine`` skips (and counts) an offending line under ``max_reject_share``;
    ``refuse`` stops the import at the first one; ``keep`` (duplicates only) loads identical lines as they are."""

    duplicate_lines: Literal["quarantine", "refuse", "keep"] = "quarantine"
    implausible: Literal["quarantine", "refuse"] = "quarantine"
    earliest_date: date = date(2000, 1, 1)
    latest_date: date | None = None  # None: tomorrow (UTC) at import time
    max_quantity: int = Field(10_000, ge=1)  # pieces per line
    max_unit_price: float = Field(10_000.0, gt=0)  # currency units per piece
    max_file_mb: int = Field(256, ge=1)  # uncompressed, per file: larger (or a gzip that unpacks larger) is refused


class Holidays(_Strict):
    """Public-holiday calendar of the log's country (``holidays`` package codes), stored with the import."""

    country: str
    subdivision: str | None = None

    @model_validator(mode="after")
    def _known(self) -> Holidays:
        try:
            check_calendar(self.country, self.subdivision)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class Supplier(_Strict):
    """The single default supplier the identity materials point to (a POS log knows no suppliers)."""

    supplier_id: int = Field(1, ge=1)
    name: str = "Default supplier"
    lead_time_days: int = Field(2, ge=0, le=60)
    delivery_weekdays: str = "Mon,Tue,Wed,Thu,Fri,Sat"
    order_cutoff: str = Field("14:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @field_validator("delivery_weekdays", "order_cutoff")
    @classmethod
    def _schedule(cls, v: str, info: ValidationInfo) -> str:
        """Checked by the parsers the replenishment schedule uses, so what loads here also plans."""
        try:
            (parse_weekdays if info.field_name == "delivery_weekdays" else parse_cutoff)(v)
        except DataError as exc:
            raise ValueError(str(exc)) from None
        return v


class Materials(_Strict):
    """``identity``: one material per product (pack size 1, ambient, not perishable) and a 1:1 BOM; ``none``: empty."""

    mode: Literal["identity", "none"] = "identity"
    unit: str = "unit"
    supplier: Supplier = Field(default_factory=Supplier)


class PosMapping(FileSpec):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    timezone: str
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    decimal: str = Field(".", pattern=r"^[.,]$")
    thousands: str | None = Field(None, pattern=r"^[.,' ]$")
    wide: Wide | None = None
    tables: list[SideTable] = Field(default_factory=list)
    filters: list[RowFilter] = Field(default_factory=list)
    columns: Columns
    date_format: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"])
    time_format: list[str] = Field(default_factory=lambda: ["%H:%M:%S"])
    timestamp_format: list[str] | None = None  # None: ISO 8601
    price_kind: Literal["unit", "line_total"] = "unit"
    transaction_scope: Literal["global", "store"] = "global"
    is_drink: Rule | None = None  # None: no product is a drink
    is_iced: Rule | None = None
    holidays: Holidays | None = None  # None: the feature build's configured calendar (US / NY by default)
    open_hour: int | None = Field(None, ge=0, le=23)
    close_hour: int | None = Field(None, ge=1, le=24)
    retire_dates: dict[str, date] = Field(default_factory=dict)
    max_reject_share: float = Field(0.01, ge=0, le=1)
    checks: Checks = Field(default_factory=Checks)
    materials: Materials = Field(default_factory=Materials)

    _fmt = field_validator("date_format", "time_format", "timestamp_format", mode="before")(
        classmethod(lambda cls, v: _formats(v)))

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
    def _consistent(self) -> PosMapping:
        for label, rule in (("is_drink", self.is_drink), ("is_iced", self.is_iced)):
            if rule is not None and getattr(self.columns, rule.field) is None:
                raise ValueError(f"{label} uses {rule.field!r} but columns.{rule.field} is not mapped")
        if self.open_hour is not None and self.close_hour is not None and self.close_hour <= self.open_hour:
            raise ValueError("close_hour must be after open_hour")
        if self.thousands is not None and self.thousands == self.decimal:
            raise ValueError("thousands and decimal separators must differ")
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError("tables: two side tables share a name")
        return self


_BRANCHES = {"str", "Const", "list[str]", "int", "float"}  # union members pydantic puts in an error's location


def one_line(exc: ValidationError, origin: str) -> str:
    """The first wrong field in full, then the others by name (``(+2 more: columns.quantity, columns.price)``).

    A value that fits no member of a union (column name or constant) is reported once, for the field."""
    errs: dict[str, str] = {}
    for e in exc.errors():
        raw = [str(p) for p in e["loc"]]
        if "Const" in raw:  # neither a column name nor a constant: one message for the field
            loc = ".".join(p for p in raw[:raw.index("Const")] if p not in _BRANCHES)
            errs[loc] = "expected a column name, a number or {value: ...}"
            continue
        errs.setdefault(".".join(p for p in raw if p not in _BRANCHES) or "(root)", e["msg"])
    (loc, msg), *rest = errs.items()
    more = f" (+{len(rest)} more: {', '.join(r for r, _ in rest[:5])}{', ...' if len(rest) > 5 else ''})" \
        if rest else ""
    return f"{origin}: {loc}: {msg}{more}"


def load_mapping(path: str | Path) -> PosMapping:
    """Read and validate a mapping; relative paths are tried from the working directory, then the project root."""
    p = Path(path)
    if not p.is_file() and not p.is_absolute():
        p = resolve_path(p)
    if p.is_file():
        raw = p.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p.name}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                              "save the mapping as UTF-8") from None
    data = read_yaml(p)
    try:
        return PosMapping.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, p.name)) from None
