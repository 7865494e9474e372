"""The PostgreSQL store after a lost connection (storage/pg_store.py): the next call connects
again and goes on, a write is run again only when nothing of it can have been committed, and a
server that stays away makes the call fail within `reconnect_seconds`.

A restart is simulated by ending the store's backends from another connection
(pg_terminate_backend): the server is shared with other tests and is never restarted."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from storage import pg_store
from storage.errors import CommitUnknown
from storage.ledger import Ledger
from storage.members import Members, Profile
from storage.pg import Parameters, PgConnection
from storage.pg_store import PgStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def admin(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own, to end the store's backends and to look at its data."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
async def notes(pg_url: str, admin: psycopg.Connection[Any]) -> AsyncIterator[PgStore]:
    """An open store (not migrated) on a database with one table, `notes`."""
    admin.execute("CREATE TABLE notes (id BIGINT GENERATED ALWAYS AS IDENTITY, note TEXT)")
    async with PgStore(pg_url, migrate=False, writers=1, readers=1) as store:
        yield store


def end_backend(admin: psycopg.Connection[Any], pid: int) -> None:
    """End a backend as a restart or a dropped connection would (waiting until it is gone)."""
    assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)


def backend_pid(conn: sqlite3.Connection) -> int:
    """The PostgreSQL backend serving this connection."""
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


async def backend_pids(store: PgStore) -> tuple[int, int]:
    """The writer's and the reader's backends."""
    return await store.write(backend_pid), await store.read(backend_pid)


def note_rows(admin: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The notes table's notes, in order."""
    return admin.execute("SELECT note FROM notes ORDER BY id").fetchall()


async def test_after_both_backends_end_the_next_write_and_read_work_on_the_data_before(
    pg_url: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with PgStore(pg_url, writers=1, readers=1) as store:
        book = Ledger(store)  # type: ignore[arg-type]
        member, _ = await Members(store).register(Profile(1, "alice"), now=T0)  # type: ignore[arg-type]
        await book.earn(
            member.id, 10, kind="purchase", key="before", actor="pos", expires_at=None, now=T0
        )
        writer, reader = await backend_pids(store)
        end_backend(admin, writer)
        end_backend(admin, reader)
        with caplog.at_level(logging.INFO, logger="storage.pg_store"):
            await book.earn(
                member.id, 5, kind="purchase", key="after", actor="pos", expires_at=None, now=T0
            )
            assert (await book.balance(member.id, T0)).available == 15
        assert set(await backend_pids(store)).isdisjoint({writer, reader})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    back = [r for r in caplog.records if r.levelno == logging.INFO and "back after" in r.message]
    assert len(warnings) == len(back) == 2  # one of each per connection replaced
    assert "terminating connection due to administrator command" in warnings[0].message


async def test_a_write_lost_in_the_middle_is_run_again_and_done_once(
    notes: PgStore, admin: psycopg.Connection[Any]
) -> None:
    calls = 0

    def add(conn: sqlite3.Connection) -> None:
        nonlocal calls
        calls += 1
        conn.execute("INSERT INTO notes (note) VALUES (?)", ("once",))
        if calls == 1:
            end_backend(admin, backend_pid(conn))
        conn.execute("SELECT 1")  # fails on the first run: its connection is gone

    await notes.write(add)
    assert calls == 2
    assert note_rows(admin) == [("once",)]


class _LostAtCommit(PgConnection):
    """A connection that loses itself when it sends COMMIT (as many times as asked)."""

    commits_to_lose: ClassVar[int] = 0

    def execute(self, sql: str, parameters: Parameters = ()) -> Any:
        """Run the statement, closing the connection first when it is a COMMIT to lose."""
        if sql == "COMMIT" and _LostAtCommit.commits_to_lose > 0:
            _LostAtCommit.commits_to_lose -= 1
            self.raw.close()  # psycopg then raises OperationalError: the connection is closed
        return super().execute(sql, parameters)


async def test_a_write_lost_during_commit_is_not_run_again_and_the_store_goes_on(
    pg_url: str, admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.execute("CREATE TABLE notes (id BIGINT GENERATED ALWAYS AS IDENTITY, note TEXT)")
    monkeypatch.setattr(pg_store, "PgConnection", _LostAtCommit)
    calls = 0

    def add(conn: sqlite3.Connection) -> None:
        nonlocal calls
        calls += 1
        conn.execute("INSERT INTO notes (note) VALUES (?)", (f"call {calls}",))

    async with PgStore(pg_url, migrate=False, writers=1, readers=1) as store:
        monkeypatch.setattr(_LostAtCommit, "commits_to_lose", 1)
        with pytest.raises(CommitUnknown, match="during COMMIT") as raised:
            await store.write(add)
        assert isinstance(raised.value, sqlite3.OperationalError)  # what handlers catch
        assert calls == 1  # not run again: it might have been committed
        await store.write(add)
        assert await store.read(lambda c: c.execute("SELECT count(*) FROM notes").fetchone()[0])
    # Here the connection closed before COMMIT reached the server: only the second is there.
    assert note_rows(admin) == [("call 2",)]


def _closed_port_url(url: str) -> str:
    """The URL with a password, at a local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:secret@127.0.0.1:{port}"))


async def test_a_server_away_longer_than_reconnect_seconds_fails_the_call_promptly(
    pg_url: str, admin: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with PgStore(pg_url, migrate=False, reconnect_seconds=0.5, writers=1, readers=1) as store:
        writer, reader = await backend_pids(store)
        store.url = _closed_port_url(pg_url)
        end_backend(admin, writer)
        end_backend(admin, reader)
        for call in (store.write, store.read):
            started = time.monotonic()
            with pytest.raises(sqlite3.OperationalError, match="refused"):
                await call(backend_pid)
            assert 0.4 < time.monotonic() - started < 2
        store.url = pg_url  # the server is back: the next call connects again
        assert set(await backend_pids(store)).isdisjoint({writer, reader})
    assert "secret" not in caplog.text and "***@127.0.0.1" in caplog.text


async def test_the_stores_connections_notice_a_silent_server_and_time_out(
    notes: PgStore,
) -> None:
    for conn in notes.connections():
        settings = conn.raw.info.get_parameters()
        assert settings["keepalives"] == "1" and settings["keepalives_idle"] == "5"
        assert settings["connect_timeout"] == "5"
