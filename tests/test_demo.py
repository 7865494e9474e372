"""`pointsbot demo` with piped input: the scripted run a newcomer (and CI) can do."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.sandbox.seed import DEMO_PURCHASES

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
    lots = [int(n) for n in re.findall(r"• (\d+) 积分有效至 \d{4}-\d\d-\d\d", balance)]
    assert len(lots) >= 4
    available = re.search(r"可用积分：(\d+)", balance)
    assert available is not None and int(available.group(1)) == sum(lots)


def replies(out: str, commands: list[str]) -> dict[str, str]:
    """The bot's answer to each command of the piped script (the last one of a repeat)."""
    answers: dict[str, str] = {}
    parts = out.split("你 › ")[1:]
    for part in parts:
        command, _, answer = part.partition("\n")
        if command in commands:
            answers[command] = answer
    return answers


@pytest.mark.parametrize(
    ("switch", "words"),
    [
        (
            "",
            {
                "line": r"^\d{4}-\d\d-\d\d \d\d:\d\d  (.+?)  ([+-]\d+)(.*)$",
                "redeemed": "兑换",
                "code": r" · 券码 (\w{8})$",
                "gift": "生日礼",
                "purchase": r"^消费积分$",
                "receipt": r"^ · 小票 DEMO-\d{4} · 消费 ¥\d+\.\d\d( · 活动：.+)?$",
                "available": r"可用积分：(\d+)",
                "lifetime": r"累计获得\D*(\d+)",
                "birthday": r"生日：(\d\d)-(\d\d)",
            },
        ),
        (
            "/language\n2\n",
            {
                "line": r"^\d{4}-\d\d-\d\d \d\d:\d\d  (.+?)  ([+-]\d+)(.*)$",
                "redeemed": "Redeemed",
                "code": r" · code (\w{8})$",
                "gift": "Birthday gift",
                "purchase": r"^Purchase$",
                "receipt": r"^ · receipt DEMO-\d{4} · spent ¥\d+\.\d\d( · campaign: .+)?$",
                "available": r"Available points: (\d+)",
                "lifetime": r"Earned in total\D*(\d+)",
                "birthday": r"Birthday: (\d\d)-(\d\d)",
            },
        ),
    ],
    ids=["zh-CN", "en"],
)
def test_the_demo_members_screens_agree(switch: str, words: dict[str, str]) -> None:
    commands = ["/history", "/redemptions", "/balance", "/settings"]
    result = run_demo(switch + "\n".join(commands) + "\n")
    assert result.returncode == 0, result.stderr
    answers = replies(result.stdout, commands)
    lines = answers["/history"].splitlines()[1:]
    statement = [m for m in (re.match(words["line"], line) for line in lines) if m is not None]
    assert statement and len(statement) == len(lines), answers["/history"]
    points = [int(m.group(2)) for m in statement]
    # Every redemption in the statement is one /redemptions lists, and the other way round.
    redeemed = {
        found.group(1)
        for m in statement
        if m.group(1) == words["redeemed"] and (found := re.search(words["code"], m.group(3)))
    }
    assert redeemed and redeemed == set(re.findall(r"^(\w{8})  ", answers["/redemptions"], re.M))
    # A birthday gift, on the birthday /settings shows.
    birthday = re.search(words["birthday"], answers["/settings"])
    assert birthday is not None
    gifts = [m for m in statement if m.group(1) == words["gift"]]
    assert len(gifts) == 1 and gifts[0].group(0)[5:10] == f"{birthday[1]}-{birthday[2]}"
    # Purchases name their receipts, and /balance adds up to the statement.
    purchases = [m for m in statement if re.match(words["purchase"], m.group(1))]
    assert len(purchases) == len(DEMO_PURCHASES)
    assert all(re.match(words["receipt"], m.group(3)) for m in purchases)
    available = re.search(words["available"], answers["/balance"])
    lifetime = re.search(words["lifetime"], answers["/balance"])
    assert available is not None and int(available[1]) == sum(points)
    assert lifetime is not None and int(lifetime[1]) == sum(p for p in points if p > 0)
