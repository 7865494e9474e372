"""The scratch card through the sandbox: the prize is fixed at purchase, cells are scratched
one by one, the card reveals and pays once, and forged taps change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import SandboxMessage
from storage.audit import audit
from storage.members import Member
from tests.conftest import Sandbox, available, member_with
from tests.games_support import BAG, P10, P100, THANKS, ForcedDraws, today_local, with_wheel

UNSCRATCHED = "░░"


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    """The test games: a card costs 30 points, three a day, shown whole after 3 cells."""
    return [with_wheel()]


async def game_operations(sandbox: Sandbox, member: Member) -> list[tuple[str, int]]:
    statement = await sandbox.services.ledger.history(member.id, limit=100)
    return [(line.kind, line.points) for line in statement.lines if line.kind.startswith("game")]


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger and the games must still add up."""
    yield
    report = await sandbox.services.store.read(lambda conn: audit(conn, integrity="quick"))
    assert report.ok, str(report)


def force(sandbox: Sandbox, *tickets: int) -> None:
    """The next cards carry these prizes (see tests.games_support)."""
    sandbox.services.game_random = ForcedDraws(*tickets)


def grid(message: SandboxMessage) -> list[str]:
    """The nine cells of a card as the member sees them."""
    return [b.text for row in message.keyboard[:3] for b in row]


async def buy(chat: ChatClient) -> SandboxMessage:
    """/scratch and buy a card; the card message."""
    await chat.send("/scratch")
    await chat.tap("买一张", expect=2)
    card = chat.last_message
    assert card is not None and len(card.keyboard) >= 3, chat.transcript()
    return card


async def scratch(chat: ChatClient, card: SandboxMessage, cell: int) -> SandboxMessage:
    """Tap cell `cell` (0-8) of the card; the card as it is now."""
    await chat.tap(cell + 1, message=card)
    current = chat.emu.message(chat.user_id, card.message_id)
    assert current is not None
    return current


async def test_buy_scratch_and_reveal_pays_once(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7201, 100)
    chat = sandbox.member(7201)
    force(sandbox, P100)
    [home] = await chat.send("/scratch")
    text = home.text or ""
    assert text.startswith("🎫 积分刮刮乐\n每次 30 积分；每人每天最多 3 次。\n📊 各奖项概率")
    assert "• 💎×3 100 积分 — 25%" in text and "• 谢谢参与 — 25%" in text
    assert "期望回报：平均每次 27.5 积分，每次花费 30 积分（返还率 91.67%）。" in text
    assert "买卡时奖项即已确定；刮开 3 格后整张揭晓，三个相同图案即中奖。" in text
    assert home.buttons == ["🎫 买一张（30 积分）"]
    await chat.tap("买一张", expect=2)
    card = chat.last_message
    assert card is not None
    assert grid(card) == [UNSCRATCHED] * 9
    assert card.buttons[-1] == "🪙 全部刮开"
    lines = (card.text or "").splitlines()
    assert lines[0].startswith("🎫 刮刮卡 No.")
    assert lines[2] == "中奖图案：💎 100 积分、🍀 10 积分、⭐ 帆布袋兑换券"
    assert lines[-1] == "本次花费 30 积分，余额 70 积分。"
    # The prize is fixed but not paid: 30 spent, nothing won yet.
    assert await available(sandbox, member) == 70
    assert await game_operations(sandbox, member) == [("game_play", -30)]
    card = await scratch(chat, card, 0)
    assert grid(card)[0] != UNSCRATCHED and grid(card)[1:] == [UNSCRATCHED] * 8
    assert "已刮开 1/3 格。" in (card.text or "")
    card = await scratch(chat, card, 4)
    assert await available(sandbox, member) == 70
    card = await scratch(chat, card, 8)
    assert UNSCRATCHED not in grid(card)
    assert grid(card).count("💎") == 3
    text = card.text or ""
    assert "已揭晓" in text and "三个 💎：100 积分！" in text and "🎉 获得 100 积分" in text
    assert "余额 170 积分。" in text
    assert await available(sandbox, member) == 170
    assert await game_operations(sandbox, member) == [("game", 100), ("game_play", -30)]
    # Re-scratching a finished card is refused politely and changes nothing.
    for cell in (1, 4):
        await chat.tap_data(card.message_id, f"game:sc:{card_id(card)}:{cell}", expect=0)
        assert chat.last_callback_answer == "这张刮刮卡已经揭晓，不能再刮了。"
    await chat.tap_data(card.message_id, f"game:all:{card_id(card)}", expect=0)
    assert chat.last_callback_answer == "这张刮刮卡已经揭晓，不能再刮了。"
    assert await available(sandbox, member) == 170
    assert await game_operations(sandbox, member) == [("game", 100), ("game_play", -30)]


def card_id(card: SandboxMessage) -> int:
    data = card.keyboard[0][0].callback_data
    assert data is not None and data.startswith("game:sc:")
    return int(data.split(":")[2])


async def test_scratch_all_and_a_losing_card(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7202, 100, "en")
    chat = sandbox.member(7202, language_code="en")
    force(sandbox, THANKS)
    await chat.send("/scratch")
    await chat.tap("Get a card", expect=2)
    card = chat.last_message
    assert card is not None
    await chat.tap("🪙 Scratch all", message=card)
    current = chat.emu.message(7202, card.message_id)
    assert current is not None
    cells = grid(current)
    assert UNSCRATCHED not in cells and max(cells.count(s) for s in cells) <= 2
    text = current.text or ""
    assert "revealed" in text and "No prize this time. Better luck next time! 🍀" in text
    assert "Three" not in text
    assert current.buttons[-1] == "🎫 Get a card (30 points)"
    assert await available(sandbox, member) == 70


async def test_a_cell_scratched_twice_is_only_scratched_once(sandbox: Sandbox) -> None:
    await member_with(sandbox, 7203, 100)
    chat = sandbox.member(7203)
    force(sandbox, P10)
    card = await buy(chat)
    card = await scratch(chat, card, 2)
    await chat.tap(3, message=card, expect=0)
    assert chat.last_callback_answer == "这一格已经刮开了。"
    current = chat.emu.message(7203, card.message_id)
    assert current is not None and "已刮开 1/3 格。" in (current.text or "")


async def test_forged_taps_on_cards_change_nothing(sandbox: Sandbox) -> None:
    owner = await member_with(sandbox, 7204, 100)
    snoop = await member_with(sandbox, 7205, 100)
    owner_chat, snoop_chat = sandbox.member(7204), sandbox.member(7205)
    force(sandbox, P100)
    card = await buy(owner_chat)
    number = card_id(card)
    [home] = await snoop_chat.send("/start")
    for forged in (
        f"game:sc:{number}:0",  # someone else's card
        f"game:all:{number}",
        f"game:card:{number}",
        "game:sc:999999:0",  # made-up card
        "game:all:424242",
        f"game:sc:{number}:9",  # no such cell
        f"game:sc:{number}:-1",
        f"game:sc:{number}",
        "game:buy:abc",
        "game:buy:777777",
    ):
        await snoop_chat.tap_data(home.message_id, forged, expect=0)
        assert snoop_chat.last_callback_answer == "此按钮已失效，请重新操作。", forged
    # The owner's card is untouched, their prize unpaid, the snoop's points the same.
    current = owner_chat.emu.message(7204, card.message_id)
    assert current is not None and grid(current) == [UNSCRATCHED] * 9
    stored = await sandbox.services.games.card(number, owner.id)
    assert stored.scratched == 0 and not stored.revealed
    assert await available(sandbox, owner) == 70
    assert await available(sandbox, snoop) == 100
    assert await game_operations(sandbox, snoop) == []


async def test_a_double_tap_on_buy_buys_one_card(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7206, 100)
    chat = sandbox.member(7206)
    force(sandbox, P10, P10)
    [home] = await chat.send("/scratch")
    [button] = [b for row in home.keyboard for b in row if "买一张" in b.text]
    assert button.callback_data is not None
    other_view = sandbox.member(7206)
    await asyncio.gather(
        chat.tap_data(home.message_id, button.callback_data, expect=0),
        other_view.tap_data(home.message_id, button.callback_data, expect=0),
    )
    answers = sorted([chat.last_callback_answer or "", other_view.last_callback_answer or ""])
    assert answers == ["", "这张卡已经买好了，请在下方刮开。"]
    await chat.emu.wait_for(7206, lambda: "刮刮卡 No." in (chat.last_text or ""), 5)
    usage = await sandbox.services.games.day_usage(
        member.id, "scratch", today_local(sandbox.config)
    )
    assert usage.plays == 1
    assert await available(sandbox, member) == 70


async def test_an_unfinished_card_can_be_continued_later(sandbox: Sandbox) -> None:
    await member_with(sandbox, 7207, 100)
    chat = sandbox.member(7207)
    force(sandbox, BAG)
    card = await buy(chat)
    await scratch(chat, card, 0)
    [home] = await chat.send("/scratch")
    number = card_id(card)
    assert "您有 1 张还没刮完的卡。" in (home.text or "")
    assert f"继续刮 No.{number}" in home.buttons
    assert "各奖项概率" not in (home.text or "")  # shown before today's first card already
    await chat.tap(f"继续刮 No.{number}", message=home)
    shown = chat.emu.message(7207, home.message_id)
    assert shown is not None and grid(shown)[0] != UNSCRATCHED
    replies = await chat.tap("🪙 全部刮开", message=shown, expect=2)
    [qr] = [r for r in replies if r.kind == "photo"]
    revealed = chat.emu.message(7207, home.message_id)
    assert revealed is not None
    text = revealed.text or ""
    assert "三个 ⭐：帆布袋兑换券！" in text and "🎟 获得「帆布袋兑换券」！券码 " in text
    code = text.split("券码 ")[1][:8]
    assert qr.text == f"奖品券 {code}：到店结账时出示此二维码。"
    [prizes] = await chat.send("/prizes")
    assert f"{code}  帆布袋兑换券 — 待使用" in (prizes.text or "")


@pytest.mark.parametrize("configure", [[with_wheel(daily_budget=50)]])
async def test_a_card_drawn_over_budget_is_the_fallback_and_says_so(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await member_with(sandbox, 7208, 100)
    chat = sandbox.member(7208)
    force(sandbox, P100)
    card = await buy(chat)
    await chat.tap("全部刮开", message=card)
    current = chat.emu.message(7208, card.message_id)
    assert current is not None
    cells = grid(current)
    assert max(cells.count(s) for s in cells) <= 2  # the card shows the fallback: no line
    assert "今日奖池已发完：本次抽中的「100 积分」改为「谢谢参与」。" in (current.text or "")
    assert await available(sandbox, member) == 70


@pytest.mark.parametrize("configure", [[with_wheel(scratch={"cost": 30, "daily_limit": 1})]])
async def test_the_daily_card_limit(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await member_with(sandbox, 7209, 100)
    chat = sandbox.member(7209)
    force(sandbox, THANKS)
    await buy(chat)
    [home] = await chat.send("/scratch")
    assert "今天的 1 次机会已用完，明天再来吧！" in (home.text or "")
    assert not [b for b in home.buttons if "买一张" in b]
    assert await available(sandbox, member) == 70


@pytest.mark.parametrize("configure", [[with_wheel()]])
async def test_a_paid_card_can_be_finished_after_the_game_closes(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await member_with(sandbox, 7210, 100)
    chat = sandbox.member(7210)
    force(sandbox, P10)
    card = await buy(chat)
    config = sandbox.services.config
    assert config.wheel is not None
    sandbox.services.config = config.model_copy(
        update={"wheel": config.wheel.model_copy(update={"scratch": None})}
    )
    [home] = await chat.send("/scratch")
    assert (home.text or "").splitlines() == ["积分游戏暂未开放。", "您有 1 张还没刮完的卡。"]
    await chat.tap(f"继续刮 No.{card_id(card)}", message=home)
    await chat.tap("全部刮开")
    assert "🎉 获得 10 积分" in (chat.last_text or "")
    assert await available(sandbox, member) == 80
