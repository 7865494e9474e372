"""/broadcast: an operator's message to every member, previewed, then confirmed once."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.programme.broadcasts import BROADCAST_MESSAGE, draft_broadcast, send_broadcast
from bot.programme.errors import RuleError
from handlers.common import BotContext, edit_in_place
from handlers.staff import staff_may_tap, staff_texts
from storage.errors import NotFound

BROADCAST_PREFIX = "bc"


async def broadcast(update: Update, context: BotContext) -> None:
    """`/broadcast <text>`: show the members' view of it and how many it reaches."""
    asked = await staff_texts(update, context, "/broadcast")
    if asked is None:
        return
    message, _ = asked
    text = (message.text or "").partition(" ")[2].strip()
    if not text:
        await message.reply_text(_("broadcast.usage"))
        return
    try:
        draft = await draft_broadcast(context.services, text, actor=f"telegram:{message.chat_id}")
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    _("broadcast.send"), callback_data=f"{BROADCAST_PREFIX}:ok:{draft.id}"
                ),
                InlineKeyboardButton(
                    _("broadcast.cancel"), callback_data=f"{BROADCAST_PREFIX}:no:{draft.id}"
                ),
            ]
        ]
    )
    preview = _(BROADCAST_MESSAGE, text=text)
    await message.reply_text(
        _("broadcast.preview", preview=preview, members=draft.audience), reply_markup=keyboard
    )


async def broadcast_callback(update: Update, context: BotContext) -> None:
    """Send or cancel a previewed broadcast (only the operator who wrote it can)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await staff_may_tap(update, context, f"{BROADCAST_PREFIX}:")
    if _ is None:
        return
    parts = (query.data or "").split(":")
    services = context.services
    if (
        len(parts) != 3
        or parts[1] not in ("ok", "no")
        or not parts[2].isascii()
        or not parts[2].isdigit()
        or len(parts[2]) > 18
    ):
        await query.answer(_("button.expired"), show_alert=True)
        return
    if parts[1] == "no":
        await query.answer()
        await edit_in_place(update, _("broadcast.cancelled"))
        return
    try:
        queued = await send_broadcast(services, int(parts[2]), actor=f"telegram:{user.id}")
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    services.sender.wake()
    await edit_in_place(update, _("broadcast.queued", count=queued))
