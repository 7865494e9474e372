"""The points mall's rules: what members see, what it costs now, redeeming, returns, delisting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from bot.config import Config, MallCategory, MallDiscount, MallItem
from bot.i18n import N_
from bot.programme.calendar import end_of_day
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.notices import delist_notice
from storage.mall import (
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


async def item_view(programme: Programme, sku: str) -> ItemView:
    """One item as a member sees it now; raises RuleError for an unknown SKU."""
    config, now = programme.config, programme.now()
    item = config.mall.item(sku)
    state = (await item_states(programme)).get(sku)
    if item is None or state is None:
        raise RuleError(N_("button.expired"))
    price = None if item.kind == "deduction" else mall_price(item, now, config)
    return ItemView(item, state, price, state.availability(now))


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
    return PendingRedemption(offer, item, yuan, price, plan, available - price.points)


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A confirmed redemption (or the one a repeated tap already made) and the points left."""

    redemption: Redemption
    available: int


async def confirm_redemption(
    programme: Programme, member_id: int, offer_id: int, *, actor: str
) -> Redeemed:
    """Redeem the member's offer once, at the price it still has now; raises OfferExpired,
    CatalogPriceChanged, InsufficientPoints, SoldOut, NotAvailable, LimitReached."""
    now = programme.now()
    redemption = await programme.mall.redeem(offer_id, member_id, now=now, actor=actor)
    return Redeemed(redemption, await programme.ledger.available(member_id, now))


# --- returns and delisting -------------------------------------------------------------------


def return_deadline(redemption: Redemption, config: Config) -> datetime:
    """The last instant a member may return what they redeemed."""
    return redemption.created_at + timedelta(days=config.redemption.return_window_days)


def returnable(redemption: Redemption, config: Config, now: datetime) -> bool:
    """True when the member may still ask to return it."""
    return redemption.status == "issued" and now <= return_deadline(redemption, config)


@dataclass(frozen=True, slots=True)
class RedemptionsPage:
    """A page of a member's redemptions, newest first, each with whether it can be returned
    now, and how many there are in all."""

    redemptions: tuple[tuple[Redemption, bool], ...]
    total: int


async def redemptions_page(
    programme: Programme, member_id: int, *, offset: int, limit: int
) -> RedemptionsPage:
    """What /redemptions lists for a member now."""
    config, now = programme.config, programme.now()
    found, total = await programme.mall.redemptions(member_id, offset=offset, limit=limit)
    return RedemptionsPage(tuple((r, returnable(r, config, now)) for r in found), total)


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
    compensated with bonus points that expire like any bonus; each member is told through the
    outbox in the same transaction; raises NotFound."""
    config, now = programme.config, programme.now()
    return await programme.mall.delist(
        sku,
        reason=reason,
        compensation_percent=config.mall.delist_compensation_percent,
        compensation_expires_at=expires_at(now, config),
        min_validity_days=config.expiry.refund_min_validity_days,
        actor=actor,
        now=now,
        notice=delist_notice(config, reason),
    )
