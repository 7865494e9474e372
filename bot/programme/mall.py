"""The points mall's rules: what members see, what it costs now, redeeming, returns, delisting."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final

from bot.config import Config, Localized, MallCategory, MallDiscount, MallItem
from bot.i18n import N_
from bot.programme.calendar import end_of_day, local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from storage.mall import (
    USABLE_STATUSES,
    CatalogDiscount,
    CatalogEntry,
    DelistReport,
    ItemState,
    Offer,
    Redemption,
    deduction_price,
    unit_price,
)

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
    return deduction_price(config.redemption.deduction_points_per_yuan, Decimal(yuan))


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
    """An item on a shelf with its price now (None: a bill deduction, priced per yuan)."""

    item: MallItem
    price: MallPrice | None


async def shelf(programme: Programme, category_id: str) -> tuple[MallCategory, list[PricedItem]]:
    """A shelf's visible items with their prices now; raises RuleError for an unknown shelf."""
    config, now = programme.config, programme.now()
    category = config.mall.category(category_id)
    if category is None:
        raise RuleError(N_("button.expired"))
    shown = visible_items(config, await item_states(programme), now)
    return category, [
        PricedItem(item, None if item.kind == "deduction" else mall_price(item, now, config))
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


async def item_view(programme: Programme, sku: str) -> ItemView:
    """One item as a member sees it now; raises RuleError for an unknown SKU."""
    config, now = programme.config, programme.now()
    item = config.mall.item(sku)
    state = (await item_states(programme)).get(sku)
    if item is None or state is None:
        raise RuleError(N_("button.expired"))
    price = None if item.kind == "deduction" else mall_price(item, now, config)
    valid_until = voucher_last_day(item, now, config)
    return ItemView(item, state, price, state.availability(now), valid_until)


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


async def offer_redemption(
    programme: Programme, member_id: int, sku: str, yuan: int | None = None
) -> PendingRedemption:
    """Price an item (or a bill deduction of `yuan`) now and record the offer its confirmation
    button redeems; raises RuleError, InsufficientPoints, SoldOut, NotAvailable, LimitReached,
    CatalogPriceChanged."""
    config, now = programme.config, programme.now()
    item = config.mall.item(sku)
    if item is None or sku not in await item_states(programme):
        raise RuleError(N_("button.expired"))
    if (item.kind == "deduction") != (yuan is not None):
        raise RuleError(N_("button.expired"))  # an amount only goes with a bill deduction
    if yuan is None:
        price = mall_price(item, now, config)
    else:
        points = deduction_points(yuan, config)
        price = MallPrice(points, points, None)
    plan = await programme.ledger.plan_spend(member_id, price.points, now)
    # The store checks the price against the catalog and refuses one that does not match.
    offer = await programme.mall.create_offer(
        member_id,
        sku,
        price.points,
        now=now,
        ttl=timedelta(minutes=config.mall.offer_minutes),
        deduction_yuan=None if yuan is None else Decimal(yuan),
    )
    available = await programme.ledger.available(member_id, now)
    valid_until = voucher_last_day(item, now, config)
    return PendingRedemption(offer, item, yuan, price, plan, available - price.points, valid_until)


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A confirmed redemption (or the one a repeated tap already made) and the points left."""

    redemption: Redemption
    available: int


async def confirm_redemption(
    programme: Programme, member_id: int, offer_id: int, *, actor: str
) -> Redeemed:
    """Redeem the member's offer once, at the price it still has now, its code valid from the
    day it is redeemed; raises OfferExpired, CatalogPriceChanged, InsufficientPoints, SoldOut,
    NotAvailable, LimitReached."""
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
    )
    return Redeemed(redemption, await programme.ledger.available(member_id, now))


async def fulfil_redemption(programme: Programme, code: str, *, actor: str) -> Redemption:
    """Staff accept a code now: goods handed over, a voucher taken at the till, refused after
    its last valid day; raises NotFound, InvalidState, VoucherExpired."""
    now = programme.now()
    today = local_today(now, programme.config)
    return await programme.mall.fulfil(code, actor=actor, today=today, now=now)


# --- returns and delisting -------------------------------------------------------------------


def return_deadline(redemption: Redemption, config: Config) -> datetime:
    """The last instant a member may return what they redeemed."""
    return redemption.created_at + timedelta(days=config.redemption.return_window_days)


def returnable(redemption: Redemption, config: Config, now: datetime) -> bool:
    """True when the member may still ask to return it."""
    # A code past its last valid day is expired, not returned (its item's terms decide).
    return (
        redemption.status == "issued"
        and now <= return_deadline(redemption, config)
        and not voucher_expired(redemption, now, config)
    )


@dataclass(frozen=True, slots=True)
class RedemptionsPage:
    """A page of a member's redemptions, newest first, each with whether it can be returned
    now, and how many there are in all."""

    redemptions: tuple[tuple[Redemption, bool], ...]
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
    return RedemptionsPage(tuple((r, returnable(r, config, now)) for r in found), total, expired)


async def request_return(
    programme: Programme, member_id: int, code: str, *, actor: str
) -> Redemption:
    """A member returns a redemption inside the return window: goods wait for staff, anything
    else is refunded at once; raises NotFound, InvalidState, ReturnWindowClosed."""
    window = timedelta(days=programme.config.redemption.return_window_days)
    return await programme.mall.request_return(
        code, member_id, now=programme.now(), window=window, actor=actor
    )


async def delist_item(programme: Programme, sku: str, *, reason: str, actor: str) -> DelistReport:
    """Withdraw an item for good: open redemptions are refunded as the merchant's fault and
    compensated with bonus points that expire like any bonus; raises NotFound."""
    config, now = programme.config, programme.now()
    return await programme.mall.delist(
        sku,
        reason=reason,
        compensation_percent=config.mall.delist_compensation_percent,
        compensation_expires_at=expires_at(now, config, "compensation"),
        min_validity_days=config.expiry.refund_min_validity_days,
        actor=actor,
        now=now,
    )
