"""Ledger read side (balance, lots, history, operation, export), bulk earn and the async facade."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import ledger
from storage.audit import audit
from storage.errors import Conflict, InvalidRequest, NotFound
from storage.family import Families, create_household, join_household
from storage.members import Members, Profile, register_member
from tests.postgres import ENGINES, migrated_connection, opened_store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine; the audit passes after every test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        assert audit(connection).ok, str(audit(connection))


def new_member(conn: sqlite3.Connection, telegram_id: int = 1) -> int:
    member, _ = register_member(conn, Profile(telegram_id, f"member{telegram_id}"), None, T0)
    return member.id


def household(conn: sqlite3.Connection, *members: int) -> dict[str, int]:
    """Put the members in one household (transfers stay inside one); the meta to record."""
    home = create_household(conn, members[0], actor="t", now=T0 - DAY)
    for other in members[1:]:
        join_household(conn, home.id, other, max_members=6, actor="t", now=T0 - DAY)
    return {"household": home.id}


def earn(
    conn: sqlite3.Connection,
    member_id: int,
    points: int,
    expires_at: datetime | None,
    key: str,
    kind: str = "purchase",
    now: datetime = T0,
) -> ledger.OperationResult:
    return ledger.earn(
        conn, member_id, points, kind=kind, key=key, actor="pos", expires_at=expires_at, now=now
    )


def request(member_id: int, points: int, key: str, **changes: object) -> ledger.EarnRequest:
    fields: dict[str, object] = {
        "member_id": member_id,
        "points": points,
        "kind": "purchase",
        "key": key,
        "actor": "import",
        "expires_at": T0 + 365 * DAY,
        "now": T0,
        "reference": key,
        "meta": {"amount": "12.30"},
    }
    fields.update(changes)
    return ledger.EarnRequest(**fields)  # type: ignore[arg-type]


# --- balance, lots, history ------------------------------------------------------------------


def test_balance_groups_unexpired_remainders_by_expiry(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 10, T0 + 5 * DAY, "a")
    earn(conn, alice, 15, T0 + 5 * DAY, "b", kind="birthday")
    earn(conn, alice, 20, None, "c")
    earn(conn, alice, 40, T0 + DAY, "d")
    ledger.spend(conn, alice, 5, key="s", actor="m", reason=None, reference=None, now=T0)
    now = T0 + 2 * DAY
    result = ledger.balance(conn, alice, now)
    assert result.expiring == ((T0 + 5 * DAY, 25), (None, 20))
    assert result.available == 45
    assert result.lifetime_earned == 85
    # The views that show only the total read it in one query, and agree.
    assert ledger.available(conn, alice, now) == 45
    assert ledger.available(conn, alice, T0 + 5 * DAY) == 20  # the 25 lapse at that instant
    assert ledger.available(conn, alice, T0) == 80


def test_lifetime_counts_every_point_credited_once(conn: sqlite3.Connection) -> None:
    # What /balance shows as 累计获得 and /rules defines: earned, adjusted up, sent by family;
    # a refund or an extension is no new point, and spending or a correction down takes none off.
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    earn(conn, alice, 50, T0 + 5 * DAY, "a")
    spent = ledger.spend(conn, alice, 20, key="s", actor="m", reason=None, reference=None, now=T0)
    ledger.refund(
        conn, spent.operation_id, key="r", actor="o", reason=None, merchant_fault=False, now=T0
    )
    ledger.adjust(conn, alice, 100, key="up", actor="o", reason="goodwill", now=T0)
    ledger.adjust(conn, alice, -10, key="down", actor="o", reason="typo", now=T0)
    ledger.extend_validity(conn, alice, until=T0 + 9 * DAY, key="x", actor="o", reason=None, now=T0)
    meta = household(conn, alice, bob)
    ledger.transfer(conn, alice, bob, 30, key="t", actor="m", reason=None, now=T0, meta=meta)
    assert ledger.balance(conn, alice, T0).lifetime_earned == 150
    assert ledger.balance(conn, alice, T0).available == 110
    assert ledger.balance(conn, bob, T0).lifetime_earned == 30
    assert ledger.balance(conn, bob, T0).available == 30


def test_balance_of_unknown_member(conn: sqlite3.Connection) -> None:
    with pytest.raises(NotFound):
        ledger.balance(conn, 999, T0)
    quiet = new_member(conn)
    assert ledger.balance(conn, quiet, T0) == ledger.Balance(quiet, 0, (), 0)
    assert ledger.available(conn, quiet, T0) == 0
    assert ledger.history(conn, quiet) == ledger.Statement((), 0)


def test_history_is_newest_first_with_signed_points(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    earn(conn, alice, 50, None, "a")
    ledger.spend(conn, alice, 20, key="s", actor="m", reason="tea", reference="RD-1", now=T0 + DAY)
    meta = household(conn, alice, bob)
    ledger.transfer(
        conn, alice, bob, 10, key="t", actor="m", reason="mum", now=T0 + 2 * DAY, meta=meta
    )
    statement = ledger.history(conn, alice)
    assert statement.total == 3
    assert [(line.kind, line.points) for line in statement.lines] == [
        ("transfer", -10),
        ("redeem", -20),
        ("purchase", 50),
    ]
    assert statement.lines[1].reference == "RD-1" and statement.lines[1].reason == "tea"
    assert statement.lines[1].created_at == T0 + DAY
    assert [(line.kind, line.points) for line in ledger.history(conn, bob).lines] == [
        ("transfer", 10)
    ]


def test_history_pages(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    ids = [earn(conn, alice, i + 1, None, f"e{i}").operation_id for i in range(7)]
    page = ledger.history(conn, alice, offset=2, limit=3)
    assert page.total == 7
    assert [line.operation_id for line in page.lines] == ids[::-1][2:5]
    assert ledger.history(conn, alice, offset=7, limit=3).lines == ()
    with pytest.raises(InvalidRequest):
        ledger.history(conn, alice, limit=0)


def test_operation_record_and_missing_operation(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earned = earn(conn, alice, 50, None, "a")
    spent = ledger.spend(conn, alice, 20, key="s", actor="m", reason=None, reference=None, now=T0)
    record = ledger.operation(conn, spent.operation_id)
    assert (record.kind, record.key, record.actor, record.points) == ("redeem", "s", "m", 20)
    assert record.consumed == (ledger.Consumed(earned.lots_created[0], 20),)
    assert {(p.account, p.amount) for p in record.postings} == {
        (f"member:{alice}", -20),
        ("redeemed", 20),
    }
    with pytest.raises(NotFound):
        ledger.operation(conn, 999)
    assert ledger.load_result(conn, spent.operation_id) == spent


def test_iter_ledger_exports_every_posting(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    earn(conn, alice, 50, T0 + DAY, "a")
    meta = household(conn, alice, bob)
    ledger.transfer(conn, alice, bob, 10, key="t", actor="m", reason=None, now=T0, meta=meta)
    ledger.expire_due(conn, T0 + DAY)
    rows = list(ledger.iter_ledger(conn))
    assert len(rows) == 2 * conn.execute("SELECT count(*) FROM operations").fetchone()[0]
    assert sum(row.amount for row in rows) == 0
    assert [row.posting_id for row in rows] == sorted(row.posting_id for row in rows)
    bobs = list(ledger.iter_ledger(conn, bob))
    assert [(row.kind, row.amount, row.account) for row in bobs] == [
        ("transfer", 10, f"member:{bob}"),
        ("expire", -10, f"member:{bob}"),
    ]


# --- earn_many -------------------------------------------------------------------------------


def test_earn_many_applies_each_request(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    results = ledger.earn_many(
        conn, [request(alice, 10, "r1"), request(bob, 20, "r2"), request(alice, 5, "r3")]
    )
    assert all(isinstance(r, ledger.OperationResult) for r in results)
    assert [r.balance_after for r in results if isinstance(r, ledger.OperationResult)] == [
        10,
        20,
        15,
    ]
    for result in results:
        assert isinstance(result, ledger.OperationResult)
        assert ledger.load_result(conn, result.operation_id) == result


def test_earn_many_reports_errors_and_skips_replays(conn: sqlite3.Connection) -> None:
    alice = new_member(conn, 1)
    first = ledger.earn_many(conn, [request(alice, 10, "r1")])[0]
    before = conn.execute("SELECT count(*) FROM operations").fetchone()[0]
    results = ledger.earn_many(
        conn,
        [
            request(alice, 10, "r1"),  # replay of an earlier batch
            request(alice, 11, "r1"),  # same key, different request
            request(999, 10, "r2"),  # no such member
            request(alice, 0, "r3"),  # invalid
            request(alice, 7, "r4"),
            request(alice, 7, "r4"),  # duplicate inside the batch
            request(alice, 8, "r4"),
        ],
    )
    assert results[0] == first and isinstance(results[0], ledger.OperationResult)
    assert results[0].replayed
    assert isinstance(results[1], Conflict)
    assert isinstance(results[2], NotFound)
    assert isinstance(results[3], InvalidRequest)
    assert isinstance(results[4], ledger.OperationResult) and results[5] == results[4]
    assert isinstance(results[6], Conflict)
    assert conn.execute("SELECT count(*) FROM operations").fetchone()[0] == before + 1
    assert ledger.balance(conn, alice, T0).available == 17


def test_bulk_bookings_leave_the_next_ids_free(conn: sqlite3.Connection) -> None:
    # earn_many and the expiry sweep write their ids themselves: a plain booking after them
    # must not draw one of those (PostgreSQL's identity would, left behind).
    alice = new_member(conn, 1)
    ledger.earn_many(conn, [request(alice, 10, "r1"), request(alice, 5, "r2")])
    earn(conn, alice, 3, T0 + DAY, "e1")
    assert ledger.expire_due(conn, T0 + 2 * DAY) == ledger.ExpiryReport(1, 3)
    later = earn(conn, alice, 4, None, "e2", now=T0 + 2 * DAY)
    ids = [r[0] for r in conn.execute("SELECT id FROM operations ORDER BY id")]
    assert len(ids) == 5 and ids[-1] == later.operation_id
    assert [lot.points for lot in ledger.lots(conn, alice)] == [10, 5, 3, 4]


# --- the async facade ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
async def test_async_ledger_round_trip(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path) as store:
        members = Members(store)
        alice, _ = await members.register(Profile(1, "alice"), now=T0)
        bob, _ = await members.register(Profile(2, "bob"), now=T0)
        book = ledger.Ledger(store)
        await book.open_account(alice.id)
        earned = await book.earn(
            alice.id, 100, kind="survey", key="e", actor="bot", expires_at=T0 + 9 * DAY, now=T0
        )
        spent = await book.spend(
            alice.id, 30, key="s", actor="m", reason=None, reference=None, now=T0
        )
        await book.refund(
            spent.operation_id, key="r", actor="o", reason=None, merchant_fault=True, now=T0
        )
        families = Families(store)
        home = await families.create_household(alice.id, actor="t", now=T0)
        await families.join_household(home.id, bob.id, max_members=6, actor="t", now=T0)
        await book.transfer(
            alice.id, bob.id, 10, key="t", actor="m", reason=None, now=T0,
            meta={"household": home.id},
        )  # fmt: skip
        await book.adjust(alice.id, -5, key="a", actor="admin", reason="fix", now=T0)
        await book.extend_validity(
            alice.id, until=T0 + 20 * DAY, key="x", actor="o", reason=None, now=T0
        )
        results = await book.earn_many([request(bob.id, 3, "m1")])
        assert isinstance(results[0], ledger.OperationResult)
        # alice: 55 extended to day 20, 30 refunded until day 30; bob: 10 from day 9
        assert await book.expire_due(T0 + 40 * DAY, batch=1) == ledger.ExpiryReport(3, 95)
        balance = await book.balance(alice.id, T0 + 40 * DAY)
        assert (balance.available, balance.lifetime_earned) == (0, 100)
        assert (await book.history(alice.id, limit=100)).total == 8
        assert (await book.operation(earned.operation_id)).kind == "survey"
        assert [lot.remainder for lot in await book.lots(bob.id)] == [0, 3]
        report = await store.read(audit)
        assert report.ok, str(report)
