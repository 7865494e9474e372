"""The points games: offers behind Spin / Buy buttons, plays (wheel spins and scratch cards),
the daily limits and prize budget, and the voucher prizes staff accept at the till.

The caller decides the rules (what was drawn, the fallback, the local day, expiries); this
module keeps them honest: a play is written once per offer, costs and prizes are ledger
operations keyed by the offer inside the same transaction, a card's prize is fixed when it is
bought and paid exactly once when it is revealed. Like `storage.mall`, the core is synchronous
functions on a `sqlite3.Connection`, each all-or-nothing through `storage.sql.atomic`;
`Games` is the async facade.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal

from storage import ledger
from storage.errors import (
    InvalidRequest,
    InvalidState,
    LimitReached,
    NotFound,
    OfferExpired,
    PriceChanged,
)
from storage.facade import Facade, looks_up, writes
from storage.sql import atomic, dt, dt_or_none, insert_id, required_now, ts

Game = Literal["wheel", "scratch"]
GAMES: Final = ("wheel", "scratch")
PRIZE_KINDS: Final = frozenset({"points", "voucher", "nothing"})
CELLS: Final = 9
ALL_CELLS: Final = (1 << CELLS) - 1
CODE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
CODE_LENGTH: Final = 8


# --- requests and results --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """A prize as the rules decided it: what the store records if the budget allows."""

    prize_id: str
    kind: str  # 'points', 'voucher' or 'nothing'
    points: int = 0
    # A scratch card's nine symbols; None for a wheel.
    layout: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PlayRules:
    """One game's limits as the configuration says today."""

    cost: int
    free_per_day: int
    daily_limit: int
    daily_budget: int


@dataclass(frozen=True, slots=True)
class GameOffer:
    """A pending play: what its button will cost, on which local day, until when."""

    id: int
    member_id: int
    game: str
    cost: int
    local_day: date
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PrizeVoucher:
    """A voucher prize: the code the member shows at the till."""

    id: int
    code: str
    play_id: int
    member_id: int
    telegram_id: int
    game: str
    prize_id: str
    status: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None

    def is_expired(self, now: datetime) -> bool:
        """True once the voucher can no longer be used."""
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Play:
    """A spin or a scratch card, what it cost and (once revealed) what it won."""

    id: int
    offer_id: int
    member_id: int
    game: str
    local_day: date
    cost: int
    cost_operation_id: int | None
    drawn_prize_id: str
    prize_id: str
    prize_kind: str
    prize_points: int
    budget_fallback: bool
    campaign: str | None
    prize_operation_id: int | None
    layout: tuple[str, ...] | None
    scratched: int
    created_at: datetime
    revealed_at: datetime | None
    voucher: PrizeVoucher | None = None
    # The request changed nothing: a replayed offer or an already scratched cell.
    replayed: bool = field(default=False, compare=False)

    @property
    def revealed(self) -> bool:
        """True once the prize is known to the member (and paid)."""
        return self.revealed_at is not None

    def is_scratched(self, cell: int) -> bool:
        """True when the cell has been uncovered (every cell is, once revealed)."""
        return self.revealed or bool(self.scratched >> cell & 1)

    @property
    def scratch_count(self) -> int:
        """How many cells the member uncovered by hand."""
        return bin(self.scratched).count("1")


@dataclass(frozen=True, slots=True)
class DayUsage:
    """A member's plays of one game on a local day, and the prize points everyone won."""

    plays: int
    budget_used: int


# --- helpers -------------------------------------------------------------------------------

_PLAY_COLUMNS: Final = (
    "id, offer_id, member_id, game, local_day, cost, cost_operation_id, drawn_prize_id,"
    " prize_id, prize_kind, prize_points, budget_fallback, campaign, prize_operation_id, layout,"
    " scratched, created_at, revealed_at"
)
_VOUCHER_SELECT: Final = (
    "SELECT v.id, v.code, v.play_id, v.member_id, m.telegram_id, p.game, v.prize_id, v.status,"
    " v.created_at, v.expires_at, v.used_at, v.used_by"
    " FROM game_vouchers AS v JOIN members AS m ON m.id = v.member_id"
    " JOIN game_plays AS p ON p.id = v.play_id"
)


def _voucher(row: Sequence[Any]) -> PrizeVoucher:
    return PrizeVoucher(
        id=row[0],
        code=row[1],
        play_id=row[2],
        member_id=row[3],
        telegram_id=row[4],
        game=row[5],
        prize_id=row[6],
        status=row[7],
        created_at=dt(row[8]),
        expires_at=dt(row[9]),
        used_at=dt_or_none(row[10]),
        used_by=row[11],
    )


def _play_row(conn: sqlite3.Connection, row: Sequence[Any], *, replayed: bool = False) -> Play:
    voucher = conn.execute(_VOUCHER_SELECT + " WHERE v.play_id = ?", (row[0],)).fetchone()
    return Play(
        id=row[0],
        offer_id=row[1],
        member_id=row[2],
        game=row[3],
        local_day=date.fromisoformat(row[4]),
        cost=row[5],
        cost_operation_id=row[6],
        drawn_prize_id=row[7],
        prize_id=row[8],
        prize_kind=row[9],
        prize_points=row[10],
        budget_fallback=bool(row[11]),
        campaign=row[12],
        prize_operation_id=row[13],
        layout=None if row[14] is None else tuple(json.loads(row[14])),
        scratched=row[15],
        created_at=dt(row[16]),
        revealed_at=dt_or_none(row[17]),
        voucher=None if voucher is None else _voucher(voucher),
        replayed=replayed,
    )


def _play_by_id(conn: sqlite3.Connection, play_id: int, *, replayed: bool = False) -> Play:
    row = conn.execute(
        f"SELECT {_PLAY_COLUMNS} FROM game_plays WHERE id = ?",  # noqa: S608 - fixed columns
        (play_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no play {play_id}")
    return _play_row(conn, row, replayed=replayed)


def _check_game(game: str) -> None:
    if game not in GAMES:
        raise InvalidRequest(f"unknown game {game!r}")


def _check_outcome(outcome: Outcome, game: str) -> None:
    """Refuse an outcome the schema would refuse, with a message naming the prize."""
    if outcome.kind not in PRIZE_KINDS:
        raise InvalidRequest(f"prize {outcome.prize_id}: unknown kind {outcome.kind!r}")
    if isinstance(outcome.points, bool) or not isinstance(outcome.points, int):
        raise InvalidRequest(f"prize {outcome.prize_id}: points must be an integer")
    if (outcome.kind == "points") != (outcome.points > 0) or outcome.points < 0:
        raise InvalidRequest(f"prize {outcome.prize_id}: only a points prize has points (> 0)")
    if (game == "scratch") != (outcome.layout is not None):
        raise InvalidRequest(f"prize {outcome.prize_id}: a scratch card and only one has a layout")
    if outcome.layout is not None and len(outcome.layout) != CELLS:
        raise InvalidRequest(f"a scratch card has {CELLS} cells, not {len(outcome.layout)}")


def _count(value: int, what: str, *, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidRequest(f"{what} must be an integer >= {low}, not {value!r}")


def _check_rules(rules: PlayRules) -> None:
    _count(rules.cost, "cost")
    _count(rules.free_per_day, "free plays per day")
    _count(rules.daily_limit, "the daily limit", low=1)
    _count(rules.daily_budget, "the daily budget")


def _usage(conn: sqlite3.Connection, member_id: int, game: str, day: date) -> DayUsage:
    plays = conn.execute(
        "SELECT count(*) FROM game_plays WHERE member_id = ? AND game = ? AND local_day = ?",
        (member_id, game, day.isoformat()),
    ).fetchone()[0]
    used = conn.execute(
        "SELECT prize_points FROM game_day_budget WHERE local_day = ?", (day.isoformat(),)
    ).fetchone()
    return DayUsage(int(plays), 0 if used is None else int(used[0]))


def _new_code(conn: sqlite3.Connection) -> str:
    """A random voucher code used neither by another prize nor by a mall redemption."""
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        taken = conn.execute(
            "SELECT 1 FROM game_vouchers WHERE code = ?"
            " UNION ALL SELECT 1 FROM redemptions WHERE code = ?",
            (code, code),
        ).fetchone()
        if taken is None:
            return code


def _issue_voucher(
    conn: sqlite3.Connection,
    play_id: int,
    member_id: int,
    prize_id: str,
    *,
    now_ts: int,
    expires_at: datetime,
) -> None:
    expires_ts = ts(expires_at)
    if expires_ts <= now_ts:
        raise InvalidRequest("a prize voucher would expire the moment it is won")
    conn.execute(
        "INSERT INTO game_vouchers (code, play_id, member_id, prize_id, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (_new_code(conn), play_id, member_id, prize_id, now_ts, expires_ts),
    )


def _pay_prize(
    conn: sqlite3.Connection,
    *,
    offer_id: int,
    member_id: int,
    game: str,
    prize_id: str,
    points: int,
    campaign: str | None,
    expires_at: datetime | None,
    actor: str,
    now: datetime,
) -> int:
    """Credit a points prize as a 'game' lot keyed by the offer; the operation id."""
    meta: dict[str, object] = {"game": game, "offer": offer_id, "prize": prize_id}
    if campaign is not None:
        meta["campaign"] = campaign
    return ledger.earn(
        conn,
        member_id,
        points,
        kind="game",
        key=f"game:{offer_id}:prize",
        actor=actor,
        expires_at=expires_at,
        reason=game,
        meta=meta,
        now=now,
    ).operation_id


# --- offers and plays ------------------------------------------------------------------------


def day_usage(conn: sqlite3.Connection, member_id: int, game: str, day: date) -> DayUsage:
    """How often the member played `game` on local `day`, and the prize points paid that day."""
    _check_game(game)
    return _usage(conn, member_id, game, day)


def create_offer(
    conn: sqlite3.Connection,
    member_id: int,
    game: str,
    cost: int,
    *,
    local_day: date,
    now: datetime | None = None,
    ttl: timedelta,
) -> GameOffer:
    """Record what a Spin / Buy button will play; raises NotFound, InvalidRequest."""
    now = required_now(now)
    _check_game(game)
    _count(cost, "cost")
    if ttl <= timedelta(0):
        raise InvalidRequest("an offer must stay valid for some time")
    now_ts = ts(now)
    expires_ts = max(ts(now + ttl), now_ts + 1)  # a ttl under a second rounds away
    with atomic(conn):
        if conn.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
            raise NotFound(f"no member {member_id}")
        offer_id = insert_id(
            conn,
            "INSERT INTO game_offers (member_id, game, cost, local_day, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (member_id, game, cost, local_day.isoformat(), now_ts, expires_ts),
        )
        return GameOffer(
            id=offer_id,
            member_id=member_id,
            game=game,
            cost=cost,
            local_day=local_day,
            created_at=dt(now_ts),
            expires_at=dt(expires_ts),
        )


def play(
    conn: sqlite3.Connection,
    offer_id: int,
    member_id: int,
    *,
    game: str,
    local_day: date,
    rules: PlayRules,
    drawn: Outcome,
    fallback: Outcome,
    campaign: str | None,
    prize_expires_at: datetime | None,
    voucher_expires_at: datetime,
    actor: str,
    now: datetime | None = None,
    member_rules: Callable[[sqlite3.Connection, PlayRules], PlayRules] | None = None,
) -> Play:
    """Play an offer once: check the daily limit, spend the cost (none for a free play), record
    the drawn prize or, when it would overrun the day's budget, the fallback. A wheel is
    revealed and paid at once; a card keeps its prize until it is scratched. `member_rules`
    turns the rules into this member's (extra free plays), read in this transaction. A repeat
    returns the same play (replayed); raises OfferExpired, PriceChanged, LimitReached,
    InsufficientPoints, InvalidRequest."""
    now = required_now(now)
    _check_game(game)
    _check_rules(rules)
    _check_outcome(drawn, game)
    _check_outcome(fallback, game)
    now_ts = ts(now)
    with atomic(conn):
        offer = conn.execute(
            "SELECT member_id, game, cost, local_day, expires_at FROM game_offers WHERE id = ?",
            (offer_id,),
        ).fetchone()
        # Someone else's offer looks exactly like a stale one: ids are guessable.
        if offer is None or offer[0] != member_id or offer[1] != game:
            raise OfferExpired(f"no {game} offer {offer_id} for member {member_id}")
        done = conn.execute(
            f"SELECT {_PLAY_COLUMNS} FROM game_plays WHERE offer_id = ?",  # noqa: S608
            (offer_id,),
        ).fetchone()
        if done is not None:
            return _play_row(conn, done, replayed=True)
        # An offer from another day promised yesterday's free plays and odds notice.
        if now_ts >= offer[4] or offer[3] != local_day.isoformat():
            raise OfferExpired(f"offer {offer_id} has lapsed")
        if member_rules is not None:
            rules = member_rules(conn, rules)
            _check_rules(rules)
        usage = _usage(conn, member_id, game, local_day)
        if usage.plays >= rules.daily_limit:
            raise LimitReached(rules.daily_limit)
        cost = 0 if usage.plays < rules.free_per_day else rules.cost
        if cost != offer[2]:
            raise PriceChanged(offer[2], cost)
        outcome, fell_back = drawn, False
        if drawn.points and usage.budget_used + drawn.points > rules.daily_budget:
            outcome, fell_back = fallback, True
            if fallback.points and usage.budget_used + fallback.points > rules.daily_budget:
                raise InvalidRequest("the fallback prize does not fit the budget either")
        cost_operation_id = None
        if cost:
            cost_operation_id = ledger.spend(
                conn,
                member_id,
                cost,
                key=f"game:{offer_id}:cost",
                actor=actor,
                sink="game_cost",
                reason=game,
                reference=None,
                now=now,
            ).operation_id
        prize_operation_id = None
        if game == "wheel" and outcome.kind == "points":
            prize_operation_id = _pay_prize(
                conn,
                offer_id=offer_id,
                member_id=member_id,
                game=game,
                prize_id=outcome.prize_id,
                points=outcome.points,
                campaign=campaign,
                expires_at=prize_expires_at,
                actor=actor,
                now=now,
            )
        play_id = insert_id(
            conn,
            "INSERT INTO game_plays (offer_id, member_id, game, local_day, cost,"
            " cost_operation_id, drawn_prize_id, prize_id, prize_kind, prize_points,"
            " budget_fallback, campaign, prize_operation_id, layout, created_at, revealed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                offer_id,
                member_id,
                game,
                local_day.isoformat(),
                cost,
                cost_operation_id,
                drawn.prize_id,
                outcome.prize_id,
                outcome.kind,
                outcome.points,
                int(fell_back),
                campaign,
                prize_operation_id,
                None if outcome.layout is None else json.dumps(outcome.layout, ensure_ascii=False),
                now_ts,
                now_ts if game == "wheel" else None,
            ),
        )
        if game == "wheel" and outcome.kind == "voucher":
            _issue_voucher(
                conn,
                play_id,
                member_id,
                outcome.prize_id,
                now_ts=now_ts,
                expires_at=voucher_expires_at,
            )
        return _play_by_id(conn, play_id)


def card(conn: sqlite3.Connection, card_id: int, member_id: int) -> Play:
    """One of the member's scratch cards; raises NotFound (also for someone else's)."""
    row = conn.execute(
        f"SELECT {_PLAY_COLUMNS} FROM game_plays"  # noqa: S608 - fixed columns
        " WHERE id = ? AND member_id = ? AND game = 'scratch'",
        (card_id, member_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"member {member_id} has no scratch card {card_id}")
    return _play_row(conn, row)


def scratch(
    conn: sqlite3.Connection,
    card_id: int,
    member_id: int,
    cells: Sequence[int],
    *,
    reveal_after: int,
    prize_expires_at: datetime | None,
    voucher_expires_at: datetime,
    actor: str,
    now: datetime | None = None,
) -> Play:
    """Uncover cells of the member's card; once `reveal_after` are uncovered (or every cell is
    asked for) the card is revealed and its prize paid, once. Cells already uncovered change
    nothing (replayed); raises NotFound, InvalidState('revealed'), InvalidRequest."""
    now = required_now(now)
    if not cells or any(
        isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < CELLS for c in cells
    ):
        raise InvalidRequest(f"cells are numbered 0..{CELLS - 1}, not {list(cells)!r}")
    _count(reveal_after, "cells to reveal", low=1)
    now_ts = ts(now)
    with atomic(conn):
        current = card(conn, card_id, member_id)
        if current.revealed:
            raise InvalidState("revealed")
        asked = 0
        for cell in cells:
            asked |= 1 << cell
        scratched = current.scratched | asked
        if scratched == current.scratched:
            return _play_by_id(conn, card_id, replayed=True)
        if bin(scratched).count("1") < min(reveal_after, CELLS) and asked != ALL_CELLS:
            conn.execute("UPDATE game_plays SET scratched = ? WHERE id = ?", (scratched, card_id))
            return _play_by_id(conn, card_id)
        prize_operation_id = None
        if current.prize_kind == "points":
            prize_operation_id = _pay_prize(
                conn,
                offer_id=current.offer_id,
                member_id=member_id,
                game="scratch",
                prize_id=current.prize_id,
                points=current.prize_points,
                campaign=current.campaign,
                expires_at=prize_expires_at,
                actor=actor,
                now=now,
            )
        conn.execute(
            "UPDATE game_plays SET scratched = ?, revealed_at = ?, prize_operation_id = ?"
            " WHERE id = ?",
            (scratched, now_ts, prize_operation_id, card_id),
        )
        if current.prize_kind == "voucher":
            _issue_voucher(
                conn,
                card_id,
                member_id,
                current.prize_id,
                now_ts=now_ts,
                expires_at=voucher_expires_at,
            )
        return _play_by_id(conn, card_id)


def unrevealed_cards(conn: sqlite3.Connection, member_id: int, *, limit: int = 5) -> list[Play]:
    """The member's scratch cards still waiting to be scratched, oldest first."""
    return [
        _play_row(conn, row)
        for row in conn.execute(
            f"SELECT {_PLAY_COLUMNS} FROM game_plays"  # noqa: S608 - fixed columns
            " WHERE member_id = ? AND game = 'scratch' AND revealed_at IS NULL"
            " ORDER BY id LIMIT ?",
            (member_id, limit),
        )
    ]


# --- voucher prizes ------------------------------------------------------------------------


def _normal_code(code: str) -> str:
    """Codes are stored upper-case without separators; people type them in any case, in
    groups with spaces or dashes (full-width ones are read by bot.programme.till)."""
    return "".join(code.replace("-", " ").split()).upper()


def voucher_by_code(conn: sqlite3.Connection, code: str) -> PrizeVoucher:
    """The prize voucher with this code, typed in any case; raises NotFound."""
    row = conn.execute(_VOUCHER_SELECT + " WHERE v.code = ?", (_normal_code(code),)).fetchone()
    if row is None:
        raise NotFound(f"no prize voucher {code!r}")
    return _voucher(row)


def vouchers(
    conn: sqlite3.Connection, member_id: int, *, limit: int = 10
) -> tuple[list[PrizeVoucher], int]:
    """The member's newest prize vouchers and how many there are in all."""
    if limit <= 0:
        raise InvalidRequest("limit must be > 0")
    total = conn.execute(
        "SELECT count(*) FROM game_vouchers WHERE member_id = ?", (member_id,)
    ).fetchone()[0]
    found = [
        _voucher(row)
        for row in conn.execute(
            f"{_VOUCHER_SELECT} WHERE v.member_id = ? ORDER BY v.id DESC LIMIT ?",
            (member_id, limit),
        )
    ]
    return found, int(total)


def use_voucher(
    conn: sqlite3.Connection, code: str, *, actor: str, now: datetime | None = None
) -> PrizeVoucher:
    """Accept a prize voucher at the till, once; raises NotFound, InvalidState('used' or
    'expired')."""
    now = required_now(now)
    if not actor or not actor.strip():
        raise InvalidRequest("say who accepted the voucher")
    with atomic(conn):
        voucher = voucher_by_code(conn, code)
        if voucher.status != "issued":
            raise InvalidState(voucher.status)
        if voucher.is_expired(now):
            raise InvalidState("expired")
        conn.execute(
            "UPDATE game_vouchers SET status = 'used', used_at = ?, used_by = ? WHERE id = ?",
            (ts(now), actor, voucher.id),
        )
        return voucher_by_code(conn, voucher.code)


# --- the async facade ----------------------------------------------------------------------


class Games(Facade):
    """The games over a `Store`: every write is one transaction (one thread hop)."""

    # Each runs this module's sync function of the same name.
    day_usage = looks_up(day_usage)
    create_offer = writes(create_offer)
    play = writes(play)
    card = looks_up(card)
    scratch = writes(scratch)
    unrevealed_cards = looks_up(unrevealed_cards)
    vouchers = looks_up(vouchers)
    voucher_by_code = looks_up(voucher_by_code)
    use_voucher = writes(use_voucher)
