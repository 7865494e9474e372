"""storage.pushes and storage.health on both engines: the outbox from queue to outcome, a
crash's pushes settled, announced term changes and broadcasts to every member, the promise
kept, job runs, and the health sample of the backlog."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from storage import pushes
from storage.errors import InvalidRequest, NotFound
from storage.health import store_sample
from storage.members import Profile, register_member
from storage.pushes import MARKETING, SERVICE, Push
from tests.postgres import ENGINES, migrated_connection

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine, with two members (Telegram ids 1 and 2)."""
    with migrated_connection(request.param, tmp_path) as connection:
        for telegram_id in (1, 2):
            register_member(connection, Profile(telegram_id, f"m{telegram_id}"), None, NOW)
        yield connection


def member_id(conn: sqlite3.Connection, telegram_id: int) -> int:
    return pushes.preferences(conn, telegram_id).member_id


def test_the_outbox_from_queue_to_outcome(conn: sqlite3.Connection) -> None:
    one, two = member_id(conn, 1), member_id(conn, 2)
    queued = [
        Push("s:1", one, SERVICE, "notice", {"points": 5}),
        Push("m:1", one, MARKETING, "offer", {}, [[("label", "data")]]),
        Push("s:2", two, SERVICE, "notice", {"points": 7}),
    ]
    assert pushes.enqueue(conn, queued, NOW) == 3
    assert pushes.enqueue(conn, [*queued, Push("s:3", two, SERVICE, "x", {})], NOW) == 1
    assert pushes.enqueue(conn, [], NOW) == 0
    with pytest.raises(InvalidRequest):
        pushes.enqueue(conn, [Push("bad", one, "spam", "x", {})], NOW)
    service_only = pushes.due(conn, marketing=False, limit=10)
    assert [m.dedupe_key for m in service_only] == ["s:1", "s:2", "s:3"]
    everything = pushes.due(conn, marketing=True, limit=10)
    assert [m.dedupe_key for m in everything] == ["s:1", "m:1", "s:2", "s:3"]
    offer = everything[1]
    assert offer.buttons == [[("label", "data")]] and offer.params == {}
    assert everything[0].params == {"points": 5} and everything[0].reachable
    sample = store_sample(conn, marketing=False)
    assert (sample.pending, sample.oldest_pending_at, sample.oldest_sendable_at) == (4, NOW, NOW)
    assert pushes.start_sending(conn, everything[0].id) == 1
    assert pushes.start_sending(conn, everything[0].id) == 0  # no longer pending
    pushes.mark(conn, everything[0].id, "sent", NOW)
    pushes.mark(conn, everything[2].id, "failed", NOW, "400")
    with pytest.raises(InvalidRequest):
        pushes.mark(conn, everything[2].id, "lost", NOW)
    sent_at = conn.execute(
        "SELECT sent_at FROM outbox WHERE id = ?", (everything[0].id,)
    ).fetchone()[0]
    assert sent_at is not None
    # A crash while handing a service and a marketing push to Telegram.
    pushes.start_sending(conn, everything[1].id)
    pushes.start_sending(conn, everything[3].id)
    assert pushes.settle_interrupted(conn, resend_marketing=False) == pushes.Settled(1, 1)
    assert pushes.outbox_counts(conn) == {"sent": 1, "failed": 1, "unconfirmed": 1, "pending": 1}
    sample = store_sample(conn, marketing=True)
    assert sample.pending == 1 and sample.oldest_sendable_at == NOW


def test_preferences_and_reachability(conn: sqlite3.Connection) -> None:
    assert pushes.set_marketing(conn, 1, False).marketing_opt_in is False
    assert pushes.set_receipts(conn, 1, False).receipts_opt_in is False
    assert not pushes.receipts_wanted(conn, member_id(conn, 1))
    assert pushes.set_reachable(conn, 2, False) and not pushes.set_reachable(conn, 9, False)
    assert pushes.unreachable_telegram_ids(conn) == [2]
    with pytest.raises(NotFound):
        pushes.set_marketing(conn, 9, True)
    born = pushes.set_birthday(conn, 1, 12, 10, None, now=NOW, change_allowed_after=None)
    assert (born.birthday_month, born.birthday_day, born.birthday_entered_at) == (12, 10, NOW)
    assert [b.member_id for b in pushes.birthdays_on(conn, [(12, 10), (1, 1)])] == [
        member_id(conn, 1)
    ]


def test_a_term_change_is_announced_to_everyone_once(conn: sqlite3.Connection) -> None:
    change, told = pushes.announce_term_change(
        conn,
        term="expiry",
        replaces=None,
        value={"months": 12},
        effective_on=date(2027, 1, 1),
        actor="admin",
        now=NOW,
        message_key="policy",
        params={"term": "expiry"},
    )
    assert told == 2 and change.value == {"months": 12} and change.effective_on == date(2027, 1, 1)
    with pytest.raises(InvalidRequest):
        pushes.announce_term_change(
            conn,
            term="expiry",
            replaces={"months": 12},
            value={"months": 6},
            effective_on=date(2027, 1, 1),
            actor="admin",
            now=NOW,
            message_key="policy",
            params={},
        )
    # The refused one spoiled nothing: the transaction goes on.
    assert [c.id for c in pushes.term_changes(conn)] == [change.id]
    keys = {r[0] for r in conn.execute("SELECT dedupe_key FROM outbox")}
    assert keys == {
        f"policy:{change.id}:{member_id(conn, 1)}",
        f"policy:{change.id}:{member_id(conn, 2)}",
    }


def test_a_broadcast_is_queued_once_when_confirmed(conn: sqlite3.Connection) -> None:
    draft = pushes.create_broadcast(conn, "hello", "admin", NOW)
    assert draft.id > 0 and draft.confirmed_at is None
    with pytest.raises(NotFound):
        pushes.confirm_broadcast(conn, draft.id, "someone else", NOW, "broadcast")
    assert pushes.confirm_broadcast(conn, draft.id, "admin", NOW, "broadcast") == 2
    assert pushes.confirm_broadcast(conn, draft.id, "admin", NOW, "broadcast") == 0
    assert pushes.create_broadcast(conn, "again", "admin", NOW).id != draft.id


def test_the_promise_and_job_runs(conn: sqlite3.Connection) -> None:
    assert pushes.promised_terms(conn) is None
    pushes.record_promise(conn, {"expiry": 12, "rate": "1.0"}, NOW)
    later = NOW + timedelta(days=1)
    pushes.record_promise(conn, {"expiry": 12, "rate": "2.0"}, later)
    assert pushes.promised_terms(conn) == {"expiry": (12, NOW), "rate": ("2.0", later)}
    pushes.record_promise(conn, {"rate": "2.0"}, later)
    assert pushes.promised_terms(conn) == {"rate": ("2.0", later)}
    day = date(2026, 11, 25)
    assert not pushes.job_ran(conn, "daily", day) and pushes.last_run_day(conn, "daily") is None
    pushes.record_job(conn, "daily", day, NOW, NOW, "ok")
    assert pushes.job_ran(conn, "daily", day) and pushes.last_run_day(conn, "daily") == day
