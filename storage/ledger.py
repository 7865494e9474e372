"""The points ledger: double-entry, append-only, lot-based (DESIGN.md "The ledger").

The core is synchronous functions taking a `sqlite3.Connection`: each is atomic on its own
(a savepoint inside the caller's transaction, or its own `BEGIN IMMEDIATE` otherwise), so
tests, imports and benchmarks can drive it directly. `Ledger` is the async facade: one
`Store.write` (one thread hop, one transaction) per operation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, Final, TypeVar

from storage.errors import (
    AlreadyReversed,
    Conflict,
    InsufficientPoints,
    InvalidRequest,
    NotFound,
    StoreError,
)
from storage.sql import atomic, dt, dt_or_none, sole_operation, ts, ts_or_none
from storage.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

EARN_KINDS: Final = frozenset(
    {
        "purchase",
        "birthday",
        "survey",
        "feedback",
        "game",
        "share_bonus",
        "compensation",
        "campaign",
    }
)
# The sink a spend goes to decides its operation kind (and so the statement line).
SPEND_SINKS: Final[Mapping[str, str]] = {"redeemed": "redeem", "game_cost": "game_play"}
SPEND_KINDS: Final = frozenset(SPEND_SINKS.values())
EXPIRED_SINK: Final = "expired"
ADJUSTMENT_SOURCE: Final = "adjustment"
DAY_SECONDS: Final = 86_400


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consumed:
    """Points an operation took from one lot."""

    lot_id: int
    points: int


@dataclass(frozen=True, slots=True)
class OperationResult:
    """What an operation did; rebuilt identically from the database when its key is replayed."""

    operation_id: int
    kind: str
    member_id: int
    points: int
    # The member account's ledger balance right after the operation (it still counts expired
    # points that the next sweep will book; `balance()` gives what is spendable).
    balance_after: int
    lots_created: tuple[int, ...] = ()
    consumed: tuple[Consumed, ...] = ()
    recipient_id: int | None = None
    recipient_balance_after: int | None = None
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    """What an expiry sweep booked."""

    lots: int
    points: int


@dataclass(frozen=True, slots=True)
class EarnRequest:
    """One credit of `earn_many` (a row of a purchase import)."""

    member_id: int
    points: int
    kind: str
    key: str
    actor: str
    expires_at: datetime | None
    now: datetime
    reason: str | None = None
    reference: str | None = None
    meta: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's spendable points, when they expire, and what they ever earned."""

    member_id: int
    available: int
    # (expires_at, points) of unexpired lots, soonest first; None (never) last.
    expiring: tuple[tuple[datetime | None, int], ...]
    lifetime_earned: int


@dataclass(frozen=True, slots=True)
class Lot:
    """A credit to a member with its own expiry."""

    id: int
    member_id: int
    operation_id: int
    points: int
    remainder: int
    expires_at: datetime | None
    origin_lot_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One operation as a member's statement shows it."""

    operation_id: int
    created_at: datetime
    kind: str
    points: int  # signed, from the member's point of view
    reason: str | None
    reference: str | None


@dataclass(frozen=True, slots=True)
class Statement:
    """A page of a member's history, newest first, and how many lines there are in all."""

    lines: tuple[StatementLine, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of an operation: `member:<id>` or a system account name, and a signed amount."""

    account: str
    amount: int


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """An operation with its postings, created lots and consumed lots."""

    id: int
    kind: str
    key: str
    member_id: int
    counterparty_id: int | None
    points: int
    actor: str
    reason: str | None
    reference: str | None
    reverses_operation_id: int | None
    created_at: datetime
    meta: Mapping[str, Any] | None
    postings: tuple[Posting, ...]
    lots_created: tuple[int, ...]
    consumed: tuple[Consumed, ...]


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One posting with its operation's fields: a row of the audit-trail export."""

    posting_id: int
    operation_id: int
    created_at: datetime
    kind: str
    key: str
    actor: str
    reason: str | None
    reference: str | None
    reverses_operation_id: int | None
    account: str
    member_id: int | None
    amount: int
    meta: str | None


# --- helpers -------------------------------------------------------------------------------


def _json_default(value: object) -> str:
    # Money is Decimal (STYLE.md): kept exact as a decimal string.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in operation meta")


def _canonical_json(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def _fingerprint(request: Mapping[str, object]) -> str:
    """Hash of what was asked (not who delivered it or when), to tell retries from reuse."""
    # Values are str/int/bool/None or lists of ints, whose repr is stable across Python
    # versions and much cheaper than JSON, which matters for a million-row import.
    canonical = repr(sorted(request.items()))
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def _meta_json(meta: Mapping[str, Any] | None) -> str | None:
    return None if meta is None else _canonical_json(dict(meta))


def _positive(points: int, what: str = "points") -> None:
    # bool is an int: True points would be a bug, not a request.
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidRequest(f"{what} must be a positive integer, not {points!r}")


def _system_account(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no system account {name!r}")
    return int(row[0])


def _member_account(conn: sqlite3.Connection, member_id: int) -> tuple[int, int]:
    """The member's (account id, balance), opening the account on first use; raises NotFound."""
    row = conn.execute(
        "SELECT a.id, a.balance FROM members AS m LEFT JOIN accounts AS a ON a.member_id = m.id"
        " WHERE m.id = ?",
        (member_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no member {member_id}")
    if row[0] is not None:
        return int(row[0]), int(row[1])
    cur = conn.execute("INSERT INTO accounts (kind, member_id) VALUES ('member', ?)", (member_id,))
    assert cur.lastrowid is not None
    return cur.lastrowid, 0


def open_account(conn: sqlite3.Connection, member_id: int) -> int:
    """Return the member's account id, opening the account on first use; raises NotFound."""
    return _member_account(conn, member_id)[0]


def _replay(conn: sqlite3.Connection, key: str, fingerprint: str) -> OperationResult | None:
    """The stored result when `key` was already applied; raises Conflict for another request."""
    row = conn.execute(
        "SELECT id, fingerprint FROM operations WHERE idempotency_key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row[1] != fingerprint:
        raise Conflict(f"idempotency key {key!r} was already used for a different request")
    return load_result(conn, int(row[0]), replayed=True)


def _insert_operation(
    conn: sqlite3.Connection,
    *,
    kind: str,
    key: str,
    fingerprint: str,
    member_id: int,
    points: int,
    actor: str,
    now: int,
    reason: str | None = None,
    reference: str | None = None,
    counterparty_id: int | None = None,
    reverses: int | None = None,
    meta: str | None = None,
) -> int:
    cur = conn.execute(
        "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id, counterparty_id,"
        " points, actor, reason, reference, reverses_operation_id, created_at, meta)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            kind,
            key,
            fingerprint,
            member_id,
            counterparty_id,
            points,
            actor,
            reason,
            reference,
            reverses,
            now,
            meta,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _post_with_system(
    conn: sqlite3.Connection,
    operation_id: int,
    system_account: str,
    system_amount: int,
    member_account: int,
    member_amount: int,
) -> None:
    """Insert a system leg (by account name) and a member leg in one statement."""
    # An unknown name gives a NULL account_id, which NOT NULL refuses loudly.
    conn.execute(
        "INSERT INTO postings (operation_id, account_id, amount)"
        " VALUES (?, (SELECT id FROM accounts WHERE name = ?), ?), (?, ?, ?)",
        (operation_id, system_account, system_amount, operation_id, member_account, member_amount),
    )


def _post(conn: sqlite3.Connection, operation_id: int, legs: Iterable[tuple[int, int]]) -> None:
    """Insert an operation's (account, amount) legs; the trigger moves the cached balances."""
    conn.executemany(
        "INSERT INTO postings (operation_id, account_id, amount) VALUES (?, ?, ?)",
        [(operation_id, account, amount) for account, amount in legs],
    )


def _create_lot(
    conn: sqlite3.Connection,
    *,
    member_id: int,
    operation_id: int,
    points: int,
    expires_at: int | None,
    origin_lot_id: int | None = None,
) -> int:
    cur = conn.execute(
        "INSERT INTO lots (member_id, operation_id, points, remainder, expires_at, origin_lot_id)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (member_id, operation_id, points, points, expires_at, origin_lot_id),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


@dataclass(frozen=True, slots=True)
class _Take:
    lot_id: int
    points: int
    expires_at: int | None


def _choose_lots(conn: sqlite3.Connection, member_id: int, points: int, now: int) -> list[_Take]:
    """Pick unexpired lots soonest-expiring first (never last, then oldest); raises
    InsufficientPoints."""
    cur = conn.execute(
        "SELECT id, remainder, expires_at FROM lots"
        " WHERE member_id = ? AND remainder > 0"
        " AND coalesce(expires_at, 9223372036854775807) > ?"
        " ORDER BY coalesce(expires_at, 9223372036854775807), id",
        (member_id, now),
    )
    taken: list[_Take] = []
    need = points
    available = 0
    for lot_id, remainder, expires_at in cur:
        available += remainder
        take = min(need, remainder)
        taken.append(_Take(lot_id, take, expires_at))
        need -= take
        if need == 0:
            break
    cur.close()
    if need > 0:
        raise InsufficientPoints(available, points)
    return taken


def _allocate(conn: sqlite3.Connection, operation_id: int, taken: Sequence[_Take]) -> None:
    """Record what an operation consumed; the trigger lowers the lots' remainders."""
    conn.executemany(
        "INSERT INTO allocations (operation_id, lot_id, points) VALUES (?, ?, ?)",
        [(operation_id, t.lot_id, t.points) for t in taken],
    )


def _consumed(taken: Sequence[_Take]) -> tuple[Consumed, ...]:
    return tuple(Consumed(t.lot_id, t.points) for t in taken)


def _balance_as_of(conn: sqlite3.Connection, member_id: int, operation_id: int) -> int:
    """The member's balance right after an operation (the single writer orders ids)."""
    row = conn.execute(
        "SELECT coalesce(sum(p.amount), 0) FROM accounts AS a"
        " JOIN postings AS p ON p.account_id = a.id"
        " WHERE a.member_id = ? AND p.operation_id <= ?",
        (member_id, operation_id),
    ).fetchone()
    return int(row[0])


def load_result(
    conn: sqlite3.Connection, operation_id: int, *, replayed: bool = False
) -> OperationResult:
    """Rebuild an operation's result from the database; raises NotFound."""
    op = conn.execute(
        "SELECT kind, member_id, counterparty_id, points FROM operations WHERE id = ?",
        (operation_id,),
    ).fetchone()
    if op is None:
        raise NotFound(f"no operation {operation_id}")
    kind, member_id, counterparty_id, points = op
    lots_created = tuple(
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM lots WHERE operation_id = ? ORDER BY id", (operation_id,)
        )
    )
    consumed = tuple(
        Consumed(int(r[0]), int(r[1]))
        for r in conn.execute(
            "SELECT lot_id, points FROM allocations WHERE operation_id = ? ORDER BY id",
            (operation_id,),
        )
    )
    return OperationResult(
        operation_id=operation_id,
        kind=kind,
        member_id=member_id,
        points=points,
        balance_after=_balance_as_of(conn, member_id, operation_id),
        lots_created=lots_created,
        consumed=consumed,
        recipient_id=counterparty_id,
        recipient_balance_after=(
            None if counterparty_id is None else _balance_as_of(conn, counterparty_id, operation_id)
        ),
        replayed=replayed,
    )


# --- operations ----------------------------------------------------------------------------


def _prepare_earn(req: EarnRequest) -> tuple[str, int | None, int, str | None]:
    """Validate a credit and compute (fingerprint, expires_ts, now_ts, meta_json), the same
    for `earn` and `earn_many`; raises InvalidRequest."""
    _positive(req.points)
    if req.kind not in EARN_KINDS:
        raise InvalidRequest(f"unknown earn kind {req.kind!r}")
    now_ts = ts(req.now)
    expires_ts = ts_or_none(req.expires_at)
    if expires_ts is not None and expires_ts <= now_ts:
        raise InvalidRequest("points would expire the moment they are earned")
    meta_json = _meta_json(req.meta)
    fingerprint = _fingerprint(
        {
            "op": "earn",
            "member": req.member_id,
            "points": req.points,
            "kind": req.kind,
            "expires_at": expires_ts,
            "reason": req.reason,
            "reference": req.reference,
            "meta": meta_json,
        }
    )
    return fingerprint, expires_ts, now_ts, meta_json


def earn(
    conn: sqlite3.Connection,
    member_id: int,
    points: int,
    *,
    kind: str,
    key: str,
    actor: str,
    expires_at: datetime | None,
    reason: str | None = None,
    reference: str | None = None,
    meta: Mapping[str, Any] | None = None,
    now: datetime,
) -> OperationResult:
    """Credit a member from the `kind` source as one new lot; raises NotFound, Conflict,
    InvalidRequest."""
    fingerprint, expires_ts, now_ts, meta_json = _prepare_earn(
        EarnRequest(member_id, points, kind, key, actor, expires_at, now, reason, reference, meta)
    )
    with atomic(conn):
        if (stored := _replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance_before = _member_account(conn, member_id)
        op_id = _insert_operation(
            conn,
            kind=kind,
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            reason=reason,
            reference=reference,
            meta=meta_json,
        )
        _post_with_system(conn, op_id, kind, -points, account, points)
        lot_id = _create_lot(
            conn, member_id=member_id, operation_id=op_id, points=points, expires_at=expires_ts
        )
        return OperationResult(
            operation_id=op_id,
            kind=kind,
            member_id=member_id,
            points=points,
            balance_after=balance_before + points,
            lots_created=(lot_id,),
        )


def spend(
    conn: sqlite3.Connection,
    member_id: int,
    points: int,
    *,
    key: str,
    actor: str,
    sink: str = "redeemed",
    reason: str | None,
    reference: str | None,
    now: datetime,
) -> OperationResult:
    """Move unexpired points to a sink, soonest-expiring lots first; raises InsufficientPoints,
    NotFound, Conflict, InvalidRequest."""
    _positive(points)
    if sink not in SPEND_SINKS:
        raise InvalidRequest(f"points cannot be spent into {sink!r}")
    now_ts = ts(now)
    fingerprint = _fingerprint(
        {
            "op": "spend",
            "member": member_id,
            "points": points,
            "sink": sink,
            "reason": reason,
            "reference": reference,
        }
    )
    with atomic(conn):
        if (stored := _replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance_before = _member_account(conn, member_id)
        taken = _choose_lots(conn, member_id, points, now_ts)
        op_id = _insert_operation(
            conn,
            kind=SPEND_SINKS[sink],
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            reason=reason,
            reference=reference,
        )
        _post_with_system(conn, op_id, sink, points, account, -points)
        _allocate(conn, op_id, taken)
        return OperationResult(
            operation_id=op_id,
            kind=SPEND_SINKS[sink],
            member_id=member_id,
            points=points,
            balance_after=balance_before - points,
            consumed=_consumed(taken),
        )


def refund(
    conn: sqlite3.Connection,
    spend_operation_id: int,
    *,
    key: str,
    actor: str,
    reason: str | None,
    merchant_fault: bool,
    min_validity_days: int = 30,
    now: datetime,
) -> OperationResult:
    """Give a spend's points back, once, into new lots traceable to the ones it consumed;
    raises NotFound, AlreadyReversed, Conflict, InvalidRequest."""
    if min_validity_days < 0:
        raise InvalidRequest("min_validity_days cannot be negative")
    now_ts = ts(now)
    fingerprint = _fingerprint(
        {
            "op": "refund",
            "spend": spend_operation_id,
            "merchant_fault": merchant_fault,
            "min_validity_days": min_validity_days,
            "reason": reason,
        }
    )
    with atomic(conn):
        if (stored := _replay(conn, key, fingerprint)) is not None:
            return stored
        spent = conn.execute(
            "SELECT kind, member_id, points FROM operations WHERE id = ?", (spend_operation_id,)
        ).fetchone()
        if spent is None or spent[0] not in SPEND_KINDS:
            raise NotFound(f"no spend operation {spend_operation_id}")
        _kind, member_id, points = spent
        if (
            conn.execute(
                "SELECT 1 FROM operations WHERE reverses_operation_id = ?", (spend_operation_id,)
            ).fetchone()
            is not None
        ):
            raise AlreadyReversed(f"operation {spend_operation_id} was already refunded")
        sink = conn.execute(
            "SELECT account_id FROM postings WHERE operation_id = ? AND amount > 0",
            (spend_operation_id,),
        ).fetchone()[0]
        allocations = conn.execute(
            "SELECT al.lot_id, al.points, l.expires_at FROM allocations AS al"
            " JOIN lots AS l ON l.id = al.lot_id WHERE al.operation_id = ? ORDER BY al.id",
            (spend_operation_id,),
        ).fetchall()
        account, balance_before = _member_account(conn, member_id)
        op_id = _insert_operation(
            conn,
            kind="refund",
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            reason=reason,
            reverses=spend_operation_id,
        )
        _post(conn, op_id, [(sink, -points), (account, points)])
        # The member is never harmed by the merchant's fault; a member's own return keeps
        # the original expiry, even one already past (the next sweep books it).
        floor = now_ts + min_validity_days * DAY_SECONDS if merchant_fault else None
        lots_created = []
        for origin_lot_id, lot_points, expires_at in allocations:
            if floor is not None and expires_at is not None:
                expires_at = max(expires_at, floor)
            lots_created.append(
                _create_lot(
                    conn,
                    member_id=member_id,
                    operation_id=op_id,
                    points=lot_points,
                    expires_at=expires_at,
                    origin_lot_id=origin_lot_id,
                )
            )
        return OperationResult(
            operation_id=op_id,
            kind="refund",
            member_id=member_id,
            points=points,
            balance_after=balance_before + points,
            lots_created=tuple(lots_created),
        )


def transfer(
    conn: sqlite3.Connection,
    from_member: int,
    to_member: int,
    points: int,
    *,
    key: str,
    actor: str,
    reason: str | None,
    now: datetime,
) -> OperationResult:
    """Move points to another member; their new lots keep each source lot's expiry;
    raises InsufficientPoints, NotFound, Conflict, InvalidRequest."""
    _positive(points)
    if from_member == to_member:
        raise InvalidRequest("a member cannot transfer points to themselves")
    now_ts = ts(now)
    fingerprint = _fingerprint(
        {"op": "transfer", "from": from_member, "to": to_member, "points": points, "reason": reason}
    )
    with atomic(conn):
        if (stored := _replay(conn, key, fingerprint)) is not None:
            return stored
        sender, sender_before = _member_account(conn, from_member)
        recipient, recipient_before = _member_account(conn, to_member)
        taken = _choose_lots(conn, from_member, points, now_ts)
        op_id = _insert_operation(
            conn,
            kind="transfer",
            key=key,
            fingerprint=fingerprint,
            member_id=from_member,
            counterparty_id=to_member,
            points=points,
            actor=actor,
            now=now_ts,
            reason=reason,
        )
        _post(conn, op_id, [(sender, -points), (recipient, points)])
        _allocate(conn, op_id, taken)
        # Inheriting the expiry means passing points back and forth never extends them.
        lots_created = tuple(
            _create_lot(
                conn,
                member_id=to_member,
                operation_id=op_id,
                points=t.points,
                expires_at=t.expires_at,
                origin_lot_id=t.lot_id,
            )
            for t in taken
        )
        return OperationResult(
            operation_id=op_id,
            kind="transfer",
            member_id=from_member,
            points=points,
            balance_after=sender_before - points,
            lots_created=lots_created,
            consumed=_consumed(taken),
            recipient_id=to_member,
            recipient_balance_after=recipient_before + points,
        )


def adjust(
    conn: sqlite3.Connection,
    member_id: int,
    delta: int,
    *,
    key: str,
    actor: str,
    reason: str,
    expires_at: datetime | None = None,
    now: datetime,
) -> OperationResult:
    """An admin correction: a positive delta is a new lot, a negative one is consumed like a
    spend; raises InsufficientPoints, NotFound, Conflict, InvalidRequest."""
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise InvalidRequest(f"an adjustment needs a non-zero integer delta, not {delta!r}")
    if not reason or not reason.strip():
        raise InvalidRequest("an adjustment needs a reason")
    now_ts = ts(now)
    expires_ts = ts_or_none(expires_at)
    if delta > 0 and expires_ts is not None and expires_ts <= now_ts:
        raise InvalidRequest("points would expire the moment they are credited")
    fingerprint = _fingerprint(
        {
            "op": "adjust",
            "member": member_id,
            "delta": delta,
            "reason": reason,
            "expires_at": expires_ts if delta > 0 else None,
        }
    )
    with atomic(conn):
        if (stored := _replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance_before = _member_account(conn, member_id)
        points = abs(delta)
        taken = [] if delta > 0 else _choose_lots(conn, member_id, points, now_ts)
        op_id = _insert_operation(
            conn,
            kind="adjust",
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            reason=reason,
            meta=_meta_json({"delta": delta}),
        )
        _post_with_system(conn, op_id, ADJUSTMENT_SOURCE, -delta, account, delta)
        lots_created: tuple[int, ...] = ()
        if delta > 0:
            lots_created = (
                _create_lot(
                    conn,
                    member_id=member_id,
                    operation_id=op_id,
                    points=points,
                    expires_at=expires_ts,
                ),
            )
        else:
            _allocate(conn, op_id, taken)
        return OperationResult(
            operation_id=op_id,
            kind="adjust",
            member_id=member_id,
            points=points,
            balance_after=balance_before + delta,
            lots_created=lots_created,
            consumed=_consumed(taken),
        )


def extend_validity(
    conn: sqlite3.Connection,
    member_id: int,
    *,
    until: datetime,
    key: str,
    actor: str,
    reason: str | None,
    now: datetime,
    lot_ids: Iterable[int] | None = None,
) -> OperationResult:
    """Compensation: move the remainders of unexpired lots expiring before `until` into new
    lots expiring at `until` (never shortens anything); raises NotFound, Conflict,
    InvalidRequest."""
    now_ts = ts(now)
    until_ts = ts(until)
    if until_ts <= now_ts:
        raise InvalidRequest("validity can only be extended into the future")
    chosen = None if lot_ids is None else sorted(set(lot_ids))
    fingerprint = _fingerprint(
        {
            "op": "extend_validity",
            "member": member_id,
            "until": until_ts,
            "lots": chosen,
            "reason": reason,
        }
    )
    with atomic(conn):
        if (stored := _replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance = _member_account(conn, member_id)
        rows = conn.execute(
            "SELECT id, remainder, expires_at FROM lots WHERE member_id = ? AND remainder > 0"
            " AND expires_at > ? AND expires_at < ? ORDER BY expires_at, id",
            (member_id, now_ts, until_ts),
        ).fetchall()
        if chosen is not None:
            owned = {
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM lots WHERE member_id = ?"
                    " AND id IN (SELECT value FROM json_each(?))",
                    (member_id, json.dumps(chosen)),
                )
            }
            if missing := set(chosen) - owned:
                raise NotFound(f"member {member_id} has no lots {sorted(missing)}")
            rows = [r for r in rows if r[0] in owned]
        taken = [_Take(int(r[0]), int(r[1]), r[2]) for r in rows]
        points = sum(t.points for t in taken)
        op_id = _insert_operation(
            conn,
            kind="extend_validity",
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            reason=reason,
        )
        lots_created: tuple[int, ...] = ()
        if taken:
            # Both legs on the member's account: the balance stays, the points change lots.
            _post(conn, op_id, [(account, -points), (account, points)])
            _allocate(conn, op_id, taken)
            lots_created = tuple(
                _create_lot(
                    conn,
                    member_id=member_id,
                    operation_id=op_id,
                    points=t.points,
                    expires_at=until_ts,
                    origin_lot_id=t.lot_id,
                )
                for t in taken
            )
        return OperationResult(
            operation_id=op_id,
            kind="extend_validity",
            member_id=member_id,
            points=points,
            balance_after=balance,
            lots_created=lots_created,
            consumed=_consumed(taken),
        )


def expire_batch(
    conn: sqlite3.Connection,
    now: datetime,
    *,
    limit: int = 1000,
    after: tuple[int, int] = (-(2**63), 0),
    actor: str = "system:expiry",
) -> tuple[ExpiryReport, tuple[int, int] | None]:
    """Book up to `limit` due lots (expires_at <= now) to the expired sink, one operation per
    lot keyed `expire:<lot>`; return what was booked and the cursor to continue after (None
    when done)."""
    _positive(limit, "limit")
    now_ts = ts(now)
    with atomic(conn):
        due = conn.execute(
            "SELECT id, member_id, remainder, expires_at FROM lots"
            " WHERE remainder > 0 AND expires_at IS NOT NULL AND expires_at <= ?"
            " AND (expires_at, id) > (?, ?) ORDER BY expires_at, id LIMIT ?",
            (now_ts, after[0], after[1], limit),
        ).fetchall()
        if not due:
            return ExpiryReport(0, 0), None
        cursor = (int(due[-1][3]), int(due[-1][0]))
        keys = {f"expire:{lot_id}": lot_id for lot_id, *_ in due}
        booked = {
            str(r[0])
            for r in conn.execute(
                "SELECT idempotency_key FROM operations"
                " WHERE idempotency_key IN (SELECT value FROM json_each(?))",
                (json.dumps(list(keys)),),
            )
        }
        if booked:
            # Cannot happen while lots only shrink; skip rather than book a lot twice.
            log.warning("expiry already booked for lots still holding points: %s", sorted(booked))
        members = sorted({int(r[1]) for r in due})
        accounts = {
            int(r[0]): int(r[1])
            for r in conn.execute(
                "SELECT member_id, id FROM accounts"
                " WHERE member_id IN (SELECT value FROM json_each(?))",
                (json.dumps(members),),
            )
        }
        expired_sink = _system_account(conn, EXPIRED_SINK)
        # Set-based for the 5M-lot sweep: explicit ids (we are the only writer inside this
        # transaction) let every table be filled with one executemany.
        next_id = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM operations").fetchone()[0])
        operations: list[tuple[object, ...]] = []
        postings: list[tuple[int, int, int]] = []
        allocations: list[tuple[int, int, int]] = []
        points = 0
        for lot_id, member_id, remainder, _expires_at in due:
            key = f"expire:{lot_id}"
            if key in booked:
                continue
            op_id = next_id
            next_id += 1
            operations.append(
                (
                    op_id,
                    key,
                    _fingerprint({"op": "expire", "lot": lot_id}),
                    member_id,
                    remainder,
                    actor,
                    str(lot_id),
                    now_ts,
                )
            )
            postings.append((op_id, accounts[member_id], -remainder))
            postings.append((op_id, expired_sink, remainder))
            allocations.append((op_id, lot_id, remainder))
            points += remainder
        conn.executemany(
            "INSERT INTO operations (id, kind, idempotency_key, fingerprint, member_id, points,"
            " actor, reason, reference, created_at)"
            " VALUES (?, 'expire', ?, ?, ?, ?, ?, 'expired', ?, ?)",
            operations,
        )
        conn.executemany(
            "INSERT INTO postings (operation_id, account_id, amount) VALUES (?, ?, ?)", postings
        )
        conn.executemany(
            "INSERT INTO allocations (operation_id, lot_id, points) VALUES (?, ?, ?)",
            allocations,
        )
        return ExpiryReport(len(operations), points), (cursor if len(due) == limit else None)


def expire_due(
    conn: sqlite3.Connection, now: datetime, *, batch: int = 1000, actor: str = "system:expiry"
) -> ExpiryReport:
    """Book every remainder of lots with expires_at <= now as expired, `batch` lots per
    transaction; running it twice books nothing."""
    lots = points = 0
    cursor: tuple[int, int] | None = (-(2**63), 0)
    while cursor is not None:
        report, cursor = expire_batch(conn, now, limit=batch, after=cursor, actor=actor)
        lots += report.lots
        points += report.points
    return ExpiryReport(lots, points)


def earn_many(
    conn: sqlite3.Connection, requests: Sequence[EarnRequest]
) -> list[OperationResult | StoreError]:
    """Apply many credits in one transaction, each with its own key (replays are returned, not
    re-applied); return a result or the error per request, in order."""
    outcomes: list[OperationResult | StoreError | None] = [None] * len(requests)
    prepared: dict[int, tuple[str, int | None, int, str | None]] = {}
    for index, req in enumerate(requests):
        try:
            prepared[index] = _prepare_earn(req)
        except StoreError as exc:
            outcomes[index] = exc

    with atomic(conn):
        keys = sorted({requests[i].key for i in prepared})
        stored = {
            str(r[0]): (int(r[1]), str(r[2]))
            for r in conn.execute(
                "SELECT idempotency_key, id, fingerprint FROM operations"
                " WHERE idempotency_key IN (SELECT value FROM json_each(?))",
                (json.dumps(keys),),
            )
        }
        member_ids = sorted({requests[i].member_id for i in prepared})
        accounts: dict[int, int | None] = {}
        balances: dict[int, int] = {}
        for member_id, account_id, balance in conn.execute(
            "SELECT m.id, a.id, a.balance FROM members AS m"
            " LEFT JOIN accounts AS a ON a.member_id = m.id"
            " WHERE m.id IN (SELECT value FROM json_each(?))",
            (json.dumps(member_ids),),
        ):
            accounts[member_id] = account_id
            balances[member_id] = balance or 0
        sources = {kind: _system_account(conn, kind) for kind in EARN_KINDS}
        next_op = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM operations").fetchone()[0])
        next_lot = int(conn.execute("SELECT coalesce(max(id), 0) + 1 FROM lots").fetchone()[0])
        operations: list[tuple[object, ...]] = []
        postings: list[tuple[int, int, int]] = []
        lots: list[tuple[object, ...]] = []
        fresh: dict[str, tuple[str, OperationResult]] = {}
        for index, (fingerprint, expires_ts, now_ts, meta_json) in prepared.items():
            req = requests[index]
            if req.key in stored:
                op_id, stored_fingerprint = stored[req.key]
                outcomes[index] = (
                    load_result(conn, op_id, replayed=True)
                    if stored_fingerprint == fingerprint
                    else Conflict(f"idempotency key {req.key!r} was used for a different request")
                )
                continue
            if req.key in fresh:
                first_fingerprint, first = fresh[req.key]
                outcomes[index] = (
                    dataclasses.replace(first, replayed=True)
                    if first_fingerprint == fingerprint
                    else Conflict(f"idempotency key {req.key!r} was used for a different request")
                )
                continue
            if req.member_id not in accounts:
                outcomes[index] = NotFound(f"no member {req.member_id}")
                continue
            account = accounts[req.member_id]
            if account is None:
                account = accounts[req.member_id] = open_account(conn, req.member_id)
            op_id, lot_id = next_op, next_lot
            next_op += 1
            next_lot += 1
            operations.append(
                (
                    op_id,
                    req.kind,
                    req.key,
                    fingerprint,
                    req.member_id,
                    req.points,
                    req.actor,
                    req.reason,
                    req.reference,
                    now_ts,
                    meta_json,
                )
            )
            postings.append((op_id, sources[req.kind], -req.points))
            postings.append((op_id, account, req.points))
            lots.append((lot_id, req.member_id, op_id, req.points, req.points, expires_ts))
            balances[req.member_id] += req.points
            result = OperationResult(
                operation_id=op_id,
                kind=req.kind,
                member_id=req.member_id,
                points=req.points,
                balance_after=balances[req.member_id],
                lots_created=(lot_id,),
            )
            fresh[req.key] = (fingerprint, result)
            outcomes[index] = result
        conn.executemany(
            "INSERT INTO operations (id, kind, idempotency_key, fingerprint, member_id, points,"
            " actor, reason, reference, created_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            operations,
        )
        conn.executemany(
            "INSERT INTO postings (operation_id, account_id, amount) VALUES (?, ?, ?)", postings
        )
        conn.executemany(
            "INSERT INTO lots (id, member_id, operation_id, points, remainder, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            lots,
        )
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


# --- queries -------------------------------------------------------------------------------


def _require_member(conn: sqlite3.Connection, member_id: int) -> None:
    if conn.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
        raise NotFound(f"no member {member_id}")


def existing_keys(conn: sqlite3.Connection, keys: Sequence[str]) -> set[str]:
    """Which of these idempotency keys the ledger has already applied."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        found.update(
            row[0]
            for row in conn.execute(
                "SELECT idempotency_key FROM operations"
                " WHERE idempotency_key IN (SELECT value FROM json_each(?))",
                (json.dumps(list(keys[start : start + 500])),),
            )
        )
    return found


def available(conn: sqlite3.Connection, member_id: int, now: datetime) -> int:
    """Spendable points: the unexpired remainders (0 for a member with none)."""
    # The member account's balance is the sum of all its lots' remainders (audit:
    # balance_equals_lots), so subtracting the few lots past expiry the sweep has not booked
    # yet reads a handful of rows, however many lots a regular customer has collected.
    row = conn.execute(
        "SELECT a.balance - coalesce((SELECT sum(remainder) FROM lots"
        " WHERE member_id = a.member_id AND remainder > 0"
        " AND coalesce(expires_at, 9223372036854775807) <= ?), 0)"
        " FROM accounts AS a WHERE a.member_id = ? AND a.kind = 'member'",
        (ts(now), member_id),
    ).fetchone()
    return 0 if row is None else int(row[0])


def balance(conn: sqlite3.Connection, member_id: int, now: datetime) -> Balance:
    """Spendable points (unexpired remainders), their expiry schedule and lifetime earnings;
    raises NotFound."""
    _require_member(conn, member_id)
    expiring = tuple(
        (dt_or_none(expires_at), int(points))
        for expires_at, points in conn.execute(
            "SELECT expires_at, sum(remainder) FROM lots"
            " WHERE member_id = ? AND remainder > 0"
            " AND coalesce(expires_at, 9223372036854775807) > ?"
            " GROUP BY expires_at ORDER BY coalesce(expires_at, 9223372036854775807)",
            (member_id, ts(now)),
        )
    )
    earned_kinds = sorted(EARN_KINDS)
    lifetime = conn.execute(
        "SELECT coalesce(sum(l.points), 0) FROM lots AS l"
        " JOIN operations AS o ON o.id = l.operation_id"
        " WHERE l.member_id = ? AND o.kind IN (SELECT value FROM json_each(?))",
        (member_id, json.dumps(earned_kinds)),
    ).fetchone()[0]
    return Balance(
        member_id=member_id,
        available=sum(points for _, points in expiring),
        expiring=expiring,
        lifetime_earned=int(lifetime),
    )


def plan_spend(
    conn: sqlite3.Connection, member_id: int, points: int, now: datetime
) -> tuple[tuple[datetime | None, int], ...]:
    """The (expires_at, points) a spend of `points` would consume now, soonest first, without
    writing; raises InsufficientPoints, NotFound, InvalidRequest."""
    _positive(points)
    _require_member(conn, member_id)
    # The very selection `spend` makes, so a preview can never disagree with the spend.
    planned: dict[int | None, int] = {}
    for take in _choose_lots(conn, member_id, points, ts(now)):
        planned[take.expires_at] = planned.get(take.expires_at, 0) + take.points
    return tuple((dt_or_none(expires_at), taken) for expires_at, taken in planned.items())


def lots(conn: sqlite3.Connection, member_id: int) -> list[Lot]:
    """Every lot of a member, oldest first, used up or not."""
    return [
        Lot(
            id=r[0],
            member_id=r[1],
            operation_id=r[2],
            points=r[3],
            remainder=r[4],
            expires_at=dt_or_none(r[5]),
            origin_lot_id=r[6],
            created_at=dt(r[7]),
        )
        for r in conn.execute(
            "SELECT l.id, l.member_id, l.operation_id, l.points, l.remainder, l.expires_at,"
            " l.origin_lot_id, o.created_at FROM lots AS l"
            " JOIN operations AS o ON o.id = l.operation_id"
            " WHERE l.member_id = ? ORDER BY l.id",
            (member_id,),
        )
    ]


def history(
    conn: sqlite3.Connection, member_id: int, *, offset: int = 0, limit: int = 20
) -> Statement:
    """A page of the member's statement, newest first, and the total number of lines; raises
    InvalidRequest (a bad page)."""
    if offset < 0 or limit <= 0:
        raise InvalidRequest("offset must be >= 0 and limit > 0")
    account = conn.execute("SELECT id FROM accounts WHERE member_id = ?", (member_id,)).fetchone()
    if account is None:
        _require_member(conn, member_id)
        return Statement((), 0)
    total = conn.execute(
        "SELECT count(DISTINCT operation_id) FROM postings WHERE account_id = ?", (account[0],)
    ).fetchone()[0]
    lines = tuple(
        StatementLine(
            operation_id=r[0],
            created_at=dt(r[1]),
            kind=r[2],
            points=r[3],
            reason=r[4],
            reference=r[5],
        )
        for r in conn.execute(
            "SELECT o.id, o.created_at, o.kind, p.points, o.reason, o.reference"
            " FROM (SELECT operation_id, sum(amount) AS points FROM postings"
            "       WHERE account_id = ? GROUP BY operation_id"
            "       ORDER BY operation_id DESC LIMIT ? OFFSET ?) AS p"
            " JOIN operations AS o ON o.id = p.operation_id ORDER BY o.id DESC",
            (account[0], limit, offset),
        )
    )
    return Statement(lines, int(total))


def _account_label(name: str | None, member_id: int | None) -> str:
    return name if name is not None else f"member:{member_id}"


def operation(conn: sqlite3.Connection, operation_id: int) -> OperationRecord:
    """One operation with its postings and lots; raises NotFound."""
    op = conn.execute(
        "SELECT id, kind, idempotency_key, member_id, counterparty_id, points, actor, reason,"
        " reference, reverses_operation_id, created_at, meta FROM operations WHERE id = ?",
        (operation_id,),
    ).fetchone()
    if op is None:
        raise NotFound(f"no operation {operation_id}")
    postings = tuple(
        Posting(_account_label(r[0], r[1]), r[2])
        for r in conn.execute(
            "SELECT a.name, a.member_id, p.amount FROM postings AS p"
            " JOIN accounts AS a ON a.id = p.account_id WHERE p.operation_id = ? ORDER BY p.id",
            (operation_id,),
        )
    )
    result = load_result(conn, operation_id)
    return OperationRecord(
        id=op[0],
        kind=op[1],
        key=op[2],
        member_id=op[3],
        counterparty_id=op[4],
        points=op[5],
        actor=op[6],
        reason=op[7],
        reference=op[8],
        reverses_operation_id=op[9],
        created_at=dt(op[10]),
        meta=None if op[11] is None else json.loads(op[11]),
        postings=postings,
        lots_created=result.lots_created,
        consumed=result.consumed,
    )


def iter_ledger(conn: sqlite3.Connection, member_id: int | None = None) -> Iterator[LedgerLine]:
    """Yield every posting (of one member's account, or all) with its operation, in order."""
    sql = (
        "SELECT p.id, p.operation_id, o.created_at, o.kind, o.idempotency_key, o.actor, o.reason,"
        " o.reference, o.reverses_operation_id, a.name, a.member_id, p.amount, o.meta"
        " FROM postings AS p JOIN operations AS o ON o.id = p.operation_id"
        " JOIN accounts AS a ON a.id = p.account_id"
    )
    params: tuple[int, ...] = ()
    if member_id is not None:
        sql += " WHERE a.member_id = ? ORDER BY p.operation_id, p.id"
        params = (member_id,)
    else:
        sql += " ORDER BY p.id"
    for r in conn.execute(sql, params):
        yield LedgerLine(
            posting_id=r[0],
            operation_id=r[1],
            created_at=dt(r[2]),
            kind=r[3],
            key=r[4],
            actor=r[5],
            reason=r[6],
            reference=r[7],
            reverses_operation_id=r[8],
            account=_account_label(r[9], r[10]),
            member_id=r[10],
            amount=r[11],
            meta=r[12],
        )


# --- the async facade ----------------------------------------------------------------------


class Ledger:
    """The ledger over a `Store`: every operation is one write transaction (one thread hop)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._store.write(sole_operation(fn))

    async def open_account(self, member_id: int) -> int:
        """Open the member's account (e.g. at registration); raises NotFound."""
        return await self._write(lambda c: open_account(c, member_id))

    async def earn(
        self,
        member_id: int,
        points: int,
        *,
        kind: str,
        key: str,
        actor: str,
        expires_at: datetime | None,
        reason: str | None = None,
        reference: str | None = None,
        meta: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> OperationResult:
        """Credit a member as one new lot; raises NotFound, Conflict, InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: earn(
                c,
                member_id,
                points,
                kind=kind,
                key=key,
                actor=actor,
                expires_at=expires_at,
                reason=reason,
                reference=reference,
                meta=meta,
                now=when,
            )
        )

    async def spend(
        self,
        member_id: int,
        points: int,
        *,
        key: str,
        actor: str,
        sink: str = "redeemed",
        reason: str | None,
        reference: str | None,
        now: datetime | None = None,
    ) -> OperationResult:
        """Spend unexpired points; raises InsufficientPoints, NotFound, Conflict, InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: spend(
                c,
                member_id,
                points,
                key=key,
                actor=actor,
                sink=sink,
                reason=reason,
                reference=reference,
                now=when,
            )
        )

    async def refund(
        self,
        spend_operation_id: int,
        *,
        key: str,
        actor: str,
        reason: str | None,
        merchant_fault: bool,
        min_validity_days: int = 30,
        now: datetime | None = None,
    ) -> OperationResult:
        """Refund a spend once; raises NotFound, AlreadyReversed, Conflict."""
        when = self._store.now(now)
        return await self._write(
            lambda c: refund(
                c,
                spend_operation_id,
                key=key,
                actor=actor,
                reason=reason,
                merchant_fault=merchant_fault,
                min_validity_days=min_validity_days,
                now=when,
            )
        )

    async def transfer(
        self,
        from_member: int,
        to_member: int,
        points: int,
        *,
        key: str,
        actor: str,
        reason: str | None,
        now: datetime | None = None,
    ) -> OperationResult:
        """Transfer points keeping their expiry; raises InsufficientPoints, NotFound, Conflict,
        InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: transfer(
                c, from_member, to_member, points, key=key, actor=actor, reason=reason, now=when
            )
        )

    async def adjust(
        self,
        member_id: int,
        delta: int,
        *,
        key: str,
        actor: str,
        reason: str,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> OperationResult:
        """An admin correction; raises InsufficientPoints, NotFound, Conflict, InvalidRequest."""
        when = self._store.now(now)
        return await self._write(
            lambda c: adjust(
                c,
                member_id,
                delta,
                key=key,
                actor=actor,
                reason=reason,
                expires_at=expires_at,
                now=when,
            )
        )

    async def extend_validity(
        self,
        member_id: int,
        *,
        until: datetime,
        key: str,
        actor: str,
        reason: str | None,
        now: datetime | None = None,
        lot_ids: Iterable[int] | None = None,
    ) -> OperationResult:
        """Extend the validity of a member's lots to `until`; raises NotFound, Conflict,
        InvalidRequest."""
        when = self._store.now(now)
        chosen = None if lot_ids is None else tuple(lot_ids)
        return await self._write(
            lambda c: extend_validity(
                c,
                member_id,
                until=until,
                key=key,
                actor=actor,
                reason=reason,
                now=when,
                lot_ids=chosen,
            )
        )

    async def expire_due(
        self, now: datetime | None = None, *, batch: int = 1000, actor: str = "system:expiry"
    ) -> ExpiryReport:
        """Book every due lot as expired, one transaction per batch so members' taps interleave."""
        when = self._store.now(now)
        lots = points = 0
        cursor: tuple[int, int] | None = (-(2**63), 0)
        while cursor is not None:
            report, cursor = await self._write(
                partial(expire_batch, now=when, limit=batch, after=cursor, actor=actor)
            )
            lots += report.lots
            points += report.points
        return ExpiryReport(lots, points)

    async def earn_many(
        self, requests: Sequence[EarnRequest]
    ) -> list[OperationResult | StoreError]:
        """Apply many credits in one transaction; a result or error per request."""
        return await self._write(lambda c: earn_many(c, requests))

    async def balance(self, member_id: int, now: datetime | None = None) -> Balance:
        """Spendable points and their expiry schedule; raises NotFound."""
        when = self._store.now(now)
        return await self._store.lookup(lambda c: balance(c, member_id, when))

    async def available(self, member_id: int, now: datetime | None = None) -> int:
        """Spendable points now (one indexed query: for views that show only the total)."""
        when = self._store.now(now)
        return await self._store.lookup(lambda c: available(c, member_id, when))

    async def plan_spend(
        self, member_id: int, points: int, now: datetime | None = None
    ) -> tuple[tuple[datetime | None, int], ...]:
        """Which (expires_at, points) a spend would consume now; raises InsufficientPoints,
        NotFound, InvalidRequest."""
        when = self._store.now(now)
        return await self._store.lookup(lambda c: plan_spend(c, member_id, points, when))

    async def lots(self, member_id: int) -> list[Lot]:
        """Every lot of a member, oldest first."""
        return await self._store.lookup(lambda c: lots(c, member_id))

    async def history(self, member_id: int, *, offset: int = 0, limit: int = 20) -> Statement:
        """A page of the member's statement, newest first."""
        return await self._store.lookup(lambda c: history(c, member_id, offset=offset, limit=limit))

    async def operation(self, operation_id: int) -> OperationRecord:
        """One operation in full; raises NotFound."""
        return await self._store.lookup(lambda c: operation(c, operation_id))
