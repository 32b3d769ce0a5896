"""What an infusion command may carry (DESIGN §4): the checks every front end shares. Pure.

The console and MQTT validate their bodies against these bounds; the monitor checks again, so
that no caller can record an amount that cannot be a dose.
"""

from __future__ import annotations

import math

from sessiond.model import DoseUnit
from sessiond.session.commands import CommandRejected

#: Largest amount an infusion may hold, per unit; above is a typo, not a dose. IV ketamine
#: for depression is 0.5-1 mg/kg over 40-60 min (clinical.md §2.2); an anaesthetic induction
#: is at most 4.5 mg/kg (Ketalar label), and 500 mg is more than 4.5 mg/kg for most adults.
MAX_AMOUNT: dict[DoseUnit, float] = {DoseUnit.MG: 500.0, DoseUnit.MG_PER_KG: 5.0}
#: Longest planned infusion (min): the protocols run 40-60 min (clinical.md §2.2).
MAX_PLANNED_MIN = 240.0
#: Longest reason (a dose-gate override, a pause, a resume or a stop); it goes into the record.
MAX_REASON_CHARS = 500


def check_amount(amount: float | None, unit: DoseUnit | None, *, what: str) -> None:
    """`amount` in `unit` must be a dose: finite, within the unit's bound (None: not known)."""
    if amount is None:
        return
    if unit is None:
        msg = f"{what}: needs a unit (mg or mg/kg)"
        raise CommandRejected(msg)
    bound = MAX_AMOUNT[unit]
    if not math.isfinite(amount) or not 0 <= amount <= bound:
        msg = f"{what}: must be 0-{bound:g} {unit.value} (got {amount!r})"
        raise CommandRejected(msg)


def check_planned(amount: float | None, planned_min: float | None) -> None:
    """A planned amount and duration are positive (zero plans nothing)."""
    if amount is not None and amount <= 0:
        msg = f"planned amount: must be more than 0 (got {amount!r})"
        raise CommandRejected(msg)
    if planned_min is not None and (
        not math.isfinite(planned_min) or not 0 < planned_min <= MAX_PLANNED_MIN
    ):
        bound = f"more than 0 and at most {MAX_PLANNED_MIN:g}"
        msg = f"planned minutes: must be {bound} (got {planned_min!r})"
        raise CommandRejected(msg)


def check_reason(reason: str | None, *, what: str, required: bool) -> str | None:
    """The reason stripped; refused when required and empty, or too long."""
    reason = (reason or "").strip() or None
    if reason is None and required:
        msg = f"{what} needs a reason"
        raise CommandRejected(msg)
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        msg = f"the reason is longer than {MAX_REASON_CHARS} characters"
        raise CommandRejected(msg)
    return reason
