"""Purchase-driven tasks (purchases, spend, streak): moved by the till, the CSV import and the
demo seed in the transaction of the purchase, counted once, taken back by a return."""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench import ledger as ledger_bench
from bot.clock import FixedClock
from bot.config import Config, Task, load_config
from bot.imports import HEADER, ImportSummary, import_purchases
from bot.programme.purchases import PurchaseRecorded, record_purchase
from bot.programme.task_progress import (
    BookedPurchase,
    iso_week,
    purchases_booked,
    streak_progress,
    withdraw_purchase,
)
from bot.programme.tasks import advance_task
from storage import ledger
from storage import tasks as task_store
from storage.audit import audit
from storage.members import Member, Profile, register_member
from storage.tasks import TaskStep
from tests.conftest import NOW, Sandbox, assert_audit_ok, member_with
from tests.postgres import ENGINES, migrated_connection

SHANGHAI = ZoneInfo("Asia/Shanghai")
SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
# NOW (2026-11-25, a Wednesday) is in ISO week 2026-W48 and the month 2026-11.
MONTH = "2026-11"


@pytest.fixture
async def sandbox(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    """The running bot; whatever a test did, its ledger still adds up (rewards paid once)."""
    yield sandbox
    await assert_audit_ok(sandbox)


async def buy(
    sandbox: Sandbox,
    member: Member,
    amount: str,
    category: str,
    receipt: str,
    at: datetime = NOW,
) -> PurchaseRecorded:
    """A purchase booked at the till at `at` (the clock moved there)."""
    sandbox.services.clock = FixedClock(at)
    return await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        category,
        receipt,
        purchased_at=at,
        actor="till:test",
    )


async def step(sandbox: Sandbox, member: Member, task: str, period: str) -> TaskStep | None:
    found = await sandbox.services.tasks.progress_of(member.id, [(task, period)])
    return found.get((task, period))


async def progress(sandbox: Sandbox, member: Member, task: str, period: str) -> int:
    found = await step(sandbox, member, task, period)
    return 0 if found is None else found.progress


async def task_points(sandbox: Sandbox, member: Member) -> int:
    """Points the member received as task rewards."""

    def total(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT coalesce(sum(points), 0) FROM operations WHERE member_id = ? AND kind = 'task'",
            (member.id,),
        ).fetchone()
        return int(row[0])

    return await sandbox.services.store.read(total)


async def operation_of(sandbox: Sandbox, receipt: str) -> int:
    def find(conn: sqlite3.Connection) -> int:
        return int(
            conn.execute(
                "SELECT id FROM operations WHERE idempotency_key = ?", (f"purchase:{receipt}",)
            ).fetchone()[0]
        )

    return await sandbox.services.store.read(find)


async def withdraw(sandbox: Sandbox, operation_id: int, at: datetime) -> list[TaskStep]:
    config = sandbox.services.config
    return await sandbox.services.store.write(
        lambda conn: withdraw_purchase(conn, operation_id, config, at, actor="return:test")
    )


async def told(sandbox: Sandbox, user_id: int, since: int) -> list[str]:
    await sandbox.services.sender.drain()
    return [e.text or "" for e in sandbox.emu.events(user_id, after=since)]


def shanghai(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# --- the till ---------------------------------------------------------------------------------


async def test_staff_purchases_complete_the_monthly_task_and_the_member_is_told(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8201, 0)
    seen = sandbox.emu.event_count(8201)
    admin = sandbox.admin()
    for n in range(1, 4):
        [reply] = await admin.send(f"/purchase {member.member_code} 10 eco R-T{n}")
        assert "获得 20 积分" in (reply.text or "")
    done = await step(sandbox, member, "eco_monthly", MONTH)
    assert done is not None and done.completed and done.progress == 3
    messages = await told(sandbox, 8201, seen)
    assert messages[-3:] == [
        "🧾 消费积分到账：您消费 10.00 元（绿色环保商品），获得 20 积分。当前可用积分：60。",
        "🎯 任务完成：本月 3 次绿色消费！奖励 30 积分已到账。",
        "🏅 恭喜获得勋章：🌿 绿色常客！发送 /badges 查看你的勋章墙。",
    ]
    # A fourth purchase pays nothing more and says nothing about the task: the completion is
    # final, and its progress stays at the count that completed it.
    seen = sandbox.emu.event_count(8201)
    await admin.send(f"/purchase {member.member_code} 10 eco R-T4")
    assert await progress(sandbox, member, "eco_monthly", MONTH) == 3
    assert await task_points(sandbox, member) == 30
    assert not any("任务完成" in text for text in await told(sandbox, 8201, seen))
    assert (await sandbox.services.ledger.balance(member.id)).available == 4 * 20 + 30


async def test_spend_counts_whole_yuan_and_completes_at_the_target(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8202, 0)
    await buy(sandbox, member, "120", "eco", "S1")
    await buy(sandbox, member, "99.99", "refill", "S2")  # 99 yuan count, as for points
    await buy(sandbox, member, "80.50", "eco", "S3")
    assert await progress(sandbox, member, "spend_monthly", MONTH) == 299
    assert await task_points(sandbox, member) == 30  # eco_monthly's, not spend's
    await buy(sandbox, member, "1", "refill", "S4")
    done = await step(sandbox, member, "spend_monthly", MONTH)
    assert done is not None and done.completed and done.progress == 300
    assert await task_points(sandbox, member) == 30 + 50


async def test_only_the_task_s_categories_count(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8203, 0)
    await buy(sandbox, member, "500", "general", "C1")
    for task in ("eco_monthly", "spend_monthly"):
        assert await progress(sandbox, member, task, MONTH) == 0
    assert await progress(sandbox, member, "eco_streak", "once") == 0
    await buy(sandbox, member, "50", "refill", "C2")  # eco and refill; the streak: eco only
    assert await progress(sandbox, member, "eco_monthly", MONTH) == 1
    assert await progress(sandbox, member, "spend_monthly", MONTH) == 50
    assert await progress(sandbox, member, "eco_streak", "once") == 0
    await buy(sandbox, member, "5", "eco", "C3")
    assert await progress(sandbox, member, "eco_streak", "once") == 1


def every_category(config: Config) -> Config:
    """The monthly purchases task with no categories: every purchase counts."""
    tasks = [
        t.model_copy(update={"categories": ()}) if t.id == "eco_monthly" else t
        for t in config.tasks
    ]
    return config.model_copy(update={"tasks": tasks})


@pytest.mark.parametrize("configure", [[every_category]])
async def test_a_task_without_categories_counts_every_purchase(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8204, 0)
    await buy(sandbox, member, "5", "general", "A1")
    assert await progress(sandbox, member, "eco_monthly", MONTH) == 1


async def test_a_purchase_late_on_the_last_day_counts_for_that_local_month(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8205, 0)
    # 23:30 in Shanghai on 30 November is 15:30 UTC the same day; 00:30 on 1 December is
    # still 30 November in UTC.
    late = shanghai(2026, 11, 30, 23, 30)
    assert late.astimezone(UTC).date() == date(2026, 11, 30)
    early = shanghai(2026, 12, 1, 0, 30)
    assert early.astimezone(UTC).date() == date(2026, 11, 30)
    await buy(sandbox, member, "10", "eco", "L1", at=late)
    await buy(sandbox, member, "10", "eco", "L2", at=early)
    assert await progress(sandbox, member, "eco_monthly", "2026-11") == 1
    assert await progress(sandbox, member, "eco_monthly", "2026-12") == 1


async def test_a_replayed_or_conflicting_till_purchase_counts_nothing_more(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8206, 0)
    first = await buy(sandbox, member, "10", "eco", "P1")
    again = await buy(sandbox, member, "10", "eco", "P1")
    other = await buy(sandbox, member, "99", "eco", "P1")  # the same receipt, another amount
    assert (first.status, again.status, other.status) == ("recorded", "replayed", "conflict")
    assert await progress(sandbox, member, "eco_monthly", MONTH) == 1
    assert await progress(sandbox, member, "spend_monthly", MONTH) == 10


# --- streaks ----------------------------------------------------------------------------------


def test_a_streak_is_the_run_of_weeks_ending_at_the_latest() -> None:
    weeks = ["2026-W50", "2026-W51", "2026-W52", "2026-W53", "2027-W01"]
    assert streak_progress(weeks, 10) == 5  # 2026 has 53 ISO weeks: W53 and W01 are adjacent
    assert streak_progress(["2026-W01", "2026-W02", "2026-W04"], 4) == 1  # a gap resets
    assert streak_progress([], 4) == 0
    # A late receipt that completes an older run completes the task.
    older = ["2026-W01", "2026-W02", "2026-W03", "2026-W04", "2026-W09"]
    assert streak_progress(older, 4) == 1
    assert streak_progress(older, 4, counted=["2026-W03"]) == 4
    assert iso_week(date(2027, 1, 1)) == "2026-W53"


async def test_an_eco_purchase_four_weeks_running_completes_the_streak_after_a_gap(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 8207, 0)
    seen = sandbox.emu.event_count(8207)
    week = timedelta(days=7)
    # Weeks 1, 2, 3, a week without, then 5, 6, 7, 8: the run starts again after the gap.
    runs = []
    for n in (0, 1, 2, 4, 5, 6, 7):
        await buy(sandbox, member, "5", "eco", f"W{n}", at=NOW + n * week)
        runs.append(await progress(sandbox, member, "eco_streak", "once"))
    assert runs == [1, 2, 3, 1, 2, 3, 4]
    # Two purchases in one week count that week once.
    await buy(sandbox, member, "5", "eco", "W7b", at=NOW + 7 * week + timedelta(hours=1))
    done = await step(sandbox, member, "eco_streak", "once")
    assert done is not None and done.completed and done.progress == 4
    rewards = [text for text in await told(sandbox, 8207, seen) if "连续 4 周" in text]
    assert rewards == ["🎯 任务完成：连续 4 周绿色消费！奖励 100 积分已到账。"]


# --- returns ----------------------------------------------------------------------------------


async def test_a_returned_purchase_takes_its_progress_back_once(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8208, 0)
    await buy(sandbox, member, "40", "eco", "X1")
    await buy(sandbox, member, "60", "eco", "X2")
    returned = await operation_of(sandbox, "X1")
    moved = await withdraw(sandbox, returned, NOW + timedelta(days=1))
    assert {m.task_id for m in moved} == {"eco_monthly", "spend_monthly", "eco_streak"}
    assert await progress(sandbox, member, "eco_monthly", MONTH) == 1
    assert await progress(sandbox, member, "spend_monthly", MONTH) == 60
    # X2 is in the same week: the streak keeps it.
    assert await progress(sandbox, member, "eco_streak", "once") == 1
    assert await withdraw(sandbox, returned, NOW + timedelta(days=1)) == []
    assert await progress(sandbox, member, "eco_monthly", MONTH) == 1


async def test_a_return_never_undoes_a_paid_completion(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8209, 0)
    for n in range(3):
        await buy(sandbox, member, "10", "eco", f"Y{n}")
    assert await task_points(sandbox, member) == 30
    await withdraw(sandbox, await operation_of(sandbox, "Y0"), NOW + timedelta(hours=2))
    done = await step(sandbox, member, "eco_monthly", MONTH)
    assert done is not None and done.completed and done.progress == 2
    assert await task_points(sandbox, member) == 30
    # The purchase that makes it 3 again pays nothing: the month is done.
    await buy(sandbox, member, "10", "eco", "Y3", at=NOW + timedelta(hours=3))
    assert await task_points(sandbox, member) == 30


async def test_a_return_after_the_period_leaves_that_period_alone(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 8210, 0)
    await buy(sandbox, member, "10", "eco", "Z1")
    await buy(sandbox, member, "10", "eco", "Z2", at=NOW + timedelta(days=7))  # 2 December
    assert await progress(sandbox, member, "eco_streak", "once") == 2
    december = shanghai(2026, 12, 3, 12, 0)
    moved = await withdraw(sandbox, await operation_of(sandbox, "Z1"), december)
    # November is over; the streak (a once task) is still open and loses week 48.
    assert [m.task_id for m in moved] == ["eco_streak"]
    assert await progress(sandbox, member, "eco_monthly", MONTH) == 1
    assert await progress(sandbox, member, "eco_streak", "once") == 1


# --- the demo seed ----------------------------------------------------------------------------


async def test_the_demo_seed_moves_tasks_like_any_purchase(sandbox: Sandbox) -> None:
    from bot.sandbox.seed import DEMO_USER_ID, seed_demo

    member_id = await seed_demo(sandbox.services, NOW)
    member = await sandbox.services.members.by_telegram_id(DEMO_USER_ID)
    assert member is not None and member.id == member_id

    def moved(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT count(*) FROM task_purchase_moves WHERE member_id = ?", (member_id,)
        ).fetchone()
        return int(row[0])

    def eco(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT count(*) FROM operations WHERE member_id = ? AND kind = 'purchase'"
            " AND json_extract(meta, '$.category') IN ('eco', 'refill')",
            (member_id,),
        ).fetchone()
        return int(row[0])

    assert await sandbox.services.store.read(eco) > 0
    assert await sandbox.services.store.read(moved) >= await sandbox.services.store.read(eco)
    before = await sandbox.services.store.read(moved)
    await seed_demo(sandbox.services, NOW)  # twice: adds nothing
    assert await sandbox.services.store.read(moved) == before

    def task_notices(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT count(*) FROM outbox WHERE dedupe_key LIKE 'task:%'")
        return int(row.fetchone()[0])

    # The seed is history: its completions pay, but nobody is told about them now.
    assert await sandbox.services.store.read(task_notices) == 0


# --- the CSV import ---------------------------------------------------------------------------

IMPORT_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=SHANGHAI)


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


def members(conn: sqlite3.Connection, count: int) -> list[tuple[int, str]]:
    """(id, member code) of `count` new members."""
    joined = IMPORT_NOW - timedelta(days=400)
    out = []
    for n in range(count):
        member, _ = register_member(conn, Profile(10_000 + n, f"m{n}"), None, joined)
        out.append((member.id, member.member_code))
    return out


def run_import(conn: sqlite3.Connection, config: Config, rows: list[str]) -> ImportSummary:
    return import_purchases(
        conn,
        [",".join(HEADER) + "\n", *(row + "\n" for row in rows)],
        config,
        actor="import:test.csv",
        now=IMPORT_NOW,
        batch_size=7,  # batches split one member's purchases: they still add up
    )


def progress_rows(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT member_id, task_id, period, progress, completed_at IS NOT NULL,"
            " reward_operation_id IS NOT NULL FROM task_progress"
            " ORDER BY member_id, task_id, period"
        )
    ]


def test_a_csv_import_completes_tasks_for_many_members_and_a_replay_adds_nothing(
    conn: sqlite3.Connection, config: Config
) -> None:
    people = members(conn, 12)
    rows = []
    for n, (_id, code) in enumerate(people):
        for k in range(3):  # three eco purchases in November, 110 yuan each: 330 ≥ 300
            rows.append(f"R{n}-{k},{code},110.00,eco,2026-11-{3 + 7 * k:02d}T10:00:00")
        rows.append(f"R{n}-g,{code},500.00,general,2026-11-20T10:00:00")
    summary = run_import(conn, config, rows)
    assert summary.ok and summary.imported == 48
    state = progress_rows(conn)
    for member_id, _code in people:
        mine = {(task, period): rest for mid, task, period, *rest in state if mid == member_id}
        assert mine == {
            ("eco_monthly", "2026-11"): [3, 1, 1],
            ("spend_monthly", "2026-11"): [330, 1, 1],
            ("eco_streak", "once"): [3, 0, 0],  # weeks 45, 46, 47
        }
    rewards = conn.execute("SELECT count(*), sum(points) FROM operations WHERE kind = 'task'")
    assert tuple(rewards.fetchone()) == (24, 12 * (30 + 50))
    notices = conn.execute("SELECT count(*) FROM outbox WHERE dedupe_key LIKE 'task:%'")
    assert notices.fetchone()[0] == 24
    # The same file again: every row replayed, nothing counted twice.
    again = run_import(conn, config, rows)
    assert again.replayed == 48 and again.imported == 0
    assert progress_rows(conn) == state
    assert audit(conn).ok


def test_an_imported_receipt_already_booked_at_the_till_counts_once(
    conn: sqlite3.Connection, config: Config
) -> None:
    [(member_id, code)] = members(conn, 1)
    run_import(conn, config, [f"R1,{code},10.00,eco,2026-11-03T10:00:00"])
    run_import(
        conn,
        config,
        [f"R1,{code},10.00,eco,2026-11-03T10:00:00", f"R2,{code},10.00,eco,2026-11-04T10:00:00"],
    )
    assert (
        task_store.progress_of(conn, member_id, [("eco_monthly", "2026-11")])[
            ("eco_monthly", "2026-11")
        ].progress
        == 2
    )
    # The primary key is the last word: one operation never counts twice for a task.
    with pytest.raises(sqlite3.IntegrityError):
        task_store.record_purchase_moves(conn, [(1, "eco_monthly", member_id, "2026-11", 1, None)])


@pytest.mark.parametrize("engine", ENGINES)
def test_batched_moves_agree_with_advance_task(config: Config, tmp_path: Path, engine: str) -> None:
    """The batch path (purchases_booked) and one advance_task per purchase end in the same
    progress (as members see it: up to the target, since the batch path stops counting a
    completed period), completions and rewards."""
    for name in ("batched", "single"):
        (tmp_path / name).mkdir()
    with (
        migrated_connection(engine, tmp_path / "batched") as batched,
        migrated_connection(engine, tmp_path / "single") as single,
    ):
        _batched_agrees_with_single(config, batched, single)


def _batched_agrees_with_single(
    config: Config, batched: sqlite3.Connection, single: sqlite3.Connection
) -> None:
    chooser = random.Random(21)
    tasks: list[Task] = [t for t in config.tasks if t.kind in ("purchases", "spend")]
    purchases = [
        (
            chooser.randrange(4),
            chooser.choice(["eco", "refill", "general"]),
            chooser.randrange(1, 200),
            date(2026, chooser.choice([10, 11]), chooser.randrange(1, 29)),
        )
        for _ in range(120)
    ]
    now = IMPORT_NOW
    ids = [m for m, _code in members(batched, 4)]
    assert [m for m, _code in members(single, 4)] == ids
    for n, (who, _category, yuan, _day) in enumerate(purchases):
        for db in (batched, single):
            ledger.earn(
                db,
                ids[who],
                yuan,
                kind="purchase",
                key=f"k{n}",
                actor="t",
                expires_at=None,
                now=now,
            )
    ops = [int(r[0]) for r in batched.execute("SELECT id FROM operations ORDER BY id")]
    booked = [
        BookedPurchase(op, ids[who], category, yuan, day)
        for op, (who, category, yuan, day) in zip(ops, purchases, strict=True)
    ]
    for start in range(0, len(booked), 25):
        purchases_booked(batched, booked[start : start + 25], config, now, actor="t")
    for b in booked:
        for task in tasks:
            if b.category_id in task.categories:
                delta = 1 if task.kind == "purchases" else b.counted_yuan
                # advance_task dates the move by its `now`: noon on the purchase's day.
                at = datetime.combine(b.day, datetime.min.time(), SHANGHAI) + timedelta(hours=12)
                advance_task(single, task, b.member_id, delta, config, at, actor="t")
    query = (
        "SELECT p.member_id, p.task_id, p.period,"
        " CASE WHEN p.progress < p.target THEN p.progress ELSE p.target END,"
        " p.completed_at IS NOT NULL,"
        " o.points FROM task_progress AS p LEFT JOIN operations AS o"
        " ON o.id = p.reward_operation_id WHERE p.task_id IN ('eco_monthly', 'spend_monthly')"
        " ORDER BY 1, 2, 3"
    )
    assert list(map(tuple, batched.execute(query))) == list(map(tuple, single.execute(query)))
    assert any(row[4] for row in batched.execute(query))
    for db in (batched, single):
        assert audit(db).ok


# --- the benchmark ----------------------------------------------------------------------------


def test_the_import_benchmark_compares_with_and_without_tasks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger_bench.main(["--quick"])
    out = capsys.readouterr().out
    found = re.search(
        r"with the purchase tasks \(eco_monthly, spend_monthly, eco_streak\) active: [\d.]+ s,"
        r" ([\d,]+) completions paid; without tasks [\d.]+ s; ratio ([\d.]+)",
        out,
    )
    assert found is not None, out
    assert int(found[1].replace(",", "")) > 0
    assert float(found[2]) > 0
