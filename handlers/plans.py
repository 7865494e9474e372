"""High-value members, one to one: staff mark key customers (/vip_mark, /vip_unmark), set a
personal plan (/plan <code>: categories tapped, the rest typed, then confirmed), end it
(/plan_end), list plans (/plans) and a member's history (/plan_log), and see the top members
(/vip [n]); members see their advisor and send them a question (/advisor [question]).

The /plan conversation keeps what was chosen in the store (bot/programme/plans.py), so a
restart continues where staff were; its buttons (`pl:`) are re-checked against that draft.
"""

from __future__ import annotations

import warnings
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import TelegramError
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.config import Config
from bot.i18n import resolve_language
from bot.programme.errors import RuleError
from bot.programme.plans import (
    GIFT_MAX,
    MULTIPLIER_MAX,
    VIP_MAX,
    PlanStep,
    StalePlanStep,
    advisor_of,
    answer_step,
    ask_advisor,
    categories_chosen,
    confirm_plan,
    draft_terms,
    drop_plan_draft,
    end_member_plan,
    mark_key_customer,
    plan_history,
    plan_state,
    running_plans,
    start_plan,
    terms_lines,
    toggle_category,
    top_members,
    vip_count,
)
from bot.programme.till import split_member_code
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.points import format_code
from handlers.questions import asks
from handlers.staff import staff_may_tap, staff_texts
from storage.members import Member
from storage.plans import PlanTerms

PLAN_PREFIX: Final = "pl"
CHOOSING, TYPING, CONFIRMING = range(3)
# The shapes of the `pl:` buttons: action -> does it carry a category id.
_SHAPES: Final = {"c": True, "n": False, "ok": False, "x": False}
_ASK: Final = {
    "multiplier": "plans.ask_multiplier",
    "window": "plans.ask_window",
    "gift": "plans.ask_gift",
    "skus": "plans.ask_skus",
    "advisor": "plans.ask_advisor",
}
_STATES: Final = {
    "running": "plans.state_running",
    "ahead": "plans.state_ahead",
    "ended": "plans.state_ended",
    "expired": "plans.state_expired",
}
_ACTIONS: Final = {
    "mark": "plans.log_mark",
    "unmark": "plans.log_unmark",
    "create": "plans.log_create",
    "change": "plans.log_change",
    "end": "plans.log_end",
}


def decode_plan_button(data: str) -> tuple[str, str | None] | None:
    """(action, category id) of a `pl:` button, or None when it is not well-formed."""
    prefix, *parts = data.split(":")
    if prefix != PLAN_PREFIX or not parts or parts[0] not in _SHAPES:
        return None
    wants_arg = _SHAPES[parts[0]]
    if len(parts) != (2 if wants_arg else 1):
        return None
    return parts[0], parts[1] if wants_arg else None


def _operator(update: Update) -> str:
    """The audit trail's name for the staff member acting."""
    return f"telegram:{update.effective_user.id if update.effective_user else 0}"


def render_terms(terms: PlanTerms, config: Config, _: Texts) -> str:
    """A plan's terms, one line each, in the reader's language."""
    return "\n".join(_(key, **params) for key, params in terms_lines(terms, config, _.language))


def _categories_view(step: PlanStep, config: Config, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    """The first step: tap the categories the multiplier covers (none: all)."""
    chosen = step.terms.get("categories", [])
    rows = [
        [
            InlineKeyboardButton(
                ("✅ " if c.id in chosen else "") + c.name.get(_.language),
                callback_data=f"{PLAN_PREFIX}:c:{c.id}",
            )
        ]
        for c in config.earn.categories
    ]
    rows.append(
        [
            InlineKeyboardButton(_("plans.next_button"), callback_data=f"{PLAN_PREFIX}:n"),
            InlineKeyboardButton(_("plans.cancel_button"), callback_data=f"{PLAN_PREFIX}:x"),
        ]
    )
    lines = [
        _("plans.heading", name=step.member.display_name, code=format_code(step.member.member_code))
    ]
    if step.replaces is not None:
        lines.append(_("plans.replaces_note", ends=step.replaces.terms.ends_on.isoformat()))
    lines.append(_("plans.ask_categories"))
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _ask_text(step: PlanStep, _: Texts) -> str:
    """The question of a typed step."""
    return _(_ASK[step.step], max_multiplier=MULTIPLIER_MAX, max_gift=f"{GIFT_MAX:,}")


def _confirm_view(step: PlanStep, config: Config, _: Texts) -> tuple[str, InlineKeyboardMarkup]:
    """The last step: the terms as they will be set, with confirm and cancel."""
    terms = draft_terms(step.terms, config)
    text = _(
        "plans.confirm",
        name=step.member.display_name,
        code=format_code(step.member.member_code),
        terms=render_terms(terms, config, _),
    )
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_("plans.confirm_button"), callback_data=f"{PLAN_PREFIX}:ok"),
                InlineKeyboardButton(_("plans.cancel_button"), callback_data=f"{PLAN_PREFIX}:x"),
            ]
        ]
    )
    return text, keyboard


# --- /plan ------------------------------------------------------------------------------------


async def plan_command(update: Update, context: BotContext) -> int:
    """`/plan <member code>`: open the plan conversation for that member."""
    asked = await staff_texts(update, context, "/plan")
    user = update.effective_user
    if asked is None or user is None:
        return ConversationHandler.END
    message, _ = asked
    code, rest = split_member_code(context.args or [])
    if not code or rest:
        await message.reply_text(_("plans.plan_usage"))
        return ConversationHandler.END
    try:
        step = await start_plan(context.services, user.id, code)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    text, keyboard = _categories_view(step, context.services.config, _)
    await message.reply_text(text, reply_markup=keyboard)
    return CHOOSING


@asks
async def plan_button(update: Update, context: BotContext) -> int:
    """A `pl:` button: a category, next, confirm or cancel, checked against the draft kept."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return ConversationHandler.END
    _ = await staff_may_tap(update, context, f"{PLAN_PREFIX}:")
    if _ is None:
        return ConversationHandler.END
    services = context.services
    decoded = decode_plan_button(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return ConversationHandler.END
    action, category = decoded
    try:
        if action == "x":
            await query.answer()
            await drop_plan_draft(services, user.id)
            await edit_in_place(update, _("plans.cancelled"))
            return ConversationHandler.END
        if action == "ok":
            done = await confirm_plan(services, user.id, actor=_operator(update))
            await query.answer()
            services.sender.wake()  # the member's message was queued with the plan
            key = "plans.set_replaced" if done.replaced is not None else "plans.set"
            await edit_in_place(
                update,
                _(
                    key,
                    name=done.member.display_name,
                    code=format_code(done.member.member_code),
                    id=done.plan.id,
                    terms=render_terms(done.plan.terms, services.config, _),
                ),
            )
            return ConversationHandler.END
        if action == "c" and category is not None:
            step = await toggle_category(services, user.id, category)
            await query.answer()
            text, keyboard = _categories_view(step, services.config, _)
            await edit_in_place(update, text, keyboard)
            return CHOOSING
        step = await categories_chosen(services, user.id)
    except StalePlanStep as exc:
        await query.answer(_(exc.key, **exc.params), show_alert=True)
        return ConversationHandler.END
    await query.answer()
    await edit_in_place(update, _ask_text(step, _))
    return TYPING


async def plan_answer(update: Update, context: BotContext) -> int:
    """A typed answer to the step asked: the next question, or the terms to confirm."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return TYPING
    # A role taken away mid-conversation ends it, with the same polite refusal.
    asked = await staff_texts(update, context, "/plan")
    if asked is None:
        return ConversationHandler.END
    _ = asked[1]
    services = context.services
    try:
        step = await answer_step(services, user.id, message.text)
        if step.step == "confirm":
            text, keyboard = _confirm_view(step, services.config, _)
            await message.reply_text(text, reply_markup=keyboard)
            return CONFIRMING
    except StalePlanStep as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return ConversationHandler.END
    except RuleError as exc:  # a bad answer: the same step is asked again
        await message.reply_text(_(exc.key, **exc.params))
        return TYPING
    await message.reply_text(_ask_text(step, _))
    return TYPING


async def plan_cancel(update: Update, context: BotContext) -> int:
    """/cancel: leave /plan without setting anything."""
    user, message = update.effective_user, update.effective_message
    if user is not None:
        await drop_plan_draft(context.services, user.id)
    if message is not None:
        _ = await texts_for(update, context)
        await message.reply_text(_("plans.cancelled"))
    return ConversationHandler.END


def plan_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """/plan: categories (buttons), multiplier, window, gift, items, advisor (typed), confirm."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        # Buttons and typed answers alike: tracked per chat and user.
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[
                CommandHandler("plan", plan_command, filters=filters.ChatType.PRIVATE),
                # A button of a draft kept across a restart (re-checked against the store).
                CallbackQueryHandler(plan_button, pattern=rf"^{PLAN_PREFIX}:"),
            ],
            states={
                CHOOSING: [CallbackQueryHandler(plan_button, pattern=rf"^{PLAN_PREFIX}:")],
                TYPING: [MessageHandler(private_text, plan_answer)],
                CONFIRMING: [CallbackQueryHandler(plan_button, pattern=rf"^{PLAN_PREFIX}:")],
            },
            fallbacks=[CommandHandler("cancel", plan_cancel)],
            name="plans",
            persistent=True,
            allow_reentry=True,
            conversation_timeout=1800,
        )


# --- staff commands ---------------------------------------------------------------------------


async def _code_and_reason(
    update: Update, context: BotContext, action: str, usage: str
) -> tuple[Message, Texts, str, str] | None:
    """The staff member's message, texts, the member code and the reason typed after it, when
    they may run `action` (a key of the staff table)."""
    asked = await staff_texts(update, context, action)
    if asked is None:
        return None
    message, _ = asked
    code, rest = split_member_code(context.args or [])
    if not code:
        await message.reply_text(_(usage))
        return None
    return message, _, code, " ".join(rest)


async def _mark(update: Update, context: BotContext, *, marked: bool) -> None:
    usage = "plans.mark_usage" if marked else "plans.unmark_usage"
    action = "/vip_mark" if marked else "/vip_unmark"
    found = await _code_and_reason(update, context, action, usage)
    if found is None:
        return
    message, _, code, reason = found
    try:
        done = await mark_key_customer(
            context.services, code, reason, marked=marked, actor=_operator(update)
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    if marked:
        key = "plans.marked" if done.changed else "plans.already_marked"
    else:
        key = "plans.unmarked" if done.changed else "plans.not_marked"
    await message.reply_text(
        _(key, name=done.member.display_name, code=format_code(done.member.member_code))
    )


async def vip_mark(update: Update, context: BotContext) -> None:
    """`/vip_mark <member code> <reason>`: mark a key customer."""
    await _mark(update, context, marked=True)


async def vip_unmark(update: Update, context: BotContext) -> None:
    """`/vip_unmark <member code> <reason>`: take the key-customer mark away."""
    await _mark(update, context, marked=False)


async def plan_end(update: Update, context: BotContext) -> None:
    """`/plan_end <member code> <reason>`: end the member's running plan early."""
    found = await _code_and_reason(update, context, "/plan_end", "plans.end_usage")
    if found is None:
        return
    message, _, code, reason = found
    try:
        member, ended = await end_member_plan(
            context.services, code, reason, actor=_operator(update)
        )
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    await message.reply_text(
        _(
            "plans.ended",
            name=member.display_name,
            code=format_code(member.member_code),
            id=ended.id,
        )
    )


async def plans_command(update: Update, context: BotContext) -> None:
    """`/plans`: every running plan (member, window, terms, advisor)."""
    asked = await staff_texts(update, context, "/plans")
    if asked is None:
        return
    message, _ = asked
    services = context.services
    listed = await running_plans(services)
    if not listed:
        await message.reply_text(_("plans.list_empty"))
        return
    now = services.now()
    lines = [_("plans.list_heading", count=len(listed))]
    for item in listed:
        lines.append(
            _(
                "plans.list_line",
                id=item.plan.id,
                name=item.member.display_name,
                code=format_code(item.member.member_code),
                mark="⭐" if item.key_customer else "",
                state=_(_STATES[plan_state(item.plan, now)]),
                terms=render_terms(item.plan.terms, services.config, _),
            )
        )
    # Telegram refuses a message over 4096 characters: send the list in parts.
    chunk: list[str] = []
    for line in lines:
        if sum(len(x) + 2 for x in chunk) + len(line) > 3800:
            await message.reply_text("\n\n".join(chunk))
            chunk = []
        chunk.append(line)
    await message.reply_text("\n\n".join(chunk))


async def plan_log(update: Update, context: BotContext) -> None:
    """`/plan_log <member code>`: the member's key-customer marks and plans, oldest first."""
    asked = await staff_texts(update, context, "/plan_log")
    if asked is None:
        return
    message, _ = asked
    code, rest = split_member_code(context.args or [])
    if not code or rest:
        await message.reply_text(_("plans.log_usage"))
        return
    try:
        history = await plan_history(context.services, code)
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    member, changes = history.member, history.changes
    tz = context.services.config.program.tz
    lines = [_("plans.log_heading", name=member.display_name, code=format_code(member.member_code))]
    for plan, state in history.plans:
        lines.append(
            _(
                "plans.log_plan",
                id=plan.id,
                starts=plan.terms.starts_on.isoformat(),
                ends=plan.terms.ends_on.isoformat(),
                state=_(_STATES[state]),
            )
        )
    if not changes:
        lines.append(_("plans.log_empty"))
    for change in changes[-30:]:
        lines.append(
            _(
                _ACTIONS[change.action],
                at=change.changed_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                actor=change.actor,
                reason=change.reason,
                id=change.plan_id or "-",
            )
        )
    await message.reply_text("\n".join(lines))


async def vip_command(update: Update, context: BotContext) -> None:
    """`/vip [n]`: the top n members by qualifying total this window."""
    asked = await staff_texts(update, context, "/vip")
    if asked is None:
        return
    message, _ = asked
    services = context.services
    try:
        count = vip_count(context.args or [])
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    lines_found = await top_members(services, count)
    if not lines_found:
        await message.reply_text(_("plans.vip_empty"))
        return
    unit = "plans.vip_yuan" if services.config.tiers.measure == "spend_yuan" else "plans.vip_points"
    lines = [_("plans.vip_heading", count=len(lines_found), max=VIP_MAX)]
    for rank, line in enumerate(lines_found, start=1):
        tier = line.tier
        lines.append(
            _(
                "plans.vip_line",
                rank=rank,
                name=line.member.name,
                code=format_code(line.member.member_code),
                total=_(unit, total=f"{line.total:,}"),
                tier=f"{tier.emoji}{tier.name.get(_.language)}" if tier is not None else "-",
                mark="⭐" if line.member.key_customer else "",
                plan=_("plans.vip_plan", id=line.plan.id, ends=line.plan.terms.ends_on.isoformat())
                if line.plan is not None
                else _("plans.vip_no_plan"),
            )
        )
    await message.reply_text("\n".join(lines))


# --- /advisor (members) --------------------------------------------------------------------------


ADVISOR_ASK: Final = "adv:ask"
ASKING_ADVISOR = 0


def _ask_button(_: Texts) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(_("plans.advisor_ask_button"), callback_data=ADVISOR_ASK)]]
    )


async def advisor_command(update: Update, context: BotContext) -> None:
    """`/advisor`: the member's advisor (and a button to write to them); `/advisor <question>`:
    forward the question at once."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    _ = await texts_for(update, context)
    services = context.services
    member = await member_for(user, context)
    text = (message.text or "").partition(" ")[2].strip()
    if text:
        await message.reply_text(await _forward(context, member, text, _))
        return
    advisor = await advisor_of(services, member.id)
    if advisor is None:
        support = services.config.program.support_contact or "-"
        await message.reply_text(_("plans.advisor_none", support=support))
        return
    await message.reply_text(
        _("plans.advisor_show", contact=advisor.contact), reply_markup=_ask_button(_)
    )


async def _forward(context: BotContext, member: Member, text: str, _: Texts) -> str:
    """Forward a member's question to their advisor; what to tell the member."""
    services = context.services
    try:
        question = await ask_advisor(services, member, text)
    except RuleError as exc:
        return _(exc.key, **exc.params)
    # The advisor reads it in their own language when they use the bot, else the default.
    staff = await services.members.by_telegram_id(question.advisor.telegram_id)
    language = resolve_language(
        staff.language if staff else None,
        staff.telegram_language if staff else None,
        services.config.program.default_language,
    )
    forwarded = services.i18n.t(
        language,
        "plans.advisor_forwarded",
        name=member.display_name,
        code=format_code(member.member_code),
        question=question.text,
    )
    try:
        await context.bot.send_message(question.advisor.telegram_id, forwarded)
    except TelegramError:
        # The advisor never opened the bot, or blocked it: the member is told to call instead.
        return _("plans.advisor_unreachable", contact=question.advisor.contact)
    return _("plans.advisor_sent", contact=question.advisor.contact)


@asks
async def advisor_ask(update: Update, context: BotContext) -> int:
    """The "write to my advisor" button: ask for the question (or say there is no advisor)."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return ConversationHandler.END
    await query.answer()
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    chat_id = query.message.chat.id if query.message is not None else user.id
    if await advisor_of(context.services, member.id) is None:
        support = context.services.config.program.support_contact or "-"
        await context.bot.send_message(chat_id, _("plans.advisor_none", support=support))
        return ConversationHandler.END
    await context.bot.send_message(chat_id, _("plans.advisor_ask"))
    return ASKING_ADVISOR


async def advisor_question(update: Update, context: BotContext) -> int:
    """The member typed their question: forward it."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None or message.text is None:
        return ASKING_ADVISOR
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    await message.reply_text(await _forward(context, member, message.text, _))
    return ConversationHandler.END


async def advisor_cancel(update: Update, context: BotContext) -> int:
    """/cancel: no question sent."""
    if update.effective_message is not None:
        _ = await texts_for(update, context)
        await update.effective_message.reply_text(_("plans.advisor_cancelled"))
    return ConversationHandler.END


def advisor_conversation() -> ConversationHandler:  # type: ignore[type-arg]
    """The "write to my advisor" button, then the typed question, with /cancel to leave."""
    private_text = filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*per_message=False", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[CallbackQueryHandler(advisor_ask, pattern=f"^{ADVISOR_ASK}$")],
            states={ASKING_ADVISOR: [MessageHandler(private_text, advisor_question)]},
            fallbacks=[CommandHandler("cancel", advisor_cancel)],
            name="advisor",
            persistent=True,
            allow_reentry=True,
            conversation_timeout=600,
        )
