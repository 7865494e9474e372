"""/broadcast: an operator's message to every member, previewed, then confirmed once."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.i18n import N_
from handlers.admin import operator_texts
from handlers.common import BotContext, edit_in_place, texts_for
from storage.errors import NotFound

BROADCAST_PREFIX = "bc"
MAX_BROADCAST_LENGTH = 3000  # leaves room for the frame around it within Telegram's 4096
BROADCAST_MESSAGE = N_("push.broadcast")


async def broadcast(update: Update, context: BotContext) -> None:
    """`/broadcast <text>`: show the members' view of it and how many it reaches."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    text = (message.text or "").partition(" ")[2].strip()
    if not text:
        await message.reply_text(_("broadcast.usage"))
        return
    if len(text) > MAX_BROADCAST_LENGTH:
        await message.reply_text(_("broadcast.too_long", limit=MAX_BROADCAST_LENGTH))
        return
    services = context.services
    actor = f"telegram:{message.chat_id}"
    saved = await services.pushes.create_broadcast(text, actor, services.clock())
    audience = await services.pushes.member_count()
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    _("broadcast.send"), callback_data=f"{BROADCAST_PREFIX}:ok:{saved.id}"
                ),
                InlineKeyboardButton(
                    _("broadcast.cancel"), callback_data=f"{BROADCAST_PREFIX}:no:{saved.id}"
                ),
            ]
        ]
    )
    preview = _(BROADCAST_MESSAGE, text=text)
    await message.reply_text(
        _("broadcast.preview", preview=preview, members=audience), reply_markup=keyboard
    )


async def broadcast_callback(update: Update, context: BotContext) -> None:
    """Send or cancel a previewed broadcast (only the operator who wrote it can)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    parts = (query.data or "").split(":")
    services = context.services
    if (
        len(parts) != 3
        or parts[1] not in ("ok", "no")
        or not parts[2].isascii()
        or not parts[2].isdigit()
        or len(parts[2]) > 18
        or not services.config.is_admin(user.id)
    ):
        await query.answer(_("button.expired"), show_alert=True)
        return
    if parts[1] == "no":
        await query.answer()
        await edit_in_place(update, _("broadcast.cancelled"))
        return
    try:
        queued = await services.pushes.confirm_broadcast(
            int(parts[2]), f"telegram:{user.id}", services.clock(), BROADCAST_MESSAGE
        )
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    services.sender.wake()
    await edit_in_place(update, _("broadcast.queued", count=queued))
