"""Webhook mode with two bot processes on one PostgreSQL database (two Applications here, each
with its own store and election): Telegram's deliveries spread over both, every update is
journaled by whichever received it and handled once, by the leader, each member's in order;
the standby handles none until the leader dies, then handles what it left in the inbox."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest
from telegram import Update
from telegram.ext import ApplicationHandlerStop, MessageHandler, filters

from bot import updates
from bot.app import build_application, running
from bot.clock import FixedClock
from bot.config import Config, TelegramConfig
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.common import BotApp, BotContext
from storage.journal import Journal, JournalCounts
from tests.conftest import NOW
from tests.postgres import fresh_database, require_server
from tests.test_webhook import SECRET, WEBHOOK_PATH, free_port

MEMBERS = 20
FIRST_MEMBER = 7_100_000


@dataclass
class Process:
    """One of the bot's processes: its application, and what reached and was handled there."""

    name: str
    app: BotApp
    port: int
    received: int = 0
    # Set to play a process that stopped dead: its handlers hang, its updates stay unhandled.
    frozen: bool = False
    thawed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def updates_handled(self) -> float:
        """Updates of any kind this process handled (its /metrics)."""
        return sum(
            sample.value
            for metric in self.app.bot_data.metrics.registry.collect()
            if metric.name == "pointsbot_updates_handled"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )


@dataclass
class Cluster:
    """Two processes behind a load balancer (the emulator spreading its deliveries)."""

    emu: BotApiEmulator
    processes: list[Process]
    url: str
    # Each member's handled messages in handling order, with the process that handled each.
    handled: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    users: set[int] = field(default_factory=set)

    def handled_by(self, name: str) -> int:
        return sum(1 for texts in self.handled.values() for _, by in texts if by == name)

    async def wait_handled(self, count: int, seconds: float = 30.0) -> None:
        """Until `count` messages were handled in all."""

        async def enough() -> bool:
            return sum(len(texts) for texts in self.handled.values()) >= count

        await eventually(enough, seconds)

    async def wait_unfinished(self, count: int) -> None:
        """Until the journal holds `count` updates not yet handled."""
        journal = Journal(self.processes[-1].app.bot_data.store)

        async def reached() -> bool:
            return (await journal.counts()).unfinished == count

        await eventually(reached)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Wait until `check()` holds; fail after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _config(sample: Config, url: str, base_url: str, public: str, port: int) -> Config:
    telegram = TelegramConfig(base_url=base_url, mode="webhook", webhook_url=public)
    # Members sending as fast as the bot takes them are a flood to the guard: lifted.
    limits = sample.limits.model_copy(update={"flood_updates": 1000, "flood_seconds": 1})
    return sample.model_copy(
        update={
            "storage": sample.storage.model_copy(update={"url": url}),
            "telegram": telegram,
            "server": sample.server.model_copy(update={"port": port}),
            "limits": limits,
        }
    )


def _recorder(cluster: Cluster, process: Process) -> Callable[[Update, BotContext], object]:
    async def record(update: Update, context: BotContext) -> None:
        if process.frozen:  # a dead process does nothing more
            await process.thawed.wait()
            raise ApplicationHandlerStop
        assert update.message is not None and update.message.text is not None
        assert update.effective_user is not None
        # Handlers that take a little while: an update handled out of turn would show.
        await asyncio.sleep(random.uniform(0, 0.005))  # noqa: S311 - a test's jitter
        cluster.handled[update.effective_user.id].append((update.message.text, process.name))

    return record


@asynccontextmanager
async def cluster_of_two(sample_config: Config) -> AsyncIterator[Cluster]:
    """Two webhook-mode bots on one fresh database: "a" started first (it leads), "b" after."""
    with fresh_database(require_server(), migrated=True) as url:
        async with BotApiEmulator() as emu, AsyncExitStack() as stack:
            ports = [free_port(), free_port()]
            public = f"http://127.0.0.1:{ports[0]}{WEBHOOK_PATH}"
            cluster = Cluster(emu, [], public)
            for name, port in zip("ab", ports, strict=True):
                config = _config(sample_config, url, emu.base_url, public, port)
                app = build_application(
                    config, emu.token, schedule_jobs=False, clock=FixedClock(NOW)
                )
                app.bot_data.webhook_secret = SECRET
                process = Process(name, app, port)
                app.add_handler(MessageHandler(filters.TEXT, _recorder(cluster, process)), -3)
                cluster.processes.append(process)
                await stack.enter_async_context(running(app))
                # The dead one's hanging handlers end (unrecorded) before it shuts down.
                stack.callback(process.thawed.set)
                webhook = app.bot_data.webhook
                assert webhook is not None

                def heard(process: Process = process) -> None:
                    process.received += 1

                webhook.on_contact = heard
            emu.clock = lambda: cluster.processes[0].app.bot_data.clock()
            # A load balancer in front of the one webhook URL: each delivery to the next.
            emu.webhook_targets = [process.url for process in cluster.processes]
            yield cluster


def _send(cluster: Cluster, members: range, numbers: range) -> None:
    """Each member sends its numbered messages, one after another."""
    for user_id in set(members) - cluster.users:
        cluster.emu.add_user(user_id, f"m{user_id}")
        cluster.users.add(user_id)
    for number in numbers:
        for user_id in members:
            cluster.emu.user_sends_text(user_id, f"n{number}")


def _in_order(cluster: Cluster, members: range, numbers: range) -> None:
    for user_id in members:
        texts = [text for text, _ in cluster.handled[user_id]]
        assert texts == [f"n{number}" for number in numbers], user_id


async def _kill_the_leader(cluster: Cluster, leader: Process) -> None:
    """What SIGKILL does to a leader: it answers no more calls and handles nothing more, and
    PostgreSQL ends its sessions, the leader lock's with it."""
    import psycopg

    leader.frozen = True
    web = leader.app.bot_data.web
    assert web is not None
    await web.stop()
    url = leader.app.bot_data.config.storage.url
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert await cur.fetchall() == [(True,)]  # the leader lock, and it alone


async def test_two_processes_share_the_deliveries_and_the_leader_handles_each_in_order(
    sample_config: Config,
) -> None:
    numbers = range(1, 11)
    members = range(FIRST_MEMBER, FIRST_MEMBER + MEMBERS)
    async with cluster_of_two(sample_config) as cluster:
        a, b = cluster.processes
        assert a.app.bot_data.election.leads and not b.app.bot_data.election.leads
        _send(cluster, members, numbers)
        await cluster.wait_handled(MEMBERS * len(numbers))
        await cluster.wait_unfinished(0)
        # Both processes received deliveries; the leader alone handled, each update once
        # and each member's in the order sent.
        assert a.received >= 50 and b.received >= 50, (a.received, b.received)
        assert cluster.handled_by("b") == 0 and b.updates_handled() == 0
        _in_order(cluster, members, numbers)
        assert all(status == 200 for _, status in cluster.emu.webhook_deliveries)
        journal = Journal(b.app.bot_data.store)
        assert await journal.counts() == JournalCounts(unfinished=0, done=MEMBERS * 10)
        # Only the leader told Telegram where to deliver; nobody removed the webhook.
        methods = [call.method for call in cluster.emu.calls]
        assert methods.count("setWebhook") == 1 and "deleteWebhook" not in methods


async def test_when_the_leader_dies_the_standby_handles_what_it_left_in_the_inbox(
    sample_config: Config,
) -> None:
    members = range(FIRST_MEMBER, FIRST_MEMBER + MEMBERS)
    async with cluster_of_two(sample_config) as cluster:
        a, b = cluster.processes
        _send(cluster, members, range(1, 4))
        await cluster.wait_handled(MEMBERS * 3)
        await cluster.wait_unfinished(0)
        # The leader hangs: what reaches either process now is journaled and acknowledged,
        # and stays in the inbox.
        a.frozen = True
        _send(cluster, members, range(4, 7))
        await cluster.wait_unfinished(MEMBERS * 3)
        assert not b.app.bot_data.election.leads and cluster.handled_by("b") == 0
        await _kill_the_leader(cluster, a)
        # The standby takes over, handles the inbox and whatever comes next, in order.
        _send(cluster, members, range(7, 10))
        await cluster.wait_handled(MEMBERS * 9)
        await cluster.wait_unfinished(0)
        assert b.app.bot_data.election.leads and a.app.bot_data.election.lost.is_set()
        assert cluster.handled_by("a") == MEMBERS * 3
        assert cluster.handled_by("b") == MEMBERS * 6
        _in_order(cluster, members, range(1, 10))
        journal = Journal(b.app.bot_data.store)
        assert await journal.counts() == JournalCounts(unfinished=0, done=MEMBERS * 9)
        # The new leader set the webhook again (the same URL); nobody removed it.
        methods = [call.method for call in cluster.emu.calls]
        assert methods.count("setWebhook") == 2 and "deleteWebhook" not in methods


async def test_a_taps_answer_rides_in_the_response_only_when_the_leader_received_it(
    sample_config: Config,
) -> None:
    async with cluster_of_two(sample_config) as cluster:
        a, b = cluster.processes
        emu = cluster.emu
        chat = ChatClient(emu, FIRST_MEMBER)
        await chat.send("/start")
        await chat.send("/mall")
        # Received by the leader, which handles it: the answer goes back in the response.
        emu.webhook_targets = [a.url]
        await chat.tap("环保家居")
        assert chat.last_callback_event is not None
        assert emu.webhook_response_calls == 1
        # Received by the standby, which does not wait: the leader posts the answer.
        await chat.send("/mall")
        emu.webhook_targets = [b.url]
        posted = sum(1 for call in emu.calls if call.method == "answerCallbackQuery")
        await chat.tap("环保家居")
        assert chat.last_callback_event is not None
        assert emu.webhook_response_calls == 1
        assert sum(1 for call in emu.calls if call.method == "answerCallbackQuery") == posted + 1
        assert b.updates_handled() == 0 and a.updates_handled() == 5


async def test_the_leader_hears_of_a_standbys_deliveries_without_waiting_for_its_next_look(
    sample_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The leader's own looks are a minute apart: only the standby's notices can wake it.
    monkeypatch.setattr(updates, "INBOX_POLL_SECONDS", 60.0)
    members = range(FIRST_MEMBER, FIRST_MEMBER + 3)
    async with cluster_of_two(sample_config) as cluster:
        a, b = cluster.processes
        await asyncio.sleep(0.1)  # the leader's first look is over: it waits a minute now
        cluster.emu.webhook_targets = [b.url]
        _send(cluster, members, range(1, 6))
        await cluster.wait_handled(15, seconds=10)
        assert b.received == 15 and a.received == 0
        assert cluster.handled_by("a") == 15
        _in_order(cluster, members, range(1, 6))
