"""`audit()` passes on a healthy ledger and names each kind of tampering."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import ledger
from storage.audit import REQUIRED_TRIGGERS, audit
from storage.family import create_household, join_household
from storage.members import Profile, register_member
from storage.sql import engine
from storage.store import connect_sync
from tests.postgres import ENGINES, migrated_connection

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A small ledger with every kind of operation in it, on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        _fill(connection)
        yield connection


def _fill(connection: sqlite3.Connection) -> None:
    """Book one of every kind of operation."""
    alice = register_member(connection, Profile(1, "alice"), None, T0)[0].id
    bob = register_member(connection, Profile(2, "bob"), None, T0)[0].id
    for i, expires in enumerate([T0 + 10 * DAY, None, T0 + 40 * DAY]):
        ledger.earn(
            connection,
            alice,
            100,
            kind="purchase",
            key=f"e{i}",
            actor="pos",
            expires_at=expires,
            now=T0,
        )
    spent = ledger.spend(
        connection, alice, 150, key="s1", actor="m", reason=None, reference=None, now=T0
    )
    ledger.spend(connection, alice, 20, key="s2", actor="m", reason=None, reference=None, now=T0)
    ledger.refund(
        connection,
        spent.operation_id,
        key="r1",
        actor="o",
        reason=None,
        merchant_fault=True,
        now=T0,
    )
    home = create_household(connection, alice, actor="t", now=T0)
    join_household(connection, home.id, bob, max_members=6, actor="t", now=T0)
    ledger.transfer(
        connection, alice, bob, 60, key="t1", actor="m", reason=None, now=T0,
        meta={"household": home.id},
    )  # fmt: skip
    ledger.adjust(connection, bob, -5, key="a1", actor="admin", reason="fix", now=T0)
    ledger.expire_due(connection, T0 + 35 * DAY)


def test_a_healthy_ledger_passes(conn: sqlite3.Connection) -> None:
    report = audit(conn)
    assert report.ok, str(report)
    # 3 earns, 2 spends, a refund, a transfer, an adjustment, 2 expiries
    assert report.summary["operations"] == 10
    assert "audit passed" in str(report)


def test_summary_counts_what_is_outstanding(conn: sqlite3.Connection) -> None:
    expired = conn.execute(
        "SELECT balance FROM account_balances WHERE name = 'expired'"
    ).fetchone()[0]
    assert expired > 0
    assert audit(conn, integrity="quick").summary["outstanding_points"] == 300 - 20 - 5 - expired


def _drop(trigger: str) -> str:
    return f"DROP TRIGGER {trigger}"


def _pg_drop_constraints(table: str, kind: str, *, referencing: bool = False) -> str:
    """PostgreSQL's way around a constraint (it has no PRAGMA to ignore one): drop every
    constraint of `kind` ('c' check, 'f' foreign key) on `table`, or referencing it."""
    column = "confrelid" if referencing else "conrelid"
    return (
        "DO $$ DECLARE c record; BEGIN FOR c IN SELECT conrelid::regclass AS t, conname"
        f" FROM pg_constraint WHERE {column} = '{table}'::regclass AND contype = '{kind}'"
        " LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.t, c.conname);"
        " END LOOP; END $$"
    )


# The SQLite-only tampering (PRAGMAs) done on PostgreSQL.
ON_POSTGRES: dict[str, list[str]] = {
    "operation deleted": [
        _pg_drop_constraints("operations", "f", referencing=True),
        _drop("operations_append_only_delete"),
        "DELETE FROM operations WHERE id = 2",
    ],
    "negative member balance": [
        _pg_drop_constraints("accounts", "c"),
        "UPDATE accounts SET balance = -1 WHERE member_id = 2",
    ],
    # A sink's balance is its postings' sum there (migration 31): only a posting moves it.
    "negative sink": [
        "INSERT INTO postings (operation_id, account_id, amount)"
        " VALUES (1, (SELECT id FROM accounts WHERE name = 'redeemed'), -100000)",
    ],
}
# What the audit finds on PostgreSQL where it differs: a system account keeps no cached
# balance there to disagree with its postings.
PG_EXPECTED: dict[str, set[str]] = {
    "posting deleted": {"triggers", "conservation", "operation_conservation"},
    "negative sink": {"sink_not_negative", "conservation", "operation_conservation"},
}
# Checks the audit runs on SQLite alone: PostgreSQL checks foreign keys on every statement,
# and its identities leave holes on a rollback.
SQLITE_ONLY_CHECKS = frozenset({"foreign_keys", "contiguous_ids"})


def tamper(conn: sqlite3.Connection, statement: str) -> None:
    """Run one statement behind the storage code's back (PostgreSQL names a trigger's table)."""
    if engine(conn) == "postgres" and statement.startswith("DROP TRIGGER "):
        trigger = statement.removeprefix("DROP TRIGGER ")
        (table,) = conn.execute(
            "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = ?", (trigger,)
        ).fetchone()
        statement = f"{statement} ON {table}"
    conn.execute(statement)


TAMPERING: list[tuple[str, list[str], set[str]]] = [
    ("missing trigger", [_drop("postings_append_only_delete")], {"triggers"}),
    (
        "cached balance",
        ["UPDATE accounts SET balance = balance + 5 WHERE member_id = 1"],
        {"cached_balance", "balance_equals_lots"},
    ),
    (
        "lot remainder",
        ["UPDATE lots SET remainder = remainder - 1 WHERE remainder > 0 AND member_id = 1"],
        {"lot_remainder", "balance_equals_lots"},
    ),
    (
        "unbalanced posting",
        [
            "INSERT INTO postings (operation_id, account_id, amount)"
            " SELECT 1, id, 7 FROM accounts WHERE name = 'redeemed'"
        ],
        {"conservation", "operation_conservation"},
    ),
    (
        "posting deleted",
        [
            _drop("postings_append_only_delete"),
            "DELETE FROM postings WHERE id = 3",
        ],
        {
            "triggers",
            "contiguous_ids",
            "conservation",
            "operation_conservation",
            "cached_balance",
        },
    ),
    (
        "operation deleted",
        [
            "PRAGMA foreign_keys = OFF",
            _drop("operations_append_only_delete"),
            "DELETE FROM operations WHERE id = 2",
        ],
        {"triggers", "contiguous_ids", "foreign_keys"},
    ),
    (
        "credit without a lot",
        [
            _drop("postings_append_only_update"),
            # Still balanced, but the member got a point no lot accounts for.
            "UPDATE postings SET amount = amount - 1 WHERE id = 1",
            "UPDATE postings SET amount = amount + 1 WHERE id = 2",
        ],
        {"triggers", "credits_are_lots", "cached_balance"},
    ),
    (
        "allocation without a debit",
        [
            _drop("allocations_append_only_update"),
            "UPDATE allocations SET points = points - 1 WHERE id = 1",
        ],
        {"triggers", "debits_are_allocations", "lot_remainder"},
    ),
    (
        "transfer extends validity",
        [
            _drop("lots_append_only_update"),
            "UPDATE lots SET expires_at = expires_at + 86400"
            " WHERE operation_id IN (SELECT id FROM operations WHERE kind = 'transfer')"
            " AND expires_at IS NOT NULL",
        ],
        {"triggers", "transfer_keeps_expiry"},
    ),
    (
        "refund of a non-spend",
        [
            "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id, points,"
            " actor, reverses_operation_id, created_at) VALUES ('refund', 'x', 'f', 1, 0, 'x',"
            " 1, 0)"
        ],
        {"refund_matches_spend"},
    ),
    (
        "negative member balance",
        [
            "PRAGMA ignore_check_constraints = ON",
            "UPDATE accounts SET balance = -1 WHERE member_id = 2",
        ],
        {"member_not_negative", "cached_balance", "balance_equals_lots"},
    ),
    (
        "negative sink",
        [
            "PRAGMA ignore_check_constraints = ON",
            "UPDATE accounts SET balance = -1 WHERE name = 'redeemed'",
        ],
        {"sink_not_negative", "cached_balance"},
    ),
]


@pytest.mark.parametrize(
    ("name", "statements", "expected"),
    [pytest.param(name, s, e, id=name) for name, s, e in TAMPERING],
)
def test_audit_names_the_tampering(
    conn: sqlite3.Connection, name: str, statements: list[str], expected: set[str]
) -> None:
    if engine(conn) == "postgres":
        statements = ON_POSTGRES.get(name, statements)
        expected = PG_EXPECTED.get(name, expected - SQLITE_ONLY_CHECKS)
    assert audit(conn).ok
    for statement in statements:
        tamper(conn, statement)
    report = audit(conn)
    assert {v.check for v in report.violations} == expected, str(report)
    assert "audit FAILED" in str(report)


def test_every_required_trigger_is_checked(conn: sqlite3.Connection) -> None:
    for trigger in REQUIRED_TRIGGERS:
        tamper(conn, _drop(trigger))
    (violation,) = audit(conn, integrity="none").violations
    assert violation.check == "triggers"
    assert all(trigger in violation.detail for trigger in REQUIRED_TRIGGERS)


# SQLite only: it edits sqlite_master and reads PRAGMA integrity_check (PostgreSQL checks
# its own pages, and the audit runs no page check there).
@pytest.mark.parametrize("conn", ["sqlite"], indirect=True)
def test_audit_reports_a_corrupt_index(conn: sqlite3.Connection, tmp_path: Path) -> None:
    # Point the spendable index's definition at another expression behind SQLite's back:
    # its stored entries no longer match the rows, which integrity_check must notice.
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = replace(sql, 'remainder > 0', 'remainder >= 0')"
        " WHERE name = 'lots_spendable'"
    )
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()
    reopened = connect_sync(tmp_path / "conformance.db")
    try:
        checks = {v.check for v in audit(reopened).violations}
    finally:
        reopened.close()
    assert "integrity" in checks
