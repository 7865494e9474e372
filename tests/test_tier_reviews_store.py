"""storage.tier_reviews on both engines: a review batch moves tier holders down by the rules'
figures (never more steps than allowed, never below what they reach since), records and tells
each move; a notice batch tells the holders short of their tier what is missing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import ledger
from storage.audit import audit
from storage.members import Profile, register_member
from storage.tier_reviews import (
    ReviewMessages,
    ReviewRules,
    notice_batch,
    record_notices,
    record_review,
    review_batch,
    review_state,
    withdraw_figures,
)
from storage.tiers import Qualifying, add_months, change_tier, held, qualifying
from tests.postgres import ENGINES, migrated_connection

T0 = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)
REVIEW_AT = datetime(2027, 1, 1, tzinfo=UTC)
NOW = datetime(2027, 1, 20, 4, 0, tzinfo=UTC)
LEVELS = (("leaf", 0), ("tree", 5000), ("forest", 20000))
RULES = ReviewRules(
    levels=LEVELS,
    by_points=False,  # yuan: the figures' fen divided by 100, rounded down
    first_month="2026-01",
    last_month="2026-12",
    since_first="2027-01",
    since_last="2027-01",
    max_steps=1,
    review_at=REVIEW_AT,
)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine; the audit passes after every test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        report = audit(connection, integrity="none")
        assert report.ok, str(report)


def holder(
    conn: sqlite3.Connection, telegram_id: int, tier: str, fen: dict[str, int], since: datetime
) -> int:
    """A member holding `tier` from `since`, with these fen spent per month."""
    member, _ = register_member(conn, Profile(telegram_id, f"m{telegram_id}"), None, T0)
    change_tier(conn, member.id, None, tier, reason="staff", total=0, actor="t", now=since)
    add_months(conn, [(member.id, month, 0, amount) for month, amount in fen.items()])
    return member.id


def outbox(conn: sqlite3.Connection) -> dict[str, tuple[int, str, dict[str, object]]]:
    rows = conn.execute("SELECT dedupe_key, member_id, message_key, params FROM outbox")
    return {str(k): (int(m), str(mk), json.loads(p)) for k, m, mk, p in rows}


def test_a_review_batch_moves_down_by_the_figures(conn: sqlite3.Connection) -> None:
    six_thousand = holder(conn, 1, "forest", {"2026-03": 600_000}, T0)  # reaches tree
    nothing = holder(conn, 2, "forest", {}, T0)  # reaches leaf: one step only, to tree
    short = holder(conn, 3, "tree", {"2026-05": 499_999}, T0)  # 4,999.99 yuan: leaf
    kept = holder(conn, 4, "tree", {"2026-07": 500_000}, T0)  # exactly the threshold
    since = holder(conn, 5, "forest", {"2027-01": 2_000_000}, T0)  # bought since: stays
    late = holder(conn, 6, "forest", {}, NOW)  # reached after the review day: not reviewed
    messages = ReviewMessages(
        "tier_down",
        {(2, 1): {"to": "tree"}, (1, 0): {"to": "leaf"}, (2, 0): {"to": "leaf"}},
        "review:2026:",
    )
    end, moved = review_batch(conn, RULES, messages, after=0, size=100, actor="review", now=NOW)
    assert (end, moved) == (late, 3)
    assert held(conn, [six_thousand, nothing, short, kept, since, late]) == {
        six_thousand: "tree",
        nothing: "tree",
        short: "leaf",
        kept: "tree",
        since: "forest",
        late: "forest",
    }
    changes = conn.execute(
        "SELECT member_id, from_tier, to_tier, total FROM tier_changes"
        " WHERE reason = 'review' ORDER BY member_id"
    ).fetchall()
    assert [tuple(r) for r in changes] == [
        (six_thousand, "forest", "tree", 6000),
        (nothing, "forest", "tree", 0),
        (short, "tree", "leaf", 4999),
    ]
    assert outbox(conn) == {
        f"review:2026:{six_thousand}": (six_thousand, "tier_down", {"to": "tree"}),
        f"review:2026:{nothing}": (nothing, "tier_down", {"to": "tree"}),
        f"review:2026:{short}": (short, "tier_down", {"to": "leaf"}),
    }
    assert review_batch(conn, RULES, messages, after=late, size=100, actor="r", now=NOW) == (
        None,
        0,
    )


def test_a_notice_batch_tells_what_is_missing_once(conn: sqlite3.Connection) -> None:
    short = holder(conn, 1, "tree", {"2026-05": 499_999}, T0)  # 4,999 yuan: 1 missing
    enough = holder(conn, 2, "tree", {"2026-05": 500_000}, T0)
    far = holder(conn, 3, "forest", {"2026-02": 100}, T0)  # 1 yuan of 20,000
    messages = ReviewMessages(
        "tier_short", {(1, 1): {"tier": "tree"}, (2, 2): {"tier": "forest"}}, "notice:2026:"
    )
    first = notice_batch(conn, RULES, messages, after=0, size=2, now=NOW)
    assert first == (enough, 1)
    assert notice_batch(conn, RULES, messages, after=enough, size=2, now=NOW) == (far, 1)
    assert outbox(conn) == {
        f"notice:2026:{short}": (short, "tier_short", {"tier": "tree", "amount": 1}),
        f"notice:2026:{far}": (far, "tier_short", {"tier": "forest", "amount": 19_999}),
    }
    # Again: the dedupe keys refuse a second message.
    assert notice_batch(conn, RULES, messages, after=0, size=10, now=NOW) == (far, 0)


def test_a_year_s_notices_and_review_are_recorded_once(conn: sqlite3.Connection) -> None:
    assert review_state(conn, 2026) == (False, False)
    record_notices(conn, 2026, 3, NOW)
    record_notices(conn, 2026, 9, NOW)  # a second run changes nothing
    assert review_state(conn, 2026) == (True, False)
    record_review(conn, 2026, 2, NOW)
    record_review(conn, 2026, 7, NOW)
    assert review_state(conn, 2026) == (True, True)
    row = conn.execute("SELECT notices, downgrades FROM tier_reviews WHERE year = 2026").fetchone()
    assert tuple(row) == (3, 2)


def test_a_returned_purchase_leaves_its_month_once(conn: sqlite3.Connection) -> None:
    member = holder(conn, 1, "tree", {"2026-05": 500_000}, T0)
    operation = ledger.earn(
        conn, member, 50, kind="purchase", key="till:1", actor="till", expires_at=None, now=T0
    ).operation_id
    conn.execute("UPDATE tier_months SET points = 50 WHERE member_id = ?", (member,))
    assert withdraw_figures(conn, operation, member, "2026-05", 80, 100_000, NOW)
    assert not withdraw_figures(conn, operation, member, "2026-05", 80, 100_000, NOW)
    assert qualifying(conn, [member], ["2026-05"]) == {member: Qualifying(0, 400_000)}
