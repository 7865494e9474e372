"""What the games' tests share: reproducible random sources and a small prize table."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from bot.config import Config, WheelConfig
from tests.conftest import NOW

# A prize table whose total weight (40) is above every other randbelow() bound a play asks
# for (a pointer position below 71 is the exception, and 71 is not 40): ForcedDraws can tell
# the prize draw from the shuffles of a scratch card.
TOTAL_WEIGHT = 40
# Ticket ranges of the test table: [0, 10) p100, [10, 20) p10, [20, 30) bag, [30, 40) thanks.
P100, P10, BAG, THANKS = 0, 10, 20, 30


class SeededRandom:
    """A reproducible random source: tests only (prizes are drawn with `secrets`)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)  # noqa: S311 - a test double, not for prizes

    def randbelow(self, n: int, /) -> int:
        """A uniformly random integer in [0, n)."""
        return self._random.randrange(n)


class ForcedDraws:
    """Hands out chosen prize tickets in order; everything else comes from a seeded source."""

    def __init__(self, *tickets: int, total: int = TOTAL_WEIGHT, seed: int = 7) -> None:
        self.tickets = list(tickets)
        self.total = total
        self._rest = SeededRandom(seed)

    def randbelow(self, n: int, /) -> int:
        """The next chosen ticket for a prize draw, a seeded number otherwise."""
        if n == self.total and self.tickets:
            return self.tickets.pop(0)
        return self._rest.randbelow(n)


def today_local(config: Config) -> date:
    """The programme's today."""
    return NOW.astimezone(config.program.tz).date()


def wheel_document(**changes: Any) -> dict[str, Any]:
    """A small [wheel] section: four equally likely prizes, one free spin, scratch card on."""
    document: dict[str, Any] = {
        "cost": 50,
        "free_spins_per_day": 1,
        "daily_limit": 5,
        "daily_budget": 10_000,
        "fallback": "thanks",
        "voucher_days": 30,
        "prizes": [
            {
                "id": "p100",
                "label": {"zh-CN": "100 积分", "en": "100 points"},
                "kind": "points",
                "points": 100,
                "weight": 10,
            },
            {
                "id": "p10",
                "label": {"zh-CN": "10 积分", "en": "10 points"},
                "kind": "points",
                "points": 10,
                "weight": 10,
            },
            {
                "id": "bag",
                "label": {"zh-CN": "帆布袋兑换券", "en": "Canvas bag voucher"},
                "kind": "voucher",
                "weight": 10,
                "terms": {"zh-CN": "到店领取帆布袋一个。", "en": "Collect a bag in store."},
            },
            {
                "id": "thanks",
                "label": {"zh-CN": "谢谢参与", "en": "Better luck next time"},
                "kind": "nothing",
                "weight": 10,
            },
        ],
        "scratch": {"cost": 30, "free_cards_per_day": 0, "daily_limit": 3, "reveal_after": 3},
    }
    document.update(changes)
    return document


def with_wheel(**changes: Any) -> Callable[[Config], Config]:
    """A `configure` step putting the test wheel (with `changes`) into the configuration."""

    def change(config: Config) -> Config:
        document = wheel_document(**changes)
        if document.get("campaigns") == "today":
            day = today_local(config)
            document["campaigns"] = [
                {
                    "id": "festival",
                    "name": {"zh-CN": "节日双倍", "en": "Festival double"},
                    "starts": day - timedelta(days=1),
                    "ends": day + timedelta(days=1),
                    "multiplier": "2",
                }
            ]
        return config.model_copy(update={"wheel": WheelConfig.model_validate(document)})

    return change
