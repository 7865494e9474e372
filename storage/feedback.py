"""Rewarded suggestions (/feedback): filed by members, reviewed once by an operator.

A suggestion earns points only when an operator approves it: the decision, the payment (a
'feedback' ledger operation keyed 'feedback:<id>') and the notice to the member are one
transaction. Like `storage.surveys`, the core is synchronous functions on a
`sqlite3.Connection`, each all-or-nothing through `storage.sql.atomic`; the `Surveys` facade
serves them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from storage import ledger
from storage.errors import InvalidRequest, InvalidState, LimitReached, NotFound
from storage.pushes import Push, enqueue
from storage.sql import atomic, dt, dt_or_none, insert_id, required_now, ts


@dataclass(frozen=True, slots=True)
class Feedback:
    """A member's suggestion and what an operator decided."""

    id: int
    member_id: int
    telegram_id: int
    member_code: str
    member_name: str
    text: str
    local_day: date
    created_at: datetime
    status: str
    reviewed_at: datetime | None
    reviewed_by: str | None
    reward_points: int
    reward_operation_id: int | None
    # The same message was filed before (a redelivered update): nothing new was written.
    replayed: bool = field(default=False, compare=False)


_FEEDBACK_SELECT: Final = (
    "SELECT f.id, f.member_id, m.telegram_id, m.member_code, m.first_name, f.text, f.local_day,"
    " f.created_at, f.status, f.reviewed_at, f.reviewed_by, f.reward_points,"
    " f.reward_operation_id FROM feedback AS f JOIN members AS m ON m.id = f.member_id"
)


def _feedback(row: Sequence[Any], *, replayed: bool = False) -> Feedback:
    return Feedback(
        id=row[0],
        member_id=row[1],
        telegram_id=row[2],
        member_code=row[3],
        member_name=row[4] or "",
        text=row[5],
        local_day=date.fromisoformat(row[6]),
        created_at=dt(row[7]),
        status=row[8],
        reviewed_at=dt_or_none(row[9]),
        reviewed_by=row[10],
        reward_points=row[11],
        reward_operation_id=row[12],
        replayed=replayed,
    )


def feedback_item(conn: sqlite3.Connection, feedback_id: int) -> Feedback:
    """One suggestion; raises NotFound."""
    row = conn.execute(_FEEDBACK_SELECT + " WHERE f.id = ?", (feedback_id,)).fetchone()
    if row is None:
        raise NotFound(f"no suggestion {feedback_id}")
    return _feedback(row)


def feedback_count(conn: sqlite3.Connection, member_id: int, local_day: date) -> int:
    """How many suggestions the member sent on local `day`."""
    row = conn.execute(
        "SELECT count(*) FROM feedback WHERE member_id = ? AND local_day = ?",
        (member_id, local_day.isoformat()),
    ).fetchone()
    return int(row[0])


def submit_feedback(
    conn: sqlite3.Connection,
    member_id: int,
    text: str,
    *,
    source: str,
    local_day: date,
    daily_limit: int,
    now: datetime | None = None,
) -> Feedback:
    """File a suggestion for review, at most `daily_limit` per member and local day; the same
    `source` again returns the first (replayed). Raises NotFound, LimitReached,
    InvalidRequest."""
    now = required_now(now)
    cleaned = text.strip()
    if not cleaned:
        raise InvalidRequest("a suggestion needs some text")
    if not source:
        raise InvalidRequest("say which message the suggestion came from")
    with atomic(conn):
        row = conn.execute(_FEEDBACK_SELECT + " WHERE f.source = ?", (source,)).fetchone()
        if row is not None:
            if row[1] != member_id:
                raise InvalidRequest(f"message {source} was filed by another member")
            return _feedback(row, replayed=True)
        if conn.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
            raise NotFound(f"no member {member_id}")
        if feedback_count(conn, member_id, local_day) >= daily_limit:
            raise LimitReached(daily_limit)
        feedback_id = insert_id(
            conn,
            "INSERT INTO feedback (member_id, source, text, local_day, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (member_id, source, cleaned, local_day.isoformat(), ts(now)),
        )
        return feedback_item(conn, feedback_id)


def pending_feedback(conn: sqlite3.Connection, *, limit: int) -> tuple[list[Feedback], int]:
    """The oldest suggestions waiting for review, and how many wait in all; raises
    InvalidRequest (limit <= 0)."""
    if limit <= 0:
        raise InvalidRequest("limit must be > 0")
    total = conn.execute("SELECT count(*) FROM feedback WHERE status = 'pending'").fetchone()[0]
    found = [
        _feedback(row)
        for row in conn.execute(
            f"{_FEEDBACK_SELECT} WHERE f.status = 'pending' ORDER BY f.id LIMIT ?",  # noqa: S608
            (limit,),
        )
    ]
    return found, int(total)


def review_feedback(
    conn: sqlite3.Connection,
    feedback_id: int,
    *,
    approve: bool,
    reward_points: int,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime | None = None,
    notice: Callable[[Feedback], Push] | None = None,
) -> Feedback:
    """Approve (paying `reward_points`, once, keyed 'feedback:<id>') or reject a pending
    suggestion, and queue the member's `notice` in the same transaction. Raises NotFound,
    InvalidState(the status it has), InvalidRequest."""
    now = required_now(now)
    if isinstance(reward_points, bool) or not isinstance(reward_points, int) or reward_points < 0:
        raise InvalidRequest("the reward must be an integer >= 0")
    if not actor or not actor.strip():
        raise InvalidRequest("say who reviewed the suggestion")
    now_ts = ts(now)
    with atomic(conn):
        item = feedback_item(conn, feedback_id)
        if item.status != "pending":
            raise InvalidState(item.status)
        points = reward_points if approve else 0
        operation_id = None
        if points:
            operation_id = ledger.earn(
                conn,
                item.member_id,
                points,
                kind="feedback",
                key=f"feedback:{feedback_id}",
                actor=actor,
                expires_at=reward_expires_at,
                reference=f"feedback:{feedback_id}",
                meta={"feedback": feedback_id},
                now=now,
            ).operation_id
        conn.execute(
            "UPDATE feedback SET status = ?, reviewed_at = ?, reviewed_by = ?, reward_points = ?,"
            " reward_operation_id = ? WHERE id = ?",
            (
                "approved" if approve else "rejected",
                now_ts,
                actor,
                points,
                operation_id,
                feedback_id,
            ),
        )
        decided = feedback_item(conn, feedback_id)
        if notice is not None:
            enqueue(conn, [notice(decided)], now)
        return decided
