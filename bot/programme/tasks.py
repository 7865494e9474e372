"""Tasks: which are open, the period a moment falls in, what completing one pays.

Every task kind (share, review, check-in, purchases, spend, streak, survey, referral) moves
progress through `advance_task`, which decides the period and the reward here and lets the
store book both in the transaction of whatever caused the progress (storage/tasks.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from bot.config import Config, ExpirySource, Task
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.expiry import expires_at
from storage.pushes import SERVICE, Push
from storage.tasks import Reward, TaskStep, advance

# The ledger source each task reward comes from: the green-share bonus keeps its own.
SHARE_SOURCE: Final = "share_bonus"
TASK_SOURCE: Final = "task"


def period_of(task: Task, day: date) -> str:
    """The period local `day` falls in for the task: 'once', the day, the ISO week or month."""
    if task.repeat == "daily":
        return day.isoformat()
    if task.repeat == "weekly":
        year, week, _weekday = day.isocalendar()
        return f"{year}-W{week:02d}"
    if task.repeat == "monthly":
        return f"{day.year:04d}-{day.month:02d}"
    return "once"


def open_tasks(config: Config, day: date) -> list[Task]:
    """The tasks open on local `day`, in the order of the configuration."""
    return [task for task in config.tasks if task.open_on(day)]


def tasks_of_kind(config: Config, kind: str, day: date) -> list[Task]:
    """The open tasks of one kind on local `day`."""
    return [task for task in open_tasks(config, day) if task.kind == kind]


def reward_for(task: Task, config: Config, now: datetime) -> Reward | None:
    """What completing the task at `now` pays in points (None: only a badge)."""
    if not task.reward_points:
        return None
    source: ExpirySource = "share" if task.kind == "share" else "task"
    kind = SHARE_SOURCE if task.kind == "share" else TASK_SOURCE
    return Reward(task.reward_points, kind, expires_at(now, config, source))


@dataclass(frozen=True, slots=True)
class TaskMove:
    """One move of one member's progress in one task, as the store books it."""

    member_id: int
    task: Task
    period: str
    delta: int
    reward: Reward | None


def task_move(task: Task, member_id: int, delta: int, config: Config, now: datetime) -> TaskMove:
    """The move `delta` makes in the task's period containing `now` (local day)."""
    period = period_of(task, local_today(now, config))
    return TaskMove(member_id, task, period, delta, reward_for(task, config, now))


def completion_effects(
    config: Config, now: datetime
) -> Callable[[sqlite3.Connection, TaskStep], None] | None:
    """What a completion earns besides its points, booked in the completing transaction (the
    badge that names the task: the badges work of issue 21 fills this seam)."""
    return None


def completion_notice(task: Task) -> Callable[[TaskStep], Push | None]:
    """The member's message when a task is completed (always sent: it is news of points)."""

    message = N_("tasks.notice_completed") if task.reward_points else N_("tasks.notice_done")

    def build(step: TaskStep) -> Push:
        return Push(
            f"task:{step.task_id}:{step.member_id}:{step.period}:done",
            step.member_id,
            SERVICE,
            message,
            {"task": {"zh-CN": task.name.zh_CN, "en": task.name.en}, "points": task.reward_points},
        )

    return build


def advance_task(
    conn: sqlite3.Connection,
    task: Task,
    member_id: int,
    delta: int,
    config: Config,
    now: datetime,
    *,
    actor: str,
    period: str | None = None,
) -> TaskStep:
    """Move a member's progress in `task` by `delta` inside the caller's transaction (the
    purchase, approval or check-in that causes it): the period, reward, badge and message are
    decided here (`period`: the one a share or review was sent in, approved later). Raises
    what storage.tasks.advance raises."""
    move = task_move(task, member_id, delta, config, now)
    return advance(
        conn,
        member_id,
        task.id,
        move.period if period is None else period,
        delta,
        target=task.target,
        reward=move.reward,
        actor=actor,
        notice=completion_notice(task),
        on_complete=completion_effects(config, now),
        now=now,
    )
