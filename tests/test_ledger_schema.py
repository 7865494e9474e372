"""The database itself enforces the ledger's rules, whatever SQL reaches it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import ledger
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect_sync(tmp_path / "ledger.db")
    migrate(connection)
    yield connection
    connection.close()


@pytest.fixture
def spent(conn: sqlite3.Connection) -> ledger.OperationResult:
    """A member who earned 100 and spent 30."""
    member, _ = register_member(conn, Profile(1, "alice"), None, T0)
    ledger.earn(
        conn, member.id, 100, kind="purchase", key="e", actor="pos", expires_at=None, now=T0
    )
    return ledger.spend(
        conn, member.id, 30, key="s", actor="m", reason=None, reference=None, now=T0
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE postings SET amount = amount + 1",
        "DELETE FROM postings",
        "UPDATE operations SET points = 1",
        "DELETE FROM operations WHERE kind = 'redeem'",
        "UPDATE allocations SET points = 1",
        "DELETE FROM allocations",
        "UPDATE lots SET points = 1000",
        "UPDATE lots SET expires_at = 1",
        "UPDATE lots SET remainder = points",
        "DELETE FROM lots",
        "UPDATE accounts SET member_id = NULL, kind = 'source', name = 'x' WHERE kind = 'member'",
        "DELETE FROM accounts WHERE kind = 'member'",
    ],
)
def test_history_cannot_be_rewritten(
    conn: sqlite3.Connection, spent: ledger.OperationResult, statement: str
) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(statement)


def test_the_database_refuses_a_negative_member_balance(
    conn: sqlite3.Connection, spent: ledger.OperationResult
) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("UPDATE accounts SET balance = -1 WHERE kind = 'member'")
    member_account = conn.execute("SELECT id FROM accounts WHERE kind = 'member'").fetchone()[0]
    # A posting that would overdraw the member is refused by the balance trigger's CHECK.
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(
            "INSERT INTO postings (operation_id, account_id, amount) VALUES (?, ?, -71)",
            (spent.operation_id, member_account),
        )


def test_the_database_refuses_overconsuming_a_lot(
    conn: sqlite3.Connection, spent: ledger.OperationResult
) -> None:
    (taken,) = spent.consumed
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(
            "INSERT INTO allocations (operation_id, lot_id, points) VALUES (?, ?, 71)",
            (spent.operation_id, taken.lot_id),
        )


def test_a_spend_can_be_reversed_only_once_by_the_schema(
    conn: sqlite3.Connection, spent: ledger.OperationResult
) -> None:
    insert = (
        "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id, points, actor,"
        " reverses_operation_id, created_at) VALUES ('refund', ?, 'f', ?, 30, 'x', ?, 0)"
    )
    conn.execute(insert, ("r1", spent.member_id, spent.operation_id))
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute(insert, ("r2", spent.member_id, spent.operation_id))


def test_hot_queries_use_their_indexes(conn: sqlite3.Connection) -> None:
    def plan(sql: str, *params: object) -> str:
        return " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    spendable = plan(
        "SELECT id, remainder, expires_at FROM lots WHERE member_id = ? AND remainder > 0"
        " AND coalesce(expires_at, 9223372036854775807) > ?"
        " ORDER BY coalesce(expires_at, 9223372036854775807), id",
        1,
        0,
    )
    assert "lots_spendable" in spendable and "TEMP B-TREE" not in spendable
    due = plan(
        "SELECT id FROM lots WHERE remainder > 0 AND expires_at IS NOT NULL AND expires_at <= ?"
        " AND (expires_at, id) > (?, ?) ORDER BY expires_at, id LIMIT 10",
        0,
        0,
        0,
    )
    assert "lots_due" in due and "TEMP B-TREE" not in due
    assert "postings_by_account" in plan(
        "SELECT operation_id, sum(amount) FROM postings WHERE account_id = ?"
        " GROUP BY operation_id ORDER BY operation_id DESC",
        1,
    )
