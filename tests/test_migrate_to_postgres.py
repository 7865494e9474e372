"""`pointsbot migrate-to-postgres`: a SQLite ledger copied into an empty PostgreSQL database,
audited there, ids continuing after the copy; a database not empty, or a bad URL, refused."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from storage import ledger
from storage.ledger import Ledger
from storage.members import Profile, register_member
from storage.pg import PgConnection
from storage.pg_store import PgStore
from storage.store import connect_sync, migrate

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def _sqlite_ledger(db: Path) -> dict[int, int]:
    """Members who earned, spent, were refunded, reversed and expired; their balances."""
    conn = connect_sync(db)
    migrate(conn)
    members = [register_member(conn, Profile(n, f"m{n}"), None, T0)[0].id for n in (1, 2, 3)]
    for i, member in enumerate(members):
        for n in range(3):
            ledger.earn(
                conn,
                member,
                100 + i,
                kind="purchase",
                key=f"purchase:{member}:{n}",
                actor="pos",
                expires_at=T0 + (timedelta(days=10) if n == 0 else YEAR),
                now=T0,
            )
    spent = ledger.spend(
        conn, members[0], 150, key="s1", actor="m", reason=None, reference=None, now=T0
    )
    ledger.refund(
        conn, spent.operation_id, key="r1", actor="ops", reason="oos", merchant_fault=True, now=T0
    )
    ledger.spend(conn, members[1], 30, key="s2", actor="m", reason=None, reference=None, now=T0)
    ledger.expire_due(conn, now=T0 + timedelta(days=11))
    balances = {
        int(row[0]): int(row[1])
        for row in conn.execute("SELECT member_id, balance FROM accounts WHERE kind = 'member'")
    }
    conn.close()
    return balances


def _config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    path.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    return path


def _migrate(config: Path, url: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["migrate-to-postgres", "--config", str(config), "--url", url]
    )
    return result.exit_code, result.output


def test_a_ledger_is_copied_audited_and_goes_on_there(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "points.sqlite3"
    balances = _sqlite_ledger(db)
    code, output = _migrate(_config(tmp_path, db), pg_url)
    assert code == 0, output
    assert "audit passed" in output and "now set [storage] url" in output
    pg = PgConnection.connect(pg_url)
    try:
        copied = {
            int(row[0]): int(row[1])
            for row in pg.execute("SELECT member_id, balance FROM accounts WHERE kind = 'member'")
        }
        sources = dict(
            pg.execute("SELECT name, balance FROM account_balances WHERE name IS NOT NULL")
        )
        # The planner knows what was copied (not the empty tables it saw before).
        planned = pg.execute(
            "SELECT reltuples FROM pg_class WHERE relname = 'accounts' AND relkind = 'r'"
        ).fetchone()[0]
    finally:
        pg.close()
    assert planned == len(balances) + 17  # the members' accounts and the system ones
    assert copied == balances
    source = sqlite3.connect(db)
    try:
        assert sources == dict(
            source.execute("SELECT name, balance FROM account_balances WHERE name IS NOT NULL")
        )
    finally:
        source.close()

    async def go_on() -> None:
        # The bot now runs on PostgreSQL: new operations draw ids after the copied ones.
        async with PgStore(pg_url) as store:
            book = Ledger(store)  # type: ignore[arg-type]
            result = await book.earn(
                1, 5, kind="purchase", key="after", actor="pos", expires_at=None, now=T0
            )
            assert result.balance_after == balances[1] + 5

    asyncio.run(go_on())


def test_a_database_not_empty_or_a_url_with_a_password_is_refused(
    tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "points.sqlite3"
    _sqlite_ledger(db)
    config = _config(tmp_path, db)
    assert _migrate(config, pg_url)[0] == 0
    code, output = _migrate(config, pg_url)  # again, into what the first copy filled
    assert code == 2 and "not empty" in output
    code, output = _migrate(config, pg_url.replace("://", "://pointsbot:secret@", 1))
    assert code == 2 and "password" in output and "secret" not in output


def test_a_sqlite_file_behind_this_pointsbot_is_refused(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "points.sqlite3"
    conn = connect_sync(db)
    migrate(conn, target=29)
    conn.close()
    code, output = _migrate(_config(tmp_path, db), pg_url)
    assert code == 2 and "init-db" in output
