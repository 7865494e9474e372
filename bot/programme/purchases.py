"""Purchase points: amounts, categories, campaigns and rounding, and the one way a purchase is
booked (its idempotency key, its ledger request), for the till, the CSV import and the demo."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Final, Literal

from bot.config import Campaign, Category, Config, Localized, Tier
from bot.i18n import N_
from bot.programme.booked import note_booked
from bot.programme.calendar import display_expiry, local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.notices import purchase_notice
from bot.programme.task_progress import BookedPurchase, purchases_booked
from bot.programme.tiers import held_tier, tiers_on
from bot.programme.till import find_member
from storage.errors import Conflict, StoreError
from storage.ledger import (
    EarnRequest,
    OperationResult,
    RecentOperation,
    StoredPurchase,
    earn_groups,
    load_result,
    stored_purchases,
)
from storage.members import Member
from storage.pushes import Booked, Push, booked_facts, enqueue

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
    # "¥ 100" and "100 元" as some tills print them; a space inside the digits stays wrong.
    cleaned = cleaned.removesuffix(_YUAN).strip()
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
    """What each full yuan earns in a category before any campaign (the rate /rules announces)."""
    return config.earn.points_per_yuan * category.multiplier


def counted_yuan(amount: Decimal) -> int:
    """The full yuan of an amount that earn points (每满 1 元: the part under 1 yuan earns none)."""
    return int(amount.to_integral_value(rounding=ROUND_FLOOR))


def purchase_points(amount: Decimal, category: Category, config: Config) -> int:
    """Points for a purchase before any campaign: full yuan × the category's rate, rounded
    down to a whole point."""
    return purchase_earning(amount, category, None, config).base_points


@dataclass(frozen=True, slots=True)
class Earning:
    """How a purchase's points are counted, step by step (what /rules shows in its example)."""

    amount: Decimal
    category: Category
    # The full yuan that earn points (the part under 1 yuan earns none).
    counted_yuan: int
    # Points before any campaign or tier: counted_yuan × the category's rate, rounded down.
    base_points: int
    # The campaign that multiplied base_points (its multiplier is campaign.multiplier), if any;
    # None too when the tier's multiplier won over it ([tiers] combine = "highest").
    campaign: Campaign | None
    # What the purchase earns: base_points with the campaign's and the tier's extra points.
    points: int
    # The tier whose earn multiplier added `tier_bonus` (None: no tier bonus).
    tier: Tier | None = None
    tier_bonus: int = 0

    @property
    def campaign_bonus(self) -> int:
        """The extra points the campaign adds (0 without one)."""
        return self.points - self.base_points - self.tier_bonus


def _floor(points: Decimal) -> int:
    return int(points.to_integral_value(rounding=ROUND_FLOOR))


def tier_bonus(
    base: int, campaign_multiplier: Decimal | None, tier_multiplier: Decimal, combine: str
) -> tuple[int, bool]:
    """A tier's extra points on `base` purchase points, and whether the campaign still applies:
    "highest": the higher multiplier alone (the tier's only when strictly higher), "multiply":
    floor(base × campaign × tier) − floor(base × campaign)."""
    # The audit recomputes every stored tier bonus with this same arithmetic.
    if combine == "highest" and campaign_multiplier is not None:
        if tier_multiplier <= campaign_multiplier:
            return 0, True
        return _floor(Decimal(base) * tier_multiplier) - base, False
    campaign = Decimal(1) if campaign_multiplier is None else campaign_multiplier
    with_campaign = _floor(Decimal(base) * campaign)
    return _floor(Decimal(base) * campaign * tier_multiplier) - with_campaign, True


def purchase_earning(
    amount: Decimal,
    category: Category,
    campaign: Campaign | None,
    config: Config,
    tier: Tier | None = None,
) -> Earning:
    """The one computation of a purchase's points, under `campaign` (None: none running), for
    a member holding `tier` (None: no tier bonus)."""
    # Every award, the till's and the import's, and every sentence of /rules come from here.
    counted = counted_yuan(amount)
    raw = counted * points_per_yuan(category, config)
    base = int(raw.to_integral_value(rounding=ROUND_FLOOR))
    plain = Earning(amount, category, counted, base, campaign, campaign_points(base, campaign))
    if tier is None or tier.earn_multiplier <= 1:
        return plain
    bonus, campaign_applies = tier_bonus(
        base,
        None if campaign is None else campaign.multiplier,
        tier.earn_multiplier,
        config.tiers.combine,
    )
    if bonus <= 0:
        return plain  # nothing added: the purchase is booked exactly as without tiers
    if not campaign_applies:
        return Earning(amount, category, counted, base, None, base + bonus, tier, bonus)
    return Earning(amount, category, counted, base, campaign, plain.points + bonus, tier, bonus)


def tier_earning(
    amount: Decimal, category: Category, campaign: Campaign | None, tier: Tier, config: Config
) -> Earning:
    """What a purchase earns for a member of `tier` (/rules' worked example of a tier)."""
    return purchase_earning(amount, category, campaign, config, tier)


@dataclass(frozen=True, slots=True)
class PurchaseAward:
    """What a purchase earns under the rules in force when it was made."""

    amount: Decimal
    category: Category
    campaign: Campaign | None
    # The total: base_points, with the campaign's and the tier's extra points.
    points: int
    # The points before campaign and tier: with `tier_bonus`, the purchase's own lot; the
    # campaign's extra (`bonus_points`) is a lot of its own under the campaign's expiry policy.
    base_points: int
    expires_at: datetime | None
    purchased_on: date
    # When the campaign's extra points expire (None: never, or no extra points).
    bonus_expires_at: datetime | None = None
    # The tier held when the purchase was booked, when its multiplier added points.
    tier: Tier | None = None
    tier_bonus: int = 0

    @property
    def bonus_points(self) -> int:
        """The extra points the campaign adds (0 without one)."""
        return self.points - self.base_points - self.tier_bonus

    @property
    def own_points(self) -> int:
        """The purchase operation's points: base and tier bonus (the campaign's are apart)."""
        return self.base_points + self.tier_bonus

    def meta(self) -> dict[str, object]:
        """The facts the ledger keeps with the operation, so the award can be re-derived.

        Normalized (two decimals, the local day) so the till and the CSV import describe
        one receipt identically and the second one to arrive is a replay, not a conflict.
        """
        facts: dict[str, object] = {
            "amount": f"{self.amount:.2f}",
            "category": self.category.id,
            "purchased_on": self.purchased_on.isoformat(),
        }
        if self.campaign is not None:
            facts["campaign"] = self.campaign.id
            facts["campaign_multiplier"] = str(self.campaign.multiplier)
        if self.tier is not None and self.tier_bonus:
            # Only with a bonus: purchases without one keep their facts (and fingerprints).
            facts["tier"] = self.tier.id
            facts["tier_multiplier"] = str(self.tier.earn_multiplier)
            facts["tier_bonus"] = self.tier_bonus
        return facts

    def same_purchase(self, member_id: int, stored: StoredPurchase) -> bool:
        """Whether a purchase booked before under this one's key is this very purchase (the
        same member, amount, category and day), whatever tier it was booked in."""
        facts = self.meta()
        return stored.member_id == member_id and all(
            stored.meta.get(name) == facts[name] for name in ("amount", "category", "purchased_on")
        )


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


# The amount /rules works its example with: not a whole number, to show that only full yuan
# count.
EXAMPLE_AMOUNT: Final = Decimal("99.5")


@dataclass(frozen=True, slots=True)
class EarnRule:
    """What /rules says about one category: its rate and a worked example, outside any
    campaign and under each campaign not over yet that covers it, and for each tier whose
    multiplier adds points (outside campaigns)."""

    category: Category
    points_per_yuan: Decimal
    example: Earning
    in_campaigns: tuple[Earning, ...]
    in_tiers: tuple[Earning, ...] = ()


def earn_rules(today: date, config: Config) -> list[EarnRule]:
    """Each category's earn rule with its worked example (EXAMPLE_AMOUNT), by the very
    computation awards use."""
    ahead = campaigns_ahead(today, config)
    return [
        EarnRule(
            category,
            points_per_yuan(category, config),
            purchase_earning(EXAMPLE_AMOUNT, category, None, config),
            tuple(
                purchase_earning(EXAMPLE_AMOUNT, category, campaign, config)
                for campaign, covered in ahead
                if category in covered
            ),
            tuple(
                earning
                for tier in config.tiers.levels
                if (earning := tier_earning(EXAMPLE_AMOUNT, category, None, tier, config)).tier
            ),
        )
        for category in config.earn.categories
    ]


def award_purchase(
    amount: Decimal,
    category_id: str | None,
    purchased_at: datetime,
    now: datetime,
    config: Config,
    tier: Tier | None = None,
) -> PurchaseAward:
    """Points and expiry for a purchase, for a member holding `tier` (None: no tier bonus);
    raises RuleError (unknown category, future or expired purchase, an amount too small to
    earn a point)."""
    category = config.earn.category(category_id or config.earn.default_category)
    if category is None:
        known = ", ".join(c.id for c in config.earn.categories)
        raise RuleError(N_("error.unknown_category"), value=category_id, known=known)
    if purchased_at > now + CLOCK_SKEW:
        raise RuleError(N_("error.purchase_in_future"))
    day = local_today(purchased_at, config)
    earning = purchase_earning(amount, category, active_campaign(day, category, config), config)
    if earning.counted_yuan < 1:
        raise RuleError(N_("error.purchase_under_one_yuan"), amount=amount)
    if earning.points <= 0:
        raise RuleError(N_("error.purchase_earns_nothing"), amount=amount)
    expiry = expires_at(purchased_at, config, "purchase")
    if expiry is not None and expiry <= now:
        raise RuleError(N_("error.purchase_expired"), day=display_expiry(expiry, config))
    points, base = earning.points, earning.base_points
    bonus_expiry = expires_at(purchased_at, config, "campaign") if points > base else None
    if bonus_expiry is not None and bonus_expiry <= now:
        # The campaign's extra points of an old receipt have expired by now: the purchase's
        # own points are still owed, the extra ones would be gone the moment they arrive.
        points, bonus_expiry = base, None
    award = PurchaseAward(
        amount=amount,
        category=category,
        campaign=earning.campaign,
        points=points,
        base_points=base,
        expires_at=expiry,
        purchased_on=day,
        bonus_expires_at=bonus_expiry,
    )
    return in_tier(award, tier, config)


def in_tier(award: PurchaseAward, tier: Tier | None, config: Config) -> PurchaseAward:
    """An award without tier bonus (`award_purchase`'s) for a member holding `tier` when it is
    booked: the tier's extra points added, with the campaign's as [tiers] combine says."""
    if tier is None or tier.earn_multiplier <= 1 or award.tier is not None:
        return award
    campaign = award.campaign
    bonus, campaign_applies = tier_bonus(
        award.base_points,
        None if campaign is None else campaign.multiplier,
        tier.earn_multiplier,
        config.tiers.combine,
    )
    if bonus <= 0:
        return award
    # The campaign's lot as without tiers (none if it expired by now), or none when the
    # tier's multiplier wins over the campaign's.
    campaign_lot = award.bonus_points if campaign_applies else 0
    return PurchaseAward(
        amount=award.amount,
        category=award.category,
        campaign=campaign if campaign_applies else None,
        points=award.base_points + campaign_lot + bonus,
        base_points=award.base_points,
        expires_at=award.expires_at,
        purchased_on=award.purchased_on,
        bonus_expires_at=award.bonus_expires_at if campaign_lot else None,
        tier=tier,
        tier_bonus=bonus,
    )


def check_receipt(receipt: str) -> str:
    """A receipt number as typed at the till; raises RuleError (characters or length)."""
    if not TILL_RECEIPT.match(receipt):
        raise RuleError(N_("admin.receipt_invalid"), value=receipt[:64])
    return receipt


def _category_words(text: str) -> str:
    """A category name as compared: full-width read as ASCII, any case, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def category_named(text: str, config: Config) -> Category | None:
    """The category `text` names by its id or its name in either language, in any case."""
    if (exact := config.earn.category(text)) is not None:
        return exact  # the id as the usage line shows it: no normalising per CSV row
    wanted = _category_words(text)
    for category in config.earn.categories:
        names = (category.id, category.name.zh_CN, category.name.en)
        if any(_category_words(name) == wanted for name in names):
            return category
    return None


def category_choices(config: Config) -> Localized:
    """The categories a cashier may type, each name with its id, in both languages."""
    return Localized.model_validate(
        {
            "zh-CN": "、".join(f"{c.name.zh_CN}（{c.id}）" for c in config.earn.categories),
            "en": ", ".join(f"{c.name.en} ({c.id})" for c in config.earn.categories),
        }
    )


def find_category(text: str | None, config: Config) -> Category:
    """The purchase category typed (id or name, any case; none: the default one); raises
    RuleError listing the choices."""
    if text is None or not text.strip():
        default = config.earn.category(config.earn.default_category)
        assert default is not None  # the configuration refuses an unknown default
        return default
    category = category_named(text, config)
    if category is None:
        raise RuleError(
            N_("error.unknown_category"), value=_shown(text.strip()), known=category_choices(config)
        )
    return category


def purchase_key(receipt: str | None, source: str | None = None) -> str:
    """The idempotency key of a purchase, by receipt, else by the `source` it was entered from."""
    # The receipt, so one receipt earns once whichever till, import or seed books it; without
    # one, the till message (`till.command_source`): a redelivered update must not award twice.
    if receipt:
        return f"purchase:{receipt}"
    if not source:
        raise ValueError("a purchase without a receipt needs the source it was entered from")
    return f"purchase:{source}"


def purchase_requests(
    member_id: int,
    award: PurchaseAward,
    *,
    receipt: str | None,
    actor: str,
    now: datetime,
    source: str | None = None,
) -> tuple[EarnRequest, ...]:
    """The ledger operations booking an award, for the till, the import and the seed alike:
    the purchase's own points, and the campaign's extra points as a lot of their own (their
    expiry policy differs), booked together or not at all (`Ledger.earn_groups`)."""
    # One builder, so the second of them to book a receipt is a replay, not a conflict.
    key = purchase_key(receipt, source)
    base = EarnRequest(
        member_id=member_id,
        points=award.own_points if award.bonus_points else award.points,
        kind="purchase",
        key=key,
        actor=actor,
        expires_at=award.expires_at,
        now=now,
        reference=receipt or None,
        meta=award.meta(),
    )
    if not award.bonus_points or award.campaign is None:
        return (base,)
    bonus_meta = {"purchase": key, "campaign": award.campaign.id}
    if receipt:
        bonus_meta["receipt"] = receipt
    bonus = EarnRequest(
        member_id=member_id,
        points=award.bonus_points,
        kind="campaign",
        key=f"{key}:campaign",
        actor=actor,
        expires_at=award.bonus_expires_at,
        now=now,
        reference=receipt or None,
        meta=bonus_meta,
    )
    return (base, bonus)


def award_fen(award: PurchaseAward) -> int:
    """A purchase's amount in fen (what the spend measure of tiers counts)."""
    return int(award.amount * 100)


def booked_purchase(result: OperationResult, award: PurchaseAward) -> BookedPurchase:
    """A purchase just booked (its operation, `result`), as its tasks count it."""
    return BookedPurchase(
        result.operation_id,
        result.member_id,
        award.category.id,
        counted_yuan(award.amount),
        award.purchased_on,
        points=award.base_points,
        fen=award_fen(award),
    )


async def _book(
    programme: Programme,
    award: PurchaseAward,
    *,
    member_id: int,
    receipt: str | None,
    source: str | None,
    actor: str,
    now: datetime,
    tell_member: bool = True,
) -> tuple[tuple[OperationResult, ...], PurchaseAward]:
    """Book a purchase (its award without tier bonus) in the tier the member holds right then,
    and queue the member's receipt, all in one transaction (a replay queues nothing; nor does
    `tell_member=False`); return the results and the award booked; raises NotFound, Conflict."""
    config = programme.config
    booked: list[tuple[tuple[OperationResult, ...], PurchaseAward]] = []

    def book(conn: sqlite3.Connection) -> OperationResult:
        final = award
        if tiers_on(config):
            key = purchase_key(receipt, source)
            if (before := stored_purchases(conn, [key]).get(key)) is not None:
                # Booked before, maybe in another tier (so other points): the same purchase
                # is a replay whatever its points were, another one under its key a conflict.
                if not award.same_purchase(member_id, before):
                    raise Conflict(f"idempotency key {key!r} was used for a different purchase")
                results = tuple(load_result(conn, i, replayed=True) for i in before.operation_ids)
                booked.append((results, award))
                return results[0]
            # The tier held now, in the booking's transaction: after every earlier purchase.
            final = in_tier(award, held_tier(conn, member_id, config), config)
        requests = purchase_requests(
            member_id, final, receipt=receipt, source=source, actor=actor, now=now
        )
        [outcome] = earn_groups(conn, [requests])
        if isinstance(outcome, StoreError):
            raise outcome
        booked.append((outcome, final))
        if not outcome[0].replayed:
            # The receipt first, then what its tasks say (a completion) in the same
            # transaction: the outbox sends in order. A replay counted when first booked.
            notice = _receipt_notice(final) if tell_member else _untold
            if (push := notice(booked_facts(conn, outcome[0], now))) is not None:
                enqueue(conn, [push], now)
            purchases_booked(
                conn,
                [booked_purchase(outcome[0], final)],
                config,
                now,
                actor=actor,
                tell_member=tell_member,
            )
        return outcome[0]  # the purchase itself: replayed exactly when the group is

    result = await programme.pushes.book_and_notify(book, _untold, now)
    note_booked(result.operation_id)
    return booked[-1]


def _receipt_notice(award: PurchaseAward) -> Callable[[Booked], Push | None]:
    """The member's receipt of a purchase booked at the till."""
    campaign = None if award.campaign is None else (award.campaign.name, award.campaign.multiplier)
    tier = None if award.tier is None else (award.tier.name, award.tier.earn_multiplier)
    return purchase_notice(award.amount, award.category.name, campaign, award.points, tier)


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
    category_text: str | None = None,
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
    same cashier's (`retyped`), in the category typed (`find_category`), the member told unless
    `tell_member` is False; raises RuleError
    (receipt, member code, amount, category, time)."""
    if receipt is not None:
        check_receipt(receipt)
    member = await find_member(programme, member_code)
    config = programme.config
    when = programme.now() if now is None else now
    paid = parse_amount(amount, config)
    category = find_category(category_text, config)
    award = award_purchase(paid, category.id, purchased_at, when, config)
    key = purchase_key(receipt, source)
    if not receipt and not confirmed:
        recent = await programme.ledger.recent_operations(
            member.id, kind="purchase", actor=actor, since=when - RETYPE_WINDOW
        )
        if (earlier := retyped(award, key, recent, when)) is not None:
            return PurchaseRecorded(
                "unconfirmed", member, award, award.points, None, earlier.created_at
            )
    try:
        results, award = await _book(
            programme,
            award,
            member_id=member.id,
            receipt=receipt,
            source=source,
            actor=actor,
            now=when,
            tell_member=tell_member,
        )
    except Conflict:
        return PurchaseRecorded("conflict", member, award, award.points, None)
    points = sum(result.points for result in results)
    if results[0].replayed:
        return PurchaseRecorded("replayed", member, award, points, None)
    available = await programme.ledger.available(member.id, when)
    return PurchaseRecorded("recorded", member, award, points, available)
