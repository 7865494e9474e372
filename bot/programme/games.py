"""The points games as members play them: the next play and its offer, a spin, a card bought
and scratched, the odds disclosed, and the voucher prizes won.

Every decision is taken here on the programme's clock: the local day, free plays and the
price, the draw and the campaign, the prize's and the voucher's expiry. The store re-checks
the day's limit, the price and the budget inside the playing transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Literal

from bot.config import Config, GameCampaign, Tier
from bot.i18n import N_
from bot.programme.calendar import end_of_day, local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.game_rules import (
    GAMES,
    GameTable,
    PrizeOdds,
    active_campaign,
    draw,
    expected_points,
    game_table,
    odds,
    prize_points,
    reveal_after,
    scratch_layout,
)
from bot.programme.tier_benefits import free_plays, member_play_rules
from bot.programme.tiers import member_tier
from storage.errors import InvalidState
from storage.games import Outcome, Play, PlayRules, PrizeVoucher

# Why no play is offered: the game is switched off, the day's plays are used up, or the
# member has fewer points than the play costs.
NoPlayReason = Literal["closed", "limit", "points"]
# Without a [wheel] section any more, a card bought before still pays a month's voucher.
DEFAULT_VOUCHER_DAYS = 30


# --- the odds ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One game's odds as members are shown them, computed from the table the draw uses."""

    table: GameTable
    campaign: GameCampaign | None
    odds: tuple[PrizeOdds, ...]
    # The points a play pays back on average (voucher prizes count as none).
    expected: Fraction


def disclosure(table: GameTable, campaign: GameCampaign | None) -> Disclosure:
    """Every prize's exact probability and the expected return of `table` under `campaign`."""
    table_odds = odds(table, campaign)
    return Disclosure(table, campaign, table_odds, expected_points(table_odds))


def disclosures(config: Config, now: datetime) -> tuple[Disclosure, ...]:
    """The disclosure of every open game under the campaign running on `now`'s local day."""
    campaign = active_campaign(local_today(now, config), config)
    tables = (game_table(config, game) for game in GAMES)
    return tuple(disclosure(table, campaign) for table in tables if table is not None)


# --- the next play -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NextPlay:
    """A member's next play of a game today: the day's plays, the price, and the offer behind
    the Spin / Buy button (or why there is none)."""

    game: str
    played: int
    limit: int
    # The game's price per play; the next play costs `cost` (0 while free plays are left).
    price: int
    free_left: int
    cost: int
    available: int
    offer_id: int | None
    refused: NoPlayReason | None
    # Free plays a day for this member, those their tier adds (0: none), and that tier.
    free_per_day: int = 0
    extra_free: int = 0
    tier: Tier | None = None


async def _next_play(
    programme: Programme, member_id: int, game: str, table: GameTable | None, now: datetime
) -> NextPlay:
    """The next play of `table`'s game at `now`, creating its offer when one is possible."""
    available = await programme.ledger.available(member_id, now)
    if table is None:
        return NextPlay(game, 0, 0, 0, 0, 0, available, offer_id=None, refused="closed")
    day = local_today(now, programme.config)
    usage = await programme.games.day_usage(member_id, table.game, day)
    # The quote's free plays; the playing transaction re-reads the tier (member_play_rules).
    tier = await member_tier(programme, member_id)
    free_per_day = free_plays(table.game, table.free_per_day, table.daily_limit, tier)
    free_left = max(0, free_per_day - usage.plays)
    cost = 0 if free_left else table.cost
    refused: NoPlayReason | None = None
    if usage.plays >= table.daily_limit:
        refused = "limit"
    elif cost > available:
        refused = "points"
    offer_id = None
    if refused is None:
        offer = await programme.games.create_offer(
            member_id,
            table.game,
            cost,
            local_day=day,
            ttl=timedelta(minutes=table.offer_minutes),
            now=now,
        )
        offer_id = offer.id
    return NextPlay(
        game=game,
        played=usage.plays,
        limit=table.daily_limit,
        price=table.cost,
        free_left=free_left,
        cost=cost,
        available=available,
        offer_id=offer_id,
        refused=refused,
        free_per_day=free_per_day,
        extra_free=free_per_day - table.free_per_day,
        tier=tier,
    )


async def next_play(programme: Programme, member_id: int, game: str) -> NextPlay:
    """The member's next play of `game` now, with an offer for its button when possible."""
    now = programme.now()
    return await _next_play(programme, member_id, game, game_table(programme.config, game), now)


@dataclass(frozen=True, slots=True)
class GameHome:
    """What /wheel or /scratch shows a member: cards still to scratch, the odds before the
    day's first play, and the next play (None while the game is switched off)."""

    game: str
    open_cards: list[Play]
    disclosure: Disclosure | None
    next_play: NextPlay | None


async def open_game(programme: Programme, member_id: int, game: str, *, cards: int) -> GameHome:
    """A member opens `game`: up to `cards` unfinished scratch cards, and the next play."""
    config = programme.config
    # Cards already paid for can always be finished, even after the game closed.
    open_cards = (
        await programme.games.unrevealed_cards(member_id, limit=cards) if game == "scratch" else []
    )
    table = game_table(config, game)
    if table is None:
        return GameHome(game, open_cards, None, None)
    now = programme.now()
    coming = await _next_play(programme, member_id, game, table, now)
    shown = None
    if coming.played == 0:  # the odds come before the day's first play
        shown = disclosure(table, active_campaign(local_today(now, config), config))
    return GameHome(game, open_cards, shown, coming)


# --- playing -----------------------------------------------------------------------------------


def voucher_expiry(now: datetime, config: Config) -> datetime:
    """A voucher won at `now` can be used through the local day `voucher_days` from then."""
    days = config.wheel.voucher_days if config.wheel is not None else DEFAULT_VOUCHER_DAYS
    return end_of_day(local_today(now, config) + timedelta(days=days), config)


def prize_expiry(play: Play, config: Config) -> datetime | None:
    """When the points a play paid expire (None: never): the policy of the day it paid."""
    return expires_at(play.revealed_at or play.created_at, config, "game")


def paid_campaign(config: Config, play: Play) -> GameCampaign | None:
    """The game campaign a points prize was multiplied by (None if none, or it left the
    configuration)."""
    if play.campaign is None or play.prize_kind != "points" or config.wheel is None:
        return None
    return next((c for c in config.wheel.campaigns if c.id == play.campaign), None)


@dataclass(frozen=True, slots=True)
class PlayResult:
    """A play as the store recorded it (maybe `replayed`), the table it was drawn from, and
    what the member has and can do next."""

    play: Play
    table: GameTable
    campaign: GameCampaign | None
    available: int
    # After a spin: the next Spin offer (None on a replay, and after buying a card).
    next_play: NextPlay | None


async def _play_offer(
    programme: Programme, offer_id: int, member_id: int, game: str, actor: str, now: datetime
) -> tuple[Play, GameTable]:
    """Draw the prize and play the offer; raises RuleError (game closed) and the store's
    OfferExpired, PriceChanged, LimitReached, InsufficientPoints."""
    config = programme.config
    table = game_table(config, game)
    if table is None:
        raise RuleError(N_("games.closed"))
    day = local_today(now, config)
    campaign = active_campaign(day, config)
    rng = programme.game_random
    prize = table.prizes[draw(table, rng)]
    fallback = table.fallback
    # A card's symbols are laid out now, for the prize drawn and for the budget's fallback.
    card = game == "scratch"
    played = await programme.games.play(
        offer_id,
        member_id,
        game=game,
        local_day=day,
        rules=PlayRules(
            cost=table.cost,
            free_per_day=table.free_per_day,
            daily_limit=table.daily_limit,
            daily_budget=table.daily_budget,
        ),
        drawn=Outcome(
            prize.id,
            prize.kind,
            prize_points(prize, campaign),
            scratch_layout(table, prize, rng) if card else None,
        ),
        fallback=Outcome(
            fallback.id,
            fallback.kind,
            prize_points(fallback, campaign),
            scratch_layout(table, fallback, rng) if card else None,
        ),
        campaign=None if campaign is None else campaign.id,
        prize_expires_at=expires_at(now, config, "game"),
        voucher_expires_at=voucher_expiry(now, config),
        actor=actor,
        now=now,
        member_rules=member_play_rules(game, member_id, config),
    )
    return played, table


async def spin(programme: Programme, offer_id: int, member_id: int, actor: str) -> PlayResult:
    """Spin the wheel on an offer, once, and offer the next spin; raises RuleError (closed),
    OfferExpired, PriceChanged, LimitReached, InsufficientPoints."""
    now = programme.now()
    played, table = await _play_offer(programme, offer_id, member_id, "wheel", actor, now)
    campaign = paid_campaign(programme.config, played)
    if played.replayed:
        available = await programme.ledger.available(member_id, now)
        return PlayResult(played, table, campaign, available, None)
    coming = await _next_play(programme, member_id, "wheel", table, now)
    return PlayResult(played, table, campaign, coming.available, coming)


async def buy_card(programme: Programme, offer_id: int, member_id: int, actor: str) -> PlayResult:
    """Buy a scratch card on an offer, once (its prize is fixed now); raises RuleError
    (closed), OfferExpired, PriceChanged, LimitReached, InsufficientPoints."""
    now = programme.now()
    played, table = await _play_offer(programme, offer_id, member_id, "scratch", actor, now)
    available = await programme.ledger.available(member_id, now)
    return PlayResult(played, table, paid_campaign(programme.config, played), available, None)


# --- the scratch card --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardView:
    """A member's scratch card with the rules it is shown by and, once revealed, the next
    play (its balance, and the next Buy offer while the game is open)."""

    card: Play
    # None once the card game is switched off: a card bought before is still finished.
    table: GameTable | None
    reveal_after: int
    campaign: GameCampaign | None
    next_play: NextPlay | None


async def scratch_cells(
    programme: Programme, card_id: int, member_id: int, cells: tuple[int, ...], actor: str
) -> CardView:
    """Uncover cells of the member's own card, revealing and paying it once; raises NotFound,
    InvalidState (revealed already)."""
    config = programme.config
    now = programme.now()
    cells_to_reveal = reveal_after(config)
    card = await programme.games.scratch(
        card_id,
        member_id,
        cells,
        reveal_after=cells_to_reveal,
        prize_expires_at=expires_at(now, config, "game"),
        voucher_expires_at=voucher_expiry(now, config),
        actor=actor,
        now=now,
    )
    table = game_table(config, "scratch")
    coming = None
    if card.revealed and not card.replayed:
        coming = await _next_play(programme, member_id, "scratch", table, now)
    return CardView(card, table, cells_to_reveal, paid_campaign(config, card), coming)


async def show_card(programme: Programme, card_id: int, member_id: int) -> CardView:
    """One of the member's scratch cards as it stands; raises NotFound."""
    config = programme.config
    card = await programme.games.card(card_id, member_id)
    table = game_table(config, "scratch")
    return CardView(card, table, reveal_after(config), paid_campaign(config, card), None)


# --- voucher prizes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldVoucher:
    """A voucher prize and where it stands now: 'issued', 'used' or 'expired'."""

    voucher: PrizeVoucher
    status: str


async def member_vouchers(
    programme: Programme, member_id: int, *, limit: int
) -> tuple[list[HeldVoucher], int]:
    """The member's newest `limit` voucher prizes as they stand now, and how many in all."""
    found, total = await programme.games.vouchers(member_id, limit=limit)
    now = programme.now()
    held = [
        # An issued voucher past its last day is expired, before any job marks it so.
        HeldVoucher(v, "expired" if v.status == "issued" and v.is_expired(now) else v.status)
        for v in found
    ]
    return held, total


@dataclass(frozen=True, slots=True)
class Fulfilment:
    """A voucher presented at the till: accepted now, or refused because it is 'used' or
    'expired' (then `voucher` is as it stands)."""

    voucher: PrizeVoucher
    refused: str | None


async def fulfil_voucher(programme: Programme, code: str, actor: str) -> Fulfilment:
    """Staff accept a voucher prize at the till, once; raises NotFound."""
    try:
        voucher = await programme.games.use_voucher(code, actor=actor, now=programme.now())
    except InvalidState as exc:
        return Fulfilment(await programme.games.voucher_by_code(code), exc.status)
    return Fulfilment(voucher, None)
