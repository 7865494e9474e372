"""storage.store leans on two private names of aiosqlite in one place (Store._call): this fails
loudly, naming them, the day an aiosqlite release changes them."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import aiosqlite

from storage.store import Store

CHANGED = (
    "aiosqlite {version} changed {what}, which storage/store.py Store._call relies on to run "
    "a whole transaction in one hop: adapt Store._call (and only it) to the new aiosqlite"
)


async def test_aiosqlite_still_has_what_store_call_relies_on(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(tmp_path / "probe.sqlite3")
    try:
        version = aiosqlite.__version__
        assert callable(getattr(conn, "_execute", None)), CHANGED.format(
            version=version, what="Connection._execute(fn, *args)"
        )
        assert isinstance(getattr(conn, "_conn", None), sqlite3.Connection), CHANGED.format(
            version=version, what="Connection._conn (its sqlite3.Connection)"
        )
        # The thread aiosqlite runs a statement on, seen through public API only.
        statement_threads: list[int] = []

        def note_thread() -> int:
            statement_threads.append(threading.get_ident())
            return 1

        await conn.create_function("note_thread", 0, note_thread)
        await conn.execute("SELECT note_thread()")
        called: list[tuple[int, sqlite3.Connection]] = []

        def probe(given: sqlite3.Connection, number: int) -> int:
            called.append((threading.get_ident(), given))
            return number + 1

        assert await Store._call(conn, probe, 41) == 42
        [(thread, given)] = called
        assert given is conn._conn and thread == statement_threads[0], CHANGED.format(
            version=version, what="the thread Connection._execute runs a function on"
        )
        assert thread != threading.get_ident()  # never on the event loop
    finally:
        await conn.close()
