"""`pointsbot demo` with piped input: the scripted run a newcomer (and CI) can do."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
    # Purchase points last for life (one line); the birthday gift (and any campaign's extra
    # points) have a last day.
    dated = [int(n) for n in re.findall(r"• (\d+) 积分有效至 \d{4}-\d\d-\d\d", balance)]
    lifetime = [int(n) for n in re.findall(r"• (\d+) 积分永久有效", balance)]
    assert len(dated) >= 1 and len(lifetime) == 1
    available = re.search(r"可用积分：(\d+)", balance)
    assert available is not None and int(available.group(1)) == sum(dated) + sum(lifetime)
