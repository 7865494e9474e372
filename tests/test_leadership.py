"""One leader among the bot's processes: the epoch every leader-only write checks (on both
engines), PostgreSQL's advisory-lock election, and two real bots on one PostgreSQL database
of which only the leader fetches updates, the other taking over when it goes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.app import _once_per_tick, build_application, running
from bot.clock import FixedClock
from bot.config import Config
from bot.health import check_health
from bot.leader import PgElection, SoleLeader
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotApp
from storage.errors import NotLeader
from storage.fence import check_epoch, fenced
from storage.journal import Journal
from storage.leader_lock import LEADER_LOCK
from storage.leadership import Leadership, claim_tick, current_leader, take_leadership
from storage.members import Members, Profile
from storage.pushes import Push, Pushes
from storage.store import Store
from tests.conftest import NOW, Sandbox
from tests.postgres import ENGINES, migrated_connection, opened_store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database of each engine, in autocommit (each statement its own)."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


def test_each_new_leader_takes_the_next_epoch_and_the_old_ones_writes_are_refused(
    conn: sqlite3.Connection,
) -> None:
    assert current_leader(conn) is None
    first = take_leadership(conn, "host-a:1", T0)
    check_epoch(conn, first)  # the leader's own writes go ahead
    second = take_leadership(conn, "host-b:2", T0 + timedelta(seconds=3))
    assert (first, second) == (1, 2)
    leader = current_leader(conn)
    assert leader is not None and (leader.epoch, leader.holder) == (2, "host-b:2")
    assert leader.since == T0 + timedelta(seconds=3)
    with pytest.raises(NotLeader) as refused:
        check_epoch(conn, first)
    assert (refused.value.epoch, refused.value.current) == (1, 2)
    check_epoch(conn, None)  # unfenced callers (tools, tests) are not checked


def test_a_job_tick_is_claimed_once_and_only_by_the_current_leader(
    conn: sqlite3.Connection,
) -> None:
    old = take_leadership(conn, "a:1", T0)
    assert claim_tick(conn, "daily-pushes", "2026-03-01", old, T0)
    new = take_leadership(conn, "b:2", T0)
    # The new leader finds the day claimed (the old one ran it, or its catch-up will).
    assert not claim_tick(conn, "daily-pushes", "2026-03-01", new, T0)
    assert claim_tick(conn, "daily-pushes", "2026-03-02", new, T0)
    # The old leader, not knowing it was replaced, claims nothing more.
    with pytest.raises(NotLeader):
        claim_tick(conn, "daily-pushes", "2026-03-03", old, T0)
    rows = conn.execute("SELECT job, tick, epoch FROM job_ticks ORDER BY tick").fetchall()
    assert [tuple(r) for r in rows] == [
        ("daily-pushes", "2026-03-01", 1),
        ("daily-pushes", "2026-03-02", 2),
    ]


@pytest.mark.parametrize("engine", ENGINES)
async def test_stale_epochs_are_refused_through_the_facades(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path, clock=lambda: T0) as store:
        old, new = SoleLeader(store, "a:1"), SoleLeader(store, "b:2")
        assert await old.try_lead(T0) and old.epoch == 1
        assert await new.try_lead(T0) and new.epoch == 2
        journal = Journal(store)
        batch = [{"update_id": 41, "message": {"text": "hi"}}]
        with pytest.raises(NotLeader):
            await journal.record(batch, [], T0, epoch=old.epoch)
        assert await journal.newest() is None  # nothing of the stale batch was kept
        await journal.record(batch, [], T0, epoch=new.epoch)
        assert await journal.newest() == 41
        pushes = Pushes(store)
        member = await _member(store)
        await pushes.enqueue([Push("k-1", member, "service", "push.birthday", {})], T0)
        [due] = await pushes.due(marketing=True, limit=10)
        with pytest.raises(NotLeader):
            await pushes.start_sending(due.id, old.epoch)
        assert await pushes.start_sending(due.id, new.epoch) == 1


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_fenced_task_writes_only_while_its_epoch_leads(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path, clock=lambda: T0) as store:
        old, new = SoleLeader(store, "a:1"), SoleLeader(store, "b:2")
        assert await old.try_lead(T0)
        members = Members(store)
        with fenced(old.epoch or 0):  # a job of the leader's: its writes go through
            first, _ = await members.register(Profile(7_000_010, "甲"), now=T0)
        assert await new.try_lead(T0)  # another process took over meanwhile
        with fenced(old.epoch or 0), pytest.raises(NotLeader):
            await members.register(Profile(7_000_011, "乙"), now=T0)
        assert await members.by_telegram_id(7_000_011) is None  # rolled back whole
        # Writes not fenced (a member's update handled anywhere) are not held to an epoch.
        second, _ = await members.register(Profile(7_000_011, "乙"), now=T0)
        assert second.id != first.id


async def test_a_job_whose_process_is_deposed_midway_writes_nothing_more_and_stops(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    services = sandbox.services
    election = services.election
    assert election.leads and election.epoch is not None
    members = Members(services.store)

    async def job(context: object) -> None:
        # Another process becomes the leader while this one's job runs (it has not noticed).
        await Leadership(services.store).take("elsewhere:2", services.clock())
        await members.register(Profile(7_000_020, "丙"), now=services.clock())

    with caplog.at_level(logging.WARNING, logger="bot.app"):
        await _once_per_tick(job)(SimpleNamespace(bot_data=services, job=None))  # type: ignore[arg-type]
    assert await members.by_telegram_id(7_000_020) is None
    assert election.lost.is_set()  # it stops as a deposed leader does
    assert "stopped, another process leads" in caplog.text


async def _member(store: Store) -> int:
    """A member to address a push to."""
    member, _ = await Members(store).register(Profile(7_000_001, "甲"), now=T0)
    return member.id


# --- PostgreSQL: the advisory lock --------------------------------------------------------


async def test_one_process_leads_the_next_takes_over_as_soon_as_it_lets_go(pg_url: str) -> None:
    from storage.pg_store import PgStore

    async with PgStore(pg_url) as store_a, PgStore(pg_url) as store_b:
        a = PgElection(store_a, pg_url, "a:1")
        b = PgElection(store_b, pg_url, "b:2")
        try:
            assert await a.try_lead(T0) and a.leads and a.epoch == 1
            assert not await b.try_lead(T0) and not b.leads and b.epoch is None
            waiting = asyncio.create_task(b.lead(T0))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # in line behind the leader
            let_go = time.monotonic()
            await a.close()
            await asyncio.wait_for(waiting, 5)
            took = time.monotonic() - let_go
            assert b.leads and b.epoch == 2, b.epoch
            assert took < 1.0, took
            leader = await b.leadership.current()
            assert leader is not None and leader.holder == "b:2"
        finally:
            await a.close()
            await b.close()


async def test_a_leader_whose_lock_connection_ends_knows_it_lost(pg_url: str) -> None:
    import psycopg

    from storage.pg_store import PgStore

    async with PgStore(pg_url) as store:
        election = PgElection(store, pg_url, "a:1", check_seconds=0.1)
        try:
            assert await election.try_lead(T0)
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'pointsbot-leader' AND datname = current_database()"
                )
            await asyncio.wait_for(election.lost.wait(), 3)
            assert not election.leads
        finally:
            await election.close()


def test_a_killed_leaders_lock_frees_at_once(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    holder = subprocess.Popen(  # a process holding the lock, as a leader does
        [
            sys.executable,
            "-c",
            "import sys, time, psycopg\n"
            "c = psycopg.connect(sys.argv[1], autocommit=True)\n"
            "c.execute('SELECT pg_advisory_lock(%s)', (int(sys.argv[2]),))\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            pg_url,
            str(LEADER_LOCK),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with psycopg.connect(pg_url, autocommit=True) as standby:
            taken = standby.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
            assert taken.fetchone() == (False,)
            os.kill(holder.pid, signal.SIGKILL)
            killed = time.monotonic()
            holder.wait(10)
            while not standby.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()[
                0
            ]:
                assert time.monotonic() - killed < 1.0, "the lock outlived its holder"
                time.sleep(0.005)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


async def test_two_bots_on_one_database_only_the_leader_fetches_and_the_other_takes_over(
    pg_url: str, sample_config: Config
) -> None:
    storage = sample_config.storage.model_copy(update={"url": pg_url})
    config = sample_config.model_copy(update={"storage": storage})
    async with BotApiEmulator() as emu:
        first = build_application(config, emu.token, base_url=emu.base_url, clock=FixedClock(NOW))
        second = build_application(config, emu.token, base_url=emu.base_url, clock=FixedClock(NOW))
        emu.clock = lambda: NOW
        chat = ChatClient(emu, 7_100_001, first_name="阿明", language_code="zh-hans")
        leading = AsyncExitStack()
        await leading.enter_async_context(running(first, poll_timeout=1))
        try:
            async with running(second, poll_timeout=1) as standby:
                await _lead_then_hand_over(emu, chat, first, standby, leading)
        finally:
            await leading.aclose()


async def _lead_then_hand_over(
    emu: BotApiEmulator, chat: ChatClient, first: BotApp, standby: BotApp, leading: AsyncExitStack
) -> None:
    """The first bot leads and answers; stopped, the standby takes over mid-conversation."""
    assert first.bot_data.election.leads
    assert not standby.bot_data.election.leads
    assert standby.updater is not None and not standby.updater.running
    [welcome] = await chat.send("/start")
    assert welcome.text
    # The leader alone answered, once; the standby never fetched an update.
    assert first.bot_data.election.epoch == 1
    await asyncio.sleep(0.3)
    assert len(emu.events(chat.user_id)) == 1
    # /healthz: the standby is healthy serving the tills; Telegram is not its to hear.
    healthy, checks = await check_health(standby.bot_data)
    holder = first.bot_data.election.holder
    assert healthy and set(checks) == {"store", "leader"}, checks
    assert checks["leader"] == {"ok": True, "detail": f"standby behind {holder} (epoch 1)"}
    # A conversation begun with the leader (after the standby started)...
    [prompt] = await chat.send("/feedback")
    assert (prompt.text or "").startswith("💡 请直接输入您的建议")
    # The leader stops (as on SIGTERM; the lock is let go last): the standby takes over.
    await leading.aclose()
    stopped = time.monotonic()
    while not standby.bot_data.election.leads:
        assert time.monotonic() - stopped < 2.0, "no takeover"
        await asyncio.sleep(0.01)
    # ... goes on with the new leader: the suggestion is taken as one.
    [thanks] = await chat.send("门店可以设置旧电池回收箱，方便大家环保回收。", timeout=10)
    assert (thanks.text or "").startswith("🙏 已收到您的建议（编号 1）"), thanks.text
    assert standby.bot_data.election.epoch == 2
    await asyncio.sleep(0.3)
    assert len(emu.events(chat.user_id)) == 3  # nothing was handled again
    assert standby.updater.running


async def test_each_start_of_the_sole_bot_leads_anew_and_catches_up_once(
    sample_config: Config,
) -> None:
    from datetime import time as clock_time

    # Midnight: whatever time the suite runs, today's sweep is already due at start.
    push = sample_config.push.model_copy(update={"sweep_at": clock_time(0, 0)})
    config = sample_config.model_copy(update={"push": push})
    ticks: list[list[tuple[str, str, int]]] = []
    async with BotApiEmulator() as emu:
        for _ in range(2):  # a start, a stop, a start again (the same database)
            app = build_application(config, emu.token, base_url=emu.base_url)
            async with running(app, poll_timeout=1):
                services = app.bot_data
                assert isinstance(services.election, SoleLeader) and services.election.leads
                for _ in range(100):  # the catch-up runs a second after start
                    rows = await services.store.read(
                        lambda c: c.execute(
                            "SELECT job, tick, epoch FROM job_ticks ORDER BY epoch"
                        ).fetchall()
                    )
                    if len(rows) > len(ticks[-1] if ticks else []):
                        break
                    await asyncio.sleep(0.05)
                ticks.append([tuple(row) for row in rows])
    assert ticks == [
        [("catch-up", "epoch 1", 1)],
        [("catch-up", "epoch 1", 1), ("catch-up", "epoch 2", 2)],
    ]
