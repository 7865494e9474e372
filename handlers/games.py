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
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.config import Config, GameCampaign, GamePrize, Tier
from bot.i18n import N_
from bot.programme import games as programme
from bot.programme.calendar import display_expiry
from bot.programme.errors import RuleError
from bot.programme.game_rules import CELLS, GAMES, GameTable, prize_symbol, winning_symbol
from bot.programme.tier_benefits import extra_spin_tiers
from bot.programme.till import split_voucher_code, voucher_code
from bot.qr import qr_png
from bot.sending import read_back
from bot.wheel import PICTURE_CACHE, STOPS_PER_SLICE, WheelPicture, painter_for
from handlers.common import BotContext, Texts, edit_in_place, member_for, texts_for
from handlers.staff import staff_texts
from storage.errors import (
    InsufficientPoints,
    InvalidState,
    LimitReached,
    NotFound,
    OfferExpired,
    PriceChanged,
)
from storage.games import Play, PrizeVoucher

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


def percent_text(probability: Fraction) -> str:
    """A probability in percent, to two decimals without trailing zeros: 12.5, 0.05, <0.01."""
    value = probability * 100
    if 0 < value < Fraction(1, 100):
        return "<0.01"  # a prize that can be won never reads as 0%
    return _decimal_text(value)


def points_text(value: Fraction) -> str:
    """An average number of points to two decimals without trailing zeros: 17.5, 3.33."""
    return _decimal_text(value)


def _decimal_text(value: Fraction) -> str:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    rounded = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP).normalize()
    return format(rounded, "f")


def _multiplier_text(campaign: GameCampaign) -> str:
    return format(campaign.multiplier.normalize(), "f")


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


def render_odds(shown: programme.Disclosure, _: Texts) -> list[str]:
    """The disclosure of one game: price and limits, every prize's probability, the expected
    return against the cost, the budget rule and any campaign."""
    lang = _.language
    table, campaign, expected = shown.table, shown.campaign, shown.expected
    lines = [_price_line(table, _), _("games.odds.heading")]
    for entry in shown.odds:
        lines.append(
            _odds_line(table, entry.prize, entry.points, percent_text(entry.probability), _)
        )
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
                multiplier=_multiplier_text(campaign),
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
    blocks = [
        "\n".join([_(TITLES[shown.table.game]), *render_odds(shown, _)])
        for shown in programme.disclosures(config, now)
    ]
    return "\n\n".join(blocks) if blocks else _("games.closed")


def tier_lines(tiers: list[tuple[Tier, int]], key: str, _: Texts, **params: object) -> list[str]:
    """One /rules line naming each tier's own figure for a benefit (nothing without any)."""
    if not tiers:
        return []
    each = _("list.separator").join(
        _("benefits.rules.tier_figure", emoji=t.emoji, tier=t.name.get(_.language), figure=n)
        for t, n in tiers
    )
    return [_(key, tiers=each, **params)]


def render_game_rules(config: Config, now: datetime, _: Texts) -> list[str]:
    """The games' part of /rules (with a blank line after it), or nothing without games."""
    lines = []
    for shown in programme.disclosures(config, now):
        lines += [_(TITLES[shown.table.game]), *render_odds(shown, _)]
        if shown.table.game == "wheel":
            lines += tier_lines(extra_spin_tiers(config), "benefits.rules.extra_spins", _)
    return [_("rules.games.heading"), *lines, ""] if lines else []


def _legend(table: GameTable, _: Texts) -> str:
    """The scratch card's winning symbols, e.g. '💎 100 积分、🍀 20 积分'."""
    entries = [
        f"{symbol} {p.label.get(_.language)}"
        for p in table.prizes
        if (symbol := prize_symbol(table, p)) is not None
    ]
    return _("list.separator").join(entries)


def _prize_lines(play: Play, campaign: GameCampaign | None, config: Config, _: Texts) -> list[str]:
    """What a revealed play won, the budget fallback if it applied, and the campaign."""
    label = prize_label(config, play.game, play.prize_id, _)
    lines = []
    if play.prize_kind == "points":
        lot_expiry = programme.prize_expiry(play, config)
        if lot_expiry is None:
            lines.append(_("games.won_points_never", points=play.prize_points))
        else:
            day = display_expiry(lot_expiry, config).isoformat()
            lines.append(_("games.won_points", points=play.prize_points, day=day))
        if campaign is not None:
            lines.append(
                _(
                    "games.campaign_applied",
                    campaign=campaign.name.get(_.language),
                    multiplier=_multiplier_text(campaign),
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


def _status_lines(coming: programme.NextPlay, _: Texts) -> list[str]:
    """The day's plays and the balance, then why no play is offered or the free plays left."""
    lines = [_("games.status", played=coming.played, limit=coming.limit, points=coming.available)]
    if coming.refused == "limit":
        lines.append(_("games.limit_reached", limit=coming.limit))
        return lines
    if coming.extra_free and coming.price and coming.tier is not None:
        # The tier's extra spins are named, so the member sees where their free plays come from.
        lines.append(
            _(
                "benefits.wheel.free_left",
                free=coming.free_left,
                emoji=coming.tier.emoji,
                tier=coming.tier.name,
                total=coming.free_per_day,
                extra=coming.extra_free,
            )
        )
    elif coming.free_left and coming.price:
        lines.append(_("games.free_left", free=coming.free_left))
    if coming.refused == "points":
        lines.append(_("games.insufficient", cost=coming.cost, available=coming.available))
    return lines


def _play_button(coming: programme.NextPlay, _: Texts) -> InlineKeyboardButton | None:
    """The Spin / Buy button for the offer, or None when no play is offered."""
    if coming.offer_id is None:
        return None
    cost = coming.cost
    if coming.game == "wheel":
        label = _("games.wheel.spin", cost=cost) if cost else _("games.wheel.spin_free")
        return InlineKeyboardButton(label, callback_data=game_data("spin", coming.offer_id))
    label = _("games.scratch.buy", cost=cost) if cost else _("games.scratch.buy_free")
    return InlineKeyboardButton(label, callback_data=game_data("buy", coming.offer_id))


async def _open_game(update: Update, context: BotContext, game: str) -> None:
    """/wheel or /scratch: the odds before the day's first play, the status and the button."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    home = await programme.open_game(context.services, member.id, game, cards=OPEN_CARDS_SHOWN)
    coming = home.next_play
    rows: list[list[InlineKeyboardButton]] = []
    lines = [_(TITLES[game])] if coming is not None else [_("games.closed")]
    if home.open_cards:
        lines.append(_("games.scratch.open_cards", count=len(home.open_cards)))
        rows += [
            [
                InlineKeyboardButton(
                    _("games.scratch.continue", id=c.id), callback_data=game_data("card", c.id)
                )
            ]
            for c in home.open_cards
        ]
    if coming is not None:
        if home.disclosure is not None:
            lines[1:1] = [*render_odds(home.disclosure, _), ""]
        lines += _status_lines(coming, _)
        if (button := _play_button(coming, _)) is not None:
            rows.insert(0, [button])
        if coming.played:
            rows.append(
                [
                    InlineKeyboardButton(
                        _("games.odds_button"), callback_data=game_data("odds", game)
                    )
                ]
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
) -> programme.PlayResult | None:
    """Spin or buy on an offer; answer the tap with the reason when it cannot be played."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    services = context.services
    member = await services.members.by_telegram_id(user.id)
    if member is None:
        await query.answer(_("button.expired"), show_alert=True)
        return None
    play = programme.spin if game == "wheel" else programme.buy_card
    try:
        result = await play(services, offer_id, member.id, f"telegram:{user.id}")
    except RuleError as exc:
        await query.answer(_(exc.key, **exc.params), show_alert=True)
        return None
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
    if result.play.replayed:
        # A double tap or a redelivered update: the play exists once already.
        done = N_("games.already_played") if game == "wheel" else N_("games.already_bought")
        await query.answer(_(done))
        return None
    await query.answer()
    await _drop_keyboard(update)
    return result


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
    played, table, campaign = result.play, result.table, result.campaign
    services = context.services
    config = services.config
    labels = [p.label.get(_.language) for p in table.prizes]
    drawn_index = table.index(played.drawn_prize_id)
    winner = drawn_index if drawn_index is not None else 0
    # Where in the slice the pointer rests is decoration; the slice is the draw.
    # A few stops per slice (0.15 .. 0.85 of the way through): the pictures repeat and are
    # cached, instead of drawing each spin afresh.
    stop = services.game_random.randbelow(STOPS_PER_SLICE)
    position = 0.15 + 0.7 * stop / (STOPS_PER_SLICE - 1)
    badge = "" if campaign is None else f"×{_multiplier_text(campaign)}"
    picture: WheelPicture | None = None
    painter = painter_for(config.wheel.font if config.wheel is not None else "")
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
    lines += _prize_lines(played, campaign, config, _)
    lines.append(_cost_line(played, result.available, _))
    button = None
    if result.next_play is not None:
        lines += _status_lines(result.next_play, _)[1:]  # the balance is in the cost line
        button = _play_button(result.next_play, _)
    if picture is not None and picture.numbered:
        legend = _("list.separator").join(
            _("games.wheel.slice", number=i + 1, prize=label) for i, label in enumerate(labels)
        )
        lines.append(_("games.wheel.legend", legend=legend))
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
    view: programme.CardView, config: Config, _: Texts
) -> tuple[list[str], list[list[InlineKeyboardButton]]]:
    """A scratch card as text and its 3×3 grid of cells (uncovered ones show their symbol)."""
    card, reveal_after = view.card, view.reveal_after
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
        if view.table is not None:
            lines.append(_("games.scratch.legend", legend=_legend(view.table, _)))
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
    lines += _prize_lines(card, view.campaign, config, _)
    coming = view.next_play
    if coming is not None:  # revealed just now: the balance and the next card
        lines.append(_("games.balance", points=coming.available))
        if coming.refused != "closed":
            lines += _status_lines(coming, _)[1:]
            if (button := _play_button(coming, _)) is not None:
                rows.append([button])
    return lines, rows


async def _buy(update: Update, context: BotContext, _: Texts, offer_id: int) -> None:
    """Buy was tapped: the card's prize is fixed now; the member gets the card to scratch."""
    query = update.callback_query
    assert query is not None and query.message is not None
    result = await _play_offer(update, context, _, "scratch", offer_id)
    if result is None:
        return
    card, table = result.play, result.table
    view = programme.CardView(card, table, table.reveal_after, result.campaign, None)
    lines, rows = _card_view(view, context.services.config, _)
    lines.append(_cost_line(card, result.available, _))
    await context.bot.send_message(
        query.message.chat.id, "\n".join(lines), reply_markup=InlineKeyboardMarkup(rows)
    )


async def _scratch_cells(
    update: Update, context: BotContext, _: Texts, card_id: int, cells: tuple[int, ...]
) -> None:
    """A cell (or "scratch all") was tapped: the card must be this member's and not revealed."""
    query, user = update.callback_query, update.effective_user
    assert query is not None and user is not None
    services = context.services
    member = await services.members.by_telegram_id(user.id)
    if member is None:
        await query.answer(_("button.expired"), show_alert=True)
        return
    try:
        view = await programme.scratch_cells(
            services, card_id, member.id, cells, f"telegram:{user.id}"
        )
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    except InvalidState:
        await query.answer(_("games.scratch.finished"), show_alert=True)
        return
    card = view.card
    if card.replayed:
        await query.answer(_("games.scratch.cell_done"))
        return
    await query.answer()
    lines, rows = _card_view(view, services.config, _)
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
        view = await programme.show_card(services, card_id, member.id)
    except NotFound:
        await query.answer(_("button.expired"), show_alert=True)
        return
    await query.answer()
    lines, rows = _card_view(view, services.config, _)
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


async def prizes(update: Update, context: BotContext) -> None:
    """/prizes: the member's voucher prizes with their codes, status and last valid day."""
    user, message = update.effective_user, update.effective_message
    if user is None or message is None:
        return
    _ = await texts_for(update, context)
    member = await member_for(user, context)
    config = context.services.config
    held, total = await programme.member_vouchers(context.services, member.id, limit=PRIZES_SHOWN)
    if not held:
        await message.reply_text(_("games.prizes.empty"))
        return
    lines = [_("games.prizes.title", total=total, shown=len(held))]
    for entry in held:
        voucher = entry.voucher
        lines.append(
            _(
                "games.prizes.line",
                code=voucher.code,
                prize=prize_label(config, voucher.game, voucher.prize_id, _),
                status=_(VOUCHER_STATUS.get(entry.status, N_("games.voucher.issued"))),
                day=display_expiry(voucher.expires_at, config).isoformat(),
            )
        )
    await message.reply_text("\n".join(lines))


async def fulfil_prize(update: Update, context: BotContext) -> None:
    """`/fulfil_prize <code>`: staff accept a voucher prize at the till, once."""
    asked = await staff_texts(update, context, "/fulfil_prize")
    if asked is None:
        return
    message, _ = asked
    typed, after = split_voucher_code(context.args or [])
    code = voucher_code(typed)
    if not code or after or len(code) > 16:
        await message.reply_text(_("games.admin.usage"))
        return
    config = context.services.config
    user = update.effective_user
    assert user is not None
    try:
        fulfilment = await programme.fulfil_voucher(
            context.services, code, actor=f"telegram:{user.id}"
        )
    except NotFound:
        await message.reply_text(_("games.admin.not_found", code=code))
        return
    voucher = fulfilment.voucher
    if fulfilment.refused == "expired":
        day = display_expiry(voucher.expires_at, config).isoformat()
        await message.reply_text(_("games.admin.expired", code=code, day=day))
    elif fulfilment.refused is not None:
        used = voucher.used_at or voucher.created_at
        when = used.astimezone(config.program.tz).strftime("%Y-%m-%d %H:%M")
        await message.reply_text(_("games.admin.used", code=code, when=when))
    else:
        label = prize_label(config, voucher.game, voucher.prize_id, _)
        await message.reply_text(_("games.admin.done", code=voucher.code, prize=label))
