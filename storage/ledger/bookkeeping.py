"""Bookkeeping: the accounts, postings, lots and allocations every ledger operation writes.

Shared by `storage.ledger.operations` and `storage.ledger.queries`; other code goes through
`storage.ledger`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from storage.errors import (
    Conflict,
    InsufficientPoints,
    InvalidRequest,
    NotFound,
    SourceHeldBack,
)
from storage.ledger.records import Consumed, OperationResult
from storage.sql import engine, insert_id


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


def request_fingerprint(request: Mapping[str, object]) -> str:
    """Hash of what was asked (not who delivered it or when), to tell retries from reuse."""
    # Values are str/int/bool/None or lists of ints, whose repr is stable across Python
    # versions and much cheaper than JSON, which matters for a million-row import.
    canonical = repr(sorted(request.items()))
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def encode_meta(meta: Mapping[str, Any] | None) -> str | None:
    """Operation meta as canonical JSON (Decimal kept exact), or None."""
    return None if meta is None else _canonical_json(dict(meta))


def require_positive(points: int, what: str = "points") -> None:
    """Refuse anything but a positive int (bools too); raises InvalidRequest."""
    # bool is an int: True points would be a bug, not a request.
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidRequest(f"{what} must be a positive integer, not {points!r}")


def draw_ids(conn: sqlite3.Connection, table: str, count: int) -> Iterator[int]:
    """Ids for up to `count` rows of `table` a bulk insert writes explicitly (one executemany
    per table): SQLite's next max+1 ones (the only writer in this transaction), PostgreSQL's
    drawn from the table's identity, which explicit ids would otherwise leave behind for the
    next plain INSERT to collide with (ids not taken leave a hole, as a rollback does there)."""
    if engine(conn) == "postgres":
        drawn = conn.execute(
            "SELECT nextval(pg_get_serial_sequence(?, 'id')) FROM generate_series(1, ?)",
            (table, count),
        ).fetchall()
        return iter(sorted(int(row[0]) for row in drawn))
    sql = f"SELECT coalesce(max(id), 0) + 1 FROM {table}"  # noqa: S608 - fixed names
    first = int(conn.execute(sql).fetchone()[0])
    return iter(range(first, first + count))


def system_account(conn: sqlite3.Connection, name: str) -> int:
    """The id of a named system account (a source or sink); raises NotFound."""
    row = conn.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no system account {name!r}")
    return int(row[0])


def member_account(conn: sqlite3.Connection, member_id: int) -> tuple[int, int]:
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
    account = insert_id(
        conn, "INSERT INTO accounts (kind, member_id) VALUES ('member', ?)", (member_id,)
    )
    return account, 0


def open_account(conn: sqlite3.Connection, member_id: int) -> int:
    """Return the member's account id, opening the account on first use; raises NotFound."""
    return member_account(conn, member_id)[0]


def replay(conn: sqlite3.Connection, key: str, fingerprint: str) -> OperationResult | None:
    """The stored result when `key` was already applied; raises Conflict for another request."""
    row = conn.execute(
        "SELECT id, fingerprint FROM operations WHERE idempotency_key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row[1] != fingerprint:
        raise Conflict(f"idempotency key {key!r} was already used for a different request")
    return load_result(conn, int(row[0]), replayed=True)


def applied(conn: sqlite3.Connection, key: str) -> OperationResult | None:
    """The stored result of `key` (replayed), whatever was asked: for a booking whose rules
    may have moved since (a tier changed the gift), the first booking stands."""
    row = conn.execute("SELECT id FROM operations WHERE idempotency_key = ?", (key,)).fetchone()
    return None if row is None else load_result(conn, int(row[0]), replayed=True)


def insert_operation(
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
    """Insert an operation row (times as Unix seconds); its id."""
    return insert_id(
        conn,
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


def post_with_system(
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


def post(conn: sqlite3.Connection, operation_id: int, legs: Iterable[tuple[int, int]]) -> None:
    """Insert an operation's (account, amount) legs; the trigger moves the cached balances."""
    conn.executemany(
        "INSERT INTO postings (operation_id, account_id, amount) VALUES (?, ?, ?)",
        [(operation_id, account, amount) for account, amount in legs],
    )


def create_lot(
    conn: sqlite3.Connection,
    *,
    member_id: int,
    operation_id: int,
    points: int,
    expires_at: int | None,
    origin_lot_id: int | None = None,
) -> int:
    """Insert a lot holding all its points; its id."""
    return insert_id(
        conn,
        "INSERT INTO lots (member_id, operation_id, points, remainder, expires_at, origin_lot_id)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (member_id, operation_id, points, points, expires_at, origin_lot_id),
    )


@dataclass(frozen=True, slots=True)
class Take:
    """Points an operation is about to take from a lot, and the lot's expiry."""

    lot_id: int
    points: int
    expires_at: int | None


def choose_lots(conn: sqlite3.Connection, member_id: int, points: int, now: int) -> list[Take]:
    """Pick unexpired lots soonest-expiring first (never last, then oldest); raises
    InsufficientPoints."""
    cur = conn.execute(
        "SELECT id, remainder, expires_at FROM lots"
        " WHERE member_id = ? AND remainder > 0"
        " AND coalesce(expires_at, 9223372036854775807) > ?"
        " ORDER BY coalesce(expires_at, 9223372036854775807), id",
        (member_id, now),
    )
    taken: list[Take] = []
    need = points
    available = 0
    for lot_id, remainder, expires_at in cur:
        available += remainder
        take = min(need, remainder)
        taken.append(Take(lot_id, take, expires_at))
        need -= take
        if need == 0:
            break
    cur.close()
    if need > 0:
        raise InsufficientPoints(available, points)
    return taken


# The source account each lot's points first came from: a lot moved by a transfer, restored by
# a refund or extended by compensation links back (origin_lot_id) to the lot it replaces, and
# the root lot's operation credited it from a source account (earn: the kind's source).
_ROOT_SOURCES = """
WITH RECURSIVE chain (lot_id, at_lot, origin) AS (
    SELECT id, id, origin_lot_id FROM lots WHERE id IN (SELECT value FROM json_each(:lots))
    UNION ALL
    SELECT c.lot_id, l.id, l.origin_lot_id FROM chain AS c JOIN lots AS l ON l.id = c.origin
)
SELECT c.lot_id, (SELECT a.name FROM postings AS p JOIN accounts AS a ON a.id = p.account_id
                  WHERE p.operation_id = r.operation_id AND a.kind = 'source' LIMIT 1)
FROM chain AS c JOIN lots AS r ON r.id = c.at_lot WHERE c.origin IS NULL
"""


def root_sources(conn: sqlite3.Connection, lot_ids: Iterable[int]) -> dict[int, str | None]:
    """The source account (name) each lot's points were first credited from (None: none)."""
    ids = sorted(set(lot_ids))
    if not ids:
        return {}
    return {int(r[0]): r[1] for r in conn.execute(_ROOT_SOURCES, {"lots": json.dumps(ids)})}


def _spendable_rows(conn: sqlite3.Connection, member_id: int, now: int) -> list[Any]:
    return conn.execute(
        "SELECT id, remainder, expires_at FROM lots"
        " WHERE member_id = ? AND remainder > 0"
        " AND coalesce(expires_at, 9223372036854775807) > ?"
        " ORDER BY coalesce(expires_at, 9223372036854775807), id",
        (member_id, now),
    ).fetchall()


def _kept(source: str | None, held_back: Collection[str]) -> bool:
    # A lot whose root has no source is not a credit anyone can vouch for: it stays.
    return bool(held_back) and (source is None or source in held_back)


def movable_points(
    conn: sqlite3.Connection, member_id: int, now: int, held_back: Collection[str]
) -> tuple[int, int]:
    """The member's unexpired points that may move to someone else, and those that stay
    (their original source is in `held_back`)."""
    rows = _spendable_rows(conn, member_id, now)
    sources = root_sources(conn, (int(r[0]) for r in rows)) if held_back else {}
    movable = kept = 0
    for lot_id, remainder, _expires_at in rows:
        if _kept(sources.get(lot_id), held_back):
            kept += remainder
        else:
            movable += remainder
    return movable, kept


def choose_movable_lots(
    conn: sqlite3.Connection,
    member_id: int,
    points: int,
    now: int,
    held_back: Collection[str],
) -> list[Take]:
    """`choose_lots` skipping lots whose original source is in `held_back` (they stay with
    the member); raises SourceHeldBack when only those would cover it, InsufficientPoints."""
    rows = _spendable_rows(conn, member_id, now)
    sources = root_sources(conn, (int(r[0]) for r in rows)) if held_back else {}
    taken: list[Take] = []
    need, movable, kept = points, 0, 0
    for lot_id, remainder, expires_at in rows:
        if _kept(sources.get(lot_id), held_back):
            kept += remainder
            continue
        movable += remainder
        if need:
            take = min(need, remainder)
            taken.append(Take(lot_id, take, expires_at))
            need -= take
    if need > 0:
        if movable + kept >= points:
            raise SourceHeldBack(movable, points, kept)
        raise InsufficientPoints(movable + kept, points)
    return taken


def allocate(conn: sqlite3.Connection, operation_id: int, taken: Sequence[Take]) -> None:
    """Record what an operation consumed; the trigger lowers the lots' remainders."""
    conn.executemany(
        "INSERT INTO allocations (operation_id, lot_id, points) VALUES (?, ?, ?)",
        [(operation_id, t.lot_id, t.points) for t in taken],
    )


def consumed_lots(taken: Sequence[Take]) -> tuple[Consumed, ...]:
    """What an operation took from each lot, as its result reports it."""
    return tuple(Consumed(t.lot_id, t.points) for t in taken)


def balance_as_of(conn: sqlite3.Connection, member_id: int, operation_id: int) -> int:
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
        balance_after=balance_as_of(conn, member_id, operation_id),
        lots_created=lots_created,
        consumed=consumed,
        recipient_id=counterparty_id,
        recipient_balance_after=(
            None if counterparty_id is None else balance_as_of(conn, counterparty_id, operation_id)
        ),
        replayed=replayed,
    )
