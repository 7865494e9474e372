"""One clock: nothing but bot/clock.py reads the wall clock, and the test clock stands still."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import FixedClock, system_clock
from tests.conftest import NOW, Sandbox

ROOT = Path(__file__).resolve().parent.parent
# Reads of the wall clock or of "today" (the monotonic clock measures durations, not dates).
WALL_CLOCK = re.compile(
    r"\b(?:datetime|dt)\.(?:now|utcnow|today)\(|\bdate\.today\(|\btime\.(?:time|time_ns|"
    r"localtime|gmtime|ctime|strftime)\("
)
ALLOWED = {Path("bot/clock.py")}


def wall_clock_reads() -> list[str]:
    """Every line of the product's code outside the clock module that reads the wall clock."""
    found = []
    for package in ("bot", "handlers", "storage"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative in ALLOWED:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if WALL_CLOCK.search(line):
                    found.append(f"{relative}:{number}: {line.strip()}")
    return found


def test_only_the_clock_module_reads_the_wall_clock() -> None:
    assert wall_clock_reads() == []


@pytest.mark.parametrize(
    "line",
    [
        "now = datetime.now(UTC)",
        "today = date.today()",
        "stamp = int(time.time())",
        "when = datetime.utcnow()",
    ],
)
def test_the_scan_catches_each_way_of_reading_the_wall_clock(line: str) -> None:
    assert WALL_CLOCK.search(line)


def test_the_scan_lets_durations_and_the_clock_itself_through() -> None:
    assert not WALL_CLOCK.search("started = time.monotonic()")
    assert not WALL_CLOCK.search("now = services.clock()")


def test_a_fixed_clock_stands_still_until_moved() -> None:
    clock = FixedClock(NOW)
    assert clock() == clock() == NOW
    assert clock.advance(timedelta(hours=2)) == NOW + timedelta(hours=2)
    clock.set(datetime(2031, 6, 15, tzinfo=UTC))
    assert clock() == datetime(2031, 6, 15, tzinfo=UTC)


def test_a_clock_refuses_a_naive_instant() -> None:
    with pytest.raises(ValueError, match="aware"):
        FixedClock(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_the_system_clock_is_aware() -> None:
    assert system_clock().tzinfo is not None


async def test_the_bot_and_telegram_share_the_pinned_clock(sandbox: Sandbox) -> None:
    """Message dates come from the same clock the bot reads, wherever a test moves it."""
    await sandbox.member().send("/start")
    member = await sandbox.services.members.by_telegram_id(5001)
    assert member is not None and member.joined_at == NOW
    later = NOW + timedelta(days=400)
    sandbox.services.clock = lambda: later
    assert int(sandbox.emu.clock().timestamp()) == int(later.timestamp())
