"""The ledger's recent operations of one actor for one member: what a retyped purchase is
checked against (bot/programme/purchases.py `retyped`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import ledger
from storage.members import Profile, register_member
from tests.postgres import ENGINES, migrated_connection

T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


def member(conn: sqlite3.Connection, telegram_id: int) -> int:
    found, _ = register_member(conn, Profile(telegram_id, f"m{telegram_id}"), None, T0)
    return found.id


def test_only_the_member_s_operations_of_that_kind_and_actor_since_then_newest_first(
    conn: sqlite3.Connection,
) -> None:
    alice, bob = member(conn, 1), member(conn, 2)

    def earn(
        who: int, key: str, *, kind: str = "purchase", actor: str = "telegram:1", at: datetime = T0
    ) -> None:
        meta = {"amount": "100.00", "category": "general"}
        ledger.earn(
            conn, who, 10, kind=kind, key=key, actor=actor, expires_at=None, now=at, meta=meta
        )

    earn(alice, "old", at=T0 - 11 * MINUTE)
    earn(alice, "p1", at=T0 - 10 * MINUTE)
    earn(alice, "p2", at=T0 - MINUTE)
    earn(alice, "other cashier", actor="telegram:2")
    earn(alice, "birthday", kind="birthday")
    earn(bob, "bob's")
    # A transfer from alice: an operation of hers that bob's account also takes part in.
    ledger.transfer(conn, alice, bob, 5, key="gift", actor="telegram:1", reason=None, now=T0)
    found = ledger.recent_operations(
        conn, alice, kind="purchase", actor="telegram:1", since=T0 - 10 * MINUTE
    )
    assert [op.key for op in found] == ["p2", "p1"]
    assert found[0].created_at == T0 - MINUTE
    assert found[0].meta == {"amount": "100.00", "category": "general"}
    of_bob = ledger.recent_operations(conn, bob, kind="purchase", actor="telegram:1", since=T0)
    assert [op.key for op in of_bob] == ["bob's"]
