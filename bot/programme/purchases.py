"""Purchase points: amounts, categories, campaigns and rounding, and the one way a purchase is
booked (its idempotency key, its ledger request), for the till, the CSV import and the demo."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from functools import partial
from typing import Final, Literal

from bot.config import Campaign, Category, Config
from bot.i18n import N_
from bot.programme.calendar import display_expiry, local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.notices import purchase_notice
from bot.programme.till import find_member
from storage.errors import Conflict
from storage.ledger import EarnRequest, OperationResult, RecentOperation, earn
from storage.members import Member
from storage.pushes import Booked

# A till's clock may run a little ahead of ours; a purchase "from the future" beyond this
# is a typo in the date.
CLOCK_SKEW = timedelta(minutes=10)
# What a receipt number typed at the till may hold: it becomes part of an idempotency key
# and of the member's statement, so no separators or markup.
TILL_RECEIPT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A purchase typed at the till without a receipt id is keyed by its message, so a cashier who
# types it again would book it twice: the same member, amount and category from the same
# cashier within this long is put to the cashier before it is booked.
RETYPE_WINDOW: Final = timedelta(minutes=10)
# How long the buttons of that question stay good.
CONFIRM_WITHIN: Final = timedelta(minutes=10)


# How an amount in yuan may be typed, at the till and in the CSV import alike: digits, at most
# one decimal point and two decimals. Chinese input methods type full-width digits and point
# (`１００．５`), so those count as the ASCII ones; nothing else does (no sign, grouping,
# exponent or other digit systems: `1,0,0` must not read as 100, nor `1e4` as 10,000).
_FULL_WIDTH: Final = str.maketrans("０１２３４５６７８９．", "0123456789.")
_AMOUNT: Final = re.compile(r"(?P<yuan>[0-9]+)(?:\.(?P<fen>[0-9]*))?", re.ASCII)
_CURRENCY_SIGNS: Final = ("¥", "￥")
_YUAN: Final = "元"
_MINUS: Final = ("-", "－", "−")
# How much of a refused amount an error message repeats (a pasted line can be long).
_SHOWN: Final = 24


def _shown(text: str) -> str:
    """The value as typed, cut short for an error message."""
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def parse_amount(text: str, config: Config) -> Decimal:
    """Parse a purchase amount in yuan into a Decimal with two decimals (> 0, within the cap);
    raises RuleError naming the value."""
    shown = _shown(text.strip())
    cleaned = text.strip().translate(_FULL_WIDTH)
    for sign in _CURRENCY_SIGNS:
        cleaned = cleaned.removeprefix(sign)
    cleaned = cleaned.removesuffix(_YUAN)
    negative = cleaned.startswith(_MINUS)
    found = _AMOUNT.fullmatch(cleaned[1:] if negative else cleaned)
    if found is None:
        raise RuleError(N_("error.amount_not_number"), value=shown)
    fen = found["fen"] or ""
    if len(fen) > 2:
        raise RuleError(N_("error.amount_too_precise"), value=shown)
    # Built from the digits, never through arithmetic: exact whatever their number, so
    # 200 nines compare with the cap instead of overflowing a context.
    amount = Decimal(f"{found['yuan']}.{fen:0<2}")
    if negative or amount <= 0:
        raise RuleError(N_("error.amount_not_positive"), value=shown)
    if amount > config.earn.max_purchase_yuan:
        raise RuleError(
            N_("error.amount_too_large"), value=shown, limit=config.earn.max_purchase_yuan
        )
    return amount


def points_per_yuan(category: Category, config: Config) -> Decimal:
    """What one yuan earns in a category before any campaign (the rate /rules announces)."""
    return config.earn.points_per_yuan * category.multiplier


def purchase_points(amount: Decimal, category: Category, config: Config) -> int:
    """Points for a purchase: amount × the category's rate, rounded down to a whole point."""
    raw = amount * points_per_yuan(category, config)
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


def campaign_points(points: int, campaign: Campaign | None) -> int:
    """A purchase's points under a campaign: multiplied, rounded down (campaigns never stack)."""
    if campaign is None:
        return points
    return int((Decimal(points) * campaign.multiplier).to_integral_value(ROUND_FLOOR))


def campaigns_ahead(today: date, config: Config) -> list[tuple[Campaign, tuple[Category, ...]]]:
    """Campaigns not over by local `today`, each with the categories it multiplies (what
    /rules announces), by the same test `active_campaign` applies."""
    return [
        (
            campaign,
            tuple(c for c in config.earn.categories if campaign.applies(campaign.starts, c.id)),
        )
        for campaign in config.campaigns
        if campaign.ends >= today
    ]


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
    points = campaign_points(purchase_points(amount, category, config), campaign)
    if points <= 0:
        raise RuleError(N_("error.purchase_earns_nothing"), amount=amount)
    expiry = expires_at(purchased_at, config)
    if expiry is not None and expiry <= now:
        raise RuleError(N_("error.purchase_expired"), day=display_expiry(expiry, config))
    return PurchaseAward(amount, category, campaign, points, expiry, day)


def check_receipt(receipt: str) -> str:
    """A receipt number as typed at the till; raises RuleError (characters or length)."""
    if not TILL_RECEIPT.match(receipt):
        raise RuleError(N_("admin.receipt_invalid"), value=receipt[:64])
    return receipt


def purchase_key(receipt: str | None, source: str | None = None) -> str:
    """The idempotency key of a purchase, by receipt, else by the `source` it was entered from."""
    # The receipt, so one receipt earns once whichever till, import or seed books it; without
    # one, the till message (`till.command_source`): a redelivered update must not award twice.
    if receipt:
        return f"purchase:{receipt}"
    if not source:
        raise ValueError("a purchase without a receipt needs the source it was entered from")
    return f"purchase:{source}"


def purchase_request(
    member_id: int,
    award: PurchaseAward,
    *,
    receipt: str | None,
    actor: str,
    now: datetime,
    source: str | None = None,
) -> EarnRequest:
    """The ledger operation booking an award, for the till, the import and the seed alike."""
    # One builder, so the second of them to book a receipt is a replay, not a conflict.
    return EarnRequest(
        member_id=member_id,
        points=award.points,
        kind="purchase",
        key=purchase_key(receipt, source),
        actor=actor,
        expires_at=award.expires_at,
        now=now,
        reference=receipt or None,
        meta=award.meta(),
    )


async def _book(
    programme: Programme, request: EarnRequest, award: PurchaseAward, *, tell_member: bool = True
) -> OperationResult:
    """Book one earn request and queue the member's receipt in the same transaction (a replay
    queues nothing; nor does `tell_member=False`); raises NotFound, Conflict."""
    book = partial(
        earn,
        member_id=request.member_id,
        points=request.points,
        kind=request.kind,
        key=request.key,
        actor=request.actor,
        expires_at=request.expires_at,
        reason=request.reason,
        reference=request.reference,
        meta=request.meta,
        now=request.now,
    )
    campaign = None if award.campaign is None else (award.campaign.name, award.campaign.multiplier)
    receipt = (
        purchase_notice(award.amount, award.category.name, campaign) if tell_member else _untold
    )
    return await programme.pushes.book_and_notify(book, receipt, request.now)


def _untold(_booked: Booked) -> None:
    """No notice: for purchases booked as history (the demo's seed)."""


def retyped(
    award: PurchaseAward, key: str, recent: list[RecentOperation], now: datetime
) -> RecentOperation | None:
    """The earlier purchase (of `recent`: one cashier's for one member) that an award without
    a receipt repeats within RETYPE_WINDOW of `now`, if any."""
    if any(earlier.key == key for earlier in recent):
        return None  # this very entry booked before: a redelivery the ledger replays
    facts = award.meta()
    for earlier in recent:
        if now - earlier.created_at >= RETYPE_WINDOW:
            continue
        meta = earlier.meta or {}
        if meta.get("amount") == facts["amount"] and meta.get("category") == facts["category"]:
            return earlier
    return None


def confirmation_open(shown_at: datetime, now: datetime) -> bool:
    """Whether a question shown at `shown_at` may still be answered (CONFIRM_WITHIN)."""
    return now - shown_at < CONFIRM_WITHIN


# recorded: booked now; replayed: this receipt (or entry) was booked before, nothing added;
# conflict: the receipt was booked before for a different purchase, nothing booked;
# unconfirmed: it looks like a retyped purchase (`retyped`), nothing booked until confirmed.
PurchaseStatus = Literal["recorded", "replayed", "conflict", "unconfirmed"]


@dataclass(frozen=True, slots=True)
class PurchaseRecorded:
    """What booking a purchase did, for the operator who entered it."""

    status: PurchaseStatus
    member: Member
    award: PurchaseAward
    # The points booked: this award's, or the first booking's when replayed.
    points: int
    # The member's spendable points right after, when something was booked now.
    available: int | None
    # When the purchase this one repeats was booked, when unconfirmed.
    earlier: datetime | None = None


async def record_purchase(
    programme: Programme,
    member_code: str,
    amount: str,
    category_id: str | None = None,
    receipt: str | None = None,
    *,
    purchased_at: datetime,
    actor: str,
    source: str | None = None,
    confirmed: bool = False,
    now: datetime | None = None,
    tell_member: bool = True,
) -> PurchaseRecorded:
    """Award a purchase (amount as entered, in yuan) to the member with this code, once per
    receipt or source, and without a receipt only once `confirmed` when it repeats one of the
    same cashier's (`retyped`), the member told unless `tell_member` is False; raises RuleError
    (receipt, member code, amount, category, time)."""
    if receipt is not None:
        check_receipt(receipt)
    member = await find_member(programme, member_code)
    config = programme.config
    when = programme.now() if now is None else now
    award = award_purchase(parse_amount(amount, config), category_id, purchased_at, when, config)
    request = purchase_request(
        member.id, award, receipt=receipt, source=source, actor=actor, now=when
    )
    if not receipt and not confirmed:
        recent = await programme.ledger.recent_operations(
            member.id, kind=request.kind, actor=actor, since=when - RETYPE_WINDOW
        )
        if (earlier := retyped(award, request.key, recent, when)) is not None:
            return PurchaseRecorded(
                "unconfirmed", member, award, award.points, None, earlier.created_at
            )
    try:
        result = await _book(programme, request, award, tell_member=tell_member)
    except Conflict:
        return PurchaseRecorded("conflict", member, award, award.points, None)
    if result.replayed:
        return PurchaseRecorded("replayed", member, award, result.points, None)
    available = await programme.ledger.available(member.id, when)
    return PurchaseRecorded("recorded", member, award, result.points, available)
