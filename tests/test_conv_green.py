"""/green through the sandbox in both languages, its chart, and the monthly green report under a
moved clock: sent once to members with eco spend who take promotions, to no one else."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from bot.programme.purchases import record_purchase
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotEvent, SandboxMessage
from storage.members import Member
from tests.conftest import NOW, Sandbox, assert_audit_ok

SHANGHAI = timedelta(hours=8)
# 09:00 in Shanghai on 1 December 2026, when the daily jobs run: November's report is due.
FIRST_OF_DECEMBER = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def shanghai(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC) - SHANGHAI  # type: ignore[misc]


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    yield
    await assert_audit_ok(sandbox)


async def joined(
    sandbox: Sandbox, user_id: int, lang: str = "zh-hans"
) -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, language_code=lang)
    await chat.send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    return chat, member


async def bought(
    sandbox: Sandbox,
    member: Member,
    amount: str,
    category: str,
    at: datetime,
    receipt: str,
    now: datetime | None = None,
) -> None:
    """A purchase booked at the till, the member not told (to keep their chat to the point)."""
    recorded = await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        category,
        receipt,
        purchased_at=at,
        actor="till:test",
        tell_member=False,
        now=now,
    )
    assert recorded.status == "recorded"


async def shopped(sandbox: Sandbox, member: Member) -> None:
    """100 yuan eco on 20 November, 25 yuan refill on 3 November, 40 yuan eco in March, and
    everyday goods that do not count."""
    await bought(sandbox, member, "100", "eco", shanghai(2026, 11, 20, 15, 0), f"a{member.id}")
    await bought(sandbox, member, "25", "refill", shanghai(2026, 11, 3, 10, 0), f"b{member.id}")
    await bought(sandbox, member, "40", "eco", shanghai(2026, 3, 10, 10, 0), f"c{member.id}")
    await bought(sandbox, member, "500", "general", shanghai(2026, 11, 21, 10, 0), f"d{member.id}")


# Points: eco earns 2 a yuan, refill 1.5 (25 → 37); impact 0.05 and 0.08 kg a yuan.
GREEN_ZH = """🌱 我的绿色贡献
绿色消费指在以下品类的消费：绿色环保商品、补充装与裸装商品。
本月（2026年11月）：绿色消费 125.00 元 · 绿色积分 237 · 约减排 7.0 千克二氧化碳当量
今年（2026 年）：绿色消费 165.00 元 · 绿色积分 317 · 约减排 9.0 千克二氧化碳当量
累计：绿色消费 165.00 元 · 绿色积分 317 · 约减排 9.0 千克二氧化碳当量
按品类（累计）：
• 绿色环保商品：140.00 元 · 280 积分 · 约 7.0 千克
• 补充装与裸装商品：25.00 元 · 37 积分 · 约 2.0 千克
绿色积分指上述消费本身所得的积分（含活动加赠），不含任务、分享、调整等其他积分。
减排量为估算值，按每消费 1 元估计：绿色环保商品约 0.05 千克二氧化碳当量、\
补充装与裸装商品约 0.08 千克二氧化碳当量。"""

GREEN_EN = """🌱 My green contribution
Eco spend is what you spend on: Eco-friendly products, Refills and package-free goods.
This month (November 2026): eco spend ¥125.00 · 237 green points · about 7.0 kg CO₂e avoided
This year (2026): eco spend ¥165.00 · 317 green points · about 9.0 kg CO₂e avoided
Overall: eco spend ¥165.00 · 317 green points · about 9.0 kg CO₂e avoided
By category (overall):
• Eco-friendly products: ¥140.00 · 280 points · about 7.0 kg
• Refills and package-free goods: ¥25.00 · 37 points · about 2.0 kg
Green points are the points those purchases earned, campaign bonuses included; points from \
tasks, sharing, adjustments and the like are not counted.
The impact is an estimate per yuan spent: Eco-friendly products about 0.05 kg CO₂e, Refills \
and package-free goods about 0.08 kg CO₂e."""


@pytest.mark.parametrize(
    ("lang", "expected", "button"),
    [
        ("zh-hans", GREEN_ZH, "📊 查看图表"),
        ("en", GREEN_EN, "📊 See chart"),
    ],
)
async def test_green_shows_month_year_and_overall(
    sandbox: Sandbox, lang: str, expected: str, button: str
) -> None:
    chat, member = await joined(sandbox, 8101, lang)
    await shopped(sandbox, member)
    [reply] = await chat.send("/green")
    assert reply.text == expected
    assert reply.buttons == [button]


def photo_of(outputs: list[BotEvent]) -> BotEvent:
    """The one picture among a tap's outputs (the other is the tap's answer)."""
    [photo] = [e for e in outputs if e.kind == "photo"]
    return photo


def png_size(event: BotEvent) -> tuple[int, int]:
    assert event.kind == "photo" and event.photo is not None
    assert event.photo.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(event.photo)) as image:
        image.verify()
    with Image.open(io.BytesIO(event.photo)) as image:
        return image.size


async def test_the_chart_shows_six_months_with_their_figures_as_text(sandbox: Sandbox) -> None:
    chat, member = await joined(sandbox, 8102)
    await shopped(sandbox, member)
    [reply] = await chat.send("/green")
    photo = photo_of(await chat.tap("📊 查看图表", message=reply))
    assert png_size(photo) == (640, 400)
    assert photo.caption == (
        "📊 近 6 个月的绿色消费：\n"
        "2026年6月：0.00 元 · 0 积分 · 约 0.0 千克\n"
        "2026年7月：0.00 元 · 0 积分 · 约 0.0 千克\n"
        "2026年8月：0.00 元 · 0 积分 · 约 0.0 千克\n"
        "2026年9月：0.00 元 · 0 积分 · 约 0.0 千克\n"
        "2026年10月：0.00 元 · 0 积分 · 约 0.0 千克\n"
        "2026年11月：125.00 元 · 237 积分 · 约 7.0 千克"
    )


async def test_a_member_with_no_eco_purchase_is_told_what_counts(sandbox: Sandbox) -> None:
    chat, member = await joined(sandbox, 8103)
    await bought(sandbox, member, "80", "general", shanghai(2026, 11, 20, 15, 0), "g1")
    [welcome] = await chat.send("/start")
    [reply] = [e for e in await chat.tap("🌱 绿色贡献", message=welcome) if e.kind == "message"]
    assert reply.text == (
        "🌱 我的绿色贡献\n"
        "您还没有绿色消费记录。购买绿色环保商品、补充装与裸装商品即可累计绿色贡献。\n"
        "减排量为估算值，按每消费 1 元估计：绿色环保商品约 0.05 千克二氧化碳当量、"
        "补充装与裸装商品约 0.08 千克二氧化碳当量。"
    )
    assert reply.buttons == []


@pytest.mark.parametrize("data", ["green:chart:2026-12", "green:chart:1999-12", "green:chart:x"])
async def test_a_chart_of_a_future_or_forged_month_is_refused(sandbox: Sandbox, data: str) -> None:
    chat, member = await joined(sandbox, 8104)
    await shopped(sandbox, member)
    [reply] = await chat.send("/green")
    outputs = await chat.tap_data(reply.message_id, data, expect=0)
    assert outputs == [] or all(e.kind == "callback_answer" for e in outputs)
    assert chat.last_callback_answer == "此按钮已失效，请重新操作。"


def reports(sandbox: Sandbox, user_id: int) -> list[str]:
    """The green reports a member received (the daily jobs a catch-up runs send others)."""
    return [
        m.text or ""
        for m in sandbox.emu.messages(user_id)
        if m.from_bot
        and (m.text or "").startswith("🌱")
        and "\n" in (m.text or "")
        and ("月报" in (m.text or "") or "green report" in (m.text or ""))
    ]


def sent(chat: ChatClient, text: str) -> SandboxMessage:
    """The one message with this text the bot sent in this chat."""
    [message] = [m for m in chat.messages if m.from_bot and m.text == text]
    return message


REPORT_ZH = (
    "🌱 2026年11月绿色贡献月报\n"
    "上月您的绿色消费 125.00 元，获得绿色积分 237，约减排 7.0 千克二氧化碳当量（估算）。"
    "感谢您为环保出力！\n"
    "发送 /green 查看全年与累计贡献；不想收到此类推广消息，可在 /settings 中关闭。"
)
REPORT_EN = (
    "🌱 Your green report for November 2026\n"
    "Last month you spent ¥100.00 on eco purchases, earned 200 green points and avoided about"
    " 5.0 kg CO₂e (an estimate). Thank you for helping the planet!\n"
    "Send /green for this year and overall; to stop promotional messages like this one, turn"
    " them off in /settings."
)


async def test_the_monthly_report_goes_once_to_members_with_eco_spend_who_take_promotions(
    sandbox: Sandbox,
) -> None:
    services = sandbox.services
    ann_chat, ann = await joined(sandbox, 8111)
    await shopped(sandbox, ann)
    ben_chat, ben = await joined(sandbox, 8112, "en")
    await bought(
        sandbox, ben, "100", "eco", shanghai(2026, 11, 30, 23, 50), "ben1", FIRST_OF_DECEMBER
    )
    # Promotions off: no report, eco spend or not.
    _, cat = await joined(sandbox, 8113)
    await shopped(sandbox, cat)
    await services.pushes.set_marketing(8113, False)
    # Only everyday goods in November, and eco goods only in October: nothing to report.
    _, dan = await joined(sandbox, 8114)
    await bought(sandbox, dan, "300", "general", shanghai(2026, 11, 10, 12, 0), "dan1")
    await bought(sandbox, dan, "300", "eco", shanghai(2026, 10, 31, 23, 50), "dan2")

    # The last day of November: not yet.
    services.clock = lambda: shanghai(2026, 11, 30, 23, 59)
    assert await services.scheduler.green_report(services.clock()) is None
    services.clock = lambda: FIRST_OF_DECEMBER
    run = await services.scheduler.green_report(FIRST_OF_DECEMBER)
    assert run is not None and run.reports == 2
    # Again the same day, a later day, a restart's catch-up: nothing more.
    assert await services.scheduler.green_report(FIRST_OF_DECEMBER) is None
    assert await services.scheduler.green_report(FIRST_OF_DECEMBER + timedelta(days=2)) is None
    assert "green_report 2026-12-01" not in await services.scheduler.catch_up(FIRST_OF_DECEMBER)
    await services.sender.drain()

    assert reports(sandbox, 8111) == [REPORT_ZH]
    assert reports(sandbox, 8112) == [REPORT_EN]
    assert reports(sandbox, 8113) == []
    assert reports(sandbox, 8114) == []

    # The report's button draws November and the five months before it.
    report = sent(ann_chat, REPORT_ZH)
    assert ann_chat.buttons(report) == ["📊 查看图表"]
    photo = photo_of(await ann_chat.tap("📊 查看图表", message=report))
    assert png_size(photo) == (640, 400)
    caption = (photo.caption or "").splitlines()
    assert caption[1].startswith("2026年6月：")
    assert caption[-1] == "2026年11月：125.00 元 · 237 积分 · 约 7.0 千克"
    en_photo = photo_of(await ben_chat.tap("📊 See chart", message=sent(ben_chat, REPORT_EN)))
    assert (en_photo.caption or "").splitlines()[-1] == (
        "November 2026: ¥100.00 · 200 points · about 5.0 kg"
    )


async def test_a_report_missed_on_the_first_is_caught_up_at_the_next_start(
    sandbox: Sandbox,
) -> None:
    services = sandbox.services
    _, eve = await joined(sandbox, 8121)
    await bought(sandbox, eve, "100", "eco", shanghai(2026, 11, 20, 15, 0), "eve1")
    # Down on 1 and 2 December; back on the 3rd at 08:00.
    back = shanghai(2026, 12, 3, 8, 0)
    services.clock = lambda: back
    assert "green_report 2026-12-03" in await services.scheduler.catch_up(back)
    assert await services.scheduler.catch_up(back) == []
    await services.sender.drain()
    [report] = reports(sandbox, 8121)
    assert report.startswith("🌱 2026年11月绿色贡献月报\n上月您的绿色消费 100.00 元")


async def test_the_report_of_a_quiet_hour_waits_for_the_morning(sandbox: Sandbox) -> None:
    services = sandbox.services
    _, fay = await joined(sandbox, 8131)
    await bought(sandbox, fay, "100", "eco", shanghai(2026, 11, 20, 15, 0), "fay1")
    # A start at 06:00 on the 2nd catches the report up, inside quiet hours.
    early = shanghai(2026, 12, 2, 6, 0)
    services.clock = lambda: early
    await services.scheduler.catch_up(early)
    await services.sender.drain()
    assert reports(sandbox, 8131) == []
    services.clock = lambda: shanghai(2026, 12, 2, 8, 30)
    await services.sender.drain()
    assert len(reports(sandbox, 8131)) == 1


def test_now_is_the_suite_instant() -> None:
    """The figures above assume the conversation tests' instant: 25 November 2026."""
    assert shanghai(2026, 11, 25, 12, 0) == NOW
