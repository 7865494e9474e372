"""The points games' rules: each game's table, the odds and expected value members are shown,
the draw (a CSPRNG) and scratch-card layouts.

The odds disclosed (/odds, /rules, before the day's first play) and the draw read the same
`GameTable`, so what members are told is what they are drawn with.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Final, Protocol

from bot.config import Config, GameCampaign, GamePrize, ScratchConfig

GAMES: Final = ("wheel", "scratch")
CELLS: Final = 9
# Symbols of a scratch card: prizes take them in table order, the rest are decoys.
SYMBOLS: Final = (
    "💎", "🍀", "⭐", "🔔", "🍒", "🌱", "🍋", "🎈", "🍉", "🎀", "🌻", "🍄",
    "🐼", "🍓", "🌈", "🦋", "🍇", "🔥",
)  # fmt: skip


class RandomSource(Protocol):
    """Where a draw's randomness comes from (the CSPRNG; tests inject a seeded one)."""

    def randbelow(self, n: int, /) -> int:
        """A uniformly random integer in [0, n)."""
        ...


class SystemRandomSource:
    """The operating system's CSPRNG through `secrets`: what members' prizes are drawn with."""

    def randbelow(self, n: int, /) -> int:
        """A uniformly random integer in [0, n)."""
        return secrets.randbelow(n)


# --- the rules -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GameTable:
    """One game's rules as the configuration says: price, limits, prizes and fallback."""

    game: str
    cost: int
    free_per_day: int
    daily_limit: int
    daily_budget: int
    offer_minutes: int
    prizes: tuple[GamePrize, ...]
    fallback: GamePrize
    # Cells uncovered before a scratch card shows whole (0 for the wheel).
    reveal_after: int = 0

    def index(self, prize_id: str) -> int | None:
        """The position of a prize in the table, or None."""
        return next((i for i, p in enumerate(self.prizes) if p.id == prize_id), None)


def game_table(config: Config, game: str) -> GameTable | None:
    """The rules of `game` ('wheel' or 'scratch'), or None when it is switched off."""
    wheel = config.wheel
    if wheel is None or game not in GAMES:
        return None
    prizes, fallback_id = wheel.prize_table(game)
    fallback = next(p for p in prizes if p.id == fallback_id)  # validated by the config
    if game == "wheel":
        if not wheel.enabled:
            return None
        return GameTable(
            game="wheel",
            cost=wheel.cost,
            free_per_day=wheel.free_spins_per_day,
            daily_limit=wheel.daily_limit,
            daily_budget=wheel.daily_budget,
            offer_minutes=wheel.offer_minutes,
            prizes=tuple(prizes),
            fallback=fallback,
        )
    card = wheel.scratch
    if card is None or not card.enabled:
        return None
    return GameTable(
        game="scratch",
        cost=card.cost,
        free_per_day=card.free_cards_per_day,
        daily_limit=card.daily_limit,
        daily_budget=wheel.daily_budget,
        offer_minutes=wheel.offer_minutes,
        prizes=tuple(prizes),
        fallback=fallback,
        reveal_after=card.reveal_after,
    )


def active_campaign(day: date, config: Config) -> GameCampaign | None:
    """The game campaign running on local `day` (the highest multiplier), or None."""
    return None if config.wheel is None else config.wheel.campaign_on(day)


def prize_points(prize: GamePrize, campaign: GameCampaign | None) -> int:
    """Points a prize pays, the campaign multiplier applied and rounded down (never below the
    plain prize)."""
    if prize.kind != "points" or campaign is None:
        return prize.points
    boosted = (Decimal(prize.points) * campaign.multiplier).to_integral_value(ROUND_FLOOR)
    return max(prize.points, int(boosted))


@dataclass(frozen=True, slots=True)
class PrizeOdds:
    """A prize, the points it pays today, and its exact probability."""

    prize: GamePrize
    points: int
    probability: Fraction


def odds(table: GameTable, campaign: GameCampaign | None) -> tuple[PrizeOdds, ...]:
    """Every prize with its exact probability (weight / total weight)."""
    total = sum(p.weight for p in table.prizes)
    return tuple(
        PrizeOdds(p, prize_points(p, campaign), Fraction(p.weight, total)) for p in table.prizes
    )


def expected_points(table_odds: Sequence[PrizeOdds]) -> Fraction:
    """The points a play pays back on average (voucher prizes count as none)."""
    return sum((o.probability * o.points for o in table_odds), Fraction(0))


def draw(table: GameTable, rng: RandomSource) -> int:
    """Draw a prize with probability weight / total; its index in the table."""
    total = sum(p.weight for p in table.prizes)
    ticket = rng.randbelow(total)
    for index, prize in enumerate(table.prizes):
        if ticket < prize.weight:
            return index
        ticket -= prize.weight
    raise AssertionError("a ticket below the total weight always lands on a prize")


# --- the scratch card ------------------------------------------------------------------------


def prize_symbol(table: GameTable, prize: GamePrize) -> str | None:
    """The symbol three of which win `prize` on a card; None for a 'nothing' prize."""
    winners = [p for p in table.prizes if p.kind != "nothing"]
    return SYMBOLS[winners.index(prize)] if prize in winners else None


def _shuffle(items: list[str], rng: RandomSource) -> None:
    """Fisher-Yates with the draw's own random source."""
    for i in range(len(items) - 1, 0, -1):
        j = rng.randbelow(i + 1)
        items[i], items[j] = items[j], items[i]


def scratch_layout(table: GameTable, prize: GamePrize, rng: RandomSource) -> tuple[str, ...]:
    """Nine symbols for a card that wins `prize`: three of its symbol and no other three of a
    kind (a 'nothing' card has no three of a kind at all)."""
    winning = prize_symbol(table, prize)
    cells = [winning] * 3 if winning is not None else []
    # Every other symbol at most twice, so no second (or accidental) line of three.
    pool = [s for s in SYMBOLS if s != winning for _ in range(2)]
    _shuffle(pool, rng)
    cells += pool[: CELLS - len(cells)]
    _shuffle(cells, rng)
    return tuple(cells)


def winning_symbol(layout: Sequence[str]) -> str | None:
    """The symbol shown three times on a card, or None."""
    return next((s for s in layout if layout.count(s) >= 3), None)


def reveal_after(config: Config) -> int:
    """Cells to uncover before a card shows whole (kept if the card game was switched off)."""
    wheel = config.wheel
    card = wheel.scratch if wheel is not None and wheel.scratch is not None else ScratchConfig()
    return card.reveal_after
