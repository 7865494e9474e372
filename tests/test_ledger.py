"""Ledger operations and their policy edges, through the synchronous core."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from storage import ledger, sql
from storage.audit import audit
from storage.errors import AlreadyReversed, Conflict, InsufficientPoints, InvalidRequest, NotFound
from storage.family import create_household, join_household
from storage.members import Profile, register_member
from tests.postgres import ENGINES, migrated_connection

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


def earn(
    conn: sqlite3.Connection,
    member_id: int,
    points: int,
    expires_at: datetime | None,
    key: str,
    now: datetime = T0,
) -> ledger.OperationResult:
    return ledger.earn(
        conn,
        member_id,
        points,
        kind="purchase",
        key=key,
        actor="pos",
        expires_at=expires_at,
        now=now,
    )


def spend(
    conn: sqlite3.Connection, member_id: int, points: int, key: str, now: datetime = T0
) -> ledger.OperationResult:
    return ledger.spend(
        conn, member_id, points, key=key, actor="member", reason="mall", reference=None, now=now
    )


def counts(conn: sqlite3.Connection) -> tuple[int, ...]:
    return tuple(
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("accounts", "operations", "postings", "lots", "allocations")
    )


def remainders(conn: sqlite3.Connection, member_id: int) -> dict[int, int]:
    return {lot.id: lot.remainder for lot in ledger.lots(conn, member_id)}


def test_a_member_code_drawn_twice_is_drawn_again(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No failed INSERT caught: on PostgreSQL it would spoil the registration's transaction.
    first = register_member(conn, Profile(1, "one"), None, T0)[0]
    codes = iter([first.member_code, "1234567897"])
    monkeypatch.setattr("storage.members.new_member_code", lambda: next(codes))
    with sql.atomic(conn):
        second, created = register_member(conn, Profile(2, "two"), None, T0)
    assert created and second.member_code == "1234567897"


# --- earn ------------------------------------------------------------------------------------


def test_earn_creates_one_lot_from_the_source(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    result = ledger.earn(
        conn,
        alice,
        120,
        kind="purchase",
        key="receipt:1",
        actor="pos:7",
        expires_at=T0 + 365 * DAY,
        reference="R-1",
        meta={"amount": Decimal("120.50"), "category": "green"},
        now=T0,
    )
    assert result.points == 120 and result.balance_after == 120 and result.kind == "purchase"
    (lot,) = ledger.lots(conn, alice)
    assert (lot.id, lot.points, lot.remainder) == (result.lots_created[0], 120, 120)
    assert lot.expires_at == T0 + 365 * DAY
    record = ledger.operation(conn, result.operation_id)
    assert record.meta == {"amount": "120.50", "category": "green"}
    assert sorted(p.amount for p in record.postings) == [-120, 120]
    assert {p.account for p in record.postings} == {"purchase", f"member:{alice}"}


def test_earn_looks_up_only_the_sources_its_requests_draw_on(tmp_path: Path) -> None:
    """A purchase with its campaign bonus reads those two source accounts, not every earn
    kind's (on PostgreSQL each lookup is a round trip of the till's booking)."""
    with migrated_connection("sqlite", tmp_path) as conn:
        alice = new_member(conn)
        purchase = ledger.EarnRequest(alice, 100, "purchase", "purchase:R1", "pos", None, T0)
        bonus = ledger.EarnRequest(alice, 50, "campaign", "purchase:R1:campaign", "pos", None, T0)
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            [booked] = ledger.earn_groups(conn, [(purchase, bonus)])
        finally:
            conn.set_trace_callback(None)
        lookups = [s for s in statements if s.startswith("SELECT id FROM accounts WHERE name")]
        assert sorted(lookups) == [
            "SELECT id FROM accounts WHERE name = 'campaign'",
            "SELECT id FROM accounts WHERE name = 'purchase'",
        ]
        assert isinstance(booked, tuple)
        for result in booked:  # each credit drawn from its own kind's source
            record = ledger.operation(conn, result.operation_id)
            assert {p.account for p in record.postings} == {result.kind, f"member:{alice}"}


@pytest.mark.parametrize("points", [0, -5, True])
def test_earn_refuses_non_positive_points(conn: sqlite3.Connection, points: int) -> None:
    alice = new_member(conn)
    with pytest.raises(InvalidRequest):
        earn(conn, alice, points, None, "k")


def test_earn_refuses_unknown_kind_and_instant_expiry(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    with pytest.raises(InvalidRequest, match="kind"):
        ledger.earn(conn, alice, 5, kind="gift", key="k", actor="a", expires_at=None, now=T0)
    with pytest.raises(InvalidRequest, match="expire"):
        earn(conn, alice, 5, T0, "k")
    assert counts(conn)[1] == 0


def test_earn_refuses_naive_datetimes(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    with pytest.raises(ValueError, match="naive"):
        earn(conn, alice, 5, None, "k", now=datetime(2025, 1, 1))


def test_earn_for_unknown_member_is_not_found(conn: sqlite3.Connection) -> None:
    with pytest.raises(NotFound):
        earn(conn, 999, 5, None, "k")
    assert counts(conn)[1:] == (0, 0, 0, 0)


# --- idempotency -----------------------------------------------------------------------------


def test_replay_returns_the_stored_result_and_writes_nothing(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 100, None, "e1")
    first = spend(conn, alice, 30, "tap:1")
    earn(conn, alice, 5, None, "e2")  # the balance moves on; the replay still says 70
    before = counts(conn)
    again = spend(conn, alice, 30, "tap:1", now=T0 + DAY)
    assert again == first and again.replayed and not first.replayed
    assert again.balance_after == 70
    assert counts(conn) == before


def test_same_key_for_a_different_request_is_a_conflict(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 100, None, "e1")
    spend(conn, alice, 30, "tap:1")
    before = counts(conn)
    with pytest.raises(Conflict):
        spend(conn, alice, 31, "tap:1")
    with pytest.raises(Conflict):
        earn(conn, alice, 30, None, "tap:1")
    assert counts(conn) == before


def test_a_failed_request_leaves_its_key_free(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    with pytest.raises(InsufficientPoints):
        spend(conn, alice, 10, "tap:1")
    earn(conn, alice, 10, None, "e1")
    assert spend(conn, alice, 10, "tap:1").balance_after == 0


# --- spend -----------------------------------------------------------------------------------


def test_spend_takes_soonest_expiring_first_and_never_expiring_last(
    conn: sqlite3.Connection,
) -> None:
    alice = new_member(conn)
    never = earn(conn, alice, 50, None, "never").lots_created[0]
    late = earn(conn, alice, 50, T0 + 60 * DAY, "late").lots_created[0]
    soon = earn(conn, alice, 50, T0 + 10 * DAY, "soon").lots_created[0]
    result = spend(conn, alice, 120, "s1")
    assert result.consumed == (
        ledger.Consumed(soon, 50),
        ledger.Consumed(late, 50),
        ledger.Consumed(never, 20),
    )
    assert remainders(conn, alice) == {never: 30, late: 0, soon: 0}
    assert result.balance_after == 30


def test_spend_uses_part_of_a_lot_and_ties_go_to_the_oldest(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    first = earn(conn, alice, 40, T0 + 10 * DAY, "a").lots_created[0]
    second = earn(conn, alice, 40, T0 + 10 * DAY, "b").lots_created[0]
    assert spend(conn, alice, 25, "s1").consumed == (ledger.Consumed(first, 25),)
    assert spend(conn, alice, 25, "s2").consumed == (
        ledger.Consumed(first, 15),
        ledger.Consumed(second, 10),
    )
    assert remainders(conn, alice) == {first: 0, second: 30}


def test_expired_lots_are_not_spendable(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 100, T0 + 10 * DAY, "old")
    earn(conn, alice, 20, None, "new")
    before = counts(conn)
    with pytest.raises(InsufficientPoints) as raised:
        spend(conn, alice, 50, "s1", now=T0 + 11 * DAY)
    assert (raised.value.available, raised.value.requested) == (20, 50)
    assert counts(conn) == before


def test_a_lot_expiring_exactly_now_is_expired(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 100, T0 + 10 * DAY, "e1")
    assert spend(conn, alice, 1, "s1", now=T0 + 10 * DAY - timedelta(seconds=1)).points == 1
    with pytest.raises(InsufficientPoints):
        spend(conn, alice, 1, "s2", now=T0 + 10 * DAY)
    assert ledger.balance(conn, alice, T0 + 10 * DAY).available == 0
    assert ledger.expire_due(conn, T0 + 10 * DAY) == ledger.ExpiryReport(1, 99)


def test_spend_into_the_game_sink_and_not_into_expired(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 100, None, "e1")
    played = ledger.spend(
        conn,
        alice,
        10,
        key="wheel:1",
        actor="m",
        sink="game_cost",
        reason=None,
        reference=None,
        now=T0,
    )
    assert played.kind == "game_play"
    with pytest.raises(InvalidRequest):
        ledger.spend(
            conn,
            alice,
            10,
            key="x",
            actor="m",
            sink="expired",
            reason=None,
            reference=None,
            now=T0,
        )


# --- refund ----------------------------------------------------------------------------------


def test_refund_restores_the_allocations_into_linked_lots(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    soon = earn(conn, alice, 30, T0 + 100 * DAY, "a").lots_created[0]
    never = earn(conn, alice, 50, None, "b").lots_created[0]
    spent = spend(conn, alice, 45, "s1")
    result = ledger.refund(
        conn,
        spent.operation_id,
        key="r1",
        actor="ops",
        reason="out of stock",
        merchant_fault=True,
        now=T0 + DAY,
    )
    assert result.points == 45 and result.balance_after == 80 and result.kind == "refund"
    restored = {lot.id: lot for lot in ledger.lots(conn, alice)}
    first, second = (restored[i] for i in result.lots_created)
    # Far enough away already: the original expiry stands; never stays never.
    assert (first.origin_lot_id, first.points, first.expires_at) == (soon, 30, T0 + 100 * DAY)
    assert (second.origin_lot_id, second.points, second.expires_at) == (never, 15, None)
    assert ledger.operation(conn, result.operation_id).reverses_operation_id == spent.operation_id


def test_merchant_fault_refund_of_expired_points_gets_the_minimum_validity(
    conn: sqlite3.Connection,
) -> None:
    alice = new_member(conn)
    earn(conn, alice, 30, T0 + 10 * DAY, "a")
    spent = spend(conn, alice, 30, "s1")
    later = T0 + 20 * DAY
    result = ledger.refund(
        conn,
        spent.operation_id,
        key="r1",
        actor="ops",
        reason="delisted",
        merchant_fault=True,
        min_validity_days=30,
        now=later,
    )
    (lot,) = (lot for lot in ledger.lots(conn, alice) if lot.id in result.lots_created)
    assert lot.expires_at == later + 30 * DAY
    assert ledger.balance(conn, alice, later).available == 30


def test_member_return_of_expired_points_keeps_the_expiry_and_gets_swept(
    conn: sqlite3.Connection,
) -> None:
    alice = new_member(conn)
    earn(conn, alice, 30, T0 + 10 * DAY, "a")
    spent = spend(conn, alice, 30, "s1")
    later = T0 + 20 * DAY
    result = ledger.refund(
        conn,
        spent.operation_id,
        key="r1",
        actor="ops",
        reason="changed mind",
        merchant_fault=False,
        now=later,
    )
    (lot,) = (lot for lot in ledger.lots(conn, alice) if lot.id in result.lots_created)
    assert lot.expires_at == T0 + 10 * DAY
    assert ledger.balance(conn, alice, later).available == 0
    assert ledger.expire_due(conn, later) == ledger.ExpiryReport(1, 30)


def test_refund_happens_at_most_once(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 30, None, "a")
    spent = spend(conn, alice, 30, "s1")

    def refund(key: str) -> ledger.OperationResult:
        return ledger.refund(
            conn,
            spent.operation_id,
            key=key,
            actor="ops",
            reason="r",
            merchant_fault=False,
            now=T0,
        )

    first = refund("r1")
    assert refund("r1") == first  # a replay, not a second refund
    with pytest.raises(AlreadyReversed):
        refund("r2")
    assert ledger.balance(conn, alice, T0).available == 30


@pytest.mark.parametrize("target", ["earn", "missing", "refund"])
def test_only_spends_can_be_refunded(conn: sqlite3.Connection, target: str) -> None:
    alice = new_member(conn)
    earned = earn(conn, alice, 30, None, "a")
    spent = spend(conn, alice, 10, "s1")
    refunded = ledger.refund(
        conn, spent.operation_id, key="r1", actor="o", reason=None, merchant_fault=False, now=T0
    )
    op_id = {"earn": earned.operation_id, "missing": 999, "refund": refunded.operation_id}[target]
    with pytest.raises(NotFound):
        ledger.refund(conn, op_id, key="r2", actor="o", reason=None, merchant_fault=False, now=T0)


# --- transfer --------------------------------------------------------------------------------


def test_transfer_keeps_each_lots_expiry(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    home = create_household(conn, alice, actor="t", now=T0)
    join_household(conn, home.id, bob, max_members=6, actor="t", now=T0)
    in_home = {"household": home.id}
    soon = earn(conn, alice, 30, T0 + 10 * DAY, "a").lots_created[0]
    never = earn(conn, alice, 50, None, "b").lots_created[0]
    result = ledger.transfer(
        conn, alice, bob, 40, key="t1", actor="member", reason="family", now=T0, meta=in_home
    )
    assert (result.balance_after, result.recipient_id, result.recipient_balance_after) == (
        40,
        bob,
        40,
    )
    received = {lot.origin_lot_id: lot for lot in ledger.lots(conn, bob)}
    assert received[soon].expires_at == T0 + 10 * DAY and received[soon].points == 30
    assert received[never].expires_at is None and received[never].points == 10
    # Passing the points back does not make them any younger.
    back = ledger.transfer(
        conn, bob, alice, 40, key="t2", actor="m", reason=None, now=T0, meta=in_home
    )
    assert {lot.expires_at for lot in ledger.lots(conn, alice) if lot.id in back.lots_created} == {
        T0 + 10 * DAY,
        None,
    }


def test_transfer_to_oneself_is_refused(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 30, None, "a")
    with pytest.raises(InvalidRequest):
        ledger.transfer(conn, alice, alice, 10, key="t1", actor="m", reason=None, now=T0)


def test_transfer_checks_funds_and_recipient(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    earn(conn, alice, 30, None, "a")
    before = counts(conn)
    with pytest.raises(InsufficientPoints):
        ledger.transfer(conn, alice, bob, 31, key="t1", actor="m", reason=None, now=T0)
    with pytest.raises(NotFound):
        ledger.transfer(conn, alice, 999, 10, key="t2", actor="m", reason=None, now=T0)
    assert counts(conn) == before


# --- expiry ----------------------------------------------------------------------------------


def test_expire_books_remainders_once(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    for i in range(5):
        earn(conn, alice, 10, T0 + (i + 1) * DAY, f"a{i}")
    earn(conn, bob, 7, T0 + 2 * DAY, "b")
    earn(conn, bob, 9, None, "b-never")
    spend(conn, alice, 4, "s1")  # the first lot keeps 6
    report = ledger.expire_due(conn, T0 + 3 * DAY, batch=2)
    assert report == ledger.ExpiryReport(lots=4, points=6 + 10 + 10 + 7)
    assert ledger.expire_due(conn, T0 + 3 * DAY) == ledger.ExpiryReport(0, 0)
    assert ledger.balance(conn, alice, T0 + 3 * DAY).available == 20
    keys = [
        r[0] for r in conn.execute("SELECT idempotency_key FROM operations WHERE kind = 'expire'")
    ]
    assert all(k.startswith("expire:") for k in keys) and len(keys) == 4
    assert [line.points for line in ledger.history(conn, bob).lines][:1] == [-7]


def test_expire_due_with_nothing_due(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 10, T0 + DAY, "a")
    assert ledger.expire_due(conn, T0) == ledger.ExpiryReport(0, 0)


# --- extend validity -------------------------------------------------------------------------


def test_extend_validity_moves_only_lots_expiring_earlier(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    soon = earn(conn, alice, 10, T0 + 5 * DAY, "a").lots_created[0]
    later = earn(conn, alice, 20, T0 + 90 * DAY, "b").lots_created[0]
    never = earn(conn, alice, 30, None, "c").lots_created[0]
    gone = earn(conn, alice, 40, T0 + DAY, "d").lots_created[0]
    now = T0 + 2 * DAY  # `gone` has already expired and is not revived
    until = T0 + 60 * DAY
    result = ledger.extend_validity(
        conn, alice, until=until, key="x1", actor="ops", reason="outage", now=now
    )
    assert result.consumed == (ledger.Consumed(soon, 10),) and result.points == 10
    (new_lot,) = (lot for lot in ledger.lots(conn, alice) if lot.id in result.lots_created)
    assert (new_lot.origin_lot_id, new_lot.expires_at, new_lot.points) == (soon, until, 10)
    assert remainders(conn, alice)[later] == 20 and remainders(conn, alice)[never] == 30
    assert remainders(conn, alice)[gone] == 40
    assert result.balance_after == 100
    statement = ledger.history(conn, alice)
    assert statement.lines[0].kind == "extend_validity" and statement.lines[0].points == 0


def test_extend_validity_for_chosen_lots(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    first = earn(conn, alice, 10, T0 + 5 * DAY, "a").lots_created[0]
    earn(conn, alice, 20, T0 + 6 * DAY, "b")
    bobs = earn(conn, bob, 5, T0 + 6 * DAY, "c").lots_created[0]
    result = ledger.extend_validity(
        conn,
        alice,
        until=T0 + 30 * DAY,
        key="x1",
        actor="o",
        reason=None,
        now=T0,
        lot_ids=[first],
    )
    assert result.consumed == (ledger.Consumed(first, 10),)
    with pytest.raises(NotFound):
        ledger.extend_validity(
            conn,
            alice,
            until=T0 + 30 * DAY,
            key="x2",
            actor="o",
            reason=None,
            now=T0,
            lot_ids=[bobs],
        )


def test_extend_validity_never_shortens(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    earn(conn, alice, 10, T0 + 50 * DAY, "a")
    with pytest.raises(InvalidRequest):
        ledger.extend_validity(conn, alice, until=T0, key="x1", actor="o", reason=None, now=T0)
    nothing = ledger.extend_validity(
        conn, alice, until=T0 + 20 * DAY, key="x2", actor="o", reason=None, now=T0
    )
    assert (nothing.points, nothing.lots_created) == (0, ())
    assert [lot.expires_at for lot in ledger.lots(conn, alice)] == [T0 + 50 * DAY]


# --- adjust ----------------------------------------------------------------------------------


def test_adjust_credits_and_debits(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    up = ledger.adjust(
        conn,
        alice,
        50,
        key="adj1",
        actor="admin",
        reason="goodwill",
        expires_at=T0 + 30 * DAY,
        now=T0,
    )
    assert up.balance_after == 50 and len(up.lots_created) == 1
    down = ledger.adjust(conn, alice, -20, key="adj2", actor="admin", reason="typo", now=T0)
    assert down.balance_after == 30 and down.consumed == (ledger.Consumed(up.lots_created[0], 20),)
    with pytest.raises(InsufficientPoints):
        ledger.adjust(conn, alice, -31, key="adj3", actor="admin", reason="typo", now=T0)


@pytest.mark.parametrize(("delta", "reason"), [(0, "r"), (5, ""), (5, "   ")])
def test_adjust_needs_a_delta_and_a_reason(
    conn: sqlite3.Connection, delta: int, reason: str
) -> None:
    alice = new_member(conn)
    with pytest.raises(InvalidRequest):
        ledger.adjust(conn, alice, delta, key="adj", actor="admin", reason=reason, now=T0)


# --- batching inside one transaction ---------------------------------------------------------


def test_a_failed_operation_inside_a_transaction_leaves_the_rest(
    conn: sqlite3.Connection,
) -> None:
    alice = new_member(conn)
    with sql.atomic(conn):
        earn(conn, alice, 10, None, "a")
        with pytest.raises(InsufficientPoints):
            spend(conn, alice, 11, "s1")
        spend(conn, alice, 4, "s2")
    assert ledger.balance(conn, alice, T0).available == 6
