"""Purchase-driven tasks (purchases, spend, streak): what booked purchases add to them, and what
a returned purchase takes back.

`purchases_booked` is THE place booked purchases turn into task moves, for every purchase path
(the till and the demo seed through bot.programme.purchases, the CSV import through
bot.imports, a till API): call it inside the transaction that booked them, with the purchases
booked now (never replays). Anything else a purchase earns on being booked (the referral
credit on a member's first purchase) belongs there too.

A purchase counts, on its LOCAL day, for every open task of these kinds whose categories
include its category (no categories: every one): `purchases` +1, `spend` + the yuan that
earn points (`counted_yuan`), `streak` one ISO week with a purchase. A streak's progress is the
member's current run: the consecutive weeks with a counted purchase ending at their latest
such week (a week without one resets it); a purchase that brings any run to the target
completes the task (a late receipt may fill the gap in an older run). Each repeat period
(`period_of`) counts on its own and completes at most once; once completed, it takes no more
moves in that period (its progress stays at the count that completed it, and a later return
has nothing there to take back: the completion is final either way).

For an import's speed the moves are added per batch (one statement per table, not one per
purchase) and only the progress that reached its target is completed, by `storage.tasks.
complete`, with the reward, badge seam and message `advance_task` uses
(tests/test_tasks_purchases.py checks the two agree).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from bot.config import Config, Task
from bot.programme.badges import award_milestones, milestones_moved_by_purchase
from bot.programme.calendar import local_today
from bot.programme.owed import settle_from_purchases
from bot.programme.plans import plans_moved
from bot.programme.referrals import credit_referral
from bot.programme.tasks import (
    advance_task,
    completion_effects,
    completion_notice,
    period_of,
    reward_for,
    tasks_of_kind,
)
from bot.programme.tier_review import withdraw_qualifying
from bot.programme.tiers import tiers_moved
from storage import tasks as store
from storage.badges import holders
from storage.referrals import awaiting_first_purchase
from storage.sql import atomic
from storage.tasks import PurchaseMove, TaskStep

PURCHASE_KINDS: Final = ("purchases", "spend", "streak")


@dataclass(frozen=True, slots=True)
class BookedPurchase:
    """A purchase booked now (not a replay): its operation, member, category, the yuan that
    earn points and its local day (bot.programme.purchases.booked_purchase builds it)."""

    operation_id: int
    member_id: int
    category_id: str
    counted_yuan: int
    day: date
    # The purchase's own points (before campaign and tier bonuses) and what was paid, in fen:
    # what it adds to the member's tier qualification (bot.programme.tiers).
    points: int = 0
    fen: int = 0


def iso_week(day: date) -> str:
    """The ISO week of a local day, as '2026-W49'."""
    year, week, _weekday = day.isocalendar()
    return f"{year}-W{week:02d}"


def _week_number(week: str) -> int:
    """A running number of an ISO week: consecutive weeks differ by one."""
    year, number = week.split("-W")
    return date.fromisocalendar(int(year), int(number), 1).toordinal() // 7


def _runs(weeks: Iterable[str]) -> list[tuple[int, int]]:
    """The runs of consecutive weeks as (last week number, length), in order."""
    runs: list[tuple[int, int]] = []
    for number in sorted({_week_number(week) for week in weeks}):
        if runs and runs[-1][0] == number - 1:
            runs[-1] = (number, runs[-1][1] + 1)
        else:
            runs.append((number, 1))
    return runs


def streak_progress(weeks: Iterable[str], target: int, counted: Iterable[str] = ()) -> int:
    """A streak task's progress: the run ending at the latest week, or the run holding one of
    the weeks just `counted` when that reaches the target."""
    runs = _runs(weeks)
    if not runs:
        return 0
    counted_numbers = {_week_number(week) for week in counted}
    for last, length in runs:
        if length >= target and any(last - length < n <= last for n in counted_numbers):
            return length
    return runs[-1][1]


def purchases_booked(
    conn: sqlite3.Connection,
    booked: Sequence[BookedPurchase],
    config: Config,
    now: datetime,
    *,
    actor: str,
    tell_member: bool = True,
) -> list[TaskStep]:
    """THE purchase hook of every purchase path (the till, the CSV import, the demo seed; a
    till API adds one call), in the transaction that booked the purchases: the purchase tasks
    move and complete, the members' tier figures move (an upgrade at once), plans pay, owed
    points are settled, a referred friend's first purchase credits the referrer, and the
    milestone badges are checked;
    return the task completions. Never pass a replay."""
    completions = _move_purchase_tasks(
        conn, booked, config, now, actor=actor, tell_member=tell_member
    )
    tiers_moved(conn, booked, config, now, actor=actor, tell_member=tell_member)
    plans_moved(conn, booked, config, now, actor=actor)
    # After every credit the purchases bring (plan bonuses included): owed points are netted
    # against them (bot.programme.owed).
    settle_from_purchases(conn, booked, now, actor=actor, tell_member=tell_member)
    # Once per member per batch (an import books thousands): only a member's first purchase
    # can be a referred friend's first, and the milestones read the ledger as it now stands.
    # Two queries for the batch find the few members these concern: referred friends yet to
    # buy, and members missing a milestone badge their purchases may have moved.
    first: dict[int, BookedPurchase] = {}
    for purchase in booked:
        first.setdefault(purchase.member_id, purchase)
    for member_id in sorted(awaiting_first_purchase(conn, first)):
        credit_referral(conn, member_id, first[member_id].operation_id, config, now)
    milestones = {b.id: b.milestone for b in config.badges if b.milestone is not None}
    if not milestones:
        return completions
    by_category: dict[str, frozenset[str]] = {}
    moved: dict[int, set[str]] = defaultdict(set)
    for purchase in booked:
        category = purchase.category_id
        if (changes := by_category.get(category)) is None:
            changes = by_category[category] = milestones_moved_by_purchase(category, config)
        moved[purchase.member_id] |= changes
    held = holders(conn, moved, milestones)
    for member_id, changed in moved.items():
        due = {badge for badge, milestone in milestones.items() if milestone in changed}
        if not due <= held.get(member_id, set()):
            award_milestones(conn, member_id, config, now, changed=changed)
    return completions


def _move_purchase_tasks(
    conn: sqlite3.Connection,
    booked: Sequence[BookedPurchase],
    config: Config,
    now: datetime,
    *,
    actor: str,
    tell_member: bool = True,
) -> list[TaskStep]:
    """Move the purchase tasks for purchases just booked and complete those that reach their
    target (reward, badge, and the member's message unless `tell_member` is False: purchases
    booked as history, the demo's seed); return the completions."""
    if not booked or not config.tasks:
        return []
    # Per local day: each open purchase task with its period, week (streaks) and categories,
    # worked out once per day rather than once per purchase (an import books a million).
    by_day: dict[date, list[tuple[Task, str, str | None, frozenset[str] | None]]] = {}
    moves: list[PurchaseMove] = []
    # (task id, period) -> member -> delta, for purchases and spend
    added: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    # (task id, period) -> member -> week -> purchases, for streaks
    weeks: dict[tuple[str, str], dict[int, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int))
    )
    tasks: dict[str, Task] = {}
    for purchase in booked:
        day = purchase.day
        if (open_ := by_day.get(day)) is None:
            open_ = by_day[day] = [
                (
                    task,
                    period_of(task, day),
                    iso_week(day) if task.kind == "streak" else None,
                    frozenset(task.categories) if task.categories else None,
                )
                for kind in PURCHASE_KINDS
                for task in tasks_of_kind(config, kind, day)
            ]
        member = purchase.member_id
        for task, period, week, categories in open_:
            if categories is not None and purchase.category_id not in categories:
                continue
            tasks[task.id] = task
            if week is not None:
                weeks[(task.id, period)][member][week] += 1
                moves.append((purchase.operation_id, task.id, member, period, 1, week))
                continue
            delta = 1 if task.kind == "purchases" else purchase.counted_yuan
            if delta <= 0:
                continue
            added[(task.id, period)][member] += delta
            moves.append((purchase.operation_id, task.id, member, period, delta, None))
    if not moves:
        return []
    with atomic(conn):
        moves = _drop_completed(conn, moves, added, weeks)
        if not moves:
            return []
        store.record_purchase_moves(conn, moves)
        progress = [
            (member, task_id, period, delta, tasks[task_id].target)
            for (task_id, period), members in added.items()
            for member, delta in members.items()
        ]
        if weeks:
            store.count_streak_weeks(
                conn,
                [
                    (member, task_id, period, week, n)
                    for (task_id, period), members in weeks.items()
                    for member, counted in members.items()
                    for week, n in counted.items()
                ],
            )
            progress += _streak_moves(conn, tasks, weeks)
        store.add_progress(conn, progress, now)
        touched: dict[tuple[str, str], set[int]] = defaultdict(set)
        for member, task_id, period, _delta, _target in progress:
            touched[(task_id, period)].add(member)
        done: list[TaskStep] = []
        for (task_id, period), members in sorted(touched.items()):
            task = tasks[task_id]
            done += store.complete(
                conn,
                store.reached(conn, task_id, period, members),
                reward=reward_for(task, config, now),
                actor=actor,
                notice=completion_notice(task) if tell_member else None,
                on_complete=completion_effects(config, now),
                now=now,
            )
        return done


def _drop_completed(
    conn: sqlite3.Connection,
    moves: list[PurchaseMove],
    added: dict[tuple[str, str], dict[int, int]],
    weeks: dict[tuple[str, str], dict[int, dict[str, int]]],
) -> list[PurchaseMove]:
    """Leave out the moves of members who already completed the task in that period (their
    completion is final: the moves would change nothing a member sees or is paid, and an
    import of history would otherwise count every later purchase of the period)."""
    done: set[tuple[str, str, int]] = set()
    for key in sorted(added.keys() | weeks.keys()):
        members = added[key].keys() if key in added else weeks[key].keys()
        finished = store.completed_among(conn, key[0], key[1], members)
        for member in finished:
            added.get(key, {}).pop(member, None)
            weeks.get(key, {}).pop(member, None)
        done.update((key[0], key[1], member) for member in finished)
    for key in [k for k, v in added.items() if not v]:
        del added[key]
    for key in [k for k, v in weeks.items() if not v]:
        del weeks[key]
    if not done:
        return moves
    return [move for move in moves if (move[1], move[3], move[2]) not in done]


def _streak_moves(
    conn: sqlite3.Connection,
    tasks: dict[str, Task],
    weeks: dict[tuple[str, str], dict[int, dict[str, int]]],
) -> list[tuple[int, str, str, int, int]]:
    """The progress deltas of streak tasks after their weeks were counted."""
    out: list[tuple[int, str, str, int, int]] = []
    for (task_id, period), members in weeks.items():
        target = tasks[task_id].target
        seen = store.streak_weeks(conn, task_id, period, members)
        now_at = store.progress_in(conn, task_id, period, members)
        for member, counted in members.items():
            new = streak_progress(seen.get(member, ()), target, counted)
            old = now_at[member].progress if member in now_at else 0
            if new != old or member not in now_at:
                out.append((member, task_id, period, new - old, target))
    return out


def withdraw_purchase(
    conn: sqlite3.Connection,
    operation_id: int,
    config: Config,
    now: datetime,
    *,
    actor: str,
    share: tuple[int, int] | None = None,
) -> list[TaskStep]:
    """Take back what a returned purchase (its operation) added to its tasks, in the caller's
    transaction (the return's): once (a second call takes nothing), only while the period it
    counted for is still the task's current one and the task is open, never undoing a
    completion already paid; and take it out of its month's tier figures (the caller then
    undoes a tier upgrade of this period those no longer reach:
    bot.programme.tier_review.undo_upgrade); return the steps moved. `share` (fen still
    counted, fen paid): what earlier partial returns left of its spend progress and tier
    figures (bot.programme.purchase_returns); None: all of it."""
    today = local_today(now, config)
    moved: list[TaskStep] = []
    with atomic(conn):
        withdraw_qualifying(conn, operation_id, config, now, share=share)
        for move in store.purchase_moves(conn, operation_id):
            task = config.task(move.task_id)
            if move.withdrawn or task is None or not task.open_on(today):
                continue
            if period_of(task, today) != move.period:
                continue  # a past period's progress is history
            if not store.mark_withdrawn(conn, operation_id, task.id, now):
                continue
            if task.kind == "streak":
                assert move.week is not None
                store.count_streak_weeks(
                    conn, [(move.member_id, task.id, move.period, move.week, -1)]
                )
                seen = store.streak_weeks(conn, task.id, move.period, [move.member_id])
                current = store.progress_in(conn, task.id, move.period, [move.member_id])
                old = current[move.member_id].progress if move.member_id in current else 0
                delta = streak_progress(seen.get(move.member_id, ()), task.target) - old
            elif task.kind == "spend" and share is not None and share[1] > 0:
                # Partial returns took their part of the yuan already.
                delta = -(move.delta * share[0] // share[1])
            else:
                delta = -move.delta
            moved.append(advance_task(conn, task, move.member_id, delta, config, now, actor=actor))
    return moved
