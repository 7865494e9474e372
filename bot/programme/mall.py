"""The points mall's rules: what members see, what it costs now, redeeming, returns, delisting."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final

from bot.config import LANGUAGES, Config, Localized, MallCategory, MallDiscount, MallItem, Tier
from bot.i18n import N_
from bot.programme.booked import note_booked
from bot.programme.calendar import end_of_day, local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.notices import delist_notice
from bot.programme.staff import check_scope
from bot.programme.tier_benefits import (
    ItemAccess,
    deduction_rate,
    item_access,
    mall_terms,
    refuse_tier_only,
)
from bot.programme.tiers import member_tier
from storage.dependants import GIFT_ACTOR
from storage.errors import InvalidState, NotFound, ReturnWindowClosed
from storage.mall import (
    USABLE_STATUSES,
    CatalogDiscount,
    CatalogEntry,
    DelistReport,
    ItemState,
    MerchantTerms,
    Offer,
    Redemption,
    Settlement,
    deduction_price,
    unit_price,
)
from storage.plans import priority_skus_of
from storage.pushes import SERVICE, Push

# Availabilities (storage.mall.ItemState.availability) that take an item off the shelves; one
# not started yet or sold out is still shown, with the reason it cannot be redeemed.
HIDDEN: Final = frozenset({"delisted", "unlisted", "ended"})


# --- prices ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MallPrice:
    """What an item costs a member at an instant, and the sale that made it cheaper."""

    points: int
    list_points: int
    discount: MallDiscount | None


def sale_window(discount: MallDiscount, config: Config) -> tuple[datetime, datetime]:
    """The instants a sale runs between: the local midnight its first day starts, and the one
    after its last day."""
    return end_of_day(discount.starts - timedelta(days=1), config), end_of_day(
        discount.ends, config
    )


def sale_rate(percent: int, language: str) -> str:
    """How much a sale takes off, as the member's language counts it (the catalogs add the
    unit): zh-CN the 折 a shop writes (20 % off: "8", 15 % off: "85"), else the percent off."""
    if language != "zh-CN":
        return str(percent)
    # 折 counts tenths of the price paid; a price tag writes 8 折 for 80 %, 85 折 for 85 %.
    paid = 100 - percent
    return str(paid // 10) if paid % 10 == 0 else str(paid)


def sale_scope(discount: MallDiscount, config: Config) -> list[Localized]:
    """The shelves, then the items, a sale covers by name (empty: the whole mall)."""
    shelves = [c.name for c in config.mall.categories if c.id in discount.categories]
    return shelves + [i.name for i in config.mall.items if i.sku in discount.skus]


def catalog_entry(item: MallItem, config: Config) -> CatalogEntry:
    """One item as the store keeps and prices it: a bill deduction at the points per yuan,
    anything else at its list price with the sales that cover it."""
    discounts: tuple[CatalogDiscount, ...] = ()
    if item.kind == "deduction":
        price = config.redemption.deduction_points_per_yuan
    else:
        # In scope on its first day = in scope (the idiom /rules uses for campaigns too).
        price = item.price
        discounts = tuple(
            CatalogDiscount(d.id, d.percent, *sale_window(d, config))
            for d in config.mall.discounts
            if d.applies(d.starts, item)
        )
    return CatalogEntry(
        sku=item.sku,
        kind=item.kind,
        category=item.category,
        price=price,
        stock=item.stock,
        per_member_limit=item.per_member_limit,
        available_from=item.available_from,
        available_until=item.available_until,
        discounts=discounts,
    )


def catalog_entries(config: Config) -> list[CatalogEntry]:
    """The configuration's mall items as the store keeps them (what `sync_catalog` takes)."""
    return [catalog_entry(item, config) for item in config.mall.items]


def mall_price(item: MallItem, at: datetime, config: Config) -> MallPrice:
    """The item's price at `at`: the best running sale, rounded in the member's favour."""
    # Priced from the very entry the store is synced with, by the store's own rule, so the
    # price shown is the price the redeeming transaction checks.
    entry = catalog_entry(item, config)
    price = unit_price(entry.price, entry.discounts, at)
    chosen = price.discount
    sale = None if chosen is None else next(d for d in config.mall.discounts if d.id == chosen.id)
    return MallPrice(price.points, price.list_points, sale)


def deduction_points(yuan: int, config: Config, rate: int | None = None) -> int:
    """Points a bill deduction of `yuan` costs at `rate` points per yuan (None: [redemption]'s);
    raises RuleError outside the configured bounds."""
    mall = config.mall
    if not mall.deduction_min_yuan <= yuan <= mall.deduction_max_yuan:
        raise RuleError(
            N_("error.deduction_bounds"),
            value=yuan,
            low=mall.deduction_min_yuan,
            high=mall.deduction_max_yuan,
        )
    points_per_yuan = config.redemption.deduction_points_per_yuan if rate is None else rate
    return deduction_price(points_per_yuan, Decimal(yuan))


# --- voucher validity ------------------------------------------------------------------------


def voucher_last_day(item: MallItem, redeemed_at: datetime, config: Config) -> date | None:
    """The last local day a code redeemed at `redeemed_at` can be used (through 23:59:59 local);
    None when the item's code has no validity limit."""
    # The day of redemption counts as the first of the `valid_days` ("30 天内有效": redeemed
    # on 25 November, usable through 24 December).
    if item.valid_days is None:
        return None
    return local_today(redeemed_at, config) + timedelta(days=item.valid_days - 1)


def voucher_expired(redemption: Redemption, now: datetime, config: Config) -> bool:
    """True when a code not yet used is past its last valid day at `now` (local)."""
    return (
        redemption.status in USABLE_STATUSES
        and redemption.valid_until is not None
        and local_today(now, config) > redemption.valid_until
    )


@dataclass(frozen=True, slots=True)
class VoucherTerms:
    """What an item's terms say about its code's validity, for /rules and the daily job."""

    item: MallItem
    valid_days: int
    refund_if_unused: bool


def voucher_terms(config: Config) -> list[VoucherTerms]:
    """Every configured item whose code has a validity limit, in catalog order."""
    return [
        VoucherTerms(item, item.valid_days, item.refund_if_unused)
        for item in config.mall.items
        if item.valid_days is not None
    ]


def reminder_window(today: date, config: Config) -> tuple[date, date]:
    """The last valid days a reminder is due for on local day `today`: from today (a day missed
    while the bot was down is caught up) to `voucher_reminder_days` ahead."""
    return today, today + timedelta(days=config.mall.voucher_reminder_days)


# --- browsing --------------------------------------------------------------------------------


def visible_items(config: Config, states: dict[str, ItemState], now: datetime) -> list[MallItem]:
    """Items a member can see now: listed, not delisted, not past their window."""
    return [
        item
        for item in config.mall.items
        if (state := states.get(item.sku)) is not None and state.availability(now) not in HIDDEN
    ]


async def item_states(programme: Programme) -> dict[str, ItemState]:
    """Every SKU's stock and listing, by sku (a shelf may be a second old)."""
    return {state.sku: state for state in await programme.mall.items()}


@dataclass(frozen=True, slots=True)
class MallMember:
    """Who is browsing, as the mall's prices and access see them: the tier held (None: no
    tiers) and the items a personal plan gives them priority access to."""

    member_id: int
    tier: Tier | None
    priority_skus: frozenset[str] = frozenset()


async def mall_member(programme: Programme, member_id: int) -> MallMember:
    """The member's tier and priority items, for the mall's quotes."""
    # The personal plans' priority items join here: every mall view and quote reads them
    # through this one function (and a confirmation again in its transaction: mall_terms).
    now = programme.now()
    skus = await programme.store.lookup(lambda conn: priority_skus_of(conn, member_id, now))
    return MallMember(member_id, await member_tier(programme, member_id), skus)


def member_availability(state: ItemState, access: ItemAccess, now: datetime) -> str:
    """Why this member cannot redeem the item now ('ok': they can): 'tier_only', or the
    item's availability with their own opening moment."""
    if access.reason == "tier_only":
        return "tier_only"
    if state.available_from is not None and access.opens_at is not None:
        state = replace(state, available_from=min(state.available_from, access.opens_at))
    return state.availability(now)


@dataclass(frozen=True, slots=True)
class MallHome:
    """The mall's front page: the shelves with something to see, and the member's points."""

    shelves: tuple[MallCategory, ...]
    available: int


async def mall_home(programme: Programme, member_id: int) -> MallHome:
    """What /mall shows a member now."""
    config, now = programme.config, programme.now()
    shown = visible_items(config, await item_states(programme), now)
    shelves = tuple(c for c in config.mall.categories if any(i.category == c.id for i in shown))
    return MallHome(shelves, await programme.ledger.available(member_id, now))


@dataclass(frozen=True, slots=True)
class PricedItem:
    """An item on a shelf with its price now (None: a bill deduction, priced per yuan at
    `rate`), and whether this member may redeem it now."""

    item: MallItem
    price: MallPrice | None
    access: ItemAccess
    rate: int


async def shelf(
    programme: Programme, category_id: str, member_id: int
) -> tuple[MallCategory, list[PricedItem]]:
    """A shelf's visible items with their prices now for this member; raises RuleError for an
    unknown shelf."""
    config, now = programme.config, programme.now()
    category = config.mall.category(category_id)
    if category is None:
        raise RuleError(N_("button.expired"))
    who = await mall_member(programme, member_id)
    shown = visible_items(config, await item_states(programme), now)
    return category, [
        PricedItem(
            item,
            None if item.kind == "deduction" else mall_price(item, now, config),
            item_access(item, who.tier, now, config, priority_skus=who.priority_skus),
            deduction_rate(who.tier, config),
        )
        for item in shown
        if item.category == category_id
    ]


@dataclass(frozen=True, slots=True)
class ItemView:
    """An item's card: its price now (None for a bill deduction), stock, and whether it can be
    redeemed now ('ok') or why not."""

    item: MallItem
    state: ItemState
    price: MallPrice | None
    availability: str
    # The last day a code redeemed now could be used; None = no limit.
    valid_until: date | None = None
    # The member's tier (None: no tiers), what it allows here, and a bill deduction's points
    # per yuan for them and for everyone.
    tier: Tier | None = None
    access: ItemAccess | None = None
    rate: int = 0
    standard_rate: int = 0


async def item_view(programme: Programme, sku: str, member_id: int) -> ItemView:
    """One item as this member sees it now; raises RuleError for an unknown SKU."""
    config, now = programme.config, programme.now()
    item = config.mall.item(sku)
    state = (await item_states(programme)).get(sku)
    if item is None or state is None:
        raise RuleError(N_("button.expired"))
    who = await mall_member(programme, member_id)
    access = item_access(item, who.tier, now, config, priority_skus=who.priority_skus)
    price = None if item.kind == "deduction" else mall_price(item, now, config)
    valid_until = voucher_last_day(item, now, config)
    return ItemView(
        item,
        state,
        price,
        member_availability(state, access, now),
        valid_until,
        who.tier,
        access,
        deduction_rate(who.tier, config),
        config.redemption.deduction_points_per_yuan,
    )


# --- redeeming -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingRedemption:
    """A confirmation to show: the offer behind its button, the price, which points pay it
    (expiry, points; soonest first) and what the member would have left."""

    offer: Offer
    item: MallItem
    yuan: int | None
    price: MallPrice
    plan: tuple[tuple[datetime | None, int], ...]
    available_after: int
    # The last day the code would be valid if confirmed today; None = no limit.
    valid_until: date | None = None
    # A bill deduction's points per yuan for this member (None: not a deduction), the
    # programme's standard rate, and the tier that lowered it (None: it is the standard one).
    rate: int | None = None
    standard_rate: int = 0
    rate_tier: Tier | None = None

    @property
    def saving(self) -> int:
        """Points the member's tier saves on this bill deduction against the standard rate."""
        if self.yuan is None or self.rate is None:
            return 0
        return max(0, self.yuan * self.standard_rate - self.price.points)


async def offer_redemption(
    programme: Programme,
    member_id: int,
    sku: str,
    yuan: int | None = None,
) -> PendingRedemption:
    """Price an item (or a bill deduction of `yuan`) now for this member's tier and record the
    offer its confirmation button redeems; raises RuleError (TierOnly included),
    InsufficientPoints, SoldOut, NotAvailable, LimitReached, CatalogPriceChanged."""
    config, now = programme.config, programme.now()
    item = config.mall.item(sku)
    if item is None or sku not in await item_states(programme):
        raise RuleError(N_("button.expired"))
    if (item.kind == "deduction") != (yuan is not None):
        raise RuleError(N_("button.expired"))  # an amount only goes with a bill deduction
    who = await mall_member(programme, member_id)
    tier, priority_skus = who.tier, who.priority_skus
    # Refused before any points are looked at: a forged or stale button for a tier-only item.
    refuse_tier_only(item_access(item, tier, now, config, priority_skus=priority_skus))
    rate: int | None = None
    if yuan is None:
        price = mall_price(item, now, config)
    else:
        rate = deduction_rate(tier, config)
        points = deduction_points(yuan, config, rate)
        price = MallPrice(points, points, None)
    plan = await programme.ledger.plan_spend(member_id, price.points, now)
    # The store checks the price against the catalog, with the tier it reads in the same
    # transaction, and refuses one that does not match.
    offer = await programme.mall.create_offer(
        member_id,
        sku,
        price.points,
        now=now,
        ttl=timedelta(minutes=config.mall.offer_minutes),
        deduction_yuan=None if yuan is None else Decimal(yuan),
        terms=mall_terms(item, member_id, now, config),
    )
    available = await programme.ledger.available(member_id, now)
    valid_until = voucher_last_day(item, now, config)
    standard = config.redemption.deduction_points_per_yuan
    return PendingRedemption(
        offer,
        item,
        yuan,
        price,
        plan,
        available - price.points,
        valid_until,
        rate,
        standard,
        tier if rate is not None and rate != standard else None,
    )


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A confirmed redemption (or the one a repeated tap already made) and the points left."""

    redemption: Redemption
    available: int


async def confirm_redemption(
    programme: Programme,
    member_id: int,
    offer_id: int,
    *,
    actor: str,
) -> Redeemed:
    """Redeem the member's offer once, at the price it still has now for the tier they hold
    now (a tier changed since the quote: CatalogPriceChanged or TierOnly, never another
    price), its code valid from the day it is redeemed; raises OfferExpired,
    CatalogPriceChanged, InsufficientPoints, SoldOut, NotAvailable, LimitReached, TierOnly."""
    config, now = programme.config, programme.now()
    offer = await programme.mall.offer(offer_id, member_id)
    # Counted from the redeeming instant, not the offer's: a confirmation tapped after
    # midnight gives the member the whole validity.
    item = config.mall.item(offer.sku)
    valid_until = None if item is None else voucher_last_day(item, now, config)
    redemption = await programme.mall.redeem(
        offer_id,
        member_id,
        now=now,
        actor=actor,
        valid_until=valid_until,
        refund_if_unused=item is not None and item.refund_if_unused,
        terms=None if item is None else mall_terms(item, member_id, now, config),
    )
    note_booked(redemption.spend_operation_id)
    return Redeemed(redemption, await programme.ledger.available(member_id, now))


async def fulfil_redemption(
    programme: Programme, code: str, *, actor: str, staff_id: int
) -> Redemption:
    """Staff accept a code now: goods handed over, a voucher taken at the till, refused after
    its last valid day; raises NotFound, OutOfScope (a partner's, before anything else is
    said about the code), InvalidState, VoucherExpired."""
    # A redemption's SKU never changes, so checking it before the store's step is safe.
    check_scope(programme.config, staff_id, (await programme.mall.redemption_by_code(code)).sku)
    now = programme.now()
    today = local_today(now, programme.config)
    return await programme.mall.fulfil(code, actor=actor, today=today, now=now)


async def restock(programme: Programme, sku: str, left: int, *, staff_id: int) -> ItemState:
    """Staff's /stock: `left` more units to redeem from now on; raises OutOfScope (a partner's
    item outside its scope, or an unknown SKU), NotFound."""
    check_scope(programme.config, staff_id, sku)
    return await programme.mall.set_stock(sku, left, now=programme.now())


# --- returns, cancellations and the merchant's refunds ------------------------------------

CANCEL: Final = "cancel"
RETURN: Final = "return"
# What a member may do inside the return window with what they redeemed, by kind: (before it
# is collected or used, after). CANCEL refunds at once with no visit; RETURN asks for a reason
# and staff inspect the goods brought back. The /redemptions buttons, the store's checks and
# /rules all read this one table.
RETURNS: Final[dict[str, tuple[str | None, str | None]]] = {
    "goods": (CANCEL, RETURN),
    "service": (CANCEL, None),  # a service enjoyed cannot be handed back
    "voucher": (CANCEL, None),  # a voucher used at the till took its discount
    "deduction": (CANCEL, None),  # so did a bill deduction
}
# Why a member returns picked-up goods (stored as is; shown through the catalogs).
RETURN_REASONS: Final = ("damaged", "wrong_item", "not_as_described", "changed_mind", "other")
# Why staff refuse a return, offered as buttons; anything else is typed with /reject_return.
REJECTION_REASONS: Final = ("not_brought", "used", "incomplete")


def returnable_after_pickup(kind: str) -> bool:
    """Whether what a member redeemed of this kind can still be returned once collected."""
    return RETURNS.get(kind, (None, None))[1] == RETURN


def return_deadline(redemption: Redemption, config: Config) -> datetime:
    """The last instant a member may return or cancel what they redeemed."""
    return redemption.created_at + timedelta(days=config.redemption.return_window_days)


def _kinds(option: str, collected: bool) -> frozenset[str]:
    """The kinds the table lets a member CANCEL or RETURN, before or after collecting."""
    return frozenset(kind for kind, options in RETURNS.items() if options[collected] == option)


def birthday_gift(redemption: Redemption) -> bool:
    """True for an uncollected item a family birthday gave (bot/programme/dependants.py)."""
    # Redeemed by the birthday job, not the member: until collected, the redeeming actor is
    # the last to have handled it.
    return redemption.status == "issued" and redemption.handled_by == GIFT_ACTOR


def _option_by_state(redemption: Redemption) -> str | None:
    """CANCEL, RETURN or None by the redemption's kind and state alone."""
    options = RETURNS.get(redemption.kind, (None, None))
    if birthday_gift(redemption):
        # A gift is not the member's points to take back: cancelling it would turn the
        # item into its price in points.
        return None
    if redemption.status == "issued":
        return options[0]
    if redemption.status == "used" and redemption.return_requested_at is None:
        return options[1]  # a return refused once is not asked for again
    return None


def return_option(redemption: Redemption, config: Config, now: datetime) -> str | None:
    """CANCEL, RETURN, or None when the member can do neither now."""
    # A code past its last valid day is expired, not returned (its item's terms decide).
    if now > return_deadline(redemption, config) or voucher_expired(redemption, now, config):
        return None
    return _option_by_state(redemption)


def returnable(redemption: Redemption, config: Config, now: datetime) -> bool:
    """True when the member may still cancel or return it."""
    return return_option(redemption, config, now) is not None


@dataclass(frozen=True, slots=True)
class ReturnTerms:
    """What /rules says about returns: the window, which of the catalog's kinds can be
    cancelled before collection, returned after it, or not returned once used, and how the
    merchant makes good an order it withdraws."""

    days: int
    cancel_kinds: tuple[str, ...]
    return_kinds: tuple[str, ...]
    final_kinds: tuple[str, ...]
    merchant_min_days: int
    compensation_percent: int


def return_terms(config: Config) -> ReturnTerms:
    """The returns rules for the kinds the catalog offers, from the table the store checks."""
    offered = [kind for kind in RETURNS if any(i.kind == kind for i in config.mall.items)]
    return ReturnTerms(
        days=config.redemption.return_window_days,
        cancel_kinds=tuple(k for k in offered if RETURNS[k][0] == CANCEL),
        return_kinds=tuple(k for k in offered if RETURNS[k][1] == RETURN),
        final_kinds=tuple(k for k in offered if RETURNS[k][1] is None),
        merchant_min_days=config.expiry.refund_min_validity_days,
        compensation_percent=config.mall.delist_compensation_percent,
    )


@dataclass(frozen=True, slots=True)
class RedemptionsPage:
    """A page of a member's redemptions, newest first, each with what the member can do with
    it now (CANCEL, RETURN or None), and how many there are in all."""

    redemptions: tuple[tuple[Redemption, str | None], ...]
    total: int
    # Ids of the codes on the page past their last valid day, never used.
    expired: frozenset[int] = field(default_factory=frozenset)


async def redemptions_page(
    programme: Programme, member_id: int, *, offset: int, limit: int
) -> RedemptionsPage:
    """What /redemptions lists for a member now."""
    config, now = programme.config, programme.now()
    found, total = await programme.mall.redemptions(member_id, offset=offset, limit=limit)
    expired = frozenset(r.id for r in found if voucher_expired(r, now, config))
    options = tuple((r, return_option(r, config, now)) for r in found)
    return RedemptionsPage(options, total, expired)


async def return_choice(programme: Programme, member_id: int, code: str) -> tuple[Redemption, str]:
    """The member's redemption and what they may do with it now; raises NotFound,
    InvalidState, ReturnWindowClosed."""
    config = programme.config
    found = await programme.mall.redemption_by_code(code)
    if found.member_id != member_id:
        raise NotFound(f"member {member_id} has no redemption {code!r}")
    option = _option_by_state(found)
    if option is None:
        refused = found.status == "used" and found.return_requested_at is not None
        raise InvalidState("return_rejected" if refused else found.status)
    if programme.now() > return_deadline(found, config):
        raise ReturnWindowClosed(return_deadline(found, config))
    return found, option


async def cancel_redemption(
    programme: Programme, member_id: int, code: str, *, actor: str
) -> Settlement:
    """Cancel what the member has not collected, inside the window: the points come back at
    once (once; a repeat is replayed); raises NotFound, InvalidState, ReturnWindowClosed."""
    found = await programme.mall.redemption_by_code(code)
    if found.member_id == member_id and birthday_gift(found):
        raise InvalidState(found.status)
    return await programme.mall.cancel_redemption(
        code,
        member_id,
        now=programme.now(),
        window=timedelta(days=programme.config.redemption.return_window_days),
        kinds=_kinds(CANCEL, collected=False),
        actor=actor,
    )


async def request_return(
    programme: Programme, member_id: int, code: str, reason: str, *, actor: str
) -> Redemption:
    """Ask, once, to return picked-up goods inside the window, for staff to inspect; raises
    RuleError (an unknown reason), NotFound, InvalidState, ReturnWindowClosed."""
    if reason not in RETURN_REASONS:
        raise RuleError(N_("button.expired"))
    return await programme.mall.request_return(
        code,
        member_id,
        reason=reason,
        now=programme.now(),
        window=timedelta(days=programme.config.redemption.return_window_days),
        kinds=_kinds(RETURN, collected=True),
        actor=actor,
    )


def item_names(redemption: Redemption, config: Config) -> dict[str, str]:
    """The redeemed item's name in every language (a notice is rendered in the member's)."""
    item = config.mall.item(redemption.sku)
    names = {lang: redemption.sku if item is None else item.name.get(lang) for lang in LANGUAGES}
    if redemption.deduction_yuan is not None:
        names = {lang: f"{name} ¥{redemption.deduction_yuan}" for lang, name in names.items()}
    return names


def _notice(
    step: str, key: str, *, no_bonus_key: str | None = None, **params: object
) -> Callable[[Settlement], Push]:
    """The member's service notice of a settlement (keyed per redemption and step: once);
    `no_bonus_key` when no bonus was paid."""

    def build(settled: Settlement) -> Push:
        redemption = settled.redemption
        return Push(
            dedupe_key=f"redemption:{redemption.id}:{step}",
            member_id=redemption.member_id,
            category=SERVICE,
            message_key=key if settled.bonus or no_bonus_key is None else no_bonus_key,
            params={
                "code": redemption.code,
                "points": redemption.points,
                "bonus": settled.bonus,
                "available": settled.available,
                **params,
            },
        )

    return build


async def pending_returns(programme: Programme, *, limit: int) -> tuple[list[Redemption], int]:
    """The oldest returns waiting for staff, and how many wait in all."""
    return await programme.mall.pending_returns(limit=limit)


async def approve_return(programme: Programme, code: str, *, actor: str) -> Settlement:
    """Staff accept returned goods: the exact points come back, the member is told with their
    new balance; raises NotFound, InvalidState (decided already)."""
    config = programme.config
    found = await programme.mall.redemption_by_code(code)
    return await programme.mall.approve_return(
        code,
        actor=actor,
        now=programme.now(),
        notice=_notice(
            "approved", N_("mall_admin.approve.member_notice"), item=item_names(found, config)
        ),
    )


async def reject_return(
    programme: Programme, code: str, *, reason: str | Mapping[str, str], actor: str
) -> Settlement:
    """Staff refuse a return with a reason the member is told (typed, or in every language);
    raises NotFound, InvalidState (decided already), InvalidRequest (no reason)."""
    config = programme.config
    found = await programme.mall.redemption_by_code(code)
    note = reason if isinstance(reason, str) else reason[config.program.default_language]
    return await programme.mall.reject_return(
        code,
        actor=actor,
        reason=note,
        now=programme.now(),
        notice=_notice(
            "rejected",
            N_("mall_admin.reject.member_notice"),
            item=item_names(found, config),
            reason=reason if isinstance(reason, str) else dict(reason),
        ),
    )


def merchant_terms(reason: str, now: datetime, config: Config) -> MerchantTerms:
    """How the merchant makes good an order it withdraws (delisting, an order it cannot
    honour): restored points valid at least the minimum days, plus the compensation bonus,
    which expires like any bonus."""
    return MerchantTerms(
        reason=reason,
        compensation_percent=config.mall.delist_compensation_percent,
        compensation_expires_at=expires_at(now, config, "compensation"),
        min_validity_days=config.expiry.refund_min_validity_days,
    )


async def cannot_fulfil(programme: Programme, code: str, *, reason: str, actor: str) -> Settlement:
    """Staff cannot honour one order: it is refunded as the merchant's fault with compensation,
    and the member is told; raises NotFound, InvalidState (collected or settled already),
    InvalidRequest."""
    config, now = programme.config, programme.now()
    found = await programme.mall.redemption_by_code(code)
    return await programme.mall.cannot_fulfil(
        code,
        merchant_terms(reason, now, config),
        actor=actor,
        now=now,
        notice=_notice(
            "unfulfilled",
            N_("returns.notice_cannot_fulfil"),
            no_bonus_key=N_("returns.notice_cannot_fulfil_plain"),
            item=item_names(found, config),
            reason=reason,
            days=config.expiry.refund_min_validity_days,
        ),
    )


async def delist_item(programme: Programme, sku: str, *, reason: str, actor: str) -> DelistReport:
    """Withdraw an item for good: open redemptions are refunded as the merchant's fault and
    compensated with bonus points that expire like any bonus; each member is told through the
    outbox in the same transaction; raises NotFound."""
    config, now = programme.config, programme.now()
    terms = merchant_terms(reason, now, config)
    return await programme.mall.delist(
        sku,
        reason=reason,
        compensation_percent=terms.compensation_percent,
        compensation_expires_at=terms.compensation_expires_at,
        min_validity_days=terms.min_validity_days,
        actor=actor,
        now=now,
        notice=delist_notice(config, reason),
    )
