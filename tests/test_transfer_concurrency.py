"""Many concurrent transfer confirmations out of one balance on each engine: serialized by the
single writer (on PostgreSQL: SERIALIZABLE transactions), every check inside the booking
transaction, never overdrawn or over the limit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import load_config
from bot.programme.transfers import limits_at, offer_key
from storage.audit import audit
from storage.errors import InsufficientPoints
from storage.family import Families
from storage.ledger import Ledger, OperationResult
from storage.members import Members, Profile
from storage.store import Store
from storage.transfers import TransferRefused, Transfers
from tests.postgres import ENGINES, opened_store

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
JOINED = NOW - timedelta(days=8)
TTL = timedelta(minutes=10)


async def _household(store: Store, points: int) -> tuple[int, list[int]]:
    """A sender holding `points` and two members of their household, past the cooling-off."""
    members = Members(store)
    ids = [(await members.register(Profile(i, f"m{i}"), now=JOINED))[0].id for i in (1, 2, 3)]
    await Ledger(store).earn(
        ids[0], points, kind="purchase", key="seed", actor="pos", expires_at=None, now=JOINED
    )
    families = Families(store)
    home = await families.create_household(ids[0], actor="t", now=JOINED)
    for other in ids[1:]:
        await families.join_household(home.id, other, max_members=6, actor="t", now=JOINED)
    return ids[0], ids[1:]


@pytest.mark.parametrize("engine", ENGINES)
async def test_50_concurrent_transfers_out_of_a_balance_that_covers_10(
    engine: str, tmp_path: Path
) -> None:
    config = load_config(SAMPLE)
    limits = limits_at(config, NOW)
    async with opened_store(engine, tmp_path) as store:
        sender, others = await _household(store, 100)
        transfers = Transfers(store)
        # Fifty confirmation buttons shown while the balance still covered each of them.
        offers = [
            await transfers.create_offer(sender, others[i % 2], 10, limits=limits, ttl=TTL, now=NOW)
            for i in range(50)
        ]
        ledger = Ledger(store)
        outcomes = await asyncio.gather(
            *(
                transfers.confirm(
                    offer.id, sender, limits=limits, key=offer_key(offer.id), actor="m", now=NOW
                )
                for offer in offers
            ),
            *(ledger.balance(sender, NOW) for _ in range(20)),  # readers alongside
            return_exceptions=True,
        )
        confirmations = outcomes[:50]
        done = [o for o in confirmations if isinstance(o, OperationResult)]
        refused = [o for o in confirmations if isinstance(o, InsufficientPoints)]
        # Anything else (e.g. "database is locked") would be neither.
        assert (len(done), len(refused)) == (10, 40)
        assert sorted(r.balance_after for r in done) == list(range(0, 100, 10))
        assert all(r.available == 0 and r.requested == 10 for r in refused)
        assert (await ledger.balance(sender, NOW)).available == 0
        received = [(await ledger.balance(m, NOW)).available for m in others]
        assert sum(received) == 100
        report = await store.read(audit)
        assert report.ok, str(report)


@pytest.mark.parametrize("engine", ENGINES)
async def test_concurrent_transfers_never_pass_the_daily_limit(engine: str, tmp_path: Path) -> None:
    base = load_config(SAMPLE)
    family = base.family.model_copy(update={"sender_daily_max": 50, "recipient_daily_max": 50})
    limits = limits_at(base.model_copy(update={"family": family}), NOW)
    async with opened_store(engine, tmp_path) as store:
        sender, others = await _household(store, 1000)
        transfers = Transfers(store)
        offers = [
            await transfers.create_offer(sender, others[0], 10, limits=limits, ttl=TTL, now=NOW)
            for _ in range(20)
        ]
        outcomes = await asyncio.gather(
            *(
                transfers.confirm(
                    offer.id, sender, limits=limits, key=offer_key(offer.id), actor="m", now=NOW
                )
                for offer in offers
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(o, OperationResult) for o in outcomes) == 5
        refusals = [o for o in outcomes if isinstance(o, TransferRefused)]
        assert len(refusals) == 15 and {r.reason for r in refusals} == {"sender_day"}
        assert (await Ledger(store).balance(others[0], NOW)).available == 50
