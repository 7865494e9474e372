"""When earned points expire: the policy of their source in force on the day they were earned,
and how two policies compare for the points-value guarantee."""

from __future__ import annotations

from datetime import date, datetime

from bot.config import EXPIRY_SOURCES, Config, ExpiryPolicy, ExpirySource
from bot.programme.calendar import add_months, end_of_day, local_today


def last_valid_day(earned_at: datetime, config: Config, source: ExpirySource) -> date | None:
    """The last local day on which points from `source` earned at `earned_at` can be used
    (None: never expire), under the policy in force on the day they were earned."""
    earned_on = local_today(earned_at, config)
    return valid_through(earned_on, config.expiry.policy_on(earned_on, source))


def valid_through(earned_on: date, policy: ExpiryPolicy) -> date | None:
    """The last day points earned on local `earned_on` can be used under `policy`."""
    if policy.mode == "never":
        return None
    if policy.mode == "year_end":
        return date(earned_on.year + policy.years, 12, 31)
    return add_months(earned_on, policy.months)


def expires_at(earned_at: datetime, config: Config, source: ExpirySource) -> datetime | None:
    """When points from `source` earned at `earned_at` expire (None: never)."""
    day = last_valid_day(earned_at, config, source)
    return None if day is None else end_of_day(day, config)


def lasts_at_least(new: ExpiryPolicy, old: ExpiryPolicy) -> bool:
    """True when points earned on ANY day last at least as long under `new` as under `old`.

    Conservative by construction: a change is "no worse" only if it is no worse on the
    member's worst day. Rolling N months against year end +Y: the worst earn day for the
    year-end rule is 31 December (it then lasts 12·Y months exactly), so year_end Y is no
    worse than rolling N when 12·Y ≥ N; rolling N is no worse than year_end Y only when it
    outlasts a 1 January earning too, i.e. N ≥ 12·(Y + 1). Never beats everything.
    """
    if new.mode == "never":
        return True
    if old.mode == "never":
        return False
    if new.mode == old.mode == "rolling":
        return new.months >= old.months
    if new.mode == old.mode == "year_end":
        return new.years >= old.years
    if new.mode == "year_end":  # old is rolling
        return 12 * new.years >= old.months
    return new.months >= 12 * (old.years + 1)  # new rolling, old year_end


def sources_in_use(config: Config) -> tuple[ExpirySource, ...]:
    """The sources this programme awards points from (what /rules states an expiry for)."""
    offered = {
        "purchase": True,
        "campaign": bool(config.campaigns),
        # A tier may give a birthday gift where the programme gives none.
        "birthday": config.birthday.gift_points > 0
        or any(t.birthday_gift_points for t in config.tiers.levels),
        "game": config.wheel is not None and config.wheel.enabled,
        "survey": any(s.reward_points for s in config.surveys),
        "feedback": config.feedback.enabled and config.feedback.reward_points > 0,
        # The green-share bonus is a share task's reward; other tasks pay from "task", and
        # badge sets' grand prizes in points from "badge".
        "share": any(t.kind == "share" and t.reward_points for t in config.tasks),
        "task": any(t.kind != "share" and t.reward_points for t in config.tasks),
        "badge": any(s.prize_points for s in config.badge_sets),
        # Tier entry rewards; personal plans' gifts can reach any member staff give a plan.
        "tier": any(t.entry_reward_points for t in config.tiers.levels),
        "plan": True,
        # The merchant's compensation and staff adjustments can reach any member.
        "compensation": True,
        "adjustment": True,
    }
    return tuple(source for source in EXPIRY_SOURCES if offered.get(source, True))


def expiry_groups(config: Config, day: date) -> list[tuple[ExpiryPolicy, tuple[ExpirySource, ...]]]:
    """The sources in use grouped by the policy for points earned on local `day` (same rule,
    one group), in the order of their first source."""
    groups: dict[tuple[str, int], tuple[ExpiryPolicy, list[ExpirySource]]] = {}
    for source in sources_in_use(config):
        policy = config.expiry.policy_on(day, source)
        groups.setdefault(policy.rule(), (policy, []))[1].append(source)
    return [(policy, tuple(sources)) for policy, sources in groups.values()]
