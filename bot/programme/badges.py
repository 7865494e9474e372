"""Badges and badge sets: what earns a badge, when a set is complete, what its prize is.

A badge naming a task is earned on the member's first completion of that task, in the
completing transaction (`task_badges_effect`, run by storage.tasks.advance for every task
kind). A milestone badge (lifetime eco spend, green points, surveys completed, purchases) is
checked when what it counts changes: a purchase booked, a survey completed
(`award_milestones`, inside that transaction). When a badge earned makes a set complete, the
set's grand prize (points, or a mall item given free) is paid in the same transaction, once
per member and set (storage/badges.py refuses a second one). The member hears of each badge
and prize through the outbox.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Final

from bot.config import Badge, BadgeSet, Config, Localized
from bot.i18n import N_
from bot.programme.context import Programme
from bot.programme.expiry import expires_at
from bot.programme.mall import voucher_last_day
from storage import badges as store
from storage.errors import StoreError
from storage.mall import Redemption
from storage.pushes import SERVICE, Push, enqueue
from storage.tasks import TaskStep

MILESTONE_SOURCE: Final = "milestone"
TASK_SOURCE: Final = "task"


def _names(localized: Localized) -> dict[str, str]:
    """A config name as the outbox renders it in the member's language."""
    return {"zh-CN": localized.zh_CN, "en": localized.en}


def eco_categories(config: Config) -> frozenset[str]:
    """The purchase categories that count as green (an impact factor above zero)."""
    return frozenset(c.id for c in config.earn.categories if c.impact_kg_per_yuan > Decimal(0))


def milestone_value(figures: store.LifetimeFigures, milestone: str) -> int:
    """The member's lifetime figure a milestone badge counts."""
    if milestone == "eco_spend_yuan":
        return figures.eco_spend_yuan
    if milestone == "green_points":
        return figures.green_points
    if milestone == "surveys_completed":
        return figures.surveys_completed
    return figures.purchases


def milestones_moved_by_purchase(category: str | None, config: Config) -> frozenset[str]:
    """The milestones a purchase in `category` may move (None: unknown, all of them)."""
    if category is not None and category not in eco_categories(config):
        return frozenset({"purchases"})
    return frozenset({"purchases", "eco_spend_yuan", "green_points"})


def sets_with(config: Config, badge_ids: Iterable[str]) -> list[BadgeSet]:
    """The sets that contain any of the badges, in configuration order."""
    wanted = set(badge_ids)
    return [s for s in config.badge_sets if wanted.intersection(s.badges)]


# --- earning, inside the transaction of what earned it ----------------------------------------


def _badge_notice(badge: Badge, member_id: int) -> Push:
    return Push(
        f"badge:{badge.id}:{member_id}",
        member_id,
        SERVICE,
        N_("badges.notice_earned"),
        {"emoji": badge.emoji, "badge": _names(badge.name)},
    )


def _points_notice(badge_set: BadgeSet, member_id: int, points: int) -> Push:
    return Push(
        store.set_prize_key(badge_set.id, member_id),
        member_id,
        SERVICE,
        N_("badges.notice_set_points"),
        {"set": _names(badge_set.name), "points": points},
    )


def _item_notice(
    badge_set: BadgeSet, member_id: int, item: dict[str, str], redemption: Redemption
) -> Push:
    return Push(
        store.set_prize_key(badge_set.id, member_id),
        member_id,
        SERVICE,
        N_("badges.notice_set_item"),
        {"set": _names(badge_set.name), "item": item, "code": redemption.code},
    )


def pay_set_prize(
    conn: sqlite3.Connection, member_id: int, badge_set: BadgeSet, config: Config, now: datetime
) -> None:
    """Pay a complete set's prize once: the item given free, or its points (an item that
    cannot be given, sold out or withdrawn, comes as its list price in points instead)."""
    expiry = expires_at(now, config, "badge")
    points = badge_set.prize_points
    if badge_set.prize_item is not None:
        item = config.mall.item(badge_set.prize_item)
        if item is not None:
            try:
                store.give_set_item(
                    conn,
                    member_id,
                    badge_set.id,
                    item.sku,
                    badges=badge_set.badges,
                    expires_at=expiry,
                    valid_until=voucher_last_day(item, now, config),
                    refund_if_unused=item.refund_if_unused,
                    offer_ttl=timedelta(minutes=config.mall.offer_minutes),
                    greeting=partial(_item_notice, badge_set, member_id, _names(item.name)),
                    now=now,
                )
                return
            except StoreError:
                # The member is not the one to lose the prize: its price comes as points.
                points = item.price
    if points:
        store.pay_set_points(
            conn,
            member_id,
            badge_set.id,
            points,
            badges=badge_set.badges,
            expires_at=expiry,
            notice=_points_notice(badge_set, member_id, points),
            now=now,
        )


def award_badges(
    conn: sqlite3.Connection,
    member_id: int,
    badges: Iterable[Badge],
    source: str,
    config: Config,
    now: datetime,
) -> list[str]:
    """Give the member the badges they do not hold yet, tell them, and pay the prize of each
    set those make complete; returns the ids newly earned."""
    earned: list[str] = []
    notices: list[Push] = []
    for badge in badges:
        if store.earn_badge(conn, member_id, badge.id, source=source, now=now):
            earned.append(badge.id)
            notices.append(_badge_notice(badge, member_id))
    if not earned:
        return earned
    enqueue(conn, notices, now)
    candidates = sets_with(config, earned)
    if candidates:
        held = set(store.badges_of(conn, member_id))
        for badge_set in candidates:
            if held.issuperset(badge_set.badges):
                pay_set_prize(conn, member_id, badge_set, config, now)
    return earned


def task_badges_effect(
    config: Config, now: datetime
) -> Callable[[sqlite3.Connection, TaskStep], None] | None:
    """What completing a task earns besides points: the badges naming the task (None when no
    badge names any task)."""
    by_task: dict[str, list[Badge]] = {}
    for badge in config.badges:
        if badge.task is not None:
            by_task.setdefault(badge.task, []).append(badge)
    if not by_task:
        return None

    def on_complete(conn: sqlite3.Connection, step: TaskStep) -> None:
        if badges := by_task.get(step.task_id):
            award_badges(conn, step.member_id, badges, TASK_SOURCE, config, now)

    return on_complete


def award_milestones(
    conn: sqlite3.Connection,
    member_id: int,
    config: Config,
    now: datetime,
    *,
    changed: Collection[str] | None = None,
) -> list[str]:
    """Give the member every milestone badge whose lifetime figure reached its threshold
    (inside the transaction that changed the figure; `changed`: only the milestones that may
    have moved, None for all); returns the ids newly earned."""
    milestones = [
        b
        for b in config.badges
        if b.milestone is not None and (changed is None or b.milestone in changed)
    ]
    if not milestones:
        return []
    held = store.badges_of(conn, member_id)
    due = [b for b in milestones if b.id not in held]
    if not due:
        return []  # the common case once a member holds them: no ledger scan
    figures = store.lifetime_figures(conn, member_id, eco_categories(config))
    reached = [
        b
        for b in due
        if b.milestone is not None
        and b.threshold is not None
        and milestone_value(figures, b.milestone) >= b.threshold
    ]
    return award_badges(conn, member_id, reached, MILESTONE_SOURCE, config, now)


# --- the badge wall -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WallBadge:
    """One badge on a member's wall."""

    badge: Badge
    earned_at: datetime | None

    @property
    def earned(self) -> bool:
        """The member holds it."""
        return self.earned_at is not None


@dataclass(frozen=True, slots=True)
class WallSet:
    """One set's progress on a member's wall, and whether its prize was received."""

    badge_set: BadgeSet
    held: int
    prize_received: bool

    @property
    def total(self) -> int:
        """Badges in the set."""
        return len(self.badge_set.badges)


@dataclass(frozen=True, slots=True)
class BadgeWall:
    """Every badge of the programme, earned or locked, and each set's progress."""

    badges: tuple[WallBadge, ...]
    sets: tuple[WallSet, ...]

    @property
    def earned(self) -> int:
        """How many badges the member holds."""
        return sum(1 for b in self.badges if b.earned)


async def badge_wall(programme: Programme, member_id: int) -> BadgeWall:
    """The member's badge wall: the configured badges in order, and every set's progress."""
    config = programme.config
    held, prizes = await programme.badges.badge_wall(member_id)
    badges = tuple(
        WallBadge(b, held[b.id].earned_at if b.id in held else None) for b in config.badges
    )
    sets = tuple(
        WallSet(s, sum(1 for b in s.badges if b in held), s.id in prizes) for s in config.badge_sets
    )
    return BadgeWall(badges, sets)
