"""/badges through the sandbox: the badge wall arrives as a picture of the expected size with the
same wall as text, earned badges in colour and counted, and the menu button in English."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from bot.badge_wall import COLUMNS, DISC, MARGIN, TILE_HEIGHT, TILE_WIDTH, TITLE_HEIGHT, WIDTH
from bot.programme.tasks import advance_task
from bot.sandbox.server import SandboxMessage, UploadedFile
from storage.members import Member
from tests.conftest import NOW, Sandbox, assert_audit_ok, member_with


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger and the prizes must still add up."""
    yield
    await assert_audit_ok(sandbox)


async def complete(sandbox: Sandbox, member: Member, task_id: str) -> None:
    """The member completes a task (as any task kind does it, through the one seam)."""
    config = sandbox.services.config
    task = config.task(task_id)
    assert task is not None
    await sandbox.services.store.write(
        lambda conn: advance_task(conn, task, member.id, task.target, config, NOW, actor="t")
    )


def picture(message: SandboxMessage) -> Image.Image:
    assert message.kind == "photo" and message.photo is not None, message
    return Image.open(io.BytesIO(message.photo))


def disc_centre(index: int) -> tuple[int, int]:
    """Where the picture draws badge `index`'s disc (beside its number)."""
    row, column = divmod(index, COLUMNS)
    x = MARGIN + column * TILE_WIDTH + TILE_WIDTH // 2 - DISC // 3
    y = MARGIN + TITLE_HEIGHT + row * TILE_HEIGHT + 8 + DISC // 2
    return x, y


def is_grey(pixel: tuple[int, ...]) -> bool:
    r, g, b = pixel[:3]
    return max(r, g, b) - min(r, g, b) < 8


async def test_the_wall_shows_earned_badges_in_colour_and_counts_them(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7301, 0)
    chat = sandbox.member(7301)
    [empty] = await chat.send("/badges")
    wall = picture(empty)
    # Seven badges in two rows of four, then the two sets.
    assert wall.size == (720, 544)
    assert (empty.caption or "").splitlines()[0] == "🏅 我的勋章墙：已获得 0/7 枚"
    assert all(is_grey(wall.getpixel(disc_centre(i))) for i in range(7))  # type: ignore[arg-type]

    await complete(sandbox, member, "green_share")
    await complete(sandbox, member, "review")
    await complete(sandbox, member, "events")
    [shown] = await chat.send("/badges")
    lines = (shown.caption or "").splitlines()
    assert lines[0] == "🏅 我的勋章墙：已获得 3/7 枚"
    assert lines[1] == "1. ✅ 📸 绿色分享家（2026-11-25 获得）"
    assert lines[2] == "2. 🔒 🌿 绿色常客：完成任务“本月 3 次绿色消费”即可获得"
    assert lines[7] == "7. 🔒 🌍 千元绿色消费：累计绿色消费满 1000 元即可获得"
    assert lines[-2:] == [
        "1. 绿色先锋：1/4，集齐可得 500 积分",
        "2. 社区之星：2/3，集齐可得“帆布环保购物袋”",
    ]
    wall = picture(shown)
    colours = [not is_grey(wall.getpixel(disc_centre(i))) for i in range(7)]  # type: ignore[arg-type]
    assert colours == [True, False, False, True, True, False, False]


async def test_the_same_wall_is_sent_again_by_its_file_id(sandbox: Sandbox) -> None:
    await member_with(sandbox, 7302, 0)
    await member_with(sandbox, 7303, 0)
    await sandbox.member(7302).send("/badges")
    await sandbox.member(7303).send("/badges")
    photos = [call.params["photo"] for call in sandbox.emu.calls if call.method == "sendPhoto"]
    assert [type(p) for p in photos] == [UploadedFile, str]


async def test_the_menu_button_opens_the_wall_in_english(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7304, 0, "en")
    await complete(sandbox, member, "benefits_survey")
    chat = sandbox.member(7304, language_code="en")
    [start] = await chat.send("/start")
    assert "🏅 Badges" in start.buttons
    await chat.tap("🏅 Badges")
    [shown] = [m for m in chat.bot_messages if m.kind == "photo"]
    lines = (shown.caption or "").splitlines()
    assert lines[0] == "🏅 Your badge wall: 1 of 7 badges earned"
    assert "6. ✅ 📋 Member's voice (earned 2026-11-25)" in lines
    assert "1. Green pioneer: 0/4, the whole set brings 500 points" in lines
    assert picture(shown).size[0] == WIDTH


async def test_a_set_item_prize_is_listed_in_redemptions(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7305, 0)
    for task_id in ("review", "events", "benefits_survey"):
        await complete(sandbox, member, task_id)
    chat = sandbox.member(7305)
    [shown] = await chat.send("/badges")
    assert "2. 社区之星：3/3 ✅ 大奖已领取" in (shown.caption or "").splitlines()
    replies = await chat.send("/redemptions")
    assert any("帆布环保购物袋" in (r.text or "") for r in replies), chat.transcript()
