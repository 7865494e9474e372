"""A member's green contribution: /green (🌱 in the menu) and the chart of their green months."""

from __future__ import annotations

import asyncio
import logging
from datetime import date

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.charts import ChartPicture, Column, chart_painter
from bot.config import Config
from bot.programme.green import (
    GreenContribution,
    GreenFigures,
    chart_month_allowed,
    decode_chart,
    encode_chart,
    green_categories,
    green_chart_series,
    green_contribution,
    month_label,
    shown_impact,
    shown_yuan,
)
from handlers.common import BotContext, Texts, member_for, texts_for

log = logging.getLogger(__name__)


def _impact(figures: GreenFigures) -> str:
    return format(shown_impact(figures.impact_kg), "f")


def _figures_line(period: str, figures: GreenFigures, _: Texts) -> str:
    return _(
        "green.line",
        period=period,
        spend=shown_yuan(figures.spend),
        points=figures.points,
        impact=_impact(figures),
    )


def render_green(
    contribution: GreenContribution, _: Texts
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The /green answer and its chart button (none before the first green purchase)."""
    if not contribution.factors:
        return _("green.none_configured"), None
    separator = _("list.separator")
    names = separator.join(c.name.get(_.language) for c, _factor in contribution.factors)
    factors = separator.join(
        _("green.factor", category=c.name.get(_.language), kg=format(kg.normalize(), "f"))
        for c, kg in contribution.factors
    )
    factors_note = _("green.factors_note", factors=factors)
    if not contribution.overall.any:
        return "\n".join((_("green.title"), _("green.empty", categories=names), factors_note)), None
    month = contribution.month
    lines = [
        _("green.title"),
        _("green.what_counts", categories=names),
        _figures_line(
            _("green.this_month", month=month_label(month, _.language)),
            contribution.this_month,
            _,
        ),
        _figures_line(_("green.this_year", year=month.year), contribution.this_year, _),
        _figures_line(_("green.overall"), contribution.overall, _),
    ]
    if len(contribution.by_category) > 1:
        lines.append(_("green.by_category_heading"))
        lines += [
            _(
                "green.category_line",
                category=category.name.get(_.language),
                spend=shown_yuan(figures.spend),
                points=figures.points,
                impact=_impact(figures),
            )
            for category, figures in contribution.by_category
        ]
    lines += [_("green.points_note"), factors_note]
    button = InlineKeyboardButton(_("green.chart_button"), callback_data=encode_chart(month))
    return "\n".join(lines), InlineKeyboardMarkup([[button]])


def draw_chart(series: list[tuple[date, GreenFigures]], config: Config, _: Texts) -> ChartPicture:
    """The column chart of eco spend per month (labels and values in ASCII, always drawable)."""
    first, last = series[0][0], series[-1][0]
    columns = [
        Column(f"{month:%Y-%m}", float(figures.spend), f"¥{figures.spend:.0f}")
        for month, figures in series
    ]
    font = config.wheel.font if config.wheel is not None else ""
    title = _("green.chart_title", first=f"{first:%Y-%m}", last=f"{last:%Y-%m}")
    # Without a font for the member's language, the English title (Latin letters only).
    fallback = _.i18n.t("en", "green.chart_title", first=f"{first:%Y-%m}", last=f"{last:%Y-%m}")
    return chart_painter(font).render_columns(title, columns, fallback_title=fallback)


def chart_caption(series: list[tuple[date, GreenFigures]], _: Texts) -> str:
    """The chart's figures as text, for members who cannot see the picture."""
    lines = [
        _(
            "green.chart_line",
            month=month_label(month, _.language),
            spend=shown_yuan(figures.spend),
            points=figures.points,
            impact=_impact(figures),
        )
        for month, figures in series
    ]
    return "\n".join([_("green.chart_caption", months=len(series)), *lines])


async def green(update: Update, context: BotContext) -> None:
    """Show the member's eco spend, green points and estimated impact."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    services = context.services
    contribution = await green_contribution(services, member.id)
    text, keyboard = render_green(contribution, _)
    await message.reply_text(text, reply_markup=keyboard)


async def green_callback(update: Update, context: BotContext) -> None:
    """A "see chart" tap (from /green or a monthly report): the tapping member's own months."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    services = context.services
    month = decode_chart(query.data or "")
    member = await services.members.by_telegram_id(user.id)
    # The data names only a month: whoever taps sees their own figures, so a forged button
    # can show nothing but a month outside the programme's calendar, which is refused.
    if (
        month is None
        or member is None
        or not chart_month_allowed(month, services.now(), services.config)
        or not green_categories(services.config)
    ):
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    series = await green_chart_series(services, member.id, month)
    caption = chart_caption(series, _)
    # A member's chat with the bot has the member's id.
    try:
        picture = await asyncio.to_thread(draw_chart, series, services.config, _)
    except Exception:  # the figures still reach the member as text
        log.exception("could not draw the green chart of member %s", member.id)
        await context.bot.send_message(user.id, caption)
        return
    await context.bot.send_photo(user.id, picture.png, caption=caption)
