"""The points mall: catalog and prices, offers behind confirmation buttons, redemptions, returns.

Like the ledger, the core is synchronous functions taking a `sqlite3.Connection`, each
all-or-nothing through `storage.sql.atomic`; `Mall` is the async facade. The mall tables
are state machines, but every point they move goes through the ledger with a key.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

from storage import ledger
from storage.errors import (
    CatalogPriceChanged,
    InvalidRequest,
    InvalidState,
    LimitReached,
    NotAvailable,
    NotFound,
    OfferExpired,
    ReturnWindowClosed,
    SoldOut,
    VoucherExpired,
)
from storage.facade import Facade, looks_up, reads, writes
from storage.pushes import Push, enqueue
from storage.sql import atomic, dt, dt_or_none, insert_id, required_now, ts, ts_or_none
from storage.store import Store

T = TypeVar("T")

KINDS: Final = frozenset({"goods", "voucher", "deduction", "service"})
# Redemptions that hold a unit of stock and count toward the per-member limit.
OPEN_STATUSES: Final = ("issued", "return_requested", "return_rejected")
# Redemptions a cashier may still accept (/fulfil): what a voucher's validity is about.
USABLE_STATUSES: Final = ("issued", "return_rejected")
CODE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
CODE_LENGTH: Final = 8
ITEM_STATES_TTL: Final = 1.0  # seconds a shelf may show stock changed by another process


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogDiscount:
    """A sale on one SKU: `percent` off from `starts_at` until (not including) `ends_at`."""

    id: str
    percent: int
    starts_at: datetime
    ends_at: datetime

    def runs_at(self, now: datetime) -> bool:
        """True when the sale is on at `now`."""
        return self.starts_at <= now < self.ends_at


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What the configuration says about one SKU (a bill deduction's price is per yuan)."""

    sku: str
    kind: str
    category: str
    price: int
    stock: int | None
    per_member_limit: int | None
    available_from: datetime | None
    available_until: datetime | None
    discounts: tuple[CatalogDiscount, ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogPrice:
    """What one unit costs at an instant: the list price less the best sale running then."""

    points: int
    list_points: int
    discount: CatalogDiscount | None


@dataclass(frozen=True, slots=True)
class ItemState:
    """A SKU as the database knows it: configuration plus stock, sales and delisting."""

    sku: str
    kind: str
    category: str
    price: int
    stock: int | None
    sold: int
    per_member_limit: int | None
    available_from: datetime | None
    available_until: datetime | None
    listed: bool
    delisted_at: datetime | None
    delist_reason: str | None

    @property
    def left(self) -> int | None:
        """Units still available; None = unlimited."""
        return None if self.stock is None else self.stock - self.sold

    def availability(self, now: datetime) -> str:
        """'ok', or why the item cannot be redeemed at `now`: 'not_started', 'ended',
        'delisted', 'unlisted' or 'sold_out'."""
        if self.delisted_at is not None:
            return "delisted"
        if not self.listed:
            return "unlisted"
        if self.available_from is not None and now < self.available_from:
            return "not_started"
        if self.available_until is not None and now >= self.available_until:
            return "ended"
        if self.left is not None and self.left <= 0:
            return "sold_out"
        return "ok"


@dataclass(frozen=True, slots=True)
class MemberTerms:
    """How one member's standing changes an item's catalog terms: the moment it opens for them
    (early access; None: the catalog's available_from) and a bill deduction's points per yuan
    (None: the catalog's)."""

    opens_at: datetime | None = None
    points_per_yuan: int | None = None


# Read inside the offering or redeeming transaction (so a quote and its confirmation see the
# same standing); it may raise to refuse the member outright.
TermsReader = Callable[[sqlite3.Connection], MemberTerms]


@dataclass(frozen=True, slots=True)
class Offer:
    """A pending redemption: what the confirmation button will buy, and until when."""

    id: int
    member_id: int
    sku: str
    points: int
    deduction_yuan: Decimal | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Redemption:
    """What a member got for their points, and where it stands."""

    id: int
    code: str
    member_id: int
    telegram_id: int
    sku: str
    kind: str
    points: int
    deduction_yuan: Decimal | None
    status: str
    created_at: datetime
    used_at: datetime | None
    return_requested_at: datetime | None
    resolved_at: datetime | None
    note: str | None
    spend_operation_id: int
    refund_operation_id: int | None
    compensation_operation_id: int | None
    handled_by: str | None = None
    # The last local day a voucher can be used (through 23:59:59 local); None = no limit.
    valid_until: date | None = None
    # The item's terms when redeemed: a code that lapses unused gives its points back.
    refund_if_unused: bool = False
    return_reason: str | None = None
    # Who the member is, for staff reviewing a return (/returns).
    member_code: str = ""
    member_name: str = ""
    replayed: bool = field(default=False, compare=False)

    @property
    def collected(self) -> bool:
        """True once the member picked it up or used it (it stays so through a return)."""
        return self.used_at is not None


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a cancellation, a return's decision or a merchant's refund did: the redemption
    after it, the bonus paid with it, and the member's spendable points after it."""

    redemption: Redemption
    bonus: int
    available: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class MerchantTerms:
    """How the merchant makes good an order it withdraws: restored points valid at least
    `min_validity_days`, plus `compensation_percent` of the price as bonus points."""

    reason: str
    compensation_percent: int
    compensation_expires_at: datetime | None
    min_validity_days: int


# A member's notice of a settlement, built inside its transaction (bot/programme/mall.py).
Notice = Callable[[Settlement], Push]


@dataclass(frozen=True, slots=True)
class DelistReport:
    """The delisted item and each redemption it cancelled, with the bonus points paid."""

    item: ItemState
    cancelled: tuple[tuple[Redemption, int], ...]


# --- the price rule ------------------------------------------------------------------------


def unit_price(
    list_points: int, discounts: Iterable[CatalogDiscount], now: datetime
) -> CatalogPrice:
    """One unit's price at `now`: the best running sale off the list price, rounded in the
    member's favour, never free."""
    # The one definition of a price: the programme shows it (from the configuration's
    # entries), the store charges it (from the same entries as synced), so they cannot differ.
    best = max((d for d in discounts if d.runs_at(now)), key=lambda d: d.percent, default=None)
    if best is None:
        return CatalogPrice(list_points, list_points, None)
    # Rounded down, and at least 1 point: a sale takes at most price - 1 points off.
    return CatalogPrice(max(1, list_points * (100 - best.percent) // 100), list_points, best)


def deduction_price(points_per_yuan: int, yuan: Decimal) -> int:
    """Points a bill deduction of `yuan` costs; raises InvalidRequest unless a whole number."""
    points = yuan * points_per_yuan
    if points != points.to_integral_value():
        raise InvalidRequest(f"{yuan} yuan at {points_per_yuan} points a yuan is not whole points")
    return int(points)


# --- helpers -------------------------------------------------------------------------------

_ITEM_COLUMNS: Final = (
    "sku, kind, category, price, stock, sold, per_member_limit, available_from,"
    " available_until, listed, delisted_at, delist_reason"
)
_REDEMPTION_SELECT: Final = (
    "SELECT r.id, r.code, r.member_id, m.telegram_id, r.sku, r.kind, r.points,"
    " r.deduction_yuan, r.status, r.created_at, r.used_at, r.return_requested_at,"
    " r.resolved_at, r.note, r.spend_operation_id, r.refund_operation_id,"
    " r.compensation_operation_id, r.handled_by, r.valid_until, r.refund_if_unused,"
    " r.return_reason, m.member_code, m.first_name"
    " FROM redemptions AS r JOIN members AS m ON m.id = r.member_id"
)


def _item_state(row: Sequence[Any]) -> ItemState:
    return ItemState(
        sku=row[0],
        kind=row[1],
        category=row[2],
        price=row[3],
        stock=row[4],
        sold=row[5],
        per_member_limit=row[6],
        available_from=dt_or_none(row[7]),
        available_until=dt_or_none(row[8]),
        listed=bool(row[9]),
        delisted_at=dt_or_none(row[10]),
        delist_reason=row[11],
    )


def _decimal_or_none(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _redemption(row: Sequence[Any], *, replayed: bool = False) -> Redemption:
    return Redemption(
        id=row[0],
        code=row[1],
        member_id=row[2],
        telegram_id=row[3],
        sku=row[4],
        kind=row[5],
        points=row[6],
        deduction_yuan=_decimal_or_none(row[7]),
        status=row[8],
        created_at=dt(row[9]),
        used_at=dt_or_none(row[10]),
        return_requested_at=dt_or_none(row[11]),
        resolved_at=dt_or_none(row[12]),
        note=row[13],
        spend_operation_id=row[14],
        refund_operation_id=row[15],
        compensation_operation_id=row[16],
        handled_by=row[17],
        valid_until=None if row[18] is None else date.fromisoformat(row[18]),
        refund_if_unused=bool(row[19]),
        return_reason=row[20],
        member_code=row[21],
        member_name=row[22] or "",
        replayed=replayed,
    )


def _offer(row: Sequence[Any]) -> Offer:
    return Offer(
        id=row[0],
        member_id=row[1],
        sku=row[2],
        points=row[3],
        deduction_yuan=_decimal_or_none(row[4]),
        created_at=dt(row[5]),
        expires_at=dt(row[6]),
    )


def _normal_code(code: str) -> str:
    """Codes are stored upper-case without separators; people type them in any case, in
    groups with spaces or dashes (full-width ones are read by bot.programme.till)."""
    return "".join(code.replace("-", " ").split()).upper()


def _new_code(conn: sqlite3.Connection) -> str:
    """A random redemption code not yet used (the single writer makes check-then-insert safe)."""
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if conn.execute("SELECT 1 FROM redemptions WHERE code = ?", (code,)).fetchone() is None:
            return code


def _redemption_by_id(conn: sqlite3.Connection, redemption_id: int) -> Redemption:
    row = conn.execute(_REDEMPTION_SELECT + " WHERE r.id = ?", (redemption_id,)).fetchone()
    if row is None:
        raise NotFound(f"no redemption {redemption_id}")
    return _redemption(row)


def _require_text(value: str, what: str) -> None:
    if not value or not value.strip():
        raise InvalidRequest(f"{what} cannot be empty")


def _check_entry(entry: CatalogEntry) -> None:
    """Refuse what the schema would refuse, with a message naming the SKU."""
    if not entry.sku:
        raise InvalidRequest("a catalog item needs a sku")
    if entry.kind not in KINDS:
        raise InvalidRequest(f"item {entry.sku}: unknown kind {entry.kind!r}")
    if entry.price <= 0:
        raise InvalidRequest(f"item {entry.sku}: price must be at least 1 point")
    if entry.stock is not None and entry.stock < 0:
        raise InvalidRequest(f"item {entry.sku}: stock cannot be negative")
    if entry.per_member_limit is not None and entry.per_member_limit <= 0:
        raise InvalidRequest(f"item {entry.sku}: per_member_limit must be at least 1")
    if (
        entry.available_from is not None
        and entry.available_until is not None
        and entry.available_until <= entry.available_from
    ):
        raise InvalidRequest(f"item {entry.sku}: available_until is not after available_from")
    ids = [discount.id for discount in entry.discounts]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise InvalidRequest(f"item {entry.sku}: duplicate discounts {', '.join(duplicates)}")
    if entry.discounts and entry.kind == "deduction":
        raise InvalidRequest(f"item {entry.sku}: a bill deduction is priced per yuan, not on sale")
    for discount in entry.discounts:
        if not discount.id:
            raise InvalidRequest(f"item {entry.sku}: a discount needs an id")
        if isinstance(discount.percent, bool) or not 1 <= discount.percent <= 99:
            raise InvalidRequest(f"item {entry.sku}: discount {discount.id} percent not in 1..99")
        if ts(discount.ends_at) <= ts(discount.starts_at):
            raise InvalidRequest(f"item {entry.sku}: discount {discount.id} ends before it starts")


def _discounts(conn: sqlite3.Connection, sku: str) -> list[CatalogDiscount]:
    return [
        CatalogDiscount(row[0], row[1], dt(row[2]), dt(row[3]))
        for row in conn.execute(
            "SELECT discount, percent, starts_at, ends_at FROM catalog_discounts"
            " WHERE sku = ? ORDER BY discount",
            (sku,),
        )
    ]


def _points_due(
    conn: sqlite3.Connection, state: ItemState, yuan: Decimal | None, now: datetime
) -> int:
    """What the catalog charges at `now` for one unit, or for a bill deduction of `yuan`."""
    if yuan is not None:
        return deduction_price(state.price, yuan)
    return unit_price(state.price, _discounts(conn, state.sku), now).points


def _check_price(
    conn: sqlite3.Connection, state: ItemState, points: int, yuan: Decimal | None, now: datetime
) -> None:
    due = _points_due(conn, state, yuan, now)
    if points != due:
        raise CatalogPriceChanged(state.sku, points, due)


def _check_available(state: ItemState, now: datetime) -> None:
    reason = state.availability(now)
    if reason == "sold_out":
        raise SoldOut(f"{state.sku} is sold out")
    if reason != "ok":
        raise NotAvailable(reason)


def _for_member(conn: sqlite3.Connection, state: ItemState, terms: TermsReader | None) -> ItemState:
    """The item as this member may redeem it: their opening moment and deduction rate."""
    if terms is None:
        return state
    found = terms(conn)
    if found.opens_at is not None and state.available_from is not None:
        state = replace(state, available_from=min(found.opens_at, state.available_from))
    if found.points_per_yuan is not None and state.kind == "deduction":
        state = replace(state, price=found.points_per_yuan)
    return state


def _check_limit(conn: sqlite3.Connection, state: ItemState, member_id: int) -> None:
    limit = state.per_member_limit
    if limit is not None and purchases_count(conn, member_id, state.sku) >= limit:
        raise LimitReached(limit)


def _merchant_refund(
    conn: sqlite3.Connection,
    redemption: Redemption,
    *,
    key: str,
    actor: str,
    reason: str,
    min_validity_days: int,
    now: datetime,
) -> ledger.OperationResult:
    """Give a redemption's points back as the merchant's fault: the exact lots they came from,
    each valid at least `min_validity_days` from now (DESIGN.md "Refund")."""
    return ledger.refund(
        conn,
        redemption.spend_operation_id,
        key=key,
        actor=actor,
        reason=reason,
        merchant_fault=True,
        min_validity_days=min_validity_days,
        now=now,
    )


# --- catalog -------------------------------------------------------------------------------


def sync_catalog(
    conn: sqlite3.Connection, entries: Sequence[CatalogEntry], now: datetime | None = None
) -> None:
    """Bring the catalog in line with the configuration: new SKUs take their stock from it,
    existing ones keep stock and units sold, missing ones are unlisted, the configured sales
    replace the previous ones; raises InvalidRequest."""
    now = required_now(now)
    skus = [entry.sku for entry in entries]
    if duplicates := sorted({sku for sku in skus if skus.count(sku) > 1}):
        raise InvalidRequest(f"duplicate skus {', '.join(duplicates)}")
    for entry in entries:
        _check_entry(entry)
    now_ts = ts(now)
    with atomic(conn):
        conn.executemany(
            "INSERT INTO catalog_items (sku, kind, category, price, stock, per_member_limit,"
            " available_from, available_until, listed, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
            # stock and sold are deliberately absent: /stock and sales outlive a reload.
            " ON CONFLICT (sku) DO UPDATE SET kind = excluded.kind,"
            " category = excluded.category, price = excluded.price,"
            " per_member_limit = excluded.per_member_limit,"
            " available_from = excluded.available_from,"
            " available_until = excluded.available_until, listed = 1,"
            " updated_at = excluded.updated_at"
            " WHERE (catalog_items.kind, catalog_items.category, catalog_items.price,"
            " catalog_items.per_member_limit, catalog_items.available_from,"
            " catalog_items.available_until, catalog_items.listed) IS NOT (excluded.kind,"
            " excluded.category, excluded.price, excluded.per_member_limit,"
            " excluded.available_from, excluded.available_until, 1)",
            [
                (
                    entry.sku,
                    entry.kind,
                    entry.category,
                    entry.price,
                    entry.stock,
                    entry.per_member_limit,
                    ts_or_none(entry.available_from),
                    ts_or_none(entry.available_until),
                    now_ts,
                )
                for entry in entries
            ],
        )
        conn.execute(
            "UPDATE catalog_items SET listed = 0, updated_at = ?"
            # NOT (x IN ...): storage/pg.py rewrites `x IN (json_each)`, not `x NOT IN`.
            " WHERE listed = 1 AND NOT (sku IN (SELECT value FROM json_each(?)))",
            (now_ts, json.dumps(skus)),
        )
        # Sales are the configuration's alone: the synced set replaces the last one.
        conn.execute("DELETE FROM catalog_discounts")
        conn.executemany(
            "INSERT INTO catalog_discounts (sku, discount, percent, starts_at, ends_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (entry.sku, d.id, d.percent, ts(d.starts_at), ts(d.ends_at))
                for entry in entries
                for d in entry.discounts
            ],
        )


def items(conn: sqlite3.Connection) -> list[ItemState]:
    """Every SKU ever configured, by sku."""
    return [
        _item_state(row)
        for row in conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM catalog_items ORDER BY sku"  # noqa: S608 - fixed
        )
    ]


def item(conn: sqlite3.Connection, sku: str) -> ItemState:
    """One SKU's state; raises NotFound."""
    row = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM catalog_items WHERE sku = ?",  # noqa: S608 - fixed
        (sku,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no catalog item {sku!r}")
    return _item_state(row)


def price_at(conn: sqlite3.Connection, sku: str, now: datetime) -> CatalogPrice:
    """One unit's price at `now` by the catalog and its sales; raises NotFound."""
    return unit_price(item(conn, sku).price, _discounts(conn, sku), now)


def purchases_count(conn: sqlite3.Connection, member_id: int, sku: str) -> int:
    """How many of the SKU the member holds toward its limit (returned/cancelled don't count)."""
    row = conn.execute(
        "SELECT count(*) FROM redemptions WHERE member_id = ? AND sku = ?"
        " AND status NOT IN ('returned', 'cancelled')",
        (member_id, sku),
    ).fetchone()
    return int(row[0])


def set_stock(
    conn: sqlite3.Connection, sku: str, left: int, *, now: datetime | None = None
) -> ItemState:
    """Make `left` more units available from now on (stock = sold + left); raises NotFound,
    InvalidRequest."""
    now = required_now(now)
    if isinstance(left, bool) or not isinstance(left, int) or left < 0:
        raise InvalidRequest(f"units left must be a whole number >= 0, not {left!r}")
    with atomic(conn):
        cur = conn.execute(
            "UPDATE catalog_items SET stock = sold + ?, updated_at = ? WHERE sku = ?",
            (left, ts(now), sku),
        )
        if cur.rowcount == 0:
            raise NotFound(f"no catalog item {sku!r}")
        return item(conn, sku)


# --- offers and redemptions ----------------------------------------------------------------


def create_offer(
    conn: sqlite3.Connection,
    member_id: int,
    sku: str,
    points: int,
    *,
    now: datetime | None = None,
    ttl: timedelta,
    deduction_yuan: Decimal | None = None,
    terms: TermsReader | None = None,
) -> Offer:
    """Record what a confirmation button will redeem, at the catalog's price now (on the
    member's `terms`, read in this transaction); raises NotFound, SoldOut, NotAvailable,
    CatalogPriceChanged, LimitReached, InvalidRequest, and what `terms` raises."""
    now = required_now(now)
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidRequest(f"points must be a positive integer, not {points!r}")
    if ttl <= timedelta(0):
        raise InvalidRequest("an offer must stay valid for some time")
    yuan: Decimal | None = None
    if deduction_yuan is not None:
        try:
            yuan = Decimal(str(deduction_yuan))
        except InvalidOperation as exc:
            raise InvalidRequest(f"not an amount of yuan: {deduction_yuan!r}") from exc
        if not yuan.is_finite() or yuan <= 0:
            raise InvalidRequest(f"a bill deduction must be a positive amount, not {yuan}")
    now_ts = ts(now)
    with atomic(conn):
        state = item(conn, sku)
        if (state.kind == "deduction") != (yuan is not None):
            raise InvalidRequest(
                f"{sku}: an amount of yuan goes with a bill deduction and only with one"
            )
        if conn.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
            raise NotFound(f"no member {member_id}")
        state = _for_member(conn, state, terms)
        _check_available(state, now)
        _check_price(conn, state, points, yuan, now)
        _check_limit(conn, state, member_id)
        expires_ts = ts(now + ttl)
        if expires_ts <= now_ts:  # a ttl under a second rounds away
            expires_ts = now_ts + 1
        offer_id = insert_id(
            conn,
            "INSERT INTO offers (member_id, sku, points, deduction_yuan, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (member_id, sku, points, None if yuan is None else str(yuan), now_ts, expires_ts),
        )
        return Offer(
            id=offer_id,
            member_id=member_id,
            sku=sku,
            points=points,
            deduction_yuan=yuan,
            created_at=dt(now_ts),
            expires_at=dt(expires_ts),
        )


def offer(conn: sqlite3.Connection, offer_id: int, member_id: int) -> Offer:
    """The member's offer (open or not); raises OfferExpired for anyone else's or none."""
    row = conn.execute(
        "SELECT id, member_id, sku, points, deduction_yuan, created_at, expires_at"
        " FROM offers WHERE id = ?",
        (offer_id,),
    ).fetchone()
    # Someone else's offer looks exactly like a stale one: ids are guessable.
    if row is None or row[1] != member_id:
        raise OfferExpired(f"no offer {offer_id} for member {member_id}")
    return _offer(row)


def redeem(
    conn: sqlite3.Connection,
    offer_id: int,
    member_id: int,
    *,
    now: datetime | None = None,
    actor: str,
    valid_until: date | None = None,
    refund_if_unused: bool = False,
    terms: TermsReader | None = None,
) -> Redemption:
    """Redeem an offer once: take a unit, spend the points, issue a code valid through local day
    `valid_until` (None: no limit) whose points come back if it lapses unused when
    `refund_if_unused`; a repeat returns the same redemption (replayed); raises OfferExpired,
    NotAvailable, CatalogPriceChanged, SoldOut, LimitReached, InsufficientPoints,
    InvalidRequest, and what the member's `terms` (read in this transaction) raise."""
    now = required_now(now)
    if refund_if_unused and valid_until is None:
        raise InvalidRequest("only a code with a last valid day can lapse unused")
    now_ts = ts(now)
    with atomic(conn):
        pending = offer(conn, offer_id, member_id)
        done = conn.execute(_REDEMPTION_SELECT + " WHERE r.offer_id = ?", (offer_id,)).fetchone()
        if done is not None:
            return _redemption(done, replayed=True)
        if now_ts >= ts(pending.expires_at):
            raise OfferExpired(f"offer {offer_id} expired at {pending.expires_at.isoformat()}")
        state = _for_member(conn, item(conn, pending.sku), terms)
        _check_available(state, now)
        # The price when the button was shown may be gone: a sale ended at midnight, or the
        # price changed with a new configuration. Nothing is charged at a price no longer due.
        _check_price(conn, state, pending.points, pending.deduction_yuan, now)
        _check_limit(conn, state, member_id)
        taken = conn.execute(
            "UPDATE catalog_items SET sold = sold + 1"
            " WHERE sku = ? AND (stock IS NULL OR sold < stock)",
            (pending.sku,),
        )
        if taken.rowcount == 0:
            raise SoldOut(f"{pending.sku} is sold out")
        code = _new_code(conn)
        spent = ledger.spend(
            conn,
            member_id,
            pending.points,
            key=f"redeem:offer:{offer_id}",
            actor=actor,
            sink="redeemed",
            reason=pending.sku,
            reference=code,
            now=now,
        )
        redemption_id = insert_id(
            conn,
            "INSERT INTO redemptions (code, offer_id, member_id, sku, kind, points,"
            " deduction_yuan, status, spend_operation_id, handled_by, created_at, valid_until,"
            " refund_if_unused) VALUES (?, ?, ?, ?, ?, ?, ?, 'issued', ?, ?, ?, ?, ?)",
            (
                code,
                offer_id,
                member_id,
                pending.sku,
                state.kind,
                pending.points,
                None if pending.deduction_yuan is None else str(pending.deduction_yuan),
                spent.operation_id,
                actor,
                now_ts,
                None if valid_until is None else valid_until.isoformat(),
                int(refund_if_unused),
            ),
        )
        return _redemption_by_id(conn, redemption_id)


def redemptions(
    conn: sqlite3.Connection, member_id: int, *, offset: int = 0, limit: int = 10
) -> tuple[list[Redemption], int]:
    """A page of the member's redemptions, newest first, and how many there are in all."""
    if offset < 0 or limit <= 0:
        raise InvalidRequest("offset must be >= 0 and limit > 0")
    total = conn.execute(
        "SELECT count(*) FROM redemptions WHERE member_id = ?", (member_id,)
    ).fetchone()[0]
    page = [
        _redemption(row)
        for row in conn.execute(
            f"{_REDEMPTION_SELECT} WHERE r.member_id = ? ORDER BY r.id DESC LIMIT ? OFFSET ?",
            (member_id, limit, offset),
        )
    ]
    return page, int(total)


def redemption_by_code(conn: sqlite3.Connection, code: str) -> Redemption:
    """The redemption with this code, typed in any case; raises NotFound."""
    row = conn.execute(_REDEMPTION_SELECT + " WHERE r.code = ?", (_normal_code(code),)).fetchone()
    if row is None:
        raise NotFound(f"no redemption with code {code!r}")
    return _redemption(row)


# --- returns and fulfilment ----------------------------------------------------------------


def _owned(conn: sqlite3.Connection, code: str, member_id: int) -> Redemption:
    """The member's redemption with this code; raises NotFound."""
    try:
        redemption = redemption_by_code(conn, code)
    except NotFound:
        raise NotFound(f"member {member_id} has no redemption {code!r}") from None
    if redemption.member_id != member_id:
        # Someone else's code looks exactly like an unknown one.
        raise NotFound(f"member {member_id} has no redemption {code!r}")
    return redemption


def _check_window(redemption: Redemption, now: datetime, window: timedelta) -> None:
    deadline = redemption.created_at + window
    if now > deadline:
        raise ReturnWindowClosed(deadline)


def _settled(
    conn: sqlite3.Connection,
    redemption_id: int,
    *,
    bonus: int,
    now: datetime,
    notice: Notice | None,
) -> Settlement:
    """The settlement as it stands after this step, with the member's notice queued in the
    same transaction (so a notice is never lost nor sent for a step rolled back)."""
    after = _redemption_by_id(conn, redemption_id)
    settled = Settlement(after, bonus, ledger.available(conn, after.member_id, now))
    if notice is not None:
        enqueue(conn, [notice(settled)], now)
    return settled


def _refund_return(
    conn: sqlite3.Connection, redemption: Redemption, *, actor: str, now: datetime
) -> None:
    """Give a member's return or cancellation its points back with their original expiry
    (keyed per redemption: refunded once); free its unit."""
    refunded = ledger.refund(
        conn,
        redemption.spend_operation_id,
        key=f"return:{redemption.id}",
        actor=actor,
        reason="return",
        merchant_fault=False,
        now=now,
    )
    conn.execute("UPDATE catalog_items SET sold = sold - 1 WHERE sku = ?", (redemption.sku,))
    conn.execute(
        "UPDATE redemptions SET status = 'returned', refund_operation_id = ?,"
        " return_requested_at = coalesce(return_requested_at, ?), resolved_at = ?,"
        " handled_by = ? WHERE id = ?",
        (refunded.operation_id, ts(now), ts(now), actor, redemption.id),
    )


def _check_merchant_terms(terms: MerchantTerms, now: datetime) -> None:
    """Refuse terms that cannot be honoured, before anything is refunded."""
    _require_text(terms.reason, "a reason")
    percent = terms.compensation_percent
    if isinstance(percent, bool) or percent < 0:
        raise InvalidRequest(f"compensation percent cannot be {percent!r}")
    if terms.min_validity_days < 0:
        raise InvalidRequest("min_validity_days cannot be negative")
    expires_ts = ts_or_none(terms.compensation_expires_at)
    if percent and expires_ts is not None and expires_ts <= ts(now):
        raise InvalidRequest("compensation points would expire the moment they are paid")


def _refund_merchant_fault(
    conn: sqlite3.Connection,
    redemption: Redemption,
    terms: MerchantTerms,
    *,
    key: str,
    actor: str,
    now: datetime,
) -> int:
    """Cancel a redemption the merchant withdraws: its points back valid at least the minimum
    days, plus the compensation bonus (keyed `key` and `key:bonus`: paid once); return the
    bonus. The caller settles the unit of stock."""
    refunded = _merchant_refund(
        conn,
        redemption,
        key=key,
        actor=actor,
        reason=terms.reason,
        min_validity_days=terms.min_validity_days,
        now=now,
    )
    bonus = redemption.points * terms.compensation_percent // 100
    compensation_id: int | None = None
    if bonus > 0:
        compensation_id = ledger.earn(
            conn,
            redemption.member_id,
            bonus,
            kind="compensation",
            key=f"{key}:bonus",
            actor=actor,
            expires_at=terms.compensation_expires_at,
            reason=terms.reason,
            reference=redemption.code,
            now=now,
        ).operation_id
    conn.execute(
        "UPDATE redemptions SET status = 'cancelled', note = ?, refund_operation_id = ?,"
        " compensation_operation_id = ?, resolved_at = ?, handled_by = ? WHERE id = ?",
        (terms.reason, refunded.operation_id, compensation_id, ts(now), actor, redemption.id),
    )
    return bonus


def cancel_redemption(
    conn: sqlite3.Connection,
    code: str,
    member_id: int,
    *,
    now: datetime | None = None,
    window: timedelta,
    kinds: Collection[str],
    actor: str,
) -> Settlement:
    """A member cancels what they have not collected yet (of one of `kinds`): the points come
    back at once; a repeat by the same actor returns the same settlement (replayed); raises
    NotFound, InvalidState, ReturnWindowClosed."""
    now = required_now(now)
    with atomic(conn):
        redemption = _owned(conn, code, member_id)
        if (
            redemption.status == "returned"
            and not redemption.collected
            and redemption.handled_by == actor
        ):
            # A double tap or a redelivered update: refunded once already.
            done = _settled(conn, redemption.id, bonus=0, now=now, notice=None)
            return replace(done, replayed=True)
        if redemption.status != "issued" or redemption.kind not in kinds:
            raise InvalidState(redemption.status)
        _check_window(redemption, now, window)
        _refund_return(conn, redemption, actor=actor, now=now)
        return _settled(conn, redemption.id, bonus=0, now=now, notice=None)


def request_return(
    conn: sqlite3.Connection,
    code: str,
    member_id: int,
    *,
    reason: str,
    now: datetime | None = None,
    window: timedelta,
    kinds: Collection[str],
    actor: str,
) -> Redemption:
    """A member asks, once, to return something collected (of one of `kinds`), saying why;
    staff inspect it and decide. The same request again returns it (replayed); raises
    NotFound, InvalidState ('return_rejected' when a return was refused before),
    ReturnWindowClosed, InvalidRequest."""
    now = required_now(now)
    _require_text(reason, "a return reason")
    with atomic(conn):
        redemption = _owned(conn, code, member_id)
        if redemption.status == "return_requested" and redemption.return_reason == reason:
            return replace(redemption, replayed=True)
        if redemption.status == "used" and redemption.return_requested_at is not None:
            raise InvalidState("return_rejected")  # refused once: never asked again
        if redemption.status != "used" or redemption.kind not in kinds:
            raise InvalidState(redemption.status)
        _check_window(redemption, now, window)
        conn.execute(
            "UPDATE redemptions SET status = 'return_requested', return_requested_at = ?,"
            " return_reason = ?, handled_by = ? WHERE id = ?",
            (ts(now), reason, actor, redemption.id),
        )
        return _redemption_by_id(conn, redemption.id)


def approve_return(
    conn: sqlite3.Connection,
    code: str,
    *,
    actor: str,
    now: datetime | None = None,
    notice: Notice | None = None,
) -> Settlement:
    """Staff accept a return: the points come back (once) and the member's `notice` is
    queued; raises NotFound, InvalidState (not waiting for a decision)."""
    now = required_now(now)
    with atomic(conn):
        redemption = redemption_by_code(conn, code)
        if redemption.status != "return_requested":
            raise InvalidState(redemption.status)
        _refund_return(conn, redemption, actor=actor, now=now)
        return _settled(conn, redemption.id, bonus=0, now=now, notice=notice)


def reject_return(
    conn: sqlite3.Connection,
    code: str,
    *,
    actor: str,
    reason: str,
    now: datetime | None = None,
    notice: Notice | None = None,
) -> Settlement:
    """Staff refuse a return, saying why, and the member's `notice` is queued; collected goods
    stay used, anything else may still be collected; raises NotFound, InvalidState (not
    waiting for a decision), InvalidRequest."""
    now = required_now(now)
    _require_text(reason, "a rejection reason")
    with atomic(conn):
        redemption = redemption_by_code(conn, code)
        if redemption.status != "return_requested":
            raise InvalidState(redemption.status)
        status = "used" if redemption.collected else "return_rejected"
        conn.execute(
            "UPDATE redemptions SET status = ?, note = ?, resolved_at = ?, handled_by = ?"
            " WHERE id = ?",
            (status, reason, ts(now), actor, redemption.id),
        )
        return _settled(conn, redemption.id, bonus=0, now=now, notice=notice)


def pending_returns(conn: sqlite3.Connection, *, limit: int) -> tuple[list[Redemption], int]:
    """The oldest returns waiting for staff, and how many wait in all; raises InvalidRequest."""
    if limit <= 0:
        raise InvalidRequest("limit must be > 0")
    total = conn.execute(
        "SELECT count(*) FROM redemptions WHERE status = 'return_requested'"
    ).fetchone()[0]
    found = [
        _redemption(row)
        for row in conn.execute(
            f"{_REDEMPTION_SELECT} WHERE r.status = 'return_requested'"
            " ORDER BY r.return_requested_at, r.id LIMIT ?",
            (limit,),
        )
    ]
    return found, int(total)


def cannot_fulfil(
    conn: sqlite3.Connection,
    code: str,
    terms: MerchantTerms,
    *,
    actor: str,
    now: datetime | None = None,
    notice: Notice | None = None,
) -> Settlement:
    """Staff cannot honour one order: refund it as the merchant's fault with compensation
    (once), the unit leaves the stock, and the member's `notice` is queued; raises NotFound,
    InvalidState (collected, or settled already), InvalidRequest."""
    now = required_now(now)
    _check_merchant_terms(terms, now)
    with atomic(conn):
        redemption = redemption_by_code(conn, code)
        if redemption.collected or redemption.status not in OPEN_STATUSES:
            raise InvalidState(redemption.status)
        bonus = _refund_merchant_fault(
            conn, redemption, terms, key=f"unfulfilled:{redemption.id}", actor=actor, now=now
        )
        # The unit the merchant cannot hand over is not there to redeem again.
        conn.execute(
            "UPDATE catalog_items SET sold = sold - 1, stock = stock - 1, updated_at = ?"
            " WHERE sku = ?",
            (ts(now), redemption.sku),
        )
        return _settled(conn, redemption.id, bonus=bonus, now=now, notice=notice)


def fulfil(
    conn: sqlite3.Connection,
    code: str,
    *,
    actor: str,
    today: date,
    now: datetime | None = None,
) -> Redemption:
    """Hand over the goods or accept the voucher at the till on local day `today`; raises
    NotFound, InvalidState, VoucherExpired (after its last valid day)."""
    now = required_now(now)
    with atomic(conn):
        redemption = redemption_by_code(conn, code)
        if redemption.status not in USABLE_STATUSES:
            raise InvalidState(redemption.status)
        if redemption.valid_until is not None and today > redemption.valid_until:
            raise VoucherExpired(redemption.valid_until)
        conn.execute(
            "UPDATE redemptions SET status = 'used', used_at = ?, handled_by = ? WHERE id = ?",
            (ts(now), actor, redemption.id),
        )
        return _redemption_by_id(conn, redemption.id)


# --- voucher validity ---------------------------------------------------------------------


def vouchers_ending(conn: sqlite3.Connection, first: date, last: date) -> list[Redemption]:
    """Vouchers still usable whose last valid day is between local days `first` and `last`
    (inclusive), by id."""
    return [
        _redemption(row)
        for row in conn.execute(
            _REDEMPTION_SELECT + " WHERE r.valid_until IS NOT NULL"
            " AND r.status IN ('issued', 'return_rejected')"
            " AND r.valid_until >= ? AND r.valid_until <= ? ORDER BY r.id",
            (first.isoformat(), last.isoformat()),
        )
    ]


def vouchers_lapsed(conn: sqlite3.Connection, today: date, skus: Sequence[str]) -> list[Redemption]:
    """Vouchers never used whose last valid day is before local day `today` and whose points
    come back: promised so when redeemed, or the terms of these SKUs say so now; by id."""
    return [
        _redemption(row)
        for row in conn.execute(
            _REDEMPTION_SELECT  # noqa: S608 - fixed text
            + " WHERE r.valid_until IS NOT NULL"
            " AND r.status IN ('issued', 'return_rejected') AND r.valid_until < ?"
            " AND (r.refund_if_unused = 1 OR r.sku IN (SELECT value FROM json_each(?)))"
            " ORDER BY r.id",
            (today.isoformat(), json.dumps(list(skus))),
        )
    ]


def refund_lapsed(
    conn: sqlite3.Connection,
    redemption_id: int,
    *,
    today: date,
    min_validity_days: int,
    actor: str,
    notice: Push,
    now: datetime | None = None,
) -> Redemption | None:
    """Cancel a voucher whose last valid day passed unused and give its points back as the
    merchant's fault, telling the member (`notice`, queued in the same transaction); None when
    it was used, refunded or is still valid; raises NotFound."""
    now = required_now(now)
    now_ts = ts(now)
    with atomic(conn):
        redemption = _redemption_by_id(conn, redemption_id)
        if (
            redemption.status not in USABLE_STATUSES
            or redemption.valid_until is None
            or today <= redemption.valid_until
        ):
            return None
        refunded = _merchant_refund(
            conn,
            redemption,
            key=f"voucher-lapsed:{redemption_id}",
            actor=actor,
            reason="voucher_lapsed",
            min_validity_days=min_validity_days,
            now=now,
        )
        conn.execute(
            "UPDATE redemptions SET status = 'cancelled', note = ?, refund_operation_id = ?,"
            " resolved_at = ?, handled_by = ? WHERE id = ?",
            ("voucher_lapsed", refunded.operation_id, now_ts, actor, redemption_id),
        )
        conn.execute(
            "UPDATE catalog_items SET sold = sold - 1, updated_at = ? WHERE sku = ?",
            (now_ts, redemption.sku),
        )
        enqueue(conn, [notice], now)
        return _redemption_by_id(conn, redemption_id)


def delist(
    conn: sqlite3.Connection,
    sku: str,
    *,
    reason: str,
    compensation_percent: int,
    compensation_expires_at: datetime | None,
    min_validity_days: int,
    actor: str,
    now: datetime | None = None,
    notice: Callable[[Redemption, int, int], Push] | None = None,
) -> DelistReport:
    """Withdraw an item for good: refund every open, uncollected redemption as the merchant's
    fault, plus a compensation bonus, and queue each member's `notice` (of the cancelled
    redemption, the bonus and their points after) in the same transaction; a repeat finds
    nothing open; raises NotFound, InvalidRequest."""
    now = required_now(now)
    terms = MerchantTerms(reason, compensation_percent, compensation_expires_at, min_validity_days)
    # Checked before anything is refunded, not halfway through the redemptions.
    _check_merchant_terms(terms, now)
    now_ts = ts(now)
    with atomic(conn):
        item(conn, sku)
        conn.execute(
            "UPDATE catalog_items SET delisted_at = ?, delist_reason = ?, updated_at = ?"
            " WHERE sku = ? AND delisted_at IS NULL",
            (now_ts, reason, now_ts, sku),
        )
        # Goods collected and brought back for a return stay with staff to decide.
        open_ids = [
            int(row[0])
            for row in conn.execute(
                "SELECT id FROM redemptions WHERE sku = ?"
                " AND status IN ('issued', 'return_requested', 'return_rejected')"
                " AND used_at IS NULL ORDER BY id",
                (sku,),
            )
        ]
        cancelled: list[tuple[Redemption, int]] = []
        for redemption_id in open_ids:
            redemption = _redemption_by_id(conn, redemption_id)
            bonus = _refund_merchant_fault(
                conn, redemption, terms, key=f"delist:{redemption_id}", actor=actor, now=now
            )
            done = _redemption_by_id(conn, redemption_id)
            cancelled.append((done, bonus))
            if notice is not None:
                after = ledger.available(conn, done.member_id, now)
                enqueue(conn, [notice(done, bonus, after)], now)
        if open_ids:
            conn.execute(
                "UPDATE catalog_items SET sold = sold - ?, updated_at = ? WHERE sku = ?",
                (len(open_ids), now_ts, sku),
            )
        return DelistReport(item(conn, sku), tuple(cancelled))


# --- the async facade ----------------------------------------------------------------------


class Mall(Facade):
    """The mall over a `Store`: every write is one transaction (one thread hop)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # Every view of a shelf shows every item's stock: (read at, states), kept until a
        # mall write here or ITEM_STATES_TTL seconds, whichever comes first.
        self._states: tuple[float, tuple[ItemState, ...]] | None = None

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` as one whole write transaction, then drop the cached shelf."""
        try:
            return await super()._write(fn)
        finally:
            self._states = None  # stock, sales or listing may have changed

    async def items(self) -> list[ItemState]:
        """Every SKU ever configured, by sku (at most ITEM_STATES_TTL seconds old; a redemption
        or any other mall write through this object is seen at once)."""
        now = time.monotonic()
        cached = self._states
        if cached is None or now - cached[0] >= ITEM_STATES_TTL:
            cached = self._states = (now, tuple(await self._store.lookup(items)))
        return list(cached[1])

    # Each runs this module's sync function of the same name.
    sync_catalog = writes(sync_catalog)
    item = looks_up(item)
    purchases_count = looks_up(purchases_count)
    create_offer = writes(create_offer)
    offer = looks_up(offer)
    redeem = writes(redeem)
    redemptions = looks_up(redemptions)
    redemption_by_code = looks_up(redemption_by_code)
    cancel_redemption = writes(cancel_redemption)
    request_return = writes(request_return)
    approve_return = writes(approve_return)
    reject_return = writes(reject_return)
    pending_returns = looks_up(pending_returns)
    cannot_fulfil = writes(cannot_fulfil)
    fulfil = writes(fulfil)
    vouchers_ending = reads(vouchers_ending)
    vouchers_lapsed = reads(vouchers_lapsed)
    refund_lapsed = writes(refund_lapsed)
    set_stock = writes(set_stock)
    delist = writes(delist)
