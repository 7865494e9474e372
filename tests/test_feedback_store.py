"""storage.feedback: suggestions filed once per message, decided and paid once, and the audit
that ties an approval to its reward."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from storage import ledger
from storage.audit import audit
from storage.errors import InvalidRequest, InvalidState, LimitReached, NotFound
from storage.feedback import (
    Feedback,
    feedback_item,
    pending_feedback,
    review_feedback,
    submit_feedback,
)
from storage.members import Member, Profile, register_member
from storage.pushes import SERVICE, Push
from storage.sql import engine
from tests.postgres import ENGINES, migrated_connection

T0 = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=365)
DAY = date(2026, 5, 1)


@pytest.fixture(params=ENGINES)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A new database on each engine (tests that tamper with it to prove the audit notices
    use this)."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


@pytest.fixture
def conn(fresh: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A new database that must pass the audit after the test."""
    yield fresh
    report = audit(fresh, integrity="quick")
    assert report.ok, str(report)


@pytest.fixture
def alice(fresh: sqlite3.Connection) -> Member:
    return register_member(fresh, Profile(1, "Alice"), None, T0)[0]


def balance(conn: sqlite3.Connection, member: Member) -> int:
    return ledger.balance(conn, member.id, T0).available


def notice(item: Feedback) -> Push:
    return Push(
        f"feedback:{item.id}:decision",
        item.member_id,
        SERVICE,
        "feedback.notice_approved" if item.status == "approved" else "feedback.notice_rejected",
        {"points": item.reward_points, "excerpt": item.text[:10]},
    )


def file(
    conn: sqlite3.Connection, member: Member, source: str, text: str = "More bike racks"
) -> Feedback:
    return submit_feedback(
        conn, member.id, text, source=source, local_day=DAY, daily_limit=3, now=T0
    )


def test_feedback_is_paid_once_when_approved(conn: sqlite3.Connection, alice: Member) -> None:
    item = file(conn, alice, "tg:1:10")
    assert item.status == "pending" and item.text == "More bike racks"
    assert file(conn, alice, "tg:1:10").replayed  # the same message again files nothing
    approved = review_feedback(
        conn,
        item.id,
        approve=True,
        reward_points=20,
        reward_expires_at=EXPIRES,
        actor="telegram:9",
        now=T0,
        notice=notice,
    )
    assert (approved.status, approved.reward_points, approved.reviewed_by) == (
        "approved",
        20,
        "telegram:9",
    )
    assert balance(conn, alice) == 20
    paid = ledger.operation(conn, approved.reward_operation_id or 0)
    # Its own kind: the statement says "suggestion reward", not "survey reward".
    assert (paid.key, paid.kind) == (f"feedback:{item.id}", "feedback")
    with pytest.raises(InvalidState) as caught:
        review_feedback(
            conn,
            item.id,
            approve=True,
            reward_points=20,
            reward_expires_at=EXPIRES,
            actor="x",
            now=T0,
        )
    assert caught.value.status == "approved"
    assert balance(conn, alice) == 20
    [queued] = conn.execute("SELECT dedupe_key, message_key, params FROM outbox").fetchall()
    assert tuple(queued) == (
        f"feedback:{item.id}:decision",
        "feedback.notice_approved",
        '{"excerpt": "More bike ", "points": 20}',
    )


def test_rejected_feedback_pays_nothing(conn: sqlite3.Connection, alice: Member) -> None:
    item = file(conn, alice, "tg:1:11")
    rejected = review_feedback(
        conn,
        item.id,
        approve=False,
        reward_points=20,
        reward_expires_at=EXPIRES,
        actor="telegram:9",
        now=T0,
        notice=notice,
    )
    assert (rejected.status, rejected.reward_points, rejected.reward_operation_id) == (
        "rejected",
        0,
        None,
    )
    assert balance(conn, alice) == 0
    with pytest.raises(InvalidState):
        review_feedback(
            conn,
            item.id,
            approve=True,
            reward_points=20,
            reward_expires_at=EXPIRES,
            actor="x",
            now=T0,
        )
    assert balance(conn, alice) == 0
    with pytest.raises(NotFound):
        feedback_item(conn, item.id + 100)


def test_feedback_daily_limit(conn: sqlite3.Connection, alice: Member) -> None:
    for n in range(3):
        file(conn, alice, f"tg:1:{n}")
    with pytest.raises(LimitReached) as caught:
        file(conn, alice, "tg:1:3")
    assert caught.value.limit == 3
    # The next local day has room again.
    tomorrow = submit_feedback(
        conn,
        alice.id,
        "Again",
        source="tg:1:4",
        local_day=DAY + timedelta(days=1),
        daily_limit=3,
        now=T0,
    )
    assert tomorrow.local_day == DAY + timedelta(days=1)
    items, total = pending_feedback(conn, limit=2)
    assert total == 4 and [i.id for i in items] == [1, 2]


def test_feedback_from_another_members_message_is_refused(
    conn: sqlite3.Connection, alice: Member
) -> None:
    bob = register_member(conn, Profile(2, "Bob"), None, T0)[0]
    file(conn, alice, "tg:1:10")
    with pytest.raises(InvalidRequest):
        file(conn, bob, "tg:1:10")


def test_decided_feedback_is_final_in_the_database(conn: sqlite3.Connection, alice: Member) -> None:
    item = file(conn, alice, "tg:1:12")
    review_feedback(
        conn, item.id, approve=False, reward_points=20, reward_expires_at=EXPIRES, actor="x", now=T0
    )
    with pytest.raises(sqlite3.IntegrityError, match="once"):
        conn.execute("UPDATE feedback SET status = 'approved'")
    with pytest.raises(sqlite3.IntegrityError, match="never changes"):
        conn.execute("UPDATE feedback SET text = 'edited'")


# --- the audit -------------------------------------------------------------------------------


def test_the_audit_finds_an_approval_that_was_not_paid(
    fresh: sqlite3.Connection, alice: Member
) -> None:
    item = file(fresh, alice, "tg:1:1")
    fresh.execute(
        "UPDATE feedback SET status = 'approved', reviewed_at = 1, reviewed_by = 'x',"
        " reward_points = 0 WHERE id = ?",
        (item.id,),
    )
    assert audit(fresh, integrity="none").ok  # approved without a reward is consistent
    paid = ledger.earn(
        fresh, alice.id, 20, kind="survey", key="feedback:1", actor="x", expires_at=None, now=T0
    )
    on_table = " ON feedback" if engine(fresh) == "postgres" else ""
    fresh.execute(f"DROP TRIGGER feedback_decided_once{on_table}")
    fresh.execute(
        "UPDATE feedback SET reward_points = 30, reward_operation_id = ? WHERE id = ?",
        (paid.operation_id, item.id),
    )
    checks = {v.check for v in audit(fresh, integrity="none").violations}
    assert checks == {"feedback_reward", "triggers"}


@pytest.mark.parametrize(("kind", "ok"), [("survey", True), ("purchase", False)])
def test_the_audit_knows_how_suggestions_were_paid_before_they_had_a_kind(
    fresh: sqlite3.Connection, alice: Member, kind: str, ok: bool
) -> None:
    # Before migration 8 a suggestion's reward was booked as a 'survey' operation, and
    # operations never change: the audit accepts that, and nothing else but 'feedback'.
    item = file(fresh, alice, "tg:1:1")
    paid = ledger.earn(
        fresh, alice.id, 20, kind=kind, key="feedback:1", actor="x", expires_at=None, now=T0
    )
    fresh.execute(
        "UPDATE feedback SET status = 'approved', reviewed_at = 1, reviewed_by = 'x',"
        " reward_points = 20, reward_operation_id = ? WHERE id = ?",
        (paid.operation_id, item.id),
    )
    checks = {v.check for v in audit(fresh, integrity="none").violations}
    assert checks == (set() if ok else {"feedback_reward"})
