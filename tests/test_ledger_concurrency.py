"""Many concurrent taps through the async `Ledger` on each engine: serialized, never overdrawn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.audit import audit
from storage.errors import InsufficientPoints
from storage.ledger import Ledger, OperationResult
from storage.members import Members, Profile
from storage.store import Store
from tests.postgres import ENGINES, opened_store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def _member_with_points(store: Store, points: int) -> tuple[Ledger, int]:
    member, _ = await Members(store).register(Profile(1, "alice"), now=T0)
    book = Ledger(store)
    await book.earn(
        member.id, points, kind="purchase", key="seed", actor="pos", expires_at=None, now=T0
    )
    return book, member.id


@pytest.mark.parametrize("engine", ENGINES)
async def test_200_concurrent_spends_never_overdraw(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path) as store:
        book, alice = await _member_with_points(store, 1000)
        outcomes = await asyncio.gather(
            *(
                book.spend(alice, 7, key=f"tap:{i}", actor="m", reason=None, reference=None, now=T0)
                for i in range(200)
            ),
            *(book.balance(alice, T0) for _ in range(50)),  # readers alongside the writer
            return_exceptions=True,
        )
        spends = outcomes[:200]
        done = [o for o in spends if isinstance(o, OperationResult)]
        refused = [o for o in spends if isinstance(o, InsufficientPoints)]
        # Anything else (e.g. "database is locked") would be neither.
        assert len(done) == 1000 // 7 and len(refused) == 200 - 1000 // 7
        assert all(r.available == 1000 % 7 and r.requested == 7 for r in refused)
        assert sorted(r.balance_after for r in done) == [1000 - 7 * k for k in range(142, 0, -1)]
        assert (await book.balance(alice, T0)).available == 1000 % 7
        report = await store.read(audit)
        assert report.ok, str(report)


@pytest.mark.parametrize("engine", ENGINES)
async def test_the_same_key_delivered_20_times_applies_once(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path) as store:
        book, alice = await _member_with_points(store, 100)
        results = await asyncio.gather(
            *(
                book.spend(alice, 30, key="tap:1", actor="m", reason=None, reference=None, now=T0)
                for _ in range(20)
            )
        )
        assert len({r.operation_id for r in results}) == 1
        assert all(r == results[0] for r in results)
        assert sum(not r.replayed for r in results) == 1
        assert (await book.balance(alice, T0)).available == 70
        assert (await book.history(alice)).total == 2
