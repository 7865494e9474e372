"""Key customers and personal plans through the sandbox: the /plan conversation (happy path,
bad answers, forged buttons), a plan's extra points inside and outside its window and
categories, the threshold gift once, expiry and ending early, the audited history, /advisor
showing and forwarding, /vip's order and /plans."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from bot.clock import FixedClock
from bot.programme import plans
from bot.programme.errors import RuleError
from bot.programme.purchases import record_purchase
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotEvent
from handlers.points import format_code
from storage import plans as plan_store
from storage.members import Member
from storage.plans import Plan
from tests.conftest import ADMIN_ID, NOW, Sandbox, assert_audit_ok, available

EXPIRED = "此按钮已失效，请重新操作。"
DENIED = "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"


@pytest.fixture(autouse=True)
async def audit_after_each(sandbox: Sandbox) -> AsyncIterator[None]:
    """Whatever a test did, the ledger (plan points included) must still add up."""
    yield
    await assert_audit_ok(sandbox)


async def joined(
    sandbox: Sandbox, user_id: int, lang: str = "zh-hans"
) -> tuple[ChatClient, Member]:
    chat = sandbox.member(user_id, first_name=f"会员{user_id}", language_code=lang)
    await chat.send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return chat, found


async def buy(
    sandbox: Sandbox,
    member: Member,
    amount: str,
    receipt: str,
    category: str = "general",
    *,
    at: datetime = NOW,
    now: datetime = NOW,
) -> None:
    sandbox.services.clock = FixedClock(now)
    result = await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        category,
        receipt,
        purchased_at=at,
        actor="till:test",
    )
    assert result.status == "recorded"


async def give_plan(
    sandbox: Sandbox,
    member: Member,
    *,
    starts: str = "2026-11-20",
    ends: str = "2026-11-30",
    categories: tuple[str, ...] = ("general",),
    multiplier: str = "1.5",
    gift: tuple[int, int] | None = None,
    skus: tuple[str, ...] = ("BAG-01",),
    advisor: tuple[int, str] | None = (ADMIN_ID, "王经理 138-0000-0000"),
) -> Plan:
    """A plan set directly in the store (the conversation has tests of its own)."""
    terms = plans.draft_terms(
        {
            "categories": list(categories),
            "multiplier": multiplier,
            "starts_on": starts,
            "ends_on": ends,
            "gift": None if gift is None else [gift[0] * 100, gift[1]],
            "skus": list(skus),
            "advisor": None if advisor is None else list(advisor),
        },
        sandbox.config,
    )
    made, _replaced = await sandbox.services.store.write(
        lambda conn: plan_store.add_plan(
            conn, member.id, terms, actor="telegram:100000001", reason="test", now=NOW
        )
    )
    return made


def view(outputs: list[BotEvent]) -> BotEvent:
    """The message a tap showed (not its toast)."""
    [shown] = [e for e in outputs if e.kind != "callback_answer"]
    return shown


def view_all(outputs: list[BotEvent]) -> list[BotEvent]:
    """The messages a tap sent (not its toast)."""
    return [e for e in outputs if e.kind != "callback_answer"]


async def plan_points(sandbox: Sandbox) -> list[tuple[str, int]]:
    def read(conn: sqlite3.Connection) -> list[tuple[str, int]]:
        rows = conn.execute(
            "SELECT idempotency_key, points FROM operations WHERE kind = 'plan' ORDER BY id"
        )
        return [(str(k), int(p)) for k, p in rows]

    return await sandbox.services.store.read(read)


async def told(sandbox: Sandbox, user_id: int, after: int) -> list[str]:
    await sandbox.services.sender.drain()
    return [e.text or "" for e in sandbox.emu.events(user_id, after=after)]


# --- the /plan conversation -----------------------------------------------------------------


async def test_plan_conversation_sets_a_plan_and_tells_the_member(sandbox: Sandbox) -> None:
    _chat, member = await joined(sandbox, 9101)
    admin = sandbox.admin()
    code = format_code(member.member_code)
    [shown] = await admin.send(f"/plan {member.member_code}")
    assert f"为 会员9101（{code}）设置专属积分方案" in (shown.text or "")
    assert "第 1 步" in (shown.text or "")
    await admin.tap("日常商品")
    assert "✅ 日常商品" in admin.buttons()
    await admin.tap("绿色环保商品")
    await admin.tap("✅ 绿色环保商品")  # tapped again: out again
    ask = view(await admin.tap("下一步"))
    assert "第 2 步" in (ask.text or "")
    [ask] = await admin.send("1.5")
    assert "第 3 步" in (ask.text or "")
    [ask] = await admin.send("2026-11-01 2026-12-31")
    assert "第 4 步" in (ask.text or "")
    [ask] = await admin.send("5000 500")
    assert "第 5 步" in (ask.text or "")
    [ask] = await admin.send("bag-01")
    assert "第 6 步" in (ask.text or "")
    [confirm] = await admin.send(f"{ADMIN_ID} 王经理 138-0000-0000")
    text = confirm.text or ""
    assert text.startswith(f"请确认 会员9101（{code}）的专属积分方案：")
    assert "📅 有效期：2026-11-01 至 2026-12-31" in text
    assert "✨ 日常商品消费积分额外 ×1.5" in text
    assert "🎁 方案期内消费满 ¥5,000 赠 500 积分（一次）" in text
    assert "🛍️ 优先购买：" in text and "🤝 专属顾问：王经理 138-0000-0000" in text
    before = sandbox.emu.event_count(9101)
    done = view(await admin.tap("确认设置"))
    assert (done.text or "").startswith(f"✅ 已为 会员9101（{code}）设置方案 #1，已通知会员。")
    [notice] = await told(sandbox, 9101, before)
    assert notice.startswith("🌟 您的专属积分方案已开通：\n📅 有效期：2026-11-01 至 2026-12-31")
    assert "王经理 138-0000-0000" in notice and "/advisor" in notice
    # A second tap on the same confirm button sets nothing more.
    await admin.tap_data(done.message_id, "pl:ok", expect=0)
    assert admin.last_callback_answer == EXPIRED
    history = await sandbox.services.store.read(
        lambda conn: plan_store.plan_changes(conn, member.id)
    )
    assert [(c.action, c.plan_id, c.actor) for c in history] == [
        ("create", 1, f"telegram:{ADMIN_ID}")
    ]
    assert history[0].terms is not None and history[0].terms["multiplier"] == "1.5"
    # The member's priority access, for the mall.
    skus = await sandbox.services.store.read(lambda conn: plans.priority_skus(conn, member.id, NOW))
    assert skus == frozenset({"BAG-01"})


@pytest.mark.parametrize(
    ("step_answers", "bad", "error"),
    [
        ([], "abc", "“abc”不是倍数"),
        ([], "6", "倍数“6”超出范围"),
        ([], "0.5", "倍数“0.5”超出范围"),
        (["1.5"], "2026-12-31 2026-12-01", "结束日期 2026-12-01 早于开始日期 2026-12-31"),
        (["1.5"], "下个月", "不是两个日期"),
        (["1.5"], "2026-01-01 2026-02-01", "结束日期 2026-02-01 已经过去"),
        (["1.5", "2026-11-01 2026-12-31"], "5000 2000000", "赠送积分“2000000”无效"),
        (["1.5", "2026-11-01 2026-12-31"], "满五千", "看不懂"),
        (["1.5", "2026-11-01 2026-12-31", "无"], "NOPE-1", "商城里没有编号为“NOPE-1”的商品"),
        (["1.5", "2026-11-01 2026-12-31", "无", "无"], "12345 张三", "12345 不是本店员工账号"),
        (["1.5", "2026-11-01 2026-12-31", "无", "无"], f"{ADMIN_ID}", "联系方式"),
    ],
)
async def test_a_bad_answer_is_refused_and_asked_again(
    sandbox: Sandbox, step_answers: list[str], bad: str, error: str
) -> None:
    _chat, member = await joined(sandbox, 9102)
    admin = sandbox.admin()
    await admin.send(f"/plan {member.member_code}")
    asked = view(await admin.tap("下一步"))
    question = asked.text or ""
    for answer in step_answers:
        [reply] = await admin.send(answer)
        question = reply.text or ""
    [refused] = await admin.send(bad)
    assert error in (refused.text or "")
    # Still the same step: a valid answer moves on.
    step = await sandbox.services.store.read(lambda conn: plan_store.draft(conn, ADMIN_ID))
    assert step is not None and step.step == plans.STEPS[1 + len(step_answers)]
    assert question  # the question that was asked before


async def test_plan_refuses_non_staff_bad_codes_and_forged_buttons(sandbox: Sandbox) -> None:
    chat, member = await joined(sandbox, 9103)
    [denied] = await chat.send(f"/plan {member.member_code}")
    assert denied.text == DENIED
    admin = sandbox.admin()
    [usage] = await admin.send("/plan")
    assert (usage.text or "").startswith("用法：/plan <会员码>")
    [wrong] = await admin.send("/plan 1234567890")
    assert "1234567890" in (wrong.text or "")
    [shown] = await admin.send(f"/plan {member.member_code}")
    for forged in ("pl:c:nosuch", "pl:ok", "pl:zz", "pl:c", "pl:n:extra"):
        await admin.tap_data(shown.message_id, forged, expect=0)
        assert admin.last_callback_answer == EXPIRED, forged
    # A member tapping a staff button is refused politely and changes nothing.
    last = chat.last_message
    assert last is not None
    await chat.tap_data(last.message_id, "pl:n", expect=0)
    assert chat.last_callback_answer == DENIED
    step = await sandbox.services.store.read(lambda conn: plan_store.draft(conn, ADMIN_ID))
    assert step is not None and step.step == "categories"
    cancelled = view(await admin.tap("取消"))
    assert cancelled.text == "已取消，没有设置任何方案。"
    assert await sandbox.services.store.read(lambda conn: plan_store.draft(conn, ADMIN_ID)) is None


# --- earning ---------------------------------------------------------------------------------


async def test_a_plan_multiplies_only_its_categories_inside_its_window(sandbox: Sandbox) -> None:
    _chat, member = await joined(sandbox, 9104)
    plan = await give_plan(sandbox, member)  # general ×1.5, 2026-11-20..30
    await buy(sandbox, member, "101", "P1")  # general, in the window: 101 + 50
    await buy(sandbox, member, "100", "P2", "eco")  # another category: nothing extra
    await buy(sandbox, member, "100", "P3", at=NOW - timedelta(days=10))  # dated before it
    keys = await plan_points(sandbox)
    assert len(keys) == 1
    key, points = keys[0]
    assert key.startswith(f"plan:{plan.id}:") and points == 50
    eco_points = 200  # the sample's eco rate: 2 points a yuan
    assert await available(sandbox, member) == 101 + 50 + eco_points + 100


async def test_the_threshold_gift_is_paid_once(sandbox: Sandbox) -> None:
    _chat, member = await joined(sandbox, 9105)
    plan = await give_plan(sandbox, member, multiplier="1", gift=(5000, 500))
    before = sandbox.emu.event_count(9105)
    await buy(sandbox, member, "3000", "G1")
    assert await plan_points(sandbox) == []
    await buy(sandbox, member, "2500", "G2", "eco")  # any category counts towards the spend
    await buy(sandbox, member, "900", "G3")
    assert await plan_points(sandbox) == [(f"plan_gift:{plan.id}", 500)]
    messages = await told(sandbox, 9105, before)
    assert "🎁 您在方案期内消费已满 ¥5,000，赠送的 500 积分已到账，感谢您的支持！" in messages


async def test_a_plan_applies_to_nothing_after_its_end_day_or_once_ended(sandbox: Sandbox) -> None:
    _chat, member = await joined(sandbox, 9106)
    await give_plan(sandbox, member)
    after_end = NOW + timedelta(days=6)  # 2026-12-01 in Shanghai
    await buy(sandbox, member, "100", "E1", at=NOW, now=after_end)  # dated in it, booked after
    assert await plan_points(sandbox) == []
    skus = await sandbox.services.store.read(
        lambda conn: plans.priority_skus(conn, member.id, after_end)
    )
    assert skus == frozenset()
    sandbox.services.clock = FixedClock(after_end)
    [listed] = await sandbox.admin().send("/plans")
    assert listed.text == "目前没有进行中的专属方案。"
    [log] = await sandbox.admin().send(f"/plan_log {member.member_code}")
    assert "方案 #1：2026-11-20 至 2026-11-30 · 已到期" in (log.text or "")
    # Ended early: the next purchase in the window earns nothing extra.
    _chat2, other = await joined(sandbox, 9107)
    sandbox.services.clock = FixedClock(NOW)
    await give_plan(sandbox, other)
    [ended] = await sandbox.admin().send(f"/plan_end {other.member_code} 客户要求")
    assert (ended.text or "").startswith("已提前结束")
    await buy(sandbox, other, "100", "E2")
    assert await plan_points(sandbox) == []
    [none] = await sandbox.admin().send(f"/plan_end {other.member_code} 再来一次")
    assert "目前没有进行中的专属方案" in (none.text or "")


# --- the audited history ---------------------------------------------------------------------


async def test_marks_and_plan_changes_are_recorded_and_kept(sandbox: Sandbox) -> None:
    _chat, member = await joined(sandbox, 9108)
    admin = sandbox.admin()
    code = format_code(member.member_code)
    [usage] = await admin.send(f"/vip_mark {member.member_code}")
    assert usage.text == "请在会员码后写明原因。"
    [marked] = await admin.send(f"/vip_mark {member.member_code} 年消费超十万")
    assert marked.text == f"⭐ 已将 会员9108（{code}）标记为重点客户。"
    [again] = await admin.send(f"/vip_mark {member.member_code} 再标一次")
    assert "已经是重点客户" in (again.text or "")
    await give_plan(sandbox, member)
    await give_plan(sandbox, member, starts="2026-11-25", ends="2027-01-31")  # replaces it
    [unmarked] = await admin.send(f"/vip_unmark {member.member_code} 转为普通会员")
    assert unmarked.text == f"已取消 会员9108（{code}）的重点客户标记。"
    history = await sandbox.services.store.read(
        lambda conn: plan_store.plan_changes(conn, member.id)
    )
    assert [(c.action, c.reason) for c in history] == [
        ("mark", "年消费超十万"),
        ("create", "test"),
        ("change", "test (replaces plan 1)"),
        ("unmark", "转为普通会员"),
    ]
    [log] = await admin.send(f"/plan_log {member.member_code}")
    assert "标记为重点客户：年消费超十万" in (log.text or "")
    assert "更换为方案 #2" in (log.text or "")
    assert "方案 #1：2026-11-20 至 2026-11-30 · 已提前结束" in (log.text or "")
    assert "方案 #2：2026-11-25 至 2027-01-31 · 进行中" in (log.text or "")

    def rewrite(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE plan_changes SET actor = 'someone else'")

    def forget(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM plan_changes")

    def loosen(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE plans SET multiplier = '5'")

    for change in (rewrite, forget, loosen):
        with pytest.raises(sqlite3.IntegrityError):
            await sandbox.services.store.write(change)


# --- /advisor ------------------------------------------------------------------------------------


async def test_advisor_without_a_plan_points_to_customer_service(sandbox: Sandbox) -> None:
    chat, _member = await joined(sandbox, 9109)
    [reply] = await chat.send("/advisor")
    assert reply.text == (
        "您目前没有专属顾问。如有任何问题，欢迎致电客服 400-800-1234，我们很乐意为您服务。"
    )
    [reply] = await chat.send("/advisor 在吗？")
    assert "400-800-1234" in (reply.text or "")
    english, _who = await joined(sandbox, 9110, lang="en")
    [reply] = await english.send("/advisor")
    assert (reply.text or "").startswith("You don't have a personal advisor")


async def test_advisor_shows_the_contact_and_forwards_a_question(sandbox: Sandbox) -> None:
    chat, member = await joined(sandbox, 9111)
    admin = sandbox.admin()
    await admin.send("/start")
    await give_plan(sandbox, member)
    [shown] = await chat.send("/advisor")
    assert (shown.text or "").startswith("🤝 您的专属顾问：王经理 138-0000-0000")
    before = sandbox.emu.event_count(ADMIN_ID)
    [sent] = await chat.send("/advisor 新品什么时候到店？")
    assert (sent.text or "").startswith("✅ 您的问题已转给专属顾问")
    forwarded = [e.text for e in sandbox.emu.events(ADMIN_ID, after=before)]
    code = format_code(member.member_code)
    assert forwarded == [f"📩 会员 会员9111（{code}）给您留言：\n新品什么时候到店？"]
    # Or the button, then the question typed as a message of its own.
    chat_view = view(await chat.send("/advisor"))
    assert chat_view.buttons == ["✍️ 给顾问留言"]
    [asked] = view_all(await chat.tap("给顾问留言"))
    assert asked.text == "请直接输入您想问顾问的问题（发送 /cancel 取消）："
    before = sandbox.emu.event_count(ADMIN_ID)
    [sent] = await chat.send("能帮我留一件新款吗？")
    assert (sent.text or "").startswith("✅ 您的问题已转给专属顾问")
    forwarded = [e.text for e in sandbox.emu.events(ADMIN_ID, after=before)]
    assert forwarded == [f"📩 会员 会员9111（{code}）给您留言：\n能帮我留一件新款吗？"]
    english, other = await joined(sandbox, 9112, lang="en")
    await give_plan(sandbox, other)
    [shown] = await english.send("/advisor")
    assert (shown.text or "").startswith("🤝 Your personal advisor: 王经理 138-0000-0000")


# --- /vip and /plans ------------------------------------------------------------------------------


async def test_vip_lists_the_top_members_by_qualifying_total(sandbox: Sandbox) -> None:
    members = {}
    for user_id, amount in ((9113, "100"), (9114, "3000"), (9115, "800")):
        _chat, found = await joined(sandbox, user_id)
        await buy(sandbox, found, amount, f"V{user_id}")
        members[user_id] = found
    admin = sandbox.admin()
    await admin.send(f"/vip_mark {members[9114].member_code} 大客户")
    await give_plan(sandbox, members[9115])
    [top] = await admin.send("/vip")
    lines = (top.text or "").splitlines()
    assert lines[0] == "本期累计前 3 名会员（最多可查 50 名）："
    assert lines[1].startswith("1. ⭐会员9114") and "¥3,000" in lines[1] and "绿叶" in lines[1]
    assert lines[2].startswith("2. 会员9115") and "方案 #1 至 2026-11-30" in lines[2]
    assert lines[3].startswith("3. 会员9113") and "无方案" in lines[3]
    [two] = await admin.send("/vip 2")
    assert len((two.text or "").splitlines()) == 3
    for bad in ("/vip 0", "/vip 99", "/vip abc"):
        [refused] = await admin.send(bad)
        assert refused.text == "用法：/vip [人数]，人数为 1 至 50，默认 10。"


async def test_plans_lists_running_plans(sandbox: Sandbox) -> None:
    admin = sandbox.admin()
    [empty] = await admin.send("/plans")
    assert empty.text == "目前没有进行中的专属方案。"
    _chat, member = await joined(sandbox, 9116)
    await give_plan(sandbox, member, gift=(5000, 500))
    [listed] = await admin.send("/plans")
    text = listed.text or ""
    code = format_code(member.member_code)
    assert text.startswith("进行中的专属方案（1 份）：\n\n#1 会员9116（" + code + "）· 进行中")
    assert "📅 有效期：2026-11-20 至 2026-11-30" in text
    assert "🤝 专属顾问：王经理 138-0000-0000" in text


def test_validation_of_typed_terms() -> None:
    today = date(2026, 11, 25)
    assert plans.parse_multiplier("１.5") == Decimal("1.5")
    assert plans.parse_multiplier("2倍") == Decimal(2)
    assert str(plans.parse_multiplier("1.50")) == "1.5"
    with pytest.raises(RuleError):
        plans.parse_multiplier("1.255")
    with pytest.raises(RuleError):
        plans.parse_window("2026-02-30 2026-03-01", today)
    assert plans.parse_window("2026-11-01 至 2026-12-31", today) == (
        date(2026, 11, 1),
        date(2026, 12, 31),
    )
    assert plans.parse_gift("¥5000 500积分") == (500_000, 500)
    assert plans.parse_gift("无") is None
    assert plans.plan_bonus(101, Decimal("1.5")) == 50
    assert plans.plan_bonus(7, Decimal("1.33")) == 2


async def test_a_new_plan_over_an_expired_one_is_a_new_plan(sandbox: Sandbox) -> None:
    _chat, member = await joined(sandbox, 9117)
    await give_plan(sandbox, member, starts="2026-11-01", ends="2026-11-20")  # over by NOW
    await give_plan(sandbox, member, starts="2026-11-15", ends="2026-12-31")
    history = await sandbox.services.store.read(
        lambda conn: plan_store.plan_changes(conn, member.id)
    )
    assert [c.action for c in history] == ["create", "create"]
    [log] = await sandbox.admin().send(f"/plan_log {member.member_code}")
    assert "方案 #1：2026-11-01 至 2026-11-20 · 已到期" in (log.text or "")
    assert "方案 #2：2026-11-15 至 2026-12-31 · 进行中" in (log.text or "")
    await buy(sandbox, member, "100", "N1")
    assert [points for _key, points in await plan_points(sandbox)] == [50]


async def test_an_english_member_is_told_in_english(sandbox: Sandbox) -> None:
    _chat, member = await joined(sandbox, 9118, lang="en")
    admin = sandbox.admin()
    await admin.send(f"/plan {member.member_code}")
    await admin.tap("下一步")
    for answer in ("2", "2026-11-01 2026-12-31", "100 50", "无"):
        await admin.send(answer)
    await admin.send(f"{ADMIN_ID} Ms Wang 138-0000-0000")
    before = sandbox.emu.event_count(9118)
    await admin.tap("确认设置")
    await buy(sandbox, member, "120", "EN1")
    notices = await told(sandbox, 9118, before)
    assert notices[0] == (
        "🌟 Your personal points plan is ready:\n"
        "📅 Valid from 2026-11-01 to 2026-12-31\n"
        "✨ Extra ×2 on all purchase points\n"
        "🎁 Spend ¥100 during the plan and get 50 points (once)\n"
        "🤝 Your personal advisor: Ms Wang 138-0000-0000\n"
        "Send /advisor to reach your personal advisor."
    )
    assert (
        "🎁 You have spent ¥100 during your plan: 50 gift points have been added. Thank you!"
        in notices
    )
    assert sorted(points for _key, points in await plan_points(sandbox)) == [50, 120]


async def test_a_plan_without_an_advisor_does_not_point_the_member_to_one(
    sandbox: Sandbox,
) -> None:
    _chat, member = await joined(sandbox, 9131)
    admin = sandbox.admin()
    await admin.send(f"/plan {member.member_code}")
    await admin.tap("下一步")
    for answer in ("1.5", "2026-11-01 2026-12-31", "无", "无", "无"):
        await admin.send(answer)
    before = sandbox.emu.event_count(9131)
    await admin.tap("确认设置")
    [notice] = await told(sandbox, 9131, before)
    assert notice == (
        "🌟 您的专属积分方案已开通：\n📅 有效期：2026-11-01 至 2026-12-31\n✨ 所有消费积分额外 ×1.5"
    )
