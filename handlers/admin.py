"""Staff at the till: /purchase (with a question before a retyped one is booked), /adjust
and /member (each for the roles the staff table allows)."""

from __future__ import annotations

import re
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update

from bot.config import Config
from bot.programme.adjustments import adjust_points
from bot.programme.calendar import display_expiry
from bot.programme.errors import RuleError
from bot.programme.family import staff_view
from bot.programme.purchases import (
    PurchaseRecorded,
    category_choices,
    category_named,
    confirmation_open,
    record_purchase,
)
from bot.programme.till import command_source, find_member, member_code, split_member_code
from handlers.common import BotContext, Texts, edit_in_place
from handlers.points import format_code, render_balance, signed
from handlers.staff import staff_may_tap, staff_texts
from storage.family import Household

# /member lists at most this many lots so the answer stays well under Telegram's 4096 chars.
MAX_LOTS_SHOWN = 15
# The buttons under a retyped purchase: Yes / No and the message id of the /purchase command
# they are about (the pending action; at most 23 bytes, well under Telegram's 64).
CONFIRM_DATA: Final = re.compile(r"tp:(ok|no):([0-9]{1,15})")


def staff_actor(update: Update) -> str:
    """The audit trail's name for the operator who sent the command."""
    return f"telegram:{update.effective_user.id if update.effective_user else 0}"


def decode_confirmation(data: str) -> tuple[bool, int] | None:
    """`tp:ok:<id>` / `tp:no:<id>` as (confirmed, the id of the command asked about), or None."""
    found = CONFIRM_DATA.fullmatch(data)
    return None if found is None else (found[1] == "ok", int(found[2]))


def amount_words(words: list[str]) -> tuple[str, list[str]] | None:
    """The amount typed first in `words` (a lone ¥ before it or 元 after it joined to it), and
    the words after it."""
    if not words:
        return None
    amount, rest = words[0], words[1:]
    if amount in ("¥", "￥") and rest:
        amount, rest = amount + rest[0], rest[1:]
    if rest[:1] == ["元"]:
        amount, rest = amount + rest[0], rest[1:]
    return amount, rest


def _purchase_args(
    args: list[str], config: Config
) -> tuple[str, str, str | None, str | None] | None:
    """`<member code> <amount> [category] [receipt]` as (code, amount, category, receipt); the
    code may be typed in groups, the category by its name (which may hold spaces)."""
    code, after = split_member_code(args)
    if not code or (typed := amount_words(after)) is None:
        return None
    amount, rest = typed
    if not rest:
        return code, amount, None, None
    # The category is every word left, or all but the last, which is the receipt then.
    if category_named(" ".join(rest), config) is not None:
        return code, amount, " ".join(rest), None
    if len(rest) > 1 and category_named(" ".join(rest[:-1]), config) is not None:
        return code, amount, " ".join(rest[:-1]), rest[-1]
    if len(rest) <= 2:  # an unknown category (and a receipt): refused by name
        return code, amount, rest[0], rest[1] if len(rest) > 1 else None
    return None


def _recorded_text(recorded: PurchaseRecorded, receipt: str | None, _: Texts) -> str:
    """What the cashier reads about a purchase booked (now or before), or refused."""
    if recorded.status == "conflict":
        return _("admin.purchase.conflict", receipt=receipt or "-")
    if recorded.status == "replayed":
        if receipt is None:
            return _("admin.purchase.replayed_entry", points=recorded.points)
        return _("admin.purchase.replayed", receipt=receipt, points=recorded.points)
    award, member = recorded.award, recorded.member
    category = award.category.name.get(_.language)
    if award.campaign is not None:
        category += _(
            "admin.purchase.campaign",
            campaign=award.campaign.name.get(_.language),
            multiplier=format(award.campaign.multiplier.normalize(), "f"),
        )
    if award.tier is not None:
        category += _(
            "admin.purchase.tier",
            tier=award.tier.name.get(_.language),
            multiplier=format(award.tier.earn_multiplier.normalize(), "f"),
        )
    return _(
        "admin.purchase.done",
        name=member.display_name,
        code=format_code(member.member_code),
        amount=award.amount,
        category=category,
        points=recorded.points,
        balance=recorded.available,
    )


def _retype_question(
    recorded: PurchaseRecorded, message_id: int, config: Config, _: Texts
) -> tuple[str, InlineKeyboardMarkup]:
    """Ask whether a purchase like one booked minutes ago is another one, with two buttons."""
    award, member = recorded.award, recorded.member
    assert recorded.earlier is not None
    text = _(
        "admin.purchase.retyped",
        name=member.display_name,
        code=format_code(member.member_code),
        amount=award.amount,
        category=award.category.name.get(_.language),
        time=recorded.earlier.astimezone(config.program.tz).strftime("%H:%M"),
    )
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    _("admin.purchase.confirm_button"), callback_data=f"tp:ok:{message_id}"
                ),
                InlineKeyboardButton(
                    _("admin.purchase.cancel_button"), callback_data=f"tp:no:{message_id}"
                ),
            ]
        ]
    )
    return text, keyboard


async def purchase(update: Update, context: BotContext) -> None:
    """`/purchase <member code> <amount> [category] [receipt]`: award points for a purchase."""
    asked = await staff_texts(update, context, "/purchase")
    if asked is None:
        return
    message, _ = asked
    config = context.services.config
    parsed = _purchase_args(context.args or [], config)
    if parsed is None:
        code, _after = split_member_code(context.args or [])
        try:
            # A code typed short takes the amount in: say the code is wrong, not the usage.
            if code:
                member_code(code)
        except RuleError as exc:
            await message.reply_text(_(exc.key, **exc.params))
            return
        await message.reply_text(_("admin.purchase.usage", categories=category_choices(config)))
        return
    code, amount, category, receipt = parsed
    try:
        recorded = await record_purchase(
            context.services,
            code,
            amount,
            category,
            receipt,
            # The message's own time and id, so a redelivered update makes the same request.
            purchased_at=message.date,
            source=command_source(message.chat_id, message.id),
            actor=staff_actor(update),
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    if recorded.status == "unconfirmed":
        # A reply to the command: the buttons act on the command Telegram shows them under.
        text, keyboard = _retype_question(recorded, message.id, context.services.config, _)
        await message.reply_text(text, reply_markup=keyboard, do_quote=True)
        return
    context.services.sender.wake()  # the member's receipt was queued with the booking
    await message.reply_text(_recorded_text(recorded, receipt, _))


async def purchase_confirmation(update: Update, context: BotContext) -> None:
    """Yes or No under a retyped purchase: book the command it replies to, or nothing."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await staff_may_tap(update, context, "tp:")
    if _ is None:
        return
    decoded = decode_confirmation(query.data or "")
    question = query.message
    command = question.reply_to_message if isinstance(question, Message) else None
    services = context.services
    # Never trusted: the pending action is the command the question replies to, as Telegram
    # keeps it. Asked by this very cashier about that command, neither edited since: answering
    # edits the question, so an edited one has been answered (the app drops the keyboard of a
    # tapped message before it is parsed, bot/sending.py); and within CONFIRM_WITHIN.
    if (
        decoded is None
        or not isinstance(question, Message)
        or command is None
        or command.id != decoded[1]
        or command.from_user is None
        or command.from_user.id != user.id
        or question.edit_date is not None
        or command.edit_date is not None
        or not confirmation_open(question.date, services.clock())
    ):
        await query.answer(_("button.expired"), show_alert=True)
        return
    if not decoded[0]:
        await query.answer()
        await edit_in_place(update, _("admin.purchase.cancelled"))
        return
    parsed = _purchase_args((command.text or "").split()[1:], services.config)
    if parsed is None:  # not a command this bot asked about
        await query.answer(_("button.expired"), show_alert=True)
        return
    code, amount, category, receipt = parsed
    try:
        recorded = await record_purchase(
            services,
            code,
            amount,
            category,
            receipt,
            # The command's own time and id: the very request it would have made, so a
            # second tap (or a redelivered one) is a replay the ledger books once.
            purchased_at=command.date,
            source=command_source(command.chat_id, command.id),
            actor=staff_actor(update),
            confirmed=True,
        )
    except RuleError as exc:
        await query.answer()
        await edit_in_place(update, _(exc.key, **exc.params))
        return
    if recorded.status == "replayed":
        # Booked by a tap a moment ago, before this one's question showed the answer.
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    services.sender.wake()  # the member's receipt was queued with the booking
    await edit_in_place(update, _recorded_text(recorded, receipt, _))


async def adjust(update: Update, context: BotContext) -> None:
    """`/adjust <member code> <±points> <reason>`: an operator's correction, with its reason."""
    asked = await staff_texts(update, context, "/adjust")
    if asked is None:
        return
    message, _ = asked
    code, args = split_member_code(context.args or [])
    if not args:
        await message.reply_text(_("admin.adjust.usage"))
        return
    try:
        adjusted = await adjust_points(
            context.services,
            code,
            args[0],
            " ".join(args[1:]),
            adjusted_at=message.date,
            source=command_source(message.chat_id, message.id),
            actor=staff_actor(update),
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    context.services.sender.wake()  # the member's notice was queued with the adjustment
    await message.reply_text(
        _(
            "admin.adjust.done",
            name=adjusted.member.display_name,
            code=format_code(adjusted.member.member_code),
            delta=signed(adjusted.delta),
            reason=adjusted.reason,
            balance=adjusted.available,
        )
    )


def render_household_for_staff(household: Household | None, _: Texts) -> str:
    """The household lines of /member."""
    if household is None:
        return _("family.staff_none")
    head = household.member(household.head_id)
    names = _("list.separator").join(
        _("family.staff_member", name=m.name, code=format_code(m.member_code))
        for m in household.members
    )
    return _(
        "family.staff_line",
        id=household.id,
        head=head.name if head is not None else "-",
        count=len(household.members),
        names=names,
    )


async def member_info(update: Update, context: BotContext) -> None:
    """`/member <code>`: a member's balance, expiry schedule and lots, for the operator."""
    asked = await staff_texts(update, context, "/member")
    if asked is None:
        return
    message, _ = asked
    code, rest = split_member_code(context.args or [])
    if not code or rest:
        await message.reply_text(_("admin.member.usage"))
        return
    try:
        member = await find_member(context.services, code)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    config, ledger = context.services.config, context.services.ledger
    now = context.services.clock()
    summary = await ledger.balance(member.id, now)
    lots = await ledger.lots(member.id)
    tz = config.program.tz
    lines = [
        _(
            "admin.member.header",
            name=member.display_name,
            code=format_code(member.member_code),
            joined=member.joined_at.astimezone(tz).date().isoformat(),
        ),
        render_balance(summary, config, _),
        _("admin.member.lots_heading") if lots else _("admin.member.no_lots"),
    ]
    # Newest first: what an operator checking a fresh complaint looks for.
    for lot in reversed(lots[-MAX_LOTS_SHOWN:]):
        if lot.expires_at is None:
            validity = _("admin.member.lot_never")
        else:
            day = display_expiry(lot.expires_at, config).isoformat()
            key = "admin.member.lot_expired" if lot.expires_at <= now else "admin.member.lot_until"
            validity = _(key, day=day)
        lines.append(
            _(
                "admin.member.lot",
                id=lot.id,
                points=lot.points,
                remainder=lot.remainder,
                earned=lot.created_at.astimezone(tz).date().isoformat(),
                validity=validity,
            )
        )
    if len(lots) > MAX_LOTS_SHOWN:
        lines.append(_("admin.member.more_lots", count=len(lots) - MAX_LOTS_SHOWN))
    lines.append(render_household_for_staff(await staff_view(context.services, member.id), _))
    await message.reply_text("\n".join(lines))
