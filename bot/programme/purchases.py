"""Purchase points: amounts, categories, campaigns and rounding; one award for till and CSV."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from bot.config import Campaign, Category, Config
from bot.i18n import N_
from bot.programme.calendar import display_expiry, local_today
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at

# A till's clock may run a little ahead of ours; a purchase "from the future" beyond this
# is a typo in the date.
CLOCK_SKEW = timedelta(minutes=10)


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
