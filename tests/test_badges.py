"""Badges and badge sets: a badge for a task's first completion (any kind) or a lifetime
milestone, a set's grand prize paid once per member even when completions race, the item prize
given like a birthday gift, and the audit catching a prize paid twice or not at all."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import Badge, Config, load_config
from bot.programme.badges import award_milestones, eco_categories, milestones_moved_by_purchase
from bot.programme.mall import catalog_entries
from bot.programme.tasks import advance_task, survey_completion_effects
from storage import badges as badge_store
from storage import surveys as survey_store
from storage.audit import audit
from storage.badges import Badges, set_prize_key
from storage.ledger import Ledger
from storage.mall import Mall
from storage.members import Members, Profile
from storage.pushes import Push
from storage.store import Store
from storage.surveys import QuestionSpec, SurveySpec
from storage.tasks import TaskStep
from tests.postgres import ENGINES, opened_store

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
PIONEER = ("sharer", "eco_regular", "streaker", "eco_1000")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn: every store test runs on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def config() -> Config:
    return load_config(SAMPLE)


async def _member(store: Store, telegram_id: int = 1) -> int:
    member, _ = await Members(store).register(Profile(telegram_id, f"m{telegram_id}"), now=NOW)
    return member.id


async def _complete(
    store: Store, config: Config, member_id: int, task_id: str, now: datetime = NOW
) -> TaskStep:
    """Complete a task in one move, the way every task kind moves progress."""
    task = config.task(task_id)
    assert task is not None
    return await store.write(
        lambda conn: advance_task(conn, task, member_id, task.target, config, now, actor="t")
    )


async def _purchase(
    store: Store, config: Config, member_id: int, key: str, amount: str, category: str
) -> None:
    """A booked purchase and, in its transaction, what the purchase hook runs for badges."""

    def book(conn: sqlite3.Connection) -> None:
        from storage.ledger import operations

        operations.earn(
            conn,
            member_id,
            int(Decimal(amount)),
            kind="purchase",
            key=key,
            actor="pos",
            expires_at=None,
            meta={"amount": amount, "category": category, "purchased_on": "2026-11-25"},
            now=NOW,
        )
        moved = milestones_moved_by_purchase(category, config)
        award_milestones(conn, member_id, config, NOW, changed=moved)

    await store.write(book)


def _outbox(conn: sqlite3.Connection) -> list[tuple[str, str, dict[str, object]]]:
    rows = conn.execute("SELECT dedupe_key, message_key, params FROM outbox ORDER BY id")
    return [(row[0], row[1], json.loads(row[2])) for row in rows]


async def test_a_task_completion_earns_its_badge_once_whatever_the_kind(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        member = await _member(store)
        # share (daily), review (monthly), check-in: each through the one seam.
        await _complete(store, config, member, "green_share")
        await _complete(store, config, member, "green_share", NOW + timedelta(days=1))
        await _complete(store, config, member, "review")
        await _complete(store, config, member, "events")
        held = await Badges(store).badges_of(member)
        assert set(held) == {"sharer", "reviewer", "learner"}
        assert held["sharer"].source == "task" and held["sharer"].earned_at == NOW
        notices = await store.read(_outbox)
        earned = [n for n in notices if n[1] == "badges.notice_earned"]
        # The second day's share pays its points again but no second badge nor message.
        assert [n[0] for n in earned] == [
            f"badge:sharer:{member}",
            f"badge:reviewer:{member}",
            f"badge:learner:{member}",
        ]
        assert earned[0][2]["badge"] == {"zh-CN": "绿色分享家", "en": "Green sharer"}


async def test_eco_spend_milestone_counts_whole_yuan_of_green_categories_only(
    tmp_path: Path, config: Config
) -> None:
    assert eco_categories(config) == {"eco", "refill"}
    async with opened_store(engine, tmp_path) as store:
        member = await _member(store)
        await _purchase(store, config, member, "p1", "600.00", "eco")
        await _purchase(store, config, member, "p2", "5000.00", "general")  # no impact factor
        await _purchase(store, config, member, "p3", "399.99", "refill")
        figures = await Badges(store).lifetime_figures(member, eco_categories(config))
        assert (figures.eco_spend_yuan, figures.purchases) == (999, 3)
        assert figures.green_points == 600 + 399
        assert "eco_1000" not in await Badges(store).badges_of(member)
        await _purchase(store, config, member, "p4", "1.00", "eco")
        held = await Badges(store).badges_of(member)
        assert held["eco_1000"].source == "milestone"


async def test_count_milestones_purchases_green_points_and_surveys(
    tmp_path: Path, engine: str
) -> None:
    base = load_config(SAMPLE)
    extra = [
        Badge.model_validate(
            {"id": id_, "name": {"zh-CN": zh, "en": en}, "emoji": "🌱", "milestone": what,
             "threshold": threshold}
        )
        for id_, zh, en, what, threshold in (
            ("regular", "常客", "Regular", "purchases", 2),
            ("green_500", "绿色五百", "Green 500", "green_points", 500),
            ("surveyor", "问卷达人", "Surveyor", "surveys_completed", 1),
        )
    ]  # fmt: skip
    config = base.model_copy(update={"badges": [*base.badges, *extra]})
    async with opened_store(engine, tmp_path) as store:
        member = await _member(store)
        await _purchase(store, config, member, "p1", "499.00", "eco")
        assert set(await Badges(store).badges_of(member)) == set()
        await _purchase(store, config, member, "p2", "1.00", "general")
        assert set(await Badges(store).badges_of(member)) == {"regular"}
        await _purchase(store, config, member, "p3", "1.00", "refill")
        assert "green_500" in await Badges(store).badges_of(member)
        # A survey's completing transaction runs the hook the programme puts on its spec.
        spec = SurveySpec(
            id="quick",
            reward_points=5,
            opens_at=NOW - timedelta(days=1),
            closes_at=NOW + timedelta(days=1),
            questions=(QuestionSpec(id="q1", kind="rating"),),
            on_complete=survey_completion_effects("quick", config),
        )
        await store.write(lambda conn: survey_store.start(conn, spec, member, now=NOW))
        await store.write(
            lambda conn: survey_store.rate(
                conn, spec, member, 0, 5, reward_expires_at=None, actor="m", now=NOW
            )
        )
        held = await Badges(store).badges_of(member)
        assert held["surveyor"].source == "milestone"


async def test_a_complete_set_pays_its_points_once_with_its_own_source(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        member = await _member(store)
        ledger = Ledger(store)
        for task_id in ("green_share", "eco_monthly", "eco_streak"):
            await _complete(store, config, member, task_id)
        assert await Badges(store).prizes_of(member) == {}
        before = (await ledger.balance(member, NOW)).available
        await _purchase(store, config, member, "big", "1000.00", "eco")
        prizes = await Badges(store).prizes_of(member)
        assert list(prizes) == ["green_pioneer"]
        assert prizes["green_pioneer"].points == 500
        assert (await ledger.balance(member, NOW)).available == before + 1000 + 500
        # The sample dates badge points like other bonuses: they expire.
        op = await store.read(
            lambda conn: conn.execute(
                "SELECT o.kind, o.meta, l.expires_at FROM operations AS o"
                " JOIN lots AS l ON l.operation_id = o.id WHERE o.idempotency_key = ?",
                (set_prize_key("green_pioneer", member),),
            ).fetchone()
        )
        assert op[0] == "badge" and json.loads(op[1]) == {"badge_set": "green_pioneer"}
        notices = [n for n in await store.read(_outbox) if n[1] == "badges.notice_set_points"]
        assert notices == [
            (
                set_prize_key("green_pioneer", member),
                "badges.notice_set_points",
                {"set": {"zh-CN": "绿色先锋", "en": "Green pioneer"}, "points": 500},
            )
        ]
        # More completions and purchases: nothing more.
        await _complete(store, config, member, "green_share", NOW + timedelta(days=1))
        await _purchase(store, config, member, "more", "10.00", "eco")
        assert len(await Badges(store).prizes_of(member)) == 1
        report = await store.read(lambda conn: audit(conn, badge_sets=_sets(config)))
        assert report.ok, str(report)


def _sets(config: Config) -> dict[str, tuple[str, ...]]:
    return {s.id: s.badges for s in config.badge_sets}


async def test_completions_racing_pay_the_set_prize_once(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        members = [await _member(store, i) for i in (1, 2, 3)]
        for member in members:
            await _complete(store, config, member, "green_share")
            await _complete(store, config, member, "eco_monthly")
        # The last two badges of the set, and repeats, all at once for every member.
        jobs = []
        for member in members:
            jobs += [_complete(store, config, member, "eco_streak") for _ in range(5)]
            jobs += [
                _purchase(store, config, member, f"r{member}:{i}", "1000.00", "eco")
                for i in range(5)
            ]
        await asyncio.gather(*jobs)
        for member in members:
            assert set(await Badges(store).badges_of(member)) >= set(PIONEER)
            assert list(await Badges(store).prizes_of(member)) == ["green_pioneer"]
        paid = await store.read(
            lambda conn: conn.execute(
                "SELECT member_id, count(*) FROM operations WHERE kind = 'badge' GROUP BY member_id"
            ).fetchall()
        )
        assert sorted(tuple(row) for row in paid) == [(m, 1) for m in members]
        report = await store.read(lambda conn: audit(conn, badge_sets=_sets(config)))
        assert report.ok, str(report)

        # Even a writer that skipped the check could not record a second prize.
        def again(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO badge_set_prizes (member_id, set_id, badges, operation_id,"
                " awarded_at) VALUES (?, 'green_pioneer', '[]', 1, 0)",
                (members[0],),
            )

        with pytest.raises(sqlite3.IntegrityError):
            await store.write(again)


async def test_an_item_prize_is_given_free_and_listed_with_the_redemptions(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        mall = Mall(store)
        await mall.sync_catalog(catalog_entries(config), NOW)
        member = await _member(store)
        ledger = Ledger(store)
        await _complete(store, config, member, "review")
        await _complete(store, config, member, "events")
        before = (await ledger.balance(member, NOW)).available
        await _complete(store, config, member, "benefits_survey")
        # The bag's price was credited from the 'badge' source and spent on it at once.
        assert (await ledger.balance(member, NOW)).available == before
        page, total = await mall.redemptions(member)
        assert total == 1 and page[0].sku == "BAG-01" and page[0].status == "issued"
        prize = (await Badges(store).prizes_of(member))["community"]
        assert prize.redemption_id == page[0].id and prize.points == 300
        # The audit trail names who gave it: the badges, not a birthday.
        actors = await store.read(
            lambda conn: conn.execute(
                "SELECT DISTINCT actor FROM operations WHERE idempotency_key LIKE 'badgeset:%'"
                " OR id = (SELECT spend_operation_id FROM redemptions WHERE id = ?)",
                (page[0].id,),
            ).fetchall()
        )
        assert [a[0] for a in actors] == ["system:badges"]
        notice = [n for n in await store.read(_outbox) if n[1] == "badges.notice_set_item"]
        assert notice[0][2]["code"] == page[0].code
        assert notice[0][2]["item"] == {"zh-CN": "帆布环保购物袋", "en": "Canvas shopping bag"}
        report = await store.read(lambda conn: audit(conn, badge_sets=_sets(config)))
        assert report.ok, str(report)


async def test_an_item_that_cannot_be_given_comes_as_its_price_in_points(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        mall = Mall(store)
        await mall.sync_catalog(catalog_entries(config), NOW)
        member = await _member(store)
        await store.write(
            lambda conn: conn.execute("UPDATE catalog_items SET stock = 0 WHERE sku = 'BAG-01'")
        )
        ledger = Ledger(store)
        for task_id in ("review", "events"):
            await _complete(store, config, member, task_id)
        before = (await ledger.balance(member, NOW)).available
        step = await _complete(store, config, member, "benefits_survey")
        assert step.completed_now  # the task still completed: the prize did not undo it
        assert (await ledger.balance(member, NOW)).available == before + 300
        assert (await mall.redemptions(member))[1] == 0
        assert (await Badges(store).prizes_of(member))["community"].redemption_id is None
        report = await store.read(lambda conn: audit(conn, badge_sets=_sets(config)))
        assert report.ok, str(report)


async def test_the_audit_catches_a_forged_second_prize_and_an_unpaid_set(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        member = await _member(store)
        for task_id in ("green_share", "eco_monthly", "eco_streak"):
            await _complete(store, config, member, task_id)
        await _purchase(store, config, member, "big", "1000.00", "eco")
        # A second prize booked around the rules, under another key.
        await Ledger(store).earn(
            member,
            500,
            kind="badge",
            key=f"badgeset:green_pioneer:{member}:again",
            actor="forger",
            expires_at=None,
            meta={"badge_set": "green_pioneer"},
            now=NOW,
        )
        # Badges slipped in without the set's prize.
        other = await _member(store, 2)

        def slip(conn: sqlite3.Connection) -> None:
            for badge in ("reviewer", "learner", "voice"):
                badge_store.earn_badge(conn, other, badge, source="task", now=NOW)

        await store.write(slip)
        report = await store.read(lambda conn: audit(conn, badge_sets=_sets(config)))
        checks = {v.check for v in report.violations}
        assert checks == {"badge_operation_has_prize", "badge_set_unpaid"}, str(report)


async def test_a_prize_recorded_for_badges_not_held_is_caught(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        member = await _member(store)

        def forge(conn: sqlite3.Connection) -> None:
            badge_store.pay_set_points(
                conn,
                member,
                "green_pioneer",
                500,
                badges=PIONEER,
                expires_at=None,
                notice=Push("forged", member, "service", "badges.notice_set_points", {}),
                now=NOW,
            )

        await store.write(forge)
        report = await store.read(audit)
        assert {v.check for v in report.violations} == {"badge_prize_set_held"}, str(report)


async def test_milestones_skip_the_ledger_once_all_are_held(
    tmp_path: Path, config: Config, engine: str
) -> None:
    async with opened_store(engine, tmp_path) as store:
        member = await _member(store)
        await _purchase(store, config, member, "big", "1000.00", "eco")
        # Holding every milestone badge: nothing to compute, nothing earned.
        assert await store.write(lambda conn: award_milestones(conn, member, config, NOW)) == []


def test_a_purchase_outside_the_green_categories_moves_only_the_purchase_count(
    config: Config,
) -> None:
    # So the CSV import does not scan a member's history for eco spend on every plain purchase.
    assert milestones_moved_by_purchase("general", config) == {"purchases"}
    assert milestones_moved_by_purchase("eco", config) == {
        "purchases",
        "eco_spend_yuan",
        "green_points",
    }
    assert milestones_moved_by_purchase(None, config) == milestones_moved_by_purchase("eco", config)
