"""`pointsbot backup`: an online copy while the bot keeps writing, verified by the audit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from storage.audit import audit
from storage.store import connect_sync
from tests.conftest import SAMPLE, Sandbox


async def test_backup_while_the_bot_writes_passes_the_audit(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        SAMPLE.read_text(encoding="utf-8").replace(
            'path = "data/pointsbot.sqlite3"', f'path = "{sandbox.config.storage.path}"'
        ),
        encoding="utf-8",
    )
    await sandbox.member(4601).send("/start")
    member = await sandbox.services.members.by_telegram_id(4601)
    assert member is not None
    ledger = sandbox.services.ledger

    async def keep_earning() -> None:
        for i in range(200):
            await ledger.earn(
                member.id, 1, kind="purchase", key=f"k{i}", actor="t", expires_at=None
            )

    writer = asyncio.create_task(keep_earning())
    await asyncio.sleep(0.01)
    copy = tmp_path / "backup.sqlite3"
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["backup", "--config", str(config), str(copy)]
    )
    await writer
    assert result.exit_code == 0, result.output
    assert "audit passed" in result.output
    conn = connect_sync(copy)
    try:
        assert audit(conn, integrity="full").ok
        members = conn.execute("SELECT count(*) FROM members WHERE telegram_id = 4601").fetchone()
        copied = conn.execute("SELECT count(*) FROM operations").fetchone()[0]
    finally:
        conn.close()
    assert members[0] == 1
    assert copied <= 200  # a snapshot: whatever was committed when it began, all of it
    # A second backup to the same file needs --force.
    again = CliRunner().invoke(main, ["backup", "--config", str(config), str(copy)])
    assert again.exit_code == 2 and "--force" in again.output
    forced = CliRunner().invoke(main, ["backup", "--config", str(config), str(copy), "--force"])
    assert forced.exit_code == 0, forced.output


def test_backup_without_a_database_explains(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        SAMPLE.read_text(encoding="utf-8").replace(
            'path = "data/pointsbot.sqlite3"', f'path = "{tmp_path / "none.sqlite3"}"'
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["backup", "--config", str(config), str(tmp_path / "b")])
    assert result.exit_code == 2 and "no database" in result.output
