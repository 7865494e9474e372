"""storage.facade: a facade method runs its sync function on the store, with the store's clock
for a `now` the caller leaves out, and keeps the sync function's parameters."""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import ledger
from storage.ledger import Ledger
from storage.mall import CatalogEntry, Mall
from storage.members import Members, Profile
from storage.store import Store

T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "facade.sqlite3", synchronous="NORMAL", clock=lambda: T0) as opened:
        yield opened


async def member(store: Store) -> int:
    registered, _ = await Members(store).register(Profile(1, "Alice"))
    return registered.id


async def test_a_left_out_now_is_the_stores_clock(store: Store) -> None:
    book = Ledger(store)
    alice = await member(store)
    # `now` is keyword-only in earn: left out, the operation is dated by the store's clock.
    earned = await book.earn(
        alice, 10, kind="purchase", key="k1", actor="pos", expires_at=T0 + timedelta(days=1)
    )
    assert (await book.operation(earned.operation_id)).created_at == T0
    # `now` is positional in balance: left out, or passed as None, it is the clock's too.
    assert (await book.balance(alice)).available == 10
    assert (await book.balance(alice, None)).available == 10
    store.clock = lambda: T0 + timedelta(days=2)
    assert (await book.balance(alice)).available == 0
    assert await book.available(alice) == 0
    # A `now` the caller gives wins over the clock.
    assert (await book.balance(alice, T0)).available == 10
    assert await book.available(alice, now=T0) == 10


async def test_a_store_without_a_clock_needs_now(tmp_path: Path) -> None:
    async with Store(tmp_path / "no-clock.sqlite3", synchronous="NORMAL") as store:
        registered, _ = await Members(store).register(Profile(1, "Alice"), now=T0)
        book = Ledger(store)
        with pytest.raises(RuntimeError, match="no clock"):
            await book.balance(registered.id)
        assert (await book.balance(registered.id, T0)).available == 0


def test_a_sync_function_called_without_now_says_so(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "unused.sqlite3")
    with pytest.raises(TypeError, match="pass now="):
        ledger.balance(conn, 1)
    conn.close()


async def test_a_facade_method_has_its_sync_functions_parameters(store: Store) -> None:
    earn = Ledger(store).earn
    assert (
        list(inspect.signature(earn).parameters)
        == list(inspect.signature(ledger.earn).parameters)[1:]
    )
    assert earn.__name__ == "earn" and earn.__doc__ == ledger.earn.__doc__
    assert inspect.iscoroutinefunction(earn)


async def test_a_mall_write_is_seen_at_once_through_the_cached_shelf(store: Store) -> None:
    shop = Mall(store)
    assert await shop.items() == []  # cached for ITEM_STATES_TTL seconds ...
    bag = CatalogEntry("BAG-01", "goods", "home", 100, 5, None, None, None)
    await shop.sync_catalog([bag])  # ... unless this facade writes
    assert [state.sku for state in await shop.items()] == ["BAG-01"]
