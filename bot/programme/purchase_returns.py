"""Purchase returns: the one home of what a purchase refunded at the till takes back, for the
chat's /purchase_return, the CSV import's `return_of` rows and the till API alike.

Points: everything a purchase earned (its own points with any tier bonus, its campaign's
extra points, a personal plan's bonus on it) comes back in proportion to the yuan refunded,
cumulatively: after refunds totalling R of an amount A the member keeps floor(P × (A − R) / A)
of each part P, so several partial refunds that add up to A take back exactly everything.
Each part goes back to the source it came from. The points are taken from the purchase's own
remaining lots first, then from the member's other lots soonest-expiring first; what the
member no longer has (spent, sent to family, expired) is recorded as owed
(bot.programme.owed), never as a negative balance.

Progress: a full return (the refunds reach the amount) takes the purchase out of its tasks
and its month's tier figures (`withdraw_purchase`). A partial one takes the refunded yuan and
its share of the purchase's own points out of the month's tier figures, and its share of the
yuan out of `spend` tasks (floor, cumulatively as for points); a `purchases` or `streak` task
keeps counting the purchase until it is returned in full. Progress of a period already over,
and completions already paid, stay. A tier this period's upgrade reached that the figures left
no longer reach is undone, and its entry reward taken back like the points above
(bot.programme.tier_review.undo_upgrade); a tier held since before the period stays until the
review. A plan's spend counter drops by the refunded yuan; a plan gift already paid stays
paid. A referred friend's
first purchase returned leaves the referral as it is: the referrer's reward stays, and the
friend's next purchase is not a first one.

Idempotency: a return is keyed by its return id (the till's, the CSV row's receipt id), else by
the chat message it was typed in (`till.command_source`). The same key with the same request
(receipt and amount, or "everything left") is a replay: the first result, nothing written; with
another request it is a conflict.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Final, Literal

from bot.config import Config
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.owed import SETTLING_KINDS
from bot.programme.purchases import TILL_RECEIPT, check_receipt, parse_amount, purchase_key
from bot.programme.task_progress import PURCHASE_KINDS, withdraw_purchase
from bot.programme.tasks import advance_task, period_of
from bot.programme.tier_review import qualifying_total, undo_upgrade
from bot.programme.tiers import month_of, tiers_on
from storage import ledger
from storage import purchase_returns as store
from storage import tasks as task_store
from storage.ledger.bookkeeping import request_fingerprint
from storage.members import Member, member_by_id
from storage.pushes import SERVICE, Push, enqueue
from storage.sql import atomic
from storage.tier_reviews import withdraw_figures

# What a return fingerprints when no amount is given: everything not refunded yet.
EVERYTHING_LEFT: Final = "all"


@dataclass(frozen=True, slots=True)
class PurchaseReturned:
    """What a return did, for the cashier, the CSV import and the till API."""

    status: Literal["returned", "replayed", "conflict"]
    receipt: str  # the purchase's receipt
    return_id: str
    member: Member  # storage.members.Member
    refunded: Decimal  # yuan refunded by this return
    points: int  # points this return takes back in all
    taken: int  # of them, taken from the member's balance now
    owed: int  # of them, recorded as owed (the member had spent them)
    available: int | None  # the member's spendable points after (None when replayed)


@dataclass(frozen=True, slots=True)
class ReturnRules:
    """What /rules says about purchase returns, from the code and configuration that apply
    them: the credits that settle owed points, and which progress a return undoes here."""

    settling_sources: tuple[str, ...]
    tiers: bool
    purchase_tasks: bool
    referrals: bool


def return_rules(config: Config) -> ReturnRules:
    """The returns part of /rules for this programme."""
    return ReturnRules(
        settling_sources=SETTLING_KINDS,
        tiers=tiers_on(config),
        purchase_tasks=any(t.kind in PURCHASE_KINDS for t in config.tasks),
        referrals=any(t.kind == "referral" for t in config.tasks),
    )


def points_kept(points: int, amount_fen: int, refunded_fen: int) -> int:
    """What a member keeps of a purchase's `points` after refunds of `refunded_fen` of
    `amount_fen`: floor(points × (amount − refunded) / amount)."""
    return points * (amount_fen - refunded_fen) // amount_fen


def points_back(points: int, amount_fen: int, before_fen: int, after_fen: int) -> int:
    """The points a return moving the refunds from `before_fen` to `after_fen` takes back."""
    return points_kept(points, amount_fen, before_fen) - points_kept(points, amount_fen, after_fen)


def return_key(return_id: str | None, source: str | None) -> str:
    """The idempotency key of a return: by its return id, else by where it was entered."""
    if return_id:
        return f"purchase_return:{return_id}"
    if not source:
        raise ValueError("a return without a return id needs the source it was entered from")
    return f"purchase_return:{source}"


def check_return_id(return_id: str) -> str:
    """A return id as a till or a CSV file sends it; raises RuleError (characters, length)."""
    if not TILL_RECEIPT.match(return_id):
        raise RuleError(N_("returns.error.return_id_invalid"), value=return_id[:64])
    return return_id


def _yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def _fen(amount: Decimal) -> int:
    return int(amount * 100)


def _withdraw_partly(
    conn: sqlite3.Connection,
    purchase: store.ReturnablePurchase,
    return_operation: int,
    before: int,
    after: int,
    config: Config,
    now: datetime,
    *,
    actor: str,
) -> None:
    """A partial return's share out of the month's tier figures and the `spend` tasks."""
    amount = purchase.amount_fen
    fen = after - before
    if tiers_on(config):
        own = purchase.parts[0].points - int(purchase.meta.get("tier_bonus", 0))
        day = _purchase_day(purchase)
        if day is not None:
            withdraw_figures(
                conn,
                return_operation,
                purchase.member_id,
                month_of(day),
                points_back(own, amount, before, after),
                fen,
                now,
            )
    today = local_today(now, config)
    for move in task_store.purchase_moves(conn, purchase.operation_id):
        task = config.task(move.task_id)
        if move.withdrawn or task is None or task.kind != "spend" or not task.open_on(today):
            continue
        if period_of(task, today) != move.period:
            continue  # a past period's progress is history
        if step := points_back(move.delta, amount, before, after):
            advance_task(conn, task, move.member_id, -step, config, now, actor=actor)


def _purchase_day(purchase: store.ReturnablePurchase) -> date | None:
    """The purchase's local day as booked (None: an older purchase without it)."""
    try:
        return date.fromisoformat(str(purchase.meta["purchased_on"]))
    except (KeyError, ValueError):
        return None


def _notice(
    member_id: int, operation_id: int, receipt: str, refunded: Decimal, booked: store.ReturnBooked
) -> Push:
    """The member's message about a return: refund, points back, and any owed points."""
    params: dict[str, object] = {
        "receipt": receipt,
        "amount": f"{refunded:.2f}",
        "points": booked.points,
    }
    if booked.owed:
        key = N_("returns.notice_owed")
        params |= {"taken": booked.taken, "owed": booked.owed, "total": booked.owed_total}
    else:
        key = N_("returns.notice")
    return Push(f"purchase_return:{operation_id}", member_id, SERVICE, key, params)


def return_purchase_in(
    conn: sqlite3.Connection,
    config: Config,
    receipt: str,
    refund: Decimal | None,
    *,
    return_id: str | None,
    actor: str,
    now: datetime,
    source: str | None = None,
    member_id: int | None = None,
    tell_member: bool = True,
) -> PurchaseReturned:
    """The sync core of `return_purchase` (inside a batch transaction for the CSV import):
    return `refund` yuan (None: everything not refunded yet) of the purchase with `receipt`,
    made by `member_id` when given; raises RuleError (unknown receipt, another member's
    purchase, fully returned already, more than is left to refund)."""
    key = return_key(return_id, source)
    requested = EVERYTHING_LEFT if refund is None else f"{refund:.2f}"
    fingerprint = request_fingerprint(
        {"op": "purchase_return", "receipt": receipt, "refund": requested}
    )
    shown_id = return_id or ""
    with atomic(conn):
        if (stored := store.stored_return(conn, key)) is not None:
            member = member_by_id(conn, stored.member_id)
            if stored.fingerprint != fingerprint:
                return PurchaseReturned(
                    "conflict", receipt, shown_id, member, Decimal("0.00"), 0, 0, 0, None
                )
            return PurchaseReturned(
                "replayed",
                stored.receipt,
                shown_id,
                member,
                _yuan(stored.refunded_fen),
                stored.points,
                stored.taken,
                stored.owed,
                None,
            )
        purchase = store.returnable_purchase(conn, purchase_key(receipt))
        if purchase is None:
            raise RuleError(N_("returns.error.unknown_receipt"), receipt=receipt)
        if member_id is not None and member_id != purchase.member_id:
            raise RuleError(N_("returns.error.other_member"), receipt=receipt)
        amount = purchase.amount_fen
        before = purchase.refunded_fen
        left = amount - before
        if left <= 0:
            raise RuleError(
                N_("returns.error.fully_returned"), receipt=receipt, amount=_yuan(amount)
            )
        fen = left if refund is None else _fen(refund)
        if fen > left:
            raise RuleError(
                N_("returns.error.over_left"),
                receipt=receipt,
                value=f"{refund:.2f}",
                left=_yuan(left),
                amount=_yuan(amount),
            )
        after = before + fen
        back = [
            (part.source, points_back(part.points, amount, before, after))
            for part in purchase.parts
        ]
        booked = store.book_return(
            conn,
            purchase,
            key=key,
            fingerprint=fingerprint,
            return_id=return_id,
            refunded_fen=fen,
            back=back,
            actor=actor,
            now=now,
            meta={
                "purchase": purchase_key(receipt),
                "receipt": receipt,
                "amount": f"{_yuan(fen):.2f}",
                "refunded_before": f"{_yuan(before):.2f}",
                "purchase_amount": f"{_yuan(amount):.2f}",
                "parts": {source: points for source, points in back if points},
                **({"return_id": return_id} if return_id else {}),
            },
        )
        total_before = qualifying_total(conn, purchase.member_id, config, now)
        if after == amount:
            # What partial returns took stays taken: `share` is what they left.
            withdraw_purchase(
                conn,
                purchase.operation_id,
                config,
                now,
                actor=actor,
                share=(amount - before, amount),
            )
        else:
            _withdraw_partly(
                conn, purchase, booked.operation_id, before, after, config, now, actor=actor
            )
        if (day := _purchase_day(purchase)) is not None:
            store.lower_plan_spend(conn, purchase, day.isoformat(), fen)
        if tell_member:
            push = _notice(purchase.member_id, booked.operation_id, receipt, _yuan(fen), booked)
            enqueue(conn, [push], now)
        # After the figures moved (and after the refund's own message): a tier this period's
        # upgrade reached that the figures no longer reach is undone.
        undo_upgrade(
            conn,
            purchase.member_id,
            config,
            now,
            total_before=total_before,
            return_operation=booked.operation_id,
            receipt=receipt,
            actor=actor,
            tell_member=tell_member,
        )
        member = member_by_id(conn, purchase.member_id)
        available = ledger.available(conn, purchase.member_id, now)
    return PurchaseReturned(
        "returned",
        receipt,
        shown_id,
        member,
        _yuan(fen),
        booked.points,
        booked.taken,
        booked.owed,
        available,
    )


async def return_purchase(
    programme: Programme,
    receipt: str,
    amount: str | None,
    *,
    return_id: str | None,
    actor: str,
    source: str | None = None,
) -> PurchaseReturned:
    """Take back the points of `amount` yuan (as typed; None: everything not refunded yet)
    refunded of the purchase with `receipt`, once per return id (else per `source`), the member
    told; raises RuleError (receipt, return id, amount, unknown receipt, fully returned
    already, more than is left to refund)."""
    check_receipt(receipt)
    if return_id is not None:
        check_return_id(return_id)
    refund = None if amount is None else parse_amount(amount, programme.config)
    return await programme.store.write(
        partial(
            return_purchase_in,
            config=programme.config,
            receipt=receipt,
            refund=refund,
            return_id=return_id,
            actor=actor,
            now=programme.now(),
            source=source,
        )
    )
