"""Scheduled work through the sandbox: birthdays, expiry reminders and sweeps, the outbox sender.

Every test chooses "now" (the jobs take it as an argument; the sender's quiet hours read the
services' clock), and what members receive is read from the sandbox chat.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.config import Config
from bot.jobs import Scheduler, Sender
from bot.programme.birthdays import birthday_dates, gift_allowed
from bot.programme.calendar import end_of_day
from storage.audit import audit
from storage.members import Member
from storage.pushes import MARKETING, SERVICE, Push
from tests.conftest import NOW, Sandbox

NUDGE = "到期后无法使用，去积分商城看看吧。"
SHANGHAI_MIDNIGHT_MAR_15 = datetime(2027, 3, 14, 16, 0, 30, tzinfo=UTC)  # 00:00:30 in Shanghai


async def member(sandbox: Sandbox, user_id: int, lang: str = "zh-hans") -> Member:
    await sandbox.member(user_id, language_code=lang).send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return found


async def set_birthday(
    sandbox: Sandbox, user_id: int, month: int, day: int, entered: datetime
) -> None:
    await sandbox.services.pushes.set_birthday(
        user_id, month, day, None, now=entered, change_allowed_after=entered - timedelta(days=365)
    )


def texts(sandbox: Sandbox, user_id: int) -> list[str]:
    return [m.text or "" for m in sandbox.emu.messages(user_id) if m.from_bot]


async def deliver(sandbox: Sandbox) -> int:
    """Send everything due now (the background sender may already have sent some)."""
    return await sandbox.services.sender.drain()


async def available(sandbox: Sandbox, found: Member) -> int:
    return (await sandbox.services.ledger.balance(found.id)).available


# --- birthdays ---------------------------------------------------------------------------


async def test_birthday_gift_at_the_programme_timezone_midnight(sandbox: Sandbox) -> None:
    alice = await member(sandbox, 6001)
    await set_birthday(sandbox, 6001, 3, 15, entered=datetime(2026, 6, 1, tzinfo=UTC))
    scheduler = sandbox.services.scheduler
    # 23:59 on 14 March in Shanghai: not yet.
    early = await scheduler.daily(SHANGHAI_MIDNIGHT_MAR_15 - timedelta(minutes=2))
    assert (early.day, early.birthdays) == (date(2027, 3, 14), 0)
    report = await scheduler.daily(SHANGHAI_MIDNIGHT_MAR_15)
    assert (report.day, report.birthdays, report.gifts) == (date(2027, 3, 15), 1, 1)
    await deliver(sandbox)
    assert "🎂 生日快乐！送您 88 积分生日礼，已存入账户。" in texts(sandbox, 6001)
    assert await available(sandbox, alice) == 88
    # The job running again the same day (a restart) gives and sends nothing more.
    await scheduler.daily(SHANGHAI_MIDNIGHT_MAR_15 + timedelta(hours=9))
    await deliver(sandbox)
    assert texts(sandbox, 6001).count("🎂 生日快乐！送您 88 积分生日礼，已存入账户。") == 1
    assert await available(sandbox, alice) == 88


@pytest.mark.parametrize(
    ("policy", "day", "celebrated"),
    [
        ("feb28", date(2027, 2, 28), True),
        ("feb28", date(2027, 3, 1), False),
        ("mar1", date(2027, 3, 1), True),
        ("mar1", date(2027, 2, 28), False),
        ("feb28", date(2028, 2, 29), True),  # a leap year: the real day
        ("feb28", date(2028, 2, 28), False),
        ("mar1", date(2028, 3, 1), False),
    ],
)
def test_29_february_birthdays(
    sample_config: Config, policy: str, day: date, celebrated: bool
) -> None:
    birthday = sample_config.birthday.model_copy(update={"feb29_in_common_years": policy})
    config = sample_config.model_copy(update={"birthday": birthday})
    assert ((2, 29) in birthday_dates(day, config)) is celebrated


async def test_29_february_member_gets_the_gift_on_28_february(sandbox: Sandbox) -> None:
    leapling = await member(sandbox, 6002)
    await set_birthday(sandbox, 6002, 2, 29, entered=datetime(2026, 1, 1, tzinfo=UTC))
    await sandbox.services.scheduler.daily(datetime(2027, 2, 28, 2, 0, tzinfo=UTC))
    assert await available(sandbox, leapling) == 88


def test_a_birthday_entered_shortly_before_earns_no_gift(sample_config: Config) -> None:
    birthday = date(2027, 3, 15)
    just_now = datetime(2027, 3, 1, tzinfo=UTC)
    long_ago = datetime(2027, 1, 1, tzinfo=UTC)
    assert not gift_allowed(just_now, birthday, sample_config)
    assert gift_allowed(long_ago, birthday, sample_config)
    assert gift_allowed(None, birthday, sample_config)


async def test_a_birthday_just_set_is_greeted_without_a_gift(sandbox: Sandbox) -> None:
    bob = await member(sandbox, 6003, "en")
    await set_birthday(sandbox, 6003, 3, 15, entered=datetime(2027, 3, 5, tzinfo=UTC))
    report = await sandbox.services.scheduler.daily(SHANGHAI_MIDNIGHT_MAR_15)
    assert (report.birthdays, report.gifts) == (1, 0)
    await deliver(sandbox)
    assert "🎂 Happy birthday, and thank you for being with us." in texts(sandbox, 6003)
    assert await available(sandbox, bob) == 0


# --- expiry --------------------------------------------------------------------------------


async def expiring_lot(
    sandbox: Sandbox, found: Member, points: int, last_day: date, key: str
) -> None:
    await sandbox.services.ledger.earn(
        found.id,
        points,
        kind="purchase",
        key=key,
        actor="t",
        expires_at=end_of_day(last_day, sandbox.config),
        now=NOW - timedelta(days=300),
    )


async def test_each_reminder_window_is_sent_once_even_across_a_restart(sandbox: Sandbox) -> None:
    carol = await member(sandbox, 6010)
    today = date(2026, 11, 26)
    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    await expiring_lot(sandbox, carol, 120, today + timedelta(days=7), "a")
    await expiring_lot(sandbox, carol, 30, today + timedelta(days=7), "b")
    await expiring_lot(sandbox, carol, 50, today + timedelta(days=30), "c")
    await expiring_lot(sandbox, carol, 99, today + timedelta(days=12), "d")  # no window today
    report = await sandbox.services.scheduler.daily(now)
    assert report.reminders == 2
    await deliver(sandbox)
    reminders = [t for t in texts(sandbox, 6010) if t.startswith("⏰")]
    assert sorted(reminders) == sorted(
        [
            "⏰ 提醒：您有 150 积分将于 2026-12-03 到期（还有 7 天）。" + NUDGE,
            "⏰ 提醒：您有 50 积分将于 2026-12-26 到期（还有 30 天）。" + NUDGE,
        ]
    )
    last = sandbox.emu.messages(6010)[-1]
    assert last.buttons == ["🛍 去积分商城"]
    # A restart: a new scheduler and sender over the same database plan and send nothing new.
    services = sandbox.services
    again = Scheduler(services.config, services.pushes, services.ledger, services.mall)
    await again.daily(now + timedelta(hours=3))
    sender = Sender(sandbox.app.bot, services.pushes, services.config, services.i18n)
    await sender.drain()
    assert len([t for t in texts(sandbox, 6010) if t.startswith("⏰")]) == 2


async def test_the_mall_button_in_a_reminder_opens_the_mall(sandbox: Sandbox) -> None:
    dave = await member(sandbox, 6011)
    today = date(2026, 11, 26)
    await expiring_lot(sandbox, dave, 300, today + timedelta(days=1), "a")
    await sandbox.services.scheduler.daily(datetime(2026, 11, 26, 1, 0, tzinfo=UTC))
    await deliver(sandbox)
    chat = sandbox.member(6011)
    await chat.tap("🛍 去积分商城")
    assert (chat.last_text or "").startswith("🛍 积分商城")


async def test_the_sweep_books_expired_points_and_the_ledger_still_audits(sandbox: Sandbox) -> None:
    erin = await member(sandbox, 6012)
    yesterday = NOW.astimezone(sandbox.config.program.tz).date() - timedelta(days=1)
    await expiring_lot(sandbox, erin, 40, yesterday, "old")
    await expiring_lot(sandbox, erin, 60, yesterday + timedelta(days=100), "new")
    booked = await sandbox.services.scheduler.sweep(NOW)
    assert booked == 1
    assert await sandbox.services.scheduler.sweep(NOW) == 0
    assert await available(sandbox, erin) == 60
    [statement] = await sandbox.member(6012).send("/history")
    assert "积分到期  -40" in (statement.text or "")
    report = await sandbox.services.store.read(lambda conn: audit(conn, integrity="quick"))
    assert report.ok, str(report)


async def test_catch_up_runs_a_missed_day_at_the_next_start(sandbox: Sandbox) -> None:
    frank = await member(sandbox, 6013)
    services = sandbox.services
    monday = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    await services.scheduler.daily(monday)
    # Down all Tuesday; the 7-day reminder for a lot ending 1 December was due that day.
    await expiring_lot(sandbox, frank, 70, date(2026, 12, 1), "a")
    wednesday = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)  # 08:30, before today's run
    done = await services.scheduler.catch_up(wednesday)
    assert done == ["expiry_sweep 2026-11-25", "daily_pushes 2026-11-24"]
    await deliver(sandbox)
    assert any("70 积分将于 2026-12-01 到期（还有 7 天）" in t for t in texts(sandbox, 6013))
    # Starting again the same morning finds nothing left to do; at 09:00 today's run is due.
    assert await services.scheduler.catch_up(wednesday) == []
    assert await services.scheduler.catch_up(wednesday + timedelta(hours=1)) == [
        "daily_pushes 2026-11-25",
        "voucher_validity 2026-11-25",
    ]


# --- the sender ------------------------------------------------------------------------------


async def enqueue(sandbox: Sandbox, members: list[Member], category: str, key: str) -> None:
    pushes = [Push(f"{key}:{m.id}", m.id, category, "push.birthday", {}) for m in members]
    await sandbox.services.pushes.enqueue(pushes, NOW)


async def test_429_is_honoured_and_the_message_still_arrives_once(sandbox: Sandbox) -> None:
    gina = await member(sandbox, 6020)
    sandbox.emu.fail_next("sendMessage", error_code=429, retry_after=1)
    await enqueue(sandbox, [gina], SERVICE, "t429")
    await deliver(sandbox)
    assert texts(sandbox, 6020).count("🎂 生日快乐！感谢您一直以来的支持。") == 1
    assert (await sandbox.services.pushes.counts()).get("sent") == 1


async def test_a_blocked_member_is_marked_unreachable_and_unblocking_resumes(
    sandbox: Sandbox,
) -> None:
    hank = await member(sandbox, 6021)
    chat = sandbox.member(6021)
    chat.block()
    await sandbox.emu.wait_for_long_poll()
    await enqueue(sandbox, [hank], SERVICE, "blocked")
    await deliver(sandbox)
    prefs = await sandbox.services.pushes.preferences(6021)
    assert not prefs.reachable
    assert (await sandbox.services.pushes.counts()).get("unreachable") == 1
    chat.unblock()
    for _ in range(250):  # the my_chat_member update arrives with the next poll
        if (await sandbox.services.pushes.preferences(6021)).reachable:
            break
        await asyncio.sleep(0.02)
    assert (await sandbox.services.pushes.preferences(6021)).reachable
    await enqueue(sandbox, [hank], SERVICE, "after")
    await deliver(sandbox)
    assert "🎂 生日快乐！感谢您一直以来的支持。" in texts(sandbox, 6021)


async def test_a_403_from_telegram_marks_the_member_unreachable(sandbox: Sandbox) -> None:
    ivy = await member(sandbox, 6022)
    sandbox.emu.fail_next("sendMessage", error_code=403)
    await enqueue(sandbox, [ivy], SERVICE, "forbidden")
    await deliver(sandbox)
    assert not (await sandbox.services.pushes.preferences(6022)).reachable


async def test_marketing_waits_for_quiet_hours_to_end_and_respects_opt_out(
    sandbox: Sandbox,
) -> None:
    jay = await member(sandbox, 6023)
    kim = await member(sandbox, 6024)
    await sandbox.services.pushes.set_marketing(6024, False)
    services = sandbox.services
    services.clock = lambda: datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    await enqueue(sandbox, [jay, kim], MARKETING, "promo")
    await enqueue(sandbox, [jay], SERVICE, "service")
    await deliver(sandbox)
    assert texts(sandbox, 6023).count("🎂 生日快乐！感谢您一直以来的支持。") == 1  # service only
    services.clock = lambda: datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # 09:00
    await deliver(sandbox)
    assert texts(sandbox, 6023).count("🎂 生日快乐！感谢您一直以来的支持。") == 2
    assert "🎂 生日快乐！感谢您一直以来的支持。" not in texts(sandbox, 6024)
    assert (await services.pushes.counts()).get("skipped") == 1


async def test_a_restart_mid_broadcast_sends_each_member_exactly_once(sandbox: Sandbox) -> None:
    crowd = [await member(sandbox, 6100 + i) for i in range(30)]
    services = sandbox.services
    await services.sender.stop()  # the background sender would race this test's senders
    await enqueue(sandbox, crowd, SERVICE, "news")
    first = Sender(sandbox.app.bot, services.pushes, services.config, services.i18n)
    await first.drain(limit=12)  # then the bot "restarts"
    second = Sender(sandbox.app.bot, services.pushes, services.config, services.i18n)
    await second.drain()
    for i in range(30):
        assert texts(sandbox, 6100 + i).count("🎂 生日快乐！感谢您一直以来的支持。") == 1
    assert (await services.pushes.counts()) == {"sent": 30}


async def test_the_running_bot_schedules_the_daily_jobs_and_catches_up(
    sample_config: Config,
) -> None:
    from bot.app import build_application, running
    from bot.sandbox.server import BotApiEmulator

    # Midnight: whatever time the suite runs, today's sweep is already due at start.
    push = sample_config.push.model_copy(update={"sweep_at": time(0, 0)})
    config = sample_config.model_copy(update={"push": push})
    async with BotApiEmulator() as emu:
        app = build_application(config, emu.token, base_url=emu.base_url)
        async with running(app, poll_timeout=1):
            assert app.job_queue is not None
            jobs = {job.name: job for job in app.job_queue.jobs()}
            assert {"expiry-sweep", "daily-pushes", "catch-up"} <= set(jobs)
            tz = config.program.tz
            daily = jobs["daily-pushes"].next_t
            assert daily is not None and daily.astimezone(tz).time().hour == 9
            services = app.bot_data
            # This bot runs the real JobQueue on the real clock.
            today = services.clock().astimezone(tz).date()
            for _ in range(100):  # the catch-up runs a second after start
                if await services.pushes.job_ran("expiry_sweep", today):
                    break
                await asyncio.sleep(0.05)
            assert await services.pushes.job_ran("expiry_sweep", today)


async def test_an_interactive_reply_never_waits_behind_a_broadcast(sandbox: Sandbox) -> None:
    crowd = [await member(sandbox, 6200 + i) for i in range(40)]
    services = sandbox.services
    services.clock = lambda: datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # not quiet hours
    await enqueue(sandbox, crowd, SERVICE, "big")  # 40 messages: 1.6 s at 25/s
    draining = asyncio.create_task(services.sender.drain())
    await asyncio.sleep(0.2)
    started = asyncio.get_running_loop().time()
    [reply] = await sandbox.member(6200).send("/balance")
    waited = asyncio.get_running_loop().time() - started
    assert (reply.text or "").startswith("💰 可用积分")
    assert not draining.done()  # the broadcast was still going out meanwhile
    assert waited < 0.5
    await draining
