"""Reward surveys: /surveys lists what a member may answer, a persistent conversation asks one
question at a time, and operators read the results with /survey_stats.

The rules (which surveys are open, answering, the reward paid once) are in
bot/programme/surveys.py. Every answer is written to the store as it is given and the
conversation state is persisted (bot/persistence.py), so a member who stops, cancels or meets
a restarted bot continues at the same question. A button carries the survey and the question
it answers; the store re-checks that it is the question being asked.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import Sequence
from datetime import datetime
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

from bot.charts import Bar, Panel, chart_painter
from bot.config import Config, Survey, SurveyQuestion
from bot.i18n import N_
from bot.programme.calendar import display_expiry
from bot.programme.errors import RuleError
from bot.programme.feedback import suggestion_terms
from bot.programme.surveys import (
    NotATextQuestion,
    SurveyGone,
    SurveyStep,
    answer_text,
    choose_option,
    closing_day,
    confirm_choices,
    go_back,
    keep_answer,
    open_survey,
    open_surveys,
    rate_question,
    skip_question,
    survey_results,
    surveys_for,
    toggle_option,
)
from bot.surveys import known_survey_ids, option_label
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.feedback import feedback_data
from handlers.questions import asks
from handlers.staff import staff_texts
from storage.errors import (
    AlreadyCompleted,
    InvalidAnswer,
    NotFound,
    StaleQuestion,
    SurveyClosed,
)
from storage.surveys import Progress, SurveyStats

log = logging.getLogger(__name__)

SURVEY_PREFIX: Final = "sv"
# The conversation's one state: a survey question is waiting for an answer. Named (and JSON)
# because the persistence stores it.
ANSWERING: Final = "survey.answering"
# After this long without an answer the conversation ends (the progress stays in the store;
# /surveys continues it): typed text is then no longer taken as an answer.
SURVEY_TIMEOUT_SECONDS: Final = 1800
SURVEY_ID: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# (numbers a button carries) per action: open, pick, toggle, done, rate, back, skip, keep.
_SHAPES: Final = {"o": 0, "p": 2, "t": 2, "d": 1, "r": 2, "b": 1, "s": 1, "k": 1}
# Telegram's limit for one message; the statistics are split below it.
MESSAGE_LIMIT: Final = 4000
TEXT_SAMPLE_LENGTH: Final = 80

KIND_HINTS: Final = {
    "single": N_("survey.hint_single"),
    "multiple": N_("survey.hint_multiple"),
    "rating": N_("survey.hint_rating"),
}
# Why the store refused an answer, as the member is told (a refusal not listed means a
# forged button).
REFUSALS: Final = {
    "required": N_("survey.required"),
    "too_many": N_("survey.too_many"),
    "too_long": N_("survey.too_long"),
    "empty": N_("survey.empty"),
}


# --- callback data ---------------------------------------------------------------------------


def survey_data(action: str, survey_id: str, *numbers: int) -> str:
    """Callback data for a survey button (at most ~45 bytes)."""
    return ":".join([SURVEY_PREFIX, action, survey_id, *map(str, numbers)])


def decode_survey(data: str) -> tuple[str, str, tuple[int, ...]] | None:
    """(action, survey id, numbers) of a survey button, or None when it is not well-formed."""
    prefix, *parts = data.split(":")
    if prefix != SURVEY_PREFIX or len(parts) < 2:
        return None
    action, survey_id, *rest = parts
    if _SHAPES.get(action) != len(rest) or not SURVEY_ID.match(survey_id):
        return None
    if not all(p.isascii() and p.isdigit() and len(p) <= 2 for p in rest):
        return None
    return action, survey_id, tuple(int(p) for p in rest)


# --- rendering -------------------------------------------------------------------------------


def _title(survey: Survey, _: Texts) -> str:
    return survey.title.get(_.language)


def _reward_line(survey: Survey, config: Config, _: Texts) -> str:
    if survey.reward_points:
        return _(
            "survey.reward_line",
            points=survey.reward_points,
            count=len(survey.questions),
            day=closing_day(survey, config).isoformat(),
        )
    day = closing_day(survey, config).isoformat()
    return _("survey.no_reward_line", count=len(survey.questions), day=day)


def render_question(
    survey: Survey, progress: Progress, config: Config, _: Texts
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The question being asked, what was answered before (after Back), and its buttons."""
    lang = _.language
    position = progress.position
    question = survey.questions[position]
    lines: list[str] = []
    if position == 0 and not progress.answers:
        lines.append(_("survey.intro", title=_title(survey, _)))
        if survey.description is not None:
            lines.append(survey.description.get(lang))
        lines += [_reward_line(survey, config, _), ""]
    if progress.restarted:
        lines[:0] = [_("survey.restarted"), ""]
    lines.append(
        _(
            "survey.question_header",
            title=_title(survey, _),
            number=position + 1,
            total=len(survey.questions),
        )
    )
    lines.append(question.text.get(lang))
    if question.kind == "text":
        hint = _("survey.hint_text", limit=question.max_length)
    elif question.kind == "multiple" and question.max_choices is not None:
        hint = _("survey.hint_multiple_max", limit=question.max_choices)
    else:
        hint = _(KIND_HINTS[question.kind])
    lines.append(hint)
    if not question.required:
        lines.append(_("survey.optional"))
    previous = progress.answers.get(question.id)
    if question.kind == "text" and previous is not None and previous.text:
        lines.append(_("survey.previous_text", text=previous.text))
    rows = _answer_rows(survey, question, position, previous.choices if previous else None, _)
    if question.kind == "rating":
        rows = [_rating_row(survey, position, previous.rating if previous else None)]
    navigation = []
    if question.kind == "text" and previous is not None and previous.status == "answered":
        rows.append(
            [
                InlineKeyboardButton(
                    _("survey.keep"), callback_data=survey_data("k", survey.id, position)
                )
            ]
        )
    if position > 0:
        navigation.append(
            InlineKeyboardButton(
                _("survey.back"), callback_data=survey_data("b", survey.id, position)
            )
        )
    if not question.required:
        navigation.append(
            InlineKeyboardButton(
                _("survey.skip"), callback_data=survey_data("s", survey.id, position)
            )
        )
    if navigation:
        rows.append(navigation)
    return "\n".join(lines), InlineKeyboardMarkup(rows) if rows else None


def _answer_rows(
    survey: Survey,
    question: SurveyQuestion,
    position: int,
    chosen: Sequence[str] | None,
    _: Texts,
) -> list[list[InlineKeyboardButton]]:
    """One button per option: a tick on what was chosen before; boxes and Done for multiple."""
    lang = _.language
    ticked = set(chosen or ())
    rows = []
    for index, option in enumerate(question.options):
        label = option.label.get(lang)
        if question.kind == "single":
            text = f"✅ {label}" if option.id in ticked else label
            data = survey_data("p", survey.id, position, index)
        else:
            text = f"{'☑️' if option.id in ticked else '⬜'} {label}"
            data = survey_data("t", survey.id, position, index)
        rows.append([InlineKeyboardButton(text, callback_data=data)])
    if question.kind == "multiple":
        rows.append(
            [
                InlineKeyboardButton(
                    _("survey.done", count=len(ticked)),
                    callback_data=survey_data("d", survey.id, position),
                )
            ]
        )
    return rows


def _rating_row(survey: Survey, position: int, rated: int | None) -> list[InlineKeyboardButton]:
    return [
        InlineKeyboardButton(
            f"✅{stars}" if stars == rated else f"{stars}⭐",
            callback_data=survey_data("r", survey.id, position, stars),
        )
        for stars in range(1, 6)
    ]


def _completion_text(step: SurveyStep, config: Config, _: Texts) -> str:
    """Thanks, the reward credited and its expiry, and the balance now."""
    lines = [_("survey.completed", title=_title(step.survey, _))]
    reward = step.reward
    if reward is not None:
        if reward.expires_at is None:
            lines.append(_("survey.rewarded_never", points=reward.points))
        else:
            day = display_expiry(reward.expires_at, config).isoformat()
            lines.append(_("survey.rewarded", points=reward.points, day=day))
        lines.append(_("survey.balance", points=reward.available))
    lines.append(_("survey.more"))
    return "\n".join(lines)


# --- /surveys --------------------------------------------------------------------------------


async def surveys_command(update: Update, context: BotContext) -> None:
    """/surveys: the open surveys the member has not completed, with their progress."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    _ = await texts_for(update, context)
    config = context.services.config
    member = await member_for(user, context)
    offered = await surveys_for(context.services, member.id)
    lines = [_("survey.list_title")]
    rows = []
    for offer in offered.offers:
        survey, response = offer.survey, offer.response
        lines.append(
            _(
                "survey.list_line",
                title=_title(survey, _),
                reward=_reward_line(survey, config, _),
            )
        )
        if response is not None and response.answers:
            label = _(
                "survey.continue_button",
                title=_title(survey, _),
                number=min(response.position + 1, response.questions),
                total=response.questions,
            )
        elif survey.reward_points:
            label = _("survey.start_button", title=_title(survey, _), points=survey.reward_points)
        else:
            label = _("survey.start_button_no_reward", title=_title(survey, _))
        rows.append([InlineKeyboardButton(label, callback_data=survey_data("o", survey.id))])
    if not rows:
        lines = [_("survey.none_open")]
    if offered.completed:
        lines.append(_("survey.completed_count", count=offered.completed))
    if suggestion_terms(config) is not None:
        lines.append(_("survey.feedback_hint"))
        rows.append(
            [InlineKeyboardButton(_("feedback.button"), callback_data=feedback_data("new"))]
        )
    keyboard = InlineKeyboardMarkup(rows) if rows else None
    await message.reply_text("\n".join(lines), reply_markup=keyboard)


# --- answering -------------------------------------------------------------------------------


def _closed_text(exc: SurveyClosed, config: Config, _: Texts) -> str:
    tz = config.program.tz
    if exc.reason == "not_open":
        when = exc.opens_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        return _("survey.not_open", when=when)
    return _("survey.closed", day=display_expiry(exc.closes_at, config).isoformat())


async def _apply(
    context: BotContext,
    member_id: int,
    telegram_id: int,
    survey_id: str,
    action: str,
    numbers: tuple[int, ...],
) -> SurveyStep:
    """Do the programme action a button asks for; raises what bot/programme/surveys.py
    raises."""
    services, actor = context.services, f"telegram:{telegram_id}"
    if action == "o":
        return await open_survey(services, member_id, survey_id)
    position = numbers[0]
    if action == "p":
        return await choose_option(services, member_id, survey_id, position, numbers[1], actor)
    if action == "t":
        return await toggle_option(services, member_id, survey_id, position, numbers[1])
    if action == "r":
        return await rate_question(services, member_id, survey_id, position, numbers[1], actor)
    if action == "d":
        return await confirm_choices(services, member_id, survey_id, position, actor)
    if action == "k":
        return await keep_answer(services, member_id, survey_id, position, actor)
    if action == "b":
        return await go_back(services, member_id, survey_id, position)
    return await skip_question(services, member_id, survey_id, position, actor)


@asks
async def survey_button(update: Update, context: BotContext) -> object:
    """Every survey button: open, answer, tick, Done, Back, Skip — re-checked in the store."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return None
    _ = await texts_for(update, context)
    services = context.services
    config = services.config
    decoded = decode_survey(query.data or "")
    member = await services.members.by_telegram_id(user.id)
    if decoded is None or member is None:
        await query.answer(_("button.expired"), show_alert=True)
        return None
    action, survey_id, numbers = decoded
    try:
        step = await _apply(context, member.id, user.id, survey_id, action, numbers)
    except SurveyGone as exc:
        await query.answer(_(exc.key), show_alert=True)
        return ConversationHandler.END
    except AlreadyCompleted:
        await query.answer(_("survey.already_completed"), show_alert=True)
        return ConversationHandler.END
    except SurveyClosed as exc:
        await query.answer(_closed_text(exc, config, _), show_alert=True)
        return ConversationHandler.END
    except StaleQuestion:
        await query.answer(_("survey.stale"))
        return ANSWERING
    except InvalidAnswer as exc:
        if exc.reason in ("required", "too_many"):
            await query.answer(_(REFUSALS[exc.reason], limit=exc.limit), show_alert=True)
            return ANSWERING
        await query.answer(_("button.expired"), show_alert=True)
        return None
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return None
    await query.answer()
    if step.progress.completed:
        await edit_in_place(update, _completion_text(step, config, _), None)
        return ConversationHandler.END
    text, keyboard = render_question(step.survey, step.progress, config, _)
    await edit_in_place(update, text, keyboard)
    return ANSWERING


async def _send_question(message: Message, step: SurveyStep, config: Config, _: Texts) -> None:
    text, keyboard = render_question(step.survey, step.progress, config, _)
    await message.reply_text(text, reply_markup=keyboard)


async def survey_text(update: Update, context: BotContext) -> object:
    """Typed text while a survey is open: the answer to a text question, else a reminder to
    use the buttons (the question is shown again)."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ANSWERING
    _ = await texts_for(update, context)
    config = context.services.config
    member = await member_for(user, context)
    try:
        step = await answer_text(
            context.services,
            member.id,
            message.text,
            source=f"tg:{message.chat_id}:{message.message_id}",
            actor=f"telegram:{user.id}",
        )
    except NotATextQuestion as exc:
        await message.reply_text(_(exc.key))
        await _send_question(message, exc.step, config, _)
        return ANSWERING
    except RuleError as exc:  # no survey being answered, or it left the configuration
        await message.reply_text(_(exc.key))
        return ConversationHandler.END
    except SurveyClosed as exc:
        await message.reply_text(_closed_text(exc, config, _))
        return ConversationHandler.END
    except AlreadyCompleted:
        await message.reply_text(_("survey.already_completed"))
        return ConversationHandler.END
    except StaleQuestion:
        return ANSWERING  # another answer landed first: the member sees its next question
    except InvalidAnswer as exc:
        key = REFUSALS.get(exc.reason, N_("survey.use_buttons"))
        await message.reply_text(_(key, limit=exc.limit, length=len(message.text.strip())))
        return ANSWERING
    if step.progress.replayed:
        return ANSWERING
    if step.progress.completed:
        await message.reply_text(_completion_text(step, config, _))
        return ConversationHandler.END
    await _send_question(message, step, config, _)
    return ANSWERING


async def cancel_survey(update: Update, context: BotContext) -> object:
    """/cancel: leave the survey; the answers so far are kept for later."""
    if update.effective_message is not None:
        _ = await texts_for(update, context)
        await update.effective_message.reply_text(_("survey.paused"))
    return ConversationHandler.END


def survey_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """One question at a time, by buttons or typed text; /cancel pauses. Persistent: the
    state survives a restart (and every answer is in the store anyway)."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    buttons = CallbackQueryHandler(survey_button, pattern=rf"^{SURVEY_PREFIX}:")
    with warnings.catch_warnings():
        # Buttons and typed answers alternate, so the conversation is tracked per chat and
        # user, not per message: the warning says just that.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[buttons],
            states={ANSWERING: [buttons, MessageHandler(private_text, survey_text)]},
            fallbacks=[CommandHandler("cancel", cancel_survey)],
            name="survey",
            persistent=True,
            conversation_timeout=SURVEY_TIMEOUT_SECONDS,
        )


# --- /rules --------------------------------------------------------------------------------


def render_survey_rules(config: Config, now: datetime, _: Texts) -> list[str]:
    """The surveys' and suggestions' part of /rules (with a blank line after it), or nothing."""
    # The same surveys /surveys offers, and the terms a suggestion is filed and paid on.
    lines = []
    for survey in open_surveys(config, now):
        lines.append(
            _("rules.surveys.line", title=_title(survey, _), reward=_reward_line(survey, config, _))
        )
    terms = suggestion_terms(config)
    if terms is not None and terms.reward_points:
        lines.append(
            _("rules.surveys.feedback", points=terms.reward_points, limit=terms.daily_limit)
        )
    elif terms is not None:
        lines.append(_("rules.surveys.feedback_no_reward", limit=terms.daily_limit))
    return [_("rules.surveys.heading"), *lines, ""] if lines else []


# --- operators: /survey_stats --------------------------------------------------------------


def _percent(count: int, total: int) -> str:
    return f"{count * 100 / total:.0f}%" if total else "0%"


def render_stats(survey: Survey, stats: SurveyStats, _: Texts) -> tuple[list[str], list[Panel]]:
    """The report lines (every label named) and the chart's panels."""
    lang = _.language
    lines = [
        _("survey.stats.title", title=_title(survey, _), id=survey.id),
        _(
            "survey.stats.summary",
            completed=stats.completed,
            in_progress=stats.in_progress,
            points=stats.points_paid,
        ),
    ]
    panels = []
    for number, (question, result) in enumerate(
        zip(survey.questions, stats.questions, strict=True), 1
    ):
        lines.append("")
        lines.append(
            _(
                "survey.stats.question",
                number=number,
                text=question.text.get(lang),
                answered=result.answered,
                skipped=result.skipped,
            )
        )
        if question.kind in ("single", "multiple"):
            counts = dict(result.option_counts)
            # Options removed from the configuration since still count, under their ids.
            ids = [o.id for o in question.options] + sorted(
                set(counts) - {o.id for o in question.options}
            )
            bars = []
            for index, option_id in enumerate(ids, 1):
                label = option_label(question, option_id, lang)
                count = counts.get(option_id, 0)
                lines.append(
                    _(
                        "survey.stats.option",
                        number=index,
                        label=label,
                        count=count,
                        percent=_percent(count, result.answered),
                    )
                )
                bars.append(Bar(label, count))
            panels.append(Panel(question.text.get(lang), tuple(bars)))
        elif question.kind == "rating":
            average = result.average_rating
            raters = sum(result.rating_counts.values())
            note = ""
            if average is not None:
                note = _("survey.stats.average", average=f"{average:.1f}", count=raters)
                lines.append(note)
            else:
                lines.append(_("survey.stats.no_ratings"))
            given = [(stars, result.rating_counts.get(stars, 0)) for stars in range(1, 6)]
            lines.append("  " + "  ".join(f"{stars}⭐ {n}" for stars, n in given))
            # Stars as digits: no font here draws the emoji.
            panels.append(
                Panel(question.text.get(lang), tuple(Bar(str(s), n) for s, n in given), note)
            )
        else:
            lines.append(_("survey.stats.texts", count=result.answered))
            for sample in result.text_samples:
                short = (
                    sample
                    if len(sample) <= TEXT_SAMPLE_LENGTH
                    else sample[: TEXT_SAMPLE_LENGTH - 1] + "…"
                )
                lines.append(_("survey.stats.text_sample", text=short))
    return lines, panels


def _chunks(lines: Sequence[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """The lines joined into messages under Telegram's length limit."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = line[:limit]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            candidate = line
        current = candidate
    if current:
        chunks.append(current)
    return chunks


async def survey_stats_command(update: Update, context: BotContext) -> None:
    """`/survey_stats <id>`: responses, counts per option, average ratings, and a chart."""
    asked = await staff_texts(update, context, "/survey_stats")
    if asked is None:
        return
    message, _ = asked
    services = context.services
    config = services.config
    args = context.args or []
    if len(args) != 1:
        ids = ", ".join(known_survey_ids(config, [])) or "-"
        await message.reply_text(_("survey.stats.usage", ids=ids))
        return
    try:
        survey, stats = await survey_results(services, args[0])
    except SurveyGone:
        ids = ", ".join(known_survey_ids(config, [])) or "-"
        await message.reply_text(_("survey.stats.unknown", id=args[0][:32], ids=ids))
        return
    lines, panels = render_stats(survey, stats, _)
    for chunk in _chunks(lines):
        await message.reply_text(chunk)
    if not stats.completed or not panels:
        return
    font = config.wheel.font if config.wheel is not None else ""
    try:
        picture = await asyncio.to_thread(
            chart_painter(font).render, _title(survey, _), panels, numbered_title=survey.id
        )
    except Exception:  # the numbers are sent already: a drawing failure must not hide them
        log.exception("could not draw the chart of survey %s", survey.id)
        return
    caption = _(
        "survey.stats.chart_numbered" if picture.numbered else "survey.stats.chart",
        title=_title(survey, _),
    )
    await message.reply_photo(picture.png, caption=caption)
