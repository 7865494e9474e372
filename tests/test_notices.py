"""Notices of points at the storage and programme level: booked and queued in one transaction,
once per operation, and a CSV import's sums per member and run."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from bot.config import Localized
from bot.programme.notices import adjustment_notice, import_notice, purchase_notice
from storage import ledger
from storage.errors import InvalidRequest
from storage.members import Profile, register_member
from storage.pushes import (
    Booked,
    Push,
    book_and_notify,
    due,
    outbox_counts,
    release_import_notices,
    set_receipts,
    stage_import_batch,
)
from tests.postgres import ENGINES, migrated_connection

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
ECO = Localized.model_validate({"zh-CN": "绿色环保商品", "en": "Eco-friendly products"})


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


@pytest.fixture
def alice(conn: sqlite3.Connection) -> int:
    return register_member(conn, Profile(11, "alice"), None, NOW)[0].id


def earn(member_id: int, points: int, key: str) -> partial[ledger.OperationResult]:
    return partial(
        ledger.earn,
        member_id=member_id,
        points=points,
        kind="purchase",
        key=key,
        actor="t",
        expires_at=None,
        now=NOW,
    )


def pending(conn: sqlite3.Connection) -> list[tuple[str, str, dict[str, object]]]:
    return [(m.dedupe_key, m.message_key, m.params) for m in due(conn, marketing=True, limit=50)]


def test_a_purchase_is_booked_with_its_receipt_and_a_replay_queues_nothing(
    conn: sqlite3.Connection, alice: int
) -> None:
    notice = purchase_notice(Decimal("12.5"), ECO, None, 25)
    first = book_and_notify(conn, earn(alice, 25, "purchase:R1"), notice, NOW)
    again = book_and_notify(conn, earn(alice, 25, "purchase:R1"), notice, NOW)
    assert again.replayed and again.operation_id == first.operation_id
    assert pending(conn) == [
        (
            f"points:{first.operation_id}",
            "notice.purchase",
            {
                "amount": "12.50",
                "balance": 25,
                "category": {"en": "Eco-friendly products", "zh-CN": "绿色环保商品"},
                "points": 25,
            },
        )
    ]


def test_a_notice_that_cannot_be_queued_books_nothing(conn: sqlite3.Connection, alice: int) -> None:
    def broken(_booked: Booked) -> Push:
        return Push("points:x", alice, "loud", "notice.purchase", {})  # an unknown category

    with pytest.raises(InvalidRequest, match="unknown push category"):
        book_and_notify(conn, earn(alice, 25, "purchase:R2"), broken, NOW)
    assert ledger.available(conn, alice, NOW) == 0
    assert outbox_counts(conn) == {}


def test_receipts_off_books_the_purchase_but_queues_no_receipt_and_adjustments_still_go(
    conn: sqlite3.Connection, alice: int
) -> None:
    set_receipts(conn, 11, False)
    book_and_notify(
        conn, earn(alice, 25, "purchase:R3"), purchase_notice(Decimal(25), ECO, None, 25), NOW
    )
    assert ledger.available(conn, alice, NOW) == 25
    assert pending(conn) == []
    adjust = partial(
        ledger.adjust, member_id=alice, delta=-5, key="adjust:1", actor="t", reason="更正", now=NOW
    )
    done = book_and_notify(conn, adjust, adjustment_notice(-5, "更正"), NOW)
    assert pending(conn) == [
        (
            f"points:{done.operation_id}",
            "notice.adjust_taken",
            {"balance": 20, "points": 5, "reason": "更正"},
        )
    ]


def test_an_import_run_s_sums_are_queued_once_and_forgotten(
    conn: sqlite3.Connection, alice: int
) -> None:
    def bought(n: int, amount: str, kind: str = "purchase") -> ledger.OperationResult:
        return ledger.earn(
            conn,
            alice,
            10 if kind == "purchase" else 5,
            kind=kind,
            key=f"p{n}:{kind}",
            actor="t",
            expires_at=None,
            meta={"amount": amount} if kind == "purchase" else {"purchase": f"p{n}:purchase"},
            now=NOW,
        )

    # Two batches of one run: the member is told once, their purchases summed; a campaign's
    # extra points on a purchase add to the points, not to the purchases or the amount.
    first = [bought(0, "9.50"), bought(1, "10.50")]
    stage_import_batch(conn, "run-1", [op.operation_id for op in first])
    second = [bought(2, "1.00"), bought(2, "1.00", kind="campaign")]
    stage_import_batch(conn, "run-1", [op.operation_id for op in second])
    stage_import_batch(conn, "run-1", [])  # a batch of replays books nothing
    later = NOW + timedelta(minutes=1)
    assert release_import_notices(conn, import_notice, later, run="run-1") == 1
    assert pending(conn) == [
        (
            f"points:import:{alice}:{first[0].operation_id}",
            "notice.import",
            {"amount": "21.00", "balance": 35, "count": 3, "points": 35},
        )
    ]
    assert release_import_notices(conn, import_notice, later) == 0  # nothing left to queue
