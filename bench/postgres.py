"""PostgreSQL beside SQLite: the same ledger operations through the same async Ledger.

1. Earn then spend, one awaited operation at a time, 100 members: the SQLite store
   (synchronous=FULL, WAL) against the PostgreSQL store (one process, SERIALIZABLE writes;
   the server runs with fsync off when it is the throwaway `.ci/postgres` one, so the ratio
   is the cost of the round trips and the engine, not of the disk).
2. Members tapping at once (16 at a time, each its own member): through one PostgreSQL store
   against through two (two bot processes' writers; here in one Python process, so the
   client side shares one core, as two processes on a 2-core box would share two).
   Each store has a single writer connection, so one store serializes its writes as SQLite's
   writer does; two let PostgreSQL run them side by side, retrying the ones that conflict.

The server: POINTSBOT_TEST_POSTGRES when set, else a throwaway one from `.ci/postgres start`
(stopped at the end); without either, the benchmark says so and measures nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit, urlunsplit

from storage.audit import audit
from storage.ledger import Ledger
from storage.members import Members, Profile
from storage.pg_store import PgStore
from storage.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def pg_server() -> Iterator[str | None]:
    """A PostgreSQL server's URL (the environment's, else a throwaway one), or None."""
    if url := os.environ.get("POINTSBOT_TEST_POSTGRES"):
        yield url
        return
    try:
        started = subprocess.run(
            [str(ROOT / ".ci" / "postgres"), "start"],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError):
        yield None
        return
    found = dict(
        line.removeprefix("export ").split("=", 1)
        for line in started.stdout.splitlines()
        if "=" in line
    )
    try:
        yield found["POINTSBOT_TEST_POSTGRES"]
    finally:
        subprocess.run(
            [str(ROOT / ".ci" / "postgres"), "stop", found["POINTSBOT_TEST_PGDIR"]], check=False
        )


@contextmanager
def pg_database(server: str) -> Iterator[str]:
    """A new database on the server for one measurement; dropped after."""
    import psycopg

    name = f"pointsbot_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _members(store: Store, count: int) -> list[int]:
    members = Members(store)
    return [
        (await members.register(Profile(telegram_id, f"m{telegram_id}"), now=T0))[0].id
        for telegram_id in range(1, count + 1)
    ]


async def _pairs(book: Ledger, member: int, pairs: int, tag: str) -> int:
    """Earn 100 then spend 60, `pairs` times, for one member; the operations done."""
    done = 0
    for i in range(pairs):
        await book.earn(
            member,
            100,
            kind="purchase",
            key=f"e{tag}:{i}",
            actor="bench",
            expires_at=T0 + YEAR,
            now=T0,
        )
        await book.spend(
            member, 60, key=f"s{tag}:{i}", actor="bench", reason=None, reference=None, now=T0
        )
        done += 2
    return done


async def _sequential(store: Store, pairs: int) -> float:
    """Ops/s of earn+spend, one operation at a time, over 100 members."""
    members = await _members(store, 100)
    book = Ledger(store)
    started = time.perf_counter()
    for i in range(pairs):
        await _pairs(book, members[i % len(members)], 1, f"{i}")
    elapsed = time.perf_counter() - started
    report = await store.read(audit)
    assert report.ok, str(report)
    return 2 * pairs / elapsed


async def _concurrent(url: str, processes: int, tappers: int, pairs: int) -> float:
    """Ops/s of `tappers` members each doing earn+spend `pairs` times at once, spread over
    `processes` stores."""
    stores = [cast(Store, PgStore(url)) for _ in range(processes)]
    for store in stores:
        await store.open()
    try:
        members = await _members(stores[0], tappers)
        books = [Ledger(store) for store in stores]
        started = time.perf_counter()
        done = await asyncio.gather(
            *(_pairs(books[i % processes], m, pairs, f"m{m}") for i, m in enumerate(members))
        )
        elapsed = time.perf_counter() - started
        report = await stores[0].read(audit)
        assert report.ok, str(report)
        return sum(done) / elapsed
    finally:
        for store in stores:
            await store.close()


def main(argv: list[str] | None = None) -> None:
    """Print the ledger's ops/s on SQLite and PostgreSQL, and with one and two processes."""
    parser = argparse.ArgumentParser(prog="python -m bench postgres")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    pairs, tappers, each = (20, 4, 5) if quick else (2_000, 16, 100)
    with pg_server() as server:
        if server is None:
            print("skipped: no PostgreSQL (set POINTSBOT_TEST_POSTGRES or install postgresql)")
            return
        with tempfile.TemporaryDirectory(prefix="pointsbot-bench-") as tmp:

            async def on_sqlite() -> float:
                async with Store(Path(tmp, "ledger.db"), synchronous="FULL") as store:
                    return await _sequential(store, pairs)

            sqlite_rate = asyncio.run(on_sqlite())
        with pg_database(server) as url:

            async def on_postgres() -> float:
                async with PgStore(url) as store:
                    return await _sequential(cast(Store, store), pairs)

            pg_rate = asyncio.run(on_postgres())
        print(
            f"earn+spend, {2 * pairs:,} single operations one at a time: SQLite {sqlite_rate:,.0f}"
            f" ops/s, PostgreSQL {pg_rate:,.0f} ops/s, ratio PostgreSQL/SQLite"
            f" {pg_rate / sqlite_rate:.2f}"
        )
        rates = {}
        for processes in (1, 2):
            with pg_database(server) as url:
                rates[processes] = asyncio.run(_concurrent(url, processes, tappers, each))
        print(
            f"{tappers} members tapping at once, {2 * tappers * each:,} operations:"
            f" one process {rates[1]:,.0f} ops/s, two processes {rates[2]:,.0f} ops/s,"
            f" ratio two/one {rates[2] / rates[1]:.2f}"
        )


if __name__ == "__main__":
    main()
