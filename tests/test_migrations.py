"""Migrations: a fresh database, a re-run that does nothing, and upgrades from every version."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import ledger, mall
from storage.audit import audit
from storage.errors import MigrationError
from storage.members import Profile, register_member
from storage.store import Store, connect_sync, latest_version, migrate, schema_version


def schema(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """Every schema object's name and SQL, for comparing two databases."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


async def test_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    async with Store(tmp_path / "db.sqlite3") as store:
        assert await store.version() == latest_version() >= 1
    conn = connect_sync(tmp_path / "db.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "members" in {name for name, _ in schema(conn)}


async def test_reopening_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Store(path):
        pass
    conn = connect_sync(path)
    before = schema(conn)
    assert migrate(conn) == []
    assert schema(conn) == before


@pytest.mark.parametrize("start", range(0, latest_version()))
async def test_upgrade_from_every_older_version(tmp_path: Path, start: int) -> None:
    old = connect_sync(tmp_path / "old.sqlite3")
    migrate(old, target=start)
    assert schema_version(old) == start
    old.close()
    async with Store(tmp_path / "old.sqlite3") as store:
        assert await store.version() == latest_version()
    fresh = connect_sync(tmp_path / "fresh.sqlite3")
    migrate(fresh)
    assert schema(connect_sync(tmp_path / "old.sqlite3")) == schema(fresh)


def test_database_newer_than_code_is_refused(tmp_path: Path) -> None:
    conn = connect_sync(tmp_path / "db.sqlite3")
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(MigrationError, match="newer than this pointsbot"):
        migrate(conn)


def test_failed_migration_leaves_version_and_schema_untouched(tmp_path: Path) -> None:
    conn = connect_sync(tmp_path / "db.sqlite3")
    # A table named like one the first migration creates makes it fail halfway.
    conn.execute("CREATE TABLE members (x INTEGER)")
    with pytest.raises(MigrationError, match="0001_members.sql failed"):
        migrate(conn)
    assert schema_version(conn) == 0
    assert not conn.in_transaction


@pytest.mark.parametrize("bad", ["2026-12-32", "24/12/2026", "2026-12-24 23:59", "soon"])
def test_a_vouchers_last_day_is_a_day_or_nothing(tmp_path: Path, bad: str) -> None:
    conn = connect_sync(tmp_path / "db.sqlite3")
    migrate(conn)
    conn.execute("PRAGMA foreign_keys = OFF")  # only the column's own check is under test
    insert = (
        "INSERT INTO redemptions (code, offer_id, member_id, sku, kind, points,"
        " spend_operation_id, created_at, valid_until) VALUES (?, ?, 1, 'X', 'voucher', 1, ?, 0, ?)"
    )
    conn.execute(insert, ("AAAAAAAA", 1, 1, "2026-12-24"))
    conn.execute(insert, ("BBBBBBBB", 2, 2, None))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(insert, ("CCCCCCCC", 3, 3, bad))


# The redemptions 0003 allowed, by status: (used_at, return_requested_at, note, refunded).
OLD_REDEMPTIONS = {
    "issued": (False, False, None, False),
    "used": (True, False, None, False),
    "return_requested": (False, True, None, False),
    "return_rejected": (False, True, "opened", False),
    "returned": (False, True, None, True),
    "cancelled": (False, False, "recall", True),
}
RETURNS_VERSION = 12  # 0012_returns.sql rebuilds the redemptions table


def test_the_returns_migration_keeps_every_redemption(tmp_path: Path) -> None:
    now = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    conn = connect_sync(tmp_path / "db.sqlite3")
    migrate(conn, target=RETURNS_VERSION - 1)
    member, _ = register_member(conn, Profile(1, "alice"), None, now)
    ledger.earn(
        conn, member.id, 10_000, kind="purchase", key="seed", actor="t", expires_at=None, now=now
    )
    mall.sync_catalog(
        conn, [mall.CatalogEntry("BAG-01", "goods", "home", 100, None, None, None, None)], now
    )
    held = 0
    for number, (status, (used, asked, note, refunded)) in enumerate(OLD_REDEMPTIONS.items()):
        offer = mall.create_offer(conn, member.id, "BAG-01", 100, now=now, ttl=timedelta(hours=1))
        spent = ledger.spend(
            conn, member.id, 100, key=f"s{number}", actor="t", reason=None, reference=None, now=now
        )
        refund = (
            ledger.refund(
                conn,
                spent.operation_id,
                key=f"r{number}",
                actor="t",
                reason=None,
                merchant_fault=False,
                now=now,
            ).operation_id
            if refunded
            else None
        )
        held += not refunded
        conn.execute(
            "INSERT INTO redemptions (code, offer_id, member_id, sku, kind, points, status,"
            " spend_operation_id, refund_operation_id, note, created_at, used_at,"
            " return_requested_at) VALUES (?, ?, ?, 'BAG-01', 'goods', 100, ?, ?, ?, ?, ?, ?, ?)",
            (
                f"CODE{number:04d}", offer.id, member.id, status, spent.operation_id, refund,
                note, int(now.timestamp()), int(now.timestamp()) if used else None,
                int(now.timestamp()) if asked else None,
            ),
        )  # fmt: skip
    conn.execute("UPDATE catalog_items SET sold = ?", (held,))
    before = conn.execute("SELECT * FROM redemptions ORDER BY id").fetchall()
    migrate(conn)
    after = conn.execute("SELECT * FROM redemptions ORDER BY id").fetchall()
    # 0012 adds return_reason (NULL for them all), later migrations more columns after it.
    assert [
        tuple(row)[: len(row_before)] for row, row_before in zip(after, before, strict=True)
    ] == [tuple(row) for row in before]
    assert {row["return_reason"] for row in after} == {None}
    assert audit(conn).ok, str(audit(conn))
    # 0003's returns of goods never collected are still decided as they were.
    settled = mall.approve_return(conn, "CODE0002", actor="staff", now=now)
    assert settled.redemption.status == "returned"
    assert mall.fulfil(conn, "CODE0003", actor="till", today=now.date(), now=now).status == "used"
    assert audit(conn).ok, str(audit(conn))
