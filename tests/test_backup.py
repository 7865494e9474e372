"""`pointsbot backup`: an online copy that misses no acknowledged commit, restores and serves,
never lands on the live database, and never replaces a good backup with a bad copy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.app import build_application, running
from bot.backup_files import dated_backup, stale_backups
from bot.cli import main
from bot.clock import FixedClock
from bot.config import load_config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from storage.audit import audit
from storage.ledger import Ledger
from storage.members import Members, Profile
from storage.store import Store, connect_sync
from tests.conftest import NOW, SAMPLE, PinnedCliRunner

# Purchases the till books before a test starts its backup, so the copy has a past to keep.
BOOKED_FIRST = 20


def _config_file(tmp_path: Path, database: Path) -> Path:
    """The sample programme with its database at `database`."""
    config = tmp_path / "config.toml"
    config.write_text(
        SAMPLE.read_text(encoding="utf-8").replace(
            'path = "data/pointsbot.sqlite3"', f'path = "{database}"'
        ),
        encoding="utf-8",
    )
    return config


async def _backup(config: Path, *args: str) -> Result:
    """`pointsbot backup` in a thread, so the event loop (and the till) keeps running."""
    return await asyncio.to_thread(
        CliRunner().invoke, main, ["backup", "--config", str(config), *args]
    )


def _open_copy(path: Path) -> sqlite3.Connection:
    """A backup, opened read-only: looking at it must not change it (not even into WAL mode)."""
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


def _till_keys(conn: sqlite3.Connection) -> list[str]:
    """The keys of the till's purchases in a database, in the order they were committed."""
    rows = conn.execute(
        "SELECT idempotency_key FROM operations WHERE idempotency_key LIKE 'till:%' ORDER BY id"
    ).fetchall()
    return [row[0] for row in rows]


@contextlib.asynccontextmanager
async def till_booking(store: Store, telegram_id: int) -> AsyncIterator[list[str]]:
    """A cashier booking 1-point purchases without pause for one member; yields the keys the
    ledger has acknowledged so far (a growing list), and stops on exit."""
    member, _ = await Members(store).register(Profile(telegram_id, "小明"), now=NOW)
    ledger = Ledger(store)
    acknowledged: list[str] = []
    stop, busy = asyncio.Event(), asyncio.Event()

    async def book() -> None:
        try:
            while not stop.is_set():
                key = f"till:{len(acknowledged)}"
                await ledger.earn(
                    member.id, 1, kind="purchase", key=key, actor="till", expires_at=None, now=NOW
                )
                acknowledged.append(key)
                if len(acknowledged) == BOOKED_FIRST:
                    busy.set()
        finally:
            busy.set()  # a till that fails must not leave the test waiting

    task = asyncio.create_task(book())
    try:
        await busy.wait()
        if task.done():
            await task  # raises what stopped the till
        yield acknowledged
    finally:
        stop.set()
        await task


async def test_the_copy_holds_every_acknowledged_purchase_and_serves_once_restored(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "bot.sqlite3"
    config = _config_file(tmp_path, database)
    copy = tmp_path / "backups" / "nightly.sqlite3"
    copy.parent.mkdir()
    async with (
        Store(database, synchronous="NORMAL") as store,
        till_booking(store, 4601) as acknowledged,
    ):
        before = list(acknowledged)
        result = await _backup(config, str(copy))
        booked_meanwhile = len(acknowledged) - len(before)
    assert result.exit_code == 0, result.output
    assert "audit passed" in result.output
    assert booked_meanwhile > 0  # the till kept committing while the copy was made
    with contextlib.closing(_open_copy(copy)) as conn:
        copied = _till_keys(conn)
    # One snapshot: everything acknowledged before the backup began (none missing), and the
    # purchases after it in commit order up to some point, with no hole.
    assert set(before) <= set(copied)
    assert copied == [f"till:{i}" for i in range(len(copied))]
    assert os.listdir(copy.parent) == [copy.name]  # no temporary left behind

    # Restore as the README says: the bot stopped, the copy in place of the database file,
    # its -wal and -shm deleted, `pointsbot audit`, the bot started.
    shutil.copyfile(copy, database)
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    audited = CliRunner().invoke(main, ["audit", "--config", str(config)])
    assert audited.exit_code == 0, audited.output
    async with BotApiEmulator() as emu:
        app = build_application(
            load_config(config),
            emu.token,
            base_url=emu.base_url,
            schedule_jobs=False,
            clock=FixedClock(NOW),
        )
        emu.clock = lambda: app.bot_data.clock()
        async with running(app, poll_timeout=1):
            [reply] = await ChatClient(emu, 4601, first_name="小明").send("/balance")
            assert (reply.text or "").startswith(f"💰 可用积分：{len(copied)}\n"), reply.text
            # ... and books on the restored database as before.
            member = await app.bot_data.members.by_telegram_id(4601)
            assert member is not None
            await app.bot_data.ledger.earn(
                member.id, 5, kind="purchase", key="after-restore", actor="till", expires_at=None
            )
            assert (await app.bot_data.ledger.balance(member.id)).available == len(copied) + 5
            report = await app.bot_data.store.read(audit)
            assert report.ok, str(report)


def _symlink(database: Path) -> str:
    link = database.parent.parent / "latest.sqlite3"
    link.symlink_to(database)
    return str(link)


def _hard_link(database: Path) -> str:
    link = database.parent.parent / "same-inode.sqlite3"
    os.link(database, link)
    return str(link)


# Each way of naming the live database (or a file SQLite keeps beside it).
LIVE_NAMES: dict[str, Callable[[Path], str]] = {
    "the configured path": str,
    "a relative path through ..": lambda _db: "data/../data/bot.sqlite3",
    "a symlink to it": _symlink,
    "a hard link to it": _hard_link,
    "its -wal": lambda db: f"{db}-wal",
    "its -shm": lambda db: f"{db}-shm",
}


def _files(folder: Path) -> dict[str, int]:
    """Every file in `folder` and its inode: what a refused backup must leave as it was."""
    return {entry.name: entry.stat(follow_symlinks=False).st_ino for entry in os.scandir(folder)}


@pytest.mark.parametrize("name", LIVE_NAMES)
async def test_a_backup_onto_the_live_database_is_refused_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "data" / "bot.sqlite3"
    config = _config_file(tmp_path, database)
    async with Store(database, synchronous="NORMAL") as store:
        async with till_booking(store, 4602) as acknowledged:
            destination = LIVE_NAMES[name](database)
            files = {folder: _files(folder) for folder in (tmp_path, database.parent)}
            # --force, as an operator who means "overwrite yesterday's copy" might type it.
            result = await _backup(config, destination, "--force")
            assert {folder: _files(folder) for folder in files} == files
        acknowledged_in_all = list(acknowledged)
    assert result.exit_code == 2, result.output
    assert "is the live database" in result.output
    # Every purchase the till was told was booked is still in the database, audited.
    with contextlib.closing(connect_sync(database)) as conn:
        assert _till_keys(conn) == acknowledged_in_all
        report = audit(conn)
    assert report.ok, str(report)


async def test_a_copy_that_fails_verification_replaces_nothing(tmp_path: Path) -> None:
    database = tmp_path / "data" / "bot.sqlite3"
    config = _config_file(tmp_path, database)
    async with Store(database, synchronous="NORMAL") as store:
        member, _ = await Members(store).register(Profile(4603, "小明"), now=NOW)
        for i in range(3):
            await Ledger(store).earn(
                member.id, 10, kind="purchase", key=f"r{i}", actor="till", expires_at=None, now=NOW
            )
    nightly = tmp_path / "nightly.sqlite3"
    first = await _backup(config, str(nightly))
    assert first.exit_code == 0, first.output
    good = nightly.read_bytes()
    # The live ledger goes wrong (a cached balance no posting explains): its copy fails the
    # audit and must not take the place of the last good backup, nor appear anywhere.
    with contextlib.closing(connect_sync(database)) as conn:
        conn.execute("UPDATE accounts SET balance = balance + 5 WHERE member_id = ?", (member.id,))
    listing = sorted(os.listdir(tmp_path))
    forced = await _backup(config, str(nightly), "--force")
    assert forced.exit_code == 1, forced.output
    assert "audit FAILED" in forced.output
    assert f"{nightly} is unchanged" in forced.output
    assert nightly.read_bytes() == good
    fresh = await _backup(config, str(tmp_path / "other.sqlite3"))
    assert fresh.exit_code == 1, fresh.output
    assert sorted(os.listdir(tmp_path)) == listing  # no partial copy, no temporary left


async def test_force_replaces_an_existing_backup_and_without_it_is_refused(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "bot.sqlite3"
    config = _config_file(tmp_path, database)
    async with Store(database, synchronous="NORMAL") as store:
        member, _ = await Members(store).register(Profile(4604, "小明"), now=NOW)
        nightly = tmp_path / "nightly.sqlite3"
        assert (await _backup(config, str(nightly))).exit_code == 0
        await Ledger(store).earn(
            member.id, 10, kind="purchase", key="later", actor="till", expires_at=None, now=NOW
        )
        again = await _backup(config, str(nightly))
        assert again.exit_code == 2 and "--force" in again.output
        with contextlib.closing(_open_copy(nightly)) as conn:  # untouched by the refused run
            assert conn.execute("SELECT count(*) FROM operations").fetchone()[0] == 0
        forced = await _backup(config, str(nightly), "--force")
        assert forced.exit_code == 0, forced.output
    with contextlib.closing(_open_copy(nightly)) as conn:
        keys = [r[0] for r in conn.execute("SELECT idempotency_key FROM operations")]
    assert keys == ["later"]


def test_backup_without_a_database_explains(tmp_path: Path) -> None:
    config = _config_file(tmp_path, tmp_path / "none.sqlite3")
    result = CliRunner().invoke(main, ["backup", "--config", str(config), str(tmp_path / "b")])
    assert result.exit_code == 2 and "no database" in result.output


async def test_a_nightly_backup_into_a_folder_keeps_the_newest_and_only_its_own_files(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "bot.sqlite3"
    config = _config_file(tmp_path, database)
    async with Store(database, synchronous="NORMAL") as store:
        member, _ = await Members(store).register(Profile(4605, "小明"), now=NOW)
        await Ledger(store).earn(
            member.id, 10, kind="purchase", key="r1", actor="till", expires_at=None, now=NOW
        )
    folder = tmp_path / "backups"  # created by the first run
    nights = [NOW + timedelta(days=n) for n in range(4)]

    def nightly(now: datetime) -> Result:
        args = ["backup", "--config", str(config), "--into", str(folder), "--keep", "2"]
        return PinnedCliRunner(now).invoke(main, args)

    for night in nights[:3]:
        result = nightly(night)
        assert result.exit_code == 0, result.output
        if night == nights[0]:
            # An operator's own files in the folder are never the timer's to delete.
            (folder / "before-upgrade.sqlite3").write_bytes(b"kept")
            (folder / "notes.txt").write_text("kept", encoding="utf-8")
    assert "removed" in result.output and "20261125T040000Z" in result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "before-upgrade.sqlite3",
        "notes.txt",
        "pointsbot-20261126T040000Z.sqlite3",
        "pointsbot-20261127T040000Z.sqlite3",
    ]
    # A night whose copy fails verification deletes nothing: the two good copies stay.
    with contextlib.closing(connect_sync(database)) as conn:
        conn.execute("UPDATE accounts SET balance = balance + 5 WHERE member_id = ?", (member.id,))
    listing = sorted(os.listdir(folder))
    failed = nightly(nights[3])
    assert failed.exit_code == 1, failed.output
    assert sorted(os.listdir(folder)) == listing


@pytest.mark.parametrize(
    "args",
    [[], ["copy.sqlite3", "--into", "backups"], ["copy.sqlite3", "--keep", "3"]],
    ids=["nothing", "both", "keep-without-into"],
)
def test_backup_needs_one_destination(tmp_path: Path, args: list[str]) -> None:
    config = _config_file(tmp_path, tmp_path / "bot.sqlite3")
    result = CliRunner().invoke(main, ["backup", "--config", str(config), *args])
    assert result.exit_code == 2
    assert "DESTINATION" in result.output or "--into" in result.output


def test_pruning_never_names_the_live_database_nor_a_copy_being_written(tmp_path: Path) -> None:
    live = tmp_path / "pointsbot-20200101T000000Z.sqlite3"  # a database named like a backup
    names = [
        live.name,
        "pointsbot-20261125T040000Z.sqlite3",
        "pointsbot-20261126T040000Z.sqlite3",
        ".pointsbot-20261127T040000Z.sqlite3.x1y2.tmp",  # backup_to's temporary copy
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert stale_backups(tmp_path, 1, live) == [tmp_path / "pointsbot-20261125T040000Z.sqlite3"]
    assert stale_backups(tmp_path, 5, live) == []
    assert dated_backup(tmp_path, NOW).name == "pointsbot-20261125T040000Z.sqlite3"
