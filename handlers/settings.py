"""/settings: birthday, marketing messages, language; and who has blocked the bot."""

from __future__ import annotations

import re
import warnings
from datetime import date, timedelta

from telegram import ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.config import Config
from bot.jobs import celebration_day, gift_allowed
from bot.programme.calendar import local_today
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.language import ask_language
from storage.errors import InvalidRequest
from storage.pushes import Preferences

SETTINGS_PREFIX = "set"
ASK_BIRTHDAY = 0
# 03-15, 3/15, 1990-03-15, 1990/3/15, 3月15日, 1990年3月15日
BIRTHDAY = re.compile(
    r"^\s*(?:(?P<year>\d{4})\s*[-/.年]\s*)?(?P<month>\d{1,2})\s*[-/.月]\s*(?P<day>\d{1,2})\s*日?\s*$"
)


def settings_keyboard(prefs: Preferences, _: Texts) -> InlineKeyboardMarkup:
    """The settings buttons: birthday, marketing on/off, language."""
    birthday = (
        "settings.set_birthday" if prefs.birthday_month is None else "settings.change_birthday"
    )
    marketing = "settings.marketing_off" if prefs.marketing_opt_in else "settings.marketing_on"
    toggle = "mkt:off" if prefs.marketing_opt_in else "mkt:on"
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(_(birthday), callback_data=f"{SETTINGS_PREFIX}:birthday")],
            [InlineKeyboardButton(_(marketing), callback_data=f"{SETTINGS_PREFIX}:{toggle}")],
            [InlineKeyboardButton(_("settings.language"), callback_data=f"{SETTINGS_PREFIX}:lang")],
        ]
    )


def render_settings(prefs: Preferences, _: Texts) -> str:
    """What the member has set."""
    if prefs.birthday_month is None or prefs.birthday_day is None:
        birthday = _("settings.birthday_unset")
    else:
        birthday = f"{prefs.birthday_month:02d}-{prefs.birthday_day:02d}"
        if prefs.birthday_year:
            birthday = f"{prefs.birthday_year}-{birthday}"
    marketing = _("settings.on") if prefs.marketing_opt_in else _("settings.off")
    return _("settings.summary", birthday=birthday, marketing=marketing)


async def settings(update: Update, context: BotContext) -> None:
    """/settings: show what is set, with buttons to change it."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    await member_for(user, context)
    _ = await texts_for(update, context)
    prefs = await context.services.pushes.preferences(user.id)
    await message.reply_text(render_settings(prefs, _), reply_markup=settings_keyboard(prefs, _))


async def settings_callback(update: Update, context: BotContext) -> None:
    """Marketing on/off and the language button (the birthday button opens a conversation)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    action = (query.data or "").removeprefix(f"{SETTINGS_PREFIX}:")
    if action == "lang":
        await query.answer()
        await ask_language(update, context)
        return
    if action not in ("mkt:on", "mkt:off"):
        await query.answer(_("button.expired"), show_alert=True)
        return
    await member_for(user, context)
    prefs = await context.services.pushes.set_marketing(user.id, action == "mkt:on")
    await query.answer(
        _(
            "settings.marketing_saved_on"
            if prefs.marketing_opt_in
            else "settings.marketing_saved_off"
        )
    )
    await edit_in_place(update, render_settings(prefs, _), settings_keyboard(prefs, _))


async def ask_birthday(update: Update, context: BotContext) -> int:
    """The birthday button: ask for the date."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return ConversationHandler.END
    await query.answer()
    _ = await texts_for(update, context)
    await member_for(user, context)
    prefs = await context.services.pushes.preferences(user.id)
    key = (
        "settings.ask_birthday" if prefs.birthday_month is None else "settings.ask_birthday_change"
    )
    if query.message is not None:
        await context.bot.send_message(query.message.chat.id, _(key))
    return ASK_BIRTHDAY


def parse_birthday(text: str, today: date) -> tuple[int, int, int | None] | None:
    """(month, day, year or None) from what the member typed, or None when it is no date."""
    match = BIRTHDAY.match(text)
    if match is None:
        return None
    month, day = int(match["month"]), int(match["day"])
    year = int(match["year"]) if match["year"] else None
    try:
        date(year or 2000, month, day)  # 2000 is a leap year: 29 February is a real birthday
    except ValueError:
        return None
    if year is not None and not today.year - 120 <= year <= today.year:
        return None
    if year is not None and date(year, month, day) > today:
        return None
    return month, day, year


def next_celebration(month: int, day: int, today: date, config: Config) -> date:
    """The next local day (today included) this birthday is celebrated."""
    this_year = celebration_day(month, day, today.year, config)
    return this_year if this_year >= today else celebration_day(month, day, today.year + 1, config)


async def receive_birthday(update: Update, context: BotContext) -> int:
    """The member typed a date: validate it, keep it, and say what it means for the gift."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ASK_BIRTHDAY
    _ = await texts_for(update, context)
    services = context.services
    config = services.config
    now = services.clock()
    today = local_today(now, config)
    parsed = parse_birthday(message.text, today)
    if parsed is None:
        await message.reply_text(_("settings.birthday_invalid", value=message.text[:32]))
        return ASK_BIRTHDAY
    month, day, year = parsed
    try:
        await services.pushes.set_birthday(
            user.id, month, day, year, now=now, change_allowed_after=now - timedelta(days=365)
        )
    except InvalidRequest:
        await message.reply_text(_("settings.birthday_change_too_soon"))
        return ConversationHandler.END
    upcoming = next_celebration(month, day, today, config)
    lines = [_("settings.birthday_saved", month=month, day=day)]
    gift = config.birthday.gift_points
    if gift and not gift_allowed(now, upcoming, config):
        lines.append(_("settings.birthday_no_gift_this_year", days=config.birthday.min_days_before))
    elif gift:
        lines.append(_("settings.birthday_gift", points=gift))
    await message.reply_text("\n".join(lines))
    return ConversationHandler.END


async def cancel(update: Update, context: BotContext) -> int:
    """/cancel: leave the birthday question; nothing is changed."""
    if update.effective_message is not None:
        _ = await texts_for(update, context)
        await update.effective_message.reply_text(_("settings.cancelled"))
    return ConversationHandler.END


def birthday_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """Ask for a birthday and wait for the typed date, with /cancel to leave."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        # The entry is a button and the answer a typed message, so the conversation is
        # tracked per chat and user, not per message: the warning says just that.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CallbackQueryHandler(ask_birthday, pattern=rf"^{SETTINGS_PREFIX}:birthday$")
            ],
            states={ASK_BIRTHDAY: [MessageHandler(private_text, receive_birthday)]},
            fallbacks=[CommandHandler("cancel", cancel)],
            name="birthday",
            persistent=True,
            conversation_timeout=600,
        )


async def chat_member_changed(update: Update, context: BotContext) -> None:
    """A member blocked or unblocked the bot: pushes stop or resume."""
    change = update.my_chat_member
    if change is None:
        return
    status = change.new_chat_member.status
    reachable = status not in (ChatMember.BANNED, ChatMember.LEFT)
    await context.services.pushes.set_reachable(change.from_user.id, reachable)
