"""Family birthdays: the children and pets members add, and the gifts booked on their days.

Rows are never deleted: a removal ends a row, and the same child or pet added again continues
its history (`origin_id`), so neither its once-a-year change nor its gift of the year is reset.
A gift is one transaction with its greeting in the outbox, keyed by the dependant's first row
and the year: the job running twice books and sends nothing more.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from storage import ledger
from storage import mall as mall_store
from storage.errors import InvalidRequest, NotFound, StoreError
from storage.facade import Facade, looks_up, reads, writes
from storage.ledger import OperationResult
from storage.mall import Redemption
from storage.pushes import Push, enqueue
from storage.sql import atomic, dt, dt_or_none, insert_id, ts

KINDS: Final = ("child", "pet")
GIFT_ACTOR: Final = "system:birthday"


class TooManyDependants(StoreError):
    """The member has as many dependants as one member may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} dependants per member")
        self.limit = limit


class DuplicateDependant(StoreError):
    """The member already has a current dependant of this kind and name."""


class ChangeTooSoon(StoreError):
    """The dependant's birthday was already changed within the last year."""


@dataclass(frozen=True, slots=True)
class Dependant:
    """A child or pet of a member, with its birthday as entered."""

    id: int
    member_id: int
    # The first row of this dependant: what its gifts are keyed by.
    origin_id: int
    kind: str
    name: str
    month: int
    day: int
    year: int | None
    created_at: datetime
    entered_at: datetime
    changed_at: datetime | None
    removed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Draft:
    """What the member chose so far while adding (kind, name) or changing (which one)."""

    member_id: int
    kind: str | None
    name: str | None
    dependant_id: int | None


_COLUMNS: Final = (
    "id, member_id, coalesce(origin_id, id), kind, name, month, day, year, created_at,"
    " entered_at, changed_at, removed_at"
)


def _dependant(row: Sequence[Any]) -> Dependant:
    return Dependant(
        id=row[0],
        member_id=row[1],
        origin_id=row[2],
        kind=row[3],
        name=row[4],
        month=row[5],
        day=row[6],
        year=row[7],
        created_at=dt(row[8]),
        entered_at=dt(row[9]),
        changed_at=dt_or_none(row[10]),
        removed_at=dt_or_none(row[11]),
    )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidRequest(f"unknown dependant kind {kind!r}")


def dependant(conn: sqlite3.Connection, dependant_id: int) -> Dependant:
    """One dependant row (current or removed); raises NotFound."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM dependants WHERE id = ?",  # noqa: S608 - fixed text
        (dependant_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no dependant {dependant_id}")
    return _dependant(row)


def current_dependant(conn: sqlite3.Connection, dependant_id: int, member_id: int) -> Dependant:
    """The member's current (not removed) dependant; raises NotFound for anyone else's."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM dependants"  # noqa: S608 - fixed text
        " WHERE id = ? AND member_id = ? AND removed_at IS NULL",
        (dependant_id, member_id),
    ).fetchone()
    # Someone else's dependant looks exactly like a removed one: ids are guessable.
    if row is None:
        raise NotFound(f"member {member_id} has no dependant {dependant_id}")
    return _dependant(row)


def dependants_of(conn: sqlite3.Connection, member_id: int) -> list[Dependant]:
    """The member's current dependants, in the order they were added."""
    return [
        _dependant(row)
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM dependants"  # noqa: S608 - fixed text
            " WHERE member_id = ? AND removed_at IS NULL ORDER BY id",
            (member_id,),
        )
    ]


def history_of(conn: sqlite3.Connection, member_id: int) -> list[Dependant]:
    """Every dependant row of the member, removed ones included, oldest first."""
    return [
        _dependant(row)
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM dependants"  # noqa: S608 - fixed text
            " WHERE member_id = ? ORDER BY id",
            (member_id,),
        )
    ]


def add_dependant(
    conn: sqlite3.Connection,
    member_id: int,
    kind: str,
    name: str,
    name_key: str,
    month: int,
    day: int,
    year: int | None,
    *,
    max_dependants: int,
    change_allowed_after: datetime,
    now: datetime,
) -> Dependant:
    """Add a child or pet. One removed before with the same kind and name key continues its
    history: the same birthday keeps its entry time, another one counts as a change. Raises
    TooManyDependants, DuplicateDependant, ChangeTooSoon, InvalidRequest."""
    _check_kind(kind)
    now_ts = ts(now)
    with atomic(conn):
        if conn.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
            raise NotFound(f"no member {member_id}")
        current = dependants_of(conn, member_id)
        taken = conn.execute(
            "SELECT 1 FROM dependants WHERE member_id = ? AND kind = ? AND name_key = ?"
            " AND removed_at IS NULL",
            (member_id, kind, name_key),
        ).fetchone()
        if taken is not None:
            raise DuplicateDependant(f"member {member_id} already has the {kind} {name!r}")
        if len(current) >= max_dependants:
            raise TooManyDependants(max_dependants)
        before = conn.execute(
            f"SELECT {_COLUMNS} FROM dependants"  # noqa: S608 - fixed text
            " WHERE member_id = ? AND kind = ? AND name_key = ? AND removed_at IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            (member_id, kind, name_key),
        ).fetchone()
        origin: int | None = None
        entered_ts, changed_ts = now_ts, None
        if before is not None:
            last = _dependant(before)
            origin = last.origin_id
            entered_ts = ts(last.entered_at)
            changed_ts = None if last.changed_at is None else ts(last.changed_at)
            if (last.month, last.day, last.year) != (month, day, year):
                # Removing and adding again is no way around the once-a-year change.
                if last.changed_at is not None and last.changed_at > change_allowed_after:
                    raise ChangeTooSoon(f"dependant {last.origin_id} changed within a year")
                entered_ts = changed_ts = now_ts
        dependant_id = insert_id(
            conn,
            "INSERT INTO dependants (member_id, origin_id, kind, name, name_key, month, day,"
            " year, created_at, entered_at, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                member_id,
                origin,
                kind,
                name,
                name_key,
                month,
                day,
                year,
                now_ts,
                entered_ts,
                changed_ts,
            ),
        )
        return dependant(conn, dependant_id)


def change_birthday(
    conn: sqlite3.Connection,
    dependant_id: int,
    member_id: int,
    month: int,
    day: int,
    year: int | None,
    *,
    change_allowed_after: datetime,
    now: datetime,
) -> Dependant:
    """Change a current dependant's birthday (the same one again changes nothing); raises
    NotFound, ChangeTooSoon."""
    with atomic(conn):
        found = current_dependant(conn, dependant_id, member_id)
        if (found.month, found.day, found.year) == (month, day, year):
            return found
        if found.changed_at is not None and found.changed_at > change_allowed_after:
            raise ChangeTooSoon(f"dependant {found.origin_id} changed within a year")
        now_ts = ts(now)
        conn.execute(
            "UPDATE dependants SET month = ?, day = ?, year = ?, entered_at = ?, changed_at = ?"
            " WHERE id = ?",
            (month, day, year, now_ts, now_ts, dependant_id),
        )
        return dependant(conn, dependant_id)


def remove_dependant(
    conn: sqlite3.Connection, dependant_id: int, member_id: int, *, now: datetime
) -> Dependant:
    """End a dependant (kept as history); a repeat returns it as removed; raises NotFound."""
    with atomic(conn):
        found = dependant(conn, dependant_id)
        if found.member_id != member_id:
            raise NotFound(f"member {member_id} has no dependant {dependant_id}")
        if found.removed_at is not None:
            return found
        conn.execute("UPDATE dependants SET removed_at = ? WHERE id = ?", (ts(now), dependant_id))
        return dependant(conn, dependant_id)


def dependants_on(conn: sqlite3.Connection, dates: Sequence[tuple[int, int]]) -> list[Dependant]:
    """Current dependants whose birthday (month, day) is one of `dates`, by id."""
    found: list[Dependant] = []
    for month, day in dates:
        found += [
            _dependant(row)
            for row in conn.execute(
                f"SELECT {_COLUMNS} FROM dependants"  # noqa: S608 - fixed text
                " WHERE month = ? AND day = ? AND removed_at IS NULL ORDER BY id",
                (month, day),
            )
        ]
    return sorted(found, key=lambda d: d.id)


def gifts_in_year(conn: sqlite3.Connection, member_id: int, year: int) -> int:
    """How many dependants' birthday gifts the member received for `year`."""
    row = conn.execute(
        "SELECT count(*) FROM operations WHERE member_id = ? AND kind = 'birthday'"
        " AND idempotency_key LIKE 'birthday:dep:%:' || ?",
        (member_id, str(year)),
    ).fetchone()
    return int(row[0])


def gift_booked(conn: sqlite3.Connection, key: str) -> bool:
    """True when the gift with this key was booked already."""
    return bool(ledger.existing_keys(conn, [key]))


# --- gifts ---------------------------------------------------------------------------------


def give_points(
    conn: sqlite3.Connection,
    member_id: int,
    points: int,
    *,
    key: str,
    expires_at: datetime | None,
    reason: str,
    greeting: Push,
    now: datetime,
) -> OperationResult:
    """Credit a dependant's birthday points and queue the greeting, in one transaction; a
    replay books and queues nothing; raises Conflict, NotFound, InvalidRequest."""
    with atomic(conn):
        result = ledger.earn(
            conn,
            member_id,
            points,
            kind="birthday",
            key=key,
            actor=GIFT_ACTOR,
            expires_at=expires_at,
            reason=reason,
            now=now,
        )
        if not result.replayed:
            enqueue(conn, [greeting], now)
        return result


def give_item(
    conn: sqlite3.Connection,
    member_id: int,
    sku: str,
    *,
    key: str,
    expires_at: datetime | None,
    reason: str,
    valid_until: date | None,
    refund_if_unused: bool,
    offer_ttl: timedelta,
    greeting: Callable[[Redemption], Push],
    now: datetime,
    kind: str = "birthday",
    actor: str = GIFT_ACTOR,
    meta: dict[str, Any] | None = None,
) -> Redemption | None:
    """Give a mall item as a gift: the programme (`actor`) credits its price as points from
    the `kind` source (a birthday; a badge set's prize) keyed `key`, and the member redeems
    them for it at once, with the greeting naming the code, all in one transaction; None when
    `key` was booked already (nothing happens). Raises NotFound, SoldOut, NotAvailable,
    LimitReached, InvalidRequest."""
    # The redemptions table holds what points bought (its spend is what a return refunds), so
    # the gift is points given and spent on the item in the same instant: the member's
    # balance is unchanged, the ledger shows where the item's value came from, and the code
    # is a redemption like any other (/redemptions, /fulfil, voucher validity).
    with atomic(conn):
        if gift_booked(conn, key):
            return None
        price = mall_store.price_at(conn, sku, now).points
        ledger.earn(
            conn,
            member_id,
            price,
            kind=kind,
            key=key,
            actor=actor,
            expires_at=expires_at,
            reason=reason,
            reference=sku,
            meta=meta,
            now=now,
        )
        offer = mall_store.create_offer(conn, member_id, sku, price, now=now, ttl=offer_ttl)
        redemption = mall_store.redeem(
            conn,
            offer.id,
            member_id,
            now=now,
            actor=actor,
            valid_until=valid_until,
            refund_if_unused=refund_if_unused,
        )
        enqueue(conn, [greeting(redemption)], now)
        return redemption


def enqueue_greeting(conn: sqlite3.Connection, greeting: Push, now: datetime) -> int:
    """Queue a greeting without a gift (nothing when its key is queued already)."""
    return enqueue(conn, [greeting], now)


# --- drafts of the /settings conversation -------------------------------------------------


def draft(conn: sqlite3.Connection, member_id: int) -> Draft | None:
    """What the member chose so far, or None."""
    row = conn.execute(
        "SELECT member_id, kind, name, dependant_id FROM dependant_drafts WHERE member_id = ?",
        (member_id,),
    ).fetchone()
    return None if row is None else Draft(row[0], row[1], row[2], row[3])


def save_draft(
    conn: sqlite3.Connection,
    member_id: int,
    *,
    kind: str | None,
    name: str | None,
    dependant_id: int | None,
    now: datetime,
) -> Draft:
    """Remember what the member chose so far (replacing what was there)."""
    if kind is not None:
        _check_kind(kind)
    conn.execute(
        "INSERT INTO dependant_drafts (member_id, kind, name, dependant_id, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (member_id) DO UPDATE SET kind = excluded.kind,"
        " name = excluded.name, dependant_id = excluded.dependant_id,"
        " updated_at = excluded.updated_at",
        (member_id, kind, name, dependant_id, ts(now)),
    )
    return Draft(member_id, kind, name, dependant_id)


def clear_draft(conn: sqlite3.Connection, member_id: int) -> None:
    """Forget the member's draft."""
    conn.execute("DELETE FROM dependant_drafts WHERE member_id = ?", (member_id,))


# --- the async facade ----------------------------------------------------------------------


class Dependants(Facade):
    """The async facade over dependants, their drafts and their gifts."""

    dependant = looks_up(dependant)
    current_dependant = looks_up(current_dependant)
    dependants_of = looks_up(dependants_of)
    history_of = looks_up(history_of)
    add_dependant = writes(add_dependant)
    change_birthday = writes(change_birthday)
    remove_dependant = writes(remove_dependant)
    dependants_on = reads(dependants_on)
    gifts_in_year = looks_up(gifts_in_year)
    gift_booked = looks_up(gift_booked)
    give_points = writes(give_points)
    give_item = writes(give_item)
    enqueue_greeting = writes(enqueue_greeting)
    draft = looks_up(draft)
    save_draft = writes(save_draft)
    clear_draft = writes(clear_draft)
