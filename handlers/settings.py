"""/settings: birthday, marketing messages, purchase receipts, language; and who has blocked
the bot."""

from __future__ import annotations

import warnings

from telegram import ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.i18n import N_
from bot.programme.birthdays import NotABirthday, save_birthday
from bot.programme.dependants import dependant_gift_terms
from bot.programme.errors import RuleError
from bot.programme.family import is_sharing, set_sharing
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.language import ask_language
from handlers.questions import asks
from storage.pushes import Preferences

SETTINGS_PREFIX = "set"
ASK_BIRTHDAY = 0


def settings_keyboard(
    prefs: Preferences, _: Texts, sharing: bool = False, *, family: bool = True
) -> InlineKeyboardMarkup:
    """The settings buttons: birthday, family birthdays (when offered), marketing on/off,
    receipts on/off, sharing the balance with the household on/off, language."""
    birthday = (
        "settings.set_birthday" if prefs.birthday_month is None else "settings.change_birthday"
    )
    marketing = "settings.marketing_off" if prefs.marketing_opt_in else "settings.marketing_on"
    toggle = "mkt:off" if prefs.marketing_opt_in else "mkt:on"
    receipts = "settings.receipts_off" if prefs.receipts_opt_in else "settings.receipts_on"
    receipts_toggle = "rcp:off" if prefs.receipts_opt_in else "rcp:on"
    share = "settings.share_off" if sharing else "settings.share_on"
    share_toggle = "share:off" if sharing else "share:on"
    # The household view (issue 20) opens the same list with the same "dep:list" data.
    dependants = [[InlineKeyboardButton(_("settings.family_birthdays"), callback_data="dep:list")]]
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(_(birthday), callback_data=f"{SETTINGS_PREFIX}:birthday")],
            *(dependants if family else []),
            [InlineKeyboardButton(_(marketing), callback_data=f"{SETTINGS_PREFIX}:{toggle}")],
            [
                InlineKeyboardButton(
                    _(receipts), callback_data=f"{SETTINGS_PREFIX}:{receipts_toggle}"
                )
            ],
            [InlineKeyboardButton(_(share), callback_data=f"{SETTINGS_PREFIX}:{share_toggle}")],
            [InlineKeyboardButton(_("settings.language"), callback_data=f"{SETTINGS_PREFIX}:lang")],
        ]
    )


def render_settings(prefs: Preferences, _: Texts, sharing: bool = False) -> str:
    """What the member has set."""
    if prefs.birthday_month is None or prefs.birthday_day is None:
        birthday = _("settings.birthday_unset")
    else:
        birthday = f"{prefs.birthday_month:02d}-{prefs.birthday_day:02d}"
        if prefs.birthday_year:
            birthday = f"{prefs.birthday_year}-{birthday}"
    marketing = _("settings.on") if prefs.marketing_opt_in else _("settings.off")
    receipts = _("settings.on") if prefs.receipts_opt_in else _("settings.off")
    lines = _("settings.summary", birthday=birthday, marketing=marketing, receipts=receipts).split(
        "\n"
    )
    shared = _("settings.on") if sharing else _("settings.off")
    # With the other switches, above the summary's closing note on what is always sent.
    lines.insert(len(lines) - 1, _("settings.share_state", state=shared))
    return "\n".join(lines)


async def settings(update: Update, context: BotContext) -> None:
    """/settings: show what is set, with buttons to change it."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    prefs = await context.services.pushes.preferences(user.id)
    sharing = await is_sharing(context.services, member.id)
    family = dependant_gift_terms(context.services.config) is not None
    keyboard = settings_keyboard(prefs, _, sharing, family=family)
    await message.reply_text(render_settings(prefs, _, sharing), reply_markup=keyboard)


async def settings_callback(update: Update, context: BotContext) -> None:
    """Marketing and receipts on/off, and the language button (the birthday button opens a
    conversation)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    action = (query.data or "").removeprefix(f"{SETTINGS_PREFIX}:")
    if action == "lang":
        await query.answer()
        await ask_language(update, context)
        return
    pushes = context.services.pushes
    if action not in ("mkt:on", "mkt:off", "rcp:on", "rcp:off", "share:on", "share:off"):
        await query.answer(_("button.expired"), show_alert=True)
        return
    member = await member_for(user, context)
    sharing = await is_sharing(context.services, member.id)
    if action in ("mkt:on", "mkt:off"):
        prefs = await pushes.set_marketing(user.id, action == "mkt:on")
        on = prefs.marketing_opt_in
        saved = N_("settings.marketing_saved_on") if on else N_("settings.marketing_saved_off")
    elif action in ("rcp:on", "rcp:off"):
        # Only purchase receipts: notices of adjustments, refunds and compensation always go
        # (bot/programme/notices.py).
        prefs = await pushes.set_receipts(user.id, action == "rcp:on")
        on = prefs.receipts_opt_in
        saved = N_("settings.receipts_saved_on") if on else N_("settings.receipts_saved_off")
    else:
        # The household sees this member's balance and next expiry (/family) only when on.
        sharing = await set_sharing(context.services, member.id, action == "share:on")
        prefs = await pushes.preferences(user.id)
        saved = N_("settings.share_saved_on") if sharing else N_("settings.share_saved_off")
    await query.answer(_(saved))
    family = dependant_gift_terms(context.services.config) is not None
    await edit_in_place(
        update,
        render_settings(prefs, _, sharing),
        settings_keyboard(prefs, _, sharing, family=family),
    )


@asks
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


async def receive_birthday(update: Update, context: BotContext) -> int:
    """The member typed a date: keep it (bot/programme/birthdays.py says when it may change)
    and say what it means for the gift."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ASK_BIRTHDAY
    _ = await texts_for(update, context)
    try:
        saved = await save_birthday(context.services, user.id, message.text)
    except NotABirthday as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ASK_BIRTHDAY
    except RuleError as exc:  # a change too soon: nothing changed
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    lines = [_("settings.birthday_saved", month=saved.month, day=saved.day)]
    if saved.gift is not None and not saved.gift_on_next:
        lines.append(_("settings.birthday_no_gift_this_year", days=saved.gift.min_days_before))
    elif saved.gift is not None:
        lines.append(_("settings.birthday_gift", points=saved.gift.gift_points))
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
    """A member blocked or unblocked the bot in their private chat: pushes stop or resume."""
    change = update.my_chat_member
    if change is None or change.chat.type != ChatType.PRIVATE:
        # The bot added to or removed from a group by a member says nothing about whether it
        # can write to that member privately: pushes go to the private chat.
        return
    status = change.new_chat_member.status
    reachable = status not in (ChatMember.BANNED, ChatMember.LEFT)
    await context.services.pushes.set_reachable(change.from_user.id, reachable)


async def reachable_again(update: Update, context: BotContext) -> None:
    """Runs before every handler: a private update from a member marked unreachable shows the
    bot can write to them again (a block or a 403 is not for good)."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None or chat.type != ChatType.PRIVATE:
        return
    if update.my_chat_member is not None:
        return  # a block or unblock: chat_member_changed records it
    # An in-memory check for everyone marked reachable: no database work on the hot path.
    await context.services.pushes.seen_in_private(user.id)
