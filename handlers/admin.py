"""Operators at the till: /purchase, /adjust and /member (admins from the configuration only)."""

from __future__ import annotations

from telegram import Message, Update

from bot.programme.adjustments import adjust_points
from bot.programme.calendar import display_expiry
from bot.programme.errors import RuleError
from bot.programme.purchases import record_purchase
from bot.programme.till import command_source, find_member
from handlers.common import BotContext, Texts, texts_for
from handlers.points import format_code, render_balance, signed

# /member lists at most this many lots so the answer stays well under Telegram's 4096 chars.
MAX_LOTS_SHOWN = 15


async def operator_texts(update: Update, context: BotContext) -> tuple[Message, Texts] | None:
    """The message and texts when an admin asks; otherwise refuse politely and return None."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return None
    _ = await texts_for(update, context)
    if not context.services.config.is_admin(user.id):
        await message.reply_text(_("admin.denied"))
        return None
    return message, _


def _operator(update: Update) -> str:
    """The audit trail's name for the operator who sent the command."""
    return f"telegram:{update.effective_user.id if update.effective_user else 0}"


async def purchase(update: Update, context: BotContext) -> None:
    """`/purchase <member code> <amount> [category] [receipt]`: award points for a purchase."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if not 2 <= len(args) <= 4:
        categories = ", ".join(c.id for c in context.services.config.earn.categories)
        await message.reply_text(_("admin.purchase.usage", categories=categories))
        return
    code, amount, *rest = args
    receipt = rest[1] if len(rest) > 1 else None
    try:
        recorded = await record_purchase(
            context.services,
            code,
            amount,
            rest[0] if rest else None,
            receipt,
            # The message's own time and id, so a redelivered update makes the same request.
            purchased_at=message.date,
            source=command_source(message.chat_id, message.id),
            actor=_operator(update),
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    if recorded.status == "conflict":
        await message.reply_text(_("admin.purchase.conflict", receipt=receipt or "-"))
        return
    if recorded.status == "replayed":
        await message.reply_text(
            _("admin.purchase.replayed", receipt=receipt or "-", points=recorded.points)
        )
        return
    award, member = recorded.award, recorded.member
    category = award.category.name.get(_.language)
    if award.campaign is not None:
        category += _(
            "admin.purchase.campaign",
            campaign=award.campaign.name.get(_.language),
            multiplier=format(award.campaign.multiplier.normalize(), "f"),
        )
    await message.reply_text(
        _(
            "admin.purchase.done",
            name=member.display_name,
            code=format_code(member.member_code),
            amount=award.amount,
            category=category,
            points=recorded.points,
            balance=recorded.available,
        )
    )


async def adjust(update: Update, context: BotContext) -> None:
    """`/adjust <member code> <±points> <reason>`: an operator's correction, with its reason."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if len(args) < 2:
        await message.reply_text(_("admin.adjust.usage"))
        return
    try:
        adjusted = await adjust_points(
            context.services,
            args[0],
            args[1],
            " ".join(args[2:]),
            adjusted_at=message.date,
            source=command_source(message.chat_id, message.id),
            actor=_operator(update),
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
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


async def member_info(update: Update, context: BotContext) -> None:
    """`/member <code>`: a member's balance, expiry schedule and lots, for the operator."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if len(args) != 1:
        await message.reply_text(_("admin.member.usage"))
        return
    try:
        member = await find_member(context.services, args[0])
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
    await message.reply_text("\n".join(lines))
