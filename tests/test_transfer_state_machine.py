"""Households and transfers against a plain Python model, driven by Hypothesis with a moving
clock: balances conserved, limits never exceeded, expiry and source kept, no transfer across
households (the audit after every run checks the last two against the database too)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bot.config import load_config
from bot.programme.transfers import limits_at, offer_key, undo_key
from storage import ledger
from storage.audit import audit
from storage.errors import AlreadyReversed, InsufficientPoints, InvalidState
from storage.family import create_household, end_stay, household_id_of, join_household
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate
from storage.transfers import TransferRefused, confirm, create_offer, undo
from tests.postgres import migrated_connection

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
BASE = load_config(SAMPLE)
CONFIG = BASE.model_copy(
    update={
        "family": BASE.family.model_copy(
            update={
                "min_transfer": 5,
                "sender_daily_max": 60,
                "sender_monthly_max": 150,
                "recipient_daily_max": 50,
                "recipient_monthly_max": 120,
                "cooling_off_days": 2,
                "max_members": 3,
            }
        )
    }
)
FAMILY = CONFIG.family
T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
MEMBERS = 4
UNDO = timedelta(minutes=FAMILY.undo_minutes)
TTL = timedelta(minutes=10)

members = st.integers(0, MEMBERS - 1)
# Transfers mostly inside the household the machine starts with.
parties = st.sampled_from([0, 1, 2, 0, 1, 2, 3])


@dataclass
class ModelLot:
    member: int
    remainder: int
    expires_at: datetime | None
    source: str


@dataclass
class ModelTransfer:
    operation_id: int
    at: datetime
    sender: int
    recipient: int
    points: int
    # (lot id, points) of the recipient's lots the transfer created.
    lots: list[tuple[int, int]]
    undone: bool = False


@dataclass
class Stay:
    household: int
    since: datetime


@dataclass
class Model:
    lots: dict[int, ModelLot] = field(default_factory=dict)
    stays: dict[int, Stay] = field(default_factory=dict)
    transfers: list[ModelTransfer] = field(default_factory=list)


class TransferMachine(RuleBasedStateMachine):
    """Every step is one store call; the model predicts whether it is refused and its lots."""

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
        self.ids = [
            register_member(self.conn, Profile(100 + i, f"m{i}"), None, T0)[0].id
            for i in range(MEMBERS)
        ]
        self.now = T0
        self.model = Model()
        self.earned = 0
        self.serial = 0
        # Three members start in a household past its cooling-off, the fourth outside it:
        # the rules below break it up, found others and move members around.
        settled = T0 - timedelta(days=FAMILY.cooling_off_days)
        home = create_household(self.conn, self.ids[0], actor="t", now=settled)
        self.model.stays[0] = Stay(home.id, settled)
        for who in (1, 2):
            join_household(self.conn, home.id, self.ids[who], max_members=3, actor="t", now=settled)
            self.model.stays[who] = Stay(home.id, settled)
        for who, (points, days, source) in enumerate(
            [(300, 10, "purchase"), (150, None, "purchase"), (60, 5, "game")]
        ):
            self.earn(who, points, days, source)

    def teardown(self) -> None:
        report = audit(self.conn, integrity="none")
        if self.shared is None:
            self.conn.close()
        else:
            self.conn.execute("ROLLBACK")
        assert report.ok, str(report)

    # --- the model -----------------------------------------------------------------------

    def movable(self, member: int) -> list[int]:
        """The member's lots a transfer may take, in the order it takes them."""
        held = {s if s != "share" else "share_bonus" for s in FAMILY.non_transferable}
        lots = [
            lot_id
            for lot_id, lot in self.model.lots.items()
            if lot.member == member
            and lot.remainder > 0
            and (lot.expires_at is None or lot.expires_at > self.now)
            and lot.source not in held
        ]
        return sorted(
            lots,
            key=lambda i: (
                self.model.lots[i].expires_at is None,
                self.model.lots[i].expires_at or T0,
                i,
            ),
        )

    def total(self, who: int, side: str, span: tuple[datetime, datetime]) -> int:
        return sum(
            t.points
            for t in self.model.transfers
            if not t.undone and getattr(t, side) == who and span[0] <= t.at < span[1]
        )

    def expected_refusal(self, sender: int, recipient: int, points: int) -> str | None:
        stays = self.model.stays
        if sender not in stays:
            return "no_household"
        if recipient not in stays or stays[recipient].household != stays[sender].household:
            return "not_together"
        cooling = timedelta(days=FAMILY.cooling_off_days)
        if max(stays[sender].since, stays[recipient].since) + cooling > self.now:
            return "cooling_off"
        if points < FAMILY.min_transfer:
            return "below_minimum"
        limits = limits_at(CONFIG, self.now)
        room = min(
            FAMILY.sender_daily_max - self.total(sender, "sender", limits.day),
            FAMILY.sender_monthly_max - self.total(sender, "sender", limits.month),
            FAMILY.recipient_daily_max - self.total(recipient, "recipient", limits.day),
            FAMILY.recipient_monthly_max - self.total(recipient, "recipient", limits.month),
        )
        if points > room:
            return "limit"
        if sum(self.model.lots[i].remainder for i in self.movable(sender)) < points:
            return "points"
        return None

    # --- rules ---------------------------------------------------------------------------

    @rule(
        who=members,
        points=st.integers(1, 80),
        days=st.one_of(st.none(), st.integers(1, 40)),
        source=st.sampled_from(["purchase", "purchase", "game"]),
    )
    def earn(self, who: int, points: int, days: int | None, source: str) -> None:
        self.serial += 1
        expires = None if days is None else self.now + timedelta(days=days)
        result = ledger.earn(
            self.conn,
            self.ids[who],
            points,
            kind=source,
            key=f"earn:{self.serial}",
            actor="t",
            expires_at=expires,
            now=self.now,
        )
        self.model.lots[result.lots_created[0]] = ModelLot(who, points, expires, source)
        self.earned += points

    @rule(hours=st.sampled_from([1, 6, 24, 24 * 5, 24 * 20]))
    def advance(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(minutes=st.integers(1, 15))
    def a_few_minutes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(who=members)
    def found(self, who: int) -> None:
        if who in self.model.stays:
            return
        home = create_household(self.conn, self.ids[who], actor="t", now=self.now)
        self.model.stays[who] = Stay(home.id, self.now)

    @rule(who=members, host=members)
    def join(self, who: int, host: int) -> None:
        stays = self.model.stays
        if who in stays or host not in stays:
            return
        home = stays[host].household
        if sum(1 for s in stays.values() if s.household == home) >= FAMILY.max_members:
            return
        join_household(
            self.conn, home, self.ids[who], max_members=FAMILY.max_members, actor="t", now=self.now
        )
        stays[who] = Stay(home, self.now)

    @precondition(lambda self: len(self.model.transfers) > 2)
    @rule(who=members)
    def leave(self, who: int) -> None:
        if who not in self.model.stays:
            return
        end_stay(self.conn, self.ids[who], "left", actor="t", now=self.now)
        del self.model.stays[who]

    @rule(sender=parties, recipient=parties, points=st.integers(1, 55), wait=st.booleans())
    def transfer(self, sender: int, recipient: int, points: int, wait: bool) -> None:
        if sender == recipient:
            return
        limits = limits_at(CONFIG, self.now)
        expected = self.expected_refusal(sender, recipient, points)
        try:
            offer = create_offer(
                self.conn,
                self.ids[sender],
                self.ids[recipient],
                points,
                limits=limits,
                ttl=TTL,
                now=self.now,
            )
        except (TransferRefused, InsufficientPoints) as exc:
            assert expected is not None, exc
            return
        assert expected is None
        if wait:
            # Confirmed a moment later, when the world may have moved on.
            self.now += timedelta(minutes=1)
            limits = limits_at(CONFIG, self.now)
            expected = self.expected_refusal(sender, recipient, points)
        plan = self.movable(sender)
        try:
            result = confirm(
                self.conn,
                offer.id,
                self.ids[sender],
                limits=limits,
                key=offer_key(offer.id),
                actor="t",
                now=self.now,
            )
        except (TransferRefused, InsufficientPoints) as exc:
            assert expected is not None, exc
            return
        assert expected is None
        need, taken = points, []
        for lot_id in plan:
            take = min(need, self.model.lots[lot_id].remainder)
            taken.append((lot_id, take))
            need -= take
            if need == 0:
                break
        assert [(c.lot_id, c.points) for c in result.consumed] == taken
        for (lot_id, take), new_lot in zip(taken, result.lots_created, strict=True):
            origin = self.model.lots[lot_id]
            origin.remainder -= take
            self.model.lots[new_lot] = ModelLot(recipient, take, origin.expires_at, origin.source)
        self.model.transfers.append(
            ModelTransfer(
                result.operation_id,
                self.now,
                sender,
                recipient,
                points,
                [(lot, take) for lot, (_, take) in zip(result.lots_created, taken, strict=True)],
            )
        )

    @precondition(lambda self: bool(self.model.transfers))
    @rule(pick=st.integers(0, 3))
    def take_back(self, pick: int) -> None:
        # Mostly the latest transfer, the one whose undo button is still fresh.
        done = self.model.transfers[-1 - pick % len(self.model.transfers)]
        # Spent by the recipient (or swept as expired): some lot no longer holds all of it.
        spent = any(self.model.lots[i].remainder != points for i, points in done.lots)
        try:
            result = undo(
                self.conn,
                done.operation_id,
                self.ids[done.sender],
                within=UNDO,
                key=undo_key(done.operation_id),
                actor="t",
                now=self.now,
            )
        except AlreadyReversed:
            assert done.undone
            return
        except InvalidState as exc:
            assert not done.undone
            assert (exc.status == "spent") == (spent and self.now <= done.at + UNDO)
            return
        if result.replayed:
            assert done.undone
            return
        assert not done.undone and not spent and self.now <= done.at + UNDO
        done.undone = True
        for (lot_id, _points), new_lot in zip(done.lots, result.lots_created, strict=True):
            given = self.model.lots[lot_id]
            self.model.lots[new_lot] = ModelLot(
                done.sender, given.remainder, given.expires_at, given.source
            )
            given.remainder = 0

    @rule(who=members, points=st.integers(1, 60))
    def spend(self, who: int, points: int) -> None:
        self.serial += 1
        try:
            result = ledger.spend(
                self.conn,
                self.ids[who],
                points,
                key=f"spend:{self.serial}",
                actor="t",
                reason=None,
                reference=None,
                now=self.now,
            )
        except InsufficientPoints:
            return
        for consumed in result.consumed:
            self.model.lots[consumed.lot_id].remainder -= consumed.points

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def balances_conserved(self) -> None:
        rows = self.conn.execute(
            "SELECT coalesce(sum(balance), 0) FROM accounts WHERE kind = 'member'"
        ).fetchone()
        spent = self.conn.execute(
            "SELECT coalesce(sum(balance), 0) FROM account_balances WHERE name = 'redeemed'"
        ).fetchone()
        assert rows[0] + spent[0] == self.earned

    @invariant()
    def lots_match_the_model(self) -> None:
        for lot_id, lot in self.model.lots.items():
            row = self.conn.execute(
                "SELECT member_id, remainder, expires_at FROM lots WHERE id = ?", (lot_id,)
            ).fetchone()
            expires = None if lot.expires_at is None else int(lot.expires_at.timestamp())
            assert tuple(row) == (self.ids[lot.member], lot.remainder, expires)

    @invariant()
    def households_match_the_model(self) -> None:
        for who in range(MEMBERS):
            stay = self.model.stays.get(who)
            assert household_id_of(self.conn, self.ids[who]) == (stay and stay.household)

    @invariant()
    def limits_never_exceeded(self) -> None:
        for t in self.model.transfers:
            limits = limits_at(CONFIG, t.at)
            assert self.total(t.sender, "sender", limits.day) <= FAMILY.sender_daily_max
            assert self.total(t.sender, "sender", limits.month) <= FAMILY.sender_monthly_max
            assert self.total(t.recipient, "recipient", limits.day) <= FAMILY.recipient_daily_max
            assert (
                self.total(t.recipient, "recipient", limits.month) <= FAMILY.recipient_monthly_max
            )


TransferMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTransferMachine = TransferMachine.TestCase


def test_the_transfer_machine_on_postgres(tmp_path: Path) -> None:
    """The same machine on PostgreSQL: fewer, shorter runs (every statement is a round trip)."""
    with migrated_connection("postgres", tmp_path) as conn:

        class OnPostgres(TransferMachine):
            shared = conn

        run_state_machine_as_test(
            OnPostgres,
            settings=settings(
                max_examples=30,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
