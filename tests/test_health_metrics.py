"""GET /healthz and GET /metrics of the running bot, served on their own loopback server."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.clock import FixedClock
from bot.config import Config, HealthConfig
from bot.health import routes
from bot.metrics import database_bytes
from storage.pushes import MARKETING, SERVICE, Push
from tests.conftest import NOW, Sandbox, available, member_with

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    """A store that must answer within half a second, Telegram heard from within 3 s."""
    health = HealthConfig(store_timeout_seconds=0.5, contact_within_seconds=3)
    return [lambda config: config.model_copy(update={"health": health})]


@pytest.fixture
async def http(sandbox: Sandbox) -> AsyncIterator[Http]:
    """The health and metrics routes of the running bot on 127.0.0.1, any free port."""
    app = web.Application()
    for method, path, handler in routes(sandbox.services):
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
            yield Http(session)
    finally:
        await runner.cleanup()


class Http:
    """A client of the two routes."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def health(self) -> tuple[int, dict[str, Any]]:
        """GET /healthz: the status code and the JSON body."""
        async with self.session.get("/healthz") as response:
            return response.status, await response.json()

    async def metrics(self) -> Samples:
        """GET /metrics parsed back by the Prometheus parser: each sample by name and labels."""
        async with self.session.get("/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = await response.text()
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
        return samples

    async def metrics_when(self, ready: Callable[[Samples], bool]) -> Samples:
        """/metrics once `ready` holds (an update is counted just after its reply is sent)."""
        for _ in range(100):
            samples = await self.metrics()
            if ready(samples):
                return samples
            await asyncio.sleep(0.02)
        raise AssertionError(f"metrics never got there: {samples}")

    async def health_when(self, status: int, within: float = 10.0) -> dict[str, Any]:
        """/healthz's body once it answers `status` (within `within` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            code, body = await self.health()
            if code == status:
                return body
            if loop.time() > deadline:
                raise AssertionError(f"/healthz stayed {code}: {body}")
            await asyncio.sleep(0.05)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter never incremented has no child)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_updates_by_kind_with_latency_and_the_ledger(
    sandbox: Sandbox, http: Http
) -> None:
    member = await member_with(sandbox, 9301, 1000)  # /start, then 1000 purchase points
    chat = sandbox.member(9301)
    await chat.send("/mall")
    await chat.tap("环保家居")
    await chat.tap("帆布环保购物袋")
    await chat.tap("🎁 兑换")
    await chat.tap("✅ 确认兑换", expect=2)
    await chat.send("你好")  # a stray text: a message, not a command

    samples = await http.metrics_when(
        lambda s: (
            value(s, "pointsbot_updates_handled_total", kind="message") == 1
            and value(s, "pointsbot_updates_handled_total", kind="callback_query") == 4
        )
    )
    assert value(samples, "pointsbot_updates_handled_total", kind="command") == 2
    # Every update handled is one observation of its kind's latency, each taking some time.
    for kind, count in (("command", 2), ("callback_query", 4), ("message", 1)):
        assert value(samples, "pointsbot_update_handling_seconds_count", kind=kind) == count
        assert value(samples, "pointsbot_update_handling_seconds_sum", kind=kind) > 0
        assert value(samples, "pointsbot_update_handling_seconds_bucket", kind=kind, le="+Inf")
    # The ledger's system accounts: 1000 issued for the purchase, 300 redeemed for the bag,
    # and what the member holds is the difference.
    assert value(samples, "pointsbot_points_issued", source="purchase") == 1000
    assert value(samples, "pointsbot_points_spent", sink="redeemed") == 300
    assert value(samples, "pointsbot_points_spent", sink="expired") == 0
    assert await available(sandbox, member) == 1000 - 300
    path = sandbox.services.store.path
    assert 0 < value(samples, "pointsbot_database_bytes") <= database_bytes(path) * 2
    assert value(samples, "pointsbot_outbox_pending") == 0
    assert value(samples, "pointsbot_outbox_oldest_pending_seconds") == 0
    assert value(samples, "pointsbot_leader_epoch") == 1  # the one process leads


async def test_bot_api_errors_are_counted_by_method_and_code(sandbox: Sandbox, http: Http) -> None:
    chat = sandbox.member(9302)
    await chat.send("/start")
    # The reply fails; the error handler's apology then gets through.
    sandbox.emu.fail_next("sendMessage", error_code=403)
    await chat.send("/help")
    sandbox.emu.fail_next("sendMessage", error_code=429, retry_after=1)
    await chat.send("/help")

    samples = await http.metrics()
    errors = "pointsbot_bot_api_errors_total"
    assert value(samples, errors, method="sendMessage", code="403") == 1
    assert value(samples, errors, method="sendMessage", code="429") == 1
    assert value(samples, errors, method="getUpdates", code="409") == 0


async def test_healthz_is_ok_for_a_bot_at_work(sandbox: Sandbox, http: Http) -> None:
    await sandbox.member(9303).send("/start")
    status, body = await http.health()
    assert status == 200, body
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "store": True,
        "leader": True,
        "telegram": True,
        "outbox": True,
    }
    assert body["checks"]["leader"]["detail"] == "leading (epoch 1)"


async def test_healthz_fails_while_another_process_locks_the_store(
    sandbox: Sandbox, http: Http
) -> None:
    await sandbox.member(9304).send("/start")
    await http.health_when(200)
    # An operator's sqlite3 shell (or a stray script) holding a write transaction: every
    # points operation would wait behind it.
    other = sqlite3.connect(sandbox.services.store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        status, body = await http.health()
        assert status == 503
        assert body["status"] == "unhealthy"
        assert body["checks"]["store"]["ok"] is False
        assert "no answer within 0.5 s" in body["checks"]["store"]["detail"]
        # Reads go on beside a writer (WAL): the scrape still has the database's figures.
        samples = await http.metrics()
        assert ("pointsbot_outbox_pending", ()) in samples
    finally:
        other.execute("ROLLBACK")
        other.close()
    body = await http.health_when(200)
    assert body["checks"]["store"]["ok"] is True


async def test_healthz_fails_when_the_outbox_stalls_and_recovers(
    sandbox: Sandbox, http: Http
) -> None:
    services = sandbox.services
    member = await member_with(sandbox, 9305, 0)
    await services.sender.stop()  # the sender dies; pushes keep being queued
    clock = FixedClock(NOW)
    services.clock = clock
    await services.pushes.enqueue(
        [
            Push("t:service", member.id, SERVICE, "push.birthday", {}),
            Push("t:marketing", member.id, MARKETING, "push.birthday", {}),
        ],
        NOW,
    )
    clock.advance(timedelta(minutes=30))
    samples = await http.metrics()
    assert value(samples, "pointsbot_outbox_pending") == 2
    assert value(samples, "pointsbot_outbox_oldest_pending_seconds") == 30 * 60
    status, body = await http.health()
    assert status == 200, body  # half an hour is within the hour allowed

    clock.advance(timedelta(hours=1))
    status, body = await http.health()
    assert status == 503
    assert body["checks"]["outbox"] == {
        "ok": False,
        "detail": "2 pending, the oldest due for 5400 s",
    }
    assert body["checks"]["store"]["ok"] is True

    services.sender.start()
    body = await http.health_when(200)
    assert body["checks"]["outbox"]["ok"] is True
    samples = await http.metrics()
    assert value(samples, "pointsbot_outbox_pending") == 0
    assert "pending" not in await services.pushes.counts()


async def test_a_marketing_push_held_by_quiet_hours_is_not_a_stall(
    sandbox: Sandbox, http: Http
) -> None:
    services = sandbox.services
    member = await member_with(sandbox, 9306, 0)
    await services.sender.stop()
    clock = FixedClock(NOW)
    services.clock = clock
    await services.pushes.enqueue(
        [Push("t:marketing", member.id, MARKETING, "push.birthday", {})], NOW
    )
    # 23:00 in Shanghai, two hours into quiet hours: marketing waits for the morning.
    clock.set(NOW + timedelta(hours=11))
    status, body = await http.health()
    assert status == 200, body
    assert body["checks"]["outbox"] == {"ok": True, "detail": "1 pending, none due"}
    # 09:00 the next morning, the sender still stopped: now it is stuck.
    clock.set(NOW + timedelta(hours=21))
    status, body = await http.health()
    assert status == 503
    assert body["checks"]["outbox"]["ok"] is False


async def test_healthz_fails_when_telegram_goes_quiet(sandbox: Sandbox, http: Http) -> None:
    await http.health_when(200)
    updater = sandbox.app.updater
    assert updater is not None
    await updater.stop()  # no more getUpdates: members' messages no longer arrive
    body = await http.health_when(503)
    assert body["checks"]["telegram"]["ok"] is False
    assert body["checks"]["store"]["ok"] is True
    await updater.start_polling(timeout=1)
    body = await http.health_when(200)
    assert body["checks"]["telegram"]["ok"] is True
