"""Webhook mode: the real bot served by Telegram's POSTs (the sandbox delivering them) on the
one HTTP server, with the secret checked, every update journaled before its 200, copies
handled once, each member's updates in order, and a clean shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from telegram import Update
from telegram.ext import CallbackQueryHandler, MessageHandler, filters

from bot.app import _journal, build_application, running, stop_receiving
from bot.cli import main
from bot.clock import FixedClock
from bot.config import Config, ConfigError, TelegramConfig, load_config, parse_config
from bot.sandbox.server import BotApiEmulator
from bot.sending import TapAnswer
from handlers.common import BotApp, BotContext
from storage.journal import Journal, JournalCounts
from storage.store import Store
from tests.conftest import NOW, SAMPLE, Sandbox, member_with

SECRET = "webhook-Secret_0123456789"  # noqa: S105 - a test's secret
WEBHOOK_PATH = "/telegram/webhook"


def free_port() -> int:
    """A port free on loopback now (the webhook's public URL must name it before start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_config(config: Config, base_url: str, port: int, *, api: bool = False) -> Config:
    """`config` in webhook mode against the emulator at `base_url`, served on `port`."""
    telegram = TelegramConfig(
        base_url=base_url, mode="webhook", webhook_url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    )
    update: dict[str, object] = {
        "telegram": telegram,
        "server": config.server.model_copy(update={"port": port}),
    }
    if api:
        update["api"] = config.api.model_copy(update={"enabled": True})
    return config.model_copy(update=update)


@asynccontextmanager
async def webhook_bot(
    sample_config: Config,
    *,
    api: bool = False,
    prepare: Callable[[BotApp], None] | None = None,
    answer_in_response_ms: int | None = None,
) -> AsyncIterator[Sandbox]:
    """The real bot in webhook mode, the emulator delivering to it."""
    async with BotApiEmulator() as emu:
        config = webhook_config(sample_config, emu.base_url, free_port(), api=api)
        if answer_in_response_ms is not None:
            telegram = config.telegram.model_copy(
                update={"answer_in_response_ms": answer_in_response_ms}
            )
            config = config.model_copy(update={"telegram": telegram})
        app = build_application(
            config, emu.token, schedule_jobs=False, clock=FixedClock(NOW), base_url=emu.base_url
        )
        app.bot_data.webhook_secret = SECRET
        emu.clock = lambda: app.bot_data.clock()
        if prepare is not None:
            prepare(app)
        async with running(app):
            yield Sandbox(emu, app, config)


@pytest.fixture
async def sandbox(sample_config: Config) -> AsyncIterator[Sandbox]:
    """The real bot in webhook mode."""
    async with webhook_bot(sample_config) as sandbox:
        yield sandbox


def webhook_url(sandbox: Sandbox) -> str:
    return sandbox.config.telegram.webhook_url


async def post(sandbox: Sandbox, body: bytes, headers: dict[str, str]) -> int:
    """POST to the bot's webhook as Telegram would (or a forger); the HTTP status."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(webhook_url(sandbox), data=body, headers=headers) as response,
    ):
        return response.status


async def journal_counts(sandbox: Sandbox) -> JournalCounts:
    return await Journal(sandbox.services.store).counts()


def text_update(update_id: int, user_id: int, text: str) -> bytes:
    user = {"id": user_id, "is_bot": False, "first_name": "X"}
    message = {
        "message_id": 1,
        "date": int(NOW.timestamp()),
        "chat": {"id": user_id, "type": "private", "first_name": "X"},
        "from": user,
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return json.dumps({"update_id": update_id, "message": message}).encode()


# --------------------------------------------------------------------------- serving


async def test_start_and_a_mall_tap_are_handled_through_the_webhook(sandbox: Sandbox) -> None:
    await member_with(sandbox, 9101, 1000)
    chat = sandbox.member(9101)
    [home] = await chat.send("/mall")
    assert home.buttons == ["环保家居", "优惠券与抵扣", "合作门店服务", "🎫 我的兑换"]
    await chat.tap("环保家居")
    assert chat.buttons()[:2] == ["帆布环保购物袋 · 300 积分", "不锈钢随行杯 · 1200 积分"]
    # Every update came by webhook, acknowledged with a 200; none was polled.
    assert sandbox.emu.webhook_deliveries and all(
        status == 200 for _, status in sandbox.emu.webhook_deliveries
    )
    assert not [call for call in sandbox.emu.calls if call.method == "getUpdates"]


async def test_set_webhook_names_the_secret_the_updates_and_keeps_pending_ones(
    sandbox: Sandbox,
) -> None:
    [call] = [call for call in sandbox.emu.calls if call.method == "setWebhook"]
    assert call.params["url"] == webhook_url(sandbox)
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == [
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
    ]
    assert call.params["drop_pending_updates"] is False
    assert not [call for call in sandbox.emu.calls if call.method == "deleteWebhook"]


async def test_the_till_api_is_served_on_the_same_server(sample_config: Config) -> None:
    async with webhook_bot(sample_config, api=True) as sandbox:
        web, till = sandbox.services.web, sandbox.services.till_api
        assert web is not None and till is not None
        assert till.url == web.url == f"http://127.0.0.1:{sandbox.config.server.port}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(web.url + "/v1/openapi.json") as response,
        ):
            assert response.status == 200
            assert (await response.json())["openapi"].startswith("3.1")
        # ...while members are served by the webhook on the same port.
        [reply] = await sandbox.member(9102).send("/start")
        assert reply.text


async def test_health_and_metrics_are_served_there_and_a_webhook_call_is_telegram_heard(
    sandbox: Sandbox,
) -> None:
    web, metrics = sandbox.services.web, sandbox.services.metrics
    assert web is not None
    [reply] = await sandbox.member(9103).send("/start")
    assert reply.text
    # Delivered by webhook, not polled: that call is what tells /healthz Telegram is heard.
    assert metrics.last_contact is not None
    assert metrics.seconds_since_contact() < 5
    async with aiohttp.ClientSession() as session:
        async with session.get(web.url + "/healthz") as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["status"] == "ok"
        async with session.get(web.url + "/metrics") as response:
            assert response.status == 200
            assert 'pointsbot_updates_handled_total{kind="command"}' in await response.text()


# --------------------------------------------------------------------------- refusals


async def test_a_missing_or_wrong_secret_is_refused_and_nothing_handled(sandbox: Sandbox) -> None:
    body = text_update(900_001, 9201, "/start")
    assert await post(sandbox, body, {}) == 401
    assert await post(sandbox, body, {"X-Telegram-Bot-Api-Secret-Token": "guess"}) == 403
    # A forged sender (the emulator playing one): refused every time, tried again and again.
    sandbox.emu.webhook_secret = "not-the-secret"
    sandbox.member(9201), sandbox.member(9202)
    update_id = sandbox.emu.user_sends_text(9202, "/start")
    for _ in range(100):
        if sum(1 for i, status in sandbox.emu.webhook_deliveries if i == update_id) >= 3:
            break
        await asyncio.sleep(0.02)
    refused = {status for i, status in sandbox.emu.webhook_deliveries if i == update_id}
    assert refused == {403}
    await asyncio.sleep(0.1)
    assert sandbox.emu.events(9201) == [] and sandbox.emu.events(9202) == []
    assert await journal_counts(sandbox) == JournalCounts(unfinished=0, done=0)
    assert await sandbox.services.members.by_telegram_id(9202) is None
    # Telegram's own secret again: the update it kept retrying is handled.
    sandbox.emu.webhook_secret = SECRET
    await sandbox.emu.wait_for(9202, lambda: bool(sandbox.emu.events(9202)))
    assert await sandbox.services.members.by_telegram_id(9202) is not None


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"update_id": "7"}', b'{"message": {}}', b"\xff\xfe"],
    ids=["not JSON", "not an object", "id not a number", "no id", "not UTF-8"],
)
async def test_a_malformed_update_is_refused(sandbox: Sandbox, body: bytes) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    assert await post(sandbox, body, headers) == 400
    assert await journal_counts(sandbox) == JournalCounts(unfinished=0, done=0)


# --------------------------------------------------------------------------- guarantees


async def test_an_update_delivered_again_is_handled_once(sandbox: Sandbox) -> None:
    chat = sandbox.member(9301)
    await chat.send("/start")
    before = sandbox.emu.event_count(9301)
    update_id = sandbox.emu.user_sends_text(9301, "/points")
    await sandbox.emu.wait_for(9301, lambda: sandbox.emu.event_count(9301) > before)
    answered = sandbox.emu.event_count(9301)
    for _ in range(100):  # the 200 may reach the emulator after the reply does
        if (update_id, 200) in sandbox.emu.webhook_deliveries:
            break
        await asyncio.sleep(0.02)
    # Telegram missed our 200 and delivers it again: acknowledged, not handled again.
    sandbox.emu.redeliver(update_id)
    for _ in range(100):
        if [i for i, status in sandbox.emu.webhook_deliveries if i == update_id][1:]:
            break
        await asyncio.sleep(0.02)
    assert [s for i, s in sandbox.emu.webhook_deliveries if i == update_id] == [200, 200]
    await asyncio.sleep(0.2)
    assert sandbox.emu.event_count(9301) == answered


async def test_each_members_updates_are_handled_in_order_others_alongside(
    sample_config: Config,
) -> None:
    seen: list[str] = []

    async def record(update: Update, context: BotContext) -> None:
        assert update.message is not None and update.message.text is not None
        text = update.message.text
        if text.startswith("slow"):  # a slow handler must not be overtaken by the next tap
            await asyncio.sleep(0.3)
        seen.append(text)

    def prepare(app: BotApp) -> None:
        app.add_handler(MessageHandler(filters.TEXT, record), group=-3)

    async with webhook_bot(sample_config, prepare=prepare) as sandbox:
        emu = sandbox.emu
        sandbox.member(9401), sandbox.member(9402)
        emu.user_sends_text(9401, "slow A1")
        emu.user_sends_text(9401, "A2")
        emu.user_sends_text(9401, "A3")
        emu.user_sends_text(9402, "B1")
        for _ in range(200):
            if len(seen) == 4:
                break
            await asyncio.sleep(0.02)
    assert [text for text in seen if "A" in text] == ["slow A1", "A2", "A3"]
    assert seen[0] == "B1"  # the other member was not held up by the slow one


async def test_shutdown_finishes_the_update_in_flight_and_refuses_new_ones(
    sample_config: Config,
) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(update: Update, context: BotContext) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.set()

    def prepare(app: BotApp) -> None:
        app.add_handler(MessageHandler(filters.Regex("^slow$"), slow), group=-3)

    async with webhook_bot(sample_config, prepare=prepare) as sandbox:
        sandbox.member(9501)
        sandbox.emu.user_sends_text(9501, "slow")
        await asyncio.wait_for(started.wait(), 5)
        await stop_receiving(sandbox.app)  # what shutting down does first
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        assert await post(sandbox, text_update(900_002, 9502, "/start"), headers) == 503
        config = sandbox.config
    # The context has shut the bot down: the update in flight was finished, and marked done.
    assert finished.is_set()
    store = Store(config.storage.path)
    await store.open()
    try:
        assert await Journal(store).counts() == JournalCounts(unfinished=0, done=1)
    finally:
        await store.close()


def tap_answers(sandbox: Sandbox, outcome: str) -> float:
    """How many taps' webhook calls ended so ("in_response", "waited_out"), from /metrics."""
    registry = sandbox.services.metrics.registry
    value = registry.get_sample_value("pointsbot_webhook_tap_answers_total", {"outcome": outcome})
    return value or 0.0


def answers_posted(sandbox: Sandbox) -> int:
    """answerCallbackQuery calls the bot made as requests of their own."""
    calls = [call for call in sandbox.emu.calls if call.method == "answerCallbackQuery"]
    return len(calls) - sandbox.emu.webhook_response_calls


async def _after_the_journal(update: Update, context: BotContext) -> None:
    """Before the tap's handlers: wait until its webhook call journaled it (a slower handler)."""
    assert update.callback_query is not None
    answers: dict[str, TapAnswer] = context.bot.answers_in_response  # type: ignore[attr-defined]
    waiting = answers.get(update.callback_query.id)
    for _ in range(500):
        if waiting is None or waiting.journaled or waiting.future.done():
            return
        await asyncio.sleep(0.002)


def answers_after_journaling(app: BotApp) -> None:
    """Every tap's handlers start once the tap is journaled."""
    app.add_handler(CallbackQueryHandler(_after_the_journal), group=-3)


def journals_after_answering(app: BotApp) -> None:
    """Every tap is journaled only once its handler has answered it (a slow commit)."""
    journal = _journal(app)
    assert journal is not None
    delivered = journal.delivered
    answers: dict[str, TapAnswer] = app.bot.answers_in_response  # type: ignore[attr-defined]

    async def slow_commit(update: dict[str, Any]) -> bool:
        query = update.get("callback_query")
        waiting = answers.get(query["id"]) if isinstance(query, dict) else None
        for _ in range(500):
            if waiting is None or waiting.future.done():
                break
            await asyncio.sleep(0.002)
        return await delivered(update)

    journal.delivered = slow_commit  # type: ignore[method-assign]


async def test_a_tap_answered_after_its_journal_rides_in_the_webhook_response(
    sample_config: Config,
) -> None:
    async with webhook_bot(sample_config, prepare=answers_after_journaling) as sandbox:
        await member_with(sandbox, 9151, 1000)
        chat = sandbox.member(9151)
        await chat.send("/mall")
        posted_before = answers_posted(sandbox)
        await chat.tap("环保家居")
        # The member's spinner stopped (the tap is answered) and the shelf is shown, ...
        assert chat.last_callback_event is not None
        assert chat.buttons()[:1] == ["帆布环保购物袋 · 300 积分"]
        # ... the answer riding back on the webhook call: no request of its own.
        assert sandbox.emu.webhook_response_calls == 1
        assert answers_posted(sandbox) == posted_before
        assert tap_answers(sandbox, "in_response") == 1


async def test_an_alert_answer_keeps_its_text_and_alert_in_the_response(
    sample_config: Config,
) -> None:
    async with webhook_bot(sample_config, prepare=answers_after_journaling) as sandbox:
        await member_with(sandbox, 9152, 0)
        chat = sandbox.member(9152)
        [home] = await chat.send("/mall")
        # A forged button: the refusal is an alert with text, carried the same way.
        await chat.tap_data(home.message_id, "mall:forged:1", expect=0)
        assert chat.last_callback_answer
        assert sandbox.emu.webhook_response_calls == 1
        [call] = [c for c in sandbox.emu.calls if c.method == "answerCallbackQuery"]
        assert call.params["text"] == chat.last_callback_answer
        assert call.params["show_alert"] is True


async def test_an_answer_ready_before_the_journal_is_posted_at_once(
    sample_config: Config,
) -> None:
    async with webhook_bot(sample_config, prepare=journals_after_answering) as sandbox:
        await member_with(sandbox, 9155, 1000)
        chat = sandbox.member(9155)
        await chat.send("/mall")
        await chat.tap("环保家居")
        # The member is not kept waiting for the commit: the answer went as a request.
        assert chat.last_callback_event is not None
        assert sandbox.emu.webhook_response_calls == 0
        assert answers_posted(sandbox) == 1
        assert tap_answers(sandbox, "posted_first") == 1
        assert not sandbox.app.bot.answers_in_response  # type: ignore[attr-defined]


async def test_with_no_wait_every_tap_is_answered_by_a_request(sample_config: Config) -> None:
    async with webhook_bot(sample_config, answer_in_response_ms=0) as sandbox:
        await member_with(sandbox, 9153, 1000)
        chat = sandbox.member(9153)
        await chat.send("/mall")
        await chat.tap("环保家居")
        assert chat.last_callback_event is not None
        assert sandbox.emu.webhook_response_calls == 0
        assert answers_posted(sandbox) == 1
        assert tap_answers(sandbox, "in_response") == tap_answers(sandbox, "waited_out") == 0


async def test_an_answer_later_than_the_wait_is_posted_by_the_handler(
    sample_config: Config,
) -> None:
    async def dawdle(update: Update, context: BotContext) -> None:
        await asyncio.sleep(0.3)  # longer than the 50 ms the webhook call waits

    def prepare(app: BotApp) -> None:
        app.add_handler(CallbackQueryHandler(dawdle), group=-3)

    async with webhook_bot(sample_config, prepare=prepare, answer_in_response_ms=50) as sandbox:
        await member_with(sandbox, 9154, 1000)
        chat = sandbox.member(9154)
        await chat.send("/mall")
        await chat.tap("环保家居")
        # Answered once, by a request, after the webhook call had its empty 200.
        assert chat.last_callback_event is not None
        assert chat.buttons()[:1] == ["帆布环保购物袋 · 300 积分"]
        assert sandbox.emu.webhook_response_calls == 0
        assert answers_posted(sandbox) == 1
        assert tap_answers(sandbox, "waited_out") == 1
        assert not sandbox.app.bot.answers_in_response  # type: ignore[attr-defined]


async def test_the_heartbeat_hears_telegram_and_names_a_webhook_moved_elsewhere(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    [job] = sandbox.app.job_queue.get_jobs_by_name("webhook-heartbeat")  # type: ignore[union-attr]
    metrics = sandbox.services.metrics
    metrics.last_contact = None  # as if no webhook call had come for a long while
    await job.run(sandbox.app)
    assert metrics.last_contact is not None  # getWebhookInfo answered: Telegram is heard
    assert sandbox.emu.calls[-1].method == "getWebhookInfo"
    assert "webhook_url" not in caplog.text
    # Somebody pointed the token's webhook elsewhere: the next beat says so.
    # (No update is pending meanwhile, so the emulator tries no delivery there.)
    ours, sandbox.emu.webhook_url = sandbox.emu.webhook_url, "https://elsewhere.example/hook"
    try:
        await job.run(sandbox.app)
    finally:
        sandbox.emu.webhook_url = ours
    assert "Telegram's webhook is 'https://elsewhere.example/hook'" in caplog.text


# --------------------------------------------------------------------------- configuration


def _with_telegram(tmp_path: Path, telegram: str) -> Path:
    text = SAMPLE.read_text(encoding="utf-8")
    text = text.replace('webhook_url = ""\n', "").replace('mode = "polling"\n', telegram)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("telegram", "named"),
    [
        ('mode = "webhook"\n', "webhook_url: required"),
        ('mode = "webhook"\nwebhook_url = "http://bot.example.com/hook"\n', "https:// URLs only"),
        ('mode = "hooks"\n', "telegram.mode"),
    ],
    ids=["no url", "plain http to Telegram", "unknown mode"],
)
def test_webhook_settings_are_checked(tmp_path: Path, telegram: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(_with_telegram(tmp_path, telegram))


def test_the_webhook_path_is_the_url_path() -> None:
    config = parse_config(
        {**_sample_data(), "telegram": {"mode": "webhook", "webhook_url": "https://x.example/a/b"}},
        "t",
    )
    assert config.telegram.webhook_path == "/a/b"


def _sample_data() -> dict[str, object]:
    import tomllib

    return tomllib.loads(SAMPLE.read_text(encoding="utf-8"))


def test_check_config_and_run_name_the_missing_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _with_telegram(
        tmp_path, 'mode = "webhook"\nwebhook_url = "https://bot.example.com/tg/hook"\n'
    )
    monkeypatch.delenv("POINTSBOT_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("POINTSBOT_TOKEN", "123:abc")
    runner = CliRunner()
    checked = runner.invoke(main, ["check-config", "--config", str(path)])
    assert "updates     webhook https://bot.example.com/tg/hook (route /tg/hook)" in checked.output
    assert "webhook key not set (POINTSBOT_WEBHOOK_SECRET)" in checked.output
    refused = runner.invoke(main, ["run", "--config", str(path)])
    assert refused.exit_code == 2
    assert "POINTSBOT_WEBHOOK_SECRET" in refused.output
    monkeypatch.setenv("POINTSBOT_WEBHOOK_SECRET", "has spaces")
    checked = runner.invoke(main, ["check-config", "--config", str(path)])
    assert "webhook key invalid" in checked.output


# --------------------------------------------------------------------------- the journal


async def test_a_delivered_update_is_journaled_once_and_done_marks_ride_along(
    tmp_path: Path,
) -> None:
    update = json.loads(text_update(41, 9601, "/start"))
    async with Store(tmp_path / "db.sqlite3", clock=lambda: NOW) as store:
        journal = Journal(store)
        assert await journal.deliver([update], [], NOW) == {41}
        assert await journal.newest() == 41
        # Telegram's copy (it missed the 200): journaled unchanged, not new; done marks of
        # updates handled meanwhile are written in the same transaction.
        assert await journal.deliver([update], [41], NOW) == set()
        assert await journal.counts() == JournalCounts(unfinished=0, done=1)
        assert await journal.deliver([update], [], NOW) == set()  # handled: still not new


async def test_an_update_left_unhandled_is_handled_at_the_next_start(
    sample_config: Config,
) -> None:
    # Journaled (acknowledged to Telegram) by a run killed before handling it.
    update = json.loads(text_update(77, 9701, "/start"))
    async with Store(sample_config.storage.path, clock=lambda: NOW) as store:
        await Journal(store).deliver([update], [], NOW)
    async with webhook_bot(sample_config) as sandbox:
        sandbox.member(9701)
        await sandbox.emu.wait_for(9701, lambda: bool(sandbox.emu.events(9701)))
        # Its copy, should Telegram deliver it again, is acknowledged and not handled.
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        handled = sandbox.emu.event_count(9701)
        assert await post(sandbox, text_update(77, 9701, "/start"), headers) == 200
        await asyncio.sleep(0.2)
        assert sandbox.emu.event_count(9701) == handled
        assert await sandbox.services.members.by_telegram_id(9701) is not None
