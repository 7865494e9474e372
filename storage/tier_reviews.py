"""The yearly tier review, its advance notice, and returns leaving the qualifying figures.

The review and the notice concern every member holding a tier, a million of them in a large
programme: they run as set-based SQL over a batch of members at a time (a range of member
ids), each batch one transaction, so the single writer is never held for long. The rules
come from bot/programme/tier_review.py as plain figures (the levels and their thresholds in
rank order, how many steps a review may take, the months that count, the messages and their
dedupe key prefix); this module only applies them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from storage.facade import Facade, looks_up, writes
from storage.sql import atomic, ts
from storage.tiers import add_months


@dataclass(frozen=True, slots=True)
class ReviewRules:
    """What a review applies: the levels (tier id, threshold) lowest first, the measure, the
    months of the year reviewed and of the time since, the steps a review may go down."""

    levels: Sequence[tuple[str, int]]
    by_points: bool
    # The reviewed window's first and last local month ('2026-01', '2026-12').
    first_month: str
    last_month: str
    # The months since the review day up to today: what a member has bought since counts as a
    # floor (a late review never takes a member below what they reach already).
    since_first: str
    since_last: str
    max_steps: int
    # Only tiers held from before this moment are reviewed (the review day's local midnight):
    # a tier reached since, or a member already moved by this review, is left alone.
    review_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewMessages:
    """The message each downgrade gets: its catalog key, params per (from rank, to rank), and
    the dedupe key prefix the member id completes."""

    message_key: str
    params: Mapping[tuple[int, int], Mapping[str, Any]]
    key_prefix: str


def _levels_json(rules: ReviewRules) -> str:
    """The levels as one JSON parameter: objects, which both engines' json_extract read."""
    return json.dumps([{"tier": t, "threshold": threshold} for t, threshold in rules.levels])


def _batch_end(conn: sqlite3.Connection, after: int, size: int) -> int | None:
    """The last member id of the next batch of tier holders after `after` (None: no more)."""
    row = conn.execute(
        "SELECT max(member_id) FROM (SELECT member_id FROM member_tiers WHERE member_id > ?"
        " ORDER BY member_id LIMIT ?) AS batch",
        (after, size),
    ).fetchone()
    return None if row[0] is None else int(row[0])


_MOVES_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS tier_review_moves (member_id INTEGER PRIMARY KEY,"
    " from_rank INTEGER NOT NULL, to_rank INTEGER NOT NULL, total BIGINT NOT NULL)"
)

_PLAN_MOVES = (
    "WITH levels (rank, tier_id, threshold) AS ("
    " SELECT CAST(key AS INTEGER), json_extract(value, '$.tier'),"
    " CAST(json_extract(value, '$.threshold') AS BIGINT) FROM json_each(:levels))"
    ", held AS ("
    " SELECT mt.member_id, l.rank AS held_rank FROM member_tiers AS mt"
    " JOIN levels AS l ON l.tier_id = mt.tier_id"
    " WHERE mt.member_id > :after AND mt.member_id <= :end AND mt.since < :review_at"
    " AND l.rank > 0),"
    " sums AS ("
    " SELECT h.member_id, h.held_rank,"
    " coalesce(sum(CASE WHEN tm.month <= :last THEN"
    " (CASE WHEN :by_points = 1 THEN tm.points ELSE tm.fen END) END), 0) AS eve,"
    " coalesce(sum(CASE WHEN tm.month >= :since_first THEN"
    " (CASE WHEN :by_points = 1 THEN tm.points ELSE tm.fen END) END), 0) AS since"
    " FROM held AS h LEFT JOIN tier_months AS tm ON tm.member_id = h.member_id"
    " AND tm.month BETWEEN :first AND :since_last GROUP BY h.member_id, h.held_rank),"
    " measured AS ("
    " SELECT member_id, held_rank,"
    " CASE WHEN :by_points = 1 THEN eve ELSE CAST(eve AS BIGINT) / 100 END AS total,"
    " CASE WHEN :by_points = 1 THEN since ELSE CAST(since AS BIGINT) / 100 END AS since_total"
    " FROM sums),"
    # The highest level either total reaches (the lowest's threshold is 0: always one).
    " reached AS ("
    " SELECT member_id, held_rank, total, (SELECT max(rank) FROM levels"
    " WHERE threshold <= total OR threshold <= since_total) AS rank FROM measured),"
    # min(held, max(held - steps, reached)), spelled as both engines take it.
    " target AS ("
    " SELECT member_id, held_rank, total, CASE WHEN rank >= held_rank THEN held_rank"
    " WHEN rank > held_rank - :steps THEN rank ELSE held_rank - :steps END AS to_rank"
    " FROM reached)"
    " INSERT INTO tier_review_moves (member_id, from_rank, to_rank, total)"
    " SELECT member_id, held_rank, to_rank, total FROM target WHERE to_rank < held_rank"
)

_MOVE_HELD = (
    "WITH levels (rank, tier_id, threshold) AS ("
    " SELECT CAST(key AS INTEGER), json_extract(value, '$.tier'),"
    " CAST(json_extract(value, '$.threshold') AS BIGINT) FROM json_each(:levels))"
    " UPDATE member_tiers SET tier_id = l.tier_id, since = :now"
    " FROM tier_review_moves AS m JOIN levels AS l ON l.rank = m.to_rank"
    " WHERE member_tiers.member_id = m.member_id"
)

_RECORD_CHANGES = (
    "WITH levels (rank, tier_id, threshold) AS ("
    " SELECT CAST(key AS INTEGER), json_extract(value, '$.tier'),"
    " CAST(json_extract(value, '$.threshold') AS BIGINT) FROM json_each(:levels))"
    " INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, total,"
    " operation_id, actor, changed_at)"
    " SELECT m.member_id, f.tier_id, t.tier_id, 'review', m.total, NULL, :actor, :now"
    " FROM tier_review_moves AS m JOIN levels AS f ON f.rank = m.from_rank"
    " JOIN levels AS t ON t.rank = m.to_rank ORDER BY m.member_id"
)

_TELL_MOVED = (
    "INSERT INTO outbox (dedupe_key, member_id, category, message_key, params, created_at)"
    " SELECT CAST(:prefix AS TEXT) || m.member_id, m.member_id, 'service', :message_key,"
    " json_extract(msg.value, '$.params'), :now"
    " FROM tier_review_moves AS m JOIN json_each(:messages) AS msg"
    " ON CAST(json_extract(msg.value, '$.from') AS INTEGER) = m.from_rank"
    " AND CAST(json_extract(msg.value, '$.to') AS INTEGER) = m.to_rank"
    " WHERE true ON CONFLICT (dedupe_key) DO NOTHING"
)


def review_batch(
    conn: sqlite3.Connection,
    rules: ReviewRules,
    messages: ReviewMessages,
    *,
    after: int,
    size: int,
    actor: str,
    now: datetime,
) -> tuple[int | None, int]:
    """Review the next `size` tier holders after member id `after`, in one transaction: move
    each down to the tier the rules give (never up), record the change, queue the message;
    return (the last member id looked at, None when none were left; how many moved down)."""
    with atomic(conn):
        end = _batch_end(conn, after, size)
        if end is None:
            return None, 0
        conn.execute(_MOVES_TABLE)
        conn.execute("DELETE FROM tier_review_moves")
        levels = _levels_json(rules)
        conn.execute(
            _PLAN_MOVES,
            {
                "levels": levels,
                "after": after,
                "end": end,
                "review_at": ts(rules.review_at),
                "by_points": int(rules.by_points),
                "first": rules.first_month,
                "last": rules.last_month,
                "since_first": rules.since_first,
                "since_last": rules.since_last,
                "steps": rules.max_steps,
            },
        )
        moved = int(conn.execute("SELECT count(*) FROM tier_review_moves").fetchone()[0])
        if moved:
            at = ts(now)
            conn.execute(_MOVE_HELD, {"levels": levels, "now": at})
            conn.execute(_RECORD_CHANGES, {"levels": levels, "actor": actor, "now": at})
            conn.execute(
                _TELL_MOVED,
                {
                    "prefix": messages.key_prefix,
                    "message_key": messages.message_key,
                    "messages": json.dumps(
                        [
                            {"from": f, "to": t, "params": params}
                            for (f, t), params in messages.params.items()
                        ],
                        ensure_ascii=False,
                        sort_keys=True,
                        default=str,
                    ),
                    "now": at,
                },
            )
        conn.execute("DELETE FROM tier_review_moves")
    return end, moved


_TELL_SHORT = (
    "WITH levels (rank, tier_id, threshold) AS ("
    " SELECT CAST(key AS INTEGER), json_extract(value, '$.tier'),"
    " CAST(json_extract(value, '$.threshold') AS BIGINT) FROM json_each(:levels))"
    ", held AS ("
    " SELECT mt.member_id, l.rank, l.threshold FROM member_tiers AS mt"
    " JOIN levels AS l ON l.tier_id = mt.tier_id"
    " WHERE mt.member_id > :after AND mt.member_id <= :end AND l.rank > 0),"
    " measured AS ("
    " SELECT h.member_id, h.rank, h.threshold, CASE WHEN :by_points = 1"
    " THEN CAST(coalesce(sum(tm.points), 0) AS BIGINT)"
    " ELSE CAST(coalesce(sum(tm.fen), 0) AS BIGINT) / 100 END AS total"
    " FROM held AS h LEFT JOIN tier_months AS tm ON tm.member_id = h.member_id"
    " AND tm.month BETWEEN :first AND :last GROUP BY h.member_id, h.rank, h.threshold)"
    " INSERT INTO outbox (dedupe_key, member_id, category, message_key, params, created_at)"
    " SELECT CAST(:prefix AS TEXT) || m.member_id, m.member_id, 'service', :message_key,"
    " json_set(json_extract(msg.value, '$.params'), '$.amount', m.threshold - m.total), :now"
    " FROM measured AS m JOIN json_each(:messages) AS msg"
    " ON CAST(json_extract(msg.value, '$.rank') AS INTEGER) = m.rank"
    " WHERE m.total < m.threshold ON CONFLICT (dedupe_key) DO NOTHING RETURNING member_id"
)


def notice_batch(
    conn: sqlite3.Connection,
    rules: ReviewRules,
    messages: ReviewMessages,
    *,
    after: int,
    size: int,
    now: datetime,
) -> tuple[int | None, int]:
    """Tell the next `size` tier holders after member id `after` whose total over the rules'
    months is short of their tier's threshold what keeps it (params per rank get `amount`,
    what is missing), once (the dedupe key); return (the last member id looked at, None when
    none were left; how many messages were new)."""
    with atomic(conn):
        end = _batch_end(conn, after, size)
        if end is None:
            return None, 0
        # The new messages' rows (a statement opening with WITH leaves SQLite's rowcount -1).
        told = conn.execute(
            _TELL_SHORT,
            {
                "levels": _levels_json(rules),
                "after": after,
                "end": end,
                "by_points": int(rules.by_points),
                "first": rules.first_month,
                "last": rules.last_month,
                "prefix": messages.key_prefix,
                "message_key": messages.message_key,
                "messages": json.dumps(
                    [{"rank": rank, "params": p} for (rank, _), p in messages.params.items()],
                    ensure_ascii=False,
                    sort_keys=True,
                    default=str,
                ),
                "now": ts(now),
            },
        ).fetchall()
    return end, len(told)


def review_state(conn: sqlite3.Connection, year: int) -> tuple[bool, bool]:
    """Whether the year's notices were queued, and whether its review finished."""
    row = conn.execute(
        "SELECT noticed_at IS NOT NULL, reviewed_at IS NOT NULL FROM tier_reviews WHERE year = ?",
        (year,),
    ).fetchone()
    return (False, False) if row is None else (bool(row[0]), bool(row[1]))


def record_notices(conn: sqlite3.Connection, year: int, notices: int, now: datetime) -> None:
    """Record that the year's downgrade notices were queued (`notices` of them)."""
    conn.execute(
        "INSERT INTO tier_reviews (year, noticed_at, notices) VALUES (?, ?, ?)"
        " ON CONFLICT (year) DO UPDATE SET noticed_at = excluded.noticed_at,"
        " notices = excluded.notices WHERE tier_reviews.noticed_at IS NULL",
        (year, ts(now), notices),
    )


def record_review(conn: sqlite3.Connection, year: int, downgrades: int, now: datetime) -> None:
    """Record that the year's review finished (`downgrades` members moved down)."""
    conn.execute(
        "INSERT INTO tier_reviews (year, reviewed_at, downgrades) VALUES (?, ?, ?)"
        " ON CONFLICT (year) DO UPDATE SET reviewed_at = excluded.reviewed_at,"
        " downgrades = excluded.downgrades WHERE tier_reviews.reviewed_at IS NULL",
        (year, ts(now), downgrades),
    )


@dataclass(frozen=True, slots=True)
class PurchaseFacts:
    """What a purchase operation added to its member's qualifying figures."""

    member_id: int
    kind: str
    points: int
    meta: Mapping[str, Any]


def purchase_facts(conn: sqlite3.Connection, operation_id: int) -> PurchaseFacts | None:
    """An operation's member, kind, points and meta (None: no such operation)."""
    row = conn.execute(
        "SELECT member_id, kind, points, meta FROM operations WHERE id = ?", (operation_id,)
    ).fetchone()
    if row is None:
        return None
    return PurchaseFacts(int(row[0]), str(row[1]), int(row[2]), json.loads(row[3] or "{}"))


def withdraw_figures(
    conn: sqlite3.Connection,
    operation_id: int,
    member_id: int,
    month: str,
    points: int,
    fen: int,
    now: datetime,
) -> bool:
    """Take a returned purchase's figures out of its month, once per operation; False when it
    was taken out already."""
    with atomic(conn):
        cur = conn.execute(
            "INSERT INTO tier_withdrawals (operation_id, member_id, month, points, fen,"
            " withdrawn_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (operation_id) DO NOTHING",
            (operation_id, member_id, month, points, fen, ts(now)),
        )
        if cur.rowcount == 0:
            return False
        add_months(conn, [(member_id, month, -points, -fen)])
    return True


class TierReviews(Facade):
    """Async runs of the review and the notice, a batch per write transaction."""

    review_state = looks_up(review_state)
    record_notices = writes(record_notices)
    record_review = writes(record_review)

    async def review(
        self,
        rules: ReviewRules,
        messages: ReviewMessages,
        *,
        actor: str,
        now: datetime,
        batch: int = 20_000,
    ) -> int:
        """Review every tier holder, a batch per transaction; return how many moved down."""
        after, moved = 0, 0
        while True:
            end, count = await self._write(
                partial(
                    review_batch,
                    rules=rules,
                    messages=messages,
                    after=after,
                    size=batch,
                    actor=actor,
                    now=now,
                )
            )
            if end is None:
                return moved
            after, moved = end, moved + count

    async def notify(
        self, rules: ReviewRules, messages: ReviewMessages, *, now: datetime, batch: int = 20_000
    ) -> int:
        """Queue the notices to every tier holder short of their tier; return how many."""
        after, told = 0, 0
        while True:
            end, count = await self._write(
                partial(
                    notice_batch, rules=rules, messages=messages, after=after, size=batch, now=now
                )
            )
            if end is None:
                return told
            after, told = end, told + count
