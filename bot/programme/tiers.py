"""Member tiers: the one home of what qualifies a member for a tier, which tier a total
reaches, when the qualifying period turns, and what moving up a tier pays and says.

The qualifying measure ([tiers] measure) is purchase points (before campaign and tier
bonuses) or whole yuan spent, summed over the window's local months ([tiers] window: this
calendar year, or the current month and the 11 before it). A member holds the lowest tier
until their total reaches a higher threshold; they move up AT ONCE, inside the transaction of
the purchase that crossed it (`tiers_moved`, called by the purchase hook
bot.programme.task_progress.purchases_booked for every purchase path), and each tier reached
on the way pays its entry reward once per qualification period (the calendar year; skipped
tiers included). Moving down happens at the yearly review (1 January, local), and when a
purchase return undoes an upgrade of this period (bot.programme.tier_review.undo_upgrade): its
entry rewards are taken back, and crossing again pays them once more (`entry_reward_key`).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

from bot.config import LANGUAGES, Config, Localized, MallItem, Tier
from bot.i18n import N_, packaged
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.expiry import expires_at
from storage import ledger
from storage import tiers as store
from storage.errors import StoreError
from storage.ledger import EarnRequest
from storage.pushes import SERVICE, Push, enqueue
from storage.tiers import Qualifying

if TYPE_CHECKING:
    from bot.programme.task_progress import BookedPurchase

TIER_SOURCE: Final = "tier"
TIER_ACTOR: Final = "system:tiers"


def tiers_on(config: Config) -> bool:
    """The programme has tiers."""
    return bool(config.tiers.levels)


def lowest(config: Config) -> Tier:
    """The lowest tier (every member holds at least this one)."""
    return config.tiers.levels[0]


def tier_named(tier_id: str | None, config: Config) -> Tier:
    """The tier with this id; None, or a tier no longer configured: the lowest."""
    found = config.tiers.tier(tier_id) if tier_id is not None else None
    return found if found is not None else lowest(config)


def rank(tier: Tier, config: Config) -> int:
    """A tier's place, 0 for the lowest."""
    return config.tiers.rank(tier.id)


def month_of(day: date) -> str:
    """The local month a day belongs to, as the qualifying months are kept: '2026-12'."""
    return f"{day.year:04d}-{day.month:02d}"


def qualification_months(today: date, config: Config) -> tuple[str, ...]:
    """The local months whose purchases count today, oldest first."""
    if config.tiers.window == "calendar_year":
        return tuple(f"{today.year:04d}-{m:02d}" for m in range(1, today.month + 1))
    index = today.year * 12 + today.month - 1
    return tuple(f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - 11, index + 1))


def qualification_period(today: date) -> str:
    """The qualification period of a local day: its calendar year (reviewed on 1 January)."""
    return f"{today.year:04d}"


def next_review(today: date) -> date:
    """The local day of the next yearly review, when tiers may go down."""
    return date(today.year + 1, 1, 1)


def measure(figures: Qualifying, config: Config) -> int:
    """The qualifying total of some figures: purchase points, or whole yuan spent."""
    return figures.points if config.tiers.measure == "purchase_points" else figures.fen // 100


def tier_for_total(total: int, config: Config) -> Tier:
    """The highest tier whose threshold the total reaches."""
    reached = lowest(config)
    for tier in config.tiers.levels:
        if total >= tier.threshold:
            reached = tier
    return reached


def next_tier(tier: Tier, config: Config) -> Tier | None:
    """The tier above this one, or None at the top."""
    levels = config.tiers.levels
    index = rank(tier, config)
    return levels[index + 1] if index + 1 < len(levels) else None


def entry_reward_key(tier_id: str, member_id: int, period: str, entry: int = 1) -> str:
    """The idempotency key of a tier's entry reward: once per member, tier and period, and
    once more (`entry` 2, 3...) each time a purchase return took the one before back."""
    key = f"tier_entry:{tier_id}:{member_id}:{period}"
    return key if entry == 1 else f"{key}:{entry}"


def current_entry(
    conn: sqlite3.Connection, tier_id: str, member_id: int, period: str
) -> tuple[int, store.EntryReward | None]:
    """The entry of a tier's reward this period that counts now: the first whose reward was
    not taken back, with that reward (None: not paid yet)."""
    entry = 1
    while True:
        key = entry_reward_key(tier_id, member_id, period, entry)
        reward = store.entry_rewards(conn, [key]).get(key)
        if reward is None or not reward.taken_back:
            return entry, reward
        entry += 1


def tier_only_items(tier: Tier, config: Config) -> list[MallItem]:
    """The mall items only members of some tier may redeem, that this tier may (its own and
    those of the tiers below it)."""
    levels = config.tiers
    return [
        item
        for item in config.mall.items
        if item.min_tier is not None
        and levels.rank(item.min_tier) > 0
        and levels.rank(item.min_tier) <= rank(tier, config)
    ]


def early_access(item: MallItem, tier: Tier, config: Config) -> datetime | None:
    """From when a member of this tier may redeem the item ahead of everyone else: the earliest
    moment of its own tier or a lower one, or None when it has no head start."""
    moments = [
        moment
        for tier_id, moment in item.tier_available_from.items()
        if config.tiers.rank(tier_id) <= rank(tier, config)
    ]
    if not moments or item.available_from is None:
        return None
    first = min(moments)
    return first if first < item.available_from else None


def tier_benefits(
    tier: Tier, config: Config, now: datetime | None = None
) -> list[tuple[str, dict[str, object]]]:
    """What a tier gives, one catalog line (message key, params) per benefit: the congratulation,
    /tier and /rules list these. With `now`, an early access already open to everyone (or an
    item no longer listed) is left out."""
    lines: list[tuple[str, dict[str, object]]] = []
    if tier.earn_multiplier > 1:
        lines.append(
            (
                N_("tiers.benefit.multiplier"),
                {"multiplier": format(tier.earn_multiplier.normalize(), "f")},
            )
        )
    if tier.entry_reward_points:
        lines.append((N_("tiers.benefit.entry_reward"), {"points": tier.entry_reward_points}))
    # A birthday gift is a benefit only where it beats every member's ([birthday] gift_points).
    if (
        tier.birthday_gift_points is not None
        and tier.birthday_gift_points > config.birthday.gift_points
    ):
        lines.append((N_("tiers.benefit.birthday"), {"points": tier.birthday_gift_points}))
    if tier.extra_free_spins and config.wheel is not None and config.wheel.enabled:
        lines.append((N_("tiers.benefit.spins"), {"spins": tier.extra_free_spins}))
    standard = config.redemption.deduction_points_per_yuan
    if tier.deduction_points_per_yuan is not None and tier.deduction_points_per_yuan < standard:
        lines.append(
            (
                N_("tiers.benefit.deduction"),
                {"points": tier.deduction_points_per_yuan, "standard": standard},
            )
        )
    listed = [
        item
        for item in tier_only_items(tier, config)
        if now is None or item.available_until is None or item.available_until > now
    ]
    if listed:
        lines.append((N_("tiers.benefit.exclusive"), {"items": _names(listed)}))
    for item in config.mall.items:
        opens = early_access(item, tier, config)
        if opens is None or item.available_from is None:
            continue
        if now is not None and item.available_from <= now:
            continue
        lines.append(
            (
                N_("tiers.benefit.early_access"),
                {
                    "item": item.name,
                    "day": opens.astimezone(config.program.tz).strftime("%Y-%m-%d %H:%M"),
                },
            )
        )
    return lines


def _names(items: Sequence[MallItem]) -> Localized:
    """Items' names as one list in every language."""
    i18n = packaged()
    return Localized.model_validate(
        {
            code: i18n.t(language, "list.separator").join(i.name.get(language) for i in items)
            for code, language in (("zh-CN", "zh-CN"), ("en", "en"))
        }
    )


def _both(tier: Tier) -> dict[str, str]:
    return {"zh-CN": tier.name.zh_CN, "en": tier.name.en}


def benefits_text(tier: Tier, config: Config, now: datetime | None = None) -> dict[str, str]:
    """A tier's benefits in every language, each on a line of its own after a line break
    (the congratulation follows its first sentence with them); "" when it has none."""
    i18n = packaged()
    return {
        language: "".join(
            "\n• " + i18n.t(language, key, **params)
            for key, params in tier_benefits(tier, config, now)
        )
        for language in LANGUAGES
    }


@dataclass(frozen=True, slots=True)
class TierUpgrade:
    """A member moving up: from which tier to which, the total that did it, the purchase that
    crossed the threshold, and the entry rewards paid (tier id, operation id)."""

    member_id: int
    from_tier: Tier
    to_tier: Tier
    total: int
    operation_id: int | None
    rewards: tuple[tuple[str, int], ...]


def tiers_moved(
    conn: sqlite3.Connection,
    booked: Sequence[BookedPurchase],
    config: Config,
    now: datetime,
    *,
    actor: str,
    tell_member: bool = True,
) -> list[TierUpgrade]:
    """THE tier part of the purchase hook, in the transaction that booked the purchases (never
    replays): add them to their members' months, and move up at once every member whose total
    now reaches a higher tier (entry rewards for each tier reached, the messages)."""
    if not tiers_on(config) or not booked:
        return []
    today = local_today(now, config)
    months = set(qualification_months(today, config))
    month_of_day: dict[date, str] = {}
    sums: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    counting: dict[int, list[BookedPurchase]] = defaultdict(list)
    for purchase in booked:
        if (month := month_of_day.get(purchase.day)) is None:
            month = month_of_day[purchase.day] = month_of(purchase.day)
        figures = sums[(purchase.member_id, month)]
        figures[0] += purchase.points
        figures[1] += purchase.fen
        if month in months:
            counting[purchase.member_id].append(purchase)
    store.add_months(conn, [(m, month, p, f) for (m, month), (p, f) in sums.items()])
    held = store.held(conn, counting)
    top = config.tiers.levels[-1]
    # Members at the top tier cannot move up: their totals are not needed.
    counting = {m: bought for m, bought in counting.items() if held.get(m) != top.id}
    if not counting:
        return []
    totals = store.qualifying(conn, counting, months)
    rises: list[_Rise] = []
    for member_id in sorted(counting):
        now_tier = tier_named(held.get(member_id), config)
        after = totals.get(member_id, Qualifying())
        if now_tier.id == top.id or rank(
            tier_for_total(measure(after, config), config), config
        ) <= rank(now_tier, config):
            continue
        rises.append(
            _move_up(
                conn, member_id, held.get(member_id), after, counting[member_id], config, now, actor
            )
        )
    if not rises:
        return []
    # The entry rewards and the messages of all of them at once: a batch of an import may
    # move thousands of members.
    period = qualification_period(today)
    keys = {
        (rise.member_id, tier.id): entry_reward_key(tier.id, rise.member_id, period)
        for rise in rises
        for tier in rise.reached
    }
    paid_before = ledger.existing_keys(conn, list(keys.values()))
    entries: dict[tuple[int, str], int] = {}
    for (member_id, tier_id), key in keys.items():
        if key in paid_before:
            # Paid already this period: if a return took it back, the next entry counts
            # (rare, so looked up one at a time).
            entry, reward = current_entry(conn, tier_id, member_id, period)
            if entry > 1:
                entries[(member_id, tier_id)] = entry
                keys[(member_id, tier_id)] = again = entry_reward_key(
                    tier_id, member_id, period, entry
                )
                if reward is not None:
                    paid_before.add(again)
    expiry = expires_at(now, config, TIER_SOURCE)
    due = [
        (rise, tier)
        for rise in rises
        for tier in rise.reached
        if tier.entry_reward_points and keys[(rise.member_id, tier.id)] not in paid_before
    ]
    results = ledger.earn_many(
        conn,
        [
            EarnRequest(
                rise.member_id,
                tier.entry_reward_points,
                TIER_SOURCE,
                keys[(rise.member_id, tier.id)],
                TIER_ACTOR,
                expiry,
                now,
                reason=tier.id,
                meta={"tier": tier.id, "period": period},
            )
            for rise, tier in due
        ],
    )
    paid: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for (rise, tier), result in zip(due, results, strict=True):
        if isinstance(result, StoreError):
            raise result
        paid[rise.member_id].append((tier.id, result.operation_id))
    pushes: list[Push] = []
    upgrades: list[TierUpgrade] = []
    listed: dict[str, dict[str, str]] = {}

    def benefits(tier: Tier) -> dict[str, str]:
        """A tier's benefits text, rendered once per batch (thousands may reach one tier)."""
        if tier.id not in listed:
            listed[tier.id] = benefits_text(tier, config, now)
        return listed[tier.id]

    for rise in rises:
        rewards = tuple(paid.get(rise.member_id, ()))
        upgrades.append(
            TierUpgrade(
                rise.member_id, rise.from_tier, rise.target, rise.total, rise.crossing, rewards
            )
        )
        if not tell_member:
            continue
        # Once per upgrade: a member a return moved down may cross the same threshold again.
        again = "" if rise.crossing is None else f":{rise.crossing}"
        pushes.append(
            Push(
                f"tier:{rise.member_id}:{rise.target.id}:{period}:up{again}",
                rise.member_id,
                SERVICE,
                N_("tiers.notice_upgraded"),
                {
                    "tier": _both(rise.target),
                    "emoji": rise.target.emoji,
                    "benefits": benefits(rise.target),
                },
            )
        )
        for tier_id, _operation in rewards:
            tier = tier_named(tier_id, config)
            entry = entries.get((rise.member_id, tier_id), 1)
            pushes.append(
                Push(
                    f"tier:{rise.member_id}:{tier.id}:{period}:reward"
                    + ("" if entry == 1 else f":{entry}"),
                    rise.member_id,
                    SERVICE,
                    N_("tiers.notice_entry_reward"),
                    {"tier": _both(tier), "points": tier.entry_reward_points},
                )
            )
    if pushes:
        enqueue(conn, pushes, now)
    return upgrades


@dataclass(frozen=True, slots=True)
class _Rise:
    """A member moved up by a batch: from which tier to which, the total that did it, the
    purchase that first crossed a threshold, and every tier reached on the way."""

    member_id: int
    from_tier: Tier
    target: Tier
    total: int
    crossing: int | None
    reached: tuple[Tier, ...]


def _move_up(
    conn: sqlite3.Connection,
    member_id: int,
    held_id: str | None,
    after: Qualifying,
    purchases: list[BookedPurchase],
    config: Config,
    now: datetime,
    actor: str,
) -> _Rise:
    """Move one member up to the tier their total reaches, recording each tier reached with
    the purchase that reached it."""
    now_tier = tier_named(held_id, config)
    total = measure(after, config)
    target = tier_for_total(total, config)
    # Run the batch's purchases from the figures before them: each purchase that crosses a
    # threshold is recorded with the tier it reached, so the history says which tier every
    # purchase of the batch was booked in (the import's writer walks them the same way).
    points = after.points - sum(p.points for p in purchases)
    fen = after.fen - sum(p.fen for p in purchases)
    crossing: int | None = None
    current_id, current = held_id, now_tier
    for purchase in purchases:
        points, fen = points + purchase.points, fen + purchase.fen
        running = measure(Qualifying(points, fen), config)
        reached_now = tier_for_total(running, config)
        if rank(reached_now, config) <= rank(current, config):
            continue
        if crossing is None:
            crossing = purchase.operation_id
        store.change_tier(
            conn,
            member_id,
            current_id,
            reached_now.id,
            reason="upgrade",
            total=running,
            actor=actor,
            now=now,
            operation_id=purchase.operation_id,
        )
        current_id, current = reached_now.id, reached_now
    if current.id != target.id:
        # The walk ends on `after`, whose tier is `target`; should the figures before the
        # batch disagree with it (a month clamped at 0), the member still reaches the target.
        store.change_tier(
            conn,
            member_id,
            current_id,
            target.id,
            reason="upgrade",
            total=total,
            actor=actor,
            now=now,
            operation_id=crossing,
        )
    reached = tuple(config.tiers.levels[rank(now_tier, config) + 1 : rank(target, config) + 1])
    return _Rise(member_id, now_tier, target, total, crossing, reached)


def held_tier(conn: sqlite3.Connection, member_id: int, config: Config) -> Tier:
    """The tier a member holds now, inside a transaction (the lowest without a change)."""
    return tier_named(store.held_one(conn, member_id), config)


async def member_tier(programme: Programme, member_id: int) -> Tier | None:
    """The tier a member holds (None: the programme has no tiers)."""
    if not tiers_on(programme.config):
        return None
    return tier_named(await programme.tiers.held_one(member_id), programme.config)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a member stands: the tier held, the qualifying total so far this window, the
    tier that total reaches, the next tier up and what it still needs, and the review day."""

    tier: Tier
    total: int
    reached: Tier
    next_tier: Tier | None
    to_next: int | None
    # What the total still needs by the review for the member to keep the tier held (0: kept).
    to_keep: int
    review_on: date


async def standing(programme: Programme, member_id: int) -> Standing | None:
    """The member's standing (None: the programme has no tiers)."""
    config = programme.config
    if not tiers_on(config):
        return None
    today = local_today(programme.now(), config)
    held_id, figures = await programme.tiers.standing_one(
        member_id, qualification_months(today, config)
    )
    tier = tier_named(held_id, config)
    total = measure(figures, config)
    above = next_tier(tier, config)
    return Standing(
        tier=tier,
        total=total,
        reached=tier_for_total(total, config),
        next_tier=above,
        to_next=None if above is None else max(0, above.threshold - total),
        to_keep=max(0, tier.threshold - total),
        review_on=next_review(today),
    )


@dataclass(frozen=True, slots=True)
class TierTerms:
    """The tier rules /rules discloses, from the configuration and the functions that apply
    them: the measure and its window today, the tiers with their benefits, how the multiplier
    meets a campaign's, and the yearly review."""

    measure: str
    window: str
    months: tuple[str, ...]
    combine: str
    notice_days: int
    max_downgrade_steps: int
    review_on: date
    levels: tuple[tuple[Tier, tuple[tuple[str, dict[str, object]], ...]], ...]


def tier_terms(config: Config, now: datetime) -> TierTerms | None:
    """The tier terms in force at `now` (None: the programme has no tiers)."""
    if not tiers_on(config):
        return None
    today = local_today(now, config)
    settings = config.tiers
    return TierTerms(
        measure=settings.measure,
        window=settings.window,
        months=qualification_months(today, config),
        combine=settings.combine,
        notice_days=settings.downgrade_notice_days,
        max_downgrade_steps=settings.max_downgrade_steps,
        review_on=next_review(today),
        levels=tuple((tier, tuple(tier_benefits(tier, config, now))) for tier in settings.levels),
    )
