"""Points moved between the members of a household: offers behind the confirmation button,
the checks a transfer must pass inside its own transaction, and the undo.

The programme decides the rules (limits, the local day and month, the cooling-off, which
sources stay with their member) and hands them in as `TransferLimits`; this module only
checks what it is handed, in the transaction that books, so two taps at once cannot both
pass a limit only one fits in. Like `storage.mall`, the core is synchronous functions on a
`sqlite3.Connection`, each all-or-nothing through `storage.sql.atomic`; `Transfers` is the
async facade.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from storage import ledger
from storage.errors import InvalidRequest, NotFound, OfferExpired, StoreError
from storage.facade import Facade, looks_up, writes
from storage.family import current_stay_since, household_id_of
from storage.ledger.bookkeeping import (
    choose_movable_lots,
    load_result,
    movable_points,
    require_positive,
)
from storage.sql import atomic, dt, dt_or_none, insert_id, required_now, ts

RefusalReason = Literal[
    "no_household",
    "not_together",
    "cooling_off",
    "below_minimum",
    "sender_day",
    "sender_month",
    "recipient_day",
    "recipient_month",
]


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """The rules in force for one transfer, decided by the programme, checked here."""

    min_points: int
    sender_day: int
    sender_month: int
    recipient_day: int
    recipient_month: int
    # The local day and the local calendar month `now` falls in: [start, end).
    day: tuple[datetime, datetime]
    month: tuple[datetime, datetime]
    # How long both members must have been in their household before points move.
    cooling_off: timedelta
    # Source accounts whose points stay with the member who earned them.
    held_back: frozenset[str]


class TransferRefused(StoreError):
    """The transfer breaks a rule it was handed; `reason` says which, `limit` and `left` the
    bound and what is left of it, `until` when a cooling-off ends."""

    def __init__(
        self,
        reason: RefusalReason,
        *,
        limit: int = 0,
        left: int = 0,
        until: datetime | None = None,
    ) -> None:
        super().__init__(f"transfer refused: {reason}")
        self.reason = reason
        self.limit = limit
        self.left = left
        self.until = until


@dataclass(frozen=True, slots=True)
class Totals:
    """What a sender sent and a recipient received today and this month (undone ones not)."""

    sent_day: int
    sent_month: int
    received_day: int
    received_month: int


@dataclass(frozen=True, slots=True)
class TransferOffer:
    """What a confirmation button will book, and the sender's lots it would use now:
    (expires_at, points) soonest first, None (never) last."""

    id: int
    sender_id: int
    recipient_id: int
    household_id: int
    points: int
    created_at: datetime
    expires_at: datetime
    plan: tuple[tuple[datetime | None, int], ...] = ()


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A booked transfer, as its undo button needs it."""

    operation_id: int
    sender_id: int
    recipient_id: int
    points: int
    created_at: datetime
    undone: bool


_SENT: Final = (
    "SELECT coalesce(sum(t.points), 0) FROM operations AS t"
    " WHERE t.kind = 'transfer' AND t.member_id = ? AND t.created_at >= ? AND t.created_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM operations AS u WHERE u.reverses_operation_id = t.id)"
)
_RECEIVED: Final = _SENT.replace("t.member_id = ?", "t.counterparty_id = ?")


def _sum(conn: sqlite3.Connection, sql: str, member_id: int, span: tuple[int, int]) -> int:
    return int(conn.execute(sql, (member_id, *span)).fetchone()[0])


def totals(
    conn: sqlite3.Connection, sender_id: int, recipient_id: int, limits: TransferLimits
) -> Totals:
    """The sender's and the recipient's transfer totals in the day and month handed in."""
    day = (ts(limits.day[0]), ts(limits.day[1]))
    month = (ts(limits.month[0]), ts(limits.month[1]))
    return Totals(
        sent_day=_sum(conn, _SENT, sender_id, day),
        sent_month=_sum(conn, _SENT, sender_id, month),
        received_day=_sum(conn, _RECEIVED, recipient_id, day),
        received_month=_sum(conn, _RECEIVED, recipient_id, month),
    )


def limit_room(
    conn: sqlite3.Connection, sender_id: int, recipient_id: int, limits: TransferLimits
) -> tuple[int, RefusalReason]:
    """The most the limits let the sender move to the recipient now, and the limit that
    binds."""
    done = totals(conn, sender_id, recipient_id, limits)
    bounds: list[tuple[int, RefusalReason]] = [
        (limits.sender_day - done.sent_day, "sender_day"),
        (limits.sender_month - done.sent_month, "sender_month"),
        (limits.recipient_day - done.received_day, "recipient_day"),
        (limits.recipient_month - done.received_month, "recipient_month"),
    ]
    left, reason = min(bounds, key=lambda bound: bound[0])
    return max(left, 0), reason


def limit_of(limits: TransferLimits, reason: RefusalReason) -> int:
    """The bound a limit refusal names (0 for a refusal that is not about a limit)."""
    return {
        "sender_day": limits.sender_day,
        "sender_month": limits.sender_month,
        "recipient_day": limits.recipient_day,
        "recipient_month": limits.recipient_month,
    }.get(reason, 0)


def check_together(
    conn: sqlite3.Connection,
    sender_id: int,
    recipient_id: int,
    limits: TransferLimits,
    now: datetime,
) -> int:
    """The household both members are in now, past their cooling-off; raises
    TransferRefused ('no_household', 'not_together', 'cooling_off')."""
    household_id = household_id_of(conn, sender_id)
    if household_id is None:
        raise TransferRefused("no_household")
    if sender_id == recipient_id or household_id_of(conn, recipient_id) != household_id:
        raise TransferRefused("not_together")
    ends = []
    for member_id in (sender_id, recipient_id):
        since = current_stay_since(conn, member_id)
        assert since is not None  # both are in the household
        ends.append(since + limits.cooling_off)
    if max(ends) > now:
        raise TransferRefused("cooling_off", until=max(ends))
    return household_id


def check_transfer(
    conn: sqlite3.Connection,
    sender_id: int,
    recipient_id: int,
    points: int,
    limits: TransferLimits,
    now: datetime,
) -> int:
    """The household a transfer of `points` would be made in, every rule it was handed
    checked; raises TransferRefused."""
    household_id = check_together(conn, sender_id, recipient_id, limits, now)
    if points < limits.min_points:
        raise TransferRefused("below_minimum", limit=limits.min_points)
    left, reason = limit_room(conn, sender_id, recipient_id, limits)
    if points > left:
        raise TransferRefused(reason, limit=limit_of(limits, reason), left=left)
    return household_id


def _plan(
    conn: sqlite3.Connection, member_id: int, points: int, limits: TransferLimits, now: datetime
) -> tuple[tuple[datetime | None, int], ...]:
    """The sender's lots a transfer would use now, by expiry (the very selection it makes)."""
    planned: dict[int | None, int] = {}
    for take in choose_movable_lots(conn, member_id, points, ts(now), limits.held_back):
        planned[take.expires_at] = planned.get(take.expires_at, 0) + take.points
    return tuple((dt_or_none(expires_at), taken) for expires_at, taken in planned.items())


def movable(
    conn: sqlite3.Connection, member_id: int, held_back: frozenset[str], now: datetime | None = None
) -> tuple[int, int]:
    """The member's points that may move now, and those that stay (held-back sources)."""
    return movable_points(conn, member_id, ts(required_now(now)), held_back)


def _offer(row: Sequence[Any]) -> TransferOffer:
    return TransferOffer(
        id=row[0],
        sender_id=row[1],
        recipient_id=row[2],
        household_id=row[3],
        points=row[4],
        created_at=dt(row[5]),
        expires_at=dt(row[6]),
    )


def create_offer(
    conn: sqlite3.Connection,
    sender_id: int,
    recipient_id: int,
    points: int,
    *,
    limits: TransferLimits,
    ttl: timedelta,
    now: datetime | None = None,
) -> TransferOffer:
    """Record what a confirmation button will book, after checking it could be booked now;
    raises TransferRefused, InsufficientPoints (SourceHeldBack), InvalidRequest."""
    now = required_now(now)
    require_positive(points)
    if ttl <= timedelta(0):
        raise InvalidRequest("an offer must stay valid for some time")
    now_ts = ts(now)
    with atomic(conn):
        household_id = check_transfer(conn, sender_id, recipient_id, points, limits, now)
        plan = _plan(conn, sender_id, points, limits, now)
        expires_ts = max(ts(now + ttl), now_ts + 1)
        offer_id = insert_id(
            conn,
            "INSERT INTO transfer_offers (sender_id, recipient_id, household_id, points,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (sender_id, recipient_id, household_id, points, now_ts, expires_ts),
        )
        return TransferOffer(
            id=offer_id,
            sender_id=sender_id,
            recipient_id=recipient_id,
            household_id=household_id,
            points=points,
            created_at=dt(now_ts),
            expires_at=dt(expires_ts),
            plan=plan,
        )


def offer(conn: sqlite3.Connection, offer_id: int, sender_id: int) -> TransferOffer:
    """The sender's offer (open or not); raises OfferExpired for anyone else's or none."""
    row = conn.execute(
        "SELECT id, sender_id, recipient_id, household_id, points, created_at, expires_at"
        " FROM transfer_offers WHERE id = ?",
        (offer_id,),
    ).fetchone()
    # Someone else's offer looks exactly like a stale one: ids are guessable.
    if row is None or row[1] != sender_id:
        raise OfferExpired(f"no transfer offer {offer_id} for member {sender_id}")
    return _offer(row)


def confirm(
    conn: sqlite3.Connection,
    offer_id: int,
    sender_id: int,
    *,
    limits: TransferLimits,
    key: str,
    actor: str,
    now: datetime | None = None,
) -> ledger.OperationResult:
    """Book the sender's offer once under `key` (one per offer), every rule checked again now
    (a repeat returns the same operation, replayed); the operation records its household.
    Raises OfferExpired, TransferRefused, InsufficientPoints (SourceHeldBack)."""
    now = required_now(now)
    with atomic(conn):
        pending = offer(conn, offer_id, sender_id)
        done = conn.execute(
            "SELECT id FROM operations WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if done is not None:
            return load_result(conn, int(done[0]), replayed=True)
        if now >= pending.expires_at:
            raise OfferExpired(f"transfer offer {offer_id} expired")
        household_id = check_transfer(
            conn, sender_id, pending.recipient_id, pending.points, limits, now
        )
        if household_id != pending.household_id:
            # Left and joined another household since: not the transfer that was shown.
            raise TransferRefused("not_together")
        return ledger.transfer(
            conn,
            sender_id,
            pending.recipient_id,
            pending.points,
            key=key,
            actor=actor,
            reason=None,
            now=now,
            held_back=limits.held_back,
            meta={"household": household_id, "offer": offer_id},
        )


def transfer_record(conn: sqlite3.Connection, operation_id: int) -> TransferRecord:
    """A booked transfer; raises NotFound."""
    row = conn.execute(
        "SELECT t.member_id, t.counterparty_id, t.points, t.created_at,"
        " EXISTS (SELECT 1 FROM operations AS u WHERE u.reverses_operation_id = t.id)"
        " FROM operations AS t WHERE t.id = ? AND t.kind = 'transfer'",
        (operation_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no transfer {operation_id}")
    return TransferRecord(operation_id, row[0], row[1], row[2], dt(row[3]), bool(row[4]))


def undo(
    conn: sqlite3.Connection,
    transfer_operation_id: int,
    sender_id: int,
    *,
    within: timedelta,
    key: str,
    actor: str,
    now: datetime | None = None,
) -> ledger.OperationResult:
    """Take a transfer back (see `storage.ledger.undo_transfer`) under `key` (one per
    transfer, so a double tap books once); raises NotFound, AlreadyReversed, InvalidState."""
    return ledger.undo_transfer(
        conn,
        transfer_operation_id,
        sender_id=sender_id,
        within=within,
        key=key,
        actor=actor,
        now=now,
    )


def ask_amount(
    conn: sqlite3.Connection, member_id: int, recipient_id: int, *, now: datetime | None = None
) -> None:
    """Remember whom the member will type an amount for (one open question per member)."""
    now = required_now(now)
    with atomic(conn):
        conn.execute(
            "INSERT INTO transfer_prompts (member_id, recipient_id, asked_at) VALUES (?, ?, ?)"
            " ON CONFLICT (member_id) DO UPDATE SET recipient_id = excluded.recipient_id,"
            " asked_at = excluded.asked_at",
            (member_id, recipient_id, ts(now)),
        )


def asked_for(conn: sqlite3.Connection, member_id: int) -> int | None:
    """Whom the member was last asked to type an amount for, or None."""
    row = conn.execute(
        "SELECT recipient_id FROM transfer_prompts WHERE member_id = ?", (member_id,)
    ).fetchone()
    return None if row is None else int(row[0])


def member_names(conn: sqlite3.Connection, member_ids: Sequence[int]) -> dict[int, str]:
    """Members' names as their household shows them, by id."""
    return {
        int(r[0]): str(r[1])
        for r in conn.execute(
            "SELECT id, trim(first_name || ' ' || coalesce(last_name, '')) FROM members"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(member_ids)),),
        )
    }


class Transfers(Facade):
    """Async access to transfers (one write transaction per call)."""

    create_offer = writes(create_offer)
    offer = looks_up(offer)
    confirm = writes(confirm)
    undo = writes(undo)
    limit_room = looks_up(limit_room)
    movable = looks_up(movable)
    check_together = looks_up(check_together)
    transfer_record = looks_up(transfer_record)
    ask_amount = writes(ask_amount)
    asked_for = looks_up(asked_for)
    member_names = looks_up(member_names)
