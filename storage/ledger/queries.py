"""The ledger's read queries: balances, spend previews, lots, statements, operations."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from storage.errors import (
    InvalidRequest,
    NotFound,
)
from storage.ledger.bookkeeping import choose_lots, load_result, require_positive
from storage.ledger.records import (
    EARN_KINDS,
    RECEIPT_KINDS,
    Balance,
    LedgerLine,
    Lot,
    OperationRecord,
    Posting,
    RecentOperation,
    Statement,
    StatementLine,
    StoredPurchase,
)
from storage.sql import dt, dt_or_none, required_now, ts


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


def stored_purchases(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, StoredPurchase]:
    """The purchases booked before under these keys (with their campaigns' extra points)."""
    found: dict[str, StoredPurchase] = {}
    for start in range(0, len(keys), 5_000):
        chunk = list(keys[start : start + 5_000])
        rows = conn.execute(
            "SELECT o.idempotency_key, o.id, o.member_id, o.points, o.meta, c.id, c.points"
            " FROM operations AS o LEFT JOIN operations AS c"
            " ON c.idempotency_key = o.idempotency_key || ':campaign'"
            " WHERE o.idempotency_key IN (SELECT value FROM json_each(?))",
            (json.dumps(chunk),),
        )
        for key, op_id, member_id, points, meta, bonus_id, bonus in rows:
            ids = (int(op_id),) if bonus_id is None else (int(op_id), int(bonus_id))
            found[str(key)] = StoredPurchase(
                ids, int(member_id), int(points) + int(bonus or 0), _facts(meta)
            )
    return found


def available(conn: sqlite3.Connection, member_id: int, now: datetime | None = None) -> int:
    """Spendable points: the unexpired remainders (0 for a member with none)."""
    now = required_now(now)
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


def balance(conn: sqlite3.Connection, member_id: int, now: datetime | None = None) -> Balance:
    """Spendable points (unexpired remainders), their expiry schedule and every point ever
    credited to the member; raises NotFound."""
    now = required_now(now)
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
    # Lifetime = every point ever added to the member from outside: earned, adjusted up, sent
    # by family. A refund gives back points already counted and an extension only moves them
    # to a new lot, so neither counts; spending and expiry never take anything off.
    credited_kinds = sorted(EARN_KINDS | {"adjust", "transfer"})
    lifetime = conn.execute(
        "SELECT coalesce(sum(l.points), 0) FROM lots AS l"
        " JOIN operations AS o ON o.id = l.operation_id"
        " WHERE l.member_id = ? AND o.kind IN (SELECT value FROM json_each(?))",
        (member_id, json.dumps(credited_kinds)),
    ).fetchone()[0]
    owed = conn.execute("SELECT points FROM owed_points WHERE member_id = ?", (member_id,))
    owing = owed.fetchone()
    return Balance(
        member_id=member_id,
        available=sum(points for _, points in expiring),
        expiring=expiring,
        lifetime_earned=int(lifetime),
        owed=0 if owing is None else int(owing[0]),
    )


def plan_spend(
    conn: sqlite3.Connection, member_id: int, points: int, now: datetime | None = None
) -> tuple[tuple[datetime | None, int], ...]:
    """The (expires_at, points) a spend of `points` would consume now, soonest first, without
    writing; raises InsufficientPoints, NotFound, InvalidRequest."""
    now = required_now(now)
    require_positive(points)
    _require_member(conn, member_id)
    # The very selection `spend` makes, so a preview can never disagree with the spend.
    planned: dict[int | None, int] = {}
    for take in choose_lots(conn, member_id, points, ts(now)):
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


# One page of a statement and every fact its lines are recognised by, in one query: each join
# goes through a unique (so indexed) column, so a page costs the same however long the history.
_HISTORY_SQL = """
SELECT o.id, o.created_at, o.kind, p.points, o.reason, o.reference, o.meta,
       r.sku, coalesce(r.code, (SELECT code FROM game_vouchers
                         WHERE play_id = g.id AND g.revealed_at IS NOT NULL)),
       r.deduction_yuan, CASE WHEN r.status = 'cancelled' THEN r.note END,
       g.game, CASE WHEN g.revealed_at IS NOT NULL THEN g.prize_id END,
       bought.reference, bought.meta,
       other.first_name, other.last_name,
       CASE WHEN o.kind = 'expire' THEN (
           SELECT min(source.created_at) FROM allocations AS al
           JOIN lots AS lot ON lot.id = al.lot_id
           JOIN operations AS source ON source.id = lot.operation_id
           WHERE al.operation_id = o.id) END
FROM (SELECT operation_id, sum(amount) AS points FROM postings
      WHERE account_id = :account GROUP BY operation_id
      ORDER BY operation_id DESC LIMIT :limit OFFSET :offset) AS p
JOIN operations AS o ON o.id = p.operation_id
LEFT JOIN redemptions AS r ON r.id = coalesce(
    (SELECT id FROM redemptions WHERE spend_operation_id = o.id),
    (SELECT id FROM redemptions WHERE spend_operation_id = o.reverses_operation_id),
    (SELECT id FROM redemptions WHERE refund_operation_id = o.id),
    (SELECT id FROM redemptions WHERE compensation_operation_id = o.id),
    CASE WHEN o.kind = 'compensation' THEN (
        SELECT id FROM redemptions WHERE code = o.reference AND member_id = :member) END)
LEFT JOIN game_plays AS g ON g.id = coalesce(
    (SELECT id FROM game_plays WHERE cost_operation_id = o.id),
    (SELECT id FROM game_plays WHERE prize_operation_id = o.id))
LEFT JOIN operations AS bought ON o.kind <> 'purchase' AND o.meta IS NOT NULL
    AND bought.idempotency_key = json_extract(o.meta, '$.purchase')
    AND bought.kind = 'purchase' AND bought.member_id = o.member_id
LEFT JOIN members AS other ON o.kind IN ('transfer', 'transfer_undo')
    AND other.id = CASE WHEN o.member_id = :member THEN o.counterparty_id ELSE o.member_id END
ORDER BY o.id DESC
"""


def _facts(meta: str | None) -> dict[str, object]:
    """An operation's meta as a dict (empty when absent or not an object)."""
    decoded = None if meta is None else json.loads(meta)
    return decoded if isinstance(decoded, dict) else {}


def _fact(facts: Mapping[str, object], key: str) -> str | None:
    """A meta value as text, or None when missing or not a plain value."""
    value = facts.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def _tier_bonus(facts: Mapping[str, object]) -> int | None:
    """A purchase's stored tier bonus, or None."""
    value = facts.get("tier_bonus")
    return value if isinstance(value, int) and not isinstance(value, bool) and value else None


def _money(text: str | None) -> Decimal | None:
    """A stored amount of yuan, or None when absent or unreadable."""
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _statement_line(row: sqlite3.Row | tuple[Any, ...]) -> StatementLine:
    (op_id, created_at, kind, points, reason, reference, meta, sku, code, deduction) = row[:10]
    (cancelled, game, prize, bought_reference, bought_meta, first, last, earned_at) = row[10:]
    facts, bought = _facts(meta), _facts(bought_meta)
    if bought_reference is not None or bought:
        receipt = bought_reference
    elif kind in RECEIPT_KINDS:
        receipt = reference
    else:
        receipt = _fact(facts, "receipt")
    name = " ".join(part for part in (first, last) if part) or None
    return StatementLine(
        operation_id=op_id,
        created_at=dt(created_at),
        kind=kind,
        points=points,
        reason=reason,
        reference=reference,
        receipt=receipt,
        amount=_money(_fact(facts, "amount") or _fact(bought, "amount")),
        campaign=_fact(facts, "campaign") or _fact(bought, "campaign"),
        tier_bonus=_tier_bonus(facts) if kind == "purchase" else None,
        sku=sku,
        code=code,
        deduction_yuan=_money(deduction),
        cancelled_because=cancelled,
        game=game or _fact(facts, "game"),
        # A card's prize only once it is scratched open: the statement must not give it away.
        prize=prize if game is not None else _fact(facts, "prize"),
        survey=_fact(facts, "survey"),
        task=_fact(facts, "task"),
        badge_set=_fact(facts, "badge_set"),
        tier=_fact(facts, "tier"),
        counterparty=name,
        earned_at=dt_or_none(earned_at),
    )


def history(
    conn: sqlite3.Connection, member_id: int, *, offset: int = 0, limit: int = 20
) -> Statement:
    """A page of the member's statement, newest first, with what each line was for, and the
    total number of lines; raises InvalidRequest (a bad page)."""
    if offset < 0 or limit <= 0:
        raise InvalidRequest("offset must be >= 0 and limit > 0")
    account = conn.execute("SELECT id FROM accounts WHERE member_id = ?", (member_id,)).fetchone()
    if account is None:
        _require_member(conn, member_id)
        return Statement((), 0)
    total = conn.execute(
        "SELECT count(DISTINCT operation_id) FROM postings WHERE account_id = ?", (account[0],)
    ).fetchone()[0]
    params = {"account": account[0], "member": member_id, "limit": limit, "offset": offset}
    lines = tuple(_statement_line(row) for row in conn.execute(_HISTORY_SQL, params))
    return Statement(lines, int(total))


def recent_operations(
    conn: sqlite3.Connection, member_id: int, *, kind: str, actor: str, since: datetime
) -> list[RecentOperation]:
    """The member's operations of `kind` booked by `actor` at or after `since`, newest first."""
    # Through the member's postings (indexed by account): operations has no member index,
    # and a member's own postings are few however big the ledger grows.
    return [
        RecentOperation(
            operation_id=r[0],
            key=r[1],
            created_at=dt(r[2]),
            points=r[3],
            reference=r[4],
            meta=None if r[5] is None else json.loads(r[5]),
        )
        for r in conn.execute(
            "SELECT o.id, o.idempotency_key, o.created_at, o.points, o.reference, o.meta"
            " FROM operations AS o WHERE o.id IN (SELECT p.operation_id FROM postings AS p"
            "   JOIN accounts AS a ON a.id = p.account_id"
            "   WHERE a.member_id = ? AND a.kind = 'member')"
            " AND o.kind = ? AND o.actor = ? AND o.created_at >= ? ORDER BY o.id DESC",
            (member_id, kind, actor, ts(since)),
        )
    ]


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


def count_ledger_lines(conn: sqlite3.Connection, member_id: int | None = None) -> int:
    """How many postings `iter_ledger` yields (of one member's account, or all)."""
    if member_id is None:
        row = conn.execute("SELECT count(*) FROM postings").fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM postings AS p JOIN accounts AS a ON a.id = p.account_id"
            " WHERE a.member_id = ?",
            (member_id,),
        ).fetchone()
    return int(row[0])


def iter_ledger(conn: sqlite3.Connection, member_id: int | None = None) -> Iterator[LedgerLine]:
    """Yield every posting (of one member's account, or all) with its operation, in order."""
    sql = (
        "SELECT p.id, p.operation_id, o.created_at, o.kind, o.idempotency_key, o.actor, o.reason,"
        " o.reference, o.reverses_operation_id, a.name, a.member_id, p.amount, o.meta,"
        " CASE o.kind WHEN 'transfer' THEN o.member_id"
        "  WHEN 'transfer_undo' THEN o.counterparty_id END,"
        " CASE o.kind WHEN 'transfer' THEN o.counterparty_id"
        "  WHEN 'transfer_undo' THEN o.member_id END"
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
            moved_from=r[13],
            moved_to=r[14],
        )
