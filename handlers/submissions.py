"""Shares and reviews: /share and a photo sent to the bot, /review (rating buttons, then the
typed text), and the staff's /tasks_queue with Approve / Decline. The rules are in
bot/programme/submissions.py; this module converts Telegram's photo to plain values."""

from __future__ import annotations

import re
import warnings
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest
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
from bot.programme.submissions import (
    DECLINE_REASONS,
    RATINGS,
    ReviewTextRefused,
    cancel_review,
    choose_rating,
    decide_submission,
    file_review,
    pending_submissions,
    review_choices,
    share_photo,
    share_task,
)
from handlers.common import BotContext, Texts, member_for, texts_for
from handlers.points import format_code
from handlers.questions import asks
from handlers.staff import staff_may_tap, staff_texts
from storage.errors import InvalidState, NotFound
from storage.submissions import Photo, Submission

REVIEW_PREFIX: Final = "rw"
QUEUE_PREFIX: Final = "sq"
# The review conversation's one state: the member is typing the review.
WRITING: Final = "review.writing"
REVIEW_TIMEOUT_SECONDS: Final = 900
# Submissions shown per /tasks_queue, oldest first, each with its own buttons.
QUEUE_SHOWN: Final = 5
# A photo's caption is at most 1024 characters; the rest of a long review is cut.
CAPTION_LIMIT: Final = 1000

# Every button of this module, by shape: never trusted, each re-checked in the store.
_CATEGORY: Final = r"[a-z][a-z0-9_]{0,31}"
_ID: Final = r"[1-9][0-9]{0,11}"
_REASON: Final = "|".join(DECLINE_REASONS)
SHAPES: Final = {
    "category": re.compile(rf"{REVIEW_PREFIX}:c:({_CATEGORY})"),
    "rating": re.compile(rf"{REVIEW_PREFIX}:r:({_CATEGORY}):([1-5])"),
    "approve": re.compile(rf"{QUEUE_PREFIX}:a:({_ID})"),
    "decline": re.compile(rf"{QUEUE_PREFIX}:d:({_ID})"),
    "back": re.compile(rf"{QUEUE_PREFIX}:b:({_ID})"),
    "reason": re.compile(rf"{QUEUE_PREFIX}:x:({_ID}):({_REASON})"),
}
STATUS: Final = {
    "approved": N_("submissions.status_approved"),
    "declined": N_("submissions.status_declined"),
}


def decode(data: str) -> tuple[str, tuple[str, ...]] | None:
    """(shape, arguments) of one of this module's buttons, or None when it is not one."""
    for shape, pattern in SHAPES.items():
        found = pattern.fullmatch(data)
        if found is not None:
            return shape, found.groups()
    return None


def _photo_of(message: Message) -> Photo | None:
    """The largest size of the message's photo, as the store keeps it."""
    if not message.photo:
        return None
    largest = message.photo[-1]
    return Photo(largest.file_id, largest.file_unique_id)


def _source(message: Message) -> str:
    """The message a submission came from: a redelivered update files nothing twice."""
    return f"tg:{message.chat_id}:{message.message_id}"


def _category_name(category: str | None, config: Config, _: Texts) -> str:
    found = config.earn.category(category) if category else None
    return found.name.get(_.language) if found is not None else (category or "-")


def _stars(rating: int) -> str:
    return "★" * rating + "☆" * (5 - rating)


# --- shares ----------------------------------------------------------------------------------


async def share_command(update: Update, context: BotContext) -> None:
    """/share: what to send for the green-share bonus."""
    message = update.effective_message
    if message is None:
        return
    _ = await texts_for(update, context)
    task = share_task(context.services)
    if task is None:
        await message.reply_text(_("share.closed"))
        return
    key = "share.how_auto" if task.auto_approve else "share.how"
    await message.reply_text(
        _(key, task=task.name, description=task.description, points=task.reward_points)
    )


async def share_photo_message(update: Update, context: BotContext) -> None:
    """A photo outside any conversation: a share for the open share task."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or (photo := _photo_of(message)) is None:
        return
    _ = await texts_for(update, context)
    services = context.services
    if share_task(services) is None:
        await message.reply_text(_("fallback.not_text"))
        return
    member = await member_for(user, context)
    try:
        filed = await share_photo(
            services, member.id, photo, message.caption, source=_source(message)
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    if filed.step is not None:
        services.sender.wake()  # the completion message was queued with the approval
        await message.reply_text(
            _(
                "share.credited",
                task=filed.task.name,
                progress=filed.step.progress,
                target=filed.step.target,
            )
        )
        return
    await message.reply_text(
        _("share.received", id=filed.submission.id, points=filed.task.reward_points)
    )


# --- reviews ---------------------------------------------------------------------------------


async def review_command(update: Update, context: BotContext) -> None:
    """/review: the categories the member may review, as buttons."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    _ = await texts_for(update, context)
    services = context.services
    member = await member_for(user, context)
    try:
        choice = await review_choices(services, member.id)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    rows = [
        [
            InlineKeyboardButton(
                _category_name(category, services.config, _),
                callback_data=f"{REVIEW_PREFIX}:c:{category}",
            )
        ]
        for category in choice.categories
    ]
    await message.reply_text(
        _(
            "review.choose_category",
            task=choice.task.name,
            days=choice.task.within_days,
            points=choice.task.reward_points,
        ),
        reply_markup=InlineKeyboardMarkup(rows),
    )


async def review_category(update: Update, context: BotContext) -> None:
    """A category tapped: ask for the rating, 1 to 5 stars."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    decoded = decode(query.data or "")
    if decoded is None or decoded[0] != "category":
        await query.answer(_("button.expired"), show_alert=True)
        return
    category = decoded[1][0]
    member = await member_for(user, context)
    try:
        choice = await review_choices(context.services, member.id)
    except RuleError as exc:
        await query.answer(_(exc.key, **exc.params), show_alert=True)
        return
    if category not in choice.categories:
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    rows = [
        [
            InlineKeyboardButton(
                _stars(rating), callback_data=f"{REVIEW_PREFIX}:r:{category}:{rating}"
            )
        ]
        for rating in reversed(RATINGS)
    ]
    name = _category_name(category, context.services.config, _)
    try:
        await query.edit_message_text(
            _("review.choose_rating", category=name), reply_markup=InlineKeyboardMarkup(rows)
        )
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


@asks
async def review_rating(update: Update, context: BotContext) -> object:
    """A rating tapped: keep it with the category and ask for the text."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return ConversationHandler.END
    _ = await texts_for(update, context)
    decoded = decode(query.data or "")
    if decoded is None or decoded[0] != "rating":
        await query.answer(_("button.expired"), show_alert=True)
        return ConversationHandler.END
    category, rating = decoded[1][0], int(decoded[1][1])
    member = await member_for(user, context)
    try:
        _draft, task = await choose_rating(context.services, member.id, category, rating)
    except RuleError as exc:
        await query.answer(_(exc.key, **exc.params), show_alert=True)
        return ConversationHandler.END
    await query.answer()
    name = _category_name(category, context.services.config, _)
    text = _(
        "review.ask_text",
        category=name,
        stars=_stars(rating),
        min=task.min_text_length,
    )
    try:
        await query.edit_message_text(text)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise
    return WRITING


async def review_text(update: Update, context: BotContext) -> object:
    """The typed review (or a photo with the review as its caption)."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return WRITING
    _ = await texts_for(update, context)
    photo = _photo_of(message)
    text = message.caption if photo is not None else message.text
    if photo is not None and not (text or "").strip():
        await message.reply_text(_("review.photo_needs_text"))
        return WRITING
    member = await member_for(user, context)
    try:
        filed = await file_review(
            context.services, member.id, text or "", photo, source=_source(message)
        )
    except ReviewTextRefused as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return WRITING
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    await message.reply_text(
        _("review.received", id=filed.submission.id, points=filed.task.reward_points)
    )
    return ConversationHandler.END


async def review_cancel(update: Update, context: BotContext) -> object:
    """/cancel: no review is filed."""
    user, message = update.effective_user, update.effective_message
    if user is not None:
        member = await member_for(user, context)
        await cancel_review(context.services, member.id)
    if message is not None:
        _ = await texts_for(update, context)
        await message.reply_text(_("review.cancelled"))
    return ConversationHandler.END


def review_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """A rating tapped, then the typed review, with /cancel to leave. Persistent: the rating
    and category wait in the store (review_drafts), so a restart keeps the question open."""
    answer = filters.ChatType.PRIVATE & ((filters.TEXT & ~filters.COMMAND) | filters.PHOTO)
    with warnings.catch_warnings():
        # The entry is a button and the answer a typed message: tracked per chat and user.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CallbackQueryHandler(review_rating, pattern=rf"^{REVIEW_PREFIX}:r:"),
            ],
            states={WRITING: [MessageHandler(answer, review_text)]},
            fallbacks=[CommandHandler("cancel", review_cancel)],
            name="review",
            persistent=True,
            allow_reentry=True,
            conversation_timeout=REVIEW_TIMEOUT_SECONDS,
        )


# --- staff -----------------------------------------------------------------------------------


def render_submission(item: Submission, config: Config, _: Texts) -> str:
    """A share or review as staff judge it, with the decision once there is one."""
    tz = config.program.tz
    task = config.task(item.task_id)
    head = _(
        "submissions.item_share" if item.kind == "share" else "submissions.item_review",
        id=item.id,
        task=task.name.get(_.language) if task is not None else item.task_id,
        name=item.member_name,
        code=format_code(item.member_code),
        when=item.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
    )
    lines = [head]
    if item.kind == "review" and item.rating is not None:
        lines.append(
            _(
                "submissions.item_rating",
                category=_category_name(item.category, config, _),
                stars=_stars(item.rating),
            )
        )
    decision = ""
    if item.status in STATUS and item.decided_at is not None:
        reason = DECLINE_REASONS.get(item.reason or "")
        decision = _(
            STATUS[item.status],
            reason=_(reason[0]) if reason else "",
            who=item.decided_by or "-",
            when=item.decided_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        )
    body = (item.caption if item.kind == "share" else item.text) or ""
    if item.photo is not None:
        # A photo's caption is short: the member's words are cut, never the decision.
        room = CAPTION_LIMIT - len("\n".join(lines)) - len(decision) - 2
        body = body if len(body) <= room else body[: max(room - 1, 0)] + "…"
    lines.append(body)
    if decision:
        lines.append(decision)
    return "\n".join(lines)


def decision_keyboard(item: Submission, _: Texts) -> InlineKeyboardMarkup:
    """Approve and Decline."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    _("submissions.approve"), callback_data=f"{QUEUE_PREFIX}:a:{item.id}"
                ),
                InlineKeyboardButton(
                    _("submissions.decline"), callback_data=f"{QUEUE_PREFIX}:d:{item.id}"
                ),
            ]
        ]
    )


def reasons_keyboard(item: Submission, _: Texts) -> InlineKeyboardMarkup:
    """One button per reason to decline, and back to Approve / Decline."""
    rows = [
        [InlineKeyboardButton(_(label), callback_data=f"{QUEUE_PREFIX}:x:{item.id}:{code}")]
        for code, (label, _notice) in DECLINE_REASONS.items()
    ]
    rows.append(
        [InlineKeyboardButton(_("submissions.back"), callback_data=f"{QUEUE_PREFIX}:b:{item.id}")]
    )
    return InlineKeyboardMarkup(rows)


async def tasks_queue(update: Update, context: BotContext) -> None:
    """/tasks_queue: the oldest pending shares and reviews, each with Approve / Decline."""
    asked = await staff_texts(update, context, "/tasks_queue")
    if asked is None:
        return
    message, _ = asked
    config = context.services.config
    items, total = await pending_submissions(context.services, QUEUE_SHOWN)
    if not items:
        await message.reply_text(_("submissions.queue_empty"))
        return
    await message.reply_text(_("submissions.queue_title", total=total, shown=len(items)))
    for item in items:
        text, keyboard = render_submission(item, config, _), decision_keyboard(item, _)
        if item.photo is not None:
            # The member's own photo, shown again by its file_id: nothing is downloaded.
            await message.reply_photo(item.photo.file_id, caption=text, reply_markup=keyboard)
        else:
            await message.reply_text(text, reply_markup=keyboard)


async def _show(update: Update, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    """Show the item's new state in place: a photo's caption, or the message's text."""
    query = update.callback_query
    assert query is not None
    try:
        if isinstance(query.message, Message) and query.message.photo:
            await query.edit_message_caption(caption=text, reply_markup=keyboard)
        else:
            await query.edit_message_text(text, reply_markup=keyboard)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


async def queue_callback(update: Update, context: BotContext) -> None:
    """Approve, Decline (then a reason) or Back: operators only; the store decides once."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await staff_may_tap(update, context, f"{QUEUE_PREFIX}:")
    if _ is None:
        return
    decoded = decode(query.data or "")
    if decoded is None or decoded[0] not in ("approve", "decline", "back", "reason"):
        await query.answer(_("button.expired"), show_alert=True)
        return
    services = context.services
    config = services.config
    shape, args = decoded
    submission_id = int(args[0])
    try:
        item = await services.submissions.submission(submission_id)
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    if item.status != "pending":
        await query.answer(_("submissions.already_decided"))
        await _show(update, render_submission(item, config, _), None)
        return
    if shape in ("decline", "back"):
        await query.answer()
        keyboard = reasons_keyboard(item, _) if shape == "decline" else decision_keyboard(item, _)
        await _show(update, render_submission(item, config, _), keyboard)
        return
    try:
        decided = await decide_submission(
            services,
            submission_id,
            approve=shape == "approve",
            actor=f"telegram:{user.id}",
            reason=args[1] if shape == "reason" else None,
        )
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    except InvalidState:
        current = await services.submissions.submission(submission_id)
        await query.answer(_("submissions.already_decided"))
        await _show(update, render_submission(current, config, _), None)
        return
    except RuleError as exc:
        await query.answer(_(exc.key, **exc.params), show_alert=True)
        return
    services.sender.wake()  # the member's message was queued with the decision
    toast = "submissions.approved_toast" if shape == "approve" else "submissions.declined_toast"
    await query.answer(_(toast))
    await _show(update, render_submission(decided.submission, config, _), None)
