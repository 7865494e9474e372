"""The points wheel through the sandbox: odds first, free and paid spins, limits, the budget,
double taps, campaigns, voucher prizes and forged buttons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import SandboxMessage, UploadedFile
from storage.members import Member
from tests.conftest import Sandbox, assert_audit_ok, available, joined, member_with
from tests.games_support import (
    BAG,
    P10,
    P100,
    THANKS,
    TOTAL_WEIGHT,
    ForcedDraws,
    today_local,
    with_wheel,
)


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    """The test wheel: four equally likely prizes, 50 points a spin after one free spin."""
    return [with_wheel()]


async def game_operations(sandbox: Sandbox, member: Member) -> list[tuple[str, int]]:
    statement = await sandbox.services.ledger.history(member.id, limit=100)
    return [(line.kind, line.points) for line in statement.lines if line.kind.startswith("game")]


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did through the bot, the ledger and the games must still add up."""
    yield
    await assert_audit_ok(sandbox)


def force(sandbox: Sandbox, *tickets: int) -> None:
    """The next spins land on these tickets (see tests.games_support)."""
    sandbox.services.game_random = ForcedDraws(*tickets)


def button_data(message: SandboxMessage, label: str) -> str:
    [button] = [b for row in message.keyboard for b in row if label in b.text]
    assert button.callback_data is not None
    return button.callback_data


async def spin(
    chat: ChatClient, label: str, *, expect: int = 2, message: SandboxMessage | None = None
) -> SandboxMessage:
    """Tap the Spin button (on `message`, else the latest keyboard); the result photo."""
    await chat.tap(label, expect=expect, message=message)
    photos = [m for m in chat.bot_messages if m.kind == "photo"]
    assert photos, chat.transcript()
    return photos[-1] if expect == 2 else photos[-2]


async def test_odds_before_the_first_spin_then_a_free_spin(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7101, 120)
    chat = sandbox.member(7101)
    force(sandbox, P100)
    [home] = await chat.send("/wheel")
    assert (home.text or "").splitlines() == [
        "🎡 积分转盘",
        "每次 50 积分，每天前 1 次免费；每人每天最多 5 次。",
        "📊 各奖项概率（每次独立抽取）：",
        "• 100 积分 — 25%",
        "• 10 积分 — 25%",
        "• 帆布袋兑换券 — 25%",
        "• 谢谢参与 — 25%",
        "期望回报：平均每次 27.5 积分，每次花费 50 积分（返还率 55%）。",
        "代金券类奖品不计入期望回报。",
        "每日奖池 10000 积分（转盘与刮刮乐合计，全体会员共享）；"
        "当天发完后，抽中的积分奖改为「谢谢参与」。",
        "结果由服务器以加密级随机数抽取。",
        "转盘各扇区按概率等比例绘制。",
        "",
        "今天已玩 0/5 次；您有 120 积分。",
        "今天还有 1 次免费机会。",
    ]
    assert home.buttons == ["🎡 免费转一次"]
    result = await spin(chat, "免费转一次")
    assert result.photo is not None and result.photo.startswith(b"\x89PNG")
    caption = (result.text or "").splitlines()
    assert caption[0] in ("🎡 指针停在：100 积分", "🎡 指针停在 1 号：100 积分")
    assert caption[1].startswith("🎉 获得 100 积分，已存入账户（")
    assert "本次免费，余额 220 积分。" in caption
    assert result.buttons == ["🎡 转一次（50 积分）"]
    # The Spin button is gone from the first message: it cannot be tapped again by mistake.
    first = chat.emu.message(7101, home.message_id)
    assert first is not None and first.buttons == []
    assert await available(sandbox, member) == 220
    assert await game_operations(sandbox, member) == [("game", 100)]
    # Later the same day: no odds block, a button to see them, and /odds at any time.
    [later] = await chat.send("/wheel")
    assert "各奖项概率" not in (later.text or "")
    assert later.buttons == ["🎡 转一次（50 积分）", "📊 查看概率"]
    [odds] = await chat.send("/odds")
    assert "🎡 积分转盘" in (odds.text or "") and "• 100 积分 — 25%" in (odds.text or "")
    assert "🎫 积分刮刮乐" in (odds.text or "")


async def test_a_paid_spin_costs_its_price(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7102, 200)
    chat = sandbox.member(7102)
    force(sandbox, THANKS, P10)
    await chat.send("/wheel")
    await spin(chat, "免费转一次")
    result = await spin(chat, "转一次（50 积分）")
    caption = result.text or ""
    assert "🎉 获得 10 积分" in caption and "本次花费 50 积分，余额 160 积分。" in caption
    assert await available(sandbox, member) == 160
    assert await game_operations(sandbox, member) == [("game", 10), ("game_play", -50)]


class SameStop:
    """Every spin lands on "thanks", with the pointer at the same stop: the same picture."""

    def randbelow(self, n: int, /) -> int:
        """The "thanks" ticket for a prize draw, 0 for the pointer's stop."""
        return THANKS if n == TOTAL_WEIGHT else 0


async def test_the_same_wheel_picture_is_uploaded_once_then_sent_by_file_id(
    sandbox: Sandbox,
) -> None:
    await member_with(sandbox, 7110, 200)
    chat = sandbox.member(7110)
    sandbox.services.game_random = SameStop()
    await chat.send("/wheel")
    first = await spin(chat, "免费转一次")
    second = await spin(chat, "转一次（50 积分）")
    photos = [call.params["photo"] for call in sandbox.emu.calls if call.method == "sendPhoto"]
    assert len(photos) == 2
    assert isinstance(photos[0], UploadedFile)  # the picture itself, once
    assert isinstance(photos[1], str)  # then Telegram's id for it
    assert first.photo == second.photo and first.photo  # the member sees the same wheel
    assert "本次花费 50 积分，余额 150 积分。" in (second.text or "")


async def test_a_refused_file_id_is_uploaded_again(sandbox: Sandbox) -> None:
    await member_with(sandbox, 7111, 200)
    chat = sandbox.member(7111)
    sandbox.services.game_random = SameStop()
    await chat.send("/wheel")
    first = await spin(chat, "免费转一次")
    uploaded = sandbox.services.uploaded_photos
    for key in uploaded:
        uploaded[key] = "a-file-id-telegram-no-longer-knows"
    second = await spin(chat, "转一次（50 积分）")
    assert first.photo == second.photo and first.photo
    photos = [call.params["photo"] for call in sandbox.emu.calls if call.method == "sendPhoto"]
    assert [type(p) for p in photos] == [UploadedFile, str, UploadedFile]
    assert "a-file-id-telegram-no-longer-knows" not in uploaded.values()


async def test_not_enough_points_for_a_paid_spin(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7103, 60)
    chat = sandbox.member(7103)
    force(sandbox, THANKS)
    await chat.send("/wheel")
    await spin(chat, "免费转一次")
    # The offer is shown while the member can pay; the points are gone before the tap.
    [home] = await chat.send("/wheel")
    data = button_data(home, "转一次")
    await sandbox.services.ledger.spend(
        member.id, 30, key="elsewhere", actor="t", reason="mall", reference=None
    )
    await chat.tap_data(home.message_id, data, expect=0)
    assert chat.last_callback_answer == "积分不足，还差 20 积分。"
    assert await available(sandbox, member) == 30
    [poor] = await chat.send("/wheel")
    assert "积分不足：每次需要 50 积分，您有 30 积分。" in (poor.text or "")
    assert poor.buttons == ["📊 查看概率"]


async def test_the_daily_limit(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7104, 1000)
    chat = sandbox.member(7104)
    force(sandbox, THANKS, THANKS, THANKS, THANKS, THANKS, THANKS)
    [first] = await chat.send("/wheel")
    stale = button_data(first, "免费转一次")
    await spin(chat, "免费转一次")
    for _ in range(4):
        await spin(chat, "转一次（50 积分）")
    last = chat.last_message
    assert last is not None and last.buttons == []
    assert "今天的 5 次机会已用完，明天再来吧！" in (last.text or "")
    [home] = await chat.send("/wheel")
    assert "今天已玩 5/5 次" in (home.text or "") and "🎡" not in " ".join(home.buttons)
    # An old button cannot get round the limit.
    extra = await sandbox.services.games.create_offer(
        member.id, "wheel", 50, local_day=today_local(sandbox.config), ttl=timedelta(minutes=5)
    )
    await chat.tap_data(home.message_id, f"game:spin:{extra.id}", expect=0)
    assert chat.last_callback_answer == "今天的 5 次机会已用完，明天再来吧！"
    await chat.tap_data(home.message_id, stale, expect=0)
    assert chat.last_callback_answer == "这一次已经玩过了，结果见上方。"
    assert await available(sandbox, member) == 800


@pytest.mark.parametrize("configure", [[with_wheel(daily_budget=150)]])
async def test_the_budget_falls_back_and_says_so(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    alice = await member_with(sandbox, 7105, 0)
    bob = await member_with(sandbox, 7106, 0)
    force(sandbox, P100, P100)
    alice_chat, bob_chat = sandbox.member(7105), sandbox.member(7106)
    await alice_chat.send("/wheel")
    await spin(alice_chat, "免费转一次")
    await bob_chat.send("/wheel")
    result = await spin(bob_chat, "免费转一次")
    caption = result.text or ""
    assert "100 积分" in caption.splitlines()[0]  # the pointer shows what was drawn
    assert "这次没有中奖" in caption
    assert "今日奖池已发完：本次抽中的「100 积分」改为「谢谢参与」。" in caption
    assert await available(sandbox, alice) == 100
    assert await available(sandbox, bob) == 0
    assert await game_operations(sandbox, bob) == []


async def test_a_double_tap_spins_once(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7107, 500)
    chat = sandbox.member(7107)
    force(sandbox, THANKS, P10, P100)
    await chat.send("/wheel")
    await spin(chat, "免费转一次")
    result = chat.last_message
    assert result is not None
    data = button_data(result, "转一次")
    first_answer = sandbox.member(7107)  # the same member: a second view of the chat
    await asyncio.gather(
        first_answer.tap_data(result.message_id, data, expect=0),
        chat.tap_data(result.message_id, data, expect=0),
    )

    def photos() -> list[SandboxMessage]:
        return [m for m in chat.bot_messages if m.kind == "photo"]

    # The answer comes before the picture is drawn: wait for it, then make sure of no third.
    await chat.emu.wait_for(7107, lambda: len(photos()) >= 2, 5)
    await asyncio.sleep(0.3)
    assert len(photos()) == 2  # the free spin's and one paid spin's
    answers = sorted([first_answer.last_callback_answer or "", chat.last_callback_answer or ""])
    assert answers == ["", "这一次已经玩过了，结果见上方。"]
    assert await game_operations(sandbox, member) == [("game", 10), ("game_play", -50)]
    assert await available(sandbox, member) == 460
    usage = await sandbox.services.games.day_usage(member.id, "wheel", today_local(sandbox.config))
    assert usage.plays == 2


async def test_a_second_free_button_is_refused_once_the_free_spin_is_used(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 7108, 500)
    chat = sandbox.member(7108)
    force(sandbox, THANKS)
    [first] = await chat.send("/wheel")
    [second] = await chat.send("/wheel")
    assert second.buttons[0] == "🎡 免费转一次"
    first_message = chat.emu.message(7108, first.message_id)
    assert first_message is not None
    await spin(chat, "免费转一次", message=first_message)
    await chat.tap_data(second.message_id, button_data(second, "免费转一次"), expect=0)
    assert chat.last_callback_answer == "价格已变化（今天的免费次数已用完），请重新打开游戏。"
    assert await available(sandbox, member) == 500


@pytest.mark.parametrize("configure", [[with_wheel(campaigns="today")]])
async def test_a_campaign_doubles_points_prizes_and_the_disclosure(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await member_with(sandbox, 7109, 0, "en")
    chat = sandbox.member(7109, language_code="en")
    force(sandbox, P10)
    [home] = await chat.send("/wheel")
    text = home.text or ""
    assert "• 100 points (200 points during the campaign) — 25%" in text
    assert "Expected return: 55 points a play on average, for 50 points a play (110% back)." in text
    assert "🎉 Festival double is on (until" in text
    result = await spin(chat, "Spin for free")
    caption = result.text or ""
    assert caption.splitlines()[0] == "🎡 The pointer stopped on: 10 points"
    assert "🎉 You won 20 points" in caption and "(Festival double: points ×2)" in caption
    assert await available(sandbox, member) == 20


async def test_a_voucher_prize_with_its_qr_and_the_till(sandbox: Sandbox) -> None:
    await member_with(sandbox, 7110, 0)
    chat = sandbox.member(7110)
    force(sandbox, BAG)
    await chat.send("/wheel")
    replies = await chat.tap("免费转一次", expect=3)
    photos = [r for r in replies if r.kind == "photo"]
    assert len(photos) == 2
    caption = photos[0].text or ""
    assert (
        "🎟 获得「帆布袋兑换券」！券码 " in caption and "使用说明：到店领取帆布袋一个。" in caption
    )
    code = caption.split("券码 ")[1][:8]
    assert photos[1].text == f"奖品券 {code}：到店结账时出示此二维码。"
    [listing] = await chat.send("/prizes")
    assert f"• {code}  帆布袋兑换券 — 待使用" in (listing.text or "")
    [denied] = await chat.send(f"/fulfil_prize {code}")
    assert denied.text is not None and "fulfil_prize" not in denied.text
    admin = sandbox.admin()
    [done] = await admin.send(f"/fulfil_prize {code.lower()}")
    assert done.text == f"✅ 奖品券 {code}（帆布袋兑换券）已核销。"
    [again] = await admin.send(f"/fulfil_prize {code}")
    assert (again.text or "").startswith(f"⚠️ 奖品券 {code} 已于 ")
    [unknown] = await admin.send("/fulfil_prize ZZZZZZZZ")
    assert unknown.text == "⚠️ 没有奖品券 ZZZZZZZZ。"
    [usage] = await admin.send("/fulfil_prize")
    assert usage.text == "用法：/fulfil_prize <奖品券码>"
    [listing] = await chat.send("/prizes")
    assert f"• {code}  帆布袋兑换券 — 已使用" in (listing.text or "")


async def test_forged_spin_buttons_change_nothing(sandbox: Sandbox) -> None:
    owner = await member_with(sandbox, 7111, 500)
    snoop = await member_with(sandbox, 7112, 500)
    owner_chat, snoop_chat = sandbox.member(7111), sandbox.member(7112)
    [offer] = await owner_chat.send("/wheel")
    [home] = await snoop_chat.send("/start")
    for forged in (
        button_data(offer, "免费转一次"),  # someone else's spin
        "game:spin:999999",
        "game:spin:-1",
        "game:spin:abc",
        "game:spin",
        "game:spin:1:2",
        "game:odds:lottery",
        "game:jackpot:1",
        "game:spin:" + "9" * 40,
    ):
        await snoop_chat.tap_data(home.message_id, forged, expect=0)
        assert snoop_chat.last_callback_answer == "此按钮已失效，请重新操作。", forged
    assert await available(sandbox, owner) == 500
    assert await available(sandbox, snoop) == 500
    assert await game_operations(sandbox, snoop) == []
    # The owner's own button still works afterwards.
    force(sandbox, THANKS)
    await spin(owner_chat, "免费转一次")


async def test_the_menu_button_opens_the_wheel_in_english(sandbox: Sandbox) -> None:
    await member_with(sandbox, 7113, 0, "en")
    chat = sandbox.member(7113, language_code="en")
    [start] = await chat.send("/start")
    assert "🎡 Points wheel" in start.buttons and "🎫 Scratch card" in start.buttons
    await chat.tap("🎡 Points wheel")
    text = chat.last_text or ""
    assert text.startswith("🎡 Points wheel\n50 points a play, the first 1 each day free;")
    assert chat.buttons() == ["🎡 Spin for free"]


async def test_the_rules_disclose_the_odds(sandbox: Sandbox) -> None:
    chat = sandbox.member(7114)
    replies = await chat.send("/rules")
    text = joined(replies).text
    assert "【积分游戏（概率公示）】" in text
    assert "• 帆布袋兑换券 — 25%" in text
    assert "期望回报：平均每次 27.5 积分，每次花费 50 积分（返还率 55%）。" in text
    # Long rules come in several messages, each within Telegram's limit.
    assert all(len(reply.text or "") < 4096 for reply in replies)


@pytest.mark.parametrize("configure", [[lambda c: c.model_copy(update={"wheel": None})]])
async def test_without_a_wheel_section_the_games_are_closed(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat = sandbox.member(7115)
    for command in ("/wheel", "/scratch", "/odds"):
        [reply] = await chat.send(command)
        assert reply.text == "积分游戏暂未开放。"
    rules = joined(await chat.send("/rules"))
    assert "积分游戏" not in (rules.text or "")
