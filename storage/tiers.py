"""Member tiers: the qualifying months, the tier each member holds, and its history.

Like `storage.tasks`, the core is synchronous functions on a `sqlite3.Connection` run inside
the transaction of what moved them (a purchase batch, the yearly review); the `Tiers` facade
serves the reads. What a tier is and what it needs lives in bot/programme/tiers.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from storage.facade import Facade, looks_up
from storage.ledger.bookkeeping import request_fingerprint
from storage.purchase_returns import TakenBack, take_back
from storage.sql import atomic, dt, ts

# The operation that takes back a tier entry reward a purchase return undid.
ENTRY_REWARD_BACK_KIND: Final = "tier_reversal"
TIER_SOURCE: Final = "tier"

# (member id, local month '2026-12', purchase points, fen spent); negative for a return.
MonthMove = tuple[int, str, int, int]


@dataclass(frozen=True, slots=True)
class Qualifying:
    """A member's qualifying figures over some months: purchase points and fen spent."""

    points: int = 0
    fen: int = 0


@dataclass(frozen=True, slots=True)
class TierChange:
    """One change of a member's tier."""

    member_id: int
    from_tier: str | None
    to_tier: str
    reason: str
    total: int
    operation_id: int | None
    actor: str
    changed_at: datetime


def add_months(conn: sqlite3.Connection, moves: Sequence[MonthMove]) -> None:
    """Add purchases (or take returns) to members' months, never below 0."""
    conn.executemany(
        "INSERT INTO tier_months (member_id, month, points, fen)"
        " VALUES (:member, :month, CASE WHEN :points > 0 THEN :points ELSE 0 END,"
        " CASE WHEN :fen > 0 THEN :fen ELSE 0 END) ON CONFLICT (member_id, month) DO UPDATE SET"
        " points = CASE WHEN tier_months.points + :points > 0"
        " THEN tier_months.points + :points ELSE 0 END,"
        " fen = CASE WHEN tier_months.fen + :fen > 0 THEN tier_months.fen + :fen ELSE 0 END",
        [
            {"member": member, "month": month, "points": points, "fen": fen}
            for member, month, points, fen in moves
        ],
    )


def qualifying(
    conn: sqlite3.Connection, member_ids: Collection[int], months: Collection[str]
) -> dict[int, Qualifying]:
    """Each of these members' figures summed over these months, a run of consecutive months
    as a tier's window is (those with any)."""
    if not months or not member_ids:
        return {}
    # One range of the primary key per member (member, month), not a look-up per month: an
    # import batch asks for 10,000 members' twelve months.
    rows = conn.execute(
        "SELECT member_id, sum(points), sum(fen) FROM tier_months"
        " WHERE member_id IN (SELECT value FROM json_each(?)) AND month BETWEEN ? AND ?"
        " GROUP BY member_id",
        (json.dumps(sorted(member_ids)), min(months), max(months)),
    )
    return {int(m): Qualifying(int(p), int(f)) for m, p, f in rows}


def held(conn: sqlite3.Connection, member_ids: Collection[int]) -> dict[int, str]:
    """The tier each of these members holds (those above the lowest, or ever changed)."""
    rows = conn.execute(
        "SELECT member_id, tier_id FROM member_tiers"
        " WHERE member_id IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(member_ids)),),
    )
    return {int(m): str(t) for m, t in rows}


def change_tier(
    conn: sqlite3.Connection,
    member_id: int,
    from_tier: str | None,
    to_tier: str,
    *,
    reason: str,
    total: int,
    actor: str,
    now: datetime,
    operation_id: int | None = None,
) -> TierChange:
    """Move a member to `to_tier` and record the change, in the caller's transaction."""
    at = ts(now)
    with atomic(conn):
        conn.execute(
            "INSERT INTO member_tiers (member_id, tier_id, since) VALUES (?, ?, ?)"
            " ON CONFLICT (member_id) DO UPDATE SET tier_id = excluded.tier_id,"
            " since = excluded.since",
            (member_id, to_tier, at),
        )
        conn.execute(
            "INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, total,"
            " operation_id, actor, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (member_id, from_tier, to_tier, reason, total, operation_id, actor, at),
        )
    return TierChange(member_id, from_tier, to_tier, reason, total, operation_id, actor, now)


def change_tiers(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[int, str | None, str, int, int | None]],
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> None:
    """Move many members, (member, from tier, to tier, total, operation id) each, and record
    every change, in the caller's transaction (two statements for the lot)."""
    at = ts(now)
    with atomic(conn):
        conn.executemany(
            "INSERT INTO member_tiers (member_id, tier_id, since) VALUES (?, ?, ?)"
            " ON CONFLICT (member_id) DO UPDATE SET tier_id = excluded.tier_id,"
            " since = excluded.since",
            [(member, to_tier, at) for member, _from, to_tier, _total, _op in rows],
        )
        conn.executemany(
            "INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, total,"
            " operation_id, actor, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (member, from_tier, to_tier, reason, total, op, actor, at)
                for member, from_tier, to_tier, total, op in rows
            ],
        )


def tier_changes(conn: sqlite3.Connection, member_id: int) -> list[TierChange]:
    """A member's tier changes, oldest first."""
    rows = conn.execute(
        "SELECT member_id, from_tier, to_tier, reason, total, operation_id, actor, changed_at"
        " FROM tier_changes WHERE member_id = ? ORDER BY changed_at, id",
        (member_id,),
    )
    return [
        TierChange(int(m), f, str(t), str(r), int(total), op, str(a), dt(at))
        for m, f, t, r, total, op, a, at in rows
    ]


@dataclass(frozen=True, slots=True)
class EntryReward:
    """A tier entry reward as booked: its operation, points, and whether a return took it
    back."""

    operation_id: int
    points: int
    taken_back: bool


def entry_rewards(conn: sqlite3.Connection, keys: Collection[str]) -> dict[str, EntryReward]:
    """The entry rewards booked under these idempotency keys (those that exist)."""
    rows = conn.execute(
        "SELECT o.idempotency_key, o.id, o.points, EXISTS (SELECT 1 FROM operations AS r"
        " WHERE r.reverses_operation_id = o.id) FROM operations AS o"
        " WHERE o.idempotency_key IN (SELECT value FROM json_each(?)) AND o.kind = 'tier'",
        (json.dumps(sorted(keys)),),
    )
    return {str(k): EntryReward(int(op), int(p), bool(back)) for k, op, p, back in rows}


def take_back_entry_reward(
    conn: sqlite3.Connection,
    member_id: int,
    reward: EntryReward,
    *,
    tier_id: str,
    return_operation: int,
    actor: str,
    now: datetime,
) -> TakenBack:
    """Take back an entry reward a purchase return undid, as a return takes points back (its
    own lots first, the shortfall owed), once: the operation reverses the reward."""
    return take_back(
        conn,
        member_id,
        [(TIER_SOURCE, reward.points)],
        first_from=[reward.operation_id],
        kind=ENTRY_REWARD_BACK_KIND,
        key=f"tier_reversal:{reward.operation_id}",
        fingerprint=request_fingerprint(
            {"op": ENTRY_REWARD_BACK_KIND, "reward": reward.operation_id}
        ),
        actor=actor,
        now=now,
        meta={"tier": tier_id, "return_operation": return_operation},
        reverses=reward.operation_id,
    )


def held_one(conn: sqlite3.Connection, member_id: int) -> str | None:
    """The tier the member holds (None: the lowest, never changed)."""
    return held(conn, [member_id]).get(member_id)


def qualifying_one(conn: sqlite3.Connection, member_id: int, months: Collection[str]) -> Qualifying:
    """The member's figures over these months."""
    return qualifying(conn, [member_id], months).get(member_id, Qualifying())


def standing_one(
    conn: sqlite3.Connection, member_id: int, months: Collection[str]
) -> tuple[str | None, Qualifying]:
    """The tier the member holds (None: the lowest) and their figures over these months, in
    one indexed read (the tier line of /balance)."""
    row = conn.execute(
        "SELECT (SELECT tier_id FROM member_tiers WHERE member_id = :member),"
        " coalesce(sum(points), 0), coalesce(sum(fen), 0) FROM tier_months"
        " WHERE member_id = :member AND month IN (SELECT value FROM json_each(:months))",
        {"member": member_id, "months": json.dumps(sorted(months))},
    ).fetchone()
    held_id, points, fen = row
    return (None if held_id is None else str(held_id)), Qualifying(int(points), int(fen))


class Tiers(Facade):
    """Async access to members' tiers and qualifying figures."""

    held_one = looks_up(held_one)
    qualifying_one = looks_up(qualifying_one)
    tier_changes = looks_up(tier_changes)
    standing_one = looks_up(standing_one)
