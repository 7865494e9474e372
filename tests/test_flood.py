"""The flood limit: a member over it gets one polite answer and no work; others are unaffected."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Config
from bot.ratelimit import FloodGuard
from tests.conftest import Sandbox


def test_the_window_slides() -> None:
    guard = FloodGuard(limit=3, seconds=10)
    assert [guard.check(1, t) for t in (0, 1, 2)] == [(True, False)] * 3
    assert guard.check(1, 3) == (False, True)  # told once
    assert guard.check(1, 4) == (False, False)  # not told again in the same window
    assert guard.check(2, 4) == (True, False)  # another member is not affected
    assert guard.check(1, 10.5) == (True, False)  # the first update left the window


def tight(config: Config) -> Config:
    limits = config.limits.model_copy(update={"flood_updates": 5, "flood_seconds": 60})
    return config.model_copy(update={"limits": limits})


@pytest.mark.parametrize("configure", [[tight]])
async def test_a_flood_is_answered_once_and_does_no_work(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat = sandbox.member(4501)
    for _ in range(5):
        await chat.send("/rules")
    [slow] = await chat.send("/balance")
    assert slow.text == "您操作太频繁了，请 60 秒后再试。"
    assert await chat.send("/balance", expect=0, timeout=0.3) == []
    # Someone else, and staff at the till, are served as usual.
    # (Long rules come in several messages; the first opens them.)
    [other, *_] = await sandbox.member(4502).send("/rules")
    assert (other.text or "").startswith("📜")
    admin = sandbox.admin()
    for _ in range(7):
        [reply, *_] = await admin.send("/rules")
        assert (reply.text or "").startswith("📜")
