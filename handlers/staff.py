"""The staff check every staff command and button goes through (the table:
bot.programme.staff.STAFF_ACTIONS), and staff /help generated from it."""

from __future__ import annotations

from telegram import Message, Update

from bot.programme.staff import may, staff_help
from handlers.common import BotContext, Texts, texts_for


async def staff_texts(
    update: Update, context: BotContext, action: str
) -> tuple[Message, Texts] | None:
    """The message and texts when someone allowed `action` (a key of STAFF_ACTIONS) sent this
    command; otherwise refuse politely (changing nothing) and return None."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return None
    _ = await texts_for(update, context)
    if not may(context.services.config, user.id, action):
        await message.reply_text(_("staff.denied"))
        return None
    return message, _


async def staff_may_tap(update: Update, context: BotContext, action: str) -> Texts | None:
    """The texts when someone allowed `action` (a button prefix of STAFF_ACTIONS) tapped it;
    otherwise answer the tap with a polite alert (changing nothing) and return None. Call it
    before `query.answer()`: a refusal is the answer."""
    user, query = update.effective_user, update.callback_query
    if user is None or query is None:
        return None
    _ = await texts_for(update, context)
    if not may(context.services.config, user.id, action):
        await query.answer(_("staff.denied"), show_alert=True)
        return None
    return _


def staff_help_text(update: Update, context: BotContext, _: Texts) -> str | None:
    """Staff /help: the commands this user's role may use (None for a member)."""
    user = update.effective_user
    if user is None:
        return None
    lines = staff_help(context.services.config, user.id)
    if not lines:
        return None
    return "\n".join([_("staff.help.title"), *(_(line) for line in lines)])
