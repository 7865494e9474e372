"""`pointsbot demo` with piped input: the scripted run a newcomer (and CI) can do; and the demo
member's screens, which must tell one story."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FixedClock
from bot.programme.purchases import record_purchase
from bot.sandbox.seed import DEMO_FIRST_NAME, DEMO_PURCHASES, DEMO_USER_ID, seed_demo
from tests.conftest import NOW, Sandbox, assert_audit_ok

ROOT = Path(__file__).resolve().parent.parent


def run_demo(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--config", str(ROOT / "config.example.toml")],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_piped_start_and_rules_print_the_chinese_transcript_and_exit_0() -> None:
    result = run_demo("/start\n/rules\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "你 › /start" in out
    assert "小绿" in out and "红米好物「绿色消费积分」" in out
    assert "[1] 💰 我的积分" in out  # buttons are numbered
    assert "【如何获得积分】" in out and "【退货与退回】" in out


def test_the_demo_member_holds_points_in_lots_with_different_expiry() -> None:
    result = run_demo("/balance\n")
    assert result.returncode == 0, result.stderr
    balance = result.stdout.split("你 › /balance", 1)[1]
    # Dated lots, and lots that never expire if the programme keeps some points for life.
    lots = [int(n) for n in re.findall(r"• (\d+) 积分(?:有效至 \d{4}-\d\d-\d\d|永久有效)", balance)]
    assert len(lots) >= 2
    available = re.search(r"可用积分：(\d+)", balance)
    assert available is not None and int(available.group(1)) == sum(lots)


# The statement is two pages: "1" taps the demo's only button under the first, older ▶.
OLDER = "1"
SCREENS = ["/history", OLDER, "/redemptions", "/balance", "/settings"]
# How each language's screens say what the agreement check reads.
ZH = {
    "line": r"^\d{4}-\d\d-\d\d \d\d:\d\d  (.+?)  ([+-]\d+)(.*)$",
    "redeemed": "兑换",
    "code": r" · 券码 (\w{8})$",
    "gift": "生日礼",
    "purchase": "消费积分",
    "receipt": r"^ · 小票 DEMO-\d{4} · 消费 ¥\d+\.\d\d( · 活动：.+)?$",
    "available": r"可用积分：(\d+)",
    "lifetime": r"累计获得\D*(\d+)",
    "birthday": r"生日：(\d\d)-(\d\d)",
    "older": "较早 ▶",
}
EN = {
    "line": ZH["line"],
    "redeemed": "Redeemed",
    "code": r" · code (\w{8})$",
    "gift": "Birthday gift",
    "purchase": "Purchase",
    "receipt": r"^ · receipt DEMO-\d{4} · spent ¥\d+\.\d\d( · campaign: .+)?$",
    "available": r"Available points: (\d+)",
    "lifetime": r"Received in total\D*(\d+)",
    "birthday": r"Birthday: (\d\d)-(\d\d)",
    "older": "Older ▶",
}


def replies(out: str, commands: list[str]) -> dict[str, str]:
    """The bot's answer to each command of a piped demo script."""
    answers: dict[str, str] = {}
    for part in out.split("你 › ")[1:]:
        command, _, answer = part.partition("\n")
        if command in commands:
            answers[command] = answer
    return answers


def statement_lines(pages: list[str]) -> list[str]:
    """The statement lines of every /history page: without each page's title and the demo's
    numbered buttons."""
    return [
        line
        for page in pages
        for line in page.splitlines()[1:]
        if line.strip() and not line.lstrip().startswith("[")
    ]


def assert_screens_agree(answers: dict[str, str], words: dict[str, str]) -> None:
    """/history (both pages), /redemptions, /balance and /settings of the demo member tell one
    story."""
    lines = statement_lines([answers["/history"], answers[OLDER]])
    statement = [m for m in (re.match(words["line"], line) for line in lines) if m is not None]
    assert statement and len(statement) == len(lines), answers["/history"]
    points = [int(m.group(2)) for m in statement]
    # Every redemption in the statement is one /redemptions lists, and the other way round.
    redeemed = {
        found.group(1)
        for m in statement
        if m.group(1) == words["redeemed"] and (found := re.search(words["code"], m.group(3)))
    }
    listed = set(re.findall(r"^(\w{8})  ", answers["/redemptions"], re.M))
    assert redeemed and redeemed == listed
    # One birthday gift, on the birthday /settings shows.
    birthday = re.search(words["birthday"], answers["/settings"])
    assert birthday is not None, answers["/settings"]
    gifts = [m for m in statement if m.group(1) == words["gift"]]
    assert len(gifts) == 1 and gifts[0].group(0)[5:10] == f"{birthday[1]}-{birthday[2]}"
    # Each purchase names its receipt and amount; /balance adds up to the statement.
    purchases = [m for m in statement if m.group(1) == words["purchase"]]
    # And the one that brings the member near the next tier (bot.sandbox.seed.tier_purchases).
    assert len(purchases) == len(DEMO_PURCHASES) + 1
    assert all(re.match(words["receipt"], m.group(3)) for m in purchases)
    available = re.search(words["available"], answers["/balance"])
    lifetime = re.search(words["lifetime"], answers["/balance"])
    assert available is not None and int(available[1]) == sum(points)
    assert lifetime is not None and int(lifetime[1]) == sum(p for p in points if p > 0)


@pytest.mark.parametrize(
    ("switch", "words"), [("", ZH), ("/language\n2\n", EN)], ids=["zh-CN", "en"]
)
def test_the_demo_members_screens_agree(switch: str, words: dict[str, str]) -> None:
    result = run_demo(switch + "\n".join(SCREENS) + "\n")
    assert result.returncode == 0, result.stderr
    assert_screens_agree(replies(result.stdout, SCREENS), words)


@pytest.mark.parametrize(("language", "words"), [("zh-hans", ZH), ("en", EN)], ids=["zh-CN", "en"])
async def test_the_seeded_member_agrees_and_the_audit_passes(
    sandbox: Sandbox, language: str, words: dict[str, str]
) -> None:
    member_id = await seed_demo(sandbox.services, NOW)
    # Seeding again (a second demo start on the same database) adds nothing.
    total = (await sandbox.services.ledger.history(member_id)).total
    assert await seed_demo(sandbox.services, NOW) == member_id
    assert (await sandbox.services.ledger.history(member_id)).total == total
    chat = sandbox.member(DEMO_USER_ID, DEMO_FIRST_NAME, language)
    answers = {}
    for command in SCREENS:
        if command == OLDER:
            await chat.tap(words["older"])
            answers[command] = chat.last_text or ""
            continue
        [reply] = await chat.send(command)
        answers[command] = reply.text or ""
    assert_screens_agree(answers, words)
    await assert_audit_ok(sandbox)


# Any day of the year the demo may start on: New Year's midnight (nothing bought this year
# yet but the seed's own purchase), the next morning, a leap day, the year's last minute, and
# the suite's NOW. The demo member is always ¥100 short of the third tier.
SHANGHAI = ZoneInfo("Asia/Shanghai")
DEMO_DAYS = [
    datetime(2027, 1, 1, 0, 0, tzinfo=SHANGHAI),
    datetime(2027, 1, 2, 9, 30, tzinfo=SHANGHAI),
    datetime(2028, 2, 29, 12, 0, tzinfo=SHANGHAI),
    datetime(2026, 12, 31, 23, 59, tzinfo=SHANGHAI),
    NOW,
]


@pytest.mark.parametrize("now", DEMO_DAYS, ids=lambda d: d.isoformat()[:16])
async def test_the_demo_member_is_one_purchase_away_from_the_next_tier(
    sandbox: Sandbox, now: datetime
) -> None:
    services = sandbox.services
    services.clock = FixedClock(now)
    member_id = await seed_demo(services, now)
    assert await services.tiers.held_one(member_id) == "leaf"
    chat = sandbox.member(DEMO_USER_ID, DEMO_FIRST_NAME)
    [reply] = await chat.send("/balance")
    assert (reply.text or "").endswith(
        "会员等级：🍃绿叶 · 本年度消费 ¥4,900\n▓▓▓▓▓▓▓▓▓░ 再消费 ¥100 升级为🌳绿树"
    ), reply.text
    # One purchase of ¥100 at the till, and the member is a Tree member at once.
    member = await services.members.by_telegram_id(DEMO_USER_ID)
    assert member is not None
    bought = await record_purchase(
        services, member.member_code, "100", "general", "NEXT-1", purchased_at=now, actor="t"
    )
    assert bought.status == "recorded"
    assert await services.tiers.held_one(member_id) == "tree"
    await assert_audit_ok(sandbox)
