"""/report for owners in both languages (and refused for a cashier), and the owners' report on
the 1st of each month: sent once, caught up after a missed run, tried again after a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.config import Config, StaffMember
from tests.conftest import ADMIN_ID, Sandbox, assert_audit_ok
from tests.test_reports import build_ledger

SH = ZoneInfo("Asia/Shanghai")
CASHIER_ID = 700001


def sh(*parts: int) -> datetime:
    """A local instant in the programme's timezone."""
    return datetime(*parts, tzinfo=SH)


@pytest.fixture
def configure() -> list[Callable[[Config], Config]]:
    """The sample programme with a cashier on the staff."""
    cashier = StaffMember(telegram_id=CASHIER_ID, name="收银台", role="cashier")
    return [lambda config: config.model_copy(update={"staff": [*config.staff, cashier]})]


@pytest.fixture(autouse=True)
async def ledger_then_audit(sandbox: Sandbox) -> AsyncIterator[None]:
    """October 2026 of the hand-built ledger (tests/test_reports.py); the audit afterwards."""
    config = sandbox.services.config
    await sandbox.services.store.write(lambda conn: build_ledger(conn, config))
    yield
    await assert_audit_ok(sandbox)


async def test_an_owner_reads_october_in_chinese_with_a_chart(sandbox: Sandbox) -> None:
    owner = sandbox.admin()
    await owner.send("/report 2026-10", expect=2)
    text = "\n".join(m.text or "" for m in owner.bot_messages)
    assert "📊 2026-10 积分月报" in text
    assert "本月发放积分：1000" in text
    assert "帆布环保购物袋（实物）：1 笔，300 积分" in text
    assert "过期率：15.0%" in text
    assert "月末会员未使用积分：1010，按 100 积分抵 1 元计，积分负债 ¥10.10" in text
    assert "永久有效：830 积分（¥8.30）" in text
    assert "✅ 账目平衡" in text
    assert "会员：共 4 人，本月新加入 2 人，本月有积分往来 3 人" in text
    photo = owner.bot_messages[-1]
    assert photo.kind == "photo" and photo.photo is not None
    assert photo.photo[:8] == b"\x89PNG\r\n\x1a\n"


async def test_an_owner_reads_it_in_english(sandbox: Sandbox) -> None:
    owner = sandbox.admin(language_code="en")
    await owner.send("/report 2026-10", expect=2)
    text = "\n".join(m.text or "" for m in owner.bot_messages)
    assert "📊 Points report for 2026-10" in text
    assert "Points issued: 1000" in text
    assert "at 100 points to ¥1 the liability is ¥10.10" in text
    assert "Breakage: 15.0%" in text
    assert "The books balance" in text


async def test_without_a_month_it_is_last_month_and_this_month_is_to_date(
    sandbox: Sandbox,
) -> None:
    owner = sandbox.admin(language_code="en")
    await owner.send("/report", expect=2)
    assert "Points report for 2026-10" in (owner.bot_messages[0].text or "")
    await owner.send("/report 2026-11", expect=2)
    november = owner.bot_messages[-2].text or ""
    assert "Points report for 2026-11" in november
    assert "The month is not over" in november
    assert "Points issued: 30" in november


@pytest.mark.parametrize(
    ("month", "reply"),
    [
        ("2026-13", "“2026-13”不是月份，请写成 2026-11 这样的格式。"),
        ("2027-01", "2027-01 还没有开始，暂时没有可报告的内容。"),
    ],
)
async def test_a_bad_or_future_month_is_explained(sandbox: Sandbox, month: str, reply: str) -> None:
    owner = sandbox.admin()
    await owner.send(f"/report {month}")
    assert owner.last_text == reply


async def test_a_cashier_is_refused_politely(sandbox: Sandbox) -> None:
    cashier = sandbox.member(CASHIER_ID, "收银台")
    await cashier.send("/report 2026-10")
    assert cashier.last_text == sandbox.services.i18n.t("zh-CN", "staff.denied")


async def test_owners_get_last_months_report_on_the_first_once(sandbox: Sandbox) -> None:
    owner = sandbox.admin()
    scheduler = sandbox.services.scheduler
    first = sh(2026, 11, 1, 9, 30)
    run = await scheduler.owner_reports(first)
    assert run is not None and (run.month.isoformat(), run.sent, run.failed) == ("2026-10-01", 1, 0)
    sent = list(owner.bot_messages)
    assert "上个月的积分月报已生成" in (sent[0].text or "")
    assert "本月发放积分：1000" in (sent[0].text or "")
    assert sent[-1].kind == "photo"
    # Again that day, the next day, and at a restart's catch-up: nothing more.
    assert await scheduler.owner_reports(first) is None
    assert await scheduler.owner_reports(sh(2026, 11, 2, 9, 30)) is None
    assert "owner_report 2026-11-02" not in await scheduler.catch_up(sh(2026, 11, 2, 9, 30))
    assert len(owner.bot_messages) == len(sent)


async def test_a_missed_first_is_caught_up_and_a_failure_tried_again(sandbox: Sandbox) -> None:
    owner = sandbox.admin()
    scheduler = sandbox.services.scheduler
    owner.block()
    # The bot was down on the 1st; on the 2nd the owner cannot be reached.
    second = sh(2026, 11, 2, 9, 30)
    assert "owner_report 2026-11-02" not in await scheduler.catch_up(second)
    assert owner.bot_messages == []
    assert await scheduler.reports.owner_reports_sent("2026-10") == {ADMIN_ID: "failed"}
    owner.unblock()
    third = sh(2026, 11, 3, 9, 30)
    assert "owner_report 2026-11-03" in await scheduler.catch_up(third)
    assert "本月发放积分：1000" in (owner.bot_messages[0].text or "")
    assert await scheduler.owner_reports(sh(2026, 11, 4, 9, 30)) is None
    statuses = await scheduler.reports.owner_reports_sent("2026-10")
    assert statuses == {ADMIN_ID: "sent"}


async def test_too_late_to_catch_up_it_waits_for_report(sandbox: Sandbox) -> None:
    owner = sandbox.admin()
    late = sh(2026, 11, 1 + sandbox.services.config.push.catch_up_days + 1, 9, 30)
    assert await sandbox.services.scheduler.owner_reports(late) is None
    assert owner.bot_messages == []
