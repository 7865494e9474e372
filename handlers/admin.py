"""Operators at the till: /purchase, /adjust and /member (admins from the configuration only)."""

from __future__ import annotations

import re

from telegram import Message, Update

from bot.programme.calendar import display_expiry
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.purchases import award_purchase, parse_amount
from handlers.common import BotContext, Texts, texts_for
from handlers.points import format_code, render_balance, signed
from storage.errors import Conflict, InsufficientPoints, NotFound
from storage.members import Member, is_valid_member_code

RECEIPT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A single adjustment beyond this is a typo (an extra zero), not a correction.
MAX_ADJUSTMENT = 100_000
MAX_REASON_LENGTH = 200
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


async def _member_by_code(
    text: str, message: Message, _: Texts, context: BotContext
) -> Member | None:
    """The member a typed or scanned code names; tell the operator when there is none."""
    code = text.replace("-", "")
    if not is_valid_member_code(code):
        await message.reply_text(_("admin.code_invalid", value=text[:32]))
        return None
    try:
        return await context.services.members.by_code(code)
    except NotFound:
        await message.reply_text(_("admin.member_not_found", code=code))
        return None


async def purchase(update: Update, context: BotContext) -> None:
    """`/purchase <member code> <amount> [category] [receipt]`: award points for a purchase."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    config = context.services.config
    args = context.args or []
    categories = ", ".join(c.id for c in config.earn.categories)
    if not 2 <= len(args) <= 4:
        await message.reply_text(_("admin.purchase.usage", categories=categories))
        return
    code_text, amount_text, *rest = args
    category_id = rest[0] if rest else None
    receipt = rest[1] if len(rest) > 1 else None
    if receipt is not None and not RECEIPT.match(receipt):
        await message.reply_text(_("admin.receipt_invalid", value=receipt[:64]))
        return
    member = await _member_by_code(code_text, message, _, context)
    if member is None:
        return
    now = context.services.clock()
    try:
        amount = parse_amount(amount_text, config)
        # The message's own time, so a redelivered update computes the identical request.
        award = award_purchase(amount, category_id, message.date, now, config)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    # One receipt earns once, whichever till or import records it; without a receipt the
    # message itself is the key (a redelivered update must not award twice).
    key = f"purchase:{receipt}" if receipt else f"purchase:tg:{message.chat_id}:{message.id}"
    ledger = context.services.ledger
    try:
        result = await ledger.earn(
            member.id,
            award.points,
            kind="purchase",
            key=key,
            actor=f"telegram:{update.effective_user.id if update.effective_user else 0}",
            expires_at=award.expires_at,
            reference=receipt,
            meta=award.meta(),
            now=now,
        )
    except Conflict:
        await message.reply_text(_("admin.purchase.conflict", receipt=receipt or "-"))
        return
    if result.replayed:
        await message.reply_text(
            _("admin.purchase.replayed", receipt=receipt or "-", points=result.points)
        )
        return
    available = await ledger.available(member.id, now)
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
            amount=amount,
            category=category,
            points=award.points,
            balance=available,
        )
    )


def _parse_delta(text: str) -> int | None:
    """A signed whole number of points within the adjustment limit, or None."""
    cleaned = text.strip().replace("＋", "+").replace("－", "-")
    if not re.fullmatch(r"[+-]?\d{1,7}", cleaned):
        return None
    delta = int(cleaned)
    return delta if delta != 0 and abs(delta) <= MAX_ADJUSTMENT else None


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
    delta = _parse_delta(args[1])
    if delta is None:
        await message.reply_text(
            _("admin.adjust.points_invalid", value=args[1][:32], limit=MAX_ADJUSTMENT)
        )
        return
    reason = " ".join(args[2:]).strip()
    if not reason:
        await message.reply_text(_("admin.adjust.reason_missing"))
        return
    if len(reason) > MAX_REASON_LENGTH:
        await message.reply_text(_("admin.adjust.reason_too_long", limit=MAX_REASON_LENGTH))
        return
    member = await _member_by_code(args[0], message, _, context)
    if member is None:
        return
    config, ledger = context.services.config, context.services.ledger
    now = context.services.clock()
    try:
        await ledger.adjust(
            member.id,
            delta,
            key=f"adjust:tg:{message.chat_id}:{message.id}",
            actor=f"telegram:{update.effective_user.id if update.effective_user else 0}",
            reason=reason,
            # Added points follow the published expiry policy, counted from the message.
            expires_at=expires_at(message.date, config) if delta > 0 else None,
            now=now,
        )
    except InsufficientPoints as exc:
        await message.reply_text(
            _("admin.adjust.insufficient", available=exc.available, requested=exc.requested)
        )
        return
    available = await ledger.available(member.id, now)
    await message.reply_text(
        _(
            "admin.adjust.done",
            name=member.display_name,
            code=format_code(member.member_code),
            delta=signed(delta),
            reason=reason,
            balance=available,
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
    member = await _member_by_code(args[0], message, _, context)
    if member is None:
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
