"""Purchase returns and owed points: the ledger operations that take a refunded purchase's
points back (kind 'purchase_return') and settle what a member owes (kind 'owed_settlement').

A return credits each system account a part of the purchase came from and takes what it can
from the member's lots (the purchase's own first); the rest is posted to the 'owed' account (a
receivable, so it goes negative) and added to the member's owed points. A settlement takes
owed points from lots just earned and posts them back to 'owed'. `take_back` is the core that
both a return and the take-back of a tier entry reward a return undid (storage.tiers) book
with. How many points each part gives back is the programme's rule
(bot.programme.purchase_returns); this module books it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from storage.ledger.bookkeeping import (
    Take,
    allocate,
    encode_meta,
    insert_operation,
    member_account,
    post,
    system_account,
)
from storage.sql import atomic, ts

RETURN_KIND: Final = "purchase_return"
SETTLEMENT_KIND: Final = "owed_settlement"
OWED_ACCOUNT: Final = "owed"


@dataclass(frozen=True, slots=True)
class PurchasePart:
    """One operation a purchase's points came by (the purchase, its campaign's extra points, a
    plan's bonus), and the source account it credited them from."""

    operation_id: int
    source: str
    points: int


@dataclass(frozen=True, slots=True)
class ReturnablePurchase:
    """A purchase as a return sees it: its operation, member, receipt, amount, local facts,
    its parts, and what returns refunded of it so far."""

    operation_id: int
    member_id: int
    receipt: str
    amount_fen: int
    # When it was booked (Unix seconds): the plan running then counted it.
    booked_at: int
    meta: Mapping[str, Any]
    parts: tuple[PurchasePart, ...]
    refunded_fen: int


@dataclass(frozen=True, slots=True)
class StoredReturn:
    """A return booked before: its operation and request fingerprint, and what it did."""

    operation_id: int
    fingerprint: str
    purchase_operation_id: int
    member_id: int
    receipt: str
    refunded_fen: int
    points: int
    taken: int
    owed: int


@dataclass(frozen=True, slots=True)
class ReturnBooked:
    """What a return just booked did."""

    operation_id: int
    points: int
    taken: int
    owed: int
    # The member's owed points after it.
    owed_total: int


_PURCHASE_PARTS: Final = (
    "SELECT o.id, 'campaign', o.points FROM operations AS o"
    " WHERE o.idempotency_key = ? AND o.kind = 'campaign'"
    " UNION ALL SELECT o.id, 'plan', o.points FROM plans AS p"
    " JOIN operations AS o ON o.idempotency_key = 'plan:' || p.id || ':' || ?"
    " WHERE p.member_id = ? AND o.kind = 'plan'"
)


def returnable_purchase(conn: sqlite3.Connection, purchase_key: str) -> ReturnablePurchase | None:
    """The purchase booked under `purchase_key` with its parts and refunds so far (None: none)."""
    row = conn.execute(
        "SELECT id, member_id, reference, points, meta, created_at FROM operations"
        " WHERE idempotency_key = ? AND kind = 'purchase'",
        (purchase_key,),
    ).fetchone()
    if row is None:
        return None
    op_id, member_id, reference, points, meta, booked_at = row
    facts = json.loads(meta or "{}")
    amount = str(facts.get("amount", "0"))
    yuan, _, fen = amount.partition(".")
    amount_fen = int(yuan or 0) * 100 + int((fen + "00")[:2])
    # Each part by an exact look-up of its unique key (a plan's: one per plan of the member).
    parts = [PurchasePart(int(op_id), "purchase", int(points))] + [
        PurchasePart(int(r[0]), str(r[1]), int(r[2]))
        for r in conn.execute(_PURCHASE_PARTS, (f"{purchase_key}:campaign", op_id, member_id))
    ]
    refunded = conn.execute(
        "SELECT coalesce(sum(refunded_fen), 0) FROM purchase_returns"
        " WHERE purchase_operation_id = ?",
        (op_id,),
    ).fetchone()[0]
    return ReturnablePurchase(
        int(op_id),
        int(member_id),
        str(reference or ""),
        amount_fen,
        int(booked_at),
        facts,
        tuple(parts),
        int(refunded),
    )


def stored_return(conn: sqlite3.Connection, key: str) -> StoredReturn | None:
    """The return booked under idempotency key `key`, if any."""
    row = conn.execute(
        "SELECT o.id, o.fingerprint, r.purchase_operation_id, r.member_id, r.receipt,"
        " r.refunded_fen, r.points, r.taken, r.owed FROM operations AS o"
        " JOIN purchase_returns AS r ON r.operation_id = o.id WHERE o.idempotency_key = ?",
        (key,),
    ).fetchone()
    if row is None:
        return None
    return StoredReturn(
        int(row[0]), str(row[1]), int(row[2]), int(row[3]), str(row[4]), *map(int, row[5:])
    )


def key_taken(conn: sqlite3.Connection, key: str) -> bool:
    """Whether any operation holds idempotency key `key`."""
    found = conn.execute("SELECT 1 FROM operations WHERE idempotency_key = ?", (key,))
    return found.fetchone() is not None


def owed_of(conn: sqlite3.Connection, member_id: int) -> int:
    """The member's outstanding owed points (0: none)."""
    row = conn.execute("SELECT points FROM owed_points WHERE member_id = ?", (member_id,))
    found = row.fetchone()
    return 0 if found is None else int(found[0])


def owed_among(conn: sqlite3.Connection, member_ids: Collection[int]) -> dict[int, int]:
    """The members of `member_ids` who owe points, with what they owe."""
    return {
        int(m): int(p)
        for m, p in conn.execute(
            "SELECT member_id, points FROM owed_points"
            " WHERE member_id IN (SELECT value FROM json_each(?)) AND points > 0",
            (json.dumps(sorted(member_ids)),),
        )
    }


def _add_owed(conn: sqlite3.Connection, member_id: int, points: int) -> int:
    """Move the member's owed points by `points` (the CHECK refuses below zero); the new total."""
    if points < 0:
        # An upsert checks the row it would insert first: a payment only updates.
        row = conn.execute(
            "UPDATE owed_points SET points = points + ? WHERE member_id = ? RETURNING points",
            (points, member_id),
        ).fetchone()
    else:
        row = conn.execute(
            # Named parameters (the PostgreSQL connection reads ? and :name, not ?N), and the
            # old row named (PostgreSQL finds a bare `points` ambiguous with excluded's).
            "INSERT INTO owed_points (member_id, points) VALUES (:member, :points)"
            " ON CONFLICT (member_id) DO UPDATE SET points = owed_points.points + :points"
            " RETURNING points",
            {"member": member_id, "points": points},
        ).fetchone()
    return int(row[0])


# The member's unexpired lots (of the operations in a JSON list, or not), in spend order.
_OWN_LOTS: Final = (
    "SELECT id, remainder, expires_at FROM lots"
    " WHERE member_id = ? AND remainder > 0 AND coalesce(expires_at, 9223372036854775807) > ?"
    " AND operation_id IN (SELECT value FROM json_each(?))"
    " ORDER BY coalesce(expires_at, 9223372036854775807), id"
)
_OTHER_LOTS: Final = (
    "SELECT id, remainder, expires_at FROM lots"
    " WHERE member_id = ? AND remainder > 0 AND coalesce(expires_at, 9223372036854775807) > ?"
    # NOT (x IN ...): storage/pg.py rewrites `x IN (json_each)`, not `x NOT IN`.
    " AND NOT (operation_id IN (SELECT value FROM json_each(?)))"
    " ORDER BY coalesce(expires_at, 9223372036854775807), id"
)


def _take(
    conn: sqlite3.Connection,
    member_id: int,
    points: int,
    now: int,
    first_from: Sequence[int],
    *,
    only_those: bool = False,
) -> list[Take]:
    """Up to `points` from the member's unexpired lots: those the operations `first_from`
    created first, then (unless `only_those`) the others, each soonest-expiring first."""
    ops = json.dumps(sorted(first_from))
    rows = conn.execute(_OWN_LOTS, (member_id, now, ops)).fetchall()
    if not only_those:
        rows += conn.execute(_OTHER_LOTS, (member_id, now, ops)).fetchall()
    taken: list[Take] = []
    need = points
    for lot_id, remainder, expires_at in rows:
        if need <= 0:
            break
        take = min(need, int(remainder))
        taken.append(Take(int(lot_id), take, expires_at))
        need -= take
    return taken


@dataclass(frozen=True, slots=True)
class TakenBack:
    """What taking points back just booked: the operation, the points, what came from the
    member's lots and what is owed, and the member's owed points after it."""

    operation_id: int
    points: int
    taken: int
    owed: int
    owed_total: int


def take_back(
    conn: sqlite3.Connection,
    member_id: int,
    back: Sequence[tuple[str, int]],
    *,
    first_from: Sequence[int],
    kind: str,
    key: str,
    fingerprint: str,
    actor: str,
    now: datetime,
    meta: Mapping[str, Any],
    reference: str | None = None,
    reverses: int | None = None,
) -> TakenBack:
    """THE core of taking points back (a purchase return, a tier entry reward a return
    undid): `back` (source account, points) credited to each source, taken from the member's
    lots (those the operations `first_from` created first), the shortfall owed; one operation
    of `kind` in one savepoint. Raises sqlite3.IntegrityError when its key was used."""
    now_ts = ts(now)
    points = sum(p for _source, p in back)
    with atomic(conn):
        account, _balance = member_account(conn, member_id)
        taken = _take(conn, member_id, points, now_ts, first_from)
        took = sum(t.points for t in taken)
        owed = points - took
        op_id = insert_operation(
            conn,
            kind=kind,
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            reference=reference,
            reverses=reverses,
            meta=encode_meta({**meta, "taken": took, "owed": owed}),
        )
        legs = [(system_account(conn, source), p) for source, p in back if p]
        if took:
            legs.append((account, -took))
        if owed:
            legs.append((system_account(conn, OWED_ACCOUNT), -owed))
        post(conn, op_id, legs)
        allocate(conn, op_id, taken)
        total = _add_owed(conn, member_id, owed) if owed else owed_of(conn, member_id)
    return TakenBack(op_id, points, took, owed, total)


def book_return(
    conn: sqlite3.Connection,
    purchase: ReturnablePurchase,
    *,
    key: str,
    fingerprint: str,
    return_id: str | None,
    refunded_fen: int,
    back: Sequence[tuple[str, int]],
    actor: str,
    now: datetime,
    meta: Mapping[str, Any],
) -> ReturnBooked:
    """Book a return of `refunded_fen` of `purchase`: `back` (source account, points) credited
    to each source, taken from the member's lots (the purchase's own first), the shortfall
    owed; in one savepoint. Raises sqlite3.IntegrityError when its key was used or the
    refunds would pass what was paid (a concurrent writer cannot exist: single writer)."""
    member_id = purchase.member_id
    with atomic(conn):
        done = take_back(
            conn,
            member_id,
            back,
            first_from=[p.operation_id for p in purchase.parts],
            kind=RETURN_KIND,
            key=key,
            fingerprint=fingerprint,
            actor=actor,
            now=now,
            meta=meta,
            reference=purchase.receipt,
        )
        conn.execute(
            "INSERT INTO purchase_returns (operation_id, purchase_operation_id, member_id,"
            " receipt, return_id, amount_fen, refunded_before_fen, refunded_fen, points, taken,"
            " owed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                done.operation_id,
                purchase.operation_id,
                member_id,
                purchase.receipt,
                return_id,
                purchase.amount_fen,
                purchase.refunded_fen,
                refunded_fen,
                done.points,
                done.taken,
                done.owed,
                ts(now),
            ),
        )
    return ReturnBooked(done.operation_id, done.points, done.taken, done.owed, done.owed_total)


@dataclass(frozen=True, slots=True)
class Settlement:
    """Owed points netted against an earning: the operation, points settled, still owed."""

    operation_id: int
    member_id: int
    points: int
    owed_after: int


def settle_owed(
    conn: sqlite3.Connection,
    member_id: int,
    earned_by: Sequence[int],
    *,
    key: str,
    actor: str,
    now: datetime,
    meta: Mapping[str, Any],
) -> Settlement | None:
    """Net the member's owed points against the lots the operations `earned_by` just created
    (as much as they hold), as one operation keyed `key`; None when nothing is owed or taken
    (or `key` was used: a settlement is booked once)."""
    now_ts = ts(now)
    with atomic(conn):
        owed = owed_of(conn, member_id)
        if owed <= 0 or key_taken(conn, key):
            return None
        taken = _take(conn, member_id, owed, now_ts, earned_by, only_those=True)
        points = sum(t.points for t in taken)
        if points <= 0:
            return None
        account, _balance = member_account(conn, member_id)
        op_id = insert_operation(
            conn,
            kind=SETTLEMENT_KIND,
            key=key,
            fingerprint=key,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            meta=encode_meta({**meta, "owed_before": owed, "owed_after": owed - points}),
        )
        post(conn, op_id, [(account, -points), (system_account(conn, OWED_ACCOUNT), points)])
        allocate(conn, op_id, taken)
        left = _add_owed(conn, member_id, -points)
    return Settlement(op_id, member_id, points, left)


def lower_plan_spend(
    conn: sqlite3.Connection, purchase: ReturnablePurchase, day: str, fen: int
) -> int | None:
    """Take `fen` out of the spend of the plan that counted the purchase (the member's plan
    running when it was booked, whose window holds its local `day`); the plan's id, or None."""
    row = conn.execute(
        "SELECT id FROM plans WHERE member_id = :member AND created_at <= :booked"
        " AND (ended_at IS NULL OR ended_at > :booked) AND until_at > :booked"
        " AND starts_on <= :day AND ends_on >= :day ORDER BY id LIMIT 1",
        {"member": purchase.member_id, "booked": purchase.booked_at, "day": day},
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        # CASE, not SQLite's two-argument max (PostgreSQL has GREATEST instead).
        "UPDATE plans SET spent_fen = CASE WHEN spent_fen > :fen THEN spent_fen - :fen ELSE 0 END"
        " WHERE id = :plan",
        {"fen": fen, "plan": int(row[0])},
    )
    return int(row[0])


def earnings_since(
    conn: sqlite3.Connection, member_id: int, first_operation: int, kinds: Collection[str]
) -> list[int]:
    """The member's operations of `kinds` from `first_operation` on (those of the transaction
    that booked it: one writer hands out ids in order)."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM operations WHERE id >= ? AND member_id = ?"
            " AND kind IN (SELECT value FROM json_each(?)) ORDER BY id",
            (first_operation, member_id, json.dumps(sorted(kinds))),
        )
    ]
