"""The games store: offers, plays, limits, the budget, scratch cards, vouchers, and the audit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from storage import games, ledger
from storage.audit import audit
from storage.errors import (
    InsufficientPoints,
    InvalidRequest,
    InvalidState,
    LimitReached,
    NotFound,
    OfferExpired,
    PriceChanged,
)
from storage.games import Games, Outcome, Play, PlayRules
from storage.ledger import Ledger
from storage.members import Members, Profile, register_member
from storage.store import connect_sync, migrate
from tests.postgres import ENGINES, migrated_connection, opened_store

T0 = datetime(2025, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
DAY = date(2025, 3, 1)
TTL = timedelta(minutes=10)
LOT_EXPIRY = T0 + timedelta(days=365)
VOUCHER_EXPIRY = T0 + timedelta(days=30)
RULES = PlayRules(cost=50, free_per_day=1, daily_limit=3, daily_budget=1000)
LAYOUT = ("💎", "💎", "💎", "🍀", "🍀", "⭐", "⭐", "🔔", "🔔")
NO_LINE = ("🍀", "🍀", "⭐", "⭐", "🔔", "🔔", "🍒", "🍒", "🌱")


def p100(layout: tuple[str, ...] | None = None) -> Outcome:
    return Outcome("p100", "points", 100, layout)


def thanks(layout: tuple[str, ...] | None = None) -> Outcome:
    return Outcome("thanks", "nothing", 0, layout)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine; the audit passes after every test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        report = audit(connection)
        assert report.ok, str(report)


@pytest.fixture
def sqlite_conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated SQLite database alone, for SQLite's own migration history."""
    connection = connect_sync(tmp_path / "games.db")
    migrate(connection)
    yield connection
    report = audit(connection)
    assert report.ok, str(report)
    connection.close()


def new_member(conn: sqlite3.Connection, telegram_id: int = 1, points: int = 1000) -> int:
    member, _ = register_member(conn, Profile(telegram_id, f"member{telegram_id}"), None, T0)
    if points:
        ledger.earn(
            conn,
            member.id,
            points,
            kind="purchase",
            key=f"seed:{telegram_id}",
            actor="pos",
            expires_at=None,
            now=T0,
        )
    return member.id


def available(conn: sqlite3.Connection, member_id: int) -> int:
    return ledger.balance(conn, member_id, T0).available


def offer(
    conn: sqlite3.Connection,
    member_id: int,
    cost: int,
    *,
    game: str = "wheel",
    day: date = DAY,
    now: datetime = T0,
) -> int:
    return games.create_offer(conn, member_id, game, cost, local_day=day, now=now, ttl=TTL).id


def play(
    conn: sqlite3.Connection,
    offer_id: int,
    member_id: int,
    *,
    game: str = "wheel",
    drawn: Outcome | None = None,
    fallback: Outcome | None = None,
    rules: PlayRules = RULES,
    day: date = DAY,
    now: datetime = T0,
) -> Play:
    layout = LAYOUT if game == "scratch" else None
    no_line = NO_LINE if game == "scratch" else None
    return games.play(
        conn,
        offer_id,
        member_id,
        game=game,
        local_day=day,
        rules=rules,
        drawn=drawn or p100(layout),
        fallback=fallback or thanks(no_line),
        campaign=None,
        prize_expires_at=LOT_EXPIRY,
        voucher_expires_at=VOUCHER_EXPIRY,
        actor="member",
        now=now,
    )


def counts(conn: sqlite3.Connection) -> tuple[int, ...]:
    return tuple(
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("operations", "game_plays", "game_vouchers")
    )


# --- the wheel -------------------------------------------------------------------------------


def test_a_free_spin_pays_its_prize_in_one_transaction(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    spun = play(conn, offer(conn, alice, 0), alice)
    assert (spun.cost, spun.cost_operation_id, spun.prize_points) == (0, None, 100)
    assert spun.revealed and spun.prize_operation_id is not None
    prize = ledger.operation(conn, spun.prize_operation_id)
    assert (prize.kind, prize.points, prize.key) == ("game", 100, f"game:{spun.offer_id}:prize")
    assert prize.meta == {"game": "wheel", "offer": spun.offer_id, "prize": "p100"}
    assert [lot.expires_at for lot in ledger.lots(conn, alice)][-1] == LOT_EXPIRY
    assert available(conn, alice) == 1100


def test_a_paid_spin_spends_into_the_game_sink(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    play(conn, offer(conn, alice, 0), alice, drawn=thanks())
    spun = play(conn, offer(conn, alice, 50), alice, drawn=thanks())
    assert spun.cost == 50 and spun.cost_operation_id is not None
    cost = ledger.operation(conn, spun.cost_operation_id)
    assert (cost.kind, cost.points, cost.key) == ("game_play", 50, f"game:{spun.offer_id}:cost")
    assert {p.account for p in cost.postings} == {"game_cost", f"member:{alice}"}
    assert spun.prize_operation_id is None
    assert available(conn, alice) == 950


def test_the_same_offer_plays_once(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    play(conn, offer(conn, alice, 0), alice, drawn=thanks())
    offer_id = offer(conn, alice, 50)
    first = play(conn, offer_id, alice)
    before = counts(conn)
    # A redelivered tap draws again; the draw is discarded, the stored play returned.
    again = play(conn, offer_id, alice, drawn=thanks())
    assert again.replayed and again.id == first.id and again.prize_id == "p100"
    assert counts(conn) == before
    assert available(conn, alice) == 1000 - 50 + 100


def test_the_daily_limit_counts_free_and_paid_plays(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    play(conn, offer(conn, alice, 0), alice, drawn=thanks())
    play(conn, offer(conn, alice, 50), alice, drawn=thanks())
    play(conn, offer(conn, alice, 50), alice, drawn=thanks())
    stale = offer(conn, alice, 50)
    before = counts(conn)
    with pytest.raises(LimitReached) as excinfo:
        play(conn, stale, alice)
    assert excinfo.value.limit == 3
    assert counts(conn) == before and available(conn, alice) == 900
    # Tomorrow is another day, with its free spin again.
    tomorrow = T0 + timedelta(days=1)
    next_day = DAY + timedelta(days=1)
    spun = play(
        conn, offer(conn, alice, 0, day=next_day, now=tomorrow), alice, day=next_day, now=tomorrow
    )
    assert spun.cost == 0
    assert games.day_usage(conn, alice, "wheel", DAY).plays == 3
    assert games.day_usage(conn, alice, "wheel", next_day).plays == 1


def test_limits_are_per_game(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    rules = PlayRules(cost=10, free_per_day=0, daily_limit=1, daily_budget=1000)
    play(conn, offer(conn, alice, 10), alice, rules=rules, drawn=thanks())
    card = play(conn, offer(conn, alice, 10, game="scratch"), alice, game="scratch", rules=rules)
    assert card.game == "scratch"
    with pytest.raises(LimitReached):
        play(conn, offer(conn, alice, 10), alice, rules=rules)


def test_a_button_that_promised_a_free_play_is_refused_once_it_is_used(
    conn: sqlite3.Connection,
) -> None:
    alice = new_member(conn)
    first, second = offer(conn, alice, 0), offer(conn, alice, 0)
    play(conn, first, alice)
    before = counts(conn)
    with pytest.raises(PriceChanged) as excinfo:
        play(conn, second, alice)
    assert (excinfo.value.promised, excinfo.value.cost) == (0, 50)
    assert counts(conn) == before


def test_insufficient_points_write_nothing(conn: sqlite3.Connection) -> None:
    alice = new_member(conn, points=30)
    play(conn, offer(conn, alice, 0), alice, drawn=thanks())
    offer_id = offer(conn, alice, 50)
    before = counts(conn)
    with pytest.raises(InsufficientPoints) as excinfo:
        play(conn, offer_id, alice)
    assert (excinfo.value.available, excinfo.value.requested) == (30, 50)
    assert counts(conn) == before and available(conn, alice) == 30


@pytest.mark.parametrize("case", ["someone else's", "unknown", "lapsed", "yesterday's", "game"])
def test_stale_or_foreign_offers_are_refused(conn: sqlite3.Connection, case: str) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    if case == "someone else's":
        offer_id, who = offer(conn, alice, 0), bob
    elif case == "unknown":
        offer_id, who = 999, alice
    elif case == "lapsed":
        offer_id, who = offer(conn, alice, 0, now=T0 - timedelta(minutes=11)), alice
    elif case == "yesterday's":
        offer_id, who = offer(conn, alice, 0, day=DAY - timedelta(days=1)), alice
    else:
        offer_id, who = offer(conn, alice, 0, game="scratch"), alice
    before = counts(conn)
    with pytest.raises(OfferExpired):
        play(conn, offer_id, who)
    assert counts(conn) == before


def test_the_budget_falls_back_once_spent_across_members_and_games(
    conn: sqlite3.Connection,
) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    rules = PlayRules(cost=0, free_per_day=0, daily_limit=10, daily_budget=250)
    first = play(conn, offer(conn, alice, 0), alice, rules=rules)
    card = play(conn, offer(conn, bob, 0, game="scratch"), bob, game="scratch", rules=rules)
    assert (first.prize_points, card.prize_points) == (100, 100)
    # 200 of 250 used: another 100 would overrun the budget.
    third = play(conn, offer(conn, alice, 0), alice, rules=rules)
    assert third.budget_fallback and third.prize_id == "thanks" and third.drawn_prize_id == "p100"
    assert third.prize_points == 0 and third.prize_operation_id is None
    small = play(conn, offer(conn, bob, 0), bob, rules=rules, drawn=Outcome("p50", "points", 50))
    assert not small.budget_fallback and small.prize_points == 50
    assert games.day_usage(conn, alice, "wheel", DAY).budget_used == 250
    # The next day has a fresh budget.
    tomorrow, next_day = T0 + timedelta(days=1), DAY + timedelta(days=1)
    fresh = play(
        conn,
        offer(conn, alice, 0, day=next_day, now=tomorrow),
        alice,
        rules=rules,
        day=next_day,
        now=tomorrow,
    )
    assert fresh.prize_points == 100


# SQLite only: schema 6 and migration 7 are SQLite's history (PostgreSQL starts at 30).
def test_a_database_with_plays_keeps_its_budget_totals_through_the_upgrade(
    sqlite_conn: sqlite3.Connection,
) -> None:
    conn = sqlite_conn
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    rules = PlayRules(cost=0, free_per_day=0, daily_limit=10, daily_budget=1000)
    for member in (alice, bob, alice):
        play(conn, offer(conn, member, 0), member, rules=rules)
    # The same plays in a database from before the totals existed (schema 6), upgraded by the
    # migration that added them (later ones have nothing to do with games).
    conn.executescript(
        "DROP TRIGGER game_plays_count_budget; DROP TRIGGER game_day_budget_no_delete;"
        " DROP TABLE game_day_budget; PRAGMA user_version = 6;"
    )
    assert migrate(conn, target=7) == [7]
    assert games.day_usage(conn, bob, "wheel", DAY).budget_used == 300
    rules = PlayRules(cost=0, free_per_day=0, daily_limit=10, daily_budget=350)
    assert play(conn, offer(conn, bob, 0), bob, rules=rules).budget_fallback


def test_a_fallback_voucher_is_issued(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    rules = PlayRules(cost=0, free_per_day=0, daily_limit=10, daily_budget=0)
    spun = play(conn, offer(conn, alice, 0), alice, rules=rules, fallback=Outcome("bag", "voucher"))
    assert spun.budget_fallback and spun.voucher is not None
    assert spun.voucher.prize_id == "bag" and spun.voucher.game == "wheel"


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("x", "jackpot", 0),
        Outcome("x", "points", 0),
        Outcome("x", "nothing", 5),
        Outcome("x", "points", -1),
        Outcome("x", "points", 10, LAYOUT),  # a wheel has no layout
    ],
)
def test_malformed_outcomes_are_refused(conn: sqlite3.Connection, outcome: Outcome) -> None:
    alice = new_member(conn)
    offer_id = offer(conn, alice, 0)
    with pytest.raises(InvalidRequest):
        play(conn, offer_id, alice, drawn=outcome)


# --- scratch cards ---------------------------------------------------------------------------


def scratch(conn: sqlite3.Connection, card_id: int, member_id: int, *cells: int) -> Play:
    return games.scratch(
        conn,
        card_id,
        member_id,
        cells,
        reveal_after=3,
        prize_expires_at=LOT_EXPIRY,
        voucher_expires_at=VOUCHER_EXPIRY,
        actor="member",
        now=T0 + timedelta(minutes=1),
    )


def buy(conn: sqlite3.Connection, member_id: int, drawn: Outcome | None = None) -> Play:
    rules = PlayRules(cost=30, free_per_day=0, daily_limit=5, daily_budget=1000)
    return play(
        conn,
        offer(conn, member_id, 30, game="scratch"),
        member_id,
        game="scratch",
        rules=rules,
        drawn=drawn,
    )


def test_a_card_fixes_its_prize_at_purchase_and_pays_it_once_revealed(
    conn: sqlite3.Connection,
) -> None:
    alice = new_member(conn)
    card = buy(conn, alice)
    assert not card.revealed and card.prize_id == "p100" and card.layout == LAYOUT
    assert card.prize_operation_id is None and available(conn, alice) == 970
    assert games.day_usage(conn, alice, "scratch", DAY).budget_used == 100  # reserved
    card = scratch(conn, card.id, alice, 4)
    card = scratch(conn, card.id, alice, 0)
    assert not card.revealed and card.scratch_count == 2
    assert card.is_scratched(4) and not card.is_scratched(1)
    card = scratch(conn, card.id, alice, 8)
    assert card.revealed and card.prize_operation_id is not None
    assert all(card.is_scratched(cell) for cell in range(9))
    assert available(conn, alice) == 1070
    before = counts(conn)
    with pytest.raises(InvalidState) as excinfo:
        scratch(conn, card.id, alice, 5)
    assert excinfo.value.status == "revealed"
    assert counts(conn) == before and available(conn, alice) == 1070


def test_scratching_a_cell_twice_changes_nothing(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    card = buy(conn, alice)
    scratch(conn, card.id, alice, 2)
    again = scratch(conn, card.id, alice, 2)
    assert again.replayed and again.scratch_count == 1 and not again.revealed


def test_scratch_all_reveals_at_once(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    card = buy(conn, alice, Outcome("bag", "voucher", 0, LAYOUT))
    revealed = scratch(conn, card.id, alice, *range(9))
    assert revealed.revealed and revealed.voucher is not None
    assert revealed.voucher.expires_at == VOUCHER_EXPIRY.replace(microsecond=0)
    assert revealed.prize_operation_id is None and available(conn, alice) == 970


@pytest.mark.parametrize("cells", [(), (9,), (-1,), (True,)])
def test_bad_cells_are_refused(conn: sqlite3.Connection, cells: tuple[int, ...]) -> None:
    alice = new_member(conn)
    card = buy(conn, alice)
    with pytest.raises(InvalidRequest):
        scratch(conn, card.id, alice, *cells)


def test_someone_elses_or_a_made_up_card_is_not_found(conn: sqlite3.Connection) -> None:
    alice, bob = new_member(conn, 1), new_member(conn, 2)
    card = buy(conn, alice)
    wheel_spin = play(conn, offer(conn, alice, 0), alice)
    before = counts(conn)
    for card_id, member_id in ((card.id, bob), (424242, alice), (wheel_spin.id, alice)):
        with pytest.raises(NotFound):
            scratch(conn, card_id, member_id, 0)
    assert counts(conn) == before
    assert games.card(conn, card.id, alice).scratched == 0


def test_unrevealed_cards_are_listed_oldest_first(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    first, second = buy(conn, alice), buy(conn, alice)
    scratch(conn, first.id, alice, *range(9))
    assert [c.id for c in games.unrevealed_cards(conn, alice)] == [second.id]


# --- voucher prizes --------------------------------------------------------------------------


def test_a_voucher_is_used_once_and_not_after_it_expires(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    spun = play(conn, offer(conn, alice, 0), alice, drawn=Outcome("bag", "voucher"))
    assert spun.voucher is not None
    code = spun.voucher.code
    assert len(code) == 8 and games.voucher_by_code(conn, code.lower()).id == spun.voucher.id
    used = games.use_voucher(conn, code, actor="till:1", now=T0 + timedelta(days=1))
    assert used.status == "used" and used.used_by == "till:1"
    with pytest.raises(InvalidState) as excinfo:
        games.use_voucher(conn, code, actor="till:1", now=T0 + timedelta(days=2))
    assert excinfo.value.status == "used"
    late = play(conn, offer(conn, alice, 50), alice, drawn=Outcome("bag", "voucher"))
    assert late.voucher is not None
    with pytest.raises(InvalidState) as expired:
        games.use_voucher(conn, late.voucher.code, actor="till:1", now=VOUCHER_EXPIRY)
    assert expired.value.status == "expired"
    with pytest.raises(NotFound):
        games.use_voucher(conn, "ZZZZZZZZ", actor="till:1", now=T0)
    found, total = games.vouchers(conn, alice)
    assert total == 2 and [v.code for v in found] == [late.voucher.code, code]


# --- the database's own guarantees and the audit ---------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE game_plays SET prize_points = 999",
        "UPDATE game_plays SET prize_id = 'jackpot'",
        "UPDATE game_plays SET scratched = 0",
        "UPDATE game_plays SET revealed_at = NULL",
        "DELETE FROM game_plays",
        "UPDATE game_offers SET cost = 0",
        "DELETE FROM game_offers",
        "UPDATE game_vouchers SET code = 'AAAAAAAA'",
        "DELETE FROM game_vouchers",
        "DELETE FROM game_day_budget",
    ],
)
def test_history_cannot_be_rewritten(conn: sqlite3.Connection, statement: str) -> None:
    alice = new_member(conn)
    card = buy(conn, alice, Outcome("bag", "voucher", 0, LAYOUT))
    scratch(conn, card.id, alice, 1, 2, 3)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(statement)


def test_a_used_voucher_stays_used(conn: sqlite3.Connection) -> None:
    alice = new_member(conn)
    spun = play(conn, offer(conn, alice, 0), alice, drawn=Outcome("bag", "voucher"))
    assert spun.voucher is not None
    games.use_voucher(conn, spun.voucher.code, actor="till", now=T0)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE game_vouchers SET status = 'issued', used_at = NULL, used_by = NULL")


@pytest.mark.parametrize("engine", ENGINES)
def test_the_audit_finds_a_game_operation_without_a_play(engine: str, tmp_path: Path) -> None:
    with migrated_connection(engine, tmp_path) as conn:
        alice = new_member(conn)
        play(conn, offer(conn, alice, 0), alice)
        assert audit(conn).ok
        ledger.earn(
            conn, alice, 500, kind="game", key="game:77:prize", actor="x", expires_at=None, now=T0
        )
        checks = {v.check for v in audit(conn).violations}
        assert checks == {"game_operation_has_play"}


@pytest.mark.parametrize("engine", ENGINES)
def test_the_audit_finds_a_prize_that_does_not_match_its_operation(
    engine: str, tmp_path: Path
) -> None:
    with migrated_connection(engine, tmp_path) as conn:
        alice = new_member(conn)
        play(conn, offer(conn, alice, 0), alice, drawn=thanks())
        spun = play(conn, offer(conn, alice, 50), alice)
        on_table = " ON game_plays" if engine == "postgres" else ""
        conn.execute(f"DROP TRIGGER game_plays_fixed_identity{on_table}")
        conn.execute("UPDATE game_plays SET prize_points = 1000, cost = 5 WHERE id = ?", (spun.id,))
        checks = {v.check for v in audit(conn, integrity="none").violations}
        assert checks == {"game_cost", "game_prize", "game_day_budget", "triggers"}


# --- the async facade ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
async def test_two_taps_at_once_play_once(engine: str, tmp_path: Path) -> None:
    async with opened_store(engine, tmp_path, synchronous="NORMAL") as store:
        members, store_games, store_ledger = Members(store), Games(store), Ledger(store)
        member, _ = await members.register(Profile(9, "nine"), now=T0)
        await store_ledger.earn(
            member.id, 100, kind="purchase", key="seed", actor="pos", expires_at=None, now=T0
        )
        offer_id = (
            await store_games.create_offer(member.id, "wheel", 50, local_day=DAY, ttl=TTL, now=T0)
        ).id
        rules = PlayRules(cost=50, free_per_day=0, daily_limit=5, daily_budget=1000)

        async def tap() -> Play:
            return await store_games.play(
                offer_id,
                member.id,
                game="wheel",
                local_day=DAY,
                rules=rules,
                drawn=p100(),
                fallback=thanks(),
                campaign="festival",
                prize_expires_at=None,
                voucher_expires_at=VOUCHER_EXPIRY,
                actor="member",
                now=T0,
            )

        first, second = await asyncio.gather(tap(), tap())
        assert sorted([first.replayed, second.replayed]) == [False, True]
        assert first.id == second.id and first.campaign == "festival"
        assert (await store_ledger.balance(member.id, T0)).available == 150
        assert (await store_games.day_usage(member.id, "wheel", DAY)).plays == 1
        report = await store.read(lambda c: audit(c, integrity="quick"))
        assert report.ok, str(report)
