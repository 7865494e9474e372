"""Operators and the mall: /fulfil, /stock, /delist, /approve_return and /reject_return."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from telegram import Message, Update
from telegram.error import Forbidden, TelegramError

from bot.i18n import resolve_language
from bot.programme.mall import delist_item
from handlers.admin import operator_texts
from handlers.common import BotContext, Texts
from handlers.mall import STATUS_LABELS, redemption_title
from storage.errors import InvalidState, NotFound
from storage.mall import Redemption

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 200
MAX_STOCK = 1_000_000


async def _tell_member(
    context: BotContext, redemption: Redemption, key: str, **params: object
) -> None:
    """Tell a member what happened to their redemption, in their language (best effort)."""
    services = context.services
    telegram_id = redemption.telegram_id
    member = await services.members.by_telegram_id(telegram_id)
    language = resolve_language(
        member.language if member else None,
        member.telegram_language if member else None,
        services.config.program.default_language,
    )
    _ = Texts(services.i18n, language)
    item = redemption_title(redemption, services.config, _)
    try:
        await context.bot.send_message(
            telegram_id, _(key, code=redemption.code, item=item, **params)
        )
    except Forbidden:
        log.info("member %s has blocked the bot; not told about %s", telegram_id, key)
    except TelegramError:
        log.warning("could not tell member %s about %s", telegram_id, key, exc_info=True)


# One step of a redemption's life, taken by an operator: (code, reason, actor, now) -> result.
Step = Callable[[str, str, str, datetime], Awaitable[Redemption]]


async def _redemption_step(
    update: Update,
    context: BotContext,
    step: Step,
    *,
    usage: str,
    refused: str,
    needs_reason: bool = False,
) -> tuple[Message, Texts, Redemption, str] | None:
    """Parse `CODE [reason]`, run the step, and explain a missing code or a wrong status."""
    asked = await operator_texts(update, context)
    if asked is None:
        return None
    message, _ = asked
    args = context.args or []
    reason = " ".join(args[1:]).strip()
    if not args or (needs_reason and not reason) or (not needs_reason and len(args) != 1):
        await message.reply_text(_(usage))
        return None
    if len(reason) > MAX_REASON_LENGTH:
        await message.reply_text(_("admin.adjust.reason_too_long", limit=MAX_REASON_LENGTH))
        return None
    code = args[0].upper()[:16]
    try:
        redemption = await step(
            code, reason, f"telegram:{message.chat_id}", context.services.clock()
        )
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_code", code=code))
        return None
    except InvalidState as exc:
        status = _(STATUS_LABELS.get(exc.status, exc.status))
        await message.reply_text(_(refused, code=code, status=status))
        return None
    return message, _, redemption, reason


async def fulfil(update: Update, context: BotContext) -> None:
    """`/fulfil CODE`: the cashier scanned the voucher and hands over the goods or service."""
    mall = context.services.mall
    done = await _redemption_step(
        update,
        context,
        lambda code, _reason, actor, now: mall.fulfil(code, actor=actor, now=now),
        usage="mall_admin.fulfil.usage",
        refused="mall_admin.fulfil.refused",
    )
    if done is not None:
        message, _, redemption, _reason = done
        title = redemption_title(redemption, context.services.config, _)
        await message.reply_text(_("mall_admin.fulfil.done", code=redemption.code, item=title))


async def stock(update: Update, context: BotContext) -> None:
    """`/stock SKU N`: set how many units are left to redeem."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if len(args) != 2:
        await message.reply_text(_("mall_admin.stock.usage"))
        return
    sku, amount = args[0].upper()[:24], args[1]
    if not amount.isascii() or not amount.isdigit() or int(amount) > MAX_STOCK:
        await message.reply_text(_("mall_admin.stock.invalid", value=amount[:16], limit=MAX_STOCK))
        return
    try:
        state = await context.services.mall.set_stock(
            sku, int(amount), now=context.services.clock()
        )
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_sku", sku=sku))
        return
    await message.reply_text(_("mall_admin.stock.done", sku=sku, left=state.left, sold=state.sold))


async def delist(update: Update, context: BotContext) -> None:
    """`/delist SKU reason`: withdraw an item; open redemptions are refunded and compensated."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    reason = " ".join(args[1:]).strip()
    if len(args) < 2 or not reason:
        await message.reply_text(_("mall_admin.delist.usage"))
        return
    if len(reason) > MAX_REASON_LENGTH:
        await message.reply_text(_("admin.adjust.reason_too_long", limit=MAX_REASON_LENGTH))
        return
    sku = args[0].upper()[:24]
    try:
        report = await delist_item(
            context.services, sku, reason=reason, actor=f"telegram:{message.chat_id}"
        )
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_sku", sku=sku))
        return
    # Each member's notice was queued with the refund (bot/programme/notices.py).
    context.services.sender.wake()
    bonus_total = sum(bonus for _r, bonus in report.cancelled)
    await message.reply_text(
        _("mall_admin.delist.done", sku=sku, count=len(report.cancelled), bonus=bonus_total)
    )


async def approve_return(update: Update, context: BotContext) -> None:
    """`/approve_return CODE`: the goods came back; refund the points."""
    mall = context.services.mall
    done = await _redemption_step(
        update,
        context,
        lambda code, _reason, actor, now: mall.approve_return(code, actor=actor, now=now),
        usage="mall_admin.approve.usage",
        refused="mall_admin.not_requested",
    )
    if done is not None:
        message, _, redemption, _reason = done
        points = redemption.points
        await _tell_member(context, redemption, "mall_admin.approve.member_notice", points=points)
        await message.reply_text(_("mall_admin.approve.done", code=redemption.code, points=points))


async def reject_return(update: Update, context: BotContext) -> None:
    """`/reject_return CODE reason`: the return is refused; the member keeps the item."""
    mall = context.services.mall
    done = await _redemption_step(
        update,
        context,
        lambda code, reason, actor, now: mall.reject_return(
            code, actor=actor, reason=reason, now=now
        ),
        usage="mall_admin.reject.usage",
        refused="mall_admin.not_requested",
        needs_reason=True,
    )
    if done is not None:
        message, _, redemption, reason = done
        await _tell_member(context, redemption, "mall_admin.reject.member_notice", reason=reason)
        await message.reply_text(_("mall_admin.reject.done", code=redemption.code))
