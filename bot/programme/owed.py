"""Owed points: what a purchase return could not take back (the member had spent the points)
is owed, never a negative balance, and is netted against the member's next purchase earnings.

Which credits settle it: a purchase's own points, its campaign's extra points and a personal
plan's bonus and gift on it (SETTLING_KINDS), as they are booked. Birthday gifts, game prizes,
task and tier rewards, survey rewards and transfers from family never do: they are gifts, not
earnings from buying. The settlement is its own ledger operation (kind 'owed_settlement') in
the transaction that booked the purchase, so /history shows the earning and the settlement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from bot.i18n import N_
from storage import purchase_returns as store
from storage.pushes import SERVICE, Push, enqueue

if TYPE_CHECKING:
    from bot.programme.task_progress import BookedPurchase

# The credits owed points are netted against (see the module docstring; /rules names them).
SETTLING_KINDS: Final = ("purchase", "campaign", "plan")


def settlement_key(first_purchase_operation: int) -> str:
    """Idempotency key of the settlement against the purchases booked from this operation on."""
    return f"owed:{first_purchase_operation}"


def settle_from_purchases(
    conn: sqlite3.Connection,
    booked: Sequence[BookedPurchase],
    now: datetime,
    *,
    actor: str,
    tell_member: bool = True,
) -> list[store.Settlement]:
    """Net the owed points of the members who just earned by purchases (`booked`, never
    replays) against what those purchases earned, in their transaction; the member is told
    unless `tell_member` is False. Return the settlements."""
    first: dict[int, int] = {}
    for purchase in booked:
        first.setdefault(purchase.member_id, purchase.operation_id)
    if not first:
        return []
    owing = store.owed_among(conn, first)  # one query for a batch: almost nobody owes
    settled: list[store.Settlement] = []
    pushes: list[Push] = []
    for member_id in sorted(owing):
        since = first[member_id]
        earned_by = store.earnings_since(conn, member_id, since, SETTLING_KINDS)
        settlement = store.settle_owed(
            conn,
            member_id,
            earned_by,
            key=settlement_key(since),
            actor=actor,
            now=now,
            meta={"purchase_operation": since},
        )
        if settlement is None:
            continue
        settled.append(settlement)
        if tell_member:
            pushes.append(
                Push(
                    f"owed_settlement:{settlement.operation_id}",
                    member_id,
                    SERVICE,
                    N_("returns.notice_settled")
                    if settlement.owed_after == 0
                    else N_("returns.notice_settled_part"),
                    {"points": settlement.points, "owed": settlement.owed_after},
                )
            )
    if pushes:
        enqueue(conn, pushes, now)
    return settled
