"""Planner-facing words and amounts, shared by the static report and the workbench.

Why one place: a planner reads "2 packs", "covers 98% of likely demand" and "8 pc", never "q100" or "7.92 pieces";
the statistics stay in the details. Pieces (discrete units) are shown whole; measured amounts keep one decimal
below 100 of their unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from forecasting.inventory.policy import fmt

DISCRETE_UNITS = frozenset({"pc", "pcs", "piece", "pieces", "each", "ea", "unit", "units", "bag", "bags", "bottle",
                            "bottles", "cup", "cups", "box", "boxes", "carton", "cartons"})
LIMIT_WORDS = {
    "shelf_life_cap": "limited by shelf life", "moq": "raised to the minimum order", "capacity_cap": "limited by "
    "storage room", "not_order_day": "not an order day", "covered": "stock covers it", "moq_blocked": "minimum order "
    "does not fit", "case_cover": "one pack outlasts the shelf life",
}


def is_discrete(unit: str | None) -> bool:
    return (unit or "units").strip().lower() in DISCRETE_UNITS


def amount(x, unit: str | None) -> str:
    """An amount with its unit: pieces as whole numbers, other units to one decimal below 100 ("0.3 L", "165 ml")."""
    u = unit or "units"
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return f"n/a {u}"
    v = float(x)
    if is_discrete(u) or abs(v) >= 100:
        return f"{int(round(v)):,} {u}"
    s = f"{v:,.1f}"
    return f"{s[:-2] if s.endswith('.0') else s} {u}"


def packs(n) -> str:
    n = int(n)
    return f"{n} pack{'s' if n != 1 else ''}"


def plain_reason(r: Mapping) -> str:
    """The main view's sentence for a line: how much of likely demand it covers, and what limited it."""
    unit = r.get("unit") or "units"
    level = float(r.get("quantile_level") or 0.0)
    days = int(r.get("window_days") or 0)
    codes = list(r.get("reason_codes") or [])
    words = (f"covers {math.floor(100 * level + 1e-9)}% of likely demand over {days} days (usually "
             f"{amount(r.get('demand_median'), unit)}); has {amount(r.get('inventory_position'), unit)} on hand and "
             "on order")
    limits = [LIMIT_WORDS[c] for c in codes if c in LIMIT_WORDS]
    return words + (f"; {', '.join(limits)}" if limits else "")


def details(r: Mapping) -> str:
    """The statistics behind a line, measured values unrounded (the details under the plain words)."""
    unit = r.get("unit") or "units"

    def v(key: str) -> str:
        x = r.get(key)
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{fmt(float(x))} {unit}"

    return (f"window {int(r.get('window_days') or 0)} days; median need {v('demand_median')}, mean "
            f"{v('demand_mean')}; {r.get('quantile_basis')} quantile {float(r.get('quantile_level') or 0):.3f} "
            f"({r.get('policy_class')}) = order-up-to {v('order_up_to')}; safety stock {v('safety_stock')}; "
            f"position {v('inventory_position')} = on hand used {v('on_hand_used')} (counted {v('on_hand_counted')}, "
            f"flag {r.get('count_flag')}) + on order {v('on_order')}; codes {', '.join(r.get('reason_codes') or [])}. "
            f"{r.get('explanation') or ''}")
