"""The update journal: each fetched batch kept before Telegram may forget it, marked done once
handled, replayed once after a crash; copies Telegram delivers again are dropped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from telegram import Update

from bot.clock import FixedClock
from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from bot.updates import MAX_REPLAYS, PerMemberUpdateProcessor, UpdateJournal
from storage.errors import NotLeader
from storage.journal import (
    Journal,
    JournalCounts,
    forget_all,
    mark_done,
    prune_done,
    read_inbox,
    record_delivered,
    record_fetched,
)
from storage.leadership import take_leadership
from storage.store import Store
from tests.conftest import ADMIN_ID, NOW, Sandbox
from tests.postgres import ENGINES, migrated_connection, opened_store
from tests.restart_support import assert_audit_ok, bot_on
from tests.test_updates import text_update


async def wait_until(value: Callable[[], Awaitable[object]], expected: object) -> None:
    """Poll `value()` until it equals `expected`; fail with the last value after 5 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while (got := await value()) != expected:
        assert loop.time() < deadline, got
        await asyncio.sleep(0.02)


def raw(update_id: int, user_id: int, text: str) -> dict[str, object]:
    """An update as the Bot API sends it."""
    return text_update(update_id, user_id, text).to_dict()


# --- storage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_batch_is_stored_whole_and_a_second_delivery_is_recognised(
    engine: str, tmp_path: Path
) -> None:
    with migrated_connection(engine, tmp_path) as conn:
        assert record_fetched(conn, [raw(7, 1, "a"), raw(8, 1, "b")], NOW) == set()
        assert record_fetched(conn, [raw(8, 1, "b"), raw(9, 2, "c")], NOW) == {8}
        stored = conn.execute("SELECT update_id, body FROM update_journal ORDER BY 1").fetchall()
        assert [row[0] for row in stored] == [7, 8, 9]
        # The body is the update's JSON: python-telegram-bot reads it back to the same update.
        message = Update.de_json(json.loads(stored[2][1]), None).message
        assert message is not None and message.text == "c"


@pytest.mark.parametrize("engine", ENGINES)
def test_an_old_id_from_before_the_last_fetch_is_a_new_update(engine: str, tmp_path: Path) -> None:
    # Only the latest batch can come again; an id seen earlier is a Bot API server that
    # started its ids over, and its update replaces the old row.
    with migrated_connection(engine, tmp_path) as conn:
        record_fetched(conn, [raw(1, 1, "old one"), raw(2, 1, "old two")], NOW)
        conn.execute("UPDATE update_journal SET done_at = 1, body = NULL WHERE update_id = 1")
        record_fetched(conn, [raw(3, 1, "three")], NOW)
        assert record_fetched(conn, [raw(1, 2, "new one")], NOW) == set()
        body, done_at = conn.execute(
            "SELECT body, done_at FROM update_journal WHERE update_id = 1"
        ).fetchone()
        assert json.loads(body)["message"]["text"] == "new one" and done_at is None
        assert forget_all(conn) == 3
        assert record_fetched(conn, [raw(1, 2, "new one")], NOW) == set()


@pytest.mark.parametrize("engine", ENGINES)
async def test_done_updates_lose_their_body_and_are_not_replayed(
    engine: str, tmp_path: Path
) -> None:
    async with opened_store(engine, tmp_path, clock=lambda: NOW) as store:
        journal = Journal(store)
        await journal.record([raw(1, 1, "a"), raw(2, 1, "b"), raw(3, 2, "c")], [], NOW)
        assert await journal.mark_done([2, 99], NOW) == 1  # an update never journaled: nothing
        assert await journal.counts() == JournalCounts(unfinished=2, done=1)
        body = await store.read(
            lambda c: c.execute("SELECT body FROM update_journal WHERE update_id = 2").fetchone()
        )
        assert body[0] is None
        unfinished = await journal.take_unfinished(NOW, max_attempts=MAX_REPLAYS)
        assert [update_id for update_id, _ in unfinished.replay] == [1, 3]
        assert unfinished.given_up == []


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_update_whose_replay_keeps_being_started_and_not_finished_is_given_up(
    engine: str, tmp_path: Path
) -> None:
    async with opened_store(engine, tmp_path, clock=lambda: NOW) as store:
        journal = Journal(store)
        await journal.record([raw(1, 1, "poison"), raw(2, 1, "waiting")], [], NOW)
        # Each start replays both; only the first is started (and kills the bot).
        for _ in range(3):
            again = await journal.take_unfinished(NOW, max_attempts=3)
            assert [update_id for update_id, _ in again.replay] == [1, 2]
            await journal.count_attempts([1])
        last = await journal.take_unfinished(NOW, max_attempts=3)
        assert [update_id for update_id, _ in last.replay] == [2] and last.given_up == [1]
        assert await journal.counts() == JournalCounts(unfinished=1, done=1)


@pytest.mark.parametrize("engine", ENGINES)
def test_only_updates_handled_long_ago_are_pruned(engine: str, tmp_path: Path) -> None:
    with migrated_connection(engine, tmp_path) as conn:
        record_fetched(conn, [raw(1, 1, "old"), raw(2, 1, "open"), raw(3, 1, "recent")], NOW)
        conn.execute("UPDATE update_journal SET done_at = ?, body = NULL WHERE update_id = 1", (1,))
        conn.execute(
            "UPDATE update_journal SET done_at = ?, body = NULL WHERE update_id = 3",
            (int(NOW.timestamp()),),
        )
        assert prune_done(conn, NOW - timedelta(days=1)) == 1
        assert [r[0] for r in conn.execute("SELECT update_id FROM update_journal ORDER BY 1")] == [
            2,
            3,
        ]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_inbox_hands_over_each_open_update_once_lowest_id_first(
    engine: str, tmp_path: Path
) -> None:
    with migrated_connection(engine, tmp_path) as conn:
        # Journaled out of id order, as two processes' deliveries may be.
        record_delivered(conn, [raw(12, 2, "b1"), raw(10, 1, "a1"), raw(11, 1, "a2")], NOW)
        inbox = read_inbox(conn, set(), limit=2)
        assert inbox.unfinished == [10, 11, 12]
        assert [(i, json.loads(body)["message"]["text"]) for i, body in inbox.new] == [
            (10, "a1"),
            (11, "a2"),
        ]
        # Those taken are not handed over again; one done is no longer unfinished.
        mark_done(conn, [10], NOW)
        record_delivered(conn, [raw(13, 1, "a3")], NOW)
        inbox = read_inbox(conn, {10, 11}, limit=10)
        assert inbox.unfinished == [11, 12, 13]
        assert [i for i, _body in inbox.new] == [12, 13]
        # A leader whose epoch is over reads nothing.
        epoch = take_leadership(conn, "first", NOW)
        assert read_inbox(conn, set(), limit=10, epoch=epoch).new
        take_leadership(conn, "second", NOW)
        with pytest.raises(NotLeader):
            read_inbox(conn, set(), limit=10, epoch=epoch)


# --- the journal in the update processor -----------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_replay_runs_once_and_the_copy_telegram_delivers_again_is_dropped(
    engine: str, tmp_path: Path
) -> None:
    async with opened_store(engine, tmp_path, clock=lambda: NOW) as store:
        # The last run fetched updates 1 and 2, handled 1, and was killed.
        journal = UpdateJournal(Journal(store), clock=lambda: NOW)
        journal.fetched([raw(1, 7, "handled"), raw(2, 7, "in flight")])
        await journal.recorded()
        await journal.journal.mark_done([1], NOW)
        # This run: update 2 is replayed first; Telegram, never told, delivers 1 and 2 again.
        journal = UpdateJournal(Journal(store), clock=lambda: NOW)
        queue: asyncio.Queue[object] = asyncio.Queue()
        assert await journal.resume(None, queue) == 1
        fetched = [raw(1, 7, "handled"), raw(2, 7, "in flight"), raw(3, 7, "new")]
        journal.fetched(fetched)  # then python-telegram-bot queues the batch
        for body in fetched:  # behind the replay, as python-telegram-bot queues a batch
            queue.put_nowait(Update.de_json(body, None))
        handled: list[int] = []

        async def handle(update: Update) -> None:
            handled.append(update.update_id)

        processor = PerMemberUpdateProcessor(journal=journal)
        async with processor:
            while not queue.empty():
                update = queue.get_nowait()
                assert isinstance(update, Update)
                await processor.process_update(update, handle(update))
        await journal.stop()
        assert handled == [2, 3]
        assert await journal.journal.counts() == JournalCounts(unfinished=0, done=3)
        attempts = await store.read(
            lambda c: c.execute("SELECT update_id, attempts FROM update_journal").fetchall()
        )
        assert [tuple(row) for row in attempts] == [(1, 0), (2, 1), (3, 0)]


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_update_whose_handler_fails_is_done_and_a_cancelled_one_is_not(
    engine: str, tmp_path: Path
) -> None:
    async with opened_store(engine, tmp_path, clock=lambda: NOW) as store:
        journal = UpdateJournal(Journal(store), clock=lambda: NOW)
        journal.fetched([raw(1, 7, "fails"), raw(2, 8, "cancelled")])
        await journal.recorded()
        processor = PerMemberUpdateProcessor(journal=journal)
        started = asyncio.Event()

        async def fail() -> None:
            raise ValueError("a defect PTB did not catch")

        async def hang() -> None:
            started.set()
            await asyncio.Event().wait()

        async with processor:
            with pytest.raises(ValueError, match="did not catch"):
                await processor.process_update(text_update(1, 7, "fails"), fail())
            task = asyncio.create_task(processor.process_update(text_update(2, 8, "x"), hang()))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await journal.flush()
        unfinished = await journal.journal.take_unfinished(NOW, max_attempts=MAX_REPLAYS)
        assert [update_id for update_id, _ in unfinished.replay] == [2]


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_update_handled_before_its_batch_is_written_is_marked_done_after_it(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened_store(engine, tmp_path, clock=lambda: NOW) as store:
        journal = UpdateJournal(Journal(store), clock=lambda: NOW)
        journal.start()
        slow_disk = asyncio.Event()
        real_record = Journal.record

        async def slow_record(self: Journal, *args: object, **kwargs: object) -> set[int]:
            await slow_disk.wait()
            return await real_record(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Journal, "record", slow_record)
        journal.fetched([raw(1, 7, "quick")])
        journal.done(text_update(1, 7, "quick"))
        await journal.flush()  # held back: an UPDATE before the INSERT would change nothing
        slow_disk.set()
        await journal.recorded()
        await wait_until(lambda: journal.journal.counts(), JournalCounts(unfinished=0, done=1))
        await journal.stop()


# --- the running bot -------------------------------------------------------------------------


async def test_every_update_the_bot_fetches_is_journaled_and_marked_done(sandbox: Sandbox) -> None:
    chat = sandbox.member(4501)
    await chat.send("/start")
    await chat.send("/balance")
    journal = Journal(sandbox.services.store)
    await wait_until(lambda: journal.counts(), JournalCounts(unfinished=0, done=2))


async def test_fetched_updates_are_not_acknowledged_until_journaled(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(sandbox.services.store)
    real_record = Journal.record
    failures = 0

    async def failing_record(self: Journal, *args: object, **kwargs: object) -> set[int]:
        nonlocal failures
        if failures < 1:
            failures += 1
            raise OSError("disk full")
        return await real_record(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "record", failing_record)
    chat = sandbox.member(4502)
    # Handled while it is being journaled; the journal fails, so the next getUpdates (whose
    # offset would tell Telegram to forget it) waits: PTB backs off for a second, the batch
    # is written again, and only then is it acknowledged, with its done mark.
    [reply] = await chat.send("/start")
    assert "欢迎" in (reply.text or "") and failures == 1
    assert sandbox.emu.pending_update_count == 1
    assert await journal.counts() == JournalCounts(unfinished=0, done=0)
    await wait_until(lambda: journal.counts(), JournalCounts(unfinished=0, done=1))
    await wait_until(lambda: asyncio.sleep(0, sandbox.emu.pending_update_count), 0)


async def test_an_update_left_unhandled_is_handled_once_at_the_next_start(
    tmp_path: Path, sample_config: Config
) -> None:
    # The last run journaled the cashier's purchase and was killed before handling it; Telegram
    # was never told (its offset did not move on), so it delivers the update again as well.
    async with BotApiEmulator() as emu:
        cashier = ChatClient(emu, ADMIN_ID, "店员")
        async with bot_on(emu, sample_config, FixedClock(NOW)) as app:
            [welcome] = await ChatClient(emu, 4601, "小红").send("/start")
            member = await app.bot_data.members.by_telegram_id(4601)
            assert member is not None
        text = f"/purchase {member.member_code} 88 general R-KILLED"
        update_id = emu.user_sends_text(ADMIN_ID, text)  # delivered again, same id and text
        body = raw(update_id, ADMIN_ID, text)
        body["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": 9}]  # type: ignore[index]
        async with Store(sample_config.storage.path, clock=lambda: NOW) as store:
            await Journal(store).record([body], [], NOW)
        async with bot_on(emu, sample_config, FixedClock(NOW)) as app:
            await emu.wait_for_events(ADMIN_ID, 0, count=1, timeout=10)
            journal = Journal(app.bot_data.store)
            await wait_until(lambda: journal.counts(), JournalCounts(unfinished=0, done=2))
            assert emu.pending_update_count == 0  # the copy was fetched, and dropped
            await asyncio.sleep(0.2)  # room for a second answer, were the copy handled too
            balance = await app.bot_data.ledger.balance(member.id)
            await assert_audit_ok(app)
        replies = [m.text or "" for m in cashier.bot_messages]
        assert len(replies) == 1 and "88" in replies[0], replies
        assert balance.available == 88 and welcome.text
