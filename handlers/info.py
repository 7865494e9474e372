"""/start, /help, /rules and the main menu."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final

from telegram import Update
from telegram.constants import MessageLimit

from bot.config import Config
from bot.i18n import N_
from bot.programme.birthdays import birthday_terms
from bot.programme.calendar import local_today
from bot.programme.dependants import dependant_gift_terms
from bot.programme.events import code_from_payload
from bot.programme.expiry import expiry_groups
from bot.programme.family import token_from_payload
from bot.programme.mall import return_terms, sale_rate, sale_scope, voucher_terms
from bot.programme.policy import POLICY_TEXTS, SOURCE_NAMES, describe_change, upcoming
from bot.programme.purchase_returns import return_rules
from bot.programme.purchases import campaigns_ahead, earn_rules
from bot.programme.referrals import join, referrer_from_payload
from bot.programme.tier_benefits import birthday_gift_tiers, deduction_rate_tiers, early_access
from bot.programme.tiers import tiers_on
from handlers.common import BotContext, Texts, profile_from, texts_for
from handlers.events import check_in_from_link
from handlers.family import family_command, show_invitation
from handlers.games import render_game_rules, scratch, tier_lines, wheel
from handlers.green import green
from handlers.language import ask_language
from handlers.mall import mall
from handlers.menu import decode_menu, main_menu
from handlers.points import balance, card, history
from handlers.referrals import tell_referred
from handlers.settings import settings
from handlers.staff import staff_help_text
from handlers.surveys import render_survey_rules, surveys_command
from handlers.tasks import render_task_rules, tasks_command
from handlers.tiers import render_tier_rules, tier_command
from handlers.transfer import render_family_rules

MAX_PAYLOAD_LENGTH = 64  # Telegram's own limit for a deep-link start parameter


def _number(value: Decimal) -> str:
    """A decimal without trailing zeros: 2, 1.5."""
    return format(value.normalize(), "f")


# What /rules says of each kind of dependant's gift: points, a mall item, or wishes only.
_FAMILY_GIFT_LINES: Final = {
    "child": (
        N_("rules.family.child_points"),
        N_("rules.family.child_item"),
        N_("rules.family.child_greeting"),
    ),
    "pet": (
        N_("rules.family.pet_points"),
        N_("rules.family.pet_item"),
        N_("rules.family.pet_greeting"),
    ),
}


def tier_item_lines(config: Config, now: datetime, _: Texts) -> list[str]:
    """/rules on tier-only items and early access, from the items the access rule reads."""
    lines = []
    tz = config.program.tz
    for item in config.mall.items:
        if item.available_until is not None and item.available_until <= now:
            continue
        needed = None if item.min_tier is None else config.tiers.tier(item.min_tier)
        if needed is not None:
            lines.append(
                _(
                    "benefits.rules.tier_only",
                    item=item.name.get(_.language),
                    emoji=needed.emoji,
                    tier=needed.name.get(_.language),
                )
            )
        if item.available_from is None or item.available_from <= now:
            continue
        for tier, moment in early_access(item, config):
            lines.append(
                _(
                    "benefits.rules.early_access",
                    item=item.name.get(_.language),
                    emoji=tier.emoji,
                    tier=tier.name.get(_.language),
                    when=moment.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                    general=item.available_from.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                )
            )
    return lines


def family_birthday_lines(config: Config, _: Texts) -> list[str]:
    """/rules on children's and pets' birthdays, from the terms the birthday job applies."""
    terms = dependant_gift_terms(config)
    if terms is None:
        return []
    lines = []
    for gift in terms.gifts:
        points, item, greeting = _FAMILY_GIFT_LINES[gift.kind]
        if gift.points is not None:
            lines.append(_(points, points=gift.points))
        elif gift.item is not None:
            lines.append(_(item, item=gift.item.name.get(_.language)))
        else:
            lines.append(_(greeting))
    if terms.min_days_before:
        lines.append(_("rules.family.terms", max=terms.max_dependants, days=terms.min_days_before))
    else:
        lines.append(_("rules.family.terms_anytime", max=terms.max_dependants))
    return lines


def render_rules(config: Config, now: datetime, _: Texts) -> str:
    """The programme rules in plain words, generated from the loaded configuration."""
    lang = _.language
    program, expiry = config.program, config.expiry
    lines = [_("rules.title", brand=program.brand, name=program.name.get(lang)), ""]

    lines.append(_("rules.earn.heading"))
    lines.append(_("rules.earn.base"))
    today = local_today(now, config)
    # Rates and examples from the computation every award uses (bot/programme/purchases.py).
    for rule in earn_rules(today, config):
        category = rule.category.name.get(lang)
        per_yuan = _number(rule.points_per_yuan)
        lines.append(_("rules.earn.category", category=category, points=per_yuan))
        example = rule.example
        in_campaigns = "".join(
            _(
                "rules.earn.example_campaign",
                campaign=earning.campaign.name.get(lang),
                points=earning.points,
            )
            for earning in rule.in_campaigns
            if earning.campaign is not None
        )
        lines.append(
            _(
                "rules.earn.example",
                category=category,
                amount=_number(example.amount),
                yuan=example.counted_yuan,
                points=example.points,
                campaigns=in_campaigns,
            )
        )
    lines.append(_("rules.earn.rounding"))
    lines.append(_("rules.earn.lifetime"))
    # The terms the birthday job and /settings apply (bot/programme/birthdays.py).
    birthday = birthday_terms(config)
    if birthday is not None and birthday.min_days_before:
        lines.append(
            _("rules.earn.birthday", points=birthday.gift_points, days=birthday.min_days_before)
        )
    elif birthday is not None:
        lines.append(_("rules.earn.birthday_anytime", points=birthday.gift_points))
    # The tiers' own gifts, as the birthday job gives them (bot/programme/tier_benefits.py).
    lines += tier_lines(birthday_gift_tiers(config), "benefits.rules.birthday_gift", _)
    # Children and pets: the terms the family-birthday job applies (bot/programme/dependants.py).
    lines += family_birthday_lines(config, _)
    # Campaigns over are no longer part of what members can expect.
    for campaign, categories in campaigns_ahead(today, config):
        scope = _("list.separator").join(c.name.get(lang) for c in categories)
        lines.append(
            _(
                "rules.earn.campaign",
                campaign=campaign.name.get(lang),
                starts=campaign.starts.isoformat(),
                ends=campaign.ends.isoformat(),
                multiplier=_number(campaign.multiplier),
                categories=scope,
            )
        )
    lines.append("")

    lines.append(_("rules.expiry.heading"))
    # One sentence per policy, naming the sources it covers (bot/programme/expiry.py decides
    # every lot's expiry by the same policy_on).
    groups = expiry_groups(config, today)
    for policy, sources in groups:
        names = (
            _("source.all")
            if len(groups) == 1
            else _("list.separator").join(_(SOURCE_NAMES[f"source.{s}"]) for s in sources)
        )
        policy_text = _(POLICY_TEXTS[policy.mode], months=policy.months, years=policy.years)
        lines.append(
            _("rules.expiry.group", sources=names[:1].upper() + names[1:], policy=policy_text)
        )
    if any(policy.mode != "never" for policy, _sources in groups):
        lines.append(_("rules.expiry.order"))
        lines.append(_("rules.expiry.reminders"))
    lines.append("")

    lines.append(_("rules.redeem.heading"))
    lines.append(_("rules.redeem.mall"))
    for sale in config.mall.discounts:
        if sale.ends < today:
            continue
        shown = [name.get(lang) for name in sale_scope(sale, config)]
        scope = _("list.separator").join(shown) or _("rules.mall.everything")
        lines.append(
            _(
                "rules.mall.discount",
                sale=sale.name.get(lang),
                starts=sale.starts.isoformat(),
                ends=sale.ends.isoformat(),
                rate=sale_rate(sale.percent, lang),
                scope=scope,
            )
        )
    lines.append(_("rules.redeem.deduction", points=config.redemption.deduction_points_per_yuan))
    # The rates bot/programme/tier_benefits.py prices a member's deduction at.
    lines += tier_lines(deduction_rate_tiers(config), "benefits.rules.deduction_rate", _)
    lines += tier_item_lines(config, now, _)
    # The same terms the redeeming transaction, /fulfil and the daily voucher job apply.
    for terms in voucher_terms(config):
        lapse = (
            N_("rules.redeem.validity_refund")
            if terms.refund_if_unused
            else N_("rules.redeem.validity_no_refund")
        )
        lines.append(
            _(
                lapse,
                item=terms.item.name.get(lang),
                days=terms.valid_days,
                remind=config.mall.voucher_reminder_days,
                refund_days=expiry.refund_min_validity_days,
            )
        )
    lines.append("")
    lines += render_game_rules(config, now, _)
    lines += render_survey_rules(config, now, _)
    lines += render_family_rules(config, _)
    lines += render_task_rules(config, now, _)
    lines += render_tier_rules(config, now, _)

    lines += render_return_rules(config, _)
    lines.append("")
    lines += render_purchase_return_rules(config, _)
    lines.append("")

    lines.append(_("rules.changes.heading"))
    lines.append(_("rules.changes.notice", days=expiry.policy_notice_days))
    # What changes when: every announced change not in force yet (bot/programme/policy.py).
    for change in upcoming(config, today):
        described = describe_change(change, config, _.i18n, lang)
        lines.append(_("rules.changes.term", day=change.effective_on.isoformat(), change=described))
    if program.support_contact:
        lines.append("")
        lines.append(_("rules.contact", contact=program.support_contact))
    return "\n".join(lines)


# How each kind reads in the returns rules.
KIND_NAMES = {
    "goods": N_("rules.returns.kind.goods"),
    "voucher": N_("rules.returns.kind.voucher"),
    "deduction": N_("rules.returns.kind.deduction"),
    "service": N_("rules.returns.kind.service"),
}


def render_return_rules(config: Config, _: Texts) -> list[str]:
    """What can be cancelled, returned or not, and how: from the table the buttons obey."""
    terms = return_terms(config)

    def kinds(names: tuple[str, ...]) -> str:
        return _("list.separator").join(_(KIND_NAMES[kind]) for kind in names)

    lines = [_("rules.returns.heading"), _("rules.returns.window", days=terms.days)]
    if terms.cancel_kinds:
        lines.append(_("rules.returns.cancel", kinds=kinds(terms.cancel_kinds)))
    if terms.return_kinds:
        lines.append(_("rules.returns.after_pickup", kinds=kinds(terms.return_kinds)))
    if terms.final_kinds:
        lines.append(_("rules.returns.final", kinds=kinds(terms.final_kinds)))
    lines.append(_("rules.returns.merchant", days=terms.merchant_min_days))
    if terms.compensation_percent:
        lines.append(_("rules.returns.compensation", percent=terms.compensation_percent))
    return lines


def render_purchase_return_rules(config: Config, _: Texts) -> list[str]:
    """What a refunded purchase takes back and how owed points are settled: from the rule
    itself (bot.programme.purchase_returns)."""
    terms = return_rules(config)
    sources = _("list.separator").join(
        _(SOURCE_NAMES[f"source.{s}"]) for s in terms.settling_sources
    )
    lines = [
        _("rules.purchase_returns.heading"),
        _("rules.purchase_returns.proportional"),
        _("rules.purchase_returns.order"),
        _("rules.purchase_returns.owed", sources=sources),
    ]
    if terms.tiers:
        lines.append(_("rules.purchase_returns.tiers"))
    if terms.purchase_tasks:
        lines.append(_("rules.purchase_returns.tasks"))
    if terms.referrals:
        lines.append(_("rules.purchase_returns.referral"))
    return lines


def _units(text: str) -> int:
    """A text's length as Telegram counts it: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def _packed(pieces: list[str], separator: str, limit: int) -> list[str]:
    """Pieces joined by `separator` into as few texts of at most `limit` units as fit."""
    packed: list[str] = []
    for piece in pieces:
        if packed and _units(packed[-1]) + _units(separator) + _units(piece) <= limit:
            packed[-1] += separator + piece
        else:
            packed.append(piece)
    return packed


def message_parts(text: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """A text cut into messages Telegram accepts: between sections (blank lines) where it
    can, else between lines."""
    # The rules grow with the programme (campaigns, sales, games, surveys): in English they
    # pass Telegram's limit, which would refuse the whole answer.
    sections: list[str] = []
    for section in text.split("\n\n"):
        lines: list[str] = []
        for line in section.split("\n"):
            # A line longer than a message: cut in halves of the limit, so even a line of
            # emoji (two units each) fits.
            step = limit if _units(line) <= limit else limit // 2
            lines += [line[i : i + step] for i in range(0, len(line), step)] or [line]
        sections += _packed(lines, "\n", limit)
    return _packed(sections, "\n\n", limit)


async def start(update: Update, context: BotContext) -> None:
    """Register the member (or greet a returning one) and show the main menu."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    payload = " ".join(context.args or [])[:MAX_PAYLOAD_LENGTH] or None
    # A referral link (ref_<member code>) registers the member and records the friend in one
    # transaction (bot/programme/referrals.py); any other payload is only stored.
    joined = None
    if payload is not None and referrer_from_payload(payload) is not None:
        joined = await join(context.services, profile_from(user), payload)
        member, is_new = joined.member, joined.is_new
    else:
        member, is_new = await context.services.members.register(
            profile_from(user), payload=payload
        )
    _ = await texts_for(update, context)
    program = context.services.config.program
    key = "start.welcome_new" if is_new else "start.welcome_back"
    text = _(
        key,
        name=member.display_name,
        brand=program.brand,
        program=program.name.get(_.language),
        code=member.member_code,
    )
    await message.reply_text(text, reply_markup=main_menu(_))
    if joined is not None:
        await tell_referred(message, joined, _)
    # An event's QR deep link checks the member in (handlers/events.py).
    event_code = code_from_payload(payload)
    if event_code is not None:
        await check_in_from_link(update, context, event_code)
    # A household invitation's deep link: the member is registered as above, then sees who
    # invites them (handlers/family.py).
    token = token_from_payload(payload)
    if token is not None:
        await show_invitation(update, context, token)


async def help_command(update: Update, context: BotContext) -> None:
    """List what the bot can do."""
    if update.effective_message is None:
        return
    _ = await texts_for(update, context)
    contact = context.services.config.program.support_contact
    text = _("help.text") + "\n" + _("help.mall") + "\n" + _("help.settings")
    text += "\n" + _("help.games")
    text += "\n" + _("help.surveys")
    text += "\n" + _("help.tasks")
    if tiers_on(context.services.config):
        text += "\n" + _("help.tier")
    if context.services.config.family.enabled:
        text += "\n" + _("help.family")
        text += "\n" + _("help.transfer")
    text += "\n" + _("help.events")
    text += "\n" + _("help.share_badges_green")
    text += "\n" + _("help.advisor")
    # Staff also see the commands their role may use, generated from the staff table.
    staff_lines = staff_help_text(update, context, _)
    if staff_lines is not None:
        text += "\n\n" + staff_lines
    if contact:
        text += "\n\n" + _("help.contact", contact=contact)
    await update.effective_message.reply_text(text, reply_markup=main_menu(_))


async def rules(update: Update, context: BotContext) -> None:
    """Disclose the programme rules (members have a legal right to them)."""
    if update.effective_message is None:
        return
    _ = await texts_for(update, context)
    text = render_rules(context.services.config, context.services.clock(), _)
    for part in message_parts(text):
        await update.effective_message.reply_text(part)


async def menu_callback(update: Update, context: BotContext) -> None:
    """A tap on a main-menu button: answer it, then run the feature."""
    query = update.callback_query
    if query is None:
        return
    await query.answer()
    item = decode_menu(query.data or "")
    if item == "balance":
        await balance(update, context)
    elif item == "history":
        await history(update, context)
    elif item == "card":
        await card(update, context)
    elif item == "mall":
        await mall(update, context)
    elif item == "wheel":
        await wheel(update, context)
    elif item == "scratch":
        await scratch(update, context)
    elif item == "settings":
        await settings(update, context)
    elif item == "rules":
        await rules(update, context)
    elif item == "help":
        await help_command(update, context)
    elif item == "surveys":
        await surveys_command(update, context)
    elif item == "tasks":
        await tasks_command(update, context)
    elif item == "tier":
        await tier_command(update, context)
    elif item == "language":
        await ask_language(update, context)
    elif item == "family":
        await family_command(update, context)
    elif item == "green":
        await green(update, context)
