"""Purchase returns: a refunded purchase takes its points back in proportion, each part to its
source, once per return id; what the member had spent is owed and settled by the next
purchase; tier figures, task progress and plan spend go down with it; the CSV import's
`return_of` rows go through the same rule."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from bot.clock import FixedClock
from bot.imports import ImportSummary, import_purchases
from bot.programme import plans
from bot.programme.errors import RuleError
from bot.programme.purchase_returns import (
    PurchaseReturned,
    points_back,
    points_kept,
    return_purchase,
)
from bot.programme.purchases import record_purchase
from storage import plans as plan_store
from storage.audit import audit
from storage.members import Member
from tests.conftest import ADMIN_ID, NOW, Sandbox, assert_audit_ok, member_with

MONTH = "2026-11"


@pytest.fixture
async def sandbox(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    """The running bot; whatever a test did, its ledger (and owed points) still add up."""
    yield sandbox
    await assert_audit_ok(sandbox)


async def buy(
    sandbox: Sandbox,
    member: Member,
    amount: str,
    receipt: str,
    category: str = "general",
    at: datetime = NOW,
) -> int:
    """A purchase booked at the till; the points it earned in all."""
    sandbox.services.clock = FixedClock(at)
    recorded = await record_purchase(
        sandbox.services,
        member.member_code,
        amount,
        category,
        receipt,
        purchased_at=at,
        actor="till:test",
    )
    assert recorded.status == "recorded"
    return recorded.points


async def refund(
    sandbox: Sandbox, receipt: str, amount: str | None, return_id: str | None = None
) -> PurchaseReturned:
    return await return_purchase(
        sandbox.services,
        receipt,
        amount,
        return_id=return_id,
        actor="till:test",
        source=None if return_id else f"test:{receipt}:{amount}",
    )


async def available(sandbox: Sandbox, member: Member) -> int:
    return (await sandbox.services.ledger.balance(member.id)).available


async def owed(sandbox: Sandbox, member: Member) -> int:
    return (await sandbox.services.ledger.balance(member.id)).owed


async def rows(sandbox: Sandbox, sql: str, *params: object) -> list[tuple[object, ...]]:
    def read(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
        return [tuple(r) for r in conn.execute(sql, params)]

    return await sandbox.services.store.read(read)


async def operations(sandbox: Sandbox) -> int:
    [(count,)] = await rows(sandbox, "SELECT count(*) FROM operations")
    assert isinstance(count, int)
    return count


async def outbox(sandbox: Sandbox, member: Member) -> list[tuple[str, str]]:
    found = await rows(
        sandbox,
        "SELECT message_key, params FROM outbox WHERE member_id = ? ORDER BY id",
        member.id,
    )
    return [(str(k), str(p)) for k, p in found]


def test_points_kept_add_up_without_drift() -> None:
    """Refunds in any steps that add up to the amount take back exactly every point."""
    for points, amount in ((198, 9950), (7, 300), (1, 101), (12345, 99999)):
        for steps in ((amount,), (1, amount - 1), (amount // 3, amount // 3, amount)):
            before, back = 0, 0
            for step in steps:
                after = min(amount, before + step)
                back += points_back(points, amount, before, after)
                before = after
            assert back == points - points_kept(points, amount, before)
            if before == amount:
                assert back == points


async def test_full_return_takes_every_point_back_to_its_source(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7101, 0)
    assert await buy(sandbox, member, "120", "R-FULL") == 120
    returned = await refund(sandbox, "R-FULL", None, return_id="RET-1")
    assert returned.status == "returned"
    assert (returned.refunded, returned.points, returned.taken, returned.owed) == (
        Decimal("120.00"),
        120,
        120,
        0,
    )
    assert returned.available == 0
    assert returned.member.id == member.id
    # Back to the purchase source, from the member: nothing owed.
    postings = await rows(
        sandbox,
        "SELECT coalesce(a.name, 'member'), p.amount FROM postings AS p"
        " JOIN accounts AS a ON a.id = p.account_id JOIN operations AS o ON o.id = p.operation_id"
        " WHERE o.kind = 'purchase_return' ORDER BY p.id",
    )
    assert sorted(postings) == [("member", -120), ("purchase", 120)]
    assert await owed(sandbox, member) == 0
    [(key, params)] = [m for m in await outbox(sandbox, member) if m[0].startswith("returns.")]
    assert key == "returns.notice" and '"points": 120' in params


async def test_partial_then_the_rest_takes_back_exactly_everything(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7102, 0)
    # 99 full yuan of eco goods at 2 points a yuan.
    assert await buy(sandbox, member, "99.50", "R-PART", "eco") == 198
    first = await refund(sandbox, "R-PART", "33.33", return_id="RET-P1")
    # Keeps floor(198 × 66.17 / 99.50) = 131.
    assert (first.refunded, first.points, first.available) == (Decimal("33.33"), 67, 131)
    second = await refund(sandbox, "R-PART", "0.17", return_id="RET-P2")
    assert second.points == points_back(198, 9950, 3333, 3350)
    rest = await refund(sandbox, "R-PART", None, return_id="RET-P3")
    assert rest.refunded == Decimal("66.00")
    assert first.points + second.points + rest.points == 198
    assert await available(sandbox, member) == 0
    # Nothing is left to refund: a new return id is refused, naming the receipt.
    with pytest.raises(RuleError) as refused:
        await refund(sandbox, "R-PART", "1", return_id="RET-P4")
    assert refused.value.key == "returns.error.fully_returned"


async def test_the_same_return_twice_is_done_once(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7103, 0)
    await buy(sandbox, member, "80", "R-TWICE")
    first = await refund(sandbox, "R-TWICE", "20", return_id="RET-T")
    count = await operations(sandbox)
    again = await refund(sandbox, "R-TWICE", "20", return_id="RET-T")
    assert again.status == "replayed"
    assert (again.refunded, again.points, again.available) == (first.refunded, 20, None)
    assert await operations(sandbox) == count
    assert await available(sandbox, member) == 60
    # The same id for another amount: a conflict, nothing written.
    other = await refund(sandbox, "R-TWICE", "30", return_id="RET-T")
    assert other.status == "conflict" and other.points == 0
    assert await operations(sandbox) == count
    # Without a return id, the source (the chat message) keys it: a redelivery is a replay.
    by_source = await return_purchase(
        sandbox.services, "R-TWICE", "10", return_id=None, actor="t", source="tg:1:2"
    )
    redelivered = await return_purchase(
        sandbox.services, "R-TWICE", "10", return_id=None, actor="t", source="tg:1:2"
    )
    assert (by_source.status, redelivered.status) == ("returned", "replayed")
    assert await available(sandbox, member) == 50


@pytest.mark.parametrize(
    ("receipt", "amount", "key"),
    [
        ("R-NONE", None, "returns.error.unknown_receipt"),
        ("R-OVER", "100.01", "returns.error.over_left"),
        ("R-OVER", "abc", "error.amount_not_number"),
        ("R-OVER", "-5", "error.amount_not_positive"),
        ("R OVER", None, "admin.receipt_invalid"),
    ],
)
async def test_bad_returns_are_refused_and_change_nothing(
    sandbox: Sandbox, receipt: str, amount: str | None, key: str
) -> None:
    member = await member_with(sandbox, 7104, 0)
    await buy(sandbox, member, "100", "R-OVER")
    count = await operations(sandbox)
    with pytest.raises(RuleError) as refused:
        await refund(sandbox, receipt, amount, return_id="RET-BAD")
    assert refused.value.key == key
    assert await operations(sandbox) == count
    assert await available(sandbox, member) == 100


async def test_over_what_is_left_after_a_partial_return_is_refused(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7105, 0)
    await buy(sandbox, member, "100", "R-LEFT")
    await refund(sandbox, "R-LEFT", "70", return_id="RET-L1")
    with pytest.raises(RuleError) as refused:
        await refund(sandbox, "R-LEFT", "30.01", return_id="RET-L2")
    assert refused.value.key == "returns.error.over_left"
    assert refused.value.params["left"] == Decimal("30.00")


async def test_spent_points_are_owed_and_the_next_purchase_settles_them(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 7106, 0)
    await buy(sandbox, member, "100", "R-SPENT")
    await sandbox.services.ledger.spend(
        member.id, 80, key="spend:7106", actor="t", reason="mall", reference=None
    )
    returned = await refund(sandbox, "R-SPENT", None, return_id="RET-S")
    assert (returned.points, returned.taken, returned.owed, returned.available) == (100, 20, 80, 0)
    balance = await sandbox.services.ledger.balance(member.id)
    assert (balance.available, balance.owed) == (0, 80)
    [(key, params)] = [m for m in await outbox(sandbox, member) if m[0].startswith("returns.")]
    assert key == "returns.notice_owed" and '"owed": 80' in params
    # The next purchase earns 50: all of it pays off owed points, never a negative balance.
    await buy(sandbox, member, "50", "R-NEXT1")
    balance = await sandbox.services.ledger.balance(member.id)
    assert (balance.available, balance.owed) == (0, 30)
    await buy(sandbox, member, "100", "R-NEXT2")
    balance = await sandbox.services.ledger.balance(member.id)
    assert (balance.available, balance.owed) == (70, 0)
    keys = [k for k, _p in await outbox(sandbox, member)]
    assert keys.count("returns.notice_settled_part") == 1
    assert keys.count("returns.notice_settled") == 1
    # The statement shows each earning and each settlement.
    history = await sandbox.services.ledger.history(member.id)
    kinds = [(line.kind, line.points) for line in history.lines]
    assert kinds[:4] == [
        ("owed_settlement", -30),
        ("purchase", 100),
        ("owed_settlement", -50),
        ("purchase", 50),
    ]
    assert ("purchase_return", -20) in kinds


async def test_a_return_takes_the_purchase_own_points_before_older_ones(
    sandbox: Sandbox,
) -> None:
    member = await member_with(sandbox, 7107, 500)  # an older lot that expires first
    await buy(sandbox, member, "100", "R-OWN")
    await refund(sandbox, "R-OWN", "40", return_id="RET-O")
    lots = await sandbox.services.ledger.lots(member.id)
    assert sorted((lot.points, lot.remainder) for lot in lots) == [(100, 60), (500, 500)]


async def test_returns_take_the_purchase_out_of_its_tier_figures(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7108, 0)
    await buy(sandbox, member, "200", "R-TIER")

    async def figures() -> tuple[object, ...]:
        [row] = await rows(
            sandbox,
            "SELECT points, fen FROM tier_months WHERE member_id = ? AND month = ?",
            member.id,
            MONTH,
        )
        return row

    assert await figures() == (200, 20000)
    await refund(sandbox, "R-TIER", "50", return_id="RET-TI1")
    assert await figures() == (150, 15000)
    await refund(sandbox, "R-TIER", None, return_id="RET-TI2")
    assert await figures() == (0, 0)


async def test_returns_undo_task_progress(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7109, 0)
    await buy(sandbox, member, "100", "R-TASK", "eco")

    async def progress(task: str) -> int:
        found = await sandbox.services.tasks.progress_of(member.id, [(task, MONTH)])
        step = found.get((task, MONTH))
        return 0 if step is None else step.progress

    assert (await progress("spend_monthly"), await progress("eco_monthly")) == (100, 1)
    await refund(sandbox, "R-TASK", "30", return_id="RET-TA1")
    # The refunded yuan leave the spend task; the purchase still counts as one.
    assert (await progress("spend_monthly"), await progress("eco_monthly")) == (70, 1)
    await refund(sandbox, "R-TASK", None, return_id="RET-TA2")
    assert (await progress("spend_monthly"), await progress("eco_monthly")) == (0, 0)


async def test_a_plan_bonus_goes_back_to_the_plan_and_its_spend_drops(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7110, 0)
    terms = plans.draft_terms(
        {
            "categories": ["general"],
            "multiplier": "1.5",
            "starts_on": "2026-11-20",
            "ends_on": "2026-11-30",
            "gift": None,
            "skus": [],
            "advisor": [ADMIN_ID, "王经理"],
        },
        sandbox.config,
    )
    plan, _replaced = await sandbox.services.store.write(
        lambda conn: plan_store.add_plan(conn, member.id, terms, actor="t", reason="t", now=NOW)
    )
    await buy(sandbox, member, "100", "R-PLAN")
    assert await available(sandbox, member) == 150  # 100 and the plan's 50
    half = await refund(sandbox, "R-PLAN", "50", return_id="RET-PL1")
    assert half.points == 75
    [(spent,)] = await rows(sandbox, "SELECT spent_fen FROM plans WHERE id = ?", plan.id)
    assert spent == 5000
    await refund(sandbox, "R-PLAN", None, return_id="RET-PL2")
    assert await available(sandbox, member) == 0
    back = await rows(
        sandbox,
        "SELECT a.name, sum(p.amount) FROM postings AS p JOIN accounts AS a"
        " ON a.id = p.account_id JOIN operations AS o ON o.id = p.operation_id"
        " WHERE o.kind = 'purchase_return' AND a.kind = 'source' GROUP BY a.name ORDER BY 1",
    )
    assert back == [("plan", 50), ("purchase", 100)]


async def test_a_campaign_bonus_goes_back_to_the_campaign(sandbox: Sandbox) -> None:
    member = await member_with(sandbox, 7111, 0)
    december = datetime.fromisoformat("2026-12-02T04:00:00+00:00")  # green_winter runs
    assert await buy(sandbox, member, "100", "R-CAMP", "eco", at=december) == 400
    await refund(sandbox, "R-CAMP", "25", return_id="RET-C1")
    back = await rows(
        sandbox,
        "SELECT a.name, sum(p.amount) FROM postings AS p JOIN accounts AS a"
        " ON a.id = p.account_id JOIN operations AS o ON o.id = p.operation_id"
        " WHERE o.kind = 'purchase_return' AND a.kind = 'source' GROUP BY a.name ORDER BY 1",
    )
    assert back == [("campaign", 50), ("purchase", 50)]


CSV_HEADER = "receipt_id,member_code,amount,category,purchased_at,return_of\n"


async def test_csv_return_of_rows(sandbox: Sandbox) -> None:
    alice = await member_with(sandbox, 7112, 0)
    bob = await member_with(sandbox, 7113, 0)
    when = "2026-11-25T10:00:00"
    lines = [
        CSV_HEADER,
        f"C-1,{alice.member_code},100,general,{when},\n",
        f"C-1-R1,{alice.member_code},40,,{when},C-1\n",
        f"C-1-R2,{bob.member_code},10,,{when},C-1\n",
        f"C-1-R3,{alice.member_code},10,,{when},C-NOPE\n",
        f"C-1-R4,{alice.member_code},70,,{when},C-1\n",
    ]

    def run(conn: sqlite3.Connection) -> ImportSummary:
        return import_purchases(conn, lines, sandbox.config, actor="import:test", now=NOW)

    summary = await sandbox.services.store.write(run)
    assert summary.imported == 1
    assert summary.returned == 1
    assert dict(summary.skipped) == {
        "return_member": 1,
        "return_unknown": 1,
        "return_over": 1,
    }
    assert await available(sandbox, alice) == 60
    # The same file again: the purchase and its return are replays.
    again = await sandbox.services.store.write(run)
    assert again.replayed == 2
    assert await available(sandbox, alice) == 60


async def test_a_file_without_return_of_still_imports(sandbox: Sandbox) -> None:
    alice = await member_with(sandbox, 7114, 0)
    lines = [
        "receipt_id,member_code,amount,category,purchased_at\n",
        f"D-1,{alice.member_code},30,general,2026-11-25T10:00:00\n",
    ]
    summary = await sandbox.services.store.write(
        lambda conn: import_purchases(conn, lines, sandbox.config, actor="i", now=NOW)
    )
    assert summary.imported == 1
    assert await available(sandbox, alice) == 30


async def test_the_audit_reconciles_owed_points(sandbox: Sandbox) -> None:
    """Owed points are what returns recorded minus what settlements paid: a cache changed
    behind the ledger's back is reported."""
    member = await member_with(sandbox, 7115, 0)
    await buy(sandbox, member, "100", "R-AUDIT")
    await sandbox.services.ledger.spend(
        member.id, 100, key="spend:7115", actor="t", reason="mall", reference=None
    )
    await refund(sandbox, "R-AUDIT", "30", return_id="RET-A")
    config = sandbox.services.config

    def tamper(points: int) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            conn.execute(
                "UPDATE owed_points SET points = ? WHERE member_id = ?", (points, member.id)
            )
            report = audit(conn, integrity="none", tier_levels=[t.id for t in config.tiers.levels])
            return [v.check for v in report.violations]

        return run

    assert await sandbox.services.store.write(tamper(29)) == ["owed_reconciled", "owed_account"]
    assert await sandbox.services.store.write(tamper(30)) == []


async def test_the_monthly_report_counts_owed_points_apart_from_what_was_issued(
    sandbox: Sandbox,
) -> None:
    from bot.programme.reports import monthly_report

    member = await member_with(sandbox, 7107, 0)
    await buy(sandbox, member, "100", "R-REP")
    await sandbox.services.ledger.spend(
        member.id, 80, key="spend:7107", actor="t", reason="mall", reference=None
    )
    await refund(sandbox, "R-REP", None, return_id="RET-REP")  # 20 taken back, 80 owed
    await buy(sandbox, member, "50", "R-REP2")  # settles 50 of them
    config = sandbox.services.config
    later = NOW + timedelta(minutes=1)  # the month to date, with what was booked at NOW
    report = await sandbox.services.store.read(
        lambda conn: monthly_report(conn, NOW.date().replace(day=1), config, now=later)
    )
    assert (report.owed.recorded, report.owed.settled, report.owed.outstanding) == (80, 50, 30)
    # Owed is no source of points: members were given 150 and gave back 20 + 50.
    assert "owed" not in {line.source for line in report.sources}
    purchase = next(line for line in report.sources if line.source == "purchase")
    assert (purchase.issued, purchase.taken_back) == (150, 100)
    assert report.roll.taken_back == 70
    assert report.roll.reconciles
    assert report.closing == 0 == (await sandbox.services.ledger.balance(member.id)).available
