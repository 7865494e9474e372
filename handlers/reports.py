"""`/report [YYYY-MM]`: the monthly points report for owners, as text and a chart."""

from __future__ import annotations

import asyncio
import logging

from telegram import Update

from bot.programme.reports import BadMonth, FutureMonth, report_for
from bot.reports import chart_caption, flow_chart, message_chunks, summary_lines
from handlers.common import BotContext
from handlers.staff import staff_texts

log = logging.getLogger(__name__)


async def report_command(update: Update, context: BotContext) -> None:
    """`/report [YYYY-MM]`: last month's report (or the month named; this month to date)."""
    asked = await staff_texts(update, context, "/report")
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if len(args) > 1:
        await message.reply_text(_("report.usage"))
        return
    try:
        report = await report_for(context.services, args[0] if args else None)
    except BadMonth:
        await message.reply_text(_("report.bad_month", text=args[0][:20]))
        return
    except FutureMonth as exc:
        await message.reply_text(_("report.future_month", month=str(exc)))
        return
    for chunk in message_chunks(summary_lines(report, _)):
        await message.reply_text(chunk)
    config = context.services.config
    font = config.wheel.font if config.wheel is not None else ""
    try:
        picture = await asyncio.to_thread(flow_chart, report, _, font)
    except Exception:  # the figures are sent already: a drawing failure must not hide them
        log.exception("could not draw the chart of the %s report", report.label)
        return
    await message.reply_photo(picture.png, caption=chart_caption(report, picture, _))
