"""Supplier delivery schedules: when an order placed on a day arrives, and which days are worth ordering on.

Why this matters for (R, S): the quantity ordered today must cover demand until the *following* delivery arrives,
so the protection window is [order date, next delivery after this one): lead time plus review period, both read off
the supplier's calendar rather than assumed. Pure functions on dates; the source contract is ``t_supplier``:
``lead_time_days``, ``delivery_weekdays`` ("Mon,Wed,Fri") and ``order_cutoff`` ("HH:MM", local to the store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta

from forecasting.errors import DataError

WEEKDAY_NAMES: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ALIASES = {name.lower(): i for i, name in enumerate(WEEKDAY_NAMES)} | {
    full: i
    for i, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
} | {"tues": 1, "thur": 3, "thurs": 3}


def parse_weekdays(text: str) -> frozenset[int]:
    """``"Mon,Wed,Fri"`` -> {0, 2, 4}; ``"daily"`` means every day. Unknown names are a DataError."""
    raw = (text or "").strip().lower()
    if raw in ("daily", "all", "*"):
        return frozenset(range(7))
    days = set()
    for part in raw.replace(";", ",").replace(" ", ",").split(","):
        if not part:
            continue
        if part not in _ALIASES:
            raise DataError(f"unknown delivery weekday {part!r} in {text!r} (expected e.g. 'Mon,Wed,Fri')")
        days.add(_ALIASES[part])
    if not days:
        raise DataError(f"no delivery weekdays in {text!r}")
    return frozenset(days)


def parse_cutoff(text: str | None) -> time:
    """``"14:00"`` -> 14:00; empty means no cutoff (orders accepted until midnight)."""
    if text is None or not str(text).strip():
        return time(23, 59, 59)
    try:
        hh, mm = str(text).strip().split(":")[:2]
        return time(int(hh), int(mm))
    except ValueError:
        raise DataError(f"order cutoff {text!r} is not HH:MM") from None


@dataclass(frozen=True)
class DeliverySchedule:
    """One supplier's calendar: delivery weekdays (0 = Monday), order cutoff and lead time in days."""

    weekdays: frozenset[int]
    cutoff: time
    lead_time_days: int

    @classmethod
    def from_supplier(cls, delivery_weekdays: str, order_cutoff: str | None, lead_time_days: int) -> DeliverySchedule:
        if int(lead_time_days) < 0:
            raise DataError(f"negative lead time {lead_time_days}")
        return cls(parse_weekdays(delivery_weekdays), parse_cutoff(order_cutoff), int(lead_time_days))

    def effective_order_date(self, order_date: date, order_time: time | None = None) -> date:
        """An order placed after the cutoff counts as placed the next day; ``None`` means before the cutoff."""
        if order_time is not None and order_time > self.cutoff:
            return order_date + timedelta(days=1)
        return order_date

    def first_delivery_on_or_after(self, day: date) -> date:
        for k in range(7):
            d = day + timedelta(days=k)
            if d.weekday() in self.weekdays:
                return d
        raise AssertionError("unreachable: weekdays is never empty")  # pragma: no cover

    def delivery_date(self, order_date: date, order_time: time | None = None) -> date:
        """Arrival of an order placed on ``order_date``: the first delivery weekday on/after date + lead time."""
        eff = self.effective_order_date(order_date, order_time)
        return self.first_delivery_on_or_after(eff + timedelta(days=self.lead_time_days))

    def is_order_day(self, order_date: date, order_time: time | None = None) -> bool:
        """True when date + lead time is itself a delivery day.

        Why: otherwise the order would wait for the same truck as an order placed tomorrow, which is made with one
        more day of sales and counts; so the planner orders on the last day that reaches each delivery.
        """
        eff = self.effective_order_date(order_date, order_time)
        return (eff + timedelta(days=self.lead_time_days)).weekday() in self.weekdays

    def next_order_day(self, after: date) -> date:
        """The first order day strictly after ``after`` (ordering before the cutoff)."""
        for k in range(1, 8):
            d = after + timedelta(days=k)
            if self.is_order_day(d):
                return d
        raise AssertionError("unreachable: some weekday reaches every delivery day")  # pragma: no cover

    def next_delivery_after(self, delivery: date) -> date:
        """The delivery after ``delivery``: it ends the protection window of the order arriving on ``delivery``."""
        return self.first_delivery_on_or_after(delivery + timedelta(days=1))


@dataclass(frozen=True)
class OrderWindow:
    """What an order placed on ``order_date`` covers: demand on [window_start, window_end) (end exclusive)."""

    order_date: date
    effective_order_date: date
    is_order_day: bool
    delivery_date: date
    next_delivery_date: date
    next_order_day: date

    @property
    def window_start(self) -> date:
        return self.order_date

    @property
    def window_end(self) -> date:
        return self.next_delivery_date

    @property
    def window_days(self) -> int:
        """Lead time (to delivery) plus review period (to the next delivery)."""
        return (self.next_delivery_date - self.order_date).days

    @property
    def lead_days(self) -> int:
        return (self.delivery_date - self.order_date).days

    @property
    def review_days(self) -> int:
        return (self.next_delivery_date - self.delivery_date).days


def order_window(schedule: DeliverySchedule, order_date: date, order_time: time | None = None) -> OrderWindow:
    """The protection window of an order placed on ``order_date`` (at ``order_time``; None = before the cutoff).

    Demand starts counting on the order date itself (the count is the previous evening's), so the window is
    [order date, the delivery after this order's delivery).
    """
    eff = schedule.effective_order_date(order_date, order_time)
    delivery = schedule.delivery_date(order_date, order_time)
    return OrderWindow(
        order_date=order_date,
        effective_order_date=eff,
        is_order_day=schedule.is_order_day(order_date, order_time),
        delivery_date=delivery,
        next_delivery_date=schedule.next_delivery_after(delivery),
        next_order_day=schedule.next_order_day(eff),
    )
