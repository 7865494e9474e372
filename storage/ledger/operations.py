"""The ledger's write operations: earn, spend, refund, transfer (and its undo), adjust, extend,
expire.

Each is atomic on its own (a savepoint inside the caller's transaction, or its own
`BEGIN IMMEDIATE` otherwise) and keyed: a replayed key returns the stored result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from storage.errors import (
    AlreadyReversed,
    Conflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    StoreError,
)
from storage.ledger.bookkeeping import (
    Take,
    allocate,
    choose_lots,
    choose_movable_lots,
    consumed_lots,
    create_lot,
    draw_ids,
    encode_meta,
    insert_operation,
    load_result,
    member_account,
    open_account,
    post,
    post_with_system,
    replay,
    request_fingerprint,
    require_positive,
    system_account,
)
from storage.ledger.records import (
    ADJUSTMENT_SOURCE,
    DAY_SECONDS,
    EARN_KINDS,
    EXPIRED_SINK,
    SPEND_KINDS,
    SPEND_SINKS,
    EarnRequest,
    ExpiryReport,
    OperationResult,
)
from storage.sql import atomic, required_now, ts, ts_or_none

log = logging.getLogger(__name__)


def _prepare_earn(req: EarnRequest) -> tuple[str, int | None, int, str | None]:
    """Validate a credit and compute (fingerprint, expires_ts, now_ts, meta_json), the same
    for `earn` and `earn_many`; raises InvalidRequest."""
    require_positive(req.points)
    if req.kind not in EARN_KINDS:
        raise InvalidRequest(f"unknown earn kind {req.kind!r}")
    now_ts = ts(req.now)
    expires_ts = ts_or_none(req.expires_at)
    if expires_ts is not None and expires_ts <= now_ts:
        raise InvalidRequest("points would expire the moment they are earned")
    meta_json = encode_meta(req.meta)
    fingerprint = request_fingerprint(
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
    now: datetime | None = None,
) -> OperationResult:
    """Credit a member from the `kind` source as one new lot; raises NotFound, Conflict,
    InvalidRequest."""
    now = required_now(now)
    fingerprint, expires_ts, now_ts, meta_json = _prepare_earn(
        EarnRequest(member_id, points, kind, key, actor, expires_at, now, reason, reference, meta)
    )
    with atomic(conn):
        if (stored := replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance_before = member_account(conn, member_id)
        op_id = insert_operation(
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
        post_with_system(conn, op_id, kind, -points, account, points)
        lot_id = create_lot(
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
    now: datetime | None = None,
) -> OperationResult:
    """Move unexpired points to a sink, soonest-expiring lots first; raises InsufficientPoints,
    NotFound, Conflict, InvalidRequest."""
    now = required_now(now)
    require_positive(points)
    if sink not in SPEND_SINKS:
        raise InvalidRequest(f"points cannot be spent into {sink!r}")
    now_ts = ts(now)
    fingerprint = request_fingerprint(
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
        if (stored := replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance_before = member_account(conn, member_id)
        taken = choose_lots(conn, member_id, points, now_ts)
        op_id = insert_operation(
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
        post_with_system(conn, op_id, sink, points, account, -points)
        allocate(conn, op_id, taken)
        return OperationResult(
            operation_id=op_id,
            kind=SPEND_SINKS[sink],
            member_id=member_id,
            points=points,
            balance_after=balance_before - points,
            consumed=consumed_lots(taken),
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
    now: datetime | None = None,
) -> OperationResult:
    """Give a spend's points back, once, into new lots traceable to the ones it consumed;
    raises NotFound, AlreadyReversed, Conflict, InvalidRequest."""
    now = required_now(now)
    if min_validity_days < 0:
        raise InvalidRequest("min_validity_days cannot be negative")
    now_ts = ts(now)
    fingerprint = request_fingerprint(
        {
            "op": "refund",
            "spend": spend_operation_id,
            "merchant_fault": merchant_fault,
            "min_validity_days": min_validity_days,
            "reason": reason,
        }
    )
    with atomic(conn):
        if (stored := replay(conn, key, fingerprint)) is not None:
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
        account, balance_before = member_account(conn, member_id)
        op_id = insert_operation(
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
        post(conn, op_id, [(sink, -points), (account, points)])
        # The member is never harmed by the merchant's fault; a member's own return keeps
        # the original expiry, even one already past (the next sweep books it).
        floor = now_ts + min_validity_days * DAY_SECONDS if merchant_fault else None
        lots_created = []
        for origin_lot_id, lot_points, expires_at in allocations:
            if floor is not None and expires_at is not None:
                expires_at = max(expires_at, floor)
            lots_created.append(
                create_lot(
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


def inherit_lots(
    conn: sqlite3.Connection, operation_id: int, member_id: int, taken: Sequence[Take]
) -> tuple[int, ...]:
    """The member's new lots for what an operation moved to them, one per lot taken, each with
    that lot's expiry and linked to it (origin_lot_id)."""
    return tuple(
        create_lot(
            conn,
            member_id=member_id,
            operation_id=operation_id,
            points=t.points,
            expires_at=t.expires_at,
            origin_lot_id=t.lot_id,
        )
        for t in taken
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
    now: datetime | None = None,
    held_back: Collection[str] = (),
    meta: Mapping[str, Any] | None = None,
) -> OperationResult:
    """Move points to another member, never from lots whose original source is in
    `held_back`; their new lots keep each source lot's expiry. The ledger's primitive: members
    move points through `storage.transfers`, which checks the household and the limits.
    Raises InsufficientPoints (SourceHeldBack), NotFound, Conflict, InvalidRequest."""
    now = required_now(now)
    require_positive(points)
    if from_member == to_member:
        raise InvalidRequest("a member cannot transfer points to themselves")
    now_ts = ts(now)
    meta_json = encode_meta(meta)
    fingerprint = request_fingerprint(
        {
            "op": "transfer",
            "from": from_member,
            "to": to_member,
            "points": points,
            "reason": reason,
            "held_back": sorted(held_back),
            "meta": meta_json,
        }
    )
    with atomic(conn):
        if (stored := replay(conn, key, fingerprint)) is not None:
            return stored
        sender, sender_before = member_account(conn, from_member)
        recipient, recipient_before = member_account(conn, to_member)
        taken = choose_movable_lots(conn, from_member, points, now_ts, frozenset(held_back))
        op_id = insert_operation(
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
            meta=meta_json,
        )
        post(conn, op_id, [(sender, -points), (recipient, points)])
        allocate(conn, op_id, taken)
        # Inheriting the expiry means passing points back and forth never extends them.
        lots_created = inherit_lots(conn, op_id, to_member, taken)
        return OperationResult(
            operation_id=op_id,
            kind="transfer",
            member_id=from_member,
            points=points,
            balance_after=sender_before - points,
            lots_created=lots_created,
            consumed=consumed_lots(taken),
            recipient_id=to_member,
            recipient_balance_after=recipient_before + points,
        )


def undo_transfer(
    conn: sqlite3.Connection,
    transfer_operation_id: int,
    *,
    sender_id: int,
    within: timedelta,
    key: str,
    actor: str,
    now: datetime | None = None,
) -> OperationResult:
    """The sender takes a transfer back, once, within `within` of it and only while the
    recipient holds every point of it untouched; the points return into new lots with the
    sender's original expiry. Raises NotFound (not this sender's transfer), AlreadyReversed,
    InvalidState ('undo_window_closed', 'spent'), Conflict."""
    now = required_now(now)
    now_ts = ts(now)
    fingerprint = request_fingerprint(
        {"op": "transfer_undo", "transfer": transfer_operation_id, "sender": sender_id}
    )
    with atomic(conn):
        if (stored := replay(conn, key, fingerprint)) is not None:
            return stored
        row = conn.execute(
            "SELECT member_id, counterparty_id, points, created_at, meta FROM operations"
            " WHERE id = ? AND kind = 'transfer'",
            (transfer_operation_id,),
        ).fetchone()
        # Someone else's transfer looks exactly like none: operation ids are guessable.
        if row is None or row[0] != sender_id:
            raise NotFound(f"no transfer {transfer_operation_id} by member {sender_id}")
        _sender, recipient_id, points, created_at, meta = row
        if (
            conn.execute(
                "SELECT 1 FROM operations WHERE reverses_operation_id = ?",
                (transfer_operation_id,),
            ).fetchone()
            is not None
        ):
            raise AlreadyReversed(f"transfer {transfer_operation_id} was already taken back")
        if now_ts > created_at + int(within.total_seconds()):
            raise InvalidState("undo_window_closed")
        created = conn.execute(
            "SELECT id, points, remainder, expires_at FROM lots WHERE operation_id = ? ORDER BY id",
            (transfer_operation_id,),
        ).fetchall()
        # Spent, or swept as expired: either way the recipient no longer holds all of it.
        if any(remainder != lot_points for _id, lot_points, remainder, _exp in created):
            raise InvalidState("spent")
        sender_account, sender_before = member_account(conn, sender_id)
        recipient_account, recipient_before = member_account(conn, recipient_id)
        op_id = insert_operation(
            conn,
            kind="transfer_undo",
            key=key,
            fingerprint=fingerprint,
            member_id=sender_id,
            counterparty_id=recipient_id,
            points=points,
            actor=actor,
            now=now_ts,
            reverses=transfer_operation_id,
            meta=meta,
        )
        post(conn, op_id, [(recipient_account, -points), (sender_account, points)])
        taken = [Take(int(r[0]), int(r[1]), r[3]) for r in created]
        allocate(conn, op_id, taken)
        # The recipient's lots carried the sender's expiry: the points go back with it.
        lots_created = inherit_lots(conn, op_id, sender_id, taken)
        return OperationResult(
            operation_id=op_id,
            kind="transfer_undo",
            member_id=sender_id,
            points=points,
            balance_after=sender_before + points,
            lots_created=lots_created,
            consumed=consumed_lots(taken),
            recipient_id=recipient_id,
            recipient_balance_after=recipient_before - points,
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
    now: datetime | None = None,
) -> OperationResult:
    """An admin correction: a positive delta is a new lot, a negative one is consumed like a
    spend; raises InsufficientPoints, NotFound, Conflict, InvalidRequest."""
    now = required_now(now)
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise InvalidRequest(f"an adjustment needs a non-zero integer delta, not {delta!r}")
    if not reason or not reason.strip():
        raise InvalidRequest("an adjustment needs a reason")
    now_ts = ts(now)
    expires_ts = ts_or_none(expires_at)
    if delta > 0 and expires_ts is not None and expires_ts <= now_ts:
        raise InvalidRequest("points would expire the moment they are credited")
    fingerprint = request_fingerprint(
        {
            "op": "adjust",
            "member": member_id,
            "delta": delta,
            "reason": reason,
            "expires_at": expires_ts if delta > 0 else None,
        }
    )
    with atomic(conn):
        if (stored := replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance_before = member_account(conn, member_id)
        points = abs(delta)
        taken = [] if delta > 0 else choose_lots(conn, member_id, points, now_ts)
        op_id = insert_operation(
            conn,
            kind="adjust",
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            points=points,
            actor=actor,
            now=now_ts,
            reason=reason,
            meta=encode_meta({"delta": delta}),
        )
        post_with_system(conn, op_id, ADJUSTMENT_SOURCE, -delta, account, delta)
        lots_created: tuple[int, ...] = ()
        if delta > 0:
            lots_created = (
                create_lot(
                    conn,
                    member_id=member_id,
                    operation_id=op_id,
                    points=points,
                    expires_at=expires_ts,
                ),
            )
        else:
            allocate(conn, op_id, taken)
        return OperationResult(
            operation_id=op_id,
            kind="adjust",
            member_id=member_id,
            points=points,
            balance_after=balance_before + delta,
            lots_created=lots_created,
            consumed=consumed_lots(taken),
        )


def extend_validity(
    conn: sqlite3.Connection,
    member_id: int,
    *,
    until: datetime,
    key: str,
    actor: str,
    reason: str | None,
    now: datetime | None = None,
    lot_ids: Iterable[int] | None = None,
) -> OperationResult:
    """Compensation: move the remainders of unexpired lots expiring before `until` into new
    lots expiring at `until` (never shortens anything); raises NotFound, Conflict,
    InvalidRequest."""
    now = required_now(now)
    now_ts = ts(now)
    until_ts = ts(until)
    if until_ts <= now_ts:
        raise InvalidRequest("validity can only be extended into the future")
    chosen = None if lot_ids is None else sorted(set(lot_ids))
    fingerprint = request_fingerprint(
        {
            "op": "extend_validity",
            "member": member_id,
            "until": until_ts,
            "lots": chosen,
            "reason": reason,
        }
    )
    with atomic(conn):
        if (stored := replay(conn, key, fingerprint)) is not None:
            return stored
        account, balance = member_account(conn, member_id)
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
        taken = [Take(int(r[0]), int(r[1]), r[2]) for r in rows]
        points = sum(t.points for t in taken)
        op_id = insert_operation(
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
            post(conn, op_id, [(account, -points), (account, points)])
            allocate(conn, op_id, taken)
            lots_created = tuple(
                create_lot(
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
            consumed=consumed_lots(taken),
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
    require_positive(limit, "limit")
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
        expired_sink = system_account(conn, EXPIRED_SINK)
        # Set-based for the 5M-lot sweep: explicit ids (we are the only writer inside this
        # transaction) let every table be filled with one executemany.
        operation_ids = draw_ids(conn, "operations", len(due) - len(booked))
        operations: list[tuple[object, ...]] = []
        postings: list[tuple[int, int, int]] = []
        allocations: list[tuple[int, int, int]] = []
        points = 0
        for lot_id, member_id, remainder, _expires_at in due:
            key = f"expire:{lot_id}"
            if key in booked:
                continue
            op_id = next(operation_ids)
            operations.append(
                (
                    op_id,
                    key,
                    request_fingerprint({"op": "expire", "lot": lot_id}),
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
    outcomes = earn_groups(conn, [(req,) for req in requests])
    return [o if isinstance(o, StoreError) else o[0] for o in outcomes]


def earn_groups(
    conn: sqlite3.Connection,
    groups: Sequence[Sequence[EarnRequest]],
    *,
    then: Callable[[list[tuple[OperationResult, ...] | StoreError]], None] | None = None,
) -> list[tuple[OperationResult, ...] | StoreError]:
    """Apply groups of credits in one transaction, each group all or nothing: booked whole,
    replayed whole, or refused whole (an error of one request, or a group that is part
    replay, part new, is a Conflict: it describes something other than what was booked);
    `then` sees the outcomes inside the same transaction (the import's notices); return the
    results or the error per group, in order."""
    outcomes: list[tuple[OperationResult, ...] | StoreError | None] = [None] * len(groups)
    prepared: dict[int, list[tuple[str, int | None, int, str | None]]] = {}
    for index, group in enumerate(groups):
        try:
            prepared[index] = [_prepare_earn(req) for req in group]
        except StoreError as exc:
            outcomes[index] = exc

    with atomic(conn):
        keys = sorted({req.key for i in prepared for req in groups[i]})
        stored = {
            str(r[0]): (int(r[1]), str(r[2]))
            for r in conn.execute(
                "SELECT idempotency_key, id, fingerprint FROM operations"
                " WHERE idempotency_key IN (SELECT value FROM json_each(?))",
                (json.dumps(keys),),
            )
        }
        member_ids = sorted({req.member_id for i in prepared for req in groups[i]})
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
        # Only the sources these requests draw on (a purchase: one), not every earn kind's:
        # a statement each, a network round trip on PostgreSQL.
        kinds = sorted({req.kind for i in prepared for req in groups[i]})
        sources = {kind: system_account(conn, kind) for kind in kinds}
        most = sum(len(groups[i]) for i in prepared)  # fewer when some are refused or replayed
        operation_ids = draw_ids(conn, "operations", most)
        lot_ids = draw_ids(conn, "lots", most)
        operations: list[tuple[object, ...]] = []
        postings: list[tuple[int, int, int]] = []
        lots: list[tuple[object, ...]] = []
        fresh: dict[str, tuple[str, OperationResult]] = {}
        for index, facts in prepared.items():
            group = groups[index]
            replays: list[OperationResult] = []
            error: StoreError | None = None
            for req, (fingerprint, _expires, _now, _meta) in zip(group, facts, strict=True):
                earlier = stored.get(req.key)
                if earlier is not None:
                    if earlier[1] != fingerprint:
                        error = Conflict(
                            f"idempotency key {req.key!r} was used for a different request"
                        )
                        break
                    replays.append(load_result(conn, earlier[0], replayed=True))
                elif req.key in fresh:
                    if fresh[req.key][0] != fingerprint:
                        error = Conflict(
                            f"idempotency key {req.key!r} was used for a different request"
                        )
                        break
                    replays.append(dataclasses.replace(fresh[req.key][1], replayed=True))
                elif req.member_id not in accounts:
                    error = NotFound(f"no member {req.member_id}")
                    break
            if error is None and replays and len(replays) != len(group):
                error = Conflict(f"idempotency key {group[0].key!r}: only part of it was booked")
            if error is not None:
                outcomes[index] = error
                continue
            if replays:
                outcomes[index] = tuple(replays)
                continue
            results: list[OperationResult] = []
            for req, (fingerprint, expires_ts, now_ts, meta_json) in zip(group, facts, strict=True):
                account = accounts[req.member_id]
                if account is None:
                    account = accounts[req.member_id] = open_account(conn, req.member_id)
                op_id, lot_id = next(operation_ids), next(lot_ids)
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
                results.append(result)
            outcomes[index] = tuple(results)
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
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(outcomes)
        if then is not None:
            # In the booking transaction itself: a savepoint around the booking (an outer
            # `atomic`) would journal every page it writes, a third of a bulk import's time.
            then(done)
    return done
