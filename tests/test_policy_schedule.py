"""Delivery schedules: order days, delivery dates, protection windows, cutoffs."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from forecasting.errors import DataError
from forecasting.inventory.schedule import DeliverySchedule, order_window, parse_cutoff, parse_weekdays

MON = date(2025, 3, 3)  # a Monday
MWF2 = DeliverySchedule.from_supplier("Mon,Wed,Fri", "14:00", 2)


def day(offset: int) -> date:
    return MON + timedelta(days=offset)


def test_parse_weekdays_and_cutoff():
    assert parse_weekdays("Mon,Wed,Fri") == {0, 2, 4}
    assert parse_weekdays(" tue , Thursday ") == {1, 3}
    assert parse_weekdays("daily") == set(range(7))
    assert parse_cutoff("09:30") == time(9, 30)
    with pytest.raises(DataError, match="Mox"):
        parse_weekdays("Mon,Mox")
    with pytest.raises(DataError, match="HH:MM"):
        parse_cutoff("nine")


def test_order_days_are_the_last_days_reaching_each_delivery():
    # lead 2 onto Mon/Wed/Fri deliveries: order Sat (-> Mon), Mon (-> Wed), Wed (-> Fri)
    order_days = {d.strftime("%a") for d in (day(k) for k in range(7)) if MWF2.is_order_day(d)}
    assert order_days == {"Mon", "Wed", "Sat"}


def test_order_day_window_is_lead_plus_review():
    w = order_window(MWF2, MON)
    assert w.is_order_day
    assert w.delivery_date == day(2)  # Wed: exactly D + lead time
    assert w.next_delivery_date == day(4)  # Fri
    assert (w.lead_days, w.review_days, w.window_days) == (2, 2, 4)
    assert w.window_start == MON and w.window_end == day(4)
    assert w.next_order_day == day(2)


def test_non_order_day_waits_for_first_delivery_weekday_after_lead_time():
    w = order_window(MWF2, day(1))  # Tue + 2 = Thu is no delivery day
    assert not w.is_order_day
    assert w.delivery_date == day(4)  # Fri
    assert w.next_delivery_date == day(7)  # next Mon
    assert w.next_order_day == day(2)  # Wed reaches Fri


def test_weekend_gap_makes_a_longer_review_period():
    w = order_window(MWF2, day(2))  # Wed -> Fri, next delivery Mon
    assert (w.delivery_date, w.next_delivery_date) == (day(4), day(7))
    assert (w.lead_days, w.review_days, w.window_days) == (2, 3, 5)


def test_cutoff_passed_counts_from_next_day():
    before = order_window(MWF2, MON, time(13, 59))
    at = order_window(MWF2, MON, time(14, 0))
    after = order_window(MWF2, MON, time(14, 1))
    assert before.delivery_date == at.delivery_date == day(2)
    assert after.effective_order_date == day(1)
    assert not after.is_order_day  # Tue + 2 = Thu
    assert after.delivery_date == day(4)
    assert after.window_start == MON  # today's demand still comes out of the store's stock
    # Friday after the cutoff is Saturday's order, which reaches Monday
    fri_late = order_window(MWF2, day(4), time(18, 0))
    assert fri_late.is_order_day and fri_late.delivery_date == day(7)


def test_daily_zero_lead_and_weekly_long_lead():
    daily = DeliverySchedule.from_supplier("daily", "", 0)
    w = order_window(daily, MON)
    assert w.is_order_day and w.delivery_date == MON and w.window_days == 1
    weekly = DeliverySchedule.from_supplier("Mon", "10:00", 7)
    w = order_window(weekly, MON)
    assert w.is_order_day and w.delivery_date == day(7) and w.next_delivery_date == day(14) and w.window_days == 14
    w = order_window(weekly, day(1))
    assert not w.is_order_day and w.delivery_date == day(14) and w.next_order_day == day(7)


def test_negative_lead_time_rejected():
    with pytest.raises(DataError):
        DeliverySchedule.from_supplier("Mon", "10:00", -1)
