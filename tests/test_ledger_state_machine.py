"""The ledger against a plain Python model of lots, driven by Hypothesis with a moving clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from storage import ledger
from storage.audit import audit
from storage.errors import AlreadyReversed, Conflict, InsufficientPoints, InvalidRequest
from storage.family import create_household, join_household
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate
from tests.postgres import migrated_connection

T0 = 1_740_000_000  # Unix seconds; the model works in integers like the database
HOUR = 3600
DAY = 86_400
MEMBERS = 3
MIN_VALIDITY_DAYS = 30

members = st.integers(0, MEMBERS - 1)
ttls = st.one_of(st.none(), st.integers(1, 72).map(lambda hours: hours * HOUR))


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def ts(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


@dataclass
class ModelLot:
    member: int
    points: int
    remainder: int
    expires_at: int | None


@dataclass
class ModelSpend:
    operation_id: int
    taken: list[tuple[int, int]]
    refunded: bool = False


class LedgerMachine(RuleBasedStateMachine):
    """Every step is one ledger call; the model predicts its result and the lots after it."""

    # A database every example shares, each in a transaction rolled back at its end (a fresh
    # PostgreSQL database per example would cost more than the example); None: a new SQLite
    # one in memory per example.
    shared: ClassVar[sqlite3.Connection | None] = None

    def __init__(self) -> None:
        super().__init__()
        if self.shared is None:
            self.conn = connect_sync(":memory:")
            migrate(self.conn)
        else:
            self.conn = self.shared
            self.conn.execute("BEGIN")
        self.member_ids = [
            register_member(self.conn, Profile(100 + i, f"m{i}"), None, at(T0))[0].id
            for i in range(MEMBERS)
        ]
        # Everyone in one household from before the start: transfers stay inside it.
        home = create_household(self.conn, self.member_ids[0], actor="t", now=at(T0 - 1))
        for other in self.member_ids[1:]:
            join_household(self.conn, home.id, other, max_members=6, actor="t", now=at(T0 - 1))
        self.in_home = {"household": home.id}
        self.now = T0
        self.lots: dict[int, ModelLot] = {}
        self.spends: list[ModelSpend] = []
        self.done: list[tuple[Callable[[], ledger.OperationResult], ledger.OperationResult]] = []
        self.serial = 0

    def teardown(self) -> None:
        report = audit(self.conn, integrity="full")
        if self.shared is None:
            self.conn.close()
        else:
            self.conn.execute("ROLLBACK")
        assert report.ok, str(report)

    # --- model helpers -----------------------------------------------------------------------

    def key(self) -> str:
        self.serial += 1
        return f"k{self.serial}"

    def spendable(self, member: int) -> list[int]:
        lots = [
            lot_id
            for lot_id, lot in self.lots.items()
            if lot.member == member
            and lot.remainder > 0
            and (lot.expires_at is None or lot.expires_at > self.now)
        ]
        return sorted(
            lots,
            key=lambda i: (self.lots[i].expires_at is None, self.lots[i].expires_at or 0, i),
        )

    def available(self, member: int) -> int:
        return sum(self.lots[i].remainder for i in self.spendable(member))

    def plan(self, member: int, points: int) -> list[tuple[int, int]]:
        taken, need = [], points
        for lot_id in self.spendable(member):
            take = min(need, self.lots[lot_id].remainder)
            taken.append((lot_id, take))
            need -= take
            if need == 0:
                break
        return taken

    def consume(self, taken: list[tuple[int, int]]) -> None:
        for lot_id, points in taken:
            self.lots[lot_id].remainder -= points

    def record(self, call: Callable[[], ledger.OperationResult]) -> ledger.OperationResult:
        result = call()
        self.done.append((call, result))
        return result

    def expect_insufficient(self, call: Callable[[], object], member: int, points: int) -> None:
        with pytest.raises(InsufficientPoints) as raised:
            call()
        assert (raised.value.available, raised.value.requested) == (self.available(member), points)

    # --- rules -------------------------------------------------------------------------------

    @rule(member=members, points=st.integers(1, 100), ttl=ttls)
    def earn(self, member: int, points: int, ttl: int | None) -> None:
        expires_at = None if ttl is None else self.now + ttl
        key, now, member_id = self.key(), at(self.now), self.member_ids[member]
        result = self.record(
            lambda: ledger.earn(
                self.conn,
                member_id,
                points,
                kind="purchase",
                key=key,
                actor="pos",
                expires_at=None if expires_at is None else at(expires_at),
                now=now,
            )
        )
        (lot_id,) = result.lots_created
        self.lots[lot_id] = ModelLot(member_id, points, points, expires_at)

    @rule(member=members, points=st.integers(1, 150))
    def spend(self, member: int, points: int) -> None:
        key, now, member_id = self.key(), at(self.now), self.member_ids[member]

        def call() -> ledger.OperationResult:
            return ledger.spend(
                self.conn,
                member_id,
                points,
                key=key,
                actor="m",
                reason=None,
                reference=None,
                now=now,
            )

        if points > self.available(member_id):
            self.expect_insufficient(call, member_id, points)
            return
        expected = self.plan(member_id, points)
        result = self.record(call)
        assert [(c.lot_id, c.points) for c in result.consumed] == expected
        self.consume(expected)
        self.spends.append(ModelSpend(result.operation_id, expected))

    @precondition(lambda self: bool(self.spends))
    @rule(data=st.data(), merchant_fault=st.booleans())
    def refund(self, data: st.DataObject, merchant_fault: bool) -> None:
        spent = data.draw(st.sampled_from(self.spends))
        key, now = self.key(), at(self.now)

        def call() -> ledger.OperationResult:
            return ledger.refund(
                self.conn,
                spent.operation_id,
                key=key,
                actor="ops",
                reason="return",
                merchant_fault=merchant_fault,
                min_validity_days=MIN_VALIDITY_DAYS,
                now=now,
            )

        if spent.refunded:
            with pytest.raises(AlreadyReversed):
                call()
            return
        result = self.record(call)
        spent.refunded = True
        assert len(result.lots_created) == len(spent.taken)
        floor = self.now + MIN_VALIDITY_DAYS * DAY
        for new_id, (origin, points) in zip(result.lots_created, spent.taken, strict=True):
            expires_at = self.lots[origin].expires_at
            if merchant_fault and expires_at is not None:
                expires_at = max(expires_at, floor)
            self.lots[new_id] = ModelLot(self.lots[origin].member, points, points, expires_at)

    @rule(sender=members, recipient=members, points=st.integers(1, 150))
    def transfer(self, sender: int, recipient: int, points: int) -> None:
        key, now = self.key(), at(self.now)
        from_id, to_id = self.member_ids[sender], self.member_ids[recipient]

        def call() -> ledger.OperationResult:
            return ledger.transfer(
                self.conn, from_id, to_id, points, key=key, actor="m", reason=None, now=now,
                meta=self.in_home,
            )  # fmt: skip

        if from_id == to_id:
            with pytest.raises(InvalidRequest):
                call()
            return
        if points > self.available(from_id):
            self.expect_insufficient(call, from_id, points)
            return
        expected = self.plan(from_id, points)
        result = self.record(call)
        assert [(c.lot_id, c.points) for c in result.consumed] == expected
        self.consume(expected)
        for new_id, (origin, taken) in zip(result.lots_created, expected, strict=True):
            self.lots[new_id] = ModelLot(to_id, taken, taken, self.lots[origin].expires_at)

    @rule(member=members, delta=st.integers(-80, 80).filter(bool), ttl=ttls)
    def adjust(self, member: int, delta: int, ttl: int | None) -> None:
        key, now, member_id = self.key(), at(self.now), self.member_ids[member]
        expires_at = None if ttl is None else self.now + ttl

        def call() -> ledger.OperationResult:
            return ledger.adjust(
                self.conn,
                member_id,
                delta,
                key=key,
                actor="admin",
                reason="correction",
                expires_at=None if expires_at is None else at(expires_at),
                now=now,
            )

        if delta < 0 and -delta > self.available(member_id):
            self.expect_insufficient(call, member_id, -delta)
            return
        result = self.record(call)
        if delta > 0:
            (lot_id,) = result.lots_created
            self.lots[lot_id] = ModelLot(member_id, delta, delta, expires_at)
        else:
            expected = self.plan(member_id, -delta)
            assert [(c.lot_id, c.points) for c in result.consumed] == expected
            self.consume(expected)

    @rule(member=members, hours=st.integers(1, 96))
    def extend_validity(self, member: int, hours: int) -> None:
        key, now, member_id = self.key(), at(self.now), self.member_ids[member]
        until = self.now + hours * HOUR
        expected = sorted(
            (
                (lot.expires_at, lot_id)
                for lot_id, lot in self.lots.items()
                if lot.member == member_id
                and lot.remainder > 0
                and lot.expires_at is not None
                and self.now < lot.expires_at < until
            ),
        )
        result = self.record(
            lambda: ledger.extend_validity(
                self.conn, member_id, until=at(until), key=key, actor="ops", reason=None, now=now
            )
        )
        taken = [(lot_id, self.lots[lot_id].remainder) for _, lot_id in expected]
        assert [(c.lot_id, c.points) for c in result.consumed] == taken
        self.consume(taken)
        for new_id, (_origin, points) in zip(result.lots_created, taken, strict=True):
            self.lots[new_id] = ModelLot(member_id, points, points, until)

    @rule(hours=st.integers(0, 48), batch=st.integers(1, 4))
    def expire(self, hours: int, batch: int) -> None:
        self.now += hours * HOUR
        due = [
            lot
            for lot in self.lots.values()
            if lot.remainder > 0 and lot.expires_at is not None and lot.expires_at <= self.now
        ]
        report = ledger.expire_due(self.conn, at(self.now), batch=batch)
        assert report == ledger.ExpiryReport(len(due), sum(lot.remainder for lot in due))
        for lot in due:
            lot.remainder = 0
        assert ledger.expire_due(self.conn, at(self.now)) == ledger.ExpiryReport(0, 0)

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        call, stored = data.draw(st.sampled_from(self.done))
        before = self.conn.execute("SELECT count(*), max(id) FROM operations").fetchone()
        again = call()
        assert again == stored and again.replayed
        assert self.conn.execute("SELECT count(*), max(id) FROM operations").fetchone() == before

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def reuse_key(self, data: st.DataObject) -> None:
        _call, stored = data.draw(st.sampled_from(self.done))
        key = self.conn.execute(
            "SELECT idempotency_key FROM operations WHERE id = ?", (stored.operation_id,)
        ).fetchone()[0]
        with pytest.raises(Conflict):
            ledger.spend(
                self.conn,
                self.member_ids[0],
                10**9,
                key=key,
                actor="m",
                reason=None,
                reference=None,
                now=at(self.now),
            )

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def ledger_is_sound(self) -> None:
        report = audit(self.conn, integrity="none")
        assert report.ok, str(report)

    @invariant()
    def lots_match_the_model(self) -> None:
        stored = {
            row[0]: ModelLot(row[1], row[2], row[3], row[4])
            for row in self.conn.execute(
                "SELECT id, member_id, points, remainder, expires_at FROM lots"
            )
        }
        assert stored == self.lots
        for member_id in self.member_ids:
            balance = ledger.balance(self.conn, member_id, at(self.now))
            assert balance.available == self.available(member_id)
            assert ledger.available(self.conn, member_id, at(self.now)) == balance.available


LedgerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase


def test_the_ledger_machine_on_postgres(tmp_path: Path) -> None:
    """The same machine on PostgreSQL: fewer, shorter runs (every statement is a round trip)."""
    with migrated_connection("postgres", tmp_path) as conn:

        class OnPostgres(LedgerMachine):
            shared = conn

        run_state_machine_as_test(
            OnPostgres,
            settings=settings(
                max_examples=15,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


def test_model_helpers_order_lots_like_the_ledger() -> None:
    """The model's spend order itself: soonest first, never last, ties by id."""
    machine = LedgerMachine()
    try:
        machine.lots = {
            1: ModelLot(1, 5, 5, None),
            2: ModelLot(1, 5, 5, T0 + 10),
            3: ModelLot(1, 5, 5, T0 + 5),
            4: ModelLot(1, 5, 5, T0 + 5),
            5: ModelLot(1, 5, 5, T0),  # expires exactly now: gone
        }
        assert machine.spendable(1) == [3, 4, 2, 1]
        assert machine.plan(1, 12) == [(3, 5), (4, 5), (2, 2)]
    finally:
        machine.conn.close()
