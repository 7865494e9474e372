"""Check-in events and referrals through the sandbox: staff create an event and follow it; a
member checks in by code and by the QR link, once, only inside the window and within the
capacity, and the check-in task pays once; a friend who joins by a member's link and makes a
first purchase earns the member the referral reward once, within the monthly cap, and links
opened by the member themselves or by existing members earn nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.config import Config
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotEvent
from storage.members import Member
from tests.conftest import NOW, Sandbox, assert_audit_ok

ANN, BOB, CAT, DAN, EVE = 7101, 7102, 7103, 7104, 7105
CHECKIN_DONE = "🎯 任务完成：参加一次门店活动！奖励 30 积分已到账。"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger still adds up."""
    sandbox.services.clock = lambda: NOW
    yield
    await assert_audit_ok(sandbox)


async def joined(
    sandbox: Sandbox, user_id: int, name: str, lang: str = "zh-hans", payload: str = ""
) -> ChatClient:
    """A user who sent /start (with a deep-link payload when given)."""
    chat = sandbox.member(user_id, name, lang)
    await chat.send(f"/start {payload}".strip(), expect=2 if payload else 1)
    return chat


async def the_member(sandbox: Sandbox, user_id: int) -> Member:
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return found


async def points(sandbox: Sandbox, user_id: int) -> int:
    member = await the_member(sandbox, user_id)
    return (await sandbox.services.ledger.balance(member.id)).available


async def told(chat: ChatClient, text: str) -> None:
    """Wait for the outbox to deliver exactly this message to the member."""

    def arrived() -> bool:
        return any(m.text == text for m in chat.emu.messages(chat.user_id))

    await chat.emu.wait_for(chat.user_id, arrived, 5)


def texts(chat: ChatClient) -> list[str]:
    """Everything the bot said to the member so far."""
    return [m.text or "" for m in chat.emu.messages(chat.user_id)]


async def first(chat: ChatClient, text: str) -> BotEvent:
    """The bot's direct reply to a message (a task's notice may follow it from the outbox)."""
    return (await chat.send(text))[0]


async def new_event(sandbox: Sandbox, args: str) -> tuple[str, BotEvent]:
    """Staff create an event; its code and the reply (a QR photo with a caption)."""
    [reply] = await sandbox.admin().send(f"/event_new {args}")
    assert reply.photo is not None and reply.caption is not None
    code = reply.caption.split("活动码：", 1)[1].split()[0]
    return code, reply


# --- check-in events


async def test_staff_create_an_event_and_get_its_code_link_and_qr(sandbox: Sandbox) -> None:
    code, reply = await new_event(sandbox, "2026-11-25 10:00-18:00 30 亲子育儿讲座")
    assert reply.photo is not None and reply.photo.startswith(b"\x89PNG")
    username = sandbox.app.bot.username
    assert reply.caption == (
        "✅ 签到活动已创建：亲子育儿讲座\n"
        "签到时间：2026-11-25 10:00–18:00\n"
        "人数上限：30 人\n"
        f"活动码：{code}\n"
        f"签到链接：https://t.me/{username}?start=ev_{code}\n\n"
        f"请在现场展示此二维码；会员扫码，或发送 /checkin {code} 即可签到。"
    )


async def test_event_new_without_arguments_shows_an_example(sandbox: Sandbox) -> None:
    [reply] = await sandbox.admin().send("/event_new")
    assert reply.text is not None
    assert "例如：/event_new 2026-12-05 14:00-16:00 30 亲子育儿讲座" in reply.text
    [reply] = await sandbox.admin().send("/event_new 2026-11-25 18:00-10:00 讲座")
    assert reply.text == "结束时间应晚于开始时间（活动须在同一天内开始和结束）。"
    [reply] = await sandbox.admin().send("/event_new 2026-11-24 10:00-11:00 讲座")
    assert reply.text == "这个时间段已经过去了，请核对日期和时间。"


async def test_a_member_cannot_create_an_event_or_see_its_stats(sandbox: Sandbox) -> None:
    code, _reply = await new_event(sandbox, "2026-11-25 10:00-18:00 讲座")
    ann = await joined(sandbox, ANN, "安安")
    [refused] = await ann.send("/event_new 2026-11-25 10:00-18:00 我的活动")
    assert refused.text == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
    [refused] = await ann.send(f"/event_stats {code}")
    assert refused.text == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"


async def test_a_member_checks_in_by_code_once_and_earns_the_task(sandbox: Sandbox) -> None:
    code, _reply = await new_event(sandbox, "2026-11-25 10:00-18:00 宠物体检日")
    ann = await joined(sandbox, ANN, "安安")
    reply = await first(ann, f"/checkin {code.lower()}")
    assert reply.text == "✅ 签到成功：宠物体检日。感谢您参加！"
    await told(ann, CHECKIN_DONE)
    assert await points(sandbox, ANN) == 30
    [again] = await ann.send(f"/checkin {code}")
    assert again.text == "您已在「宠物体检日」签到过了，每场活动只需签到一次。"
    assert await points(sandbox, ANN) == 30
    assert texts(ann).count(CHECKIN_DONE) == 1


async def test_a_member_checks_in_by_opening_the_link(sandbox: Sandbox) -> None:
    code, _reply = await new_event(sandbox, "2026-11-25 10:00-18:00 宠物体检日")
    # A newcomer scanning the QR code on site is registered and checked in at once.
    bob = await joined(sandbox, BOB, "宝宝", payload=f"ev_{code}")
    # The reply, then the outbox's completion message (and the badge it earned, after it).
    await told(bob, CHECKIN_DONE)
    assert "✅ 签到成功：宠物体检日。感谢您参加！" in texts(bob)
    # Scanning it again changes nothing.
    [_welcome, again] = await bob.send(f"/start ev_{code}", expect=2)
    assert again.text == "您已在「宠物体检日」签到过了，每场活动只需签到一次。"
    assert await points(sandbox, BOB) == 30


async def test_a_second_event_in_the_month_checks_in_without_paying_again(
    sandbox: Sandbox,
) -> None:
    first, _r = await new_event(sandbox, "2026-11-25 10:00-18:00 育儿讲座")
    second, _r = await new_event(sandbox, "2026-11-25 10:00-18:00 宠物体检")
    ann = await joined(sandbox, ANN, "安安")
    await ann.send(f"/checkin {first}")
    await told(ann, CHECKIN_DONE)
    [reply] = await ann.send(f"/checkin {second}")
    assert reply.text == "✅ 签到成功：宠物体检。感谢您参加！"
    assert await points(sandbox, ANN) == 30  # the task is monthly: once in November
    # In December it pays again.
    sandbox.services.clock = lambda: NOW + timedelta(days=7)
    third, _r = await new_event(sandbox, "2026-12-02 10:00-18:00 环保手工课")
    await ann.send(f"/checkin {third}")
    await told(ann, CHECKIN_DONE)
    assert texts(ann).count(CHECKIN_DONE) == 2
    assert await points(sandbox, ANN) == 60


async def test_check_in_before_the_window_says_when_it_opens_and_after_it_is_closed(
    sandbox: Sandbox,
) -> None:
    code, _reply = await new_event(sandbox, "2026-11-26 14:00-16:00 亲子育儿讲座")
    ann = await joined(sandbox, ANN, "安安")
    [early] = await ann.send(f"/checkin {code}")
    assert (
        early.text == "「亲子育儿讲座」的签到尚未开始，将于 2026-11-26 14:00 开放，请届时再来签到。"
    )
    # 16:00 local is the end: closed from then on.
    sandbox.services.clock = lambda: NOW + timedelta(days=1, hours=4)
    [late] = await ann.send(f"/checkin {code}")
    assert late.text == "「亲子育儿讲座」的签到已经结束。"
    assert await points(sandbox, ANN) == 0
    # Inside the window it works.
    sandbox.services.clock = lambda: NOW + timedelta(days=1, hours=3)
    reply = await first(ann, f"/checkin {code}")
    assert reply.text == "✅ 签到成功：亲子育儿讲座。感谢您参加！"


async def test_an_event_refuses_check_ins_over_its_capacity(sandbox: Sandbox) -> None:
    code, _reply = await new_event(sandbox, "2026-11-25 10:00-18:00 2 小班手作课")
    ann, bob = await joined(sandbox, ANN, "安安"), await joined(sandbox, BOB, "宝宝")
    cat = await joined(sandbox, CAT, "Cat", "en")
    assert (await first(ann, f"/checkin {code}")).text == "✅ 签到成功：小班手作课。感谢您参加！"
    assert (await first(bob, f"/checkin {code}")).text == "✅ 签到成功：小班手作课。感谢您参加！"
    [full] = await cat.send(f"/checkin {code}")
    assert full.text == "Sorry, “小班手作课” is full: no more check-ins."
    assert await points(sandbox, CAT) == 0


async def test_unknown_codes_and_a_bare_checkin_get_clear_answers(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    [reply] = await ann.send("/checkin")
    assert reply.text == (
        "请发送活动现场公布的活动码，例如：/checkin K7P2QX\n也可以直接用手机扫描现场的二维码签到。"
    )
    [reply] = await ann.send("/checkin ZZZZZZ")
    assert reply.text == "没有找到活动码「ZZZZZZ」的活动，请核对后重新发送。"
    cat = await joined(sandbox, CAT, "Cat", "en")
    [reply] = await cat.send("/checkin nope")
    assert reply.text == "No event has the code “nope”: please check it and send it again."


async def test_english_check_in_and_staff_stats(sandbox: Sandbox) -> None:
    code, _reply = await new_event(sandbox, "2026-11-25 10:00-18:00 5 Pet check-up")
    cat = await joined(sandbox, CAT, "Cat", "en")
    reply = await first(cat, f"/checkin {code}")
    assert reply.text == "✅ Checked in: Pet check-up. Thank you for coming!"
    await told(cat, "🎯 Task done: Join an event in store! 30 points are in your account.")
    ann = await joined(sandbox, ANN, "安安")
    # Ann completed the monthly task at another event first: this check-in completes nothing.
    other, _r = await new_event(sandbox, "2026-11-25 10:00-18:00 讲座")
    await ann.send(f"/checkin {other}")
    await ann.send(f"/checkin {code}")
    [stats] = await sandbox.admin().send(f"/event_stats {code}")
    assert stats.text == (
        f"📍 Pet check-up（活动码 {code}）\n"
        "签到时间：2026-11-25 10:00–18:00\n"
        "人数上限：5 人\n"
        "已签到：2 人\n"
        "　2026-11-25：2 人\n"
        "通过本活动完成签到任务：1 人"
    )
    [unknown] = await sandbox.admin().send("/event_stats ZZZZZZ")
    assert unknown.text == "没有找到活动码「ZZZZZZ」的活动，请核对后重新发送。"


# --- referrals


async def invite_payload(chat: ChatClient) -> str:
    """The member's /invite link's /start payload."""
    [reply] = await chat.send("/invite")
    text = reply.text or ""
    link = next(w for w in text.split() if w.startswith("https://t.me/"))
    return link.split("?start=", 1)[1]


def credited(friend: str, count: int, cap: int = 5) -> str:
    return (
        f"🤝 您邀请的好友 {friend} 完成了首次消费，您获得 50 积分！"
        f"（本月已奖励 {count}/{cap} 位好友）"
    )


def credited_en(friend: str) -> str:
    return (
        f"🤝 Your friend {friend} made a first purchase: 50 points are yours!"
        " (friends rewarded this month: 1 of 1)"
    )


async def buys(sandbox: Sandbox, user_id: int, receipt: str, amount: str = "20") -> str | None:
    """Staff record a purchase for the member at the till; the reply."""
    member = await the_member(sandbox, user_id)
    [reply] = await sandbox.admin().send(
        f"/purchase {member.member_code} {amount} general {receipt}"
    )
    return reply.text


async def test_invite_shows_the_personal_link_and_the_terms(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    member = await the_member(sandbox, ANN)
    [reply] = await ann.send("/invite")
    username = sandbox.app.bot.username
    assert reply.text == (
        "🤝 邀请好友\n您的专属邀请链接：\n"
        f"https://t.me/{username}?start=ref_{member.member_code}\n\n"
        "好友通过此链接首次加入并完成首次消费后，您可获得 50 积分（每月最多奖励 5 位好友）。\n"
        "已加入的好友：0 位，其中已消费：0 位；本月已获奖励：0 位。"
    )


async def test_a_friend_who_joins_and_buys_earns_the_referrer_once(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    payload = await invite_payload(ann)
    bob = await joined(sandbox, BOB, "宝宝", payload=payload)
    assert bob.last_text == "您是应 安安 的邀请加入的，欢迎！"
    assert await points(sandbox, ANN) == 0  # joining alone earns nothing
    await buys(sandbox, BOB, "R-1")
    await told(ann, credited("宝宝", 1))
    assert await points(sandbox, ANN) == 50
    # The same receipt again (a replayed purchase) and a second purchase credit nothing more.
    replayed = await buys(sandbox, BOB, "R-1")
    assert replayed is not None and "没有重复记录" in replayed
    await buys(sandbox, BOB, "R-2")
    assert await points(sandbox, ANN) == 50
    assert sum(text.startswith("🤝 您邀请的好友") for text in texts(ann)) == 1
    [reply] = await ann.send("/invite")
    assert reply.text is not None
    assert reply.text.endswith("已加入的好友：1 位，其中已消费：1 位；本月已获奖励：1 位。")
    # /tasks counts this month's rewarded friends against the monthly cap.
    tasks_reply = "\n".join(r.text or "" for r in await ann.send("/tasks"))
    invite_block = tasks_reply.split("邀请好友", 1)[1]
    assert "1/5 位好友 · 2026-11-30 截止" in invite_block


async def test_a_friend_who_never_buys_earns_nothing(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    payload = await invite_payload(ann)
    await joined(sandbox, BOB, "宝宝", payload=payload)
    sandbox.services.clock = lambda: NOW + timedelta(days=40)
    assert await points(sandbox, ANN) == 0
    [reply] = await ann.send("/invite")
    assert reply.text is not None
    assert reply.text.endswith("已加入的好友：1 位，其中已消费：0 位；本月已获奖励：0 位。")


async def test_opening_ones_own_link_earns_nothing(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    payload = await invite_payload(ann)
    [_welcome, note] = await ann.send(f"/start {payload}", expect=2)
    assert note.text == "这是您自己的邀请链接，请把它分享给还不是会员的好友吧。"
    await buys(sandbox, ANN, "R-1")
    assert await points(sandbox, ANN) == 20  # the purchase's own points only


async def test_an_existing_member_opening_a_link_is_no_referral(sandbox: Sandbox) -> None:
    ann = await joined(sandbox, ANN, "安安")
    await joined(sandbox, BOB, "宝宝")
    payload = await invite_payload(ann)
    [_welcome, note] = await sandbox.member(BOB, "宝宝").send(f"/start {payload}", expect=2)
    assert note.text == "您已经是会员了，邀请链接只对首次加入的新朋友有效。"
    await buys(sandbox, BOB, "R-1")
    assert await points(sandbox, ANN) == 0


def one_friend_a_month(config: Config) -> Config:
    """The referral task rewards at most one friend a month."""
    tasks = [
        t.model_copy(update={"max_per_month": 1}) if t.kind == "referral" else t
        for t in config.tasks
    ]
    return config.model_copy(update={"tasks": tasks})


@pytest.mark.parametrize("configure", [[one_friend_a_month]])
async def test_the_monthly_cap_counts_friends_per_calendar_month(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    ann = await joined(sandbox, ANN, "Ann", "en")
    payload = await invite_payload(ann)
    for user_id, name in ((BOB, "Bob"), (CAT, "Cat"), (DAN, "Dan")):
        await joined(sandbox, user_id, name, "en", payload=payload)
    await buys(sandbox, BOB, "R-1")
    await told(ann, credited_en("Bob"))
    await buys(sandbox, CAT, "R-2")  # over November's cap: Cat's first purchase is spent
    assert await points(sandbox, ANN) == 50
    # December: a new month, Dan's first purchase counts; Cat's never will.
    sandbox.services.clock = lambda: NOW + timedelta(days=7)
    await buys(sandbox, CAT, "R-3")
    await buys(sandbox, DAN, "R-4")
    await told(ann, credited_en("Dan"))
    assert await points(sandbox, ANN) == 100
