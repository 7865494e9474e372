"""Operators at the till through the sandbox: /purchase, /adjust, /member, and who may use them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest

from bot.config import Campaign, Category, Config, Localized
from bot.imports import ImportSummary, import_purchases
from bot.programme.adjustments import adjust_points
from bot.programme.errors import RuleError
from bot.programme.purchases import award_purchase, purchase_points, record_purchase
from bot.programme.till import command_source
from bot.sandbox.client import ChatClient
from bot.sandbox.seed import DEMO_PURCHASES, DEMO_USER_ID, seed_demo
from bot.sandbox.server import BotEvent, SandboxMessage
from storage.audit import audit
from storage.members import Member, luhn_digit
from storage.store import connect_sync
from tests.amount_cases import BAD_PARAMS, GOOD_PARAMS, refusal
from tests.conftest import ADMIN_ID, NOW, Sandbox, assert_audit_ok


async def new_member(sandbox: Sandbox, user_id: int = 8001) -> Member:
    await sandbox.member(user_id).send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    return member


async def available(sandbox: Sandbox, member: Member) -> int:
    return (await sandbox.services.ledger.balance(member.id)).available


async def operations(sandbox: Sandbox) -> int:
    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM operations").fetchone()[0])

    return await sandbox.services.store.read(count)


def unused_code(taken: str) -> str:
    """A well-formed member code (right check digit) that nobody holds."""
    body = "100000000" if not taken.startswith("100000000") else "100000001"
    return body + luhn_digit(body)


def grouped(code: str) -> str:
    return f"{code[:4]} {code[4:8]} {code[8:]}"


async def test_purchase_awards_points_by_category(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    [reply] = await sandbox.admin().send(f"/purchase {member.member_code} 128.50 eco R-1001")
    assert reply.text == (
        f"✅ 已为 小明（{grouped(member.member_code)}）记录消费 128.50 元（绿色环保商品），"
        "获得 256 积分。当前可用积分：256。"  # per full yuan: 128 × 2
    )
    assert await available(sandbox, member) == 256
    [statement] = await sandbox.member(8001).send("/history")
    assert "消费积分  +256 · 小票 R-1001 · 消费 ¥128.50" in (statement.text or "")


async def test_purchase_without_category_uses_the_default(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    await sandbox.admin().send(f"/purchase {member.member_code} ¥99.99")
    assert await available(sandbox, member) == 99


async def test_same_receipt_twice_awards_once(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    await admin.send(f"/purchase {member.member_code} 100 general R-7")
    [again] = await admin.send(f"/purchase {member.member_code} 100 general R-7")
    assert again.text == "ℹ️ 小票 R-7 已经记过账（100 积分），没有重复记录。"
    assert await available(sandbox, member) == 100


async def test_a_receipt_reused_for_another_amount_is_refused(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    await admin.send(f"/purchase {member.member_code} 100 general R-8")
    [clash] = await admin.send(f"/purchase {member.member_code} 300 general R-8")
    assert clash.text == "⚠️ 小票 R-8 已用于另一笔不同的消费，本次未记账。请核对小票号。"
    assert await available(sandbox, member) == 100


def green_today(config: Config) -> Config:
    """A campaign running today that doubles eco purchases."""
    today = NOW.astimezone(config.program.tz).date()
    campaign = Campaign(
        id="today",
        name=Localized.model_validate({"zh-CN": "今日双倍", "en": "Double Today"}),
        starts=today - timedelta(days=1),
        ends=today + timedelta(days=1),
        multiplier=Decimal("2"),
        categories=["eco"],
    )
    return config.model_copy(update={"campaigns": [campaign]})


@pytest.mark.parametrize("configure", [[green_today]])
async def test_campaign_multiplies_and_says_so(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin("en")
    [eco] = await admin.send(f"/purchase {member.member_code} 10 eco")
    assert "(Eco-friendly products, Double Today ×2)" in (eco.text or "")
    assert ": 40 points." in (eco.text or "")
    [plain] = await admin.send(f"/purchase {member.member_code} 10 general")
    assert "(Everyday goods)" in (plain.text or "") and ": 10 points." in (plain.text or "")


@pytest.mark.parametrize(
    ("arguments", "answer"),
    [
        ("", "用法：/purchase <会员号> <金额> [类别] [小票号]"),
        ("{code}", "用法：/purchase"),
        ("{code} 1 eco R1 extra", "用法：/purchase"),
        ("{code} abc", "金额「abc」无效：请输入数字，最多一个小数点、两位小数"),
        ("{code} -5", "金额必须大于 0（收到：-5）。"),
        ("{code} 0", "金额必须大于 0（收到：0）。"),
        ("{code} 1.005", "金额最多两位小数（收到：1.005）。"),
        ("{code} 1e9", "金额「1e9」无效"),
        ("{code} 50000.01", "超过单笔上限"),
        ("{code} NaN", "金额「NaN」无效"),
        ("{code} 0.50", "消费 0.50 元不满 1 元：积分按每满 1 元计算，不足 1 元的部分不计积分"),
        (
            "{code} 10 toys",
            "没有「toys」这个商品类别。可用的类别：日常商品（general）、绿色环保商品（eco）、"
            "补充装与裸装商品（refill）。",
        ),
        ("{code} 10 eco R/1;DROP", "小票号「R/1;DROP」无效"),
        # The short code and the amount are both digits: read as one code, refused by length.
        ("12345 10", "会员号「12345 10」不正确：应为 10 位数字"),
        ("12345 10元", "会员号「12345」不正确：应为 10 位数字"),
        ("C0DE 10", "会员号「C0DE」不是数字"),
        ("{bad_luhn} 10", "会员号有误（校验位不符）：{bad_luhn}。"),
        ("{unknown} 10", "找不到会员号为 {unknown} 的会员。"),
    ],
)
async def test_bad_purchase_input_is_explained_and_changes_nothing(
    sandbox: Sandbox, arguments: str, answer: str
) -> None:
    member = await new_member(sandbox)
    code = member.member_code
    bad_luhn = code[:-1] + str((int(code[-1]) + 1) % 10)
    unknown = unused_code(code)
    values = {"code": code, "bad_luhn": bad_luhn, "unknown": unknown}
    before = await operations(sandbox)
    [reply] = await sandbox.admin().send(f"/purchase {arguments.format(**values)}".strip())
    assert answer.format(**values) in (reply.text or "")
    assert await operations(sandbox) == before


@pytest.mark.parametrize(("typed", "read"), GOOD_PARAMS)
async def test_an_amount_typed_at_the_till_is_echoed_as_read(
    sandbox: Sandbox, typed: str, read: str
) -> None:
    member = await new_member(sandbox)
    [reply] = await sandbox.admin().send(f"/purchase {member.member_code} {typed}")
    assert f"记录消费 {read} 元（日常商品）" in (reply.text or "")


@pytest.mark.parametrize(("typed", "key"), BAD_PARAMS)
async def test_a_bad_amount_typed_at_the_till_is_refused_by_name(
    sandbox: Sandbox, typed: str, key: str
) -> None:
    member = await new_member(sandbox)
    [reply] = await sandbox.admin().send(f"/purchase {member.member_code} {typed}")
    assert reply.text == refusal(typed, key)
    sandbox.emu.add_user(ADMIN_ID, "店员", language_code="en")  # the till switched to English
    [english] = await sandbox.admin().send(f"/purchase {member.member_code} {typed}")
    assert english.text == refusal(typed, key, "en")
    assert await operations(sandbox) == 0


async def test_a_member_cannot_award_themselves_points(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    chat = sandbox.member(8001)
    for command in (
        f"/purchase {member.member_code} 100",
        f"/adjust {member.member_code} +1000 gift",
        f"/member {member.member_code}",
    ):
        [reply] = await chat.send(command)
        assert reply.text == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
    assert await available(sandbox, member) == 0
    assert await operations(sandbox) == 0


async def test_adjust_up_and_down_with_a_reason(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    [up] = await admin.send(f"/adjust {member.member_code} +50 补录漏记积分")
    assert up.text == (
        f"✅ 已为 小明（{grouped(member.member_code)}）调整 +50 积分。原因：补录漏记积分。"
        "当前可用积分：50。"
    )
    [down] = await admin.send(f"/adjust {member.member_code} -20 重复记账更正")
    assert "调整 -20 积分" in (down.text or "") and "当前可用积分：30" in (down.text or "")
    [statement] = await sandbox.member(8001).send("/history")
    assert "人工调整  -20 · 原因：重复记账更正" in (statement.text or "")
    # An added adjustment follows the published expiry policy, like any other credit.
    [lot] = [lot for lot in await sandbox.services.ledger.lots(member.id) if lot.points == 50]
    assert lot.expires_at is not None


async def test_adjust_never_takes_a_member_below_zero(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    await admin.send(f"/adjust {member.member_code} +10 开户礼")
    [reply] = await admin.send(f"/adjust {member.member_code} -11 扣回")
    assert reply.text == "⚠️ 该会员只有 10 积分可扣，不能扣除 11 积分。未做调整。"
    assert await available(sandbox, member) == 10


@pytest.mark.parametrize(
    ("arguments", "answer"),
    [
        ("", "用法：/adjust <会员号> <±积分> <原因>"),
        ("{code}", "用法：/adjust"),
        ("{code} 0 none", "积分变动「0」无效"),
        ("{code} ten reason", "积分变动「ten」无效"),
        ("{code} 1.5 reason", "积分变动「1.5」无效"),
        ("{code} +1000000 typo", "积分变动「+1000000」无效"),
        ("{code} +5", "请写明调整原因"),
        ("{code} +5 " + "长" * 201, "原因太长了"),
        ("99 +5 reason", "会员号「99」不正确"),
    ],
)
async def test_bad_adjustments_are_explained_and_change_nothing(
    sandbox: Sandbox, arguments: str, answer: str
) -> None:
    member = await new_member(sandbox)
    before = await operations(sandbox)
    [reply] = await sandbox.admin().send(
        f"/adjust {arguments.format(code=member.member_code)}".strip()
    )
    assert answer in (reply.text or "")
    assert await operations(sandbox) == before


async def test_member_lookup_shows_balance_and_lots(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin("en")
    await admin.send(f"/purchase {member.member_code} 60 general R-1")
    await admin.send(f"/adjust {member.member_code} -15 correction")
    [reply] = await admin.send(f"/member {member.member_code}")
    text = reply.text or ""
    assert text.startswith(f"👤 小明 ({grouped(member.member_code)}), member since ")
    assert "💰 Available points: 45" in text
    assert "Received in total: 60 points" in text
    # The sample programme keeps purchase points for life ([expiry.sources]).
    assert ": 60, 45 left, never expires" in text


async def test_member_lookup_of_an_unknown_code(sandbox: Sandbox) -> None:
    code = unused_code("")
    [reply] = await sandbox.admin("en").send(f"/member {code}")
    assert reply.text == f"There is no member with code {code}."
    [usage] = await sandbox.admin("en").send("/member")
    assert usage.text == "Usage: /member <member code>"


async def test_the_ledger_stays_consistent_after_till_work(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    await admin.send(f"/purchase {member.member_code} 88.80 refill R-1")
    await admin.send(f"/adjust {member.member_code} -100 更正")
    await admin.send(f"/adjust {member.member_code} -10 更正")
    report = await sandbox.services.store.read(lambda conn: audit(conn, integrity="quick"))
    assert report.ok, str(report)
    assert await available(sandbox, member) == 22  # 88 full yuan × 1.5 = 132, then -100 -10


async def test_a_receipt_entered_at_the_till_is_not_awarded_again_by_the_csv_import(
    sandbox: Sandbox,
) -> None:
    member = await new_member(sandbox)
    await sandbox.admin().send(f"/purchase {member.member_code} 100 eco R-TILL-1")
    # The nightly POS export lists the same receipt, amount written differently, later on.
    bought = NOW.astimezone(sandbox.config.program.tz).replace(microsecond=0).isoformat()
    summary = import_rows(sandbox, [f"R-TILL-1,{member.member_code},100.00,eco,{bought}"])
    assert (summary.imported, summary.replayed, summary.skipped_total) == (0, 1, 0)
    assert await available(sandbox, member) == 200


def import_rows(
    sandbox: Sandbox, rows: Iterable[str], now: datetime | None = None
) -> ImportSummary:
    """`pointsbot import-purchases` of these CSV rows into the running bot's database."""
    lines = ["receipt_id,member_code,amount,category,purchased_at\n", *(r + "\n" for r in rows)]
    conn = connect_sync(sandbox.config.storage.path)
    try:
        return import_purchases(
            conn,
            lines,
            sandbox.config,
            actor="import:pos.csv",
            now=now or sandbox.services.clock(),
        )
    finally:
        conn.close()


async def test_the_demo_seed_books_purchases_as_the_till_and_the_import_do(
    sandbox: Sandbox,
) -> None:
    services, tz = sandbox.services, sandbox.config.program.tz
    await seed_demo(services, NOW)
    member = await services.members.by_telegram_id(DEMO_USER_ID)
    assert member is not None
    before, balance = await operations(sandbox), await available(sandbox, member)
    # The POS export of the same receipts: every one is already booked, none conflicts.
    rows = [
        f"{receipt},{member.member_code},{amount},{category},"
        + (NOW - timedelta(days=days)).astimezone(tz).isoformat()
        for days, amount, category, receipt in DEMO_PURCHASES
    ]
    summary = import_rows(sandbox, rows)
    assert (summary.imported, summary.replayed, summary.skipped_total) == (0, len(rows), 0)
    # The newest receipt typed at the till the moment it was bought: the seed booked it.
    days, amount, category, receipt = DEMO_PURCHASES[-1]
    bought = NOW - timedelta(days=days)
    services.clock = lambda: bought
    points = award_purchase(Decimal(amount), category, bought, bought, sandbox.config).points
    [reply] = await sandbox.admin().send(
        f"/purchase {member.member_code} {amount} {category} {receipt}"
    )
    assert reply.text == f"ℹ️ 小票 {receipt} 已经记过账（{points} 积分），没有重复记录。"
    assert (await operations(sandbox), await available(sandbox, member)) == (before, balance)


def sample_campaign(config: Config) -> tuple[Campaign, Category, Category]:
    """The sample programme's first campaign, a category it multiplies and one it leaves."""
    campaign = config.campaigns[0]
    inside = [c for c in config.earn.categories if campaign.applies(campaign.starts, c.id)]
    outside = [c for c in config.earn.categories if c not in inside]
    return campaign, inside[0], outside[0]


def local(day_offset: int, clock: time, config: Config) -> Callable[[Campaign], datetime]:
    """A local time on the day `day_offset` after a campaign's first day (-1: the day before)."""
    tz = config.program.tz
    return lambda c: datetime.combine(c.starts + timedelta(days=day_offset), clock, tzinfo=tz)


@pytest.mark.parametrize(
    ("when", "running"),
    [
        ("eve 23:30", False),
        ("first day 00:30", True),
        ("last day 23:30", True),
        ("day after 00:30", False),
    ],
)
async def test_a_campaign_starts_and_ends_at_local_midnight_at_the_till_and_in_the_import(
    sandbox: Sandbox, when: str, running: bool
) -> None:
    config = sandbox.config
    campaign, eco, plain = sample_campaign(config)
    days = (campaign.ends - campaign.starts).days
    moment = {
        "eve 23:30": local(-1, time(23, 30), config),
        "first day 00:30": local(0, time(0, 30), config),
        "last day 23:30": local(days, time(23, 30), config),
        "day after 00:30": local(days + 1, time(0, 30), config),
    }[when](campaign)
    sandbox.services.clock = lambda: moment
    member = await new_member(sandbox)
    admin = sandbox.admin("en")
    base = purchase_points(Decimal(100), eco, config)
    expected = int(base * campaign.multiplier) if running else base
    [reply] = await admin.send(f"/purchase {member.member_code} 100 {eco.id} R-C1")
    assert f": {expected} points." in (reply.text or "")
    assert (f"{campaign.name.en} ×" in (reply.text or "")) is running
    [other] = await admin.send(f"/purchase {member.member_code} 100 {plain.id} R-C2")
    assert f": {purchase_points(Decimal(100), plain, config)} points." in (other.text or "")
    # The night's export writes the same local time without an offset: the same day, the
    # same campaign, so the same operations.
    written = moment.replace(tzinfo=None).isoformat()
    summary = import_rows(
        sandbox,
        [
            f"R-C1,{member.member_code},100,{eco.id},{written}",
            f"R-C2,{member.member_code},100.00,{plain.id},{written}",
        ],
        now=moment + timedelta(hours=3),
    )
    assert (summary.imported, summary.replayed, summary.skipped_total) == (0, 2, 0)


async def test_a_redelivered_till_command_books_once(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    services, source = sandbox.services, command_source(100000001, 77)
    # The same message handled twice (Telegram redelivers an update after a restart).
    first, again = [
        await record_purchase(
            services, member.member_code, "30", purchased_at=NOW, source=source, actor="t"
        )
        for _ in range(2)
    ]
    assert (first.status, first.points, first.available) == ("recorded", 30, 30)
    assert (again.status, again.points, again.available) == ("replayed", 30, None)
    for _ in range(2):
        adjusted = await adjust_points(
            services, member.member_code, "-10", "更正", adjusted_at=NOW, source=source, actor="t"
        )
    assert adjusted.available == await available(sandbox, member) == 20
    with pytest.raises(RuleError) as excinfo:
        await adjust_points(
            services, member.member_code, "-21", "更正", adjusted_at=NOW, source="x", actor="t"
        )
    assert excinfo.value.params == {"available": 20, "requested": 21}


# --- a purchase typed twice without a receipt ----------------------------------------------


def buttons(event: BotEvent | SandboxMessage | None) -> dict[str, str]:
    """Label → callback data of a message's buttons."""
    assert event is not None
    return {b.text: b.callback_data or "" for row in event.keyboard for b in row}


async def retyped_question(sandbox: Sandbox, member: Member, admin: ChatClient) -> BotEvent:
    """The cashier books 100 yuan for the member, then types it again (full-width this time)."""
    [first] = await admin.send(f"/purchase {member.member_code} 100")
    assert "获得 100 积分" in (first.text or "") or "100 points" in (first.text or "")
    [question] = await admin.send(f"/purchase {member.member_code} １００元")
    assert await available(sandbox, member) == 100
    return question


async def test_a_retyped_purchase_is_booked_once_the_cashier_confirms(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    question = await retyped_question(sandbox, member, admin)
    assert question.text == (
        f"⚠️ 你在 12:00 已为 小明（{grouped(member.member_code)}）记录过一笔相同的消费："
        "100.00 元（日常商品），没有小票号。这是另一笔消费吗？确认之前不会记账。"
    )
    confirm = buttons(question)["✅ 是，也记上"]
    assert list(buttons(question)) == ["✅ 是，也记上", "✖️ 不，是同一笔"]
    assert len(confirm.encode()) <= 64
    before = await operations(sandbox)
    await admin.tap("✅ 是，也记上")
    assert admin.last_text == (
        f"✅ 已为 小明（{grouped(member.member_code)}）记录消费 100.00 元（日常商品），"
        "获得 100 积分。当前可用积分：200。"
    )
    assert await available(sandbox, member) == 200
    # The answered question has no buttons; a tap that still arrives has expired.
    assert buttons(sandbox.emu.message(ADMIN_ID, question.message_id)) == {}
    await admin.tap_data(question.message_id, confirm, expect=0)
    assert admin.last_callback_answer == "此按钮已失效，请重新操作。"
    assert await available(sandbox, member) == 200
    assert await operations(sandbox) == before + 1
    await assert_audit_ok(sandbox)


async def test_a_retyped_purchase_cancelled_books_nothing(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    question = await retyped_question(sandbox, member, admin)
    confirm = buttons(question)["✅ 是，也记上"]
    await admin.tap("✖️ 不，是同一笔")
    assert admin.last_text == "已取消，未记账。"
    await admin.tap_data(question.message_id, confirm, expect=0)
    assert admin.last_callback_answer == "此按钮已失效，请重新操作。"
    assert await available(sandbox, member) == 100


async def test_a_double_tap_on_confirm_books_the_retyped_purchase_once(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    question = await retyped_question(sandbox, member, admin)
    confirm = buttons(question)["✅ 是，也记上"]
    before = await operations(sandbox)
    # Both taps land before the first is answered: both carry the question with its buttons.
    await asyncio.gather(
        admin.tap_data(question.message_id, confirm, expect=0),
        admin.tap_data(question.message_id, confirm, expect=0),
    )
    assert await operations(sandbox) == before + 1
    assert await available(sandbox, member) == 200
    await assert_audit_ok(sandbox)


async def test_a_forged_or_stale_confirmation_has_expired(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    question = await retyped_question(sandbox, member, admin)
    confirm = buttons(question)["✅ 是，也记上"]
    command_id = int(confirm.rsplit(":", 1)[1])
    first_reply = question.message_id - 2  # the answer to the first /purchase: no buttons
    forged = [
        (question.message_id, f"tp:ok:{command_id - 2}"),  # the first command, booked already
        (question.message_id, f"tp:ok:{command_id + 1}"),
        (question.message_id, "tp:ok:x"),
        (question.message_id, "tp:yes:" + str(command_id)),
        (first_reply, confirm),
    ]
    for message_id, data in forged:
        await admin.tap_data(message_id, data, expect=0)
        assert admin.last_callback_answer == "此按钮已失效，请重新操作。", data
    # A member who is not staff, in their own chat, with a button that looks right.
    chat = sandbox.member(8001)
    [card] = await chat.send("/help")
    await chat.tap_data(card.message_id, confirm, expect=0)
    assert (
        chat.last_callback_answer
        == "抱歉，您的岗位不能使用这个功能。如需使用，请联系门店负责人开通权限。"
    )
    # Ten minutes on, the question has gone stale.
    sandbox.services.clock = lambda: NOW + timedelta(minutes=10)
    await admin.tap_data(question.message_id, confirm, expect=0)
    assert admin.last_callback_answer == "此按钮已失效，请重新操作。"
    assert await available(sandbox, member) == 100


async def test_the_question_is_asked_and_answered_in_english(sandbox: Sandbox) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin("en")
    question = await retyped_question(sandbox, member, admin)
    assert question.text == (
        f"⚠️ At 12:00 you recorded the same purchase for 小明 ({grouped(member.member_code)}):"
        " 100.00 yuan (Everyday goods), without a receipt number. Is this another purchase?"
        " Nothing is recorded until you say so."
    )
    assert list(buttons(question)) == ["✅ Yes, record it too", "✖️ No, it was the same"]
    await admin.tap("✅ Yes, record it too")
    assert (admin.last_text or "").startswith("✅ Recorded a purchase of 100.00 yuan")
    assert await available(sandbox, member) == 200
    await admin.tap_data(question.message_id, buttons(question)["✖️ No, it was the same"], expect=0)
    assert admin.last_callback_answer == "This button has expired. Please start again."


@pytest.mark.parametrize(
    ("again", "minutes"),
    [
        pytest.param("100 general R-2", 0, id="with a receipt"),
        pytest.param("100.01", 0, id="another amount"),
        pytest.param("100 eco", 0, id="another category"),
        pytest.param("100", 10, id="ten minutes later"),
    ],
)
async def test_a_purchase_unlike_the_last_one_is_booked_without_a_question(
    sandbox: Sandbox, again: str, minutes: int
) -> None:
    member = await new_member(sandbox)
    admin = sandbox.admin()
    await admin.send(f"/purchase {member.member_code} 100")
    sandbox.services.clock = lambda: NOW + timedelta(minutes=minutes)
    [reply] = await admin.send(f"/purchase {member.member_code} {again}")
    assert (reply.text or "").startswith("✅ 已为 小明"), reply.text
    assert reply.keyboard == ()
    assert await available(sandbox, member) > 100
