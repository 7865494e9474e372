"""Badges: which a member holds, the collect-all prizes paid, and the lifetime figures that
milestone badges count.

A badge is earned once (the primary key of `member_badges`), in the transaction of whatever
earned it: the task completion (storage.tasks.advance's `on_complete`), the purchase or the
survey completion. A set's grand prize is paid once per member and set: the ledger key
`badgeset:<set>:<member>` and the primary key of `badge_set_prizes` both refuse a second one,
so two completions racing through the single writer pay it once. The rules (which badge a
completion earns, when a set is complete, what it pays) are in bot/programme/badges.py; this
module is SQL only. Like `storage.tasks`, the core is synchronous functions on a
`sqlite3.Connection`; the `Badges` facade serves them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from storage import dependants, ledger
from storage.errors import StoreError
from storage.facade import Facade, looks_up, reads
from storage.mall import Redemption
from storage.pushes import Push, enqueue
from storage.sql import atomic, dt, ts

BADGE_SOURCE: Final = "badge"
BADGE_ACTOR: Final = "system:badges"
SOURCES: Final = ("task", "milestone")


def set_prize_key(set_id: str, member_id: int) -> str:
    """The idempotency key of a member's prize for completing a set."""
    return f"badgeset:{set_id}:{member_id}"


@dataclass(frozen=True, slots=True)
class EarnedBadge:
    """A badge a member holds: when and how it was earned."""

    badge_id: str
    earned_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class SetPrize:
    """A set's grand prize as paid: the crediting operation, the redemption of an item."""

    set_id: str
    operation_id: int
    redemption_id: int | None
    awarded_at: datetime
    points: int


@dataclass(frozen=True, slots=True)
class LifetimeFigures:
    """What milestone badges count, over the member's whole history."""

    # Fen spent in categories with an impact factor (returned purchases not counted).
    eco_spend_fen: int
    # Points those purchases earned, a campaign's extra points included.
    green_points: int
    surveys_completed: int
    purchases: int

    @property
    def eco_spend_yuan(self) -> int:
        """Whole yuan spent on eco purchases."""
        return self.eco_spend_fen // 100


def earn_badge(
    conn: sqlite3.Connection, member_id: int, badge_id: str, *, source: str, now: datetime
) -> bool:
    """Give the member the badge; False (nothing written) when they hold it already."""
    cur = conn.execute(
        "INSERT INTO member_badges (member_id, badge_id, earned_at, source) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (member_id, badge_id) DO NOTHING",
        (member_id, badge_id, ts(now), source),
    )
    return cur.rowcount == 1


def badges_of(conn: sqlite3.Connection, member_id: int) -> dict[str, EarnedBadge]:
    """Every badge the member holds, by badge id."""
    rows = conn.execute(
        "SELECT badge_id, earned_at, source FROM member_badges WHERE member_id = ?",
        (member_id,),
    ).fetchall()
    return {row[0]: EarnedBadge(row[0], dt(row[1]), row[2]) for row in rows}


def holders(
    conn: sqlite3.Connection, member_ids: Collection[int], badge_ids: Collection[str]
) -> dict[int, set[str]]:
    """Which of these badges each of these members holds (those holding any): one query for
    a whole import batch."""
    held: dict[int, set[str]] = {}
    for member_id, badge_id in conn.execute(
        "SELECT member_id, badge_id FROM member_badges"
        " WHERE member_id IN (SELECT value FROM json_each(?))"
        " AND badge_id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(member_ids)), json.dumps(sorted(badge_ids))),
    ):
        held.setdefault(int(member_id), set()).add(str(badge_id))
    return held


def prizes_of(conn: sqlite3.Connection, member_id: int) -> dict[str, SetPrize]:
    """The set prizes the member received, by set id."""
    rows = conn.execute(
        "SELECT p.set_id, p.operation_id, p.redemption_id, p.awarded_at, o.points"
        " FROM badge_set_prizes AS p JOIN operations AS o ON o.id = p.operation_id"
        " WHERE p.member_id = ?",
        (member_id,),
    ).fetchall()
    return {row[0]: SetPrize(row[0], row[1], row[2], dt(row[3]), row[4]) for row in rows}


def prize_paid(conn: sqlite3.Connection, member_id: int, set_id: str) -> bool:
    """True when the member received the set's prize already."""
    row = conn.execute(
        "SELECT 1 FROM badge_set_prizes WHERE member_id = ? AND set_id = ?", (member_id, set_id)
    ).fetchone()
    return row is not None


def _record_prize(
    conn: sqlite3.Connection,
    member_id: int,
    set_id: str,
    badges: Sequence[str],
    operation_id: int,
    redemption_id: int | None,
    now: datetime,
) -> None:
    conn.execute(
        "INSERT INTO badge_set_prizes (member_id, set_id, badges, operation_id, redemption_id,"
        " awarded_at) VALUES (?, ?, ?, ?, ?, ?)",
        (member_id, set_id, json.dumps(list(badges)), operation_id, redemption_id, ts(now)),
    )


def pay_set_points(
    conn: sqlite3.Connection,
    member_id: int,
    set_id: str,
    points: int,
    *,
    badges: Sequence[str],
    expires_at: datetime | None,
    notice: Push,
    now: datetime,
) -> int | None:
    """Credit a set's prize points from the 'badge' source and tell the member, in one
    transaction; None (nothing written) when the prize was paid already. Raises the ledger's
    errors (NotFound, Conflict, InvalidRequest)."""
    with atomic(conn):
        if prize_paid(conn, member_id, set_id):
            return None
        result = ledger.earn(
            conn,
            member_id,
            points,
            kind=BADGE_SOURCE,
            key=set_prize_key(set_id, member_id),
            actor=BADGE_ACTOR,
            expires_at=expires_at,
            reason=set_id,
            meta={"badge_set": set_id},
            now=now,
        )
        _record_prize(conn, member_id, set_id, badges, result.operation_id, None, now)
        enqueue(conn, [notice], now)
        return result.operation_id


def give_set_item(
    conn: sqlite3.Connection,
    member_id: int,
    set_id: str,
    sku: str,
    *,
    badges: Sequence[str],
    expires_at: datetime | None,
    valid_until: date | None,
    refund_if_unused: bool,
    offer_ttl: timedelta,
    greeting: Callable[[Redemption], Push],
    now: datetime,
) -> Redemption | None:
    """Give a set's prize item free, the way a family birthday gives one
    (storage.dependants.give_item: its price credited from the 'badge' source and redeemed
    at once), and tell the member its code; None when the prize was paid already. Raises
    what give_item raises (SoldOut, NotAvailable, LimitReached...) with nothing written."""
    key = set_prize_key(set_id, member_id)
    with atomic(conn):
        if prize_paid(conn, member_id, set_id):
            return None
        # Our own savepoint: the completing transaction (a purchase, an approval) must go on
        # when the item cannot be given, and under Store.write `atomic` adds none.
        conn.execute("SAVEPOINT badge_set_item")
        try:
            redemption = dependants.give_item(
                conn,
                member_id,
                sku,
                key=key,
                expires_at=expires_at,
                reason=set_id,
                valid_until=valid_until,
                refund_if_unused=refund_if_unused,
                offer_ttl=offer_ttl,
                greeting=greeting,
                now=now,
                kind=BADGE_SOURCE,
                actor=BADGE_ACTOR,
                meta={"badge_set": set_id, "item": sku},
            )
            if redemption is None:
                # The key is booked but no prize row: only a forged ledger gets here.
                raise StoreError(f"badge set {set_id}: prize key {key} booked without a prize")
            row = conn.execute(
                "SELECT id FROM operations WHERE idempotency_key = ?", (key,)
            ).fetchone()
            _record_prize(conn, member_id, set_id, badges, int(row[0]), redemption.id, now)
        except BaseException:
            conn.execute("ROLLBACK TO badge_set_item")
            conn.execute("RELEASE badge_set_item")
            raise
        conn.execute("RELEASE badge_set_item")
        return redemption


def lifetime_figures(
    conn: sqlite3.Connection, member_id: int, eco_categories: Collection[str]
) -> LifetimeFigures:
    """The member's lifetime eco spend, green points, completed surveys and purchases
    (a reversed purchase counts for nothing)."""
    # Through the member's postings (indexed by account): one member's history, not the table.
    row = conn.execute(
        "SELECT count(*),"
        " coalesce(sum(CASE WHEN eco THEN fen END), 0),"
        " coalesce(sum(CASE WHEN eco THEN points + coalesce(("
        "   SELECT c.points FROM operations AS c"
        "   WHERE c.idempotency_key = k || ':campaign' AND c.kind = 'campaign'), 0) END), 0)"
        " FROM (SELECT o.points AS points, o.idempotency_key AS k,"
        # DOUBLE PRECISION: SQLite's REAL (PostgreSQL's REAL is single precision).
        "   CAST(round(CAST(json_extract(o.meta, '$.amount') AS DOUBLE PRECISION) * 100)"
        "   AS BIGINT) AS fen,"
        "   json_extract(o.meta, '$.category') IN (SELECT value FROM json_each(?)) AS eco"
        "   FROM accounts AS a"
        "   JOIN postings AS p ON p.account_id = a.id"
        "   JOIN operations AS o ON o.id = p.operation_id"
        "   WHERE a.member_id = ? AND o.kind = 'purchase'"
        "   AND NOT EXISTS (SELECT 1 FROM operations AS r WHERE r.reverses_operation_id = o.id))"
        " AS purchase",
        (json.dumps(sorted(eco_categories)), member_id),
    ).fetchone()
    surveys = conn.execute(
        "SELECT count(*) FROM survey_responses WHERE member_id = ? AND completed_at IS NOT NULL",
        (member_id,),
    ).fetchone()
    return LifetimeFigures(
        eco_spend_fen=int(row[1]),
        green_points=int(row[2]),
        surveys_completed=int(surveys[0]),
        purchases=int(row[0]),
    )


def badge_wall(
    conn: sqlite3.Connection, member_id: int
) -> tuple[Mapping[str, EarnedBadge], Mapping[str, SetPrize]]:
    """The badges and set prizes the member holds, read together."""
    return badges_of(conn, member_id), prizes_of(conn, member_id)


class Badges(Facade):
    """Async access to members' badges and set prizes."""

    badges_of = looks_up(badges_of)
    prizes_of = looks_up(prizes_of)
    badge_wall = looks_up(badge_wall)
    lifetime_figures = reads(lifetime_figures)
