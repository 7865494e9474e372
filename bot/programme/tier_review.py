"""Tiers going down: the yearly review, its advance notice, and returns leaving the figures.

The review (1 January, local, `bot.programme.tiers.next_review`) re-qualifies every member
holding a tier above the lowest on the total of the year just ended (for the rolling window,
the 12 months ending with December: the same months): the tier that total reaches, but at
most `[tiers] max_downgrade_steps` below the tier held, and never up (upgrades happen at the
purchase). A review run late never takes a member below what their purchases since 1 January
already reach, and leaves alone a tier reached (or already reviewed) since. Points earned are
never touched: only the tier held changes. Each year's review runs once (table
tier_reviews); the daily job runs it on its first run in the new year.

The notice goes `[tiers] downgrade_notice_days` before the review (2 December by default),
once per member and year, to every member whose total is short of the tier held, with what
keeps it; a late start still sends it until the review.

A returned purchase leaves its month's figures once (`withdraw_qualifying`). When that leaves
the member's qualifying total below the tier they hold, and they reached it by an upgrade in
this qualification period, the return undoes the upgrade in its own transaction
(`undo_upgrade`): the member goes down to the highest of the tier their remaining figures
reach and the tier they held when the period began (reached earlier, or kept by the review:
never below it), and the entry rewards of the tiers left that this period paid are taken back
as a return takes points back (its own lots first, the rest owed; bot.programme.owed). Points
earned at the higher multiplier on other purchases stay. Crossing the threshold again the same
year pays the entry reward again, once (bot.programme.tiers.entry_reward_key).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from bot.config import LANGUAGES, Config, Tier
from bot.i18n import N_, packaged
from bot.programme.calendar import local_today
from bot.programme.tiers import (
    TIER_ACTOR,
    benefits_text,
    current_entry,
    held_tier,
    lowest,
    measure,
    month_of,
    next_review,
    qualification_months,
    qualification_period,
    rank,
    tier_for_total,
    tier_named,
    tiers_on,
)
from storage import tier_reviews as store
from storage import tiers as tier_store
from storage.purchase_returns import TakenBack
from storage.pushes import SERVICE, Push, enqueue
from storage.tier_reviews import ReviewMessages, ReviewRules, TierReviews


@dataclass(frozen=True, slots=True)
class TierJobReport:
    """What one day's tier jobs did: notices queued and members moved down by the review."""

    notices: int = 0
    downgrades: int = 0


def review_day(year: int) -> date:
    """The local day the qualification year `year` is reviewed on."""
    return next_review(date(year, 12, 31))


def notice_day(year: int, config: Config) -> date:
    """The first local day the year's downgrade notices go out."""
    return review_day(year) - timedelta(days=config.tiers.downgrade_notice_days)


def _by_points(config: Config) -> bool:
    return config.tiers.measure == "purchase_points"


def review_rules(year: int, today: date, config: Config) -> ReviewRules:
    """The review of `year` as run on local day `today` (1 January of the next year, or a
    later catch-up day)."""
    months = qualification_months(date(year, 12, 31), config)
    first_day = review_day(year)
    return ReviewRules(
        levels=[(tier.id, tier.threshold) for tier in config.tiers.levels],
        by_points=_by_points(config),
        first_month=months[0],
        last_month=months[-1],
        since_first=month_of(first_day),
        since_last=month_of(max(today, first_day)),
        max_steps=config.tiers.max_downgrade_steps,
        review_at=datetime.combine(first_day, time(0), tzinfo=config.program.tz),
    )


def _names(tier: Tier) -> dict[str, str]:
    return {"zh-CN": tier.name.zh_CN, "en": tier.name.en}


def _what_it_means(tier: Tier, config: Config) -> dict[str, str]:
    """A tier's benefits in every language; a tier without any: what every member enjoys."""
    lines = benefits_text(tier, config)
    i18n = packaged()
    return {
        # benefits_text starts each line with a line break (for the congratulation's tail).
        language: lines[language].lstrip("\n") or i18n.t(language, N_("tiers.review_base_benefits"))
        for language in LANGUAGES
    }


def _review_day_text(day: date) -> dict[str, str]:
    """The review day as each language writes it."""
    return {"zh-CN": day.isoformat(), "en": f"{day.day} {day:%B %Y}"}


def review_messages(year: int, config: Config) -> ReviewMessages:
    """The message of each possible move down at the review of `year`."""
    levels = config.tiers.levels
    params: dict[tuple[int, int], dict[str, Any]] = {}
    for high, was in enumerate(levels):
        for low in range(high):
            now_tier = levels[low]
            params[(high, low)] = {
                "tier": _names(now_tier),
                "emoji": now_tier.emoji,
                "benefits": _what_it_means(now_tier, config),
                "was": _names(was),
                "was_emoji": was.emoji,
                "threshold": was.threshold,
                "year": str(year),
                "next_year": str(year + 1),
            }
    key = (
        N_("tiers.review_downgraded_points")
        if _by_points(config)
        else N_("tiers.review_downgraded")
    )
    # Once per member and review, whatever reruns it.
    return ReviewMessages(key, params, f"tier-review:{year}:")


def notice_messages(year: int, config: Config) -> ReviewMessages:
    """The notice for each tier held above the lowest (`amount` is added per member)."""
    day = _review_day_text(review_day(year))
    params = {
        (rank, rank): {
            "tier": _names(tier),
            "emoji": tier.emoji,
            "threshold": tier.threshold,
            "day": day,
            "year": str(year),
        }
        for rank, tier in enumerate(config.tiers.levels)
        if rank > 0
    }
    key = N_("tiers.review_notice_points") if _by_points(config) else N_("tiers.review_notice")
    return ReviewMessages(key, params, f"tier-notice:{year}:")


async def tier_jobs(
    reviews: TierReviews, config: Config, today: date, now: datetime
) -> TierJobReport:
    """The tier part of the daily job for local day `today`: the review of last year if it has
    not run yet, and this year's notices once their day has come."""
    if not tiers_on(config):
        return TierJobReport()
    downgrades = 0
    last_year = today.year - 1
    _noticed, reviewed = await reviews.review_state(last_year)
    if not reviewed:
        # A catch-up run for an earlier day still counts every purchase made up to now.
        until = max(today, local_today(now, config))
        downgrades = await reviews.review(
            review_rules(last_year, until, config),
            review_messages(last_year, config),
            actor=TIER_ACTOR,
            now=now,
        )
        await reviews.record_review(last_year, downgrades, now)
    notices = 0
    if today >= notice_day(today.year, config):
        noticed, _reviewed = await reviews.review_state(today.year)
        if not noticed:
            rules = review_rules(today.year, today, config)
            notices = await reviews.notify(rules, notice_messages(today.year, config), now=now)
            await reviews.record_notices(today.year, notices, now)
    return TierJobReport(notices, downgrades)


def withdraw_qualifying(
    conn: sqlite3.Connection,
    operation_id: int,
    config: Config,
    now: datetime,
    *,
    share: tuple[int, int] | None = None,
) -> bool:
    """Take a returned purchase (its operation) out of its month's qualifying figures, in the
    caller's transaction, once (`undo_upgrade` then moves the member down if that undid an
    upgrade of this period). `share` (fen still
    counted, fen paid): the part earlier partial returns left in the figures
    (bot.programme.purchase_returns). False: nothing to take (no tiers, not a purchase, or
    taken already)."""
    if not tiers_on(config):
        return False
    facts = store.purchase_facts(conn, operation_id)
    if facts is None or facts.kind != "purchase":
        return False
    try:
        amount = Decimal(str(facts.meta["amount"]))
        day = date.fromisoformat(str(facts.meta["purchased_on"]))
    except (KeyError, ValueError, ArithmeticError):
        return False  # a purchase booked before its facts were kept added nothing to take
    # What the purchase added to its month: its own points before any bonus (a campaign's
    # extra points are an operation of their own; a tier bonus is in this one, and recorded in
    # its meta: bot.programme.purchases).
    own_points = facts.points - int(facts.meta.get("tier_bonus", 0))
    fen = int(amount * 100)
    if share is not None and share[1] > 0:
        # What partial returns took already stays taken: only the rest leaves now.
        own_points, fen = own_points * share[0] // share[1], share[0]
    return store.withdraw_figures(
        conn,
        operation_id,
        facts.member_id,
        month_of(day),
        own_points,
        fen,
        now,
    )


@dataclass(frozen=True, slots=True)
class UpgradeUndone:
    """A member moved down by a return: from which tier to which, the qualifying total left,
    and the entry rewards taken back (tier id, what taking it back booked)."""

    member_id: int
    from_tier: Tier
    to_tier: Tier
    total: int
    rewards_back: tuple[tuple[str, TakenBack], ...]


def period_floor(conn: sqlite3.Connection, member_id: int, today: date, config: Config) -> Tier:
    """The tier a member held when the qualification period of `today` began: reached in an
    earlier period, or set by this period's review (or staff); upgrades of this period, and
    returns undoing them, do not count."""
    period = qualification_period(today)
    floor = lowest(config)
    for change in tier_store.tier_changes(conn, member_id):
        this_period = qualification_period(local_today(change.changed_at, config)) == period
        if not this_period or change.reason not in ("upgrade", "return"):
            floor = tier_named(change.to_tier, config)
    return floor


def qualifying_total(
    conn: sqlite3.Connection, member_id: int, config: Config, now: datetime
) -> int:
    """The member's qualifying total over today's window, inside a transaction (0: no tiers)."""
    if not tiers_on(config):
        return 0
    months = qualification_months(local_today(now, config), config)
    return measure(tier_store.qualifying_one(conn, member_id, months), config)


def undo_upgrade(
    conn: sqlite3.Connection,
    member_id: int,
    config: Config,
    now: datetime,
    *,
    total_before: int,
    return_operation: int,
    receipt: str,
    actor: str,
    tell_member: bool = True,
) -> UpgradeUndone | None:
    """After a return took its purchase (or part of it) out of the figures, in its
    transaction: move the member down if it took their total (`total_before` it) below the
    tier held and that tier was reached by an upgrade of this period, take back the entry
    rewards of the tiers left, tell the member (see the module docstring). None: the tier
    stays."""
    if not tiers_on(config):
        return None
    today = local_today(now, config)
    held = held_tier(conn, member_id, config)
    total = qualifying_total(conn, member_id, config, now)
    # Only a drop this return caused: a total already short (months a rolling window left
    # behind since the upgrade) is the review's business.
    if total >= held.threshold or total_before < held.threshold:
        return None
    floor = period_floor(conn, member_id, today, config)
    reached = tier_for_total(total, config)
    target = max(reached, floor, key=lambda tier: rank(tier, config))
    if rank(target, config) >= rank(held, config):
        return None  # held since before this period (or kept by its review)
    tier_store.change_tier(
        conn,
        member_id,
        held.id,
        target.id,
        reason="return",
        total=total,
        actor=actor,
        now=now,
        operation_id=return_operation,
    )
    period = qualification_period(today)
    back: list[tuple[str, TakenBack]] = []
    for tier in config.tiers.levels[rank(target, config) + 1 : rank(held, config) + 1]:
        _entry, reward = current_entry(conn, tier.id, member_id, period)
        if reward is None:
            continue  # no reward for this tier, or paid in an earlier period: it stays
        taken = tier_store.take_back_entry_reward(
            conn,
            member_id,
            reward,
            tier_id=tier.id,
            return_operation=return_operation,
            actor=actor,
            now=now,
        )
        back.append((tier.id, taken))
    undone = UpgradeUndone(member_id, held, target, total, tuple(back))
    if tell_member:
        enqueue(conn, [_undone_notice(undone, return_operation, receipt)], now)
    return undone


def _undone_notice(undone: UpgradeUndone, return_operation: int, receipt: str) -> Push:
    """The member's message about a tier a return undid: the tier now, why, and any entry
    reward taken back (and owed)."""
    params: dict[str, Any] = {
        "receipt": receipt,
        "tier": _names(undone.to_tier),
        "emoji": undone.to_tier.emoji,
        "was": _names(undone.from_tier),
        "was_emoji": undone.from_tier.emoji,
    }
    points = sum(taken.points for _tier, taken in undone.rewards_back)
    owed = sum(taken.owed for _tier, taken in undone.rewards_back)
    if not points:
        key = N_("tiers.return_downgraded")
    elif not owed:
        key = N_("tiers.return_downgraded_reward")
        params["points"] = points
    elif owed == points:
        key = N_("tiers.return_downgraded_all_owed")
        params |= {"points": points, "total": undone.rewards_back[-1][1].owed_total}
    else:
        key = N_("tiers.return_downgraded_owed")
        params |= {
            "points": points,
            "taken": points - owed,
            "owed": owed,
            "total": undone.rewards_back[-1][1].owed_total,
        }
    return Push(f"tier_return:{return_operation}", undone.member_id, SERVICE, key, params)
