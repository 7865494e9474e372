"""Conversation states in our own store: JSON keys and states, ended conversations forgotten,
timed-out ones not restored, and a conversation that continues across a restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from telegram.ext import ConversationHandler

from bot.config import Config
from bot.persistence import StorePersistence, conversation_timeouts
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.feedback import feedback_conversation
from handlers.settings import birthday_conversation
from handlers.surveys import survey_conversation
from storage.errors import InvalidRequest
from storage.persistence import conversation_counts
from storage.store import Store
from tests.postgres import ENGINES, fresh_database, require_server
from tests.restart_support import assert_audit_ok, bot_on

T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


@pytest.fixture(params=ENGINES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Makes unopened stores on one new database of each engine (a restart makes another)."""
    if request.param == "sqlite":
        yield lambda: Store(tmp_path / "bot.sqlite3", synchronous="NORMAL")
        return
    from storage.pg_store import PgStore

    with fresh_database(require_server(), migrated=True) as url:
        yield lambda: cast(Store, PgStore(url))


class Clock:
    """A settable "now" for the persistence."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_states_round_trip_through_the_store(make_store: Callable[[], Store]) -> None:
    store = make_store()
    persistence = StorePersistence(store, clock=Clock(T0))
    # PTB asks before anything else opened the store: the persistence opens it.
    assert await persistence.get_conversations("survey") == {}
    assert store.is_open
    await persistence.update_conversation("survey", (5001, 5001), "survey.answering")
    await persistence.update_conversation("birthday", (5002, 5002), 0)
    await persistence.update_conversation("survey", (5003, 5003), "survey.answering")
    await persistence.update_conversation("survey", (5003, 5003), None)  # it ended
    await persistence.flush()
    await store.close()

    reopened = make_store()
    again = StorePersistence(reopened, clock=Clock(T0))
    assert await again.get_conversations("survey") == {(5001, 5001): "survey.answering"}
    assert await again.get_conversations("birthday") == {(5002, 5002): 0}
    assert await reopened.read(conversation_counts) == {"birthday": 1, "survey": 1}
    await reopened.close()


async def test_a_state_that_is_no_json_is_refused_and_kept_for_later(
    make_store: Callable[[], Store],
) -> None:
    async with make_store() as store:
        persistence = StorePersistence(store, clock=Clock(T0))
        with pytest.raises(InvalidRequest):
            await persistence.update_conversation("survey", (1, 1), object())
        # A newer state for the same key replaces the one that could not be written.
        await persistence.update_conversation("survey", (1, 1), "survey.answering")
        assert await persistence.get_conversations("survey") == {(1, 1): "survey.answering"}


async def test_conversations_that_would_have_timed_out_are_not_restored(
    make_store: Callable[[], Store],
) -> None:
    clock = Clock(T0)
    async with make_store() as store:
        persistence = StorePersistence(store, clock=clock)
        persistence.timeouts = {"birthday": timedelta(minutes=10)}
        await persistence.update_conversation("birthday", (1, 1), 0)
        clock.now = T0 + timedelta(minutes=9)
        await persistence.update_conversation("birthday", (2, 2), 0)
        await persistence.update_conversation("survey", (3, 3), "survey.answering")
        clock.now = T0 + timedelta(minutes=15)
        assert await persistence.get_conversations("birthday") == {(2, 2): 0}
        # Forgotten for good, and a conversation without a timeout is kept however old.
        assert await store.read(conversation_counts) == {"birthday": 1, "survey": 1}
        assert await persistence.get_conversations("survey") == {(3, 3): "survey.answering"}


def test_timeouts_come_from_the_persistent_conversations() -> None:
    plain = ConversationHandler(entry_points=[], states={}, fallbacks=[], name="plain")
    timeouts = conversation_timeouts(
        {0: [birthday_conversation(), feedback_conversation(), survey_conversation(), plain]}
    )
    assert timeouts == {
        "birthday": timedelta(minutes=10),
        "feedback": timedelta(minutes=15),
        "survey": timedelta(minutes=30),
    }


def test_only_conversations_are_persisted(tmp_path: Path) -> None:
    data = StorePersistence(Store(tmp_path / "x.sqlite3")).store_data
    assert (data.bot_data, data.chat_data, data.user_data, data.callback_data) == (
        False,
        False,
        False,
        False,
    )


async def test_a_birthday_question_survives_a_restart(sample_config: Config) -> None:
    now = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    async with BotApiEmulator() as emu:
        chat = ChatClient(emu, 5301, first_name="小明")
        async with bot_on(emu, sample_config, lambda: now):
            await chat.send("/start")
            await chat.send("/settings")
            await chat.tap("🎂 设置生日")
            assert "请输入您的生日" in (chat.last_text or "")
        # A new process on the same database: the bot still waits for the date.
        async with bot_on(emu, sample_config, lambda: now) as app:
            [saved] = await chat.send("1990-05-20")
            assert saved.text == "🎂 已保存生日：5 月 20 日。\n生日当天您将收到 88 积分生日礼。"
            prefs = await app.bot_data.pushes.preferences(5301)
            assert (prefs.birthday_month, prefs.birthday_day) == (5, 20)
            # The conversation ended, so the store no longer holds it.
            await app.update_persistence()
            assert await app.bot_data.store.read(conversation_counts) == {}
            await assert_audit_ok(app)
