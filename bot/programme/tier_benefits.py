"""What a member's tier changes outside earning: tier-only mall items and early access to new
ones ("优先购买新品资格"), the birthday gift, the free wheel spins a day, and the points per
yuan of a bill deduction.

Each benefit is computed here once; the mall, the wheel, the birthday job and /rules read it
from here, and the store re-checks the mall's part inside the redeeming transaction with the
tier read there (`mall_terms`), so a quote and its confirmation cannot disagree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.config import Config, MallItem, Tier
from bot.i18n import N_
from bot.programme.errors import RuleError
from bot.programme.tiers import held_tier, rank, tiers_on
from storage.games import PlayRules
from storage.mall import MemberTerms, TermsReader
from storage.plans import priority_skus_of

# Why a member may not redeem an item now, as far as tiers and time go ('ok': they may).
AccessReason = Literal["ok", "tier_only", "not_started"]


class TierOnly(RuleError):
    """The item is for members of a higher tier (`tier` names the lowest that may redeem)."""


@dataclass(frozen=True, slots=True)
class ItemAccess:
    """Whether a member of a tier may redeem an item at an instant, and why not: the tier it
    needs, when it opens for this member (their early access, else its general opening) and
    for everyone."""

    reason: AccessReason
    # The lowest tier that may redeem it (None: every member).
    needed: Tier | None
    # When it opens for this member (None: no opening moment, it is open).
    opens_at: datetime | None
    # When it opens for everyone ([[mall.items]] available_from).
    general_at: datetime | None
    # The tier whose early access opens it for this member before everyone (None: none).
    early_by: Tier | None
    # It is open for everyone at that instant (no available_from, or past it).
    general_open: bool

    @property
    def allowed(self) -> bool:
        """The member may redeem it now (stock and limits aside)."""
        return self.reason == "ok"


def _member_rank(tier: Tier | None, config: Config, priority: bool) -> int:
    """The rank a member counts as for this item: a personal plan's priority item treats
    them as the top tier."""
    if priority and config.tiers.levels:
        return len(config.tiers.levels) - 1
    return 0 if tier is None else rank(tier, config)


def early_access(item: MallItem, config: Config) -> list[tuple[Tier, datetime]]:
    """The item's early-access moments before its general opening, lowest tier first."""
    if item.available_from is None:
        return []
    return [
        (tier, item.tier_available_from[tier.id])
        for tier in config.tiers.levels
        if tier.id in item.tier_available_from
        and item.tier_available_from[tier.id] < item.available_from
    ]


def item_access(
    item: MallItem,
    tier: Tier | None,
    now: datetime,
    config: Config,
    *,
    priority_skus: Collection[str] = frozenset(),
) -> ItemAccess:
    """THE access rule: may a member holding `tier` (None: no tiers) redeem `item` at `now`?
    A tier-only item needs its min_tier or higher; before its available_from it opens at the
    earliest early-access moment of the member's tier or a lower one; a personal plan's
    priority item (`priority_skus`) counts the member as the top tier."""
    member_rank = _member_rank(tier, config, item.sku in priority_skus)
    needed = None if item.min_tier is None else config.tiers.tier(item.min_tier)
    opens_at = item.available_from
    early_by: Tier | None = None
    for level, moment in early_access(item, config):
        if rank(level, config) <= member_rank and (opens_at is None or moment < opens_at):
            opens_at, early_by = moment, level
    reason: AccessReason = "ok"
    if needed is not None and member_rank < rank(needed, config):
        reason = "tier_only"
    elif opens_at is not None and now < opens_at:
        reason = "not_started"
    general_open = item.available_from is None or now >= item.available_from
    return ItemAccess(reason, needed, opens_at, item.available_from, early_by, general_open)


def deduction_rate(tier: Tier | None, config: Config) -> int:
    """Points per yuan of a bill deduction for a member of `tier`."""
    if tier is not None and tier.deduction_points_per_yuan is not None:
        return tier.deduction_points_per_yuan
    return config.redemption.deduction_points_per_yuan


def refuse_tier_only(access: ItemAccess) -> None:
    """Raise TierOnly when the access says the item needs a higher tier."""
    if access.reason == "tier_only" and access.needed is not None:
        raise TierOnly(
            N_("benefits.tier_only_refused"), tier=access.needed.name, emoji=access.needed.emoji
        )


def mall_terms(
    item: MallItem,
    member_id: int,
    now: datetime,
    config: Config,
) -> TermsReader:
    """The member's terms for `item` as the store reads them inside the offering or redeeming
    transaction: the tier held then, and the personal plan running then, decide (a tier-only
    item below the tier, without the plan's priority, raises TierOnly)."""

    def read(conn: sqlite3.Connection) -> MemberTerms:
        tier = held_tier(conn, member_id, config) if tiers_on(config) else None
        priority = priority_skus_of(conn, member_id, now)
        access = item_access(item, tier, now, config, priority_skus=priority)
        refuse_tier_only(access)
        rate = deduction_rate(tier, config) if item.kind == "deduction" else None
        return MemberTerms(opens_at=access.opens_at, points_per_yuan=rate)

    return read


def birthday_gift_points(tier: Tier | None, config: Config) -> int:
    """A member's birthday gift: their tier's when it sets one, else [birthday] gift_points."""
    if tier is not None and tier.birthday_gift_points is not None:
        return tier.birthday_gift_points
    return config.birthday.gift_points


def birthday_gifts_on(config: Config) -> bool:
    """Some member gets a birthday gift: the programme's, or a tier's."""
    return config.birthday.gift_points > 0 or any(
        tier.birthday_gift_points for tier in config.tiers.levels
    )


def birthday_gift_tiers(config: Config) -> list[tuple[Tier, int]]:
    """The tiers whose birthday gift differs from [birthday] gift_points, with their gift."""
    return [
        (tier, tier.birthday_gift_points)
        for tier in config.tiers.levels
        if tier.birthday_gift_points is not None
        and tier.birthday_gift_points != config.birthday.gift_points
    ]


def extra_spin_tiers(config: Config) -> list[tuple[Tier, int]]:
    """The tiers that add free wheel spins a day, with how many (none without a wheel)."""
    if config.wheel is None or not config.wheel.enabled:
        return []
    return [(t, t.extra_free_spins) for t in config.tiers.levels if t.extra_free_spins]


def deduction_rate_tiers(config: Config) -> list[tuple[Tier, int]]:
    """The tiers whose bill deductions take another number of points per yuan, with it."""
    standard = config.redemption.deduction_points_per_yuan
    return [
        (t, t.deduction_points_per_yuan)
        for t in config.tiers.levels
        if t.deduction_points_per_yuan is not None and t.deduction_points_per_yuan != standard
    ]


def extra_free_spins(tier: Tier | None) -> int:
    """Free wheel spins a day a member's tier adds to [wheel] free_spins_per_day."""
    return 0 if tier is None else tier.extra_free_spins


def free_plays(game: str, free_per_day: int, daily_limit: int, tier: Tier | None) -> int:
    """A member's free plays a day of `game`: the table's, plus their tier's extra wheel spins
    (never more than the day's limit)."""
    if game != "wheel":
        return free_per_day
    return min(daily_limit, free_per_day + extra_free_spins(tier))


def member_play_rules(
    game: str, member_id: int, config: Config
) -> Callable[[sqlite3.Connection, PlayRules], PlayRules]:
    """The game's rules for this member as the store reads them inside the playing transaction
    (the tier held then adds free spins)."""

    def read(conn: sqlite3.Connection, rules: PlayRules) -> PlayRules:
        if not tiers_on(config) or game != "wheel":
            return rules
        tier = held_tier(conn, member_id, config)
        free = free_plays(game, rules.free_per_day, rules.daily_limit, tier)
        return PlayRules(rules.cost, free, rules.daily_limit, rules.daily_budget)

    return read
