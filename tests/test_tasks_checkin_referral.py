"""Check-in events and referrals below the chat: what /event_new accepts, the database's own
guards (window, capacity, once per member; a friend once, a first purchase and a credit
once), the referral rule (new friends only, first purchase, monthly cap, no open task) and a
replayed purchase at the till crediting nothing twice."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Config
from bot.programme.errors import RuleError
from bot.programme.events import code_from_payload, event_code, parse_event
from bot.programme.purchases import record_purchase
from bot.programme.referrals import credit_referral, friend_period, referrer_from_payload
from bot.programme.tasks import advance_task
from bot.programme.till import command_source
from storage import ledger
from storage.audit import audit
from storage.events import check_in, create_event, event_counts
from storage.members import Member, Profile, luhn_digit, register_member
from storage.referrals import credit_first_purchase, referral_counts, register_referred
from storage.tasks import progress_of
from tests.conftest import NOW, Sandbox
from tests.postgres import ENGINES, migrated_connection

# Noon in Shanghai on 2026-11-25, as the conversation tests.
T0 = NOW
LOCAL_DAY = date(2026, 11, 25)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A new database on each engine that must pass the audit after the test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        report = audit(connection, integrity="quick")
        assert report.ok, str(report)


def member(conn: sqlite3.Connection, telegram_id: int, name: str) -> Member:
    return register_member(conn, Profile(telegram_id, name), None, T0)[0]


def available(conn: sqlite3.Connection, who: Member, now: datetime = T0) -> int:
    return ledger.balance(conn, who.id, now).available


def purchase(conn: sqlite3.Connection, who: Member, key: str, now: datetime = T0) -> int:
    """A purchase booked for the member (its operation id)."""
    return ledger.earn(
        conn, who.id, 20, kind="purchase", key=key, actor="till", expires_at=None, now=now
    ).operation_id


# --- /event_new


def test_event_new_reads_dates_windows_capacity_and_names(sample_config: Config) -> None:
    draft = parse_event(["2026-12-05", "14:00-16:00", "30", "亲子", "讲座"], sample_config, T0)
    tz = sample_config.program.tz
    assert draft.starts_at == datetime(2026, 12, 5, 14, 0, tzinfo=tz)
    assert draft.ends_at == datetime(2026, 12, 5, 16, 0, tzinfo=tz)
    assert (draft.capacity, draft.name) == (30, "亲子 讲座")
    # Full-width digits and colon from a Chinese input method, no capacity, a month-day date.
    draft = parse_event(["１２-０５", "１４：００－１６：００", "讲座"], sample_config, T0)
    assert (draft.starts_at.date(), draft.capacity, draft.name) == (date(2026, 12, 5), None, "讲座")
    # A month-day already past this year means next year's.
    draft = parse_event(["01-10", "09:00-10:00", "新年讲座"], sample_config, T0)
    assert draft.starts_at.date() == date(2027, 1, 10)
    # A lone number is the name, not a capacity.
    assert parse_event(["2026-12-05", "14:00-16:00", "2026"], sample_config, T0).name == "2026"


@pytest.mark.parametrize(
    ("words", "key"),
    [
        ([], "events.usage"),
        (["2026-12-05", "讲座"], "events.usage"),
        (["2026-13-05", "14:00-16:00", "讲座"], "events.usage"),
        (["2026-12-05", "14:00", "讲座"], "events.usage"),
        (["2026-12-05", "25:00-26:00", "讲座"], "events.usage"),
        (["2026-12-05", "16:00-14:00", "讲座"], "events.bad_window"),
        (["2026-12-05", "14:00-16:00", "0", "讲座"], "events.bad_capacity"),
        (["2026-12-05", "14:00-16:00", "x" * 61], "events.bad_name"),
        (["2026-11-25", "08:00-11:00", "讲座"], "events.window_over"),
        (["2028-12-05", "14:00-16:00", "讲座"], "events.too_far"),
    ],
)
def test_event_new_refuses_what_it_cannot_read(
    sample_config: Config, words: list[str], key: str
) -> None:
    with pytest.raises(RuleError) as refused:
        parse_event(words, sample_config, T0)
    assert refused.value.key == key


def test_event_codes_read_as_typed_or_scanned() -> None:
    assert event_code(" k7p2qx ") == "K7P2QX"
    assert event_code("K7P2Q0") is None  # 0 is never in a code (it reads as O)
    assert code_from_payload("ev_K7P2QX") == "K7P2QX"
    assert code_from_payload("fam_abc") is None
    assert code_from_payload(None) is None


# --- the database's guards for check-ins


def test_the_database_holds_window_capacity_and_once_per_member(conn: sqlite3.Connection) -> None:
    ann, bob, cat = member(conn, 1, "Ann"), member(conn, 2, "Bob"), member(conn, 3, "Cat")
    event = create_event(conn, "讲座", T0, T0 + timedelta(hours=2), 2, created_by="t", now=T0)
    moved: list[int] = []

    def advance(_conn: sqlite3.Connection) -> str | None:
        moved.append(1)
        return None

    day = LOCAL_DAY.isoformat()
    assert check_in(conn, event.id, ann.id, day=day, advance=advance, now=T0).status == "checked_in"
    assert check_in(conn, event.id, ann.id, day=day, advance=advance, now=T0).status == "already"
    assert check_in(conn, event.id, bob.id, day=day, advance=advance, now=T0).status == "checked_in"
    assert check_in(conn, event.id, cat.id, day=day, advance=advance, now=T0).status == "full"
    assert len(moved) == 2  # only the two check-ins moved progress
    # Whatever code writes the row, the database refuses a third check-in and one outside
    # the window.
    with pytest.raises(sqlite3.IntegrityError, match="event full"):
        conn.execute(
            "INSERT INTO checkins VALUES (?, ?, ?, ?, NULL)",
            (event.id, cat.id, int(T0.timestamp()), day),
        )
    late = create_event(conn, "晚场", T0, T0 + timedelta(hours=1), None, created_by="t", now=T0)
    with pytest.raises(sqlite3.IntegrityError, match="outside the event window"):
        check_in(conn, late.id, cat.id, day=day, advance=advance, now=T0 + timedelta(hours=1))
    with pytest.raises(sqlite3.IntegrityError, match="final"):
        conn.execute("DELETE FROM checkins")
    counts = event_counts(conn, event.id)
    assert (counts.checked_in, counts.by_day, counts.completed_task) == (2, ((day, 2),), 0)


def test_a_refused_check_in_rolls_its_task_progress_back(
    conn: sqlite3.Connection, sample_config: Config
) -> None:
    [task] = [t for t in sample_config.tasks if t.kind == "checkin"]
    ann = member(conn, 1, "Ann")
    event = create_event(conn, "讲座", T0, T0 + timedelta(hours=1), None, created_by="t", now=T0)

    def advance(c: sqlite3.Connection) -> str | None:
        step = advance_task(c, task, ann.id, 1, sample_config, T0, actor="event")
        return task.id if step.completed_now else None

    late = T0 + timedelta(hours=1)
    with pytest.raises(sqlite3.IntegrityError):
        check_in(conn, event.id, ann.id, day="2026-11-25", advance=advance, now=late)
    assert available(conn, ann) == 0
    assert progress_of(conn, ann.id, [(task.id, "2026-11")]) == {}


# --- referrals


def test_only_a_new_member_who_is_not_the_referrer_becomes_a_friend(
    conn: sqlite3.Connection,
) -> None:
    ann = member(conn, 1, "Ann")
    member(conn, 2, "Bob")
    payload = f"ref_{ann.member_code}"

    def outcome(telegram_id: int, name: str, code: str = ann.member_code) -> str:
        return register_referred(conn, Profile(telegram_id, name), payload, code, now=T0).outcome

    assert outcome(3, "Cat") == "joined"
    assert outcome(2, "Bob") == "not_new"
    assert outcome(1, "Ann") == "own"
    nobody = "100000000" if not ann.member_code.startswith("100000000") else "100000001"
    assert outcome(4, "Dan", nobody + luhn_digit(nobody)) == "unknown"
    assert referral_counts(conn, ann.id, "2026-11").joined == 1
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO referrals (referee_id, referrer_id, started_at) VALUES (?, ?, 0)",
            (ann.id, ann.id),
        )


def test_referral_payloads_name_a_well_formed_member_code(conn: sqlite3.Connection) -> None:
    ann = member(conn, 1, "Ann")
    assert referrer_from_payload(f"ref_{ann.member_code}") == ann.member_code
    assert referrer_from_payload("ref_123") is None
    assert referrer_from_payload("ev_K7P2QX") is None
    assert referrer_from_payload(None) is None


def friend_of(conn: sqlite3.Connection, referrer: Member, telegram_id: int, name: str) -> Member:
    joined = register_referred(
        conn,
        Profile(telegram_id, name),
        f"ref_{referrer.member_code}",
        referrer.member_code,
        now=T0,
    )
    assert joined.outcome == "joined"
    return joined.member


def test_a_first_purchase_credits_the_referrer_once(
    conn: sqlite3.Connection, sample_config: Config
) -> None:
    ann = member(conn, 1, "Ann")
    bob = friend_of(conn, ann, 2, "Bob")
    first = purchase(conn, bob, "p1")
    step = credit_referral(conn, bob.id, first, sample_config, T0)
    assert step is not None and step.completed_now and step.period == friend_period(bob.id)
    assert available(conn, ann) == 50
    # The same purchase again, or a later one, credits nothing more.
    assert credit_referral(conn, bob.id, first, sample_config, T0) is None
    assert credit_referral(conn, bob.id, purchase(conn, bob, "p2"), sample_config, T0) is None
    assert available(conn, ann) == 50
    # The database keeps the first purchase and the credit once.
    with pytest.raises(sqlite3.IntegrityError, match="settled once"):
        conn.execute("UPDATE referrals SET credited_at = NULL, month = NULL")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM referrals")
    counts = referral_counts(conn, ann.id, "2026-11")
    assert (counts.joined, counts.purchased, counts.credited, counts.credited_in_month) == (
        1,
        1,
        1,
        1,
    )


def test_a_member_who_was_not_referred_credits_nobody(
    conn: sqlite3.Connection, sample_config: Config
) -> None:
    ann = member(conn, 1, "Ann")
    assert credit_referral(conn, ann.id, purchase(conn, ann, "p1"), sample_config, T0) is None
    assert available(conn, ann) == 20


def test_the_cap_counts_friends_per_local_month(
    conn: sqlite3.Connection, sample_config: Config
) -> None:
    ann = member(conn, 1, "Ann")
    friends = [friend_of(conn, ann, 10 + n, f"F{n}") for n in range(7)]
    for n, friend in enumerate(friends[:6]):
        credit_referral(conn, friend.id, purchase(conn, friend, f"p{n}"), sample_config, T0)
    assert available(conn, ann) == 5 * 50  # max_per_month = 5 in the sample programme
    # 1 December 00:30 in Shanghai is still 30 November in UTC: the month is local.
    december = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    last = friends[6]
    credit_referral(conn, last.id, purchase(conn, last, "p6", december), sample_config, december)
    assert available(conn, ann, december) == 6 * 50
    assert referral_counts(conn, ann.id, "2026-12").credited_in_month == 1


def test_a_first_purchase_with_no_referral_task_open_is_spent(
    conn: sqlite3.Connection, sample_config: Config
) -> None:
    closed = sample_config.model_copy(
        update={
            "tasks": [
                t.model_copy(update={"ends": date(2026, 11, 1)}) if t.kind == "referral" else t
                for t in sample_config.tasks
            ]
        }
    )
    ann = member(conn, 1, "Ann")
    bob = friend_of(conn, ann, 2, "Bob")
    assert credit_referral(conn, bob.id, purchase(conn, bob, "p1"), closed, T0) is None
    # Reopened later, Bob's next purchase is not his first.
    assert credit_referral(conn, bob.id, purchase(conn, bob, "p2"), sample_config, T0) is None
    assert available(conn, ann) == 0
    assert credit_first_purchase(conn, bob.id, 999, month="2026-11", cap=5, now=T0) is None


async def test_a_redelivered_till_purchase_credits_the_referrer_once(sandbox: Sandbox) -> None:
    services = sandbox.services
    ann, _new = await services.members.register(Profile(9001, "Ann"))
    joined = await services.referrals.register(
        Profile(9002, "Bob"), f"ref_{ann.member_code}", ann.member_code, now=T0
    )
    bob = joined.member
    for _attempt in range(2):
        # A redelivered update: the same message from the same chat, so the same request.
        await record_purchase(
            services,
            bob.member_code,
            "20",
            purchased_at=T0,
            actor="telegram:1",
            source=command_source(1, 42),
        )
    assert (await services.ledger.balance(ann.id)).available == 50
