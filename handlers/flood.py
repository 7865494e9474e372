"""The flood limit at the door: a member over it (bot/ratelimit.py) is answered politely once
and the update does no work."""

from __future__ import annotations

import time

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.programme.staff import is_staff
from handlers.common import BotContext, texts_for


async def flood_guard(update: Update, context: BotContext) -> None:
    """Runs before every handler: a member over the limit gets one polite answer, no work."""
    user, chat = update.effective_user, update.effective_chat
    services = context.services
    if user is None or is_staff(services.config, user.id):
        return  # a cashier at a busy till is not flooding (nor any other staff)
    if chat is not None and chat.type != chat.PRIVATE:
        return  # the bot serves private chats only; elsewhere nothing is answered anyway
    now = time.monotonic()
    allowed, tell = services.flood.check(user.id, now)
    if allowed:
        if services.flood.tracked > 10_000:  # housekeeping, rarely
            services.flood.forget_idle(now)
        return
    if tell:
        _ = await texts_for(update, context)
        seconds = int(services.flood.seconds)
        if update.callback_query is not None:
            await update.callback_query.answer(
                _("flood.slow_down", seconds=seconds), show_alert=True
            )
        elif update.effective_message is not None:
            await update.effective_message.reply_text(_("flood.slow_down", seconds=seconds))
    elif update.callback_query is not None:
        await update.callback_query.answer()  # stop the member's spinner; nothing else
    raise ApplicationHandlerStop
