"""Family birthdays in /settings: the member's children and pets, added (kind, name, birthday),
their birthdays changed once a year, removed.

The list and removal are stateless buttons (`dep:`); adding and changing wait for typed text
in a persistent conversation, what was chosen so far kept in the store (bot/programme/
dependants.py), so a restart continues where the member was.
"""

from __future__ import annotations

import warnings
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.i18n import N_
from bot.programme.birthdays import NotABirthday
from bot.programme.dependants import (
    NAME_MAX,
    FamilyBirthdays,
    SavedDependant,
    StaleStep,
    add_dependant,
    change_birthday,
    dependant_view,
    family_birthdays,
    forget_draft,
    name_dependant,
    remove_dependant,
    start_adding,
    start_change,
)
from bot.programme.errors import RuleError
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.questions import asks
from storage.dependants import KINDS

DEP_PREFIX: Final = "dep"
ASK_NAME, ASK_BIRTHDAY, ASK_CHANGE = range(3)
# Dependant ids in callback data: digits, far below 64 bytes.
MAX_ID_DIGITS: Final = 12

_LINES: Final = {"child": N_("dep.line_child"), "pet": N_("dep.line_pet")}
_ASK_NAME: Final = {"child": N_("dep.ask_name_child"), "pet": N_("dep.ask_name_pet")}


# --- callback data ---------------------------------------------------------------------------


def decode_dep(data: str) -> tuple[str, str | None] | None:
    """(action, argument) of a family-birthday button, or None when it is not well-formed."""
    prefix, *parts = data.split(":")
    shapes = {"list": 0, "add": 0, "kind": 1, "chg": 1, "rm": 1, "rmok": 1}
    if prefix != DEP_PREFIX or not parts or shapes.get(parts[0]) != len(parts) - 1:
        return None
    action, arg = parts[0], (parts[1] if len(parts) > 1 else None)
    if action == "kind" and arg not in KINDS:
        return None
    if action in ("chg", "rm", "rmok") and (
        arg is None or not arg.isascii() or not arg.isdigit() or len(arg) > MAX_ID_DIGITS
    ):
        return None
    return action, arg


def dep_data(action: str, arg: object = None) -> str:
    """Callback data for a family-birthday button."""
    return DEP_PREFIX + ":" + action + ("" if arg is None else f":{arg}")


# --- rendering -------------------------------------------------------------------------------


def render_family(family: FamilyBirthdays, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    """The member's dependants with their buttons."""
    lines = [_("dep.list_heading", max=family.max_dependants, count=len(family.dependants))]
    if not family.dependants:
        lines.append(_("dep.list_empty"))
    rows: list[list[InlineKeyboardButton]] = []
    for view in family.dependants:
        found = view.dependant
        lines.append(_(_LINES[found.kind], name=found.name, month=found.month, day=found.day))
        rows.append(
            [
                InlineKeyboardButton(
                    _("dep.change_button", name=found.name), callback_data=dep_data("chg", found.id)
                ),
                InlineKeyboardButton(
                    _("dep.remove_button", name=found.name), callback_data=dep_data("rm", found.id)
                ),
            ]
        )
    rows.append([InlineKeyboardButton(_("dep.add"), callback_data=dep_data("add"))])
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _back(_: Texts) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(_("dep.back"), callback_data="dep:list")]])


def render_saved(saved: SavedDependant, _: Texts) -> str:
    """What a saved birthday means for the next gift."""
    found, gift = saved.view.dependant, saved.view.gift
    lines = [_("dep.saved", name=found.name, month=found.month, day=found.day)]
    if saved.no_gift_because == "late":
        lines.append(_("dep.no_gift_late", days=saved.min_days_before))
    elif saved.no_gift_because == "given":
        lines.append(_("dep.no_gift_given"))
    elif gift.points is not None:
        lines.append(_("dep.gift_points", points=gift.points))
    elif gift.item is not None:
        lines.append(_("dep.gift_item", item=gift.item.name.get(_.language)))
    else:
        lines.append(_("dep.greeting_only"))
    return "\n".join(lines)


# --- the list, adding's first step, removal (stateless buttons) ---------------------------


async def dependants_callback(update: Update, context: BotContext) -> None:
    """The `dep:` buttons outside the conversation: the list, pick a kind, remove."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    decoded = decode_dep(query.data or "")
    if decoded is None or decoded[0] in ("kind", "chg"):
        # "kind" and "chg" open the conversation; one reaching here is not well-formed.
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    action, arg = decoded
    services = context.services
    member = await member_for(user, context)
    if action == "add":
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        _("dep.kind_child"), callback_data=dep_data("kind", "child")
                    ),
                    InlineKeyboardButton(_("dep.kind_pet"), callback_data=dep_data("kind", "pet")),
                ],
                [InlineKeyboardButton(_("dep.back"), callback_data=dep_data("list"))],
            ]
        )
        await edit_in_place(update, _("dep.pick_kind"), keyboard)
        return
    if action == "rm" and arg is not None:
        try:
            view = await dependant_view(services, member.id, int(arg))
        except RuleError as exc:
            await edit_in_place(update, _(exc.key, **exc.params), _back(_))
            return
        name = view.dependant.name
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(_("dep.remove_yes"), callback_data=dep_data("rmok", arg)),
                    InlineKeyboardButton(_("dep.remove_no"), callback_data=dep_data("list")),
                ]
            ]
        )
        await edit_in_place(update, _("dep.confirm_remove", name=name), keyboard)
        return
    if action == "rmok" and arg is not None:
        try:
            removed = await remove_dependant(services, member.id, int(arg))
        except RuleError as exc:
            await edit_in_place(update, _(exc.key, **exc.params), _back(_))
            return
        text, keyboard = render_family(await family_birthdays(services, member.id), _)
        await edit_in_place(update, _("dep.removed", name=removed.name) + "\n\n" + text, keyboard)
        return
    text, keyboard = render_family(await family_birthdays(services, member.id), _)
    await edit_in_place(update, text, keyboard)


# --- the conversation: name and birthday of a new one, a changed birthday ----------------


async def _say(update: Update, context: BotContext, text: str) -> None:
    """Send `text` to the chat of the tapped button."""
    query = update.callback_query
    if query is not None and query.message is not None:
        await context.bot.send_message(query.message.chat.id, text)


@asks
async def ask_name(update: Update, context: BotContext) -> int:
    """A kind was picked: ask for the name (or say why none can be added)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return ConversationHandler.END
    await query.answer()
    _ = await texts_for(update, context)
    decoded = decode_dep(query.data or "")
    member = await member_for(user, context)
    kind = decoded[1] if decoded is not None else None
    try:
        if kind is None:
            raise StaleStep(N_("button.expired"))
        await start_adding(context.services, member.id, kind)
    except RuleError as exc:
        await _say(update, context, _(exc.key, **exc.params))
        return ConversationHandler.END
    await _say(update, context, _(_ASK_NAME[kind], max=NAME_MAX))
    return ASK_NAME


async def receive_name(update: Update, context: BotContext) -> int:
    """The member typed the name: ask for the birthday."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ASK_NAME
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    try:
        name = await name_dependant(context.services, member.id, message.text)
    except StaleStep as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    except RuleError as exc:  # a bad or taken name: they may type another
        await message.reply_text(_(exc.key, **exc.params))
        return ASK_NAME
    await message.reply_text(_("dep.ask_birthday", name=name))
    return ASK_BIRTHDAY


async def receive_birthday(update: Update, context: BotContext) -> int:
    """The member typed the birthday: add the dependant and say what it brings."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ASK_BIRTHDAY
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    try:
        saved = await add_dependant(context.services, member.id, message.text)
    except NotABirthday as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ASK_BIRTHDAY
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params), reply_markup=_back(_))
        return ConversationHandler.END
    await message.reply_text(render_saved(saved, _), reply_markup=_back(_))
    return ConversationHandler.END


@asks
async def ask_change(update: Update, context: BotContext) -> int:
    """A dependant's change button: ask for the new birthday (or say why not now)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return ConversationHandler.END
    await query.answer()
    _ = await texts_for(update, context)
    decoded = decode_dep(query.data or "")
    member = await member_for(user, context)
    try:
        if decoded is None or decoded[1] is None:
            raise StaleStep(N_("button.expired"))
        found = await start_change(context.services, member.id, int(decoded[1]))
    except RuleError as exc:
        await _say(update, context, _(exc.key, **exc.params))
        return ConversationHandler.END
    await _say(update, context, _("dep.ask_change", name=found.name))
    return ASK_CHANGE


async def receive_change(update: Update, context: BotContext) -> int:
    """The member typed the new birthday: change it (once a year)."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ASK_CHANGE
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    try:
        saved = await change_birthday(context.services, member.id, message.text)
    except NotABirthday as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ASK_CHANGE
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params), reply_markup=_back(_))
        return ConversationHandler.END
    await message.reply_text(render_saved(saved, _), reply_markup=_back(_))
    return ConversationHandler.END


async def cancel(update: Update, context: BotContext) -> int:
    """/cancel: leave without adding or changing anything."""
    user, message = update.effective_user, update.effective_message
    if user is not None:
        member = await member_for(user, context)
        await forget_draft(context.services, member.id)
    if message is not None:
        _ = await texts_for(update, context)
        await message.reply_text(_("dep.cancelled"))
    return ConversationHandler.END


def dependants_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """Add a child or pet (name, then birthday) or change a birthday, with /cancel to leave."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        # The entries are buttons and the answers typed messages: tracked per chat and user.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CallbackQueryHandler(ask_name, pattern=rf"^{DEP_PREFIX}:kind:(child|pet)$"),
                CallbackQueryHandler(
                    ask_change, pattern=rf"^{DEP_PREFIX}:chg:\d{{1,{MAX_ID_DIGITS}}}$"
                ),
            ],
            states={
                ASK_NAME: [MessageHandler(private_text, receive_name)],
                ASK_BIRTHDAY: [MessageHandler(private_text, receive_birthday)],
                ASK_CHANGE: [MessageHandler(private_text, receive_change)],
            },
            fallbacks=[CommandHandler("cancel", cancel)],
            name="dependants",
            persistent=True,
            # Another kind or another change button starts over.
            allow_reentry=True,
            conversation_timeout=600,
        )
