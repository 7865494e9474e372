"""Tasks: which are open, the period a moment falls in, what completing one pays.

Every task kind (share, review, check-in, purchases, spend, streak, survey, referral) moves
progress through `advance_task`, which decides the period and the reward here and lets the
store book both in the transaction of whatever caused the progress (storage/tasks.py).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from bot.config import TASK_TARGET_UNITS, Badge, Config, ExpirySource, Task
from bot.i18n import N_
from bot.programme.badges import (
    award_milestones,
    task_badges_effect,
)
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.expiry import expires_at
from storage.pushes import SERVICE, Push
from storage.tasks import Reward, TaskStep, advance

# The ledger source each task reward comes from: the green-share bonus keeps its own.
SHARE_SOURCE: Final = "share_bonus"
TASK_SOURCE: Final = "task"
# What a completed survey may move among the milestones badges count.
SURVEY_MILESTONES: Final = frozenset({"surveys_completed"})


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
    """What a completion earns besides its points, booked in the completing transaction: the
    badges that name the task (and a set's prize they complete), for every task kind."""
    return task_badges_effect(config, now)


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


# --- what /tasks, /rules and the survey hook read (issue 21: the view, survey kind, rules) ---


def period_days(task: Task, day: date) -> tuple[date, date] | None:
    """The first and last local day of the period `day` falls in (None: a 'once' task)."""
    if task.repeat == "daily":
        return day, day
    if task.repeat == "weekly":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=6)
    if task.repeat == "monthly":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1)
    return None


def task_deadline(task: Task, day: date) -> date | None:
    """The last local day to complete the task in the period of `day`: the period's end or the
    task's `ends`, whichever comes first (None: a 'once' task without an end)."""
    bounds = period_days(task, day)
    ends = [d for d in (bounds[1] if bounds else None, task.ends) if d is not None]
    return min(ends) if ends else None


def next_period_start(task: Task, day: date) -> date | None:
    """The local day the task can be done again after the period of `day` (None: never)."""
    bounds = period_days(task, day)
    if bounds is None:
        return None
    following = bounds[1] + timedelta(days=1)
    return following if task.open_on(following) else None


def task_badge(config: Config, task_id: str) -> Badge | None:
    """The badge a task's first completion earns ([[badges]] task = its id), if any."""
    return next((badge for badge in config.badges if badge.task == task_id), None)


@dataclass(frozen=True, slots=True)
class TaskStanding:
    """One open task as a member stands in it on a local day (plain data for /tasks)."""

    task: Task
    period: str
    progress: int
    target: int
    # What the target counts (TASK_TARGET_UNITS): purchases, yuan, weeks, shares...
    unit: str
    points: int
    badge: Badge | None
    # The member completed the task before (any period): its badge is theirs already.
    badge_earned: bool
    # The last local day to complete it in this period (None: no end).
    deadline: date | None
    completed_at: datetime | None
    # A completed repeating task: the local day it starts again (None: not again).
    resets_on: date | None

    @property
    def done(self) -> bool:
        """The task is completed for this period."""
        return self.completed_at is not None


def task_standings(
    config: Config,
    day: date,
    steps: Mapping[tuple[str, str], TaskStep],
    completed_ever: Collection[str] = (),
) -> list[TaskStanding]:
    """Every task open on local `day` with the member's progress in its current period
    (`steps`, by (task id, period)) and whether they ever completed it."""
    standings = []
    for task in open_tasks(config, day):
        period = period_of(task, day)
        step = steps.get((task.id, period))
        completed_at = step.completed_at if step is not None else None
        standings.append(
            TaskStanding(
                task=task,
                period=period,
                progress=step.progress if step is not None else 0,
                # The target the period started with is the one its completion is judged by.
                target=step.target if step is not None else task.target,
                unit=TASK_TARGET_UNITS[task.kind],
                points=task.reward_points,
                badge=task_badge(config, task.id),
                badge_earned=task.id in completed_ever,
                deadline=task_deadline(task, day),
                completed_at=completed_at,
                resets_on=next_period_start(task, day) if completed_at is not None else None,
            )
        )
    return standings


async def member_tasks(programme: Programme, member_id: int) -> list[TaskStanding]:
    """What /tasks shows a member: the open tasks, their progress this period, the reward and
    the deadline, on the programme's local day."""
    config = programme.config
    day = local_today(programme.now(), config)
    wanted = [(task.id, period_of(task, day)) for task in open_tasks(config, day)]
    steps = await programme.tasks.progress_of(member_id, wanted)
    ever = await programme.tasks.completed_task_ids(member_id)
    standings = task_standings(config, day, steps, ever)
    # A referral pays per friend (each its own period), up to max_per_month a month: what
    # stands this month is the friends credited against that cap.
    month = day.strftime("%Y-%m")
    for index, standing in enumerate(standings):
        if standing.task.kind != "referral":
            continue
        credited = (await programme.referrals.counts(member_id, month)).credited_in_month
        cap = standing.task.max_per_month
        month_end = task_deadline(standing.task.model_copy(update={"repeat": "monthly"}), day)
        standings[index] = dataclasses.replace(
            standing,
            period=month,
            progress=credited,
            target=cap,
            deadline=month_end,
            completed_at=programme.now() if credited >= cap else None,
            resets_on=(day.replace(day=1) + timedelta(days=32)).replace(day=1)
            if credited >= cap
            else None,
        )
    return standings


def listed_tasks(config: Config, day: date) -> list[Task]:
    """The tasks /rules lists on local `day`: open now or opening later (not those over)."""
    return [task for task in config.tasks if task.ends is None or day <= task.ends]


def survey_completion_effects(
    survey_id: str, config: Config
) -> Callable[[sqlite3.Connection, int, str, datetime], None] | None:
    """What completing the survey also moves, in the completing transaction: every open
    survey task naming it, and the badges counting completed surveys (None: nothing)."""
    named = any(task.kind == "survey" and task.survey == survey_id for task in config.tasks)
    counted = any(badge.milestone in SURVEY_MILESTONES for badge in config.badges)
    if not named and not counted:
        return None

    def effects(conn: sqlite3.Connection, member_id: int, actor: str, now: datetime) -> None:
        for task in tasks_of_kind(config, "survey", local_today(now, config)):
            if task.survey == survey_id:
                advance_task(conn, task, member_id, 1, config, now, actor=actor)
        if counted:
            award_milestones(conn, member_id, config, now, changed=SURVEY_MILESTONES)

    return effects
