"""Task progress: how far each member is in each task and period, and the completions paid.

Every task kind moves progress through `advance`, inside the transaction of what caused it (a
purchase booked, a share approved, a check-in), so progress and its cause commit together or
not at all. The first time progress reaches the target in a period the task is completed:
its reward is booked in the same transaction under the key `task_reward_key` (so the ledger
itself refuses to pay one completion twice) and `notice` may queue the member's message. A
withdrawal (a returned purchase) lowers progress but never undoes a completion. Like
`storage.feedback`, the core is synchronous functions on a `sqlite3.Connection`; the `Tasks`
facade serves them.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from storage import ledger
from storage.errors import InvalidRequest, StoreError
from storage.facade import Facade, looks_up, writes
from storage.pushes import Push, enqueue
from storage.sql import atomic, dt, dt_or_none, required_now, ts


def task_reward_key(task_id: str, member_id: int, period: str) -> str:
    """The idempotency key of the reward for one completion."""
    return f"task:{task_id}:{member_id}:{period}"


@dataclass(frozen=True, slots=True)
class Reward:
    """What a completion pays: points from a source, with their expiry."""

    points: int
    kind: str  # the ledger source: "task", or "share_bonus" for the green-share bonus
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class TaskStep:
    """A member's progress in one task and period, after a move (or as it stands)."""

    member_id: int
    task_id: str
    period: str
    progress: int
    target: int
    completed_at: datetime | None
    reward_operation_id: int | None
    # This move completed the task (its reward, if any, booked now).
    completed_now: bool = False

    @property
    def completed(self) -> bool:
        """The task is done for this period."""
        return self.completed_at is not None


def _step(row: tuple[object, ...], *, completed_now: bool = False) -> TaskStep:
    member_id, task_id, period, progress, target, completed_at, reward = row
    assert isinstance(member_id, int) and isinstance(progress, int) and isinstance(target, int)
    return TaskStep(
        member_id=member_id,
        task_id=str(task_id),
        period=str(period),
        progress=progress,
        target=target,
        completed_at=dt_or_none(completed_at),  # type: ignore[arg-type]
        reward_operation_id=reward if isinstance(reward, int) else None,
        completed_now=completed_now,
    )


_SELECT = (
    "SELECT member_id, task_id, period, progress, target, completed_at, reward_operation_id"
    " FROM task_progress"
)


def advance(
    conn: sqlite3.Connection,
    member_id: int,
    task_id: str,
    period: str,
    delta: int,
    *,
    target: int,
    reward: Reward | None,
    actor: str,
    notice: Callable[[TaskStep], Push | None] | None = None,
    on_complete: Callable[[sqlite3.Connection, TaskStep], None] | None = None,
    now: datetime | None = None,
) -> TaskStep:
    """Move a member's progress by `delta` (negative: a withdrawal, never below 0); complete
    the task the first time it reaches `target` in the period, booking `reward`, running
    `on_complete` (a badge it earns) and queueing `notice`, all in the same transaction.
    Raises InvalidRequest (a target below 1) and the ledger's errors for the reward
    (NotFound, Conflict)."""
    now = required_now(now)
    if target < 1:
        raise InvalidRequest(f"task {task_id}: target must be at least 1")
    now_ts = ts(now)
    with atomic(conn):
        conn.execute(
            "INSERT INTO task_progress (member_id, task_id, period, progress, target, updated_at)"
            " VALUES (:member, :task, :period, CASE WHEN :delta > 0 THEN :delta ELSE 0 END,"
            " :target, :now) ON CONFLICT (member_id, task_id, period) DO UPDATE SET"
            " progress = CASE WHEN task_progress.progress + :delta > 0"
            " THEN task_progress.progress + :delta ELSE 0 END, updated_at = excluded.updated_at",
            {
                "member": member_id,
                "task": task_id,
                "period": period,
                "delta": delta,
                "target": target,
                "now": now_ts,
            },
        )
        row = conn.execute(
            _SELECT + " WHERE member_id = ? AND task_id = ? AND period = ?",
            (member_id, task_id, period),
        ).fetchone()
        step = _step(row)
        if step.completed or step.progress < step.target:
            return step
        operation_id = None
        if reward is not None and reward.points > 0:
            operation_id = ledger.earn(
                conn,
                member_id,
                reward.points,
                kind=reward.kind,
                key=task_reward_key(task_id, member_id, period),
                actor=actor,
                expires_at=reward.expires_at,
                reason=task_id,
                meta={"task": task_id, "period": period},
                now=now,
            ).operation_id
        conn.execute(
            "UPDATE task_progress SET completed_at = ?, reward_operation_id = ?"
            " WHERE member_id = ? AND task_id = ? AND period = ?",
            (now_ts, operation_id, member_id, task_id, period),
        )
        done = TaskStep(
            member_id,
            task_id,
            period,
            step.progress,
            step.target,
            now,
            operation_id,
            completed_now=True,
        )
        # The completion's message first, then what it earned besides (a badge, a set's prize):
        # the outbox sends in order.
        if notice is not None and (push := notice(done)) is not None:
            enqueue(conn, [push], now)
        if on_complete is not None:
            on_complete(conn, done)
        return done


def progress_of(
    conn: sqlite3.Connection, member_id: int, wanted: Collection[tuple[str, str]]
) -> dict[tuple[str, str], TaskStep]:
    """The member's progress in each (task id, period) asked for that has any."""
    found: dict[tuple[str, str], TaskStep] = {}
    for task_id, period in wanted:
        row = conn.execute(
            _SELECT + " WHERE member_id = ? AND task_id = ? AND period = ?",
            (member_id, task_id, period),
        ).fetchone()
        if row is not None:
            found[(task_id, period)] = _step(row)
    return found


def completions(conn: sqlite3.Connection, member_id: int, task_id: str) -> int:
    """How many times the member completed the task (all periods)."""
    row = conn.execute(
        "SELECT count(*) FROM task_progress"
        " WHERE member_id = ? AND task_id = ? AND completed_at IS NOT NULL",
        (member_id, task_id),
    ).fetchone()
    return int(row[0])


def completed_task_ids(conn: sqlite3.Connection, member_id: int) -> set[str]:
    """The tasks the member completed at least once (any period)."""
    return {
        str(row[0])
        for row in conn.execute(
            "SELECT DISTINCT task_id FROM task_progress"
            " WHERE member_id = ? AND completed_at IS NOT NULL",
            (member_id,),
        )
    }


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One row of the task export: a member's progress in one task and period."""

    member_code: str
    task_id: str
    period: str
    progress: int
    target: int
    completed_at: datetime | None
    reward_operation_id: int | None
    reward_points: int | None
    updated_at: datetime


def iter_task_records(conn: sqlite3.Connection, task_id: str | None = None) -> Iterator[TaskRecord]:
    """Every member's progress and completions (of one task, or all), with the points each
    reward paid, by task, period and member code."""
    cur = conn.execute(
        "SELECT m.member_code, p.task_id, p.period, p.progress, p.target, p.completed_at,"
        " p.reward_operation_id, o.points, p.updated_at FROM task_progress AS p"
        " JOIN members AS m ON m.id = p.member_id"
        " LEFT JOIN operations AS o ON o.id = p.reward_operation_id"
        " WHERE p.task_id = :task OR :task IS NULL ORDER BY p.task_id, p.period, m.member_code",
        {"task": task_id},
    )
    for row in cur:
        yield TaskRecord(
            member_code=str(row[0]),
            task_id=str(row[1]),
            period=str(row[2]),
            progress=int(row[3]),
            target=int(row[4]),
            completed_at=dt_or_none(row[5]),
            reward_operation_id=row[6],
            reward_points=row[7],
            updated_at=dt(row[8]),
        )


class Tasks(Facade):
    """Async access to task progress (one write transaction per call)."""

    advance = writes(advance)
    progress_of = looks_up(progress_of)
    completions = looks_up(completions)
    completed_task_ids = looks_up(completed_task_ids)


# --- issue 21: purchase-driven tasks (purchases, spend, streak) -----------------------------
# Booked purchases move progress in bulk (an import batch is thousands of them): their moves
# are recorded per operation, progress is added per member, task and period with one
# executemany, and only the rows that reached their target go through `complete`, which books
# rewards and messages exactly as `advance` does.

# (operation id, task id, member id, period, delta, ISO week for a streak task or None)
PurchaseMove = tuple[int, str, int, str, int, str | None]


@dataclass(frozen=True, slots=True)
class RecordedMove:
    """What one booked purchase added to one task, as recorded."""

    operation_id: int
    task_id: str
    member_id: int
    period: str
    delta: int
    week: str | None
    withdrawn: bool


def record_purchase_moves(conn: sqlite3.Connection, moves: Sequence[PurchaseMove]) -> None:
    """Record what each purchase adds to each task; an operation already counted for a task is
    refused by the primary key (IntegrityError): a purchase never counts twice."""
    conn.executemany(
        "INSERT INTO task_purchase_moves (operation_id, task_id, member_id, period, delta, week)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        moves,
    )


def add_progress(
    conn: sqlite3.Connection, rows: Sequence[tuple[int, str, str, int, int]], now: datetime
) -> None:
    """Add (member, task, period, delta, target) to progress, never below 0, without
    completing anything: `reached` then `complete` do that."""
    now_ts = ts(now)
    conn.executemany(
        "INSERT INTO task_progress (member_id, task_id, period, progress, target, updated_at)"
        " VALUES (:member, :task, :period, CASE WHEN :delta > 0 THEN :delta ELSE 0 END,"
        " :target, :now) ON CONFLICT (member_id, task_id, period) DO UPDATE SET"
        " progress = CASE WHEN task_progress.progress + :delta > 0"
        " THEN task_progress.progress + :delta ELSE 0 END, updated_at = excluded.updated_at",
        [
            {
                "member": member,
                "task": task,
                "period": period,
                "delta": delta,
                "target": target,
                "now": now_ts,
            }
            for member, task, period, delta, target in rows
        ],
    )


_OF_MEMBERS = " WHERE task_id = ? AND period = ? AND member_id IN (SELECT value FROM json_each(?))"


def progress_in(
    conn: sqlite3.Connection, task_id: str, period: str, member_ids: Collection[int]
) -> dict[int, TaskStep]:
    """Each of these members' progress in one task and period (those that have any)."""
    rows = conn.execute(
        _SELECT + _OF_MEMBERS,
        (task_id, period, json.dumps(sorted(member_ids))),
    )
    return {step.member_id: step for step in map(_step, rows)}


def completed_among(
    conn: sqlite3.Connection, task_id: str, period: str, member_ids: Collection[int]
) -> set[int]:
    """Those of these members who completed the task in the period."""
    rows = conn.execute(
        "SELECT member_id FROM task_progress WHERE task_id = ? AND period = ?"
        " AND member_id IN (SELECT value FROM json_each(?)) AND completed_at IS NOT NULL",
        (task_id, period, json.dumps(sorted(member_ids))),
    )
    return {int(row[0]) for row in rows}


def reached(
    conn: sqlite3.Connection, task_id: str, period: str, member_ids: Collection[int]
) -> list[TaskStep]:
    """These members' progress in the task and period that reached its target uncompleted."""
    rows = conn.execute(
        _SELECT + _OF_MEMBERS + " AND completed_at IS NULL AND progress >= target"
        " ORDER BY member_id",
        (task_id, period, json.dumps(sorted(member_ids))),
    )
    return [_step(row) for row in rows]


def complete(
    conn: sqlite3.Connection,
    steps: Sequence[TaskStep],
    *,
    reward: Reward | None,
    actor: str,
    notice: Callable[[TaskStep], Push | None] | None = None,
    on_complete: Callable[[sqlite3.Connection, TaskStep], None] | None = None,
    now: datetime,
) -> list[TaskStep]:
    """Complete these reached steps of one task as `advance` does: the reward booked under
    `task_reward_key`, `on_complete` run, `notice` queued, in the caller's transaction; raises
    the ledger's errors (NotFound, Conflict)."""
    if not steps:
        return []
    now_ts = ts(now)
    with atomic(conn):
        operations: list[int | None] = [None] * len(steps)
        if reward is not None and reward.points > 0:
            groups = [
                [
                    ledger.EarnRequest(
                        member_id=step.member_id,
                        points=reward.points,
                        kind=reward.kind,
                        key=task_reward_key(step.task_id, step.member_id, step.period),
                        actor=actor,
                        expires_at=reward.expires_at,
                        now=now,
                        reason=step.task_id,
                        meta={"task": step.task_id, "period": step.period},
                    )
                ]
                for step in steps
            ]
            for index, outcome in enumerate(ledger.earn_groups(conn, groups)):
                if isinstance(outcome, StoreError):
                    raise outcome
                operations[index] = outcome[0].operation_id
        conn.executemany(
            "UPDATE task_progress SET completed_at = ?, reward_operation_id = ?"
            " WHERE member_id = ? AND task_id = ? AND period = ?",
            [
                (now_ts, operation, step.member_id, step.task_id, step.period)
                for step, operation in zip(steps, operations, strict=True)
            ],
        )
        done = [
            dataclasses.replace(
                step, completed_at=now, reward_operation_id=operation, completed_now=True
            )
            for step, operation in zip(steps, operations, strict=True)
        ]
        # As in `advance`: the completions' messages first, then what they earned besides.
        if notice is not None:
            pushes = [push for step in done if (push := notice(step)) is not None]
            if pushes:
                enqueue(conn, pushes, now)
        if on_complete is not None:
            for step in done:
                on_complete(conn, step)
        return done


def count_streak_weeks(
    conn: sqlite3.Connection, rows: Sequence[tuple[int, str, str, str, int]]
) -> None:
    """Add (member, task, period, ISO week, purchases) to the weeks a streak task counts."""
    conn.executemany(
        "INSERT INTO task_streak_weeks (member_id, task_id, period, week, purchases)"
        " VALUES (:member, :task, :period, :week, CASE WHEN :n > 0 THEN :n ELSE 0 END)"
        " ON CONFLICT (task_id, period, member_id, week) DO UPDATE SET"
        " purchases = CASE WHEN task_streak_weeks.purchases + :n > 0"
        " THEN task_streak_weeks.purchases + :n ELSE 0 END",
        [
            {"member": member, "task": task, "period": period, "week": week, "n": n}
            for member, task, period, week, n in rows
        ],
    )


def streak_weeks(
    conn: sqlite3.Connection, task_id: str, period: str, member_ids: Collection[int]
) -> dict[int, list[str]]:
    """The ISO weeks with a counted purchase of each of these members, in order."""
    found: dict[int, list[str]] = {}
    for member_id, week in conn.execute(
        "SELECT member_id, week FROM task_streak_weeks"
        " WHERE task_id = ? AND period = ? AND purchases > 0"
        " AND member_id IN (SELECT value FROM json_each(?)) ORDER BY member_id, week",
        (task_id, period, json.dumps(sorted(member_ids))),
    ):
        found.setdefault(int(member_id), []).append(str(week))
    return found


def purchase_moves(conn: sqlite3.Connection, operation_id: int) -> list[RecordedMove]:
    """What a booked purchase (its operation) added to each task."""
    return [
        RecordedMove(int(op), str(task), int(member), str(period), int(delta), week, bool(gone))
        for op, task, member, period, delta, week, gone in conn.execute(
            "SELECT operation_id, task_id, member_id, period, delta, week,"
            " withdrawn_at IS NOT NULL FROM task_purchase_moves WHERE operation_id = ?"
            " ORDER BY task_id",
            (operation_id,),
        )
    ]


def mark_withdrawn(
    conn: sqlite3.Connection, operation_id: int, task_id: str, now: datetime
) -> bool:
    """Mark a purchase's move in a task taken back; False if it already was (or is none)."""
    cur = conn.execute(
        "UPDATE task_purchase_moves SET withdrawn_at = ?"
        " WHERE operation_id = ? AND task_id = ? AND withdrawn_at IS NULL",
        (ts(now), operation_id, task_id),
    )
    return cur.rowcount == 1
