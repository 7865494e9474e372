"""Statement lines whose facts are missing or no longer in the configuration still read as words."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import Config
from bot.i18n import I18n
from bot.programme.statements import DESCRIBERS
from handlers.common import Texts
from handlers.points import render_statement_line
from storage import ledger
from storage.ledger import EARN_KINDS, SPEND_KINDS, StatementLine
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate

AT = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
I18N = I18n.load()


def line(kind: str, points: int, **facts: object) -> StatementLine:
    """A statement line of `kind` with only these facts."""
    given: dict[str, object] = {"reason": None, "reference": None, **facts}
    return StatementLine(
        operation_id=1,
        created_at=AT,
        kind=kind,
        points=points,
        **given,  # type: ignore[arg-type]
    )


def read(statement_line: StatementLine, config: Config, language: str = "zh-CN") -> str:
    """The line as /history shows it, without its date and time."""
    text = render_statement_line(statement_line, config, Texts(I18N, language))
    return text.split("  ", 1)[1]


@pytest.mark.parametrize(
    ("statement_line", "zh", "en"),
    [
        # An item taken out of the configuration, a game and a campaign that are gone.
        (
            line("redeem", -800, sku="GONE-1", code="ABCD2345"),
            "兑换  -800 · 商城商品 · 券码 ABCD2345",
            "Redeemed  -800 · a mall item · code ABCD2345",
        ),
        (line("game_play", -10, game="mahjong", prize="x"), "参与游戏  -10", "Game play  -10"),
        (line("game", 5, game="mahjong"), "游戏奖励  +5", "Game prize  +5"),
        (
            line("purchase", 20, receipt="R1", campaign="old_campaign"),
            "消费积分  +20 · 小票 R1 · 活动期间",
            "Purchase  +20 · receipt R1 · during a campaign",
        ),
        (line("survey", 10, survey="old_survey"), "问卷奖励  +10", "Survey reward  +10"),
        # Facts never recorded (an older operation, or meta without the key).
        (line("purchase", 20), "消费积分  +20", "Purchase  +20"),
        (line("redeem", -5), "兑换  -5 · 商城商品", "Redeemed  -5 · a mall item"),
        (line("refund", 5), "积分退回  +5", "Points returned  +5"),
        (line("transfer", -3), "转出积分  -3", "Points sent  -3"),
        (line("expire", -7), "积分到期  -7", "Points expired  -7"),
        # Every other kind, with its facts.
        (line("birthday", 88, reason="2026"), "生日礼  +88", "Birthday gift  +88"),
        (line("feedback", 20), "建议被采纳  +20", "Suggestion adopted  +20"),
        (
            line("game", 40, game="wheel", prize="p20", campaign="spring_festival"),
            "转盘奖励  +40 · 活动：春节积分翻倍",
            "Wheel prize  +40 · campaign: Spring Festival double points",
        ),
        (
            line("game_play", -30, game="scratch", prize="s30"),
            "刮刮乐  -30 · 中奖：30 积分",
            "Scratch card  -30 · won: 30 points",
        ),
        (
            line("campaign", 100, campaign="green_winter", receipt="R9", amount=Decimal(50)),
            "活动加赠  +100 · 活动：冬季绿色消费月 · 小票 R9 · 消费 ¥50.00",
            "Campaign bonus  +100 · campaign: Green Winter Month · receipt R9 · spent ¥50.00",
        ),
        (
            line("compensation", 50, reason="系统故障"),
            "商家补偿  +50 · 原因：系统故障",
            "Compensation from the shop  +50 · reason: 系统故障",
        ),
        (
            line("extend_validity", 0, reason="系统故障"),
            "延长有效期  0 · 原因：系统故障",
            "Validity extended  0 · reason: 系统故障",
        ),
        (line("share_bonus", 5), "分享奖励  +5", "Sharing bonus  +5"),
        # A kind the statement has no entry for yet reads as a change of points.
        (line("notification_bonus", 5), "积分变动  +5", "Points change  +5"),
        # A bill deduction says how much it took off.
        (
            line("redeem", -100, sku="BILL-OFF", code="ZZZZ2345", deduction_yuan=Decimal(10)),
            "兑换  -100 · 积分抵现 · 抵扣 ¥10.00 · 券码 ZZZZ2345",
            "Redeemed  -100 · Points off your bill · ¥10.00 off · code ZZZZ2345",
        ),
    ],
)
def test_missing_facts_fall_back_to_words(
    sample_config: Config, statement_line: StatementLine, zh: str, en: str
) -> None:
    assert read(statement_line, sample_config, "zh-CN") == zh
    assert read(statement_line, sample_config, "en") == en


def test_every_ledger_kind_has_a_describer() -> None:
    # A kind the ledger can book without a describer would read as "a change of points".
    ledger_kinds = EARN_KINDS | SPEND_KINDS | {"refund", "transfer", "adjust", "expire"}
    assert ledger_kinds | {"extend_validity"} <= set(DESCRIBERS)


def test_a_page_of_history_is_one_query_however_many_lines(tmp_path: Path) -> None:
    conn = connect_sync(tmp_path / "statement.db")
    migrate(conn)
    alice, _ = register_member(conn, Profile(1, "alice"), None, AT)
    bob, _ = register_member(conn, Profile(2, "bob"), None, AT)
    for i in range(12):
        ledger.earn(
            conn,
            alice.id,
            10,
            kind="purchase",
            key=f"p{i}",
            actor="t",
            expires_at=None,
            reference=f"R{i}",
            meta={"amount": "10.00"},
            now=AT,
        )
    ledger.transfer(conn, alice.id, bob.id, 5, key="t", actor="t", reason=None, now=AT)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    page = ledger.history(conn, alice.id, offset=0, limit=8)
    conn.set_trace_callback(None)
    # The account, the count, and the page with every fact its lines need.
    assert len(statements) == 3 and page.total == 13 and len(page.lines) == 8
    assert page.lines[0].counterparty == "bob"
    assert page.lines[1].receipt == "R11" and page.lines[1].amount == Decimal("10.00")
    conn.close()
