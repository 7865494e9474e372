"""The whole bot on PostgreSQL: the same member flows through the sandbox, the store being
PostgreSQL ([storage] url) instead of the SQLite file. The rest of the suite runs on SQLite
(the storage conformance tests run each storage function on both); this proves the bot's own
wiring (the update journal, conversations' persistence, the outbox) on PostgreSQL too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Config
from storage.audit import audit
from storage.health import store_sample
from tests.conftest import Sandbox, available, member_with


@pytest.fixture
def configure(pg_url: str) -> list[Callable[[Config], Config]]:
    """The sample programme stored in a fresh PostgreSQL database."""

    def on_postgres(config: Config) -> Config:
        storage = config.storage.model_copy(update={"url": pg_url})
        return config.model_copy(update={"storage": storage})

    return [on_postgres]


async def test_a_member_joins_earns_redeems_and_the_ledger_adds_up(sandbox: Sandbox) -> None:
    assert sandbox.services.store.__class__.__name__ == "PgStore"
    member = await member_with(sandbox, 8101, 1000)
    chat = sandbox.member(8101)
    # A cashier books a purchase (1 yuan = 1 point, eco x2): the member is told.
    [booked] = await sandbox.admin().send(f"/purchase {member.member_code} 128.50 eco R-8101")
    assert "256" in (booked.text or "")
    assert await available(sandbox, member) == 1256
    [balance] = await chat.send("/balance")
    assert "1256" in (balance.text or "")
    await chat.send("/mall")
    await chat.tap("环保家居")
    await chat.tap("帆布环保购物袋")
    await chat.tap("🎁 兑换")
    replies = await chat.tap("✅ 确认兑换", expect=2)
    done = chat.emu.message(8101, replies[0].message_id)
    assert done is not None and (done.text or "").startswith("✅ 兑换成功：帆布环保购物袋")
    assert await available(sandbox, member) == 956
    [history] = await chat.send("/history")
    assert "帆布环保购物袋" in (history.text or "") or "-300" in (history.text or "")
    report = await sandbox.services.store.read(audit)
    assert report.ok, str(report)
    # /metrics reads PostgreSQL's own figures: the size, the system accounts' sums.
    sample = await sandbox.services.store.read(lambda c: store_sample(c, marketing=True))
    assert sample.database_bytes is not None and sample.database_bytes > 1_000_000
    assert (sample.sources["purchase"], sample.sinks["redeemed"]) == (-1256, 300)
