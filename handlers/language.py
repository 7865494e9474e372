"""/language: switch between Chinese and English, remembered per member."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.config import LANGUAGES
from handlers.common import BotContext, Texts, edit_in_place, profile_from, texts_for

LANGUAGE_PREFIX = "lang"
# Each language's own name, so a member who cannot read the current language finds theirs.
LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}


def encode_language(language: str) -> str:
    """Callback data for a language button."""
    return f"{LANGUAGE_PREFIX}:{language}"


def decode_language(data: str) -> str | None:
    """The language a callback names, or None when it is not a valid one."""
    prefix, _, language = data.partition(":")
    return language if prefix == LANGUAGE_PREFIX and language in LANGUAGES else None


def language_keyboard() -> InlineKeyboardMarkup:
    """One button per supported language."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(LANGUAGE_NAMES[lang], callback_data=encode_language(lang))
                for lang in LANGUAGES
            ]
        ]
    )


def _parse_language_arg(arg: str) -> str | None:
    wanted = arg.strip().lower()
    aliases = {
        "zh": "zh-CN",
        "zh-cn": "zh-CN",
        "中文": "zh-CN",
        "cn": "zh-CN",
        "en": "en",
        "english": "en",
    }
    return aliases.get(wanted)


async def ask_language(update: Update, context: BotContext) -> None:
    """Show the language buttons (or switch at once with `/language en`)."""
    message = update.effective_message
    if message is None:
        return
    if context.args:
        chosen = _parse_language_arg(" ".join(context.args))
        if chosen is None:
            _ = await texts_for(update, context)
            await message.reply_text(
                _("language.unknown", value=" ".join(context.args)),
                reply_markup=language_keyboard(),
            )
            return
        await _switch(update, context, chosen)
        return
    _ = await texts_for(update, context)
    await message.reply_text(_("language.choose"), reply_markup=language_keyboard())


async def language_callback(update: Update, context: BotContext) -> None:
    """A tap on a language button."""
    query = update.callback_query
    if query is None:
        return
    chosen = decode_language(query.data or "")
    if chosen is None:
        _ = await texts_for(update, context)
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    await _switch(update, context, chosen, edit=True)


async def _switch(
    update: Update, context: BotContext, language: str, *, edit: bool = False
) -> None:
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    services = context.services
    # /language before /start still works: register the member so the choice is kept.
    await services.members.register(profile_from(user))
    await services.members.set_language(user.id, language)
    services.chosen_language[user.id] = language
    _ = Texts(services.i18n, language)
    text = _("language.switched", language=LANGUAGE_NAMES[language])
    if edit and update.callback_query is not None:
        await edit_in_place(update, text)
    else:
        await message.reply_text(text)
