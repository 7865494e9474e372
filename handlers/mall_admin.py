"""Operators and the mall: /fulfil, /stock, /delist, returns (/returns, their Approve / Reject
buttons, /approve_return, /reject_return) and /cannot_fulfil."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TypeVar

from telegram import Message, Update

from bot.config import LANGUAGES
from bot.programme import mall as mall_rules
from bot.programme.errors import RuleError
from bot.programme.mall import (
    REJECTION_REASONS,
    delist_item,
    fulfil_redemption,
    pending_returns,
    restock,
)
from bot.programme.till import split_voucher_code, voucher_code
from handlers.common import BotContext, Texts, edit_in_place
from handlers.mall import (
    REJECTION_LABELS,
    REVIEW_PREFIX,
    STATUS_LABELS,
    redemption_title,
    rejection_keyboard,
    render_return,
    review_keyboard,
    status_key,
)
from handlers.staff import staff_may_tap, staff_texts
from storage.errors import InvalidState, NotFound, VoucherExpired
from storage.mall import Settlement

MAX_REASON_LENGTH = 200
MAX_STOCK = 1_000_000
# Returns shown per /returns, oldest first, each with its own buttons.
RETURNS_SHOWN = 10
T = TypeVar("T")


async def _redemption_step(
    update: Update,
    context: BotContext,
    # One step of a redemption's life, taken by an operator: (code, reason, actor, now).
    step: Callable[[str, str, str, datetime], Awaitable[T]],
    *,
    action: str,
    usage: str,
    refused: str,
    needs_reason: bool = False,
) -> tuple[Message, Texts, T, str] | None:
    """Parse `CODE [reason]`, run the step if this staff member may run `action` (a key of the
    staff table), and explain a missing code, a wrong status or an item outside a partner's
    scope."""
    asked = await staff_texts(update, context, action)
    if asked is None:
        return None
    message, _ = asked
    typed, after = split_voucher_code(context.args or [])
    reason = " ".join(after).strip()
    if not typed or (needs_reason and not reason) or (not needs_reason and after):
        await message.reply_text(_(usage))
        return None
    if len(reason) > MAX_REASON_LENGTH:
        await message.reply_text(_("admin.adjust.reason_too_long", limit=MAX_REASON_LENGTH))
        return None
    code = voucher_code(typed)[:16]
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
    except VoucherExpired as exc:
        day = exc.valid_until.isoformat()
        await message.reply_text(_("mall_admin.fulfil.expired", code=code, day=day))
        return None
    except RuleError as exc:  # a partner's item outside its scope: nothing changed
        await message.reply_text(_(exc.key, **exc.params))
        return None
    return message, _, redemption, reason


async def fulfil(update: Update, context: BotContext) -> None:
    """`/fulfil CODE`: the cashier scanned the voucher and hands over the goods or service."""
    services = context.services
    staff_id = update.effective_user.id if update.effective_user else 0
    done = await _redemption_step(
        update,
        context,
        lambda code, _reason, actor, _now: fulfil_redemption(
            services, code, actor=actor, staff_id=staff_id
        ),
        action="/fulfil",
        usage="mall_admin.fulfil.usage",
        refused="mall_admin.fulfil.refused",
    )
    if done is not None:
        message, _, redemption, _reason = done
        title = redemption_title(redemption, context.services.config, _)
        await message.reply_text(_("mall_admin.fulfil.done", code=redemption.code, item=title))


async def stock(update: Update, context: BotContext) -> None:
    """`/stock SKU N`: set how many units are left to redeem."""
    asked = await staff_texts(update, context, "/stock")
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
    staff_id = update.effective_user.id if update.effective_user else 0
    try:
        state = await restock(context.services, sku, int(amount), staff_id=staff_id)
    except NotFound:
        await message.reply_text(_("mall_admin.no_such_sku", sku=sku))
        return
    except RuleError as exc:  # a partner's item outside its scope: nothing changed
        await message.reply_text(_(exc.key, **exc.params))
        return
    await message.reply_text(_("mall_admin.stock.done", sku=sku, left=state.left, sold=state.sold))


async def delist(update: Update, context: BotContext) -> None:
    """`/delist SKU reason`: withdraw an item; open redemptions are refunded and compensated."""
    asked = await staff_texts(update, context, "/delist")
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
    """`/approve_return CODE`: the goods came back; refund the points and tell the member."""
    services = context.services
    done = await _redemption_step(
        update,
        context,
        lambda code, _reason, actor, _now: mall_rules.approve_return(services, code, actor=actor),
        action="/approve_return",
        usage="mall_admin.approve.usage",
        refused="mall_admin.not_requested",
    )
    if done is not None:
        message, _, settled, _reason = done
        services.sender.wake()
        redemption = settled.redemption
        await message.reply_text(
            _("mall_admin.approve.done", code=redemption.code, points=redemption.points)
        )


async def reject_return(update: Update, context: BotContext) -> None:
    """`/reject_return CODE reason`: the return is refused; the member is told why."""
    services = context.services
    done = await _redemption_step(
        update,
        context,
        lambda code, reason, actor, _now: mall_rules.reject_return(
            services, code, reason=reason, actor=actor
        ),
        action="/reject_return",
        usage="mall_admin.reject.usage",
        refused="mall_admin.not_requested",
        needs_reason=True,
    )
    if done is not None:
        message, _, settled, _reason = done
        services.sender.wake()
        await message.reply_text(_("mall_admin.reject.done", code=settled.redemption.code))


async def returns(update: Update, context: BotContext) -> None:
    """`/returns`: the oldest returns waiting for staff, each with Approve / Reject."""
    asked = await staff_texts(update, context, "/returns")
    if asked is None:
        return
    message, _ = asked
    config = context.services.config
    found, total = await pending_returns(context.services, limit=RETURNS_SHOWN)
    if not found:
        await message.reply_text(_("returns.queue_empty"))
        return
    await message.reply_text(_("returns.queue_title", total=total, shown=len(found)))
    for redemption in found:
        await message.reply_text(
            render_return(redemption, config, _), reply_markup=review_keyboard(redemption.code, _)
        )


def decode_review(data: str) -> tuple[str, str, int | None] | None:
    """(action, code, rejection reason index) of a review button, or None when malformed."""
    parts = data.split(":")
    if len(parts) < 3 or parts[0] != REVIEW_PREFIX:
        return None
    action, code, extra = parts[1], parts[2], parts[3:]
    if not code.isascii() or not code.isalnum() or len(code) > 16:
        return None
    if action in ("a", "r", "b") and not extra:
        return action, code, None
    if action == "n" and len(extra) == 1 and extra[0].isascii() and extra[0].isdigit():
        index = int(extra[0][:3])
        return (action, code, index) if index < len(REJECTION_REASONS) else None
    return None


def _in_every_language(context: BotContext, key: str) -> Mapping[str, str]:
    """A catalog message in every language (a member is told in theirs)."""
    return {lang: context.services.i18n.t(lang, key) for lang in LANGUAGES}


async def return_review_callback(update: Update, context: BotContext) -> None:
    """Approve / Reject under a return: operators only; the store decides once."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await staff_may_tap(update, context, f"{REVIEW_PREFIX}:")
    if _ is None:
        return
    decoded = decode_review(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    services = context.services
    config = services.config
    action, code, index = decoded
    actor = f"telegram:{user.id}"
    try:
        current = await services.mall.redemption_by_code(code)
    except NotFound:
        current = None
    if current is None or current.return_requested_at is None:
        # No such code, or no return was ever asked for it: a forged button.
        await query.answer(_("button.expired"), show_alert=True)
        return
    settled: Settlement | None = None
    try:
        if current.status != "return_requested":
            raise InvalidState(current.status)
        if action == "r":
            await query.answer()
            await edit_in_place(
                update,
                render_return(current, config, _) + "\n" + _("returns.reject_ask", code=code),
                rejection_keyboard(code, _),
            )
            return
        if action == "b":
            await query.answer()
            await edit_in_place(update, render_return(current, config, _), review_keyboard(code, _))
            return
        if action == "a":
            settled = await mall_rules.approve_return(services, code, actor=actor)
        else:
            assert index is not None
            reason = _in_every_language(context, REJECTION_LABELS[REJECTION_REASONS[index]])
            settled = await mall_rules.reject_return(services, code, reason=reason, actor=actor)
    except InvalidState:
        # Another operator decided first (or a tap came twice): show what was decided.
        decided = await services.mall.redemption_by_code(code)
        await query.answer(_("returns.already_decided", status=_(status_key(decided))))
        await edit_in_place(update, render_return(decided, config, _))
        return
    services.sender.wake()
    redemption = settled.redemption
    if action == "a":
        await query.answer(_("returns.approved_toast", points=redemption.points))
    else:
        await query.answer(_("returns.rejected_toast"))
    await edit_in_place(update, render_return(redemption, config, _))


async def cannot_fulfil(update: Update, context: BotContext) -> None:
    """`/cannot_fulfil CODE reason`: the merchant cannot honour this order; refund it with
    compensation and tell the member."""
    services = context.services
    done = await _redemption_step(
        update,
        context,
        lambda code, reason, actor, _now: mall_rules.cannot_fulfil(
            services, code, reason=reason, actor=actor
        ),
        action="/cannot_fulfil",
        usage="returns.cannot_fulfil.usage",
        refused="returns.cannot_fulfil.refused",
        needs_reason=True,
    )
    if done is not None:
        message, _, settled, _reason = done
        services.sender.wake()
        redemption = settled.redemption
        await message.reply_text(
            _(
                "returns.cannot_fulfil.done",
                code=redemption.code,
                item=redemption_title(redemption, services.config, _),
                points=redemption.points,
                bonus=settled.bonus,
            )
        )
