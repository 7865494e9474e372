"""Check-in events: staff create one (/event_new) and follow it (/event_stats); members check
in by its code (/checkin CODE) or by opening its QR deep link (/start ev_<code>)."""

from __future__ import annotations

from datetime import datetime

from telegram import Message, Update

from bot.config import Config
from bot.programme.errors import RuleError
from bot.programme.events import (
    CheckInResult,
    EventStats,
    check_in,
    create_event,
    event_link,
    event_stats,
)
from bot.qr import qr_png
from handlers.common import BotContext, Texts, member_for, texts_for
from handlers.staff import staff_texts
from storage.events import Event


def _local(moment: datetime, config: Config) -> datetime:
    return moment.astimezone(config.program.tz)


def render_window(event: Event, config: Config) -> str:
    """The event's window in local time: 2026-12-05 14:00–16:00 (the end's date when it
    differs)."""
    starts, ends = _local(event.starts_at, config), _local(event.ends_at, config)
    end = f"{ends:%H:%M}" if ends.date() == starts.date() else f"{ends:%Y-%m-%d %H:%M}"
    return f"{starts:%Y-%m-%d %H:%M}–{end}"


def _capacity(event: Event, _: Texts) -> str:
    if event.capacity is None:
        return _("events.capacity_none")
    return _("events.capacity", capacity=event.capacity)


def _operator(update: Update) -> str:
    """The audit trail's name for the staff member who sent the command."""
    return f"telegram:{update.effective_user.id if update.effective_user else 0}"


async def event_new(update: Update, context: BotContext) -> None:
    """`/event_new <date> <HH:MM-HH:MM> [capacity] <name>` (staff): create a check-in event
    and send its code and QR deep link."""
    asked = await staff_texts(update, context, "/event_new")
    if asked is None:
        return
    message, _ = asked
    services = context.services
    try:
        event = await create_event(services, context.args or [], actor=_operator(update))
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    link = event_link(context.bot.username, event)
    caption = _(
        "events.created",
        name=event.name,
        window=render_window(event, services.config),
        capacity=_capacity(event, _),
        code=event.code,
        link=link,
    )
    await message.reply_photo(qr_png(link), caption=caption)


def render_stats(stats: EventStats, config: Config, _: Texts) -> str:
    """/event_stats: the window, capacity, check-ins (by day) and task completions."""
    event, counts = stats.event, stats.counts
    lines = [
        _("events.stats_title", name=event.name, code=event.code),
        _("events.stats_window", window=render_window(event, config)),
        _capacity(event, _),
        _("events.stats_checked_in", count=counts.checked_in),
    ]
    lines += [_("events.stats_day", day=day, count=count) for day, count in counts.by_day]
    lines.append(_("events.stats_completed", count=counts.completed_task))
    return "\n".join(lines)


async def event_stats_command(update: Update, context: BotContext) -> None:
    """`/event_stats <code>` (staff): an event's check-ins so far."""
    asked = await staff_texts(update, context, "/event_stats")
    if asked is None:
        return
    message, _ = asked
    if len(context.args or []) != 1:
        await message.reply_text(_("events.stats_usage"))
        return
    try:
        stats = await event_stats(context.services, (context.args or [""])[0])
    except RuleError as exc:
        await message.reply_text(_(exc.key, **exc.params))
        return
    await message.reply_text(render_stats(stats, context.services.config, _))


def render_check_in(result: CheckInResult, typed: str, config: Config, _: Texts) -> str:
    """A member's check-in, in plain words."""
    event = result.event
    if event is None:
        return _("events.unknown", code=typed.strip()[:16])
    if result.outcome == "early":
        opens = _local(event.starts_at, config)
        return _("events.not_open", name=event.name, opens=f"{opens:%Y-%m-%d %H:%M}")
    keys = {
        "checked_in": "events.checked_in",
        "already": "events.already",
        "full": "events.full",
        "closed": "events.closed",
    }
    return _(keys.get(result.outcome, "events.closed"), name=event.name)


async def _check_in(update: Update, context: BotContext, message: Message, typed: str) -> None:
    user = update.effective_user
    if user is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    result = await check_in(context.services, member, typed)
    await message.reply_text(render_check_in(result, typed, context.services.config, _))
    if result.completed_task:
        context.services.sender.wake()  # the task's message was queued with the check-in


async def checkin_command(update: Update, context: BotContext) -> None:
    """`/checkin CODE`: check in at an event with the code shown on site."""
    message = update.effective_message
    if message is None:
        return
    if len(context.args or []) != 1:
        _ = await texts_for(update, context)
        await message.reply_text(_("events.checkin_usage"))
        return
    await _check_in(update, context, message, (context.args or [""])[0])


async def check_in_from_link(update: Update, context: BotContext, code: str) -> None:
    """/start ev_<code>: the member opened an event's QR deep link."""
    if update.effective_message is not None:
        await _check_in(update, context, update.effective_message, code)
