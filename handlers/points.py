"""A member's own points: /balance, /history (paged with buttons) and /card (QR member code)."""

from __future__ import annotations

from datetime import date

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.config import Config
from bot.programme.calendar import display_expiry
from bot.programme.statements import Phrase, describe
from bot.programme.tiers import Standing, standing
from bot.qr import qr_png
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.tiers import standing_lines
from storage.ledger import Balance, Statement, StatementLine

HISTORY_PREFIX = "hist"
HISTORY_PAGE_SIZE = 8
# Far beyond any real statement; a larger page number in a button is forged.
MAX_HISTORY_PAGE = 100_000


def signed(points: int) -> str:
    """Points with an explicit sign, as a statement shows them: +120, -50, 0."""
    return f"{points:+d}" if points else "0"


def format_code(code: str) -> str:
    """A member code in groups of four, easy to read out at the till."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def expiry_schedule(balance: Balance, config: Config) -> list[tuple[date | None, int]]:
    """Unexpired points by the last local day they can be used (None: never), soonest first."""
    days: dict[date | None, int] = {}
    for expiry, points in balance.expiring:
        day = None if expiry is None else display_expiry(expiry, config)
        days[day] = days.get(day, 0) + points
    return list(days.items())


def render_balance(balance: Balance, config: Config, _: Texts, tier: Standing | None = None) -> str:
    """The /balance answer: available points, what expires when, everything received in total,
    and the member's tier with what the next one needs (programmes with tiers)."""
    lines = [_("balance.available", points=balance.available)]
    if balance.available:
        lines.append(_("balance.expiring_heading"))
        for day, points in expiry_schedule(balance, config):
            if day is None:
                lines.append(_("balance.never_expires", points=points))
            else:
                lines.append(_("balance.expires_on", day=day.isoformat(), points=points))
    else:
        lines.append(_("balance.empty"))
    lines.append(_("balance.lifetime", points=balance.lifetime_earned))
    if balance.owed:
        # A returned purchase's points the member had spent (bot.programme.owed).
        lines.append(_("balance.owed", points=balance.owed))
    if tier is not None:
        lines.append("")
        lines += standing_lines(tier, config, _)
    return "\n".join(lines)


def render_phrase(phrase: Phrase, _: Texts) -> str:
    """A programme phrase in the member's language."""
    return _(phrase.key, **phrase.params)


def render_statement_line(line: StatementLine, config: Config, _: Texts) -> str:
    """One line of /history: when, what it was, the points, and what a member knows it by."""
    entry = describe(line, config, _.language)
    local = line.created_at.astimezone(config.program.tz)
    text = _(
        "history.line",
        date=local.strftime("%Y-%m-%d %H:%M"),
        kind=render_phrase(entry.what, _),
        points=signed(line.points),
    )
    for detail in entry.details:
        text += _("statement.detail", detail=render_phrase(detail, _))
    return text


def page_count(total: int) -> int:
    """How many pages a statement of `total` lines has (at least one)."""
    return max(1, -(-total // HISTORY_PAGE_SIZE))


def render_history(
    statement: Statement, page: int, config: Config, _: Texts
) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of the statement and its ◀ ▶ buttons."""
    if statement.total == 0:
        return _("history.empty"), None
    pages = page_count(statement.total)
    lines = [_("history.title", page=page + 1, pages=pages, total=statement.total)]
    lines += [render_statement_line(line, config, _) for line in statement.lines]
    buttons = []
    if page > 0:
        buttons.append(
            InlineKeyboardButton(_("history.newer"), callback_data=encode_page(page - 1))
        )
    if page + 1 < pages:
        buttons.append(
            InlineKeyboardButton(_("history.older"), callback_data=encode_page(page + 1))
        )
    return "\n".join(lines), InlineKeyboardMarkup([buttons]) if buttons else None


def encode_page(page: int) -> str:
    """Callback data for a history page button."""
    return f"{HISTORY_PREFIX}:{page}"


def decode_page(data: str) -> int | None:
    """The page a history button names, or None when the data is not a valid page."""
    prefix, _, page = data.partition(":")
    if prefix != HISTORY_PREFIX or not page.isascii() or not page.isdigit():
        return None
    number = int(page)
    return number if number < MAX_HISTORY_PAGE else None


async def balance(update: Update, context: BotContext) -> None:
    """Show the member's available points, their expiry dates and everything received in total."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    services = context.services
    summary = await services.ledger.balance(member.id, services.clock())
    # One indexed read more, none without tiers.
    tier = await standing(services, member.id)
    await message.reply_text(render_balance(summary, services.config, _, tier))


async def _history_page(member_id: int, page: int, context: BotContext) -> Statement:
    return await context.services.ledger.history(
        member_id, offset=page * HISTORY_PAGE_SIZE, limit=HISTORY_PAGE_SIZE
    )


async def history(update: Update, context: BotContext) -> None:
    """Show the newest page of the member's statement."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    statement = await _history_page(member.id, 0, context)
    text, keyboard = render_history(statement, 0, context.services.config, _)
    await message.reply_text(text, reply_markup=keyboard)


async def history_callback(update: Update, context: BotContext) -> None:
    """A ◀ ▶ tap: show that page of the tapping member's own statement."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    page = decode_page(query.data or "")
    member = await context.services.members.by_telegram_id(user.id)
    statement = None
    if page is not None and member is not None:
        statement = await _history_page(member.id, page, context)
    # A page past the end (the statement cannot shrink) or a forged number: not ours to show.
    if page is None or statement is None or (page > 0 and not statement.lines):
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    text, keyboard = render_history(statement, page, context.services.config, _)
    await edit_in_place(update, text, keyboard)


async def card(update: Update, context: BotContext) -> None:
    """Send the member code as a QR image for the cashier to scan."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    member = await member_for(user, context)
    _ = await texts_for(update, context)
    program = context.services.config.program
    caption = _(
        "card.caption",
        brand=program.brand,
        name=member.display_name,
        code=format_code(member.member_code),
    )
    await message.reply_photo(qr_png(member.member_code), caption=caption)
