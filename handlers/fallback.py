"""Whatever no feature handled: unknown commands, stray text, stickers and photos, old buttons."""

from __future__ import annotations

from telegram import Update

from handlers.common import BotContext, texts_for
from handlers.menu import main_menu


async def unknown_command(update: Update, context: BotContext) -> None:
    """An unknown /command: say so and point to /help (/cancel with no flow open: say so)."""
    message = update.effective_message
    if message is None or message.text is None:
        return
    _ = await texts_for(update, context)
    command = message.text.split()[0].split("@")[0][:64]
    if command.lower() == "/cancel":
        # Every flow that waits for typed text takes /cancel itself (their fallbacks come
        # first); one reaching here has nothing open, which is not an unknown command.
        await message.reply_text(_("fallback.nothing_to_cancel"))
        return
    await message.reply_text(_("fallback.unknown_command", command=command))


async def stray_text(update: Update, context: BotContext) -> None:
    """Text outside any conversation: show the menu."""
    message = update.effective_message
    if message is None:
        return
    _ = await texts_for(update, context)
    await message.reply_text(_("fallback.text"), reply_markup=main_menu(_))


async def not_text(update: Update, context: BotContext) -> None:
    """A sticker, voice note or file (a photo is a green share, handlers/submissions.py, or
    this when no share task is open): we only read text."""
    message = update.effective_message
    if message is None:
        return
    _ = await texts_for(update, context)
    await message.reply_text(_("fallback.not_text"))


async def stale_button(update: Update, context: BotContext) -> None:
    """A button we do not recognise (old, forged or from a removed feature)."""
    query = update.callback_query
    if query is None:
        return
    _ = await texts_for(update, context)
    await query.answer(_("button.expired"), show_alert=True)
