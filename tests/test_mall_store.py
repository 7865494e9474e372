"""The points-mall store: catalog sync, offers, redemptions, returns and delisting."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import ledger, mall, sql
from storage.audit import audit
from storage.errors import (
    CatalogPriceChanged,
    InsufficientPoints,
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
from storage.ledger import Ledger
from storage.mall import CatalogEntry, Mall, Redemption
from storage.members import Members, Profile, register_member
from storage.pushes import SERVICE, Push
from tests.postgres import ENGINES, migrated_connection, opened_store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TTL = timedelta(minutes=10)
WINDOW = timedelta(days=7)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine; the audit passes after every test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        assert audit(connection).ok, str(audit(connection))


def entry(
    sku: str = "BAG-01",
    *,
    kind: str = "goods",
    price: int = 100,
    stock: int | None = None,
    limit: int | None = None,
    available_from: datetime | None = None,
    available_until: datetime | None = None,
    discounts: tuple[mall.CatalogDiscount, ...] = (),
) -> CatalogEntry:
    return CatalogEntry(
        sku=sku,
        kind=kind,
        category="home",
        price=price,
        stock=stock,
        per_member_limit=limit,
        available_from=available_from,
        available_until=available_until,
        discounts=discounts,
    )


def new_member(conn: sqlite3.Connection, telegram_id: int = 1, points: int = 1000) -> int:
    member, _ = register_member(conn, Profile(telegram_id, f"member{telegram_id}"), None, T0)
    if points:
        earn(conn, member.id, points, None, key=f"seed:{telegram_id}")
    return member.id


def earn(
    conn: sqlite3.Connection, member_id: int, points: int, expires_at: datetime | None, key: str
) -> None:
    ledger.earn(
        conn,
        member_id,
        points,
        kind="purchase",
        key=key,
        actor="pos",
        expires_at=expires_at,
        now=T0,
    )


def available(conn: sqlite3.Connection, member_id: int, now: datetime = T0) -> int:
    return ledger.balance(conn, member_id, now).available


def offer(
    conn: sqlite3.Connection,
    member_id: int,
    sku: str = "BAG-01",
    points: int = 100,
    now: datetime = T0,
    ttl: timedelta = TTL,
) -> mall.Offer:
    return mall.create_offer(conn, member_id, sku, points, now=now, ttl=ttl)


def buy(
    conn: sqlite3.Connection,
    member_id: int,
    sku: str = "BAG-01",
    points: int = 100,
    now: datetime = T0,
) -> Redemption:
    pending = offer(conn, member_id, sku, points, now)
    return mall.redeem(conn, pending.id, member_id, now=now, actor=f"member:{member_id}")


ALL_KINDS = frozenset(mall.KINDS)
GOODS = frozenset({"goods"})


def cancel(
    conn: sqlite3.Connection, code: str, member_id: int, now: datetime = T0, actor: str = "m"
) -> mall.Settlement:
    return mall.cancel_redemption(
        conn, code, member_id, now=now, window=WINDOW, kinds=ALL_KINDS, actor=actor
    )


def ask_return(
    conn: sqlite3.Connection,
    code: str,
    member_id: int,
    now: datetime = T0,
    reason: str = "damaged",
) -> Redemption:
    return mall.request_return(
        conn, code, member_id, reason=reason, now=now, window=WINDOW, kinds=GOODS, actor="m"
    )


def counts(conn: sqlite3.Connection) -> tuple[int, ...]:
    return tuple(
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("operations", "postings", "lots", "allocations", "redemptions")
    )


# --- catalog ---------------------------------------------------------------------------------


def test_resync_keeps_stock_and_sales_but_takes_the_rest_from_config(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry(stock=5, price=100)], T0)
    buy(conn, new_member(conn))
    mall.set_stock(conn, "BAG-01", 10, now=T0)  # an operator's /stock BAG-01 10
    mall.sync_catalog(conn, [entry(stock=3, price=150, limit=2, kind="voucher")], T0 + DAY)
    state = mall.item(conn, "BAG-01")
    assert (state.stock, state.sold, state.left) == (11, 1, 10)
    assert (state.price, state.per_member_limit, state.kind) == (150, 2, "voucher")


def test_resync_unlists_missing_skus_and_lists_them_again(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry("BAG-01"), entry("CUP-01")], T0)
    mall.sync_catalog(conn, [entry("BAG-01")], T0)
    assert [(s.sku, s.listed) for s in mall.items(conn)] == [("BAG-01", True), ("CUP-01", False)]
    alice = new_member(conn)
    with pytest.raises(NotAvailable) as refused:
        offer(conn, alice, "CUP-01")
    assert refused.value.reason == "unlisted"
    mall.sync_catalog(conn, [entry("BAG-01"), entry("CUP-01")], T0)
    assert mall.item(conn, "CUP-01").availability(T0) == "ok"


def test_sync_refuses_a_duplicate_sku_and_changes_nothing(conn: sqlite3.Connection) -> None:
    with pytest.raises(InvalidRequest, match="BAG-01"):
        mall.sync_catalog(conn, [entry(), entry()], T0)
    assert mall.items(conn) == []


def test_unknown_sku_is_not_found(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    with pytest.raises(NotFound):
        mall.item(conn, "NOPE")
    with pytest.raises(NotFound):
        offer(conn, alice, "NOPE")


# --- redeem ----------------------------------------------------------------------------------


def test_redeem_spends_the_points_takes_a_unit_and_issues_a_code(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry(stock=5)], T0)
    alice = new_member(conn, telegram_id=42)
    pending = offer(conn, alice)
    redemption = mall.redeem(conn, pending.id, alice, now=T0, actor="telegram:42")
    assert available(conn, alice) == 900
    assert mall.item(conn, "BAG-01").left == 4
    assert len(redemption.code) == 8 and set(redemption.code) <= set(mall.CODE_ALPHABET)
    assert (redemption.status, redemption.points, redemption.telegram_id) == ("issued", 100, 42)
    assert not redemption.replayed
    spent = ledger.operation(conn, redemption.spend_operation_id)
    assert (spent.kind, spent.key, spent.reason, spent.reference) == (
        "redeem",
        f"redeem:offer:{pending.id}",
        "BAG-01",
        redemption.code,
    )
    assert audit(conn).summary["redemptions"] == 1


def test_someone_elses_offer_looks_expired_and_changes_nothing(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry(stock=1)], T0)
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    alices = offer(conn, alice)
    before = counts(conn)
    with pytest.raises(OfferExpired):
        mall.redeem(conn, alices.id, bob, now=T0, actor="telegram:2")
    with pytest.raises(OfferExpired):
        mall.redeem(conn, alices.id + 1000, bob, now=T0, actor="telegram:2")
    assert counts(conn) == before
    assert (available(conn, alice), available(conn, bob)) == (1000, 1000)
    assert mall.item(conn, "BAG-01").sold == 0


def test_a_double_tap_redeems_once(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    pending = offer(conn, alice)
    first = mall.redeem(conn, pending.id, alice, now=T0, actor="m")
    # The redelivered update arrives after the offer's time is up: still the same answer.
    again = mall.redeem(conn, pending.id, alice, now=T0 + TTL + DAY, actor="m")
    assert again == first and again.replayed and not first.replayed
    assert available(conn, alice) == 900
    assert mall.item(conn, "BAG-01").sold == 1
    assert mall.redemptions(conn, alice)[1] == 1


def test_an_expired_offer_is_refused(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    pending = offer(conn, alice)
    assert pending.expires_at == T0 + TTL
    with pytest.raises(OfferExpired):
        mall.redeem(conn, pending.id, alice, now=T0 + TTL, actor="m")
    assert available(conn, alice) == 1000 and mall.item(conn, "BAG-01").sold == 0


def test_the_last_unit_goes_to_the_first_confirmation(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(stock=1)], T0)
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    alices, bobs = offer(conn, alice), offer(conn, bob)
    mall.redeem(conn, alices.id, alice, now=T0, actor="m")
    with pytest.raises(SoldOut):
        mall.redeem(conn, bobs.id, bob, now=T0, actor="m")
    with pytest.raises(SoldOut):
        offer(conn, bob)
    assert available(conn, bob) == 1000
    assert mall.item(conn, "BAG-01").availability(T0) == "sold_out"


def test_the_database_refuses_to_oversell(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(stock=1)], T0)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE catalog_items SET sold = 2 WHERE sku = 'BAG-01'")


@pytest.mark.parametrize("engine", ENGINES)
async def test_50_members_race_for_10_units(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path) as store:
        shop, book = Mall(store), Ledger(store)
        await shop.sync_catalog([entry(stock=10, price=300)], now=T0)
        members = []
        for telegram_id in range(1, 51):
            member, _ = await Members(store).register(Profile(telegram_id, "m"), now=T0)
            await book.earn(
                member.id,
                500,
                kind="purchase",
                key=f"seed:{member.id}",
                actor="pos",
                expires_at=None,
                now=T0,
            )
            pending = await shop.create_offer(member.id, "BAG-01", 300, ttl=TTL, now=T0)
            members.append((member.id, pending.id))
        outcomes = await asyncio.gather(
            *(shop.redeem(offer_id, m, actor=f"telegram:{m}", now=T0) for m, offer_id in members),
            return_exceptions=True,
        )
        won = [o for o in outcomes if isinstance(o, Redemption)]
        lost = [o for o in outcomes if isinstance(o, SoldOut)]
        # Anything else (e.g. "database is locked" or an IntegrityError) would be neither.
        assert (len(won), len(lost)) == (10, 40)
        assert len({r.code for r in won}) == 10
        state = await shop.item("BAG-01")
        assert (state.sold, state.left) == (10, 0)
        balances = sorted([(await book.balance(m, T0)).available for m, _ in members])
        assert balances == [200] * 10 + [500] * 40
        report = await store.read(audit)
        assert report.ok, str(report)


@pytest.mark.parametrize("engine", ENGINES)
async def test_shelves_show_a_sale_at_once_and_outside_changes_within_a_second(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(mall.time, "monotonic", lambda: clock[0])
    async with opened_store(engine, tmp_path) as store:
        shop = Mall(store)
        await shop.sync_catalog([entry(stock=5, price=100)], now=T0)
        member, _ = await Members(store).register(Profile(1, "m"), now=T0)
        await Ledger(store).earn(
            member.id, 500, kind="purchase", key="seed", actor="pos", expires_at=None, now=T0
        )
        assert [s.left for s in await shop.items()] == [5]
        pending = await shop.create_offer(member.id, "BAG-01", 100, ttl=TTL, now=T0)
        await shop.redeem(pending.id, member.id, actor="m", now=T0)
        assert [s.left for s in await shop.items()] == [4]  # this process's sale: at once
        # Stock set by another process (another Mall on the database) shows within a second.
        await store.write(lambda c: mall.set_stock(c, "BAG-01", 2, now=T0))
        assert [s.left for s in await shop.items()] == [4]
        clock[0] += mall.ITEM_STATES_TTL
        assert [s.left for s in await shop.items()] == [2]


def test_not_enough_points_gives_the_unit_back(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(stock=1)], T0)
    poor, rich = new_member(conn, 1, points=60), new_member(conn, 2)
    pending = offer(conn, poor)
    before = counts(conn)
    with pytest.raises(InsufficientPoints) as refused:
        mall.redeem(conn, pending.id, poor, now=T0, actor="m")
    assert (refused.value.available, refused.value.requested) == (60, 100)
    assert counts(conn) == before and mall.item(conn, "BAG-01").sold == 0
    buy(conn, rich)  # the unit is still there for someone else


def test_per_member_limit_counts_redemptions_not_offers(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(limit=1)], T0)
    alice = new_member(conn)
    first, second = offer(conn, alice), offer(conn, alice)
    mall.redeem(conn, first.id, alice, now=T0, actor="m")
    with pytest.raises(LimitReached) as refused:
        mall.redeem(conn, second.id, alice, now=T0, actor="m")
    assert refused.value.limit == 1
    with pytest.raises(LimitReached):
        offer(conn, alice)
    assert available(conn, alice) == 900 and mall.purchases_count(conn, alice, "BAG-01") == 1


def test_a_returned_redemption_frees_the_limit(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(kind="voucher", limit=1)], T0)
    alice = new_member(conn)
    bought = buy(conn, alice)
    cancel(conn, bought.code, alice)
    assert mall.purchases_count(conn, alice, "BAG-01") == 0
    buy(conn, alice)


@pytest.mark.parametrize(
    ("offered_at", "redeemed_at", "reason"),
    [
        pytest.param(T0, None, "not_started", id="offer-before-start"),
        pytest.param(T0 + 2 * DAY, None, "ended", id="offer-at-end"),
        pytest.param(T0 + DAY, T0 + 2 * DAY, "ended", id="redeem-after-end"),
    ],
)
def test_the_availability_window(
    conn: sqlite3.Connection, offered_at: datetime, redeemed_at: datetime | None, reason: str
) -> None:
    window = entry(available_from=T0 + DAY, available_until=T0 + 2 * DAY)
    mall.sync_catalog(conn, [window], T0)
    alice = new_member(conn)
    with pytest.raises(NotAvailable) as refused:
        if redeemed_at is None:
            offer(conn, alice, now=offered_at)
        else:
            pending = offer(conn, alice, now=offered_at, ttl=2 * DAY)
            mall.redeem(conn, pending.id, alice, now=redeemed_at, actor="m")
    assert refused.value.reason == reason
    assert available(conn, alice) == 1000 and mall.item(conn, "BAG-01").sold == 0


def test_a_bill_deduction_keeps_its_amount(conn: sqlite3.Connection) -> None:
    # A bill deduction's catalog price is its points per yuan.
    mall.sync_catalog(conn, [entry("BILL-OFF", kind="deduction", price=100)], T0)
    alice = new_member(conn, points=2000)
    pending = mall.create_offer(
        conn, alice, "BILL-OFF", 1250, now=T0, ttl=TTL, deduction_yuan=Decimal("12.50")
    )
    redemption = mall.redeem(conn, pending.id, alice, now=T0, actor="m")
    assert redemption.deduction_yuan == Decimal("12.50") and redemption.points == 1250
    with pytest.raises(InvalidRequest):
        mall.create_offer(conn, alice, "BILL-OFF", 100, now=T0, ttl=TTL)


@pytest.mark.parametrize(
    ("points", "yuan", "refused"),
    [
        pytest.param(1000, "12", CatalogPriceChanged, id="not-yuan-times-rate"),
        pytest.param(1, "0.01", None, id="one-cent-is-one-point"),
        pytest.param(1, "0.005", InvalidRequest, id="half-a-point"),
    ],
)
def test_a_bill_deduction_costs_yuan_times_the_rate(
    conn: sqlite3.Connection, points: int, yuan: str, refused: type[Exception] | None
) -> None:
    mall.sync_catalog(conn, [entry("BILL-OFF", kind="deduction", price=100)], T0)
    alice = new_member(conn, points=2000)

    def make() -> mall.Offer:
        return mall.create_offer(
            conn, alice, "BILL-OFF", points, now=T0, ttl=TTL, deduction_yuan=Decimal(yuan)
        )

    if refused is None:
        assert make().points == points
        return
    with pytest.raises(refused):
        make()
    assert conn.execute("SELECT count(*) FROM offers").fetchone()[0] == 0


# --- prices and sales --------------------------------------------------------------------------


def sale(
    percent: int = 20,
    starts_at: datetime = T0 - DAY,
    ends_at: datetime = T0 + DAY,
    discount_id: str = "spring",
) -> mall.CatalogDiscount:
    return mall.CatalogDiscount(discount_id, percent, starts_at, ends_at)


def test_an_offer_must_carry_the_catalog_price(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(price=100, discounts=(sale(20),))], T0)
    alice = new_member(conn)
    for wrong in (100, 79, 81, 1):
        with pytest.raises(CatalogPriceChanged) as refused:
            offer(conn, alice, points=wrong)
        assert (refused.value.sku, refused.value.offered, refused.value.current) == (
            "BAG-01",
            wrong,
            80,
        )
    assert conn.execute("SELECT count(*) FROM offers").fetchone()[0] == 0
    assert buy(conn, alice, points=80).points == 80
    assert available(conn, alice) == 920


def test_a_sale_that_ends_before_the_tap_charges_nothing(conn: sqlite3.Connection) -> None:
    ends = T0 + timedelta(minutes=5)
    mall.sync_catalog(conn, [entry(price=300, discounts=(sale(20, ends_at=ends),))], T0)
    alice = new_member(conn)
    pending = offer(conn, alice, points=240, now=ends - timedelta(seconds=1))
    before = counts(conn)
    with pytest.raises(CatalogPriceChanged) as refused:
        mall.redeem(conn, pending.id, alice, now=ends, actor="m")
    assert (refused.value.offered, refused.value.current) == (240, 300)
    assert counts(conn) == before
    assert available(conn, alice, ends) == 1000 and mall.item(conn, "BAG-01").sold == 0
    # The same offer redeemed while the sale still ran would have been charged 240.
    assert mall.price_at(conn, "BAG-01", ends - timedelta(microseconds=1)).points == 240


def test_a_price_changed_by_a_new_configuration_is_refused(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(price=100)], T0)
    alice = new_member(conn)
    pending = offer(conn, alice, points=100)
    mall.sync_catalog(conn, [entry(price=120)], T0)
    with pytest.raises(CatalogPriceChanged) as refused:
        mall.redeem(conn, pending.id, alice, now=T0, actor="m")
    assert (refused.value.offered, refused.value.current) == (100, 120)
    assert available(conn, alice) == 1000 and mall.item(conn, "BAG-01").sold == 0


def test_a_forged_offer_price_is_refused_at_redemption(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(price=100)], T0)
    alice = new_member(conn)
    # An offer written behind create_offer's back, one point for a 100-point item.
    forged = sql.insert_id(
        conn,
        "INSERT INTO offers (member_id, sku, points, created_at, expires_at)"
        " VALUES (?, 'BAG-01', 1, ?, ?)",
        (alice, int(T0.timestamp()), int((T0 + TTL).timestamp())),
    )
    before = counts(conn)
    with pytest.raises(CatalogPriceChanged):
        mall.redeem(conn, forged, alice, now=T0, actor="m")
    assert counts(conn) == before and available(conn, alice) == 1000


def test_a_redemption_already_made_replays_after_the_price_changed(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry(price=100)], T0)
    alice = new_member(conn)
    pending = offer(conn, alice, points=100)
    first = mall.redeem(conn, pending.id, alice, now=T0, actor="m")
    mall.sync_catalog(conn, [entry(price=120)], T0)
    again = mall.redeem(conn, pending.id, alice, now=T0, actor="m")
    assert again.replayed and again.code == first.code and available(conn, alice) == 900


def test_the_best_running_sale_wins(conn: sqlite3.Connection) -> None:
    sales = (
        sale(10, discount_id="small"),
        sale(30, starts_at=T0 + DAY, ends_at=T0 + 2 * DAY, discount_id="later"),
        sale(25, discount_id="big"),
    )
    mall.sync_catalog(conn, [entry(price=1000, discounts=sales)], T0)
    now = mall.price_at(conn, "BAG-01", T0)
    assert (now.points, now.list_points) == (750, 1000)
    assert now.discount is not None and now.discount.id == "big"
    assert mall.price_at(conn, "BAG-01", T0 + DAY).points == 700
    assert mall.price_at(conn, "BAG-01", T0 + 2 * DAY).points == 1000
    assert mall.price_at(conn, "BAG-01", T0 - DAY - timedelta(seconds=1)).discount is None


def test_a_resync_replaces_the_sales(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(price=100, discounts=(sale(50),))], T0)
    assert mall.price_at(conn, "BAG-01", T0).points == 50
    mall.sync_catalog(conn, [entry(price=100)], T0)
    assert mall.price_at(conn, "BAG-01", T0).points == 100
    assert conn.execute("SELECT count(*) FROM catalog_discounts").fetchone()[0] == 0


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(entry(discounts=(sale(0),)), id="nothing-off"),
        pytest.param(entry(discounts=(sale(100),)), id="everything-off"),
        pytest.param(entry(discounts=(sale(ends_at=T0 - DAY),)), id="ends-at-start"),
        pytest.param(entry(discounts=(sale(), sale(30))), id="same-sale-twice"),
        pytest.param(entry(discounts=(sale(discount_id=""),)), id="no-id"),
        pytest.param(
            entry("BILL-OFF", kind="deduction", discounts=(sale(),)), id="deduction-on-sale"
        ),
        pytest.param(entry(price=0), id="free"),
    ],
)
def test_a_bad_sale_or_price_is_refused_at_sync(
    conn: sqlite3.Connection, bad: CatalogEntry
) -> None:
    with pytest.raises(InvalidRequest, match=bad.sku):
        mall.sync_catalog(conn, [bad], T0)
    assert mall.items(conn) == []


@given(
    list_points=st.integers(min_value=1, max_value=10_000_000),
    percent=st.integers(min_value=1, max_value=99),
)
def test_the_price_rule_favours_the_member_and_is_never_free(
    list_points: int, percent: int
) -> None:
    price = mall.unit_price(list_points, [sale(percent)], T0)
    exact = Fraction(list_points * (100 - percent), 100)
    assert 1 <= price.points <= list_points
    # Rounded down (the member's favour) by less than a point, unless that would be free.
    assert price.points == max(1, math.floor(exact))
    assert price.points <= exact or exact < 1
    assert mall.unit_price(list_points, [sale(percent)], T0 + DAY).points == list_points


@pytest.mark.parametrize("points", [0, -100, True])
def test_an_offer_needs_positive_points(conn: sqlite3.Connection, points: int) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    with pytest.raises(InvalidRequest):
        offer(conn, new_member(conn), points=points)


def test_codes_are_found_in_any_case_and_listed_newest_first(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    bought = [buy(conn, alice, now=T0 + i * DAY) for i in range(3)]
    assert mall.redemption_by_code(conn, f" {bought[0].code.lower()} ") == bought[0]
    page, total = mall.redemptions(conn, alice, offset=1, limit=1)
    assert (page, total) == ([bought[1]], 3)
    assert mall.redemptions(conn, alice)[0] == bought[::-1]
    with pytest.raises(NotFound):
        mall.redemption_by_code(conn, "ZZZZZZZZ")


# --- returns and fulfilment ------------------------------------------------------------------


def test_cancelling_an_uncollected_voucher_refunds_at_once_with_the_original_expiry(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry("VOUCHER-10", kind="voucher", price=150)], T0)
    alice = new_member(conn, points=0)
    earn(conn, alice, 100, T0 + 10 * DAY, "soon")
    earn(conn, alice, 100, T0 + 100 * DAY, "later")
    bought = buy(conn, alice, "VOUCHER-10", 150)
    settled = cancel(conn, bought.code, alice, T0 + DAY, "member:1")
    returned = settled.redemption
    assert (returned.status, returned.resolved_at, settled.available) == ("returned", T0 + DAY, 200)
    assert ledger.balance(conn, alice, T0 + DAY).expiring == (
        (T0 + 10 * DAY, 100),
        (T0 + 100 * DAY, 100),
    )
    refund = ledger.operation(conn, returned.refund_operation_id or 0)
    assert (refund.kind, refund.reverses_operation_id) == ("refund", bought.spend_operation_id)
    assert mall.item(conn, "VOUCHER-10").sold == 0


def test_a_repeated_cancel_refunds_once(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    bought = buy(conn, alice)
    first = cancel(conn, bought.code, alice, actor="member:1")
    before = counts(conn)
    again = cancel(conn, bought.code, alice, actor="member:1")
    assert again.replayed and not first.replayed and again.redemption == first.redemption
    assert counts(conn) == before and available(conn, alice) == 1000


@pytest.mark.parametrize("step", ["cancel", "return"])
def test_no_return_after_the_window(conn: sqlite3.Connection, step: str) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    bought = buy(conn, alice)
    if step == "return":
        mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    too_late = T0 + WINDOW + timedelta(seconds=1)
    with pytest.raises(ReturnWindowClosed) as refused:
        if step == "cancel":
            cancel(conn, bought.code, alice, too_late)
        else:
            ask_return(conn, bought.code, alice, too_late)
    assert refused.value.deadline == T0 + WINDOW
    expected = "issued" if step == "cancel" else "used"
    assert mall.redemption_by_code(conn, bought.code).status == expected
    assert available(conn, alice) == 900


def test_only_the_owner_can_return(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(kind="voucher")], T0)
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    bought = buy(conn, alice)
    with pytest.raises(NotFound):
        cancel(conn, bought.code, bob)
    mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    with pytest.raises(NotFound):
        ask_return(conn, bought.code, bob)
    assert mall.redemption_by_code(conn, bought.code).status == "used"


def test_collected_goods_come_back_once_staff_approve(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(stock=3)], T0)
    alice = new_member(conn)
    bought = buy(conn, alice)
    mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    asked = ask_return(conn, bought.code, alice, T0 + DAY, reason="wrong_item")
    assert (asked.status, asked.return_requested_at, asked.return_reason, asked.used_at) == (
        "return_requested",
        T0 + DAY,
        "wrong_item",
        T0,
    )
    assert ask_return(conn, bought.code, alice, T0 + DAY, reason="wrong_item").replayed
    with pytest.raises(InvalidState) as twice:
        ask_return(conn, bought.code, alice, T0 + DAY, reason="other")
    assert twice.value.status == "return_requested"
    assert available(conn, alice) == 900  # nothing back until the goods are
    notices: list[mall.Settlement] = []

    def notice(settled: mall.Settlement) -> Push:
        notices.append(settled)
        return Push(f"t:{settled.redemption.id}", alice, "service", "k", {"n": settled.available})

    approved = mall.approve_return(
        conn, bought.code, actor="admin:7", now=T0 + 2 * DAY, notice=notice
    )
    assert (approved.redemption.status, approved.redemption.handled_by) == ("returned", "admin:7")
    assert approved.redemption.used_at == T0 and approved.available == 1000
    assert available(conn, alice, T0 + 2 * DAY) == 1000
    assert mall.item(conn, "BAG-01").left == 3
    assert notices == [approved]
    queued = conn.execute("SELECT message_key, params FROM outbox").fetchall()
    assert [tuple(row) for row in queued] == [("k", '{"n": 1000}')]
    for step in ("approve", "reject"):
        with pytest.raises(InvalidState) as again:
            if step == "approve":
                mall.approve_return(conn, bought.code, actor="admin:8", now=T0 + 3 * DAY)
            else:
                mall.reject_return(conn, bought.code, actor="admin:8", reason="x", now=T0)
        assert again.value.status == "returned"


def test_a_refused_return_leaves_the_goods_used_and_is_not_asked_again(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    bought = buy(conn, alice)
    mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    ask_return(conn, bought.code, alice)
    rejected = mall.reject_return(
        conn, bought.code, actor="admin:7", reason="packaging opened", now=T0 + DAY
    )
    assert (rejected.redemption.status, rejected.redemption.note) == ("used", "packaging opened")
    assert rejected.available == 900
    with pytest.raises(InvalidState) as again:
        ask_return(conn, bought.code, alice, T0 + DAY)
    assert again.value.status == "return_rejected"
    with pytest.raises(InvalidState):
        mall.reject_return(conn, bought.code, actor="admin:8", reason="x", now=T0 + DAY)
    with pytest.raises(InvalidState):
        mall.fulfil(conn, bought.code, actor="till", today=(T0 + DAY).date(), now=T0 + DAY)
    assert available(conn, alice) == 900 and mall.item(conn, "BAG-01").sold == 1


def test_pending_returns_oldest_first(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    codes = []
    for who, when in ((bob, T0 + 2 * DAY), (alice, T0 + DAY), (alice, T0 + 3 * DAY)):
        bought = buy(conn, who)
        mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
        ask_return(conn, bought.code, who, when)
        codes.append(bought.code)
    buy(conn, bob)  # issued: not a return
    found, total = mall.pending_returns(conn, limit=2)
    assert total == 3 and [r.code for r in found] == [codes[1], codes[0]]
    assert (found[0].member_name, found[0].return_reason) == ("member1", "damaged")


@pytest.mark.parametrize("step", ["approve", "reject"])
def test_an_operator_decides_only_requested_returns(conn: sqlite3.Connection, step: str) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    bought = buy(conn, new_member(conn))
    with pytest.raises(InvalidState) as refused:
        if step == "approve":
            mall.approve_return(conn, bought.code, actor="admin", now=T0)
        else:
            mall.reject_return(conn, bought.code, actor="admin", reason="no", now=T0)
    assert refused.value.status == "issued"


def test_fulfilling_twice_is_refused(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    bought = buy(conn, new_member(conn))
    mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    with pytest.raises(InvalidState) as refused:
        mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    assert refused.value.status == "used"


@pytest.mark.parametrize("kind", ["voucher", "deduction", "service"])
def test_used_vouchers_deductions_and_services_cannot_be_returned(
    conn: sqlite3.Connection, kind: str
) -> None:
    mall.sync_catalog(conn, [entry(kind=kind)], T0)
    alice = new_member(conn)
    if kind == "deduction":
        pending = mall.create_offer(
            conn, alice, "BAG-01", 500, now=T0, ttl=TTL, deduction_yuan=Decimal(5)
        )
        bought = mall.redeem(conn, pending.id, alice, now=T0, actor="m")
    else:
        bought = buy(conn, alice)
    mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    for attempt in (ask_return, cancel):
        with pytest.raises(InvalidState) as refused:
            attempt(conn, bought.code, alice)
        assert refused.value.status == "used"
    assert available(conn, alice) == 1000 - bought.points


def test_the_database_refuses_an_illegal_status_change(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    bought = buy(conn, alice)
    mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    with pytest.raises(sqlite3.IntegrityError, match="cannot move"):
        conn.execute("UPDATE redemptions SET status = 'issued' WHERE id = ?", (bought.id,))
    with pytest.raises(sqlite3.IntegrityError, match="never rewritten"):
        conn.execute("UPDATE redemptions SET used_at = NULL WHERE id = ?", (bought.id,))
    ask_return(conn, bought.code, alice)
    mall.reject_return(conn, bought.code, actor="admin", reason="no", now=T0)
    # Refused once: the database itself will not take the same return again.
    with pytest.raises(sqlite3.IntegrityError, match="cannot move"):
        conn.execute(
            "UPDATE redemptions SET status = 'return_requested' WHERE id = ?", (bought.id,)
        )
    # Nothing collected is cancelled as the merchant's fault, even under a return.
    other = buy(conn, alice)
    mall.fulfil(conn, other.code, actor="till", today=T0.date(), now=T0)
    ask_return(conn, other.code, alice)
    with pytest.raises(sqlite3.IntegrityError, match="(?i)check constraint"):
        conn.execute(
            "UPDATE redemptions SET status = 'cancelled', refund_operation_id ="
            " (SELECT max(id) FROM operations) WHERE id = ?",
            (other.id,),
        )


# --- the merchant cannot honour an order ------------------------------------------------------


def terms(percent: int = 10, expires: datetime | None = None) -> mall.MerchantTerms:
    return mall.MerchantTerms("out of stock", percent, expires, 30)


def test_cannot_fulfil_refunds_with_the_minimum_validity_and_compensation(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry(price=200, stock=5)], T0)
    alice = new_member(conn, 1, points=0)
    earn(conn, alice, 300, T0 + 10 * DAY, "soon")
    bought = buy(conn, alice, points=200)
    when = T0 + 2 * DAY
    settled = mall.cannot_fulfil(
        conn, bought.code, terms(10, when + 365 * DAY), actor="admin:7", now=when
    )
    assert (settled.redemption.status, settled.redemption.note, settled.bonus) == (
        "cancelled",
        "out of stock",
        20,
    )
    assert settled.available == 320
    # Points due in 8 days are kept at least 30; the bonus expires like any bonus.
    assert ledger.balance(conn, alice, when).expiring == (
        (T0 + 10 * DAY, 100),
        (when + 30 * DAY, 200),
        (when + 365 * DAY, 20),
    )
    # The unit the merchant cannot hand over leaves the stock.
    state = mall.item(conn, "BAG-01")
    assert (state.stock, state.sold, state.left) == (4, 0, 4)
    before = counts(conn)
    with pytest.raises(InvalidState) as twice:
        mall.cannot_fulfil(conn, bought.code, terms(), actor="admin:8", now=when)
    assert twice.value.status == "cancelled" and counts(conn) == before


def test_cannot_fulfil_leaves_collected_orders_alone(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    alice = new_member(conn)
    bought = buy(conn, alice)
    mall.fulfil(conn, bought.code, actor="till", today=T0.date(), now=T0)
    with pytest.raises(InvalidState) as refused:
        mall.cannot_fulfil(conn, bought.code, terms(), actor="admin", now=T0)
    assert refused.value.status == "used"
    ask_return(conn, bought.code, alice)
    with pytest.raises(InvalidState):
        mall.cannot_fulfil(conn, bought.code, terms(), actor="admin", now=T0)
    with pytest.raises(InvalidRequest):
        blank = mall.MerchantTerms(" ", 10, None, 30)
        mall.cannot_fulfil(conn, bought.code, blank, actor="a", now=T0)
    assert available(conn, alice) == 900


# --- delisting -------------------------------------------------------------------------------


def test_delisting_refunds_open_redemptions_with_compensation(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(price=200)], T0)
    alice = new_member(conn, 1, points=0)
    earn(conn, alice, 1000, T0 + 10 * DAY, "soon")
    bob, carol = new_member(conn, 2), new_member(conn, 3)
    issued = buy(conn, alice, points=200)
    requested = buy(conn, carol, points=200)
    mall.fulfil(conn, requested.code, actor="till", today=T0.date(), now=T0)
    ask_return(conn, requested.code, carol)
    used = buy(conn, bob, points=200)
    mall.fulfil(conn, used.code, actor="till", today=T0.date(), now=T0)
    when = T0 + 5 * DAY
    report = mall.delist(
        conn,
        "BAG-01",
        reason="supplier recall",
        compensation_percent=10,
        compensation_expires_at=when + 365 * DAY,
        min_validity_days=30,
        actor="admin:7",
        now=when,
    )
    # Goods collected and brought back for a return stay with staff to decide.
    assert [(r.code, r.status, r.note, bonus) for r, bonus in report.cancelled] == [
        (issued.code, "cancelled", "supplier recall", 20),
    ]
    assert report.item.availability(when) == "delisted" and report.item.sold == 2
    assert mall.redemption_by_code(conn, requested.code).status == "return_requested"
    # The merchant's fault: points due in 5 days get 30, and a bonus on top.
    assert ledger.balance(conn, alice, when).expiring == (
        (T0 + 10 * DAY, 800),
        (when + 30 * DAY, 200),
        (when + 365 * DAY, 20),
    )
    assert mall.redemption_by_code(conn, used.code).status == "used"
    assert available(conn, bob, when) == 800


def test_delisting_twice_changes_nothing(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    buy(conn, new_member(conn))

    def withdraw(now: datetime) -> mall.DelistReport:
        return mall.delist(
            conn,
            "BAG-01",
            reason=f"recall at {now}",
            compensation_percent=10,
            compensation_expires_at=None,
            min_validity_days=30,
            actor="admin",
            now=now,
        )

    first = withdraw(T0)
    before = counts(conn)
    second = withdraw(T0 + DAY)
    assert second.cancelled == () and counts(conn) == before
    assert second.item == first.item
    assert first.item.delist_reason == f"recall at {T0}"


def test_a_delisted_sku_stays_delisted_after_a_resync(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    mall.delist(
        conn,
        "BAG-01",
        reason="recall",
        compensation_percent=0,
        compensation_expires_at=None,
        min_validity_days=30,
        actor="admin",
        now=T0,
    )
    mall.sync_catalog(conn, [entry()], T0 + DAY)
    with pytest.raises(NotAvailable) as refused:
        offer(conn, new_member(conn), now=T0 + DAY)
    assert refused.value.reason == "delisted"


# --- stock -----------------------------------------------------------------------------------


def test_set_stock_counts_from_what_is_sold(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry(stock=1)], T0)
    buy(conn, new_member(conn))
    assert mall.set_stock(conn, "BAG-01", 0, now=T0).availability(T0) == "sold_out"
    assert mall.set_stock(conn, "BAG-01", 4, now=T0).left == 4
    with pytest.raises(InvalidRequest):
        mall.set_stock(conn, "BAG-01", -1, now=T0)
    with pytest.raises(NotFound):
        mall.set_stock(conn, "NOPE", 1, now=T0)


# --- audit -----------------------------------------------------------------------------------


def test_audit_names_a_sold_count_that_disagrees(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    buy(conn, new_member(conn))
    conn.execute("UPDATE catalog_items SET sold = 0")
    assert {v.check for v in audit(conn).violations} == {"mall_sold"}
    conn.execute("UPDATE catalog_items SET sold = 1")


def test_audit_names_a_refund_the_mall_does_not_know(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry()], T0)
    bought = buy(conn, new_member(conn))
    # Points given back behind the mall's back: the redemption still looks issued.
    ledger.refund(
        conn,
        bought.spend_operation_id,
        key="manual",
        actor="admin",
        reason=None,
        merchant_fault=False,
        now=T0,
    )
    assert {v.check for v in audit(conn).violations} == {"redemption_refund"}
    conn.execute(
        "UPDATE redemptions SET status = 'returned', refund_operation_id ="
        " (SELECT id FROM operations WHERE idempotency_key = 'manual')"
    )
    conn.execute("UPDATE catalog_items SET sold = 0")


# --- plan_spend ------------------------------------------------------------------------------


def test_plan_spend_shows_what_the_spend_then_consumes(conn: sqlite3.Connection) -> None:
    alice = new_member(conn, points=50)
    earn(conn, alice, 20, T0 + 20 * DAY, "a")
    earn(conn, alice, 30, T0 + 5 * DAY, "b")
    earn(conn, alice, 25, T0 + 20 * DAY, "c")
    before = counts(conn)
    plan = ledger.plan_spend(conn, alice, 80, T0)
    assert plan == ((T0 + 5 * DAY, 30), (T0 + 20 * DAY, 45), (None, 5))
    assert counts(conn) == before
    spent = ledger.spend(conn, alice, 80, key="s", actor="m", reason=None, reference=None, now=T0)
    expiry = {lot.id: lot.expires_at for lot in ledger.lots(conn, alice)}
    consumed: dict[datetime | None, int] = {}
    for taken in spent.consumed:
        consumed[expiry[taken.lot_id]] = consumed.get(expiry[taken.lot_id], 0) + taken.points
    assert tuple(consumed.items()) == plan
    with pytest.raises(InsufficientPoints):
        ledger.plan_spend(conn, alice, 46, T0)


@pytest.mark.parametrize("engine", ENGINES)
async def test_plan_spend_through_the_async_ledger(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path) as store:
        member, _ = await Members(store).register(Profile(1, "alice"), now=T0)
        book = Ledger(store)
        await book.earn(
            member.id, 70, kind="purchase", key="e", actor="pos", expires_at=T0 + DAY, now=T0
        )
        assert await book.plan_spend(member.id, 40, T0) == ((T0 + DAY, 40),)
        with pytest.raises(InsufficientPoints):
            await book.plan_spend(member.id, 71, T0)


# --- voucher validity (issue 16) -------------------------------------------------------------


def buy_voucher(conn: sqlite3.Connection, member_id: int, valid_until: date | None) -> Redemption:
    pending = offer(conn, member_id, "VOUCHER-10", 100)
    return mall.redeem(conn, pending.id, member_id, now=T0, actor="member", valid_until=valid_until)


def notice(redemption: Redemption) -> Push:
    return Push(f"voucher-refund:{redemption.id}", redemption.member_id, SERVICE, "k", {})


def test_a_voucher_keeps_the_last_day_it_was_redeemed_with(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry("VOUCHER-10", kind="voucher")], T0)
    alice = new_member(conn)
    bought = buy_voucher(conn, alice, date(2025, 3, 30))
    assert mall.redemption_by_code(conn, bought.code).valid_until == date(2025, 3, 30)
    # The database itself refuses to move it.
    with pytest.raises(sqlite3.IntegrityError, match="validity and terms never change"):
        conn.execute("UPDATE redemptions SET valid_until = '2025-04-30' WHERE id = ?", (bought.id,))
    # A code with no limit stays usable.
    unlimited = buy_voucher(conn, alice, None)
    used = mall.fulfil(conn, unlimited.code, actor="till", today=date(2030, 1, 1), now=T0)
    assert used.status == "used"


def test_fulfil_checks_the_local_day_it_is_handed(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry("VOUCHER-10", kind="voucher")], T0)
    alice = new_member(conn)
    bought = buy_voucher(conn, alice, date(2025, 3, 30))
    with pytest.raises(VoucherExpired) as refused:
        mall.fulfil(conn, bought.code, actor="till", today=date(2025, 3, 31), now=T0 + 30 * DAY)
    assert refused.value.valid_until == date(2025, 3, 30)
    assert mall.redemption_by_code(conn, bought.code).status == "issued"
    used = mall.fulfil(conn, bought.code, actor="till", today=date(2025, 3, 30), now=T0 + 29 * DAY)
    assert used.status == "used"


def test_refund_lapsed_only_once_and_only_after_the_last_day(conn: sqlite3.Connection) -> None:
    mall.sync_catalog(conn, [entry("VOUCHER-10", kind="voucher")], T0)
    alice = new_member(conn, points=0)
    earn(conn, alice, 100, T0 + 20 * DAY, "short")
    lapsing = buy_voucher(conn, alice, date(2025, 3, 30))
    later = T0 + 40 * DAY
    args = {"min_validity_days": 30, "actor": "system:vouchers", "now": later}
    # Not yet: the last day itself is still the member's.
    assert mall.vouchers_lapsed(conn, date(2025, 3, 30), ["VOUCHER-10"]) == []
    still = mall.refund_lapsed(
        conn, lapsing.id, today=date(2025, 3, 30), notice=notice(lapsing), **args
    )
    assert still is None
    [due] = mall.vouchers_lapsed(conn, date(2025, 4, 10), ["VOUCHER-10"])
    assert due.id == lapsing.id
    assert mall.vouchers_lapsed(conn, date(2025, 4, 10), ["OTHER"]) == []
    refunded = mall.refund_lapsed(
        conn, lapsing.id, today=date(2025, 4, 10), notice=notice(lapsing), **args
    )
    assert refunded is not None and refunded.status == "cancelled"
    # Back in the lot it came from, valid 30 days from the refund although that lot had lapsed.
    assert ledger.balance(conn, alice, later).expiring == ((later + 30 * DAY, 100),)
    assert mall.item(conn, "VOUCHER-10").sold == 0
    again = mall.refund_lapsed(
        conn, lapsing.id, today=date(2025, 4, 11), notice=notice(lapsing), **args
    )
    assert again is None
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_a_refund_promised_at_redemption_outlives_a_change_of_terms(
    conn: sqlite3.Connection,
) -> None:
    mall.sync_catalog(conn, [entry("VOUCHER-10", kind="voucher")], T0)
    alice = new_member(conn)
    pending = offer(conn, alice, "VOUCHER-10", 100)
    promised = mall.redeem(
        conn,
        pending.id,
        alice,
        now=T0,
        actor="member",
        valid_until=date(2025, 3, 30),
        refund_if_unused=True,
    )
    plain = buy_voucher(conn, alice, date(2025, 3, 30))
    assert (promised.refund_if_unused, plain.refund_if_unused) == (True, False)
    # No SKU's terms refund any more: only the code redeemed under the promise is due.
    assert [r.id for r in mall.vouchers_lapsed(conn, date(2025, 4, 1), [])] == [promised.id]
    with pytest.raises(sqlite3.IntegrityError, match="never change"):
        conn.execute("UPDATE redemptions SET refund_if_unused = 0 WHERE id = ?", (promised.id,))
    # Without a last day there is nothing to lapse.
    with pytest.raises(InvalidRequest):
        mall.redeem(
            conn,
            offer(conn, alice, "VOUCHER-10", 100).id,
            alice,
            now=T0,
            actor="member",
            refund_if_unused=True,
        )
