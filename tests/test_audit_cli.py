"""`pointsbot audit`: exit 0 on a healthy ledger, 1 naming what is broken, 2 without one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from storage import ledger
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "points.sqlite3"


@pytest.fixture
def config_file(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    path.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    return path


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    """A ledger where a member earned, spent and got a refund."""
    connection = connect_sync(db)
    migrate(connection)
    member = register_member(connection, Profile(1, "alice"), None, T0)[0].id
    for n in range(3):
        ledger.earn(
            connection,
            member,
            100,
            kind="purchase",
            key=f"purchase:R{n}",
            actor="pos",
            expires_at=T0 + timedelta(days=365),
            now=T0,
        )
    spent = ledger.spend(
        connection, member, 150, key="s1", actor="m", reason=None, reference=None, now=T0
    )
    ledger.refund(
        connection,
        spent.operation_id,
        key="r1",
        actor="ops",
        reason="out of stock",
        merchant_fault=True,
        now=T0,
    )
    yield connection
    connection.close()


def audit(config_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "--config", str(config_file), *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("args", [[], ["--quick"]], ids=["full", "quick"])
def test_a_healthy_ledger_passes(
    conn: sqlite3.Connection, config_file: Path, args: list[str]
) -> None:
    code, output = audit(config_file, *args)
    assert code == 0, output
    assert "operations: 5" in output
    assert "outstanding_points: 300" in output
    assert output.strip().endswith("audit passed")


def test_a_dropped_trigger_and_what_it_let_through_are_named(
    conn: sqlite3.Connection, config_file: Path
) -> None:
    conn.execute("DROP TRIGGER lots_append_only_update")
    conn.execute("DROP TRIGGER lots_remainder_only_decreases")
    conn.execute("UPDATE lots SET remainder = points, expires_at = NULL")  # free points
    code, output = audit(config_file)
    assert code == 1
    assert (
        "VIOLATION triggers: missing lots_append_only_update, lots_remainder_only_decreases"
        in output
    )
    assert "VIOLATION lot_remainder" in output
    assert "VIOLATION balance_equals_lots" in output
    assert "audit FAILED (3)" in output


def test_an_edited_balance_is_named(conn: sqlite3.Connection, config_file: Path) -> None:
    conn.execute("UPDATE accounts SET balance = balance + 1000 WHERE member_id = 1")
    code, output = audit(config_file, "--quick")
    assert code == 1
    assert "VIOLATION cached_balance" in output


def test_a_missing_database_exits_2_with_one_line(config_file: Path, db: Path) -> None:
    code, output = audit(config_file)
    assert code == 2
    assert output.strip() == f"error: no database at {db} (create it with `pointsbot init-db`)"
    assert not db.exists()  # the audit did not create one


def test_a_database_without_the_ledger_exits_2(config_file: Path, db: Path) -> None:
    sqlite3.connect(db).close()  # an empty file: schema version 0
    code, output = audit(config_file)
    assert code == 2
    assert "schema version 0" in output


def test_a_file_that_is_not_a_database_exits_2(config_file: Path, db: Path) -> None:
    db.write_text("receipt_id,member_code\n" * 200)
    code, output = audit(config_file)
    assert code == 2
    assert "not a database" in output
