"""Transfers between household members in the store, under the limits the programme decides:
per-day and per-month maxima for both sides, the cooling-off, held-back sources, the expiry
kept (lifetime too), the undo, stale offers and replays."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Config, FamilyConfig, load_config
from bot.programme.errors import RuleError
from bot.programme.transfers import (
    limits_at,
    offer_key,
    parse_points,
    transfer_terms,
    undo_key,
)
from storage import ledger
from storage.audit import audit
from storage.errors import (
    AlreadyReversed,
    InsufficientPoints,
    InvalidState,
    NotFound,
    OfferExpired,
    SourceHeldBack,
)
from storage.family import create_household, end_stay, join_household
from storage.members import Profile, register_member
from storage.sql import engine
from storage.transfers import (
    TransferLimits,
    TransferRefused,
    confirm,
    create_offer,
    limit_room,
    undo,
)
from tests.postgres import ENGINES, migrated_connection

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # noon in Shanghai
JOINED = NOW - timedelta(days=8)
EXPIRY = NOW + timedelta(days=100)
TTL = timedelta(minutes=10)


def family(**changes: object) -> Config:
    config = load_config(SAMPLE)
    return config.model_copy(update={"family": config.family.model_copy(update=changes)})


CONFIG = family()


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine; the audit passes after every test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        report = audit(connection, integrity="full")
        assert report.ok, str(report)


def member(conn: sqlite3.Connection, n: int, points: int = 0, **earn: object) -> int:
    member_id = register_member(conn, Profile(1000 + n, f"m{n}"), None, JOINED)[0].id
    if points:
        ledger.earn(
            conn,
            member_id,
            points,
            kind=str(earn.get("kind", "purchase")),
            key=f"seed:{n}:{earn.get('kind', 'purchase')}",
            actor="pos",
            expires_at=earn.get("expires_at", EXPIRY),  # type: ignore[arg-type]
            now=JOINED,
        )
    return member_id


def household(conn: sqlite3.Connection, *members: int, at: datetime = JOINED) -> int:
    home = create_household(conn, members[0], actor="t", now=at)
    for other in members[1:]:
        join_household(conn, home.id, other, max_members=6, actor="t", now=at)
    return home.id


def send(
    conn: sqlite3.Connection,
    sender: int,
    recipient: int,
    points: int,
    *,
    at: datetime = NOW,
    config: Config = CONFIG,
) -> ledger.OperationResult:
    limits = limits_at(config, at)
    offer = create_offer(conn, sender, recipient, points, limits=limits, ttl=TTL, now=at)
    return confirm(
        conn, offer.id, sender, limits=limits, key=offer_key(offer.id), actor="t", now=at
    )


def lots_of(conn: sqlite3.Connection, member_id: int) -> list[tuple[int, datetime | None]]:
    return [
        (lot.remainder, lot.expires_at) for lot in ledger.lots(conn, member_id) if lot.remainder
    ]


def test_a_transfer_moves_points_with_their_expiry_and_records_the_household(
    conn: sqlite3.Connection,
) -> None:
    alice = member(conn, 1, 300)
    ledger.earn(
        conn, alice, 100, kind="purchase", key="life", actor="pos", expires_at=None, now=JOINED
    )
    bob = member(conn, 2)
    home = household(conn, alice, bob)
    limits = limits_at(CONFIG, NOW)
    offer = create_offer(conn, alice, bob, 350, limits=limits, ttl=TTL, now=NOW)
    # The preview: the dated lot first, then the lifetime one.
    assert offer.plan == ((EXPIRY, 300), (None, 50))
    result = confirm(
        conn, offer.id, alice, limits=limits, key=offer_key(offer.id), actor="t", now=NOW
    )
    assert lots_of(conn, bob) == [(300, EXPIRY), (50, None)]
    assert ledger.balance(conn, alice, NOW).available == 50
    record = ledger.operation(conn, result.operation_id)
    assert record.meta == {"household": home, "offer": offer.id}
    assert result.recipient_id == bob


def test_a_double_tap_books_once(conn: sqlite3.Connection) -> None:
    alice, bob = member(conn, 1, 300), member(conn, 2)
    household(conn, alice, bob)
    limits = limits_at(CONFIG, NOW)
    offer = create_offer(conn, alice, bob, 100, limits=limits, ttl=TTL, now=NOW)
    first = confirm(
        conn, offer.id, alice, limits=limits, key=offer_key(offer.id), actor="t", now=NOW
    )
    again = confirm(
        conn,
        offer.id,
        alice,
        limits=limits,
        key=offer_key(offer.id),
        actor="t",
        now=NOW + timedelta(hours=1),
    )
    assert again.replayed and again.operation_id == first.operation_id
    assert ledger.balance(conn, bob, NOW).available == 100


def test_someone_elses_or_an_expired_offer_is_stale(conn: sqlite3.Connection) -> None:
    alice, bob = member(conn, 1, 300), member(conn, 2)
    household(conn, alice, bob)
    limits = limits_at(CONFIG, NOW)
    offer = create_offer(conn, alice, bob, 100, limits=limits, ttl=TTL, now=NOW)
    with pytest.raises(OfferExpired):
        confirm(conn, offer.id, bob, limits=limits, key=offer_key(offer.id), actor="t", now=NOW)
    with pytest.raises(OfferExpired):
        confirm(
            conn, offer.id, alice, limits=limits, key=offer_key(offer.id), actor="t", now=NOW + TTL
        )
    assert ledger.balance(conn, bob, NOW).available == 0


@pytest.mark.parametrize("leaver", ["sender", "recipient"])
def test_a_confirmation_after_leaving_is_refused(conn: sqlite3.Connection, leaver: str) -> None:
    alice, bob = member(conn, 1, 300), member(conn, 2)
    household(conn, alice, bob)
    limits = limits_at(CONFIG, NOW)
    offer = create_offer(conn, alice, bob, 100, limits=limits, ttl=TTL, now=NOW)
    end_stay(conn, alice if leaver == "sender" else bob, "left", actor="t", now=NOW)
    later = NOW + timedelta(minutes=1)
    with pytest.raises(TransferRefused) as refused:
        confirm(conn, offer.id, alice, limits=limits, key=offer_key(offer.id), actor="t", now=later)
    assert refused.value.reason == ("no_household" if leaver == "sender" else "not_together")
    assert ledger.balance(conn, alice, NOW).available == 300


def test_members_of_different_households_cannot_transfer(conn: sqlite3.Connection) -> None:
    alice, bob, carol = member(conn, 1, 300), member(conn, 2), member(conn, 3)
    household(conn, alice, bob)
    with pytest.raises(TransferRefused) as refused:
        send(conn, alice, carol, 50)
    assert refused.value.reason == "not_together"
    household(conn, carol)
    with pytest.raises(TransferRefused):
        send(conn, alice, carol, 50)


@pytest.mark.parametrize("newcomer", ["sender", "recipient"])
def test_the_cooling_off_holds_both_sides(conn: sqlite3.Connection, newcomer: str) -> None:
    alice, bob = member(conn, 1, 300), member(conn, 2)
    home = create_household(conn, alice if newcomer == "recipient" else bob, actor="t", now=JOINED)
    joined = NOW - timedelta(days=6)
    join_household(
        conn,
        home.id,
        bob if newcomer == "recipient" else alice,
        max_members=6,
        actor="t",
        now=joined,
    )
    with pytest.raises(TransferRefused) as refused:
        send(conn, alice, bob, 50)
    assert refused.value.reason == "cooling_off"
    assert refused.value.until == joined + timedelta(days=7)
    assert send(conn, alice, bob, 50, at=joined + timedelta(days=7)).points == 50


def test_below_the_minimum_is_refused(conn: sqlite3.Connection) -> None:
    alice, bob = member(conn, 1, 300), member(conn, 2)
    household(conn, alice, bob)
    with pytest.raises(TransferRefused) as refused:
        send(conn, alice, bob, 9)
    assert (refused.value.reason, refused.value.limit) == ("below_minimum", 10)


def test_the_sender_daily_and_monthly_limits(conn: sqlite3.Connection) -> None:
    config = family(sender_daily_max=100, sender_monthly_max=250)
    alice, bob, carol = member(conn, 1, 1000), member(conn, 2), member(conn, 3)
    household(conn, alice, bob, carol)
    send(conn, alice, bob, 60, config=config)
    send(conn, alice, carol, 40, config=config)  # to anyone: the sender's total
    with pytest.raises(TransferRefused) as refused:
        send(conn, alice, bob, 10, config=config)
    assert (refused.value.reason, refused.value.limit, refused.value.left) == ("sender_day", 100, 0)
    # The next local day (midnight in Shanghai is 16:00 UTC) starts a new daily total.
    tomorrow = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    send(conn, alice, bob, 100, at=tomorrow, config=config)
    with pytest.raises(TransferRefused) as refused:
        send(conn, alice, bob, 60, at=tomorrow + timedelta(days=1), config=config)
    assert (refused.value.reason, refused.value.left) == ("sender_month", 50)
    # December is a new month.
    assert send(conn, alice, bob, 100, at=datetime(2026, 11, 30, 16, 0, tzinfo=UTC), config=config)


def test_the_recipient_limits_count_every_sender(conn: sqlite3.Connection) -> None:
    config = family(recipient_daily_max=100)
    alice, bob, carol = member(conn, 1, 500), member(conn, 2, 500), member(conn, 3)
    household(conn, alice, bob, carol)
    send(conn, alice, carol, 70, config=config)
    with pytest.raises(TransferRefused) as refused:
        send(conn, bob, carol, 40, config=config)
    assert (refused.value.reason, refused.value.left) == ("recipient_day", 30)
    limits = limits_at(config, NOW)
    assert limit_room(conn, bob, carol, limits) == (30, "recipient_day")


def test_an_undone_transfer_no_longer_counts_toward_the_limits(conn: sqlite3.Connection) -> None:
    config = family(sender_daily_max=100)
    alice, bob = member(conn, 1, 500), member(conn, 2)
    household(conn, alice, bob)
    sent = send(conn, alice, bob, 100, config=config)
    undo(
        conn,
        sent.operation_id,
        alice,
        within=timedelta(minutes=10),
        key=undo_key(sent.operation_id),
        actor="t",
        now=NOW,
    )
    assert send(conn, alice, bob, 100, config=config).points == 100


def test_game_prizes_stay_with_the_member_who_won_them(conn: sqlite3.Connection) -> None:
    alice = member(conn, 1, 100, kind="game")
    ledger.earn(conn, alice, 50, kind="purchase", key="p", actor="pos", expires_at=None, now=JOINED)
    bob = member(conn, 2)
    household(conn, alice, bob)
    with pytest.raises(SourceHeldBack) as held:
        send(conn, alice, bob, 60)
    assert (held.value.available, held.value.held_back) == (50, 100)
    # The prize expires first, yet the transfer takes only the purchase points.
    send(conn, alice, bob, 50)
    assert lots_of(conn, alice) == [(100, EXPIRY)]
    with pytest.raises(InsufficientPoints) as short:
        send(conn, alice, bob, 500)
    assert not isinstance(short.value, SourceHeldBack)


def test_points_passed_on_keep_their_root_source(conn: sqlite3.Connection) -> None:
    """A prize moved by an operator's rule change still counts as a prize when passed on."""
    config = family(non_transferable=())
    alice, bob, carol = member(conn, 1, 100, kind="game"), member(conn, 2), member(conn, 3)
    household(conn, alice, bob, carol)
    send(conn, alice, bob, 100, config=config)
    # Now prizes are held back: bob's lot came from alice's prize, so it stays with bob.
    with pytest.raises(SourceHeldBack):
        send(conn, bob, carol, 50)
    # A refunded redemption's points keep their root source too.
    spent = ledger.spend(conn, bob, 40, key="buy", actor="m", reason=None, reference=None, now=NOW)
    ledger.refund(conn, spent.operation_id, key="back", actor="o", reason=None,
                  merchant_fault=True, now=NOW)  # fmt: skip
    with pytest.raises(SourceHeldBack):
        send(conn, bob, carol, 10)


def test_undo_in_time_returns_the_points_with_the_original_expiry(
    conn: sqlite3.Connection,
) -> None:
    alice, bob = member(conn, 1, 100), member(conn, 2)
    ledger.earn(
        conn, alice, 20, kind="purchase", key="life", actor="pos", expires_at=None, now=JOINED
    )
    household(conn, alice, bob)
    sent = send(conn, alice, bob, 120)
    later = NOW + timedelta(minutes=10)
    back = undo(
        conn,
        sent.operation_id,
        alice,
        within=timedelta(minutes=10),
        key=undo_key(sent.operation_id),
        actor="t",
        now=later,
    )
    assert back.kind == "transfer_undo" and back.points == 120
    assert ledger.balance(conn, bob, later).available == 0
    assert lots_of(conn, alice) == [(100, EXPIRY), (20, None)]
    # A double tap replays; another undo is refused.
    again = undo(
        conn,
        sent.operation_id,
        alice,
        within=timedelta(minutes=10),
        key=undo_key(sent.operation_id),
        actor="t",
        now=later,
    )
    assert again.replayed and again.operation_id == back.operation_id
    with pytest.raises(AlreadyReversed):
        ledger.undo_transfer(
            conn, sent.operation_id, sender_id=alice, within=timedelta(minutes=10),
            key="other", actor="t", now=later,
        )  # fmt: skip


def test_undo_too_late_after_spending_or_by_someone_else(conn: sqlite3.Connection) -> None:
    alice, bob = member(conn, 1, 300), member(conn, 2)
    household(conn, alice, bob)
    window = timedelta(minutes=10)
    first = send(conn, alice, bob, 100)
    with pytest.raises(InvalidState) as late:
        undo(
            conn,
            first.operation_id,
            alice,
            within=window,
            key=undo_key(first.operation_id),
            actor="t",
            now=NOW + window + timedelta(seconds=1),
        )
    assert late.value.status == "undo_window_closed"
    second = send(conn, alice, bob, 100)
    ledger.spend(conn, bob, 150, key="buy", actor="m", reason=None, reference=None, now=NOW)
    with pytest.raises(InvalidState) as spent:
        undo(
            conn,
            second.operation_id,
            alice,
            within=window,
            key=undo_key(second.operation_id),
            actor="t",
            now=NOW,
        )
    assert spent.value.status == "spent"
    with pytest.raises(NotFound):
        undo(
            conn,
            second.operation_id,
            bob,
            within=window,
            key=undo_key(second.operation_id),
            actor="t",
            now=NOW,
        )


def test_the_database_refuses_a_forged_undo(conn: sqlite3.Connection) -> None:
    alice, bob = member(conn, 1, 300), member(conn, 2)
    household(conn, alice, bob)
    sent = send(conn, alice, bob, 100)
    with pytest.raises(sqlite3.IntegrityError, match="reverses a transfer"):
        conn.execute(
            "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id,"
            " counterparty_id, points, actor, reverses_operation_id, created_at)"
            " VALUES ('transfer_undo', 'forged', 'x', ?, ?, 999, 't', ?, 0)",
            (alice, bob, sent.operation_id),
        )


def test_terms_follow_the_configuration() -> None:
    terms = transfer_terms(CONFIG)
    assert terms is not None
    assert (terms.min_transfer, terms.undo_minutes, terms.non_transferable) == (10, 10, ("game",))
    assert transfer_terms(family(enabled=False)) is None
    limits = limits_at(CONFIG, NOW)
    assert isinstance(limits, TransferLimits)
    assert limits.day == (
        datetime(2026, 11, 24, 16, 0, tzinfo=UTC),
        datetime(2026, 11, 25, 16, 0, tzinfo=UTC),
    )
    assert limits.month == (
        datetime(2026, 10, 31, 16, 0, tzinfo=UTC),
        datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
    )
    assert limits_at(family(non_transferable=("share",)), NOW).held_back == {"share_bonus"}
    assert isinstance(CONFIG.family, FamilyConfig)


@pytest.mark.parametrize(
    ("typed", "points"),
    [("100", 100), ("１００", 100), ("50积分", 50), ("50 分", 50), ("20 points", 20), ("30.0", 30),
     (" 007 ", 7)],
)  # fmt: skip
def test_typed_amounts(typed: str, points: int) -> None:
    assert parse_points(typed) == points


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("abc", "transfer.amount_not_number"),
        ("1e4", "transfer.amount_not_number"),
        ("1,000", "transfer.amount_not_number"),
        ("", "transfer.amount_not_number"),
        ("10.5", "transfer.amount_not_whole"),
        ("-5", "transfer.amount_not_positive"),
        ("0", "transfer.amount_not_positive"),
        ("9" * 13, "transfer.amount_not_number"),
    ],
)
def test_bad_typed_amounts(typed: str, key: str) -> None:
    with pytest.raises(RuleError) as refused:
        parse_points(typed)
    assert refused.value.key == key


# --- the audit -------------------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def raw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A database the test tampers with, on each engine; it audits it itself."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


def drop_trigger(conn: sqlite3.Connection, trigger: str) -> None:
    """Drop a trigger behind the storage code's back (PostgreSQL names its table)."""
    table = ""
    if engine(conn) == "postgres":
        sql = "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = ?"
        table = f" ON {conn.execute(sql, (trigger,)).fetchone()[0]}"
    conn.execute(f"DROP TRIGGER {trigger}{table}")


def violations(conn: sqlite3.Connection) -> set[str]:
    return {v.check for v in audit(conn, integrity="none").violations}


def test_the_audit_passes_transfers_of_members_who_left_since(raw: sqlite3.Connection) -> None:
    alice, bob = member(raw, 1, 300), member(raw, 2)
    household(raw, alice, bob)
    sent = send(raw, alice, bob, 100)
    undo(
        raw,
        sent.operation_id,
        alice,
        within=TTL,
        key=undo_key(sent.operation_id),
        actor="t",
        now=NOW,
    )
    send(raw, alice, bob, 50)
    end_stay(raw, bob, "left", actor="t", now=NOW + timedelta(hours=1))
    assert violations(raw) == set()


@pytest.mark.parametrize("forgery", ["other household", "no household recorded", "after leaving"])
def test_the_audit_catches_a_transfer_across_households(
    raw: sqlite3.Connection, forgery: str
) -> None:
    alice, bob, carol = member(raw, 1, 300), member(raw, 2), member(raw, 3)
    home = household(raw, alice, bob)
    household(raw, carol)
    # The ledger's primitive books what it is told: the checks live in storage.transfers.
    if forgery == "other household":
        ledger.transfer(raw, alice, carol, 10, key="f", actor="x", reason=None, now=NOW,
                        meta={"household": home})  # fmt: skip
    elif forgery == "no household recorded":
        ledger.transfer(raw, alice, bob, 10, key="f", actor="x", reason=None, now=NOW)
    else:
        end_stay(raw, bob, "left", actor="t", now=NOW)
        ledger.transfer(raw, alice, bob, 10, key="f", actor="x", reason=None,
                        now=NOW + timedelta(seconds=1), meta={"household": home})  # fmt: skip
    assert violations(raw) == {"transfer_within_household"}


def test_the_audit_catches_a_forged_expiry_or_origin(raw: sqlite3.Connection) -> None:
    alice, bob = member(raw, 1, 300), member(raw, 2)
    household(raw, alice, bob)
    sent = send(raw, alice, bob, 100)
    undo(
        raw,
        sent.operation_id,
        alice,
        within=TTL,
        key=undo_key(sent.operation_id),
        actor="t",
        now=NOW,
    )
    assert violations(raw) == set()
    drop_trigger(raw, "lots_append_only_update")
    # The undo's lot made younger than the sender's original.
    raw.execute(
        "UPDATE lots SET expires_at = expires_at + 86400 WHERE operation_id ="
        " (SELECT id FROM operations WHERE kind = 'transfer_undo')"
    )
    assert violations(raw) == {"triggers", "transfer_keeps_expiry"}


def test_the_audit_catches_a_forged_undo(raw: sqlite3.Connection) -> None:
    alice, bob = member(raw, 1, 300), member(raw, 2)
    household(raw, alice, bob)
    sent = send(raw, alice, bob, 100)
    drop_trigger(raw, "operations_transfer_undo_matches")
    raw.execute(
        "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id,"
        " counterparty_id, points, actor, reverses_operation_id, created_at)"
        " VALUES ('transfer_undo', 'forged', 'x', ?, ?, 0, 't', ?, 0)",
        (bob, alice, sent.operation_id),
    )
    assert violations(raw) == {"triggers", "transfer_undo_matches"}
