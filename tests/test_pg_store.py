"""The PostgreSQL store (storage/pg_store.py): migrations numbered with SQLite's, taken once
by processes starting together, and writes from several processes at once serialized by
PostgreSQL (SERIALIZABLE, run again after a conflict) so no balance is ever overdrawn."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics
from storage.audit import audit
from storage.errors import InsufficientPoints, MigrationError
from storage.journal import Journal
from storage.ledger import Ledger, OperationResult
from storage.members import Members, Profile
from storage.pg import PgConnection
from storage.pg_store import PgStore, pg_migrate, pg_migrations, pg_schema_version
from storage.sql import stands_alone
from storage.store import Store, latest_version

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_postgresql_migrations_reach_the_sqlite_schemas_version() -> None:
    versions = [version for version, _name, _sql in pg_migrations()]
    assert versions[0] == 30  # the baseline: SQLite's version when PostgreSQL arrived
    assert versions == list(range(30, latest_version() + 1))


async def test_open_migrates_once_and_a_second_open_applies_nothing(pg_url: str) -> None:
    async with PgStore(pg_url) as store:
        assert await store.version() == latest_version()
    conn = PgConnection.connect(pg_url)
    try:
        assert pg_migrate(conn) == []
        assert pg_schema_version(conn) == latest_version()
    finally:
        conn.close()


async def test_processes_starting_together_migrate_once(pg_url: str) -> None:
    stores = [PgStore(pg_url) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert {await store.version() for store in stores} == {latest_version()}
        accounts = await stores[0].read(
            lambda c: c.execute("SELECT count(*) FROM accounts").fetchone()[0]
        )
        assert accounts == 17  # the system accounts, seeded once
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_database_newer_than_this_pointsbot_is_refused(pg_url: str) -> None:
    async with PgStore(pg_url):
        pass
    conn = PgConnection.connect(pg_url)
    conn.execute("UPDATE schema_version SET version = version + 1")
    conn.close()
    with pytest.raises(MigrationError, match="newer than this pointsbot"):
        await PgStore(pg_url).open()


async def test_two_processes_spending_at_once_never_overdraw(pg_url: str) -> None:
    # Two stores are two bot processes: each has its own writer, so their transactions really
    # run side by side and PostgreSQL, not one thread, has to keep the balance right.
    first, second = PgStore(pg_url), PgStore(pg_url)
    await first.open()
    await second.open()
    try:
        member, _ = await Members(first).register(Profile(1, "alice"), now=T0)  # type: ignore[arg-type]
        books = [Ledger(first), Ledger(second)]  # type: ignore[arg-type]
        await books[0].earn(
            member.id, 100, kind="purchase", key="seed", actor="pos", expires_at=None, now=T0
        )
        outcomes = await asyncio.gather(
            *(
                books[i % 2].spend(
                    member.id, 7, key=f"tap:{i}", actor="m", reason=None, reference=None, now=T0
                )
                for i in range(30)
            ),
            return_exceptions=True,
        )
        done = [o for o in outcomes if isinstance(o, OperationResult)]
        refused = [o for o in outcomes if isinstance(o, InsufficientPoints)]
        assert (len(done), len(refused)) == (100 // 7, 30 - 100 // 7), outcomes
        assert sorted(r.balance_after for r in done) == [100 - 7 * k for k in range(14, 0, -1)]
        assert (await books[1].balance(member.id, T0)).available == 100 % 7
        report = await second.read(audit)
        assert report.ok, str(report)
    finally:
        await first.close()
        await second.close()


async def test_the_ledger_refuses_to_be_rewritten_through_the_store(pg_url: str) -> None:
    async with PgStore(pg_url) as store:
        book = Ledger(store)  # type: ignore[arg-type]
        member, _ = await Members(store).register(Profile(2, "bob"), now=T0)  # type: ignore[arg-type]
        await book.earn(
            member.id, 10, kind="purchase", key="k", actor="pos", expires_at=None, now=T0
        )
        for statement in (
            "UPDATE operations SET points = 1000",
            "DELETE FROM postings",
            "TRUNCATE operations CASCADE",
        ):

            def rewrite(conn: sqlite3.Connection, sql: str = statement) -> None:
                conn.execute(sql)

            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                await store.write(rewrite)
        assert (await book.balance(member.id, T0)).available == 10


def test_a_pg_store_takes_the_same_calls_as_store() -> None:
    public = {name for name in dir(Store) if not name.startswith("_")}
    missing = {"open", "close", "write", "read", "lookup", "now", "version", "is_open"} - {
        name for name in dir(PgStore) if not name.startswith("_")
    }
    assert not missing and {"write", "read", "lookup"} <= public


async def test_a_write_waiting_to_run_again_after_a_conflict_holds_up_no_other(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.pg_store as pg_store

    monkeypatch.setattr(pg_store, "conflict_pause", lambda attempt: 0.5)
    tries: list[float] = []
    loop = asyncio.get_running_loop()

    def conflicting_once(conn: sqlite3.Connection) -> str:
        tries.append(loop.time())
        if len(tries) == 1:  # as PostgreSQL says it (could not serialize access ...)
            error = sqlite3.OperationalError("could not serialize access")
            error.pg_code = "40001"  # type: ignore[attr-defined]
            raise error
        return "done"

    async with PgStore(pg_url) as store:
        members = Members(store)
        started = loop.time()
        retried = asyncio.create_task(store.write(conflicting_once))
        await asyncio.sleep(0.05)
        # Meanwhile a member joins through the same writer, without waiting out the pause.
        member, _ = await members.register(Profile(9_000_001, "乙"), now=T0)
        joined = loop.time() - started
        assert await retried == "done"
        assert len(tries) == 2 and tries[1] - tries[0] >= 0.5
        assert joined < 0.4, joined
        assert await members.by_telegram_id(9_000_001) == member


def _slow_backend(conn: sqlite3.Connection) -> int:
    """Wait 0.3 s on the server, then name the backend that waited."""
    conn.execute("SELECT pg_sleep(0.3)")
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


async def test_writes_run_side_by_side_on_the_processes_writers(pg_url: str) -> None:
    # A till's purchase waiting on PostgreSQL's answer no longer holds up the other tills'.
    async with PgStore(pg_url, writers=3, readers=2) as store:
        loop = asyncio.get_running_loop()
        started = loop.time()
        writers = await asyncio.gather(*(store.write(_slow_backend) for _ in range(3)))
        readers = await asyncio.gather(*(store.read(_slow_backend) for _ in range(2)))
        took = loop.time() - started
        assert len(set(writers)) == 3 and len(set(readers)) == 2
        assert took < 1.2, took  # one after another: 1.5 s
        # A fourth write waits for a writer, then runs on one of the three.
        more = await asyncio.gather(*(store.write(_slow_backend) for _ in range(4)))
        assert set(more) == set(writers)
        assert len(store.connections()) == 3 + 2 + 2  # the writes that stand alone: 2


async def test_closing_waits_for_the_writes_running_and_refuses_new_ones(pg_url: str) -> None:
    store = await PgStore(pg_url, writers=2).open()
    running = [asyncio.create_task(store.write(_slow_backend)) for _ in range(2)]
    await asyncio.sleep(0.1)
    await store.close()
    assert all(isinstance(pid, int) for pid in await asyncio.gather(*running))
    assert store.connections() == [] and not store.is_open
    with pytest.raises(RuntimeError, match="not open"):
        await store.write(_slow_backend)
    await store.close()  # twice is harmless


def test_a_store_needs_a_writer_and_a_reader(pg_url: str) -> None:
    with pytest.raises(ValueError, match="at least one writer"):
        PgStore(pg_url, writers=0)


def _isolation(conn: sqlite3.Connection) -> tuple[str, str]:
    """The transaction's isolation level and whether this session plans sequential scans."""
    level = conn.execute("SHOW transaction_isolation").fetchone()[0]
    return str(level), str(conn.execute("SHOW enable_seqscan").fetchone()[0])


@stands_alone
def _isolation_alone(conn: sqlite3.Connection) -> tuple[str, str]:
    """`_isolation`, as a write that stands alone."""
    return _isolation(conn)


async def test_a_write_that_stands_alone_runs_at_read_committed_beside_the_writer(
    pg_url: str,
) -> None:
    async with PgStore(pg_url) as store:
        # SERIALIZABLE writes plan with indexes (a sequential scan locks a whole table for
        # conflict tracking); the others keep PostgreSQL's planner as it is.
        assert await store.write(_isolation) == ("serializable", "off")
        assert await store.write(_isolation_alone) == ("read committed", "on")
        assert await store.read(_isolation) == ("repeatable read", "on")
        # A till's nonce is claimed while another's purchase is being booked.
        loop = asyncio.get_running_loop()
        booking = asyncio.create_task(store.write(_slow_backend))
        await asyncio.sleep(0.05)
        started = loop.time()
        await store.write(_isolation_alone)
        assert loop.time() - started < 0.2 and not booking.done()
        await booking


async def test_the_store_counts_statements_busy_time_and_conflicts_for_the_metrics(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.pg_store as pg_store

    monkeypatch.setattr(pg_store, "conflict_pause", lambda attempt: 0)
    tries = 0

    def conflicting_once(conn: sqlite3.Connection) -> None:
        nonlocal tries
        tries += 1
        conn.execute("SELECT 1")
        if tries == 1:
            error = sqlite3.OperationalError("could not serialize access")
            error.pg_code = "40001"  # type: ignore[attr-defined]
            raise error

    async with PgStore(pg_url) as store:
        before = store.use()
        await store.write(conflicting_once)  # BEGIN, SELECT, ROLLBACK; BEGIN, SELECT, COMMIT
        await Journal(store).mark_done([1, 2], T0)  # type: ignore[arg-type]
        await store.read(lambda conn: conn.execute("SELECT 1").fetchone())
        after = store.use()
    grew = {
        kind: (after[kind].round_trips - use.round_trips, after[kind].conflicts - use.conflicts)
        for kind, use in before.items()
    }
    # The done marks stand alone: BEGIN, one UPDATE each, COMMIT; a read is BEGIN .. ROLLBACK.
    assert grew == {"writer": (6, 1), "alone": (4, 0), "reader": (3, 0)}
    assert after["writer"].busy_seconds > before["writer"].busy_seconds
    text = Metrics().exposition(None, T0, None, after).decode()
    samples = {
        (sample.name, sample.labels.get("kind")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples["pointsbot_database_conflicts_total", "writer"] == after["writer"].conflicts
    assert samples["pointsbot_database_round_trips_total", "alone"] == after["alone"].round_trips
    assert samples["pointsbot_database_connections", "reader"] == 2
