"""/transfer: points to a household member — whom, how much (a button or a typed amount),
a confirmation showing the lots used and their expiry, the transfer, and its undo.

Buttons carry `tr:` data decoded by one shape table and never trusted: the confirmation
button books the offer created when it was shown (a double tap books once), and every step
is checked again in the store. The typed amount is a persistent ConversationHandler; whom it
is for is kept in the database, so a restart in between loses nothing.
"""

from __future__ import annotations

import warnings

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.config import Config
from bot.i18n import N_
from bot.programme.errors import RuleError
from bot.programme.policy import SOURCE_NAMES
from bot.programme.transfers import (
    AmountChoice,
    PendingTransfer,
    amount_choice,
    ask_amount,
    asked_for,
    confirm_transfer,
    offer_transfer,
    parse_points,
    recipients,
    transfer_terms,
    undo_transfer,
)
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.questions import asks

TRANSFER_PREFIX = "tr"
ASK_AMOUNT = 0
# Member, operation and offer ids and amounts in buttons are below this; larger is forged.
MAX_NUMBER = 10**15
# (action, number of numeric arguments): tr:to:<member>, tr:amt:<member>:<points>,
# tr:other:<member>, tr:ok:<offer>, tr:no:<offer>, tr:undo:<transfer operation>.
SHAPES = {"to": 1, "amt": 2, "other": 1, "ok": 1, "no": 1, "undo": 1}
# Refusals that a typed amount cannot cure: the conversation ends with them.
FINAL_REFUSALS = frozenset(
    {
        N_("transfer.disabled"),
        N_("transfer.no_household"),
        N_("transfer.not_together"),
        N_("transfer.cooling_off"),
        N_("button.expired"),
    }
)


def decode_transfer(data: str) -> tuple[str, tuple[int, ...]] | None:
    """(action, numbers) of a transfer button, or None when the data is not well-formed."""
    prefix, *parts = data.split(":")
    if prefix != TRANSFER_PREFIX or not parts or SHAPES.get(parts[0]) != len(parts) - 1:
        return None
    numbers = []
    for part in parts[1:]:
        if not part.isascii() or not part.isdigit() or int(part) >= MAX_NUMBER:
            return None
        numbers.append(int(part))
    return parts[0], tuple(numbers)


def transfer_data(action: str, *args: int) -> str:
    """Callback data for a transfer button."""
    return ":".join([TRANSFER_PREFIX, action, *map(str, args)])


# --- rendering -------------------------------------------------------------------------------


def _amount_view(choice: AmountChoice, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    who = choice.recipient
    lines = [
        _("transfer.amount_title", name=who.name),
        _("transfer.amount_range", least=choice.least, most=choice.most),
    ]
    if choice.held:
        lines.append(_("transfer.amount_held", held=choice.held))
    amounts = [
        InlineKeyboardButton(
            _("transfer.points_button", points=points),
            callback_data=transfer_data("amt", who.member_id, points),
        )
        for points in choice.quick
    ]
    rows = [amounts[i : i + 3] for i in range(0, len(amounts), 3)]
    rows.append(
        [
            InlineKeyboardButton(
                _("transfer.other_amount"), callback_data=transfer_data("other", who.member_id)
            )
        ]
    )
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _confirmation(pending: PendingTransfer, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    offer = pending.offer
    lines = [
        _("transfer.confirm_title"),
        _("transfer.confirm_to", name=pending.recipient.name),
        _("transfer.confirm_points", points=offer.points),
        _("transfer.confirm_lots"),
    ]
    for lots in pending.lots:
        if lots.last_day is None:
            lines.append(_("transfer.confirm_lot_lifetime", points=lots.points))
        else:
            lines.append(
                _("transfer.confirm_lot", points=lots.points, day=lots.last_day.isoformat())
            )
    lines.append(_("transfer.confirm_expiry_kept", name=pending.recipient.name))
    lines.append(_("transfer.confirm_after", points=pending.available_after))
    lines.append(_("transfer.confirm_valid", minutes=pending.minutes))
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    _("transfer.yes"), callback_data=transfer_data("ok", offer.id)
                ),
                InlineKeyboardButton(_("transfer.no"), callback_data=transfer_data("no", offer.id)),
            ]
        ]
    )
    return "\n".join(lines), keyboard


def render_family_rules(config: Config, _: Texts) -> list[str]:
    """The households' and transfers' part of /rules (with a blank line after it), or nothing
    when the programme has no households; from the terms every transfer is checked by."""
    terms = transfer_terms(config)
    if terms is None:
        return []
    lines = [
        _("rules.family.heading"),
        _("rules.family.households", members=terms.max_members, hours=terms.invitation_hours),
    ]
    if terms.cooling_off_days:
        lines.append(_("rules.family.cooling_off", days=terms.cooling_off_days))
    lines.append(
        _(
            "rules.family.limits",
            minimum=terms.min_transfer,
            sender_day=terms.sender_daily_max,
            sender_month=terms.sender_monthly_max,
            recipient_day=terms.recipient_daily_max,
            recipient_month=terms.recipient_monthly_max,
        )
    )
    if terms.non_transferable:
        names = _("list.separator").join(
            _(SOURCE_NAMES[f"source.{source}"]) for source in terms.non_transferable
        )
        lines.append(_("rules.family.held_back", sources=names[:1].upper() + names[1:]))
    lines.append(_("rules.family.expiry_kept"))
    if terms.undo_minutes:
        lines.append(_("rules.family.undo", minutes=terms.undo_minutes))
    else:
        lines.append(_("rules.family.no_undo"))
    return [*lines, ""]


# --- handlers --------------------------------------------------------------------------------


async def transfer_command(update: Update, context: BotContext) -> None:
    """/transfer: pick the household member to send points to."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    try:
        others = await recipients(context.services, member.id)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    rows = [
        [
            InlineKeyboardButton(
                _("transfer.to_button", name=other.name),
                callback_data=transfer_data("to", other.member_id),
            )
        ]
        for other in others
    ]
    await message.reply_text(_("transfer.pick"), reply_markup=InlineKeyboardMarkup(rows))


async def transfer_callback(update: Update, context: BotContext) -> None:
    """Every `tr:` button but "another amount": decode, re-check in the store, answer."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    decoded = decode_transfer(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    action, args = decoded
    services = context.services
    member = await member_for(user, context)
    if action == "no":
        await query.answer()
        await edit_in_place(update, _("transfer.cancelled"), None)
        return
    try:
        if action == "to":
            # A new message: the household view this may come from stays as it was.
            text, keyboard = _amount_view(await amount_choice(services, member.id, args[0]), _)
            await query.answer()
            if query.message is not None:
                await context.bot.send_message(query.message.chat.id, text, reply_markup=keyboard)
        elif action == "amt":
            pending = await offer_transfer(services, member.id, args[0], args[1])
            await query.answer()
            await edit_in_place(update, *_confirmation(pending, _))
        elif action == "ok":
            await _confirm(update, context, _, member.id, args[0])
        else:
            await _undo(update, context, _, member.id, args[0])
    except RuleError as exc:
        if exc.key == "button.expired":
            await query.answer(_(exc.key), show_alert=True)
            return
        await query.answer()
        text = _(exc.key, **exc.params)
        if action in ("ok", "undo"):
            # The confirmation (or the undo) can no longer be carried out: say why in its
            # place, without the buttons.
            await edit_in_place(update, text, None)
        elif query.message is not None:
            await context.bot.send_message(query.message.chat.id, text)


async def _confirm(
    update: Update, context: BotContext, _: Texts, member_id: int, offer_id: int
) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    done = await confirm_transfer(
        context.services, member_id, offer_id, actor=f"telegram:{user.id}"
    )
    result = done.result
    if result.replayed:
        # A double tap or a redelivered update: the transfer exists once already.
        await query.answer(_("transfer.already_done"))
        return
    await query.answer()
    lines = [
        _("transfer.done", name=done.recipient_name, points=result.points),
        _("transfer.done_balance", available=done.available),
    ]
    keyboard = None
    if done.undo_minutes:
        lines.append(_("transfer.undo_hint", minutes=done.undo_minutes))
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        _("transfer.undo_button"),
                        callback_data=transfer_data("undo", result.operation_id),
                    )
                ]
            ]
        )
    await edit_in_place(update, "\n".join(lines), keyboard)


async def _undo(
    update: Update, context: BotContext, _: Texts, member_id: int, operation_id: int
) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    undone = await undo_transfer(
        context.services, member_id, operation_id, actor=f"telegram:{user.id}"
    )
    if undone.result.replayed:
        await query.answer(_("transfer.undo_already"))
        return
    await query.answer()
    text = _(
        "transfer.undone",
        name=undone.recipient_name,
        points=undone.result.points,
        available=undone.available,
    )
    await edit_in_place(update, text, None)


@asks
async def ask_typed_amount(update: Update, context: BotContext) -> int:
    """ "Another amount": ask for it, saying what fits."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return ConversationHandler.END
    _ = await texts_for(update, context)
    decoded = decode_transfer(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return ConversationHandler.END
    member = await member_for(user, context)
    try:
        choice = await ask_amount(context.services, member.id, decoded[1][0])
    except RuleError as exc:
        await query.answer()
        if query.message is not None:
            await context.bot.send_message(query.message.chat.id, _(exc.key, **exc.params))
        return ConversationHandler.END
    await query.answer()
    if query.message is not None:
        name, least, most = choice.recipient.name, choice.least, choice.most
        text = _("transfer.ask_amount", name=name, least=least, most=most)
        await context.bot.send_message(query.message.chat.id, text)
    return ASK_AMOUNT


async def receive_amount(update: Update, context: BotContext) -> int:
    """The member typed an amount: show the confirmation, or say what is wrong and wait."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ASK_AMOUNT
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    services = context.services
    recipient_id = await asked_for(services, member.id)
    if recipient_id is None:
        await message.reply_text(_("button.expired"))
        return ConversationHandler.END
    try:
        points = parse_points(message.text)
        pending = await offer_transfer(services, member.id, recipient_id, points)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        if exc.key in FINAL_REFUSALS:
            return ConversationHandler.END
        await message.reply_text(_("transfer.type_again"))
        return ASK_AMOUNT
    text, keyboard = _confirmation(pending, _)
    await message.reply_text(text, reply_markup=keyboard)
    return ConversationHandler.END


async def cancel(update: Update, context: BotContext) -> int:
    """/cancel: no amount typed, nothing moved."""
    if update.effective_message is not None:
        _ = await texts_for(update, context)
        await update.effective_message.reply_text(_("transfer.cancelled"))
    return ConversationHandler.END


def transfer_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """Ask for a typed amount after "another amount", with /cancel to leave."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        # The entry is a button and the answer a typed message, so the conversation is
        # tracked per chat and user, not per message: the warning says just that.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CallbackQueryHandler(ask_typed_amount, pattern=rf"^{TRANSFER_PREFIX}:other:\d+$")
            ],
            states={ASK_AMOUNT: [MessageHandler(private_text, receive_amount)]},
            fallbacks=[CommandHandler("cancel", cancel)],
            name="transfer_amount",
            persistent=True,
            conversation_timeout=600,
        )
