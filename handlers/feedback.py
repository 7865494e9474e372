"""Rewarded suggestions: /feedback files one for review; operators approve or reject them
from /feedback_queue. The rules (how many a day, how long, what an approval pays, the notice)
are in bot/programme/feedback.py."""

from __future__ import annotations

import warnings
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
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
from bot.programme.feedback import (
    SuggestionLength,
    SuggestionTerms,
    may_suggest,
    review_suggestion,
    suggest,
)
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.points import format_code
from handlers.questions import asks
from handlers.staff import staff_may_tap, staff_texts
from storage.errors import InvalidState, NotFound
from storage.feedback import Feedback

FEEDBACK_PREFIX: Final = "fb"
# The conversation's one state: the member is typing a suggestion.
WRITING: Final = "feedback.writing"
FEEDBACK_TIMEOUT_SECONDS: Final = 900
# Suggestions shown per /feedback_queue, oldest first, each with its own buttons.
QUEUE_SHOWN: Final = 5
# Ids in buttons are below this; anything larger is forged.
MAX_ID: Final = 10**12

DECISIONS: Final = {
    "approved": N_("feedback.status_approved"),
    "rejected": N_("feedback.status_rejected"),
}
DECISIONS_SHORT: Final = {
    "approved": N_("feedback.short_approved"),
    "rejected": N_("feedback.short_rejected"),
}


# --- callback data ---------------------------------------------------------------------------


def feedback_data(action: str, feedback_id: int | None = None) -> str:
    """Callback data for a suggestion button: new, or approve / reject one."""
    return FEEDBACK_PREFIX + ":" + action + ("" if feedback_id is None else f":{feedback_id}")


def decode_review(data: str) -> tuple[bool, int] | None:
    """(approve?, suggestion id) of a review button, or None when it is not well-formed."""
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != FEEDBACK_PREFIX or parts[1] not in ("a", "r"):
        return None
    number = parts[2]
    if not number.isascii() or not number.isdigit() or len(number) > 12:
        return None
    value = int(number)
    return (parts[1] == "a", value) if 0 < value < MAX_ID else None


# --- members ---------------------------------------------------------------------------------


def _prompt(terms: SuggestionTerms, _: Texts) -> str:
    lines = [_("feedback.prompt", min=terms.min_length, max=terms.max_length)]
    if terms.reward_points:
        lines.append(_("feedback.prompt_reward", points=terms.reward_points))
    return "\n".join(lines)


@asks
async def feedback_command(update: Update, context: BotContext) -> object:
    """/feedback [text]: file the text given, or ask for it."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ConversationHandler.END
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    try:
        terms = await may_suggest(context.services, member.id)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    # Everything after the command, line breaks kept.
    parts = message.text.split(maxsplit=1)
    text = parts[1].strip() if len(parts) > 1 else ""
    if text:
        return await _file(message, context, member.id, text, _)
    await message.reply_text(_prompt(terms, _))
    return WRITING


@asks
async def feedback_button(update: Update, context: BotContext) -> object:
    """The 💡 button under /surveys: ask for the suggestion."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return None
    await query.answer()
    _ = await texts_for(update, context)
    message = query.message
    if not isinstance(message, Message):
        return None
    member = await member_for(user, context)
    try:
        terms = await may_suggest(context.services, member.id)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    await message.reply_text(_prompt(terms, _))
    return WRITING


async def feedback_text(update: Update, context: BotContext) -> object:
    """The typed suggestion."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return WRITING
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    return await _file(message, context, member.id, message.text, _)


async def _file(
    message: Message, context: BotContext, member_id: int, text: str, _: Texts
) -> object:
    """File the suggestion (once per message) and thank the member; a bad length asks again."""
    try:
        filed, terms = await suggest(
            context.services, member_id, text, source=f"tg:{message.chat_id}:{message.message_id}"
        )
    except SuggestionLength as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return WRITING
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    lines = [_("feedback.thanks", id=filed.id)]
    if terms.reward_points:
        lines.append(_("feedback.thanks_reward", points=terms.reward_points))
    await message.reply_text("\n".join(lines))
    return ConversationHandler.END


async def cancel_feedback(update: Update, context: BotContext) -> object:
    """/cancel: nothing is filed."""
    if update.effective_message is not None:
        _ = await texts_for(update, context)
        await update.effective_message.reply_text(_("feedback.cancelled"))
    return ConversationHandler.END


def feedback_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """Ask for a suggestion and wait for the typed text, with /cancel to leave. Persistent:
    a restart keeps the question open."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    incoming = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
    with warnings.catch_warnings():
        # The entry may be a button and the answer a typed message: tracked per chat and
        # user, not per message, which is what the warning is about.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CommandHandler("feedback", feedback_command, filters=incoming),
                CallbackQueryHandler(feedback_button, pattern=rf"^{FEEDBACK_PREFIX}:new$"),
            ],
            states={WRITING: [MessageHandler(private_text, feedback_text)]},
            fallbacks=[CommandHandler("cancel", cancel_feedback)],
            name="feedback",
            persistent=True,
            # The 💡 button or /feedback again while writing simply asks again.
            allow_reentry=True,
            conversation_timeout=FEEDBACK_TIMEOUT_SECONDS,
        )


# --- operators -------------------------------------------------------------------------------


def render_item(item: Feedback, config: Config, _: Texts) -> str:
    """A suggestion as an operator reviews it, with the decision once there is one."""
    tz = config.program.tz
    lines = [
        _(
            "feedback.item",
            id=item.id,
            name=item.member_name,
            code=format_code(item.member_code),
            when=item.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        ),
        item.text,
    ]
    if item.status in DECISIONS and item.reviewed_at is not None:
        lines.append("")
        lines.append(
            _(
                DECISIONS[item.status],
                points=item.reward_points,
                who=item.reviewed_by or "-",
                when=item.reviewed_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            )
        )
    return "\n".join(lines)


def review_keyboard(item: Feedback, config: Config, _: Texts) -> InlineKeyboardMarkup:
    """Approve (with the reward it pays) and Reject."""
    points = config.feedback.reward_points
    approve = _("feedback.approve", points=points) if points else _("feedback.approve_no_reward")
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(approve, callback_data=feedback_data("a", item.id)),
                InlineKeyboardButton(
                    _("feedback.reject"), callback_data=feedback_data("r", item.id)
                ),
            ]
        ]
    )


async def feedback_queue(update: Update, context: BotContext) -> None:
    """/feedback_queue: the oldest pending suggestions, each with Approve / Reject."""
    asked = await staff_texts(update, context, "/feedback_queue")
    if asked is None:
        return
    message, _ = asked
    config = context.services.config
    items, total = await context.services.surveys.pending_feedback(limit=QUEUE_SHOWN)
    if not items:
        await message.reply_text(_("feedback.queue_empty"))
        return
    await message.reply_text(_("feedback.queue_title", total=total, shown=len(items)))
    for item in items:
        await message.reply_text(
            render_item(item, config, _), reply_markup=review_keyboard(item, config, _)
        )


async def review_callback(update: Update, context: BotContext) -> None:
    """Approve / Reject: operators only; the store decides once and pays once."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await staff_may_tap(update, context, f"{FEEDBACK_PREFIX}:")
    if _ is None:
        return
    decoded = decode_review(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    services = context.services
    config = services.config
    approve, feedback_id = decoded
    try:
        item = await review_suggestion(
            services, feedback_id, approve=approve, actor=f"telegram:{user.id}"
        )
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    except InvalidState as exc:
        current = await services.surveys.feedback_item(feedback_id)
        await query.answer(_("feedback.already_decided", status=_(DECISIONS_SHORT[exc.status])))
        await edit_in_place(update, render_item(current, config, _))
        return
    services.sender.wake()
    done = N_("feedback.approved_toast") if approve else N_("feedback.rejected_toast")
    await query.answer(_(done, points=item.reward_points))
    await edit_in_place(update, render_item(item, config, _))
