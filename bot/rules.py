"""The programme's rules: purchase points and expiry dates, derived from the configuration."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from bot.config import Campaign, Category, Config, MallDiscount, MallItem
from bot.i18n import N_

# A till's clock may run a little ahead of ours; a purchase "from the future" beyond this
# is a typo in the date.
CLOCK_SKEW = timedelta(minutes=10)


class RuleError(ValueError):
    """A request breaks a programme rule; `key` names the i18n message explaining it."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


def parse_amount(text: str, config: Config) -> Decimal:
    """Parse a purchase amount in yuan (up to 2 decimals, > 0, within the cap); raises RuleError."""
    cleaned = text.strip().removeprefix("¥").removeprefix("￥").replace(",", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise RuleError(N_("error.amount_not_number"), value=text) from None
    if not amount.is_finite():
        raise RuleError(N_("error.amount_not_number"), value=text)
    if amount <= 0:
        raise RuleError(N_("error.amount_not_positive"), value=text)
    if amount != amount.quantize(Decimal("0.01")):
        raise RuleError(N_("error.amount_too_precise"), value=text)
    if amount > config.earn.max_purchase_yuan:
        raise RuleError(
            N_("error.amount_too_large"), value=text, limit=config.earn.max_purchase_yuan
        )
    return amount


def purchase_points(amount: Decimal, category: Category, config: Config) -> int:
    """Points for a purchase: whole yuan × points_per_yuan × category multiplier, rounded down."""
    raw = amount * config.earn.points_per_yuan * category.multiplier
    return int(raw.to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True, slots=True)
class PurchaseAward:
    """What a purchase earns under the rules in force when it was made."""

    amount: Decimal
    category: Category
    campaign: Campaign | None
    points: int
    expires_at: datetime | None
    purchased_on: date

    def meta(self) -> dict[str, str]:
        """The facts the ledger keeps with the operation, so the award can be re-derived.

        Normalized (two decimals, the local day) so the till and the CSV import describe
        one receipt identically and the second one to arrive is a replay, not a conflict.
        """
        facts = {
            "amount": f"{self.amount:.2f}",
            "category": self.category.id,
            "purchased_on": self.purchased_on.isoformat(),
        }
        if self.campaign is not None:
            facts["campaign"] = self.campaign.id
            facts["campaign_multiplier"] = str(self.campaign.multiplier)
        return facts


def active_campaign(day: date, category: Category, config: Config) -> Campaign | None:
    """The campaign with the highest multiplier running on local `day` for `category`."""
    running = [c for c in config.campaigns if c.applies(day, category.id)]
    return max(running, key=lambda c: c.multiplier, default=None)


def award_purchase(
    amount: Decimal, category_id: str | None, purchased_at: datetime, now: datetime, config: Config
) -> PurchaseAward:
    """Points and expiry for a purchase; raises RuleError (unknown category, future or expired
    purchase, an amount too small to earn a point)."""
    category = config.earn.category(category_id or config.earn.default_category)
    if category is None:
        known = ", ".join(c.id for c in config.earn.categories)
        raise RuleError(N_("error.unknown_category"), value=category_id, known=known)
    if purchased_at > now + CLOCK_SKEW:
        raise RuleError(N_("error.purchase_in_future"))
    day = local_today(purchased_at, config)
    campaign = active_campaign(day, category, config)
    points = purchase_points(amount, category, config)
    if campaign is not None:
        points = int((Decimal(points) * campaign.multiplier).to_integral_value(ROUND_FLOOR))
    if points <= 0:
        raise RuleError(N_("error.purchase_earns_nothing"), amount=amount)
    expiry = expires_at(purchased_at, config)
    if expiry is not None and expiry <= now:
        raise RuleError(N_("error.purchase_expired"), day=display_expiry(expiry, config))
    return PurchaseAward(amount, category, campaign, points, expiry, day)


def local_today(now: datetime, config: Config) -> date:
    """The programme's 'today' for an aware instant."""
    return now.astimezone(config.program.tz).date()


def _add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def last_valid_day(earned_at: datetime, config: Config) -> date | None:
    """The last local day on which points earned at `earned_at` can be used (None: never
    expire), under the policy in force on the day they were earned."""
    earned_on = local_today(earned_at, config)
    policy = config.expiry.policy_on(earned_on)
    if policy.mode == "never":
        return None
    if policy.mode == "year_end":
        return date(earned_on.year + policy.years, 12, 31)
    return _add_months(earned_on, policy.months)


def end_of_day(day: date, config: Config) -> datetime:
    """The instant a local day ends: the next local midnight (points are expired from then on)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=config.program.tz)


def expires_at(earned_at: datetime, config: Config) -> datetime | None:
    """When points earned at `earned_at` expire under the current policy (None: never)."""
    day = last_valid_day(earned_at, config)
    return None if day is None else end_of_day(day, config)


def display_expiry(expiry: datetime, config: Config) -> date:
    """The last valid local day for a stored expiry instant (what members are shown)."""
    return (expiry.astimezone(config.program.tz) - timedelta(microseconds=1)).date()


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
