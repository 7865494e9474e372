"""The points mall's prices: list price, the best running sale, bill deductions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.config import Config, MallDiscount, MallItem
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.errors import RuleError


@dataclass(frozen=True, slots=True)
class MallPrice:
    """What an item costs a member today, and the sale that made it cheaper."""

    points: int
    list_points: int
    discount: MallDiscount | None


def mall_price(item: MallItem, at: datetime, config: Config) -> MallPrice:
    """The item's price at `at`: the best running discount, rounded in the member's favour."""
    day = local_today(at, config)
    running = [d for d in config.mall.discounts if d.applies(day, item)]
    best = max(running, key=lambda d: d.percent, default=None)
    if best is None:
        return MallPrice(item.price, item.price, None)
    # Never free: a discount takes at most price - 1 points off.
    points = max(1, item.price * (100 - best.percent) // 100)
    return MallPrice(points, item.price, best)


def deduction_points(yuan: int, config: Config) -> int:
    """Points a bill deduction of `yuan` costs; raises RuleError outside the configured bounds."""
    mall = config.mall
    if not mall.deduction_min_yuan <= yuan <= mall.deduction_max_yuan:
        raise RuleError(
            N_("error.deduction_bounds"),
            value=yuan,
            low=mall.deduction_min_yuan,
            high=mall.deduction_max_yuan,
        )
    return yuan * config.redemption.deduction_points_per_yuan
