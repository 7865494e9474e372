"""Shares and reviews through the sandbox: a photo with a caption is a green share, /review
rates a category bought lately, and staff approve (paying once) or decline (with a reason the
member hears) from /tasks_queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from bot.config import Config
from bot.programme.purchases import record_purchase
from bot.sandbox.client import ChatClient
from storage.members import Member
from tests.conftest import ADMIN_ID, NOW, Sandbox, assert_audit_ok

DENIED = "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
EXPIRED = "此按钮已失效，请重新操作。"
CAPTION = "今天买了补充装洗衣液，少用一个塑料瓶 https://example.com/refill"
REVIEW = "这款补充装洗衣液很好用，包装也更环保，会继续回购。"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, every reward paid belongs to a completion (the audit agrees)."""
    yield
    await assert_audit_ok(sandbox)


async def member(
    sandbox: Sandbox, user_id: int, lang: str = "zh-hans"
) -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, language_code=lang)
    await chat.send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return chat, found


async def available(sandbox: Sandbox, who: Member) -> int:
    return (await sandbox.services.ledger.balance(who.id, NOW)).available


async def notice_to(chat: ChatClient, start: int) -> str:
    """The next message the member receives from the outbox (sent in the background)."""
    events = await chat.emu.wait_for_events(chat.user_id, start, 1, timeout=5)
    return events[0].text or ""


def last_photo_id(chat: ChatClient) -> str:
    """The file_id of the largest size of the member's latest photo."""
    mine = [m for m in chat.messages if not m.from_bot and m.media.get("photo")]
    return str(mine[-1].media["photo"][-1]["file_id"])


async def bought(sandbox: Sandbox, who: Member, category: str, days_ago: int) -> None:
    """A purchase at the till in `category`, `days_ago` days before NOW."""
    await record_purchase(
        sandbox.services,
        who.member_code,
        "50",
        category,
        f"R-{who.id}-{category}-{days_ago}",
        purchased_at=NOW - timedelta(days=days_ago),
        actor="till",
        tell_member=False,
    )


async def test_a_share_approved_pays_once_and_tells_the_member(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7301)
    [how] = await chat.send("/share")
    assert (how.text or "").startswith("📸 分享绿色消费\n")
    assert "审核通过后可得 20 积分" in (how.text or "")
    [received] = await chat.send_photo(CAPTION)
    assert received.text == (
        "📨 已收到您的分享（编号 1）。工作人员审核通过后，您将获得 20 积分，结果会通知您。"
    )
    assert await available(sandbox, who) == 0  # nothing is paid for sending
    admin = sandbox.admin()
    title, item = await admin.send("/tasks_queue", expect=2)
    assert title.text == "📋 待审核的分享和评价共 1 条，以下是最早的 1 条："
    assert item.kind == "photo"  # the member's photo, shown again by its file_id
    assert item.photo is not None
    lines = (item.text or "").splitlines()
    assert lines[0].startswith("📸 分享 #1 ·「分享绿色消费」· 小明（会员号 ")
    assert lines[1] == CAPTION
    assert item.buttons == ["✅ 通过", "❌ 不通过"]
    seen = chat.emu.event_count(7301)
    await admin.tap("✅ 通过", message=item)
    assert admin.last_callback_answer == "已通过，已通知会员。"
    assert await notice_to(chat, seen) == "🎯 任务完成：分享绿色消费！奖励 20 积分已到账。"
    assert await available(sandbox, who) == 20
    decided = admin.emu.message(ADMIN_ID, item.message_id)
    assert decided is not None and decided.buttons == []
    assert (
        (decided.text or "")
        .splitlines()[-1]
        .startswith("✅ 已通过 · telegram:100000001 · 2026-11-25 12:00")
    )
    # A double tap (the old button, redelivered) decides nothing more and pays nothing more.
    await admin.tap_data(item.message_id, "sq:a:1", expect=0)
    assert admin.last_callback_answer == "这条已经处理过了。"
    assert await available(sandbox, who) == 20
    [empty] = await admin.send("/tasks_queue")
    assert empty.text == "没有待审核的分享或评价。"


async def test_a_declined_share_tells_the_member_why(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7302)
    await chat.send_photo("我的环保购物袋")
    admin = sandbox.admin()
    _title, item = await admin.send("/tasks_queue", expect=2)
    await admin.tap("❌ 不通过", message=item, expect=1)
    assert admin.buttons(item) == [
        "与绿色消费或品牌活动无关",
        "照片或内容看不清",
        "不是本人的消费或参与",
        "内容过于简单",
        "↩️ 返回",
    ]
    await admin.tap("↩️ 返回", message=item)
    assert admin.buttons(item) == ["✅ 通过", "❌ 不通过"]
    await admin.tap("❌ 不通过", message=item)
    seen = chat.emu.event_count(7302)
    await admin.tap("照片或内容看不清", message=item)
    assert admin.last_callback_answer == "已标记为不通过，已把原因告诉会员。"
    assert await notice_to(chat, seen) == (
        "很抱歉，您为「分享绿色消费」提交的内容未通过审核：照片或内容看不清。"
        "欢迎换一张清晰的照片再试！"
    )
    decided = admin.emu.message(ADMIN_ID, item.message_id)
    assert decided is not None and decided.buttons == []
    assert (
        (decided.text or "")
        .splitlines()[-1]
        .startswith("❌ 未通过（照片或内容看不清）· telegram:100000001 ·")
    )
    assert await available(sandbox, who) == 0
    # A declined share no longer counts against today's cap: another photo may be sent.
    [again] = await chat.send_photo("换一张清楚的照片")
    assert (again.text or "").startswith("📨 已收到您的分享（编号 2）")


async def test_the_same_photo_never_counts_twice_for_anyone(sandbox: Sandbox) -> None:
    first, _ = await member(sandbox, 7303)
    second, other = await member(sandbox, 7304)
    await first.send_photo(CAPTION)
    photo = last_photo_id(first)
    # Forwarded to the bot by someone else: Telegram keeps the photo's file_unique_id.
    [refused] = await second.resend_photo(photo, "我也买了补充装")
    assert refused.text == "这张照片已经分享过了，同一张照片只能计一次。换一张新照片试试吧。"
    [again] = await first.resend_photo(photo, CAPTION)
    assert again.text == refused.text
    admin = sandbox.admin()
    title, _item = await admin.send("/tasks_queue", expect=2)
    assert "共 1 条" in (title.text or "")
    assert await available(sandbox, other) == 0


async def test_over_the_daily_cap_nothing_is_filed(sandbox: Sandbox) -> None:
    chat, _ = await member(sandbox, 7305)
    await chat.send_photo(CAPTION)
    [capped] = await chat.send_photo("第二张照片")
    assert capped.text == (
        "「分享绿色消费」每天最多计 1 次，您今天已提交过了（含审核中的），明天再来吧。"
    )
    # The next local day the cap is fresh.
    sandbox.services.clock = lambda: NOW + timedelta(days=1)
    [next_day] = await chat.send_photo("第二天的照片")
    assert (next_day.text or "").startswith("📨 已收到您的分享（编号 2）")


async def test_a_photo_without_a_caption_is_asked_for_one(sandbox: Sandbox) -> None:
    chat, _ = await member(sandbox, 7306)
    [asked] = await chat.send_photo(None)
    assert asked.text == (
        "请在照片说明里写几句话或附上链接（比如买了什么、参加了什么活动），再发送一次照片。"
    )
    # The same photo with a caption is welcome: nothing was filed the first time.
    [received] = await chat.resend_photo(last_photo_id(chat), CAPTION)
    assert (received.text or "").startswith("📨 已收到您的分享（编号 1）")


async def test_stickers_still_get_the_text_only_answer(sandbox: Sandbox) -> None:
    chat, _ = await member(sandbox, 7307)
    [answer] = await chat.send_sticker()
    assert answer.text == "我只能读取文字消息。发送 /help 查看可用命令。"


def _auto_approve(config: Config) -> Config:
    tasks = [
        task.model_copy(update={"auto_approve": True}) if task.kind == "share" else task
        for task in config.tasks
    ]
    return config.model_copy(update={"tasks": tasks})


@pytest.mark.parametrize("configure", [[_auto_approve]])
async def test_auto_approve_credits_at_once_within_the_cap(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    chat, who = await member(sandbox, 7308)
    [how] = await chat.send("/share")
    assert "即可获得 20 积分" in (how.text or "")
    seen = chat.emu.event_count(7308)
    await chat.send_photo(CAPTION)
    # The reply, and the completion and badge messages from the outbox (in either order).
    events = await chat.emu.wait_for_events(7308, seen, 3, timeout=5)
    assert sorted(e.text or "" for e in events) == [
        "✅ 已收到您的分享，已计入「分享绿色消费」（1/1）。",
        "🎯 任务完成：分享绿色消费！奖励 20 积分已到账。",
        "🏅 恭喜获得勋章：📸 绿色分享家！发送 /badges 查看你的勋章墙。",
    ]
    assert await available(sandbox, who) == 20
    [capped] = await chat.send_photo("再来一张")
    assert "每天最多计 1 次" in (capped.text or "")
    assert await available(sandbox, who) == 20
    [empty] = await sandbox.admin().send("/tasks_queue")
    assert empty.text == "没有待审核的分享或评价。"


async def test_a_review_of_a_category_bought_lately(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7309)
    await bought(sandbox, who, "refill", days_ago=10)
    await bought(sandbox, who, "general", days_ago=2)  # not a category the task counts
    [choose] = await chat.send("/review")
    assert (choose.text or "").startswith("📝 写一条商品评价\n")
    assert choose.buttons == ["补充装与裸装商品"]
    await chat.tap("补充装与裸装商品", expect=0)
    assert chat.last_text == "您给「补充装与裸装商品」打几颗星？"
    assert chat.buttons()[0] == "★★★★★"
    await chat.tap("★★★★☆", expect=0)
    assert chat.last_text == (
        "「补充装与裸装商品」★★★★☆\n请输入您的评价（至少 15 字）。想配图的话，"
        "可以发送一张照片，把评价写在照片说明里。发送 /cancel 取消。"
    )
    [short] = await chat.send("挺好的")
    assert short.text == "评价至少需要 15 字，您写了 3 字。请再多写几句后重新发送。"
    [received] = await chat.send(REVIEW)
    assert received.text == (
        "📨 已收到您的评价（编号 1）。工作人员审核通过后，您将获得 10 积分，结果会通知您。"
    )
    admin = sandbox.admin()
    _title, item = await admin.send("/tasks_queue", expect=2)
    assert item.kind == "message"  # no photo: the review as text
    lines = (item.text or "").splitlines()
    assert lines[0].startswith("📝 评价 #1 ·「写一条商品评价」· 小明")
    assert lines[1:] == ["补充装与裸装商品 ★★★★☆", REVIEW]
    before = await available(sandbox, who)
    seen = chat.emu.event_count(7309)
    await admin.tap("✅ 通过", message=item)
    assert await notice_to(chat, seen) == "🎯 任务完成：写一条商品评价！奖励 10 积分已到账。"
    # The task names a badge: its notice follows (awaited, or it could land among the replies
    # to the next command).
    assert await notice_to(chat, seen + 1) == (
        "🏅 恭喜获得勋章：✍️ 评价达人！发送 /badges 查看你的勋章墙。"
    )
    assert await available(sandbox, who) == before + 10
    # This month's review is done: /review says so.
    [done] = await chat.send("/review")
    assert "每月最多计 1 次" in (done.text or "")


async def test_a_review_with_a_photo(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7310)
    await bought(sandbox, who, "eco", days_ago=0)
    await chat.send("/review")
    await chat.tap("绿色环保商品", expect=0)
    await chat.tap("★★★★★", expect=0)
    [needs_text] = await chat.send_photo(None)
    assert needs_text.text == "请把评价写在照片说明里再发送，或直接输入文字评价。"
    [received] = await chat.send_photo(REVIEW)
    assert (received.text or "").startswith("📨 已收到您的评价（编号 1）")
    _title, item = await sandbox.admin().send("/tasks_queue", expect=2)
    assert item.kind == "photo"
    assert (item.text or "").splitlines()[1:] == ["绿色环保商品 ★★★★★", REVIEW]


async def test_no_review_without_a_purchase_within_the_window(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7311)
    await bought(sandbox, who, "eco", days_ago=40)
    [refused] = await chat.send("/review")
    assert refused.text == "您近 30 天内没有可评价的消费记录。购买相关商品后再来评价吧。"
    # A forged rating for that category is refused too: the store is asked again.
    await chat.tap_data(refused.message_id, "rw:r:eco:5", expect=0)
    assert chat.last_callback_answer == refused.text


async def test_a_bad_rating_button_and_cancel(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7312)
    await bought(sandbox, who, "eco", days_ago=1)
    [choose] = await chat.send("/review")
    await chat.tap_data(choose.message_id, "rw:r:eco:9", expect=0)
    assert chat.last_callback_answer == EXPIRED
    await chat.tap_data(choose.message_id, "rw:c:nosuch", expect=0)
    assert chat.last_callback_answer == EXPIRED
    await chat.tap("绿色环保商品", expect=0)
    await chat.tap("★★★☆☆", expect=0)
    [cancelled] = await chat.send("/cancel")
    assert cancelled.text == "已取消，没有提交评价。"
    # The text after /cancel is not a review.
    [menu] = await chat.send(REVIEW)
    assert "评价" not in (menu.text or "")
    assert await sandbox.services.submissions.pending(limit=5) == ([], 0)


async def test_staff_only_and_forged_buttons(sandbox: Sandbox) -> None:
    chat, _ = await member(sandbox, 7313)
    [denied] = await chat.send("/tasks_queue")
    assert denied.text == DENIED
    await chat.send_photo(CAPTION)
    await chat.tap_data(1, "sq:a:1", expect=0)
    assert chat.last_callback_answer == DENIED
    admin = sandbox.admin()
    _title, item = await admin.send("/tasks_queue", expect=2)
    for forged in ("sq:a:999", "sq:x:1:because", "sq:a:01", "sq:z:1"):
        await admin.tap_data(item.message_id, forged, expect=0)
        assert admin.last_callback_answer == EXPIRED, forged
    [pending], total = await sandbox.services.submissions.pending(limit=5)
    assert total == 1 and pending.status == "pending"


async def test_in_english(sandbox: Sandbox) -> None:
    chat, who = await member(sandbox, 7314, lang="en")
    [how] = await chat.send("/share")
    assert (how.text or "").startswith("📸 Share a green purchase\n")
    [received] = await chat.send_photo("Refill bottle, no new plastic")
    assert received.text == (
        "📨 Thanks, your share (no. 1) is in. You get 20 points once staff approve it;"
        " we will let you know."
    )
    admin = sandbox.admin(language_code="en")
    admin_chat = sandbox.member(ADMIN_ID, "店员", "en")
    _title, item = await admin_chat.send("/tasks_queue", expect=2)
    assert (item.text or "").startswith("📸 Share #1 · “Share a green purchase” · ")
    seen = chat.emu.event_count(7314)
    await admin.tap("❌ Decline", message=item)
    await admin.tap("Too little said", message=item)
    assert await notice_to(chat, seen) == (
        "Sorry, what you sent for “Share a green purchase” was not approved: it says too"
        " little. Please tell us more about your experience."
    )
    assert await available(sandbox, who) == 0


async def test_a_long_caption_is_cut_in_the_queue_never_the_decision(sandbox: Sandbox) -> None:
    chat, _ = await member(sandbox, 7315)
    await chat.send_photo("环保" * 500)  # 1000 characters, under Telegram's 1024
    admin = sandbox.admin()
    _title, item = await admin.send("/tasks_queue", expect=2)
    assert (item.text or "").endswith("…")
    await admin.tap("✅ 通过", message=item)
    decided = admin.emu.message(ADMIN_ID, item.message_id)
    assert decided is not None
    assert len(decided.text or "") <= 1024
    assert (decided.text or "").splitlines()[-1].startswith("✅ 已通过 · telegram:100000001")
