"""/tier (🌳 in the menu): every tier, its threshold and benefits, the member's own marked and
what the next one needs; the tier line of /balance; and the tiers part of /rules, generated
from the same programme functions (bot/programme/tiers.py) that move members."""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from telegram import Update

from bot.config import Config, Tier
from bot.i18n import N_
from bot.programme.tiers import Standing, standing, tier_benefits, tier_terms
from handlers.common import BotContext, Texts, member_for, texts_for
from handlers.tasks import BAR_CELLS, progress_bar

# The qualifying total in words, by (measure, window): "本年度消费 ¥4,680".
_TOTAL: Final[dict[tuple[str, str], str]] = {
    ("spend_yuan", "calendar_year"): N_("tiers.total.spend_yuan.calendar_year"),
    ("spend_yuan", "rolling_12_months"): N_("tiers.total.spend_yuan.rolling_12_months"),
    ("purchase_points", "calendar_year"): N_("tiers.total.purchase_points.calendar_year"),
    ("purchase_points", "rolling_12_months"): N_("tiers.total.purchase_points.rolling_12_months"),
}
# A threshold in words, by (measure, window): "本年度消费满 ¥5,000".
_THRESHOLD: Final[dict[tuple[str, str], str]] = {
    ("spend_yuan", "calendar_year"): N_("tiers.threshold.spend_yuan.calendar_year"),
    ("spend_yuan", "rolling_12_months"): N_("tiers.threshold.spend_yuan.rolling_12_months"),
    ("purchase_points", "calendar_year"): N_("tiers.threshold.purchase_points.calendar_year"),
    ("purchase_points", "rolling_12_months"): N_(
        "tiers.threshold.purchase_points.rolling_12_months"
    ),
}
# What is still needed, by measure: (to reach the next tier, to keep the tier held).
_NEEDS: Final[dict[str, tuple[str, str]]] = {
    "spend_yuan": (N_("tiers.to_next.spend_yuan"), N_("tiers.to_keep.spend_yuan")),
    "purchase_points": (
        N_("tiers.to_next.purchase_points"),
        N_("tiers.to_keep.purchase_points"),
    ),
}
_MEASURE: Final = {
    "spend_yuan": N_("rules.tiers.measure.spend_yuan"),
    "purchase_points": N_("rules.tiers.measure.purchase_points"),
}
_WINDOW: Final = {
    "calendar_year": N_("rules.tiers.window.calendar_year"),
    "rolling_12_months": N_("rules.tiers.window.rolling_12_months"),
}
_COMBINE: Final = {
    "highest": N_("rules.tiers.combine.highest"),
    "multiply": N_("rules.tiers.combine.multiply"),
}


def tier_name(tier: Tier, _: Texts) -> str:
    """A tier as a member reads it: its emoji and name."""
    return _("tiers.name", emoji=tier.emoji, tier=tier.name.get(_.language))


def total_text(total: int, config: Config, _: Texts) -> str:
    """The qualifying total in the measure's words: "本年度消费 ¥4,680"."""
    return _(_TOTAL[(config.tiers.measure, config.tiers.window)], total=f"{total:,}")


def threshold_text(tier: Tier, config: Config, _: Texts) -> str:
    """What reaches a tier: "本年度消费满 ¥5,000", or every member for the lowest."""
    if tier.threshold == 0:
        return _("tiers.threshold.everyone")
    key = _THRESHOLD[(config.tiers.measure, config.tiers.window)]
    return _(key, threshold=f"{tier.threshold:,}")


def benefit_lines(
    lines: tuple[tuple[str, dict[str, object]], ...] | list[tuple[str, dict[str, object]]],
    _: Texts,
) -> list[str]:
    """A tier's benefits, one line each (the lowest tier's standard ones when it has none)."""
    return [_(key, **params) for key, params in lines] or [_("tiers.benefit.standard")]


def _day(review_on: date) -> str:
    return review_on.isoformat()


def standing_lines(found: Standing, config: Config, _: Texts) -> list[str]:
    """Where the member stands: the tier and total, a bar to the next tier and what it needs,
    and what keeps the tier held at the review (the tier line of /balance, the foot of /tier)."""
    to_next_key, to_keep_key = _NEEDS[config.tiers.measure]
    lines = [
        _(
            "tiers.standing",
            tier=tier_name(found.tier, _),
            total=total_text(found.total, config, _),
        )
    ]
    if found.next_tier is not None and found.to_next is not None:
        lines.append(
            _(
                to_next_key,
                bar=progress_bar(found.total, found.next_tier.threshold),
                amount=f"{found.to_next:,}",
                tier=tier_name(found.next_tier, _),
            )
        )
    if found.to_keep:
        keep = _(to_keep_key, amount=f"{found.to_keep:,}", day=_day(found.review_on))
        # At the top the bar is the way to keeping the tier (below it, to the next one).
        if found.next_tier is None:
            keep = f"{progress_bar(found.total, found.tier.threshold)} {keep}"
        lines.append(keep)
    elif found.next_tier is None:
        lines.append(
            _("tiers.top_kept", bar=progress_bar(BAR_CELLS, BAR_CELLS), day=_day(found.review_on))
        )
    return lines


def render_tiers(found: Standing, config: Config, now: datetime, _: Texts) -> str:
    """The /tier answer: every tier with its threshold and benefits, the member's marked, then
    where they stand."""
    lines = [_("tiers.title"), ""]
    for tier in config.tiers.levels:
        heading = _(
            "tiers.level",
            tier=tier_name(tier, _),
            threshold=threshold_text(tier, config, _),
        )
        if tier.id == found.tier.id:
            heading += _("tiers.yours")
        lines.append(heading)
        lines += [
            _("tiers.benefit_line", benefit=line)
            for line in benefit_lines(tier_benefits(tier, config, now), _)
        ]
        lines.append("")
    lines += standing_lines(found, config, _)
    lines.append(_("tiers.footer"))
    return "\n".join(lines)


async def tier_command(update: Update, context: BotContext) -> None:
    """Show every tier and its benefits, the member's own tier and what the next one needs."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    services = context.services
    found = await standing(services, member.id)
    if found is None:
        await message.reply_text(_("tiers.none"))
        return
    await message.reply_text(render_tiers(found, services.config, services.clock(), _))


# --- /rules ------------------------------------------------------------------------------------


def render_tier_rules(config: Config, now: datetime, _: Texts) -> list[str]:
    """The tiers' part of /rules (with a blank line after it), or nothing without tiers: the
    measure and window, each tier's threshold and benefits, upgrades, entry rewards, the
    multiplier with campaigns, the yearly review, returns, and personal plans."""
    terms = tier_terms(config, now)
    if terms is None:
        return []
    lines = [
        _("rules.tiers.heading"),
        _(
            "rules.tiers.measure",
            measure=_(_MEASURE[terms.measure]),
            window=_(_WINDOW[terms.window], first=terms.months[0], last=terms.months[-1]),
        ),
    ]
    for tier, benefits in terms.levels:
        lines.append(
            _(
                "rules.tiers.level",
                tier=tier_name(tier, _),
                threshold=threshold_text(tier, config, _),
                benefits=_("rules.tiers.benefit_separator").join(benefit_lines(benefits, _)),
            )
        )
    lines.append(_("rules.tiers.upgrade"))
    lines.append(_("rules.tiers.entry_reward"))
    lines.append(_(_COMBINE[terms.combine]))
    lines.append(
        _(
            "rules.tiers.review",
            day=_day(terms.review_on),
            days=terms.notice_days,
            steps=terms.max_downgrade_steps,
        )
    )
    lines.append(_("rules.tiers.returns"))
    lines.append(_("rules.tiers.plans"))
    return [*lines, ""]
