"""Operators and the mall: /fulfil, /stock, /delist, /approve_return and /reject_return."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from telegram import Update
from telegram.error import Forbidden, TelegramError

from bot.i18n import resolve_language
from bot.rules import expires_at
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


async def fulfil(update: Update, context: BotContext) -> None:
    """`/fulfil CODE`: the cashier scanned the voucher and hands over the goods or service."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if len(args) != 1:
        await message.reply_text(_("mall_admin.fulfil.usage"))
        return
    code = args[0].upper()[:16]
    try:
        redemption = await context.services.mall.fulfil(
            code, actor=f"telegram:{message.chat_id}", now=datetime.now(UTC)
        )
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_code", code=code))
        return
    except InvalidState as exc:
        status = _(STATUS_LABELS.get(exc.status, exc.status))
        await message.reply_text(_("mall_admin.fulfil.refused", code=code, status=status))
        return
    title = redemption_title(redemption, context.services.config, _)
    await message.reply_text(_("mall_admin.fulfil.done", code=code, item=title))


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
        state = await context.services.mall.set_stock(sku, int(amount), now=datetime.now(UTC))
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
    services = context.services
    config = services.config
    sku = args[0].upper()[:24]
    now = datetime.now(UTC)
    try:
        report = await services.mall.delist(
            sku,
            reason=reason,
            compensation_percent=config.mall.delist_compensation_percent,
            compensation_expires_at=expires_at(now, config),
            min_validity_days=config.expiry.refund_min_validity_days,
            actor=f"telegram:{message.chat_id}",
            now=now,
        )
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_sku", sku=sku))
        return
    for redemption, bonus in report.cancelled:
        await _tell_member(
            context,
            redemption,
            "mall_admin.delist.member_notice",
            reason=reason,
            points=redemption.points,
            bonus=bonus,
            days=config.expiry.refund_min_validity_days,
        )
    bonus_total = sum(bonus for _r, bonus in report.cancelled)
    await message.reply_text(
        _("mall_admin.delist.done", sku=sku, count=len(report.cancelled), bonus=bonus_total)
    )


async def approve_return(update: Update, context: BotContext) -> None:
    """`/approve_return CODE`: the goods came back; refund the points."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if len(args) != 1:
        await message.reply_text(_("mall_admin.approve.usage"))
        return
    code = args[0].upper()[:16]
    try:
        redemption = await context.services.mall.approve_return(
            code, actor=f"telegram:{message.chat_id}", now=datetime.now(UTC)
        )
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_code", code=code))
        return
    except InvalidState as exc:
        status = _(STATUS_LABELS.get(exc.status, exc.status))
        await message.reply_text(_("mall_admin.not_requested", code=code, status=status))
        return
    await _tell_member(
        context, redemption, "mall_admin.approve.member_notice", points=redemption.points
    )
    await message.reply_text(_("mall_admin.approve.done", code=code, points=redemption.points))


async def reject_return(update: Update, context: BotContext) -> None:
    """`/reject_return CODE reason`: the return is refused; the member keeps the item."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    reason = " ".join(args[1:]).strip()
    if len(args) < 2 or not reason:
        await message.reply_text(_("mall_admin.reject.usage"))
        return
    if len(reason) > MAX_REASON_LENGTH:
        await message.reply_text(_("admin.adjust.reason_too_long", limit=MAX_REASON_LENGTH))
        return
    code = args[0].upper()[:16]
    try:
        redemption = await context.services.mall.reject_return(
            code, actor=f"telegram:{message.chat_id}", reason=reason, now=datetime.now(UTC)
        )
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_code", code=code))
        return
    except InvalidState as exc:
        status = _(STATUS_LABELS.get(exc.status, exc.status))
        await message.reply_text(_("mall_admin.not_requested", code=code, status=status))
        return
    await _tell_member(context, redemption, "mall_admin.reject.member_notice", reason=reason)
    await message.reply_text(_("mall_admin.reject.done", code=code))
