"""The points games: /wheel (积分转盘), /scratch (积分刮刮乐), /odds, /prizes and the staff's
/fulfil_prize.

Every Spin / Buy button carries a game offer created when it was shown (DESIGN.md "Keys from
Telegram"), so a double tap plays once; a scratch button carries the card id and the cell,
and ownership and state are re-checked in the store on every tap. The odds are shown before
the first play of each local day, on /odds and in /rules.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.config import Config, GameCampaign, GamePrize, ScratchConfig
from bot.i18n import N_
from bot.programme.calendar import display_expiry, end_of_day, local_today
from bot.programme.expiry import expires_at
from bot.qr import qr_png
from bot.sending import read_back
from bot.wheel import (
    CELLS,
    GAMES,
    PICTURE_CACHE,
    STOPS_PER_SLICE,
    GameTable,
    WheelPicture,
    active_campaign,
    draw,
    expected_points,
    game_table,
    odds,
    painter_for,
    percent_text,
    points_text,
    prize_points,
    prize_symbol,
    scratch_layout,
    winning_symbol,
)
from handlers.admin import operator_texts
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from storage.errors import (
    InsufficientPoints,
    InvalidState,
    LimitReached,
    NotFound,
    OfferExpired,
    PriceChanged,
)
from storage.games import Outcome, Play, PlayRules, PrizeVoucher

log = logging.getLogger(__name__)

GAME_PREFIX = "game"
# Offer and card ids in buttons are below this; anything larger is forged.
MAX_ID = 10**15
PRIZES_SHOWN = 10
UNSCRATCHED = "░░"
OPEN_CARDS_SHOWN = 3

TITLES: dict[str, str] = {"wheel": N_("games.wheel.title"), "scratch": N_("games.scratch.title")}
VOUCHER_STATUS: dict[str, str] = {
    "issued": N_("games.voucher.issued"),
    "used": N_("games.voucher.used"),
    "expired": N_("games.voucher.expired"),
}


# --- callback data ---------------------------------------------------------------------------


def _number(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 15:
        return None
    value = int(text)
    return value if value < MAX_ID else None


def decode_game(data: str) -> tuple[str, tuple[int, ...], str] | None:
    """(action, numbers, game) of a game button, or None when the data is not well-formed."""
    prefix, *parts = data.split(":")
    if prefix != GAME_PREFIX or not parts:
        return None
    action, args = parts[0], parts[1:]
    if action == "odds":
        return (action, (), args[0]) if len(args) == 1 and args[0] in GAMES else None
    shapes = {"spin": 1, "buy": 1, "sc": 2, "all": 1, "card": 1}
    if shapes.get(action) != len(args):
        return None
    numbers = tuple(_number(a) for a in args)
    if any(n is None for n in numbers):
        return None
    values = tuple(n for n in numbers if n is not None)
    if action == "sc" and values[1] >= CELLS:
        return None
    return action, values, "wheel" if action == "spin" else "scratch"


def game_data(action: str, *args: object) -> str:
    """Callback data for a game button."""
    return ":".join([GAME_PREFIX, action, *map(str, args)])


# --- rendering -------------------------------------------------------------------------------


def prize_label(config: Config, game: str, prize_id: str, _: Texts) -> str:
    """A prize's name in the member's language (its id if the prize left the configuration)."""
    prize = None if config.wheel is None else config.wheel.prize(game, prize_id)
    return prize_id if prize is None else prize.label.get(_.language)


def _price_line(table: GameTable, _: Texts) -> str:
    if table.cost == 0:
        return _("games.odds.price_zero", limit=table.daily_limit)
    if table.free_per_day:
        return _(
            "games.odds.price_free",
            cost=table.cost,
            free=table.free_per_day,
            limit=table.daily_limit,
        )
    return _("games.odds.price", cost=table.cost, limit=table.daily_limit)


def _odds_line(table: GameTable, prize: GamePrize, points: int, percent: str, _: Texts) -> str:
    label = prize.label.get(_.language)
    if table.game == "scratch" and (symbol := prize_symbol(table, prize)) is not None:
        label = _("games.odds.symbol", symbol=symbol, prize=label)
    if prize.kind == "points" and points != prize.points:
        return _("games.odds.line_boosted", prize=label, points=points, percent=percent)
    return _("games.odds.line", prize=label, percent=percent)


def render_odds(
    config: Config, table: GameTable, campaign: GameCampaign | None, _: Texts
) -> list[str]:
    """The disclosure of one game: price and limits, every prize's probability, the expected
    return against the cost, the budget rule and any campaign."""
    lang = _.language
    lines = [_price_line(table, _), _("games.odds.heading")]
    table_odds = odds(table, campaign)
    for entry in table_odds:
        lines.append(
            _odds_line(table, entry.prize, entry.points, percent_text(entry.probability), _)
        )
    expected = expected_points(table_odds)
    if table.cost:
        rate = percent_text(expected / table.cost)
        lines.append(
            _("games.odds.expected", expected=points_text(expected), cost=table.cost, rate=rate)
        )
    else:
        lines.append(_("games.odds.expected_free", expected=points_text(expected)))
    if any(p.kind == "voucher" for p in table.prizes):
        lines.append(_("games.odds.vouchers_excluded"))
    if campaign is not None:
        lines.append(
            _(
                "games.odds.campaign",
                campaign=campaign.name.get(lang),
                ends=campaign.ends.isoformat(),
                multiplier=format(campaign.multiplier.normalize(), "f"),
            )
        )
    if any(p.kind == "points" for p in table.prizes):
        lines.append(
            _(
                "games.odds.budget",
                budget=table.daily_budget,
                fallback=table.fallback.label.get(lang),
            )
        )
    if table.game == "scratch":
        lines.append(_("games.odds.scratch_rule", count=table.reveal_after))
    lines.append(_("games.odds.fair"))
    if table.game == "wheel":
        lines.append(_("games.odds.to_scale"))
    return lines


def render_all_odds(config: Config, now: datetime, _: Texts) -> str:
    """/odds: the disclosure of every game that is open."""
    campaign = active_campaign(local_today(now, config), config)
    blocks = []
    for game in GAMES:
        table = game_table(config, game)
        if table is not None:
            blocks.append("\n".join([_(TITLES[game]), *render_odds(config, table, campaign, _)]))
    return "\n\n".join(blocks) if blocks else _("games.closed")


def render_game_rules(config: Config, now: datetime, _: Texts) -> list[str]:
    """The games' part of /rules (with a blank line after it), or nothing without games."""
    campaign = active_campaign(local_today(now, config), config)
    lines = []
    for game in GAMES:
        table = game_table(config, game)
        if table is not None:
            lines += [_(TITLES[game]), *render_odds(config, table, campaign, _)]
    return [_("rules.games.heading"), *lines, ""] if lines else []


def _legend(table: GameTable, _: Texts) -> str:
    """The scratch card's winning symbols, e.g. '💎 100 积分、🍀 20 积分'."""
    entries = [
        f"{symbol} {p.label.get(_.language)}"
        for p in table.prizes
        if (symbol := prize_symbol(table, p)) is not None
    ]
    return _("list.separator").join(entries)


def _voucher_expiry(now: datetime, config: Config) -> datetime:
    """A voucher won today can be used through the local day `voucher_days` from today."""
    # Without a [wheel] section any more, a card bought before still pays a month's voucher.
    days = config.wheel.voucher_days if config.wheel is not None else 30
    return end_of_day(local_today(now, config) + timedelta(days=days), config)


def _play_rules(table: GameTable) -> PlayRules:
    return PlayRules(
        cost=table.cost,
        free_per_day=table.free_per_day,
        daily_limit=table.daily_limit,
        daily_budget=table.daily_budget,
    )


def _prize_lines(play: Play, config: Config, _: Texts) -> list[str]:
    """What a revealed play won, the budget fallback if it applied, and the campaign."""
    label = prize_label(config, play.game, play.prize_id, _)
    lines = []
    if play.prize_kind == "points":
        lot_expiry = expires_at(play.revealed_at or play.created_at, config)
        if lot_expiry is None:
            lines.append(_("games.won_points_never", points=play.prize_points))
        else:
            day = display_expiry(lot_expiry, config).isoformat()
            lines.append(_("games.won_points", points=play.prize_points, day=day))
        if play.campaign is not None and config.wheel is not None:
            campaign = next((c for c in config.wheel.campaigns if c.id == play.campaign), None)
            if campaign is not None:
                lines.append(
                    _(
                        "games.campaign_applied",
                        campaign=campaign.name.get(_.language),
                        multiplier=format(campaign.multiplier.normalize(), "f"),
                    )
                )
    elif play.prize_kind == "voucher" and play.voucher is not None:
        day = display_expiry(play.voucher.expires_at, config).isoformat()
        lines.append(_("games.won_voucher", prize=label, code=play.voucher.code, day=day))
        prize = None if config.wheel is None else config.wheel.prize(play.game, play.prize_id)
        if prize is not None and prize.terms is not None:
            lines.append(_("games.voucher_terms", terms=prize.terms.get(_.language)))
    else:
        lines.append(_("games.won_nothing"))
    if play.budget_fallback:
        drawn = prize_label(config, play.game, play.drawn_prize_id, _)
        lines.append(_("games.budget_fallback", drawn=drawn, prize=label))
    return lines


def _cost_line(play: Play, available: int, _: Texts) -> str:
    if play.cost:
        return _("games.after", cost=play.cost, points=available)
    return _("games.after_free", points=available)


# --- the next play ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NextPlay:
    """What the member can do next, and the day's plays and points behind it."""

    status: list[str]
    button: InlineKeyboardButton | None  # Spin / Buy; None when no play is possible
    played: int
    available: int


async def _next_play(
    context: BotContext, member_id: int, table: GameTable, now: datetime, _: Texts
) -> NextPlay:
    """The status, and an offer for the next play when one is possible."""
    services = context.services
    config = services.config
    day = local_today(now, config)
    usage = await services.games.day_usage(member_id, table.game, day)
    available = await services.ledger.available(member_id, now)
    lines = [_("games.status", played=usage.plays, limit=table.daily_limit, points=available)]
    if usage.plays >= table.daily_limit:
        lines.append(_("games.limit_reached", limit=table.daily_limit))
        return NextPlay(lines, None, usage.plays, available)
    free_left = max(0, table.free_per_day - usage.plays)
    cost = 0 if free_left else table.cost
    if free_left and table.cost:
        lines.append(_("games.free_left", free=free_left))
    if cost > available:
        lines.append(_("games.insufficient", cost=cost, available=available))
        return NextPlay(lines, None, usage.plays, available)
    offer = await services.games.create_offer(
        member_id,
        table.game,
        cost,
        local_day=day,
        ttl=timedelta(minutes=table.offer_minutes),
        now=now,
    )
    if table.game == "wheel":
        label = _("games.wheel.spin", cost=cost) if cost else _("games.wheel.spin_free")
        button = InlineKeyboardButton(label, callback_data=game_data("spin", offer.id))
    else:
        label = _("games.scratch.buy", cost=cost) if cost else _("games.scratch.buy_free")
        button = InlineKeyboardButton(label, callback_data=game_data("buy", offer.id))
    return NextPlay(lines, button, usage.plays, available)


async def _open_game(update: Update, context: BotContext, game: str) -> None:
    """/wheel or /scratch: the odds before the day's first play, the status and the button."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    _ = await texts_for(update, context)
    config = context.services.config
    table = game_table(config, game)
    member = await member_for(user, context)
    rows: list[list[InlineKeyboardButton]] = []
    lines = [_(TITLES[game])] if table is not None else [_("games.closed")]
    if game == "scratch":
        # Cards already paid for can always be finished, even after the game closed.
        cards = await context.services.games.unrevealed_cards(member.id, limit=OPEN_CARDS_SHOWN)
        if cards:
            lines.append(_("games.scratch.open_cards", count=len(cards)))
            rows += [
                [
                    InlineKeyboardButton(
                        _("games.scratch.continue", id=c.id), callback_data=game_data("card", c.id)
                    )
                ]
                for c in cards
            ]
    if table is None:
        keyboard = InlineKeyboardMarkup(rows) if rows else None
        await message.reply_text("\n".join(lines), reply_markup=keyboard)
        return
    now = context.services.clock()
    next_play = await _next_play(context, member.id, table, now, _)
    if next_play.played == 0:
        campaign = active_campaign(local_today(now, config), config)
        lines[1:1] = [*render_odds(config, table, campaign, _), ""]
    lines += next_play.status
    if next_play.button is not None:
        rows.insert(0, [next_play.button])
    if next_play.played:
        rows.append(
            [InlineKeyboardButton(_("games.odds_button"), callback_data=game_data("odds", game))]
        )
    keyboard = InlineKeyboardMarkup(rows) if rows else None
    await message.reply_text("\n".join(lines), reply_markup=keyboard)


async def wheel(update: Update, context: BotContext) -> None:
    """/wheel: the points wheel."""
    await _open_game(update, context, "wheel")


async def scratch(update: Update, context: BotContext) -> None:
    """/scratch: the points scratch card."""
    await _open_game(update, context, "scratch")


async def odds_command(update: Update, context: BotContext) -> None:
    """/odds: every game's odds and expected return, at any time."""
    message = update.effective_message
    if message is None:
        return
    _ = await texts_for(update, context)
    await message.reply_text(render_all_odds(context.services.config, context.services.clock(), _))


# --- playing ---------------------------------------------------------------------------------


async def _drop_keyboard(update: Update) -> None:
    """Take the used Spin / Buy button off its message, so it is not tapped again."""
    query = update.callback_query
    assert query is not None
    try:
        await query.edit_message_reply_markup(None)
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            raise


async def _play_offer(
    update: Update, context: BotContext, _: Texts, game: str, offer_id: int
) -> tuple[Play, GameTable] | None:
    """Draw and play an offer; answer the tap with the reason when it cannot be played."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    services = context.services
    config = services.config
    table = game_table(config, game)
    member = await services.members.by_telegram_id(user.id)
    if table is None or member is None:
        refusal = N_("games.closed") if table is None else N_("button.expired")
        await query.answer(_(refusal), show_alert=True)
        return None
    now = context.services.clock()
    day = local_today(now, config)
    campaign = active_campaign(day, config)
    rng = services.game_random
    prize = table.prizes[draw(table, rng)]
    fallback = table.fallback
    scratch_card = game == "scratch"
    try:
        played = await services.games.play(
            offer_id,
            member.id,
            game=game,
            local_day=day,
            rules=_play_rules(table),
            drawn=Outcome(
                prize.id,
                prize.kind,
                prize_points(prize, campaign),
                scratch_layout(table, prize, rng) if scratch_card else None,
            ),
            fallback=Outcome(
                fallback.id,
                fallback.kind,
                prize_points(fallback, campaign),
                scratch_layout(table, fallback, rng) if scratch_card else None,
            ),
            campaign=None if campaign is None else campaign.id,
            prize_expires_at=expires_at(now, config),
            voucher_expires_at=_voucher_expiry(now, config),
            actor=f"telegram:{user.id}",
            now=now,
        )
    except OfferExpired:
        await query.answer(_("button.expired"), show_alert=True)
        return None
    except PriceChanged:
        await query.answer(_("games.price_changed"), show_alert=True)
        return None
    except LimitReached as exc:
        await query.answer(_("games.limit_reached", limit=exc.limit), show_alert=True)
        return None
    except InsufficientPoints as exc:
        await query.answer(
            _("games.insufficient_short", short=exc.requested - exc.available), show_alert=True
        )
        return None
    if played.replayed:
        # A double tap or a redelivered update: the play exists once already.
        done = N_("games.already_played") if game == "wheel" else N_("games.already_bought")
        await query.answer(_(done))
        return None
    await query.answer()
    await _drop_keyboard(update)
    return played, table


async def _send_voucher_qr(
    context: BotContext, chat_id: int, voucher: PrizeVoucher | None, _: Texts
) -> None:
    if voucher is not None:
        await context.bot.send_photo(
            chat_id, qr_png(voucher.code), caption=_("games.voucher_caption", code=voucher.code)
        )


async def _spin(update: Update, context: BotContext, _: Texts, offer_id: int) -> None:
    """Spin was tapped: play the offer, show the wheel stopped on the prize."""
    query = update.callback_query
    assert query is not None and query.message is not None
    result = await _play_offer(update, context, _, "wheel", offer_id)
    if result is None:
        return
    played, table = result
    services = context.services
    config = services.config
    assert config.wheel is not None  # a table exists
    labels = [p.label.get(_.language) for p in table.prizes]
    drawn_index = table.index(played.drawn_prize_id)
    winner = drawn_index if drawn_index is not None else 0
    # Where in the slice the pointer rests is decoration; the slice is the draw.
    # A few stops per slice (0.15 .. 0.85 of the way through): the pictures repeat and are
    # cached, instead of drawing each spin afresh.
    stop = services.game_random.randbelow(STOPS_PER_SLICE)
    position = 0.15 + 0.7 * stop / (STOPS_PER_SLICE - 1)
    campaign = None
    if played.campaign is not None and played.prize_kind == "points":
        campaign = next((c for c in config.wheel.campaigns if c.id == played.campaign), None)
    badge = "" if campaign is None else f"×{format(campaign.multiplier.normalize(), 'f')}"
    picture: WheelPicture | None = None
    painter = painter_for(config.wheel.font)
    weights = [p.weight for p in table.prizes]
    try:
        picture = painter.cached(labels, weights, winner, position, badge)
        if picture is None:
            picture = await asyncio.to_thread(
                painter.render, labels, weights, winner, position, badge
            )
    except Exception:  # the prize is won already: a drawing failure must not hide it
        log.exception("could not draw the wheel for play %s", played.id)
    drawn_label = prize_label(config, "wheel", played.drawn_prize_id, _)
    if picture is not None and picture.numbered:
        lines = [_("games.wheel.landed_numbered", number=winner + 1, prize=drawn_label)]
    else:
        lines = [_("games.wheel.landed", prize=drawn_label)]
    lines += _prize_lines(played, config, _)
    now = context.services.clock()
    next_play = await _next_play(context, played.member_id, table, now, _)
    lines.append(_cost_line(played, next_play.available, _))
    lines += next_play.status[1:]  # the balance is in the cost line already
    if picture is not None and picture.numbered:
        legend = _("list.separator").join(
            _("games.wheel.slice", number=i + 1, prize=label) for i, label in enumerate(labels)
        )
        lines.append(_("games.wheel.legend", legend=legend))
    button = next_play.button
    keyboard = InlineKeyboardMarkup([[button]]) if button is not None else None
    chat_id = query.message.chat.id
    if picture is None:
        await context.bot.send_message(chat_id, "\n".join(lines), reply_markup=keyboard)
    else:
        await _send_wheel(context, chat_id, picture, "\n".join(lines), keyboard)
    await _send_voucher_qr(context, chat_id, played.voucher, _)


async def _send_wheel(
    context: BotContext,
    chat_id: int,
    picture: WheelPicture,
    caption: str,
    keyboard: InlineKeyboardMarkup | None,
) -> None:
    """Send a wheel picture: uploaded the first time, then by the file id Telegram gave it
    (a few dozen distinct pictures serve a festival's spins)."""
    uploaded = context.services.uploaded_photos
    file_id = uploaded.get(picture.key)
    if file_id is not None:
        try:
            await context.bot.send_photo(chat_id, file_id, caption=caption, reply_markup=keyboard)
            uploaded.move_to_end(picture.key)
            return
        except BadRequest:  # the file id is not (or no longer) valid: upload it again
            log.warning("wheel picture file id refused; uploading it again")
            uploaded.pop(picture.key, None)
    with read_back():
        sent = await context.bot.send_photo(
            chat_id, picture.png, caption=caption, reply_markup=keyboard
        )
    if picture.key and sent.photo:
        uploaded[picture.key] = sent.photo[-1].file_id
        while len(uploaded) > PICTURE_CACHE:
            uploaded.popitem(last=False)


def _card_view(
    card: Play, table: GameTable | None, config: Config, _: Texts, reveal_after: int
) -> tuple[list[str], list[list[InlineKeyboardButton]]]:
    """A scratch card as text and its 3×3 grid of cells (uncovered ones show their symbol)."""
    layout = card.layout or ("?",) * CELLS
    rows = [
        [
            InlineKeyboardButton(
                layout[cell] if card.is_scratched(cell) else UNSCRATCHED,
                callback_data=game_data("sc", card.id, cell),
            )
            for cell in range(row * 3, row * 3 + 3)
        ]
        for row in range(3)
    ]
    if not card.revealed:
        lines = [_("games.scratch.card", id=card.id, count=reveal_after)]
        if table is not None:
            lines.append(_("games.scratch.legend", legend=_legend(table, _)))
        lines.append(_("games.scratch.progress", done=card.scratch_count, count=reveal_after))
        rows.append(
            [
                InlineKeyboardButton(
                    _("games.scratch.all_button"), callback_data=game_data("all", card.id)
                )
            ]
        )
        return lines, rows
    lines = [_("games.scratch.revealed", id=card.id)]
    symbol = winning_symbol(layout)
    if symbol is not None:
        lines.append(
            _(
                "games.scratch.three",
                symbol=symbol,
                prize=prize_label(config, "scratch", card.prize_id, _),
            )
        )
    lines += _prize_lines(card, config, _)
    return lines, rows


async def _buy(update: Update, context: BotContext, _: Texts, offer_id: int) -> None:
    """Buy was tapped: the card's prize is fixed now; the member gets the card to scratch."""
    query = update.callback_query
    assert query is not None and query.message is not None
    result = await _play_offer(update, context, _, "scratch", offer_id)
    if result is None:
        return
    card, table = result
    available = await context.services.ledger.available(card.member_id)
    lines, rows = _card_view(card, table, context.services.config, _, table.reveal_after)
    lines.append(_cost_line(card, available, _))
    await context.bot.send_message(
        query.message.chat.id, "\n".join(lines), reply_markup=InlineKeyboardMarkup(rows)
    )


def _reveal_after(config: Config) -> int:
    """Cells to uncover before a card shows whole (kept if the card game was switched off)."""
    wheel = config.wheel
    card = wheel.scratch if wheel is not None and wheel.scratch is not None else ScratchConfig()
    return card.reveal_after


async def _scratch_cells(
    update: Update, context: BotContext, _: Texts, card_id: int, cells: tuple[int, ...]
) -> None:
    """A cell (or "scratch all") was tapped: the card must be this member's and not revealed."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    services = context.services
    config = services.config
    member = await services.members.by_telegram_id(user.id)
    if member is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    table = game_table(config, "scratch")
    reveal_after = _reveal_after(config)
    now = context.services.clock()
    try:
        card = await services.games.scratch(
            card_id,
            member.id,
            cells,
            reveal_after=reveal_after,
            prize_expires_at=expires_at(now, config),
            voucher_expires_at=_voucher_expiry(now, config),
            actor=f"telegram:{user.id}",
            now=now,
        )
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    except InvalidState:
        await query.answer(_("games.scratch.finished"), show_alert=True)
        return
    if card.replayed:
        await query.answer(_("games.scratch.cell_done"))
        return
    await query.answer()
    lines, rows = _card_view(card, table, config, _, reveal_after)
    if card.revealed:
        if table is None:
            available = await services.ledger.available(member.id, now)
            lines.append(_("games.balance", points=available))
        else:
            next_play = await _next_play(context, member.id, table, now, _)
            lines.append(_("games.balance", points=next_play.available))
            lines += next_play.status[1:]
            if next_play.button is not None:
                rows.append([next_play.button])
    await edit_in_place(update, "\n".join(lines), InlineKeyboardMarkup(rows))
    if card.revealed and query.message is not None:
        await _send_voucher_qr(context, query.message.chat.id, card.voucher, _)


async def _show_card(update: Update, context: BotContext, _: Texts, card_id: int) -> None:
    """ "Continue card No.x": show the member's own card where the list was."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    services = context.services
    member = await services.members.by_telegram_id(user.id)
    try:
        if member is None:
            raise NotFound("not a member")
        card = await services.games.card(card_id, member.id)
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    config = services.config
    lines, rows = _card_view(card, game_table(config, "scratch"), config, _, _reveal_after(config))
    await edit_in_place(update, "\n".join(lines), InlineKeyboardMarkup(rows))


async def game_callback(update: Update, context: BotContext) -> None:
    """Every game button: decode, re-check in the store, play or show."""
    query, user = update.callback_query, update.effective_user
    if query is None or user is None:
        return
    _ = await texts_for(update, context)
    decoded = decode_game(query.data or "")
    if decoded is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    action, numbers, game = decoded
    if action == "spin":
        await _spin(update, context, _, numbers[0])
    elif action == "buy":
        await _buy(update, context, _, numbers[0])
    elif action == "sc":
        await _scratch_cells(update, context, _, numbers[0], (numbers[1],))
    elif action == "all":
        await _scratch_cells(update, context, _, numbers[0], tuple(range(CELLS)))
    elif action == "card":
        await _show_card(update, context, _, numbers[0])
    else:  # odds
        await query.answer()
        if query.message is not None:
            await context.bot.send_message(
                query.message.chat.id,
                render_all_odds(context.services.config, context.services.clock(), _),
            )


# --- prize vouchers ----------------------------------------------------------------------------


def _voucher_status(voucher: PrizeVoucher, now: datetime, _: Texts) -> str:
    status = "expired" if voucher.status == "issued" and voucher.is_expired(now) else voucher.status
    return _(VOUCHER_STATUS.get(status, N_("games.voucher.issued")))


async def prizes(update: Update, context: BotContext) -> None:
    """/prizes: the member's voucher prizes with their codes, status and last valid day."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    config = context.services.config
    found, total = await context.services.games.vouchers(member.id, limit=PRIZES_SHOWN)
    if not found:
        await message.reply_text(_("games.prizes.empty"))
        return
    now = context.services.clock()
    lines = [_("games.prizes.title", total=total, shown=len(found))]
    for voucher in found:
        label = prize_label(config, voucher.game, voucher.prize_id, _)
        lines.append(
            _(
                "games.prizes.line",
                code=voucher.code,
                prize=label,
                status=_voucher_status(voucher, now, _),
                day=display_expiry(voucher.expires_at, config).isoformat(),
            )
        )
    await message.reply_text("\n".join(lines))


async def fulfil_prize(update: Update, context: BotContext) -> None:
    """`/fulfil_prize <code>`: staff accept a voucher prize at the till, once."""
    asked = await operator_texts(update, context)
    if asked is None:
        return
    message, _ = asked
    args = context.args or []
    if len(args) != 1 or len(args[0]) > 16:
        await message.reply_text(_("games.admin.usage"))
        return
    code = args[0].strip().upper()
    config = context.services.config
    user = update.effective_user
    assert user is not None
    try:
        voucher = await context.services.games.use_voucher(code, actor=f"telegram:{user.id}")
    except NotFound:
        await message.reply_text(_("games.admin.not_found", code=code))
        return
    except InvalidState as exc:
        current = await context.services.games.voucher_by_code(code)
        if exc.status == "expired":
            day = display_expiry(current.expires_at, config).isoformat()
            await message.reply_text(_("games.admin.expired", code=code, day=day))
        else:
            used = current.used_at or current.created_at
            when = used.astimezone(config.program.tz).strftime("%Y-%m-%d %H:%M")
            await message.reply_text(_("games.admin.used", code=code, when=when))
        return
    label = prize_label(config, voucher.game, voucher.prize_id, _)
    await message.reply_text(_("games.admin.done", code=voucher.code, prize=label))
