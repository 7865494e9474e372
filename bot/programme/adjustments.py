"""Operators' corrections: a signed number of points with a reason, within the programme's
limits; added points follow the expiry policy like any other credit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from bot.i18n import N_
from bot.programme.booked import note_booked
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.notices import adjustment_notice
from bot.programme.till import find_member
from storage.errors import InsufficientPoints
from storage.ledger import adjust
from storage.members import Member

# A single adjustment beyond this is a typo (an extra zero), not a correction.
MAX_ADJUSTMENT = 100_000
# The reason is shown on the member's statement and kept in the audit trail.
MAX_REASON_LENGTH = 200
_DELTA = re.compile(r"[+-]?\d{1,7}")


def parse_adjustment(text: str) -> int:
    """A signed, non-zero whole number of points within MAX_ADJUSTMENT (full-width signs
    too); raises RuleError."""
    cleaned = text.strip().replace("＋", "+").replace("－", "-")
    delta = int(cleaned) if _DELTA.fullmatch(cleaned) else 0
    if delta == 0 or abs(delta) > MAX_ADJUSTMENT:
        raise RuleError(N_("admin.adjust.points_invalid"), value=text[:32], limit=MAX_ADJUSTMENT)
    return delta


def adjustment_reason(text: str) -> str:
    """The reason an adjustment needs, trimmed; raises RuleError (missing, too long)."""
    reason = text.strip()
    if not reason:
        raise RuleError(N_("admin.adjust.reason_missing"))
    if len(reason) > MAX_REASON_LENGTH:
        raise RuleError(N_("admin.adjust.reason_too_long"), limit=MAX_REASON_LENGTH)
    return reason


def adjustment_key(source: str) -> str:
    """The idempotency key of an adjustment entered from `source` (a till message)."""
    return f"adjust:{source}"


@dataclass(frozen=True, slots=True)
class AdjustmentRecorded:
    """What an adjustment did, for the operator who entered it."""

    member: Member
    delta: int
    reason: str
    # The member's spendable points right after.
    available: int


async def adjust_points(
    programme: Programme,
    member_code: str,
    delta: str,
    reason: str,
    *,
    adjusted_at: datetime,
    source: str,
    actor: str,
    now: datetime | None = None,
) -> AdjustmentRecorded:
    """Add or take back points (`delta` as entered) for a stated reason, once per source;
    raises RuleError (points, reason, member code, not enough points to take back)."""
    points = parse_adjustment(delta)
    why = adjustment_reason(reason)
    member = await find_member(programme, member_code)
    when = programme.now() if now is None else now
    book = partial(
        adjust,
        member_id=member.id,
        delta=points,
        key=adjustment_key(source),
        actor=actor,
        reason=why,
        # Added points follow the published expiry policy, counted from when they were
        # entered (a redelivered command computes the identical request).
        expires_at=expires_at(adjusted_at, programme.config, "adjustment") if points > 0 else None,
        now=when,
    )
    try:
        # Booked and the member told in one transaction; a redelivered command tells nobody.
        result = await programme.pushes.book_and_notify(book, adjustment_notice(points, why), when)
        note_booked(result.operation_id)
    except InsufficientPoints as exc:
        raise RuleError(
            N_("admin.adjust.insufficient"), available=exc.available, requested=exc.requested
        ) from None
    return AdjustmentRecorded(
        member, points, why, await programme.ledger.available(member.id, when)
    )
