"""A guard on the engine's pack rounding: never round down below the window's median need.

Why: ``forecasting.policy.round_packs`` rounds a fractional pack down when it is below the threshold (0.3). With
packs much larger than a window's demand (2,000 sugar packets, 5,000 napkins, a store using 180 a week) the need is
always a small fraction of a pack, so the line rounds down to zero on every order day and the store runs dry: the
replay measured a 58% product fill rate for the engine with perfect forecasts. The incumbent's rule has the same
guard ("never leave the window's expected need uncovered"). Until the engine carries it (``decide_quantity``), the
plan and the replay apply it here, as a reason on the line; the shelf-life and storage caps still bind.
"""

from __future__ import annotations

import math

from forecasting.policy import fmt
from forecasting.proposal import ProposalLine

CODE = "rounded_up_guard"


def guard_line(ln: ProposalLine) -> ProposalLine:
    """One more pack when the engine rounded down and the position after ordering is below the median need."""
    if not ln.is_order_day or "rounded_down" not in ln.reason_codes or "capacity_cap" in ln.reason_codes:
        return ln
    after = ln.inventory_position + ln.qty_units
    if after >= ln.demand_median - 1e-9:
        return ln
    packs = ln.qty_packs + max(1, math.ceil((ln.demand_median - after) / ln.pack_size - 1e-9))
    packs = min(packs, ln.qty_packs + math.ceil(max(ln.need_units - ln.qty_units, 0.0) / ln.pack_size - 1e-9))
    cap = ln.shelf_life_cap_units
    if cap is not None:
        packs = min(packs, math.floor(cap / ln.pack_size + 1e-9))
    if packs <= ln.qty_packs:
        return ln
    qty = packs * ln.pack_size
    text = (f"rounded up to {packs} pack{'s' if packs != 1 else ''}: rounding down would leave {fmt(after)} "
            f"for a median need of {fmt(ln.demand_median)}")
    head = f"Order {packs} pack{'s' if packs != 1 else ''} ({fmt(qty)} {ln.unit or 'units'})"
    body = ln.explanation.split(": ", 1)[1] if ": " in ln.explanation else ln.explanation
    unit = ln.order_value / ln.qty_units if ln.order_value is not None and ln.qty_units > 0 else None
    return ln.model_copy(update={
        "qty_packs": packs, "qty_units": qty, "order_value": None if unit is None else unit * qty,
        "reason_codes": [*ln.reason_codes, CODE],
        "explanation": f"{head}: {body.rstrip('.')}; {text}.",
    })


def guard(lines: list[ProposalLine], unit_cost: dict[int, float] | None = None) -> list[ProposalLine]:
    """``guard_line`` on every line; ``unit_cost`` fills the order value of lines that were zero before."""
    out = []
    for ln in lines:
        g = guard_line(ln)
        if g is not ln and g.order_value is None and unit_cost and unit_cost.get(ln.material_id) is not None:
            g = g.model_copy(update={"order_value": g.qty_units * float(unit_cost[ln.material_id])})
        out.append(g)
    return out
