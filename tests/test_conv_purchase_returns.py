"""/purchase_return through the sandbox: a cashier refunds a purchase in either language, the
member is told in theirs, /balance and /history show owed points, non-staff are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.config import Config, StaffMember
from bot.programme.purchases import record_purchase
from storage.members import Member
from tests.conftest import NOW, Sandbox, assert_audit_ok, joined

CASHIER_ID = 300000001


def with_cashier(config: Config) -> Config:
    """The sample programme with a cashier on the staff."""
    cashier = StaffMember(telegram_id=CASHIER_ID, name="收银员", role="cashier")
    return config.model_copy(update={"staff": [*config.staff, cashier]})


pytestmark = pytest.mark.parametrize("configure", [[with_cashier]])


@pytest.fixture
async def sandbox(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    """The running bot; its ledger and owed points add up after every test."""
    yield sandbox
    await assert_audit_ok(sandbox)


async def member_buying(
    sandbox: Sandbox, user_id: int, amount: str, receipt: str, lang: str = "zh-hans"
) -> Member:
    await sandbox.member(user_id, language_code=lang).send("/start")
    member = await sandbox.services.members.by_telegram_id(user_id)
    assert member is not None
    recorded = await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        None,
        receipt,
        purchased_at=NOW,
        actor="till:test",
    )
    assert recorded.status == "recorded"
    return member


async def told(sandbox: Sandbox, user_id: int) -> list[str]:
    await sandbox.services.sender.drain()
    return [e.text or "" for e in sandbox.emu.events(user_id)]


async def test_a_cashier_refunds_in_chinese_and_the_member_is_told(sandbox: Sandbox) -> None:
    member = await member_buying(sandbox, 7201, "100", "R-ZH")
    cashier = sandbox.member(CASHIER_ID, "收银员", "zh-hans")
    [reply] = await cashier.send("/purchase_return R-ZH 40")
    assert reply.text == (
        "↩️ 已为 小明（"
        + " ".join(member.member_code[i : i + 4] for i in range(0, 10, 4))
        + "）办理小票 R-ZH 退款 40.00 元，收回 40 积分。会员当前可用积分：60。"
    )
    assert "↩️ 退款通知：小票 R-ZH 已退款 40.00 元，相应的 40 积分已收回。" in await told(
        sandbox, 7201
    )
    # Without an amount, the rest; then nothing is left to refund.
    [rest] = await cashier.send("/purchase_return R-ZH")
    assert "退款 60.00 元，收回 60 积分" in (rest.text or "")
    [again] = await cashier.send("/purchase_return R-ZH 1")
    assert again.text == "小票 R-ZH 的 100.00 元已经全部退款，积分也已收回，无需再退。"


async def test_a_cashier_refunds_in_english_after_the_points_were_spent(
    sandbox: Sandbox,
) -> None:
    member = await member_buying(sandbox, 7202, "100", "R-EN", lang="en")
    await sandbox.services.ledger.spend(
        member.id, 90, key="spend:7202", actor="t", reason="mall", reference=None
    )
    cashier = sandbox.member(CASHIER_ID, "Cashier", "en")
    [reply] = await cashier.send("/purchase_return R-EN")
    assert "100 points to take back, 10 taken now; the 90 the member had already used" in (
        reply.text or ""
    )
    assert "Available now: 0." in (reply.text or "")
    messages = await told(sandbox, 7202)
    assert any("90 owed in all" in text for text in messages)
    client = sandbox.member(7202, language_code="en")
    [balance] = await client.send("/balance")
    assert "Owed: 90 points" in (balance.text or "")
    [history] = await client.send("/history")
    assert "Points taken back for a refund" in (history.text or "")
    assert "refunded ¥100.00" in (history.text or "")
    # The next purchase pays it off; the statement shows the earning and the settlement.
    await record_purchase(
        sandbox.services, member.member_code, "200", None, "R-EN2", purchased_at=NOW, actor="t"
    )
    [history] = await client.send("/history")
    assert "Owed points paid off" in (history.text or "")
    [balance] = await client.send("/balance")
    assert "Owed" not in (balance.text or "")
    assert "110" in (balance.text or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/purchase_return", "用法：/purchase_return <小票号> [退款金额]"),
        ("/purchase_return R-BAD 1 2", "用法：/purchase_return <小票号> [退款金额]"),
        ("/purchase_return R-NONE", "找不到小票 R-NONE 的消费记录，请核对小票号。"),
        ("/purchase_return R-BAD 500", "小票 R-BAD 消费 100.00 元，还可退款 100.00 元，不能退"),
        ("/purchase_return R-BAD 1.234", "1.234"),
    ],
)
async def test_bad_commands_are_answered_and_change_nothing(
    sandbox: Sandbox, text: str, expected: str
) -> None:
    member = await member_buying(sandbox, 7203, "100", "R-BAD")
    [reply] = await sandbox.member(CASHIER_ID, "收银员", "zh-hans").send(text)
    assert expected in (reply.text or "")
    assert (await sandbox.services.ledger.balance(member.id)).available == 100


async def test_members_may_not_refund(sandbox: Sandbox) -> None:
    member = await member_buying(sandbox, 7204, "100", "R-MINE")
    [reply] = await sandbox.member(7204).send("/purchase_return R-MINE")
    assert "R-MINE" not in (reply.text or "")
    assert (await sandbox.services.ledger.balance(member.id)).available == 100


async def test_rules_say_what_a_refund_takes_back(sandbox: Sandbox) -> None:
    text = joined(await sandbox.member(7205).send("/rules")).text
    assert "【消费退款】" in text
    sources = "购物积分、活动额外奖励积分、专属积分方案积分"
    assert f"从您之后获得的{sources}中自动抵扣" in text
