"""The games' rules: fair draws, exact odds and expected value, card layouts, the picture, and
configuration mistakes that name their key."""

from __future__ import annotations

import dataclasses
import io
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import ConfigError, GameCampaign, load_config, parse_config
from bot.programme.game_rules import (
    SYMBOLS,
    GameTable,
    SystemRandomSource,
    active_campaign,
    draw,
    expected_points,
    game_table,
    odds,
    prize_points,
    prize_symbol,
    scratch_layout,
    winning_symbol,
)
from bot.wheel import CENTER, RADIUS, SIZE, WheelPainter, slice_colour
from handlers.common import Services
from handlers.games import percent_text, points_text
from tests.games_support import SeededRandom

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config.example.toml"
DRAWS = 100_000
# Upper 0.1% points of the chi-square distribution, by degrees of freedom (scipy-free).
CHI_SQUARE_P001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515}


def table(game: str = "wheel") -> GameTable:
    found = game_table(load_config(SAMPLE), game)
    assert found is not None
    return found


def chi_square(observed: Counter[int], weights: list[int], draws: int) -> float:
    total = sum(weights)
    return sum(
        (observed[i] - draws * w / total) ** 2 / (draws * w / total) for i, w in enumerate(weights)
    )


# --- the draw --------------------------------------------------------------------------------


@pytest.mark.parametrize("game", ["wheel", "scratch"])
def test_draws_match_the_configured_weights(game: str) -> None:
    rules = table(game)
    weights = [p.weight for p in rules.prizes]
    rng = SeededRandom(20_240_601)
    observed = Counter(draw(rules, rng) for _ in range(DRAWS))
    statistic = chi_square(observed, weights, DRAWS)
    assert statistic < CHI_SQUARE_P001[len(weights) - 1], (statistic, observed)
    # Every prize, even a 2% one, comes up about as often as disclosed.
    for i, weight in enumerate(weights):
        share = observed[i] / DRAWS
        assert abs(share - weight / sum(weights)) < 0.01


def test_a_rare_prize_is_as_rare_as_disclosed() -> None:
    rules = table()
    rare = rules.prizes[0].model_copy(update={"weight": 1})
    common = rules.prizes[-1].model_copy(update={"weight": 999})
    skewed = dataclasses.replace(rules, prizes=(rare, common))
    rng = SeededRandom(3)
    observed = Counter(draw(skewed, rng) for _ in range(DRAWS))
    assert chi_square(observed, [1, 999], DRAWS) < CHI_SQUARE_P001[1]
    assert 50 <= observed[0] <= 160  # 100 expected


class Tickets:
    """A random source that returns the tickets it is given."""

    def __init__(self, *tickets: int) -> None:
        self.tickets = list(tickets)
        self.bounds: list[int] = []

    def randbelow(self, n: int, /) -> int:
        self.bounds.append(n)
        return self.tickets.pop(0)


def test_each_ticket_lands_on_exactly_one_prize() -> None:
    rules = table()  # weights 2, 15, 30, 3, 50
    tickets = Tickets(0, 1, 2, 16, 17, 46, 47, 49, 50, 99)
    assert [draw(rules, tickets) for _ in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert set(tickets.bounds) == {100}  # one uniform ticket out of the total weight


def test_members_prizes_come_from_the_csprng() -> None:
    assert isinstance(Services().game_random, SystemRandomSource)
    values = {SystemRandomSource().randbelow(1000) for _ in range(200)}
    assert len(values) > 100 and all(0 <= v < 1000 for v in values)


# --- odds and expected value -----------------------------------------------------------------


def test_odds_and_expected_value_of_the_sample_wheel() -> None:
    rules = table()
    shown = odds(rules, None)
    assert [(o.prize.id, percent_text(o.probability)) for o in shown] == [
        ("p200", "2"),
        ("p50", "15"),
        ("p20", "30"),
        ("bag", "3"),
        ("thanks", "50"),
    ]
    assert sum(o.probability for o in shown) == 1
    expected = expected_points(shown)
    assert expected == Fraction(35, 2)  # (2×200 + 15×50 + 30×20) / 100
    assert points_text(expected) == "17.5"
    assert percent_text(expected / rules.cost) == "35"


@pytest.mark.parametrize(
    ("probability", "text"),
    [
        (Fraction(1, 3), "33.33"),
        (Fraction(2, 3), "66.67"),
        (Fraction(1, 8), "12.5"),
        (Fraction(1, 10_000), "0.01"),
        (Fraction(1, 1_000_000), "<0.01"),
        (Fraction(0), "0"),
        (Fraction(1), "100"),
    ],
)
def test_percent_text(probability: Fraction, text: str) -> None:
    assert percent_text(probability) == text


def test_a_campaign_multiplies_points_prizes_only_and_rounds_down() -> None:
    rules = table()
    festival = GameCampaign.model_validate(
        {
            "id": "f",
            "name": {"zh-CN": "节日", "en": "Festival"},
            "starts": date(2027, 2, 6),
            "ends": date(2027, 2, 20),
            "multiplier": "1.5",
        }
    )
    by_id = {p.id: p for p in rules.prizes}
    assert prize_points(by_id["p50"], festival) == 75
    assert prize_points(by_id["bag"], festival) == 0
    odd = by_id["p50"].model_copy(update={"points": 15})
    assert prize_points(odd, festival) == 22  # 22.5 rounded down
    assert expected_points(odds(rules, festival)) == Fraction(105, 4)  # 17.5 × 1.5
    config = load_config(SAMPLE)
    assert active_campaign(date(2027, 2, 6), config) is not None
    assert active_campaign(date(2027, 2, 21), config) is None
    assert active_campaign(date(2027, 2, 5), config) is None


def test_game_tables_follow_the_configuration() -> None:
    config = load_config(SAMPLE)
    assert config.wheel is not None and config.wheel.scratch is not None
    wheel, card = game_table(config, "wheel"), game_table(config, "scratch")
    assert wheel is not None and card is not None
    assert (wheel.cost, wheel.free_per_day, wheel.daily_limit) == (50, 1, 10)
    assert (card.cost, card.reveal_after, card.fallback.id) == (30, 3, "none")
    assert card.daily_budget == wheel.daily_budget  # one pool for both games
    without_card = config.wheel.model_copy(update={"scratch": None})
    assert game_table(config.model_copy(update={"wheel": without_card}), "scratch") is None
    assert game_table(config.model_copy(update={"wheel": None}), "wheel") is None
    off = config.wheel.model_copy(update={"enabled": False})
    assert game_table(config.model_copy(update={"wheel": off}), "wheel") is None


# --- scratch cards ---------------------------------------------------------------------------


def test_card_layouts_show_exactly_the_prize() -> None:
    rules = table("scratch")
    rng = SeededRandom(11)
    for prize in rules.prizes:
        for _ in range(300):
            layout = scratch_layout(rules, prize, rng)
            assert len(layout) == 9 and set(layout) <= set(SYMBOLS)
            counts = Counter(layout)
            winning = prize_symbol(rules, prize)
            if winning is None:
                assert max(counts.values()) <= 2  # nothing won: no three of a kind
                assert winning_symbol(layout) is None
            else:
                assert counts[winning] == 3
                assert all(n <= 2 for s, n in counts.items() if s != winning)
                assert winning_symbol(layout) == winning


def test_every_prize_has_its_own_symbol() -> None:
    rules = table("scratch")
    symbols = [prize_symbol(rules, p) for p in rules.prizes]
    assert symbols == ["💎", "🍀", "⭐", "🔔", None]


# --- the picture -----------------------------------------------------------------------------


def png_image(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("winner", [0, 1, 2, 3, 4])
def test_the_pointer_rests_on_the_winning_slice(winner: int) -> None:
    painter = WheelPainter()
    weights = [2, 15, 30, 3, 50]
    picture = painter.render(["", "", "", "", ""], weights, winner, 0.5)
    image = png_image(picture.png)
    assert image.size == (SIZE, SIZE)
    # Just below the pointer's tip, inside the wheel: the winning slice's own colour.
    below_tip = image.getpixel((CENTER[0], CENTER[1] - RADIUS + 40))
    assert below_tip == slice_colour(winner, len(weights))


def test_chinese_labels_without_a_cjk_font_become_numbers() -> None:
    painter = WheelPainter()
    painter.cjk_font = None
    labels = ["200 积分", "50 积分", "20 积分", "帆布袋兑换券", "谢谢参与"]
    picture = painter.render(labels, [2, 15, 30, 3, 50], 2, 0.5, "×2")
    assert picture.numbered
    png_image(picture.png)
    english = painter.render(["200 points", "50 points", "20", "Bag", "Thanks"], [1] * 5, 0, 0.5)
    assert not english.numbered


def test_no_font_at_all_never_crashes() -> None:
    painter = WheelPainter()
    painter.cjk_font = painter.latin_font = None
    picture = painter.render(["谢谢参与", "🎁 Bag"], [1, 1], 1, 0.9, "×1.5")
    assert picture.numbered
    png_image(picture.png)


def test_rendering_a_spin_is_fast_and_small() -> None:
    painter = WheelPainter()
    labels = ["200 points", "50 points", "20 points", "Canvas bag voucher", "Better luck"]
    weights = [2, 15, 30, 3, 50]
    painter.render(labels, weights, 0, 0.5)  # draws and caches the static wheel
    timings = []
    for winner in range(5):
        started = time.perf_counter()
        picture = painter.render(labels, weights, winner, 0.3)
        timings.append(time.perf_counter() - started)
        assert len(picture.png) < 200_000
    assert sorted(timings)[2] < 0.25  # typically ~16 ms; generous for slow CI machines


def test_a_single_prize_fills_the_wheel() -> None:
    picture = WheelPainter().render([""], [7], 0, 0.5)
    image = png_image(picture.png)
    assert image.getpixel((CENTER[0], CENTER[1] - RADIUS + 40)) == slice_colour(0, 1)


# --- configuration mistakes ------------------------------------------------------------------


def sample() -> dict[str, Any]:
    return tomllib.loads(SAMPLE.read_text(encoding="utf-8"))


def thirteen_prizes(document: dict[str, Any]) -> None:
    prizes = document["wheel"]["prizes"]
    for i in range(8):
        prizes.append({**prizes[0], "id": f"extra{i}"})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["wheel"]["prizes"][1].update(weight=0), "[wheel.prizes[2].weight]"),
        (lambda d: d["wheel"]["prizes"][1].update(weight=-3), "[wheel.prizes[2].weight]"),
        (lambda d: d["wheel"]["prizes"][1].update(weight=True), "[wheel.prizes[2].weight]"),
        (lambda d: d["wheel"]["prizes"][1].update(weight=2.5), "[wheel.prizes[2].weight]"),
        (lambda d: d["wheel"].update(prizes=[]), "[wheel.prizes]"),
        (lambda d: d["wheel"].update(daily_budget=-1), "[wheel.daily_budget]"),
        (lambda d: d["wheel"].pop("daily_budget"), "[wheel.daily_budget] is required"),
        (lambda d: d["wheel"].update(cost=-5), "[wheel.cost]"),
        (lambda d: d["wheel"].update(daily_limit=0), "[wheel.daily_limit]"),
        (
            lambda d: d["wheel"].update(free_spins_per_day=11),
            "free_spins_per_day (11) is more than daily_limit (10)",
        ),
        (lambda d: d["wheel"].update(fallback="jackpot"), "fallback 'jackpot' is not one of"),
        (
            lambda d: d["wheel"].update(fallback="p50"),
            "fallback 'p50' must be a voucher or nothing",
        ),
        (
            lambda d: d["wheel"]["prizes"].append(dict(d["wheel"]["prizes"][0])),
            "duplicate prize id p200",
        ),
        (thirteen_prizes, "at most 12 prizes"),
        (lambda d: d["wheel"]["prizes"][0].pop("points"), "'p200': a points prize needs points"),
        (
            lambda d: d["wheel"]["prizes"][4].update(points=5),
            "'thanks': only a points prize has points",
        ),
        (lambda d: d["wheel"]["prizes"][0].update(kind="item"), "[wheel.prizes[1].kind]"),
        (lambda d: d["wheel"]["prizes"][0]["label"].pop("en"), "[wheel.prizes[1].label.en]"),
        (lambda d: d["wheel"].update(font="/no/such/font.ttc"), "[wheel.font] no font file"),
        (
            lambda d: d["wheel"]["campaigns"][0].update(ends=date(2027, 2, 1)),
            "game campaign 'spring_festival' ends (2027-02-01) before it starts",
        ),
        (
            lambda d: d["wheel"]["campaigns"][0].update(multiplier="1"),
            "[wheel.campaigns[1].multiplier]",
        ),
        (lambda d: d["wheel"]["scratch"].update(reveal_after=10), "[wheel.scratch.reveal_after]"),
        (
            lambda d: d["wheel"]["scratch"].update(fallback="s10"),
            "fallback 's10' must be a voucher or nothing",
        ),
        (
            lambda d: d["wheel"]["scratch"].update(free_cards_per_day=9),
            "free_cards_per_day (9) is more than daily_limit (5)",
        ),
        (lambda d: d["wheel"]["scratch"].pop("prizes"), "fallback is only for the card's own"),
        (lambda d: d["wheel"].update(colour="red"), "[wheel.colour] is not a known setting"),
    ],
)
def test_mistake_names_the_key(mutate: Callable[[dict[str, Any]], Any], expected: str) -> None:
    document = sample()
    mutate(document)
    with pytest.raises(ConfigError) as excinfo:
        parse_config(document, "config.toml")
    assert expected in str(excinfo.value)


def test_no_wheel_section_means_no_games() -> None:
    document = sample()
    del document["wheel"]
    config = parse_config(document)
    assert config.wheel is None
    assert game_table(config, "wheel") is None and game_table(config, "scratch") is None


def test_the_card_can_share_the_wheels_prizes() -> None:
    document = sample()
    del document["wheel"]["scratch"]["prizes"]
    del document["wheel"]["scratch"]["fallback"]
    config = parse_config(document)
    card = game_table(config, "scratch")
    assert card is not None and [p.id for p in card.prizes][0] == "p200"
    assert card.fallback.id == "thanks"
