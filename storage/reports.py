"""The monthly report's figures: set-based aggregates over the ledger as of an instant, and the
dedupe record of the reports sent to owners.

Every query takes the month as Unix seconds [start, end) and reads the ledger as it stood at
`end` (operations created before it), so a past month's figures never change. Each is one
grouped scan, fast on million-row ledgers; nothing loops over members in Python.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from storage.facade import Facade, reads, writes
from storage.sql import atomic, ts

# A report message that failed this often is not tried again (the owner can ask with /report).
MAX_REPORT_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class AccountMovement:
    """One system account (or all member accounts together: name None) in a month: its balance
    before the month, and the points posted to it (credits) and taken from it (debits)."""

    kind: str
    name: str | None
    before: int
    credits: int
    debits: int


@dataclass(frozen=True, slots=True)
class ItemRedemptions:
    """One mall item's redemptions in a month, and the refunds (returns, cancellations) booked
    in the month, whenever the item was redeemed."""

    sku: str
    kind: str
    redeemed: int
    points: int
    refunded: int
    refunded_points: int


@dataclass(frozen=True, slots=True)
class CostGroup:
    """Points issued in a month under one campaign or task id (from the operation's meta)."""

    id: str
    operations: int
    points: int


@dataclass(frozen=True, slots=True)
class GameDays:
    """The games' daily prize totals over a month's local days."""

    days_played: int
    prize_points: int
    busiest_day: int
    days_at_budget: int


@dataclass(frozen=True, slots=True)
class MemberCounts:
    """Members at the month's end, joined in the month, and active in it."""

    total: int
    new: int
    active: int


_MOVEMENTS: Final = (
    "SELECT a.kind, CASE WHEN a.kind = 'member' THEN NULL ELSE a.name END,"
    " coalesce(sum(CASE WHEN o.created_at < ? THEN p.amount END), 0),"
    " coalesce(sum(CASE WHEN o.created_at >= ? AND p.amount > 0 THEN p.amount END), 0),"
    " coalesce(sum(CASE WHEN o.created_at >= ? AND p.amount < 0 THEN -p.amount END), 0)"
    " FROM postings AS p JOIN operations AS o ON o.id = p.operation_id"
    " JOIN accounts AS a ON a.id = p.account_id"
    " WHERE o.created_at < ? GROUP BY 1, 2"
)


def account_movements(conn: sqlite3.Connection, start: int, end: int) -> list[AccountMovement]:
    """Every system account (those with no postings too) and the member accounts together,
    before and during [start, end); member accounts last."""
    found = {
        (str(kind), name): AccountMovement(str(kind), name, int(b), int(c), int(d))
        for kind, name, b, c, d in conn.execute(_MOVEMENTS, (start, start, start, end))
    }
    system = [
        found.get((str(kind), str(name)), AccountMovement(str(kind), str(name), 0, 0, 0))
        for kind, name in conn.execute(
            "SELECT kind, name FROM accounts WHERE kind <> 'member' ORDER BY kind DESC, name"
        )
    ]
    members = found.get(("member", None), AccountMovement("member", None, 0, 0, 0))
    return [*system, members]


# Each lot credited before `end`, less what operations before `end` took from it: what
# members held at `end`, by the instant it expires (NULL: never).
_OUTSTANDING: Final = (
    "WITH taken AS (SELECT al.lot_id, sum(al.points) AS points FROM allocations AS al"
    "   JOIN operations AS o ON o.id = al.operation_id WHERE o.created_at < ?"
    "   GROUP BY al.lot_id)"
    " SELECT l.expires_at, sum(l.points - coalesce(t.points, 0)) FROM lots AS l"
    " JOIN operations AS o ON o.id = l.operation_id LEFT JOIN taken AS t ON t.lot_id = l.id"
    " WHERE o.created_at < ? GROUP BY l.expires_at"
    " HAVING sum(l.points - coalesce(t.points, 0)) <> 0 ORDER BY l.expires_at IS NULL, l.expires_at"
)


def outstanding_by_expiry(conn: sqlite3.Connection, end: int) -> list[tuple[int | None, int]]:
    """The points members held at `end` from their lots, per expiry instant (None: never), soonest
    first: computed from lots and allocations, independently of the postings."""
    return [
        (None if at is None else int(at), int(points))
        for at, points in conn.execute(_OUTSTANDING, (end, end))
    ]


def redemptions_by_item(conn: sqlite3.Connection, start: int, end: int) -> list[ItemRedemptions]:
    """Per item and kind: redemptions spent in [start, end), and refunds booked in it."""
    spent = conn.execute(
        "SELECT r.sku, r.kind, count(*), sum(r.points) FROM redemptions AS r"
        " JOIN operations AS o ON o.id = r.spend_operation_id"
        " WHERE o.created_at >= ? AND o.created_at < ? GROUP BY r.sku, r.kind",
        (start, end),
    ).fetchall()
    back = conn.execute(
        "SELECT r.sku, r.kind, count(*), sum(r.points) FROM redemptions AS r"
        " JOIN operations AS o ON o.id = r.refund_operation_id"
        " WHERE o.created_at >= ? AND o.created_at < ? GROUP BY r.sku, r.kind",
        (start, end),
    ).fetchall()
    lines: dict[tuple[str, str], list[int]] = {}
    for sku, kind, count, points in spent:
        lines.setdefault((str(sku), str(kind)), [0, 0, 0, 0])[0:2] = [int(count), int(points)]
    for sku, kind, count, points in back:
        lines.setdefault((str(sku), str(kind)), [0, 0, 0, 0])[2:4] = [int(count), int(points)]
    return [ItemRedemptions(sku, kind, *figures) for (sku, kind), figures in sorted(lines.items())]


def campaign_costs(conn: sqlite3.Connection, start: int, end: int) -> list[CostGroup]:
    """The campaigns' extra points credited in [start, end), per campaign id."""
    return [
        CostGroup(str(group), int(count), int(points))
        for group, count, points in conn.execute(
            "SELECT json_extract(meta, '$.campaign'), count(*), sum(points) FROM operations"
            " WHERE kind = 'campaign' AND created_at >= ? AND created_at < ?"
            " GROUP BY 1 ORDER BY 1",
            (start, end),
        )
    ]


def task_costs(conn: sqlite3.Connection, start: int, end: int) -> list[CostGroup]:
    """Task rewards (the green-share bonus included) credited in [start, end), per task id."""
    return [
        CostGroup(str(group), int(count), int(points))
        for group, count, points in conn.execute(
            "SELECT coalesce(json_extract(meta, '$.task'), reason), count(*), sum(points)"
            " FROM operations WHERE kind IN ('task', 'share_bonus')"
            " AND created_at >= ? AND created_at < ? GROUP BY 1 ORDER BY 1",
            (start, end),
        )
    ]


def game_days(conn: sqlite3.Connection, first: date, last: date, daily_budget: int) -> GameDays:
    """The games' prize totals of the local days first..last, and the days that reached
    `daily_budget`."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(prize_points), 0), coalesce(max(prize_points), 0),"
        " count(CASE WHEN prize_points >= ? THEN 1 END) FROM game_day_budget"
        " WHERE local_day >= ? AND local_day <= ? AND prize_points > 0",
        (daily_budget, first.isoformat(), last.isoformat()),
    ).fetchone()
    return GameDays(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def member_counts(conn: sqlite3.Connection, start: int, end: int) -> MemberCounts:
    """Members who joined before `end`, in [start, end), and who took part in an operation in
    it (as member or counterparty; an expiry sweep is not the member's doing)."""
    total, new = conn.execute(
        "SELECT count(*), count(CASE WHEN joined_at >= ? THEN 1 END) FROM members"
        " WHERE joined_at < ?",
        (start, end),
    ).fetchone()
    active = conn.execute(
        "SELECT count(*) FROM (SELECT member_id FROM operations"
        "   WHERE created_at >= ? AND created_at < ? AND kind <> 'expire'"
        " UNION SELECT counterparty_id FROM operations"
        "   WHERE created_at >= ? AND created_at < ? AND counterparty_id IS NOT NULL) AS active",
        (start, end, start, end),
    ).fetchone()[0]
    return MemberCounts(int(total), int(new), int(active))


def tiers_at(conn: sqlite3.Connection, end: int) -> dict[str, int]:
    """Members who joined before `end` per tier held at `end` (their last change before it);
    members who never changed tier are left out (they hold the lowest)."""
    return {
        str(tier): int(count)
        for tier, count in conn.execute(
            "SELECT to_tier, count(*) FROM (SELECT c.to_tier, row_number() OVER ("
            "   PARTITION BY c.member_id ORDER BY c.changed_at DESC, c.id DESC) AS n"
            "   FROM tier_changes AS c JOIN members AS m ON m.id = c.member_id"
            "   WHERE c.changed_at < ? AND m.joined_at < ?) AS held"
            " WHERE n = 1 GROUP BY to_tier",
            (end, end),
        )
    }


# --- reports sent to owners ------------------------------------------------------------------


def claim_owner_report(
    conn: sqlite3.Connection, telegram_id: int, month: str, now: datetime
) -> bool:
    """Mark the owner's report for `month` as being sent, and say whether to send it: not when
    it was sent (or a crash caught it sending), nor after MAX_REPORT_ATTEMPTS failures."""
    with atomic(conn):
        row = conn.execute(
            "SELECT status, attempts FROM owner_reports WHERE telegram_id = ? AND month = ?",
            (telegram_id, month),
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO owner_reports (telegram_id, month, status, attempts, updated_at)"
                " VALUES (?, ?, 'sending', 1, ?)",
                (telegram_id, month, ts(now)),
            )
            return True
        status, attempts = row
        if status != "failed" or attempts >= MAX_REPORT_ATTEMPTS:
            return False
        conn.execute(
            "UPDATE owner_reports SET status = 'sending', attempts = attempts + 1,"
            " updated_at = ? WHERE telegram_id = ? AND month = ?",
            (ts(now), telegram_id, month),
        )
        return True


def mark_owner_report(
    conn: sqlite3.Connection,
    telegram_id: int,
    month: str,
    *,
    sent: bool,
    now: datetime,
    error: str | None = None,
) -> None:
    """Record how sending the owner's report for `month` ended."""
    conn.execute(
        "UPDATE owner_reports SET status = ?, updated_at = ?, last_error = ?"
        " WHERE telegram_id = ? AND month = ? AND status = 'sending'",
        ("sent" if sent else "failed", ts(now), error, telegram_id, month),
    )


def owner_reports_sent(conn: sqlite3.Connection, month: str) -> dict[int, str]:
    """Each owner's report status for `month`."""
    return {
        int(telegram_id): str(status)
        for telegram_id, status in conn.execute(
            "SELECT telegram_id, status FROM owner_reports WHERE month = ?", (month,)
        )
    }


class Reports(Facade):
    """The async facade over the owners' report records (the figures are read with
    `Store.read` and `bot.programme.reports.monthly_report`)."""

    claim_owner_report = writes(claim_owner_report)
    mark_owner_report = writes(mark_owner_report)
    owner_reports_sent = reads(owner_reports_sent)
