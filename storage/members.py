"""Members: registration at /start, lookup by Telegram id or member code, language choice."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from storage.errors import NotFound
from storage.facade import Facade, looks_up, reads
from storage.sql import dt
from storage.store import Store

MEMBER_CODE_DIGITS = 10


@dataclass(frozen=True, slots=True)
class Profile:
    """What Telegram tells us about a user, already converted to plain types."""

    telegram_id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """A registered member."""

    id: int
    telegram_id: int
    member_code: str
    first_name: str
    last_name: str | None
    username: str | None
    telegram_language: str | None
    language: str | None
    start_payload: str | None
    joined_at: datetime
    last_seen_at: datetime

    @property
    def display_name(self) -> str:
        """First and last name as Telegram shows them."""
        return " ".join(p for p in (self.first_name, self.last_name) if p)


def luhn_digit(digits: str) -> str:
    """Return the Luhn check digit for `digits` (catches a mistyped digit at the till)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def is_valid_member_code(code: str) -> bool:
    """True when `code` has the right length and check digit."""
    return (
        len(code) == MEMBER_CODE_DIGITS
        and code.isascii()
        and code.isdigit()
        and luhn_digit(code[:-1]) == code[-1]
    )


def new_member_code() -> str:
    """Return a random member code: 9 digits (no leading zero) and a Luhn check digit."""
    body = str(
        secrets.randbelow(9 * 10 ** (MEMBER_CODE_DIGITS - 2)) + 10 ** (MEMBER_CODE_DIGITS - 2)
    )
    return body + luhn_digit(body)


def _row_to_member(row: sqlite3.Row) -> Member:
    return Member(
        id=row["id"],
        telegram_id=row["telegram_id"],
        member_code=row["member_code"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        username=row["username"],
        telegram_language=row["telegram_language"],
        language=row["language"],
        start_payload=row["start_payload"],
        joined_at=dt(row["joined_at"]),
        last_seen_at=dt(row["last_seen_at"]),
    )


def _get_by_telegram_id(conn: sqlite3.Connection, telegram_id: int) -> Member | None:
    row = conn.execute("SELECT * FROM members WHERE telegram_id = ?", (telegram_id,)).fetchone()
    return None if row is None else _row_to_member(row)


def register_member(
    conn: sqlite3.Connection, profile: Profile, payload: str | None, now: datetime
) -> tuple[Member, bool]:
    """Insert a new member or refresh a returning one's profile; return (member, is_new)."""
    stamp = int(now.timestamp())
    existing = _get_by_telegram_id(conn, profile.telegram_id)
    if existing is not None:
        conn.execute(
            "UPDATE members SET first_name = ?, last_name = ?, username = ?,"
            " telegram_language = ?, last_seen_at = ? WHERE id = ?",
            (
                profile.first_name,
                profile.last_name,
                profile.username,
                profile.language_code,
                stamp,
                existing.id,
            ),
        )
        refreshed = _get_by_telegram_id(conn, profile.telegram_id)
        assert refreshed is not None
        return refreshed, False
    while True:
        # DO NOTHING on a member code drawn twice (rather than a caught IntegrityError, which
        # on PostgreSQL would spoil the whole transaction); a telegram_id taken still raises.
        inserted = conn.execute(
            "INSERT INTO members (telegram_id, member_code, first_name, last_name, username,"
            " telegram_language, start_payload, joined_at, last_seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (member_code) DO NOTHING RETURNING id",
            (
                profile.telegram_id,
                new_member_code(),
                profile.first_name,
                profile.last_name,
                profile.username,
                profile.language_code,
                payload,
                stamp,
                stamp,
            ),
        ).fetchone()
        if inserted is not None:
            break  # else a code collision: draw another
    created = _get_by_telegram_id(conn, profile.telegram_id)
    assert created is not None
    return created, True


def member_ids_by_code(conn: sqlite3.Connection, codes: Collection[str]) -> dict[str, int]:
    """Map member codes to member ids in one query; unknown codes are left out."""
    if not codes:
        return {}
    # One JSON array parameter instead of thousands of `?`, which SQLite caps per statement.
    return {
        str(code): int(member_id)
        for code, member_id in conn.execute(
            "SELECT member_code, id FROM members"
            " WHERE member_code IN (SELECT value FROM json_each(?))",
            (json.dumps(list(codes)),),
        )
    }


def member_codes_by_id(conn: sqlite3.Connection, member_ids: Collection[int]) -> dict[int, str]:
    """Map member ids to member codes in one query; unknown ids are left out."""
    if not member_ids:
        return {}
    return {
        int(member_id): str(code)
        for member_id, code in conn.execute(
            "SELECT id, member_code FROM members WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(member_ids)),),
        )
    }


def member_by_code(conn: sqlite3.Connection, member_code: str) -> Member:
    """The member with this code; raises NotFound."""
    row = conn.execute("SELECT * FROM members WHERE member_code = ?", (member_code,)).fetchone()
    if row is None:
        raise NotFound(f"no member with code {member_code}")
    return _row_to_member(row)


def member_by_id(conn: sqlite3.Connection, member_id: int) -> Member:
    """The member with this id; raises NotFound."""
    row = conn.execute("SELECT * FROM members WHERE id = ?", (member_id,)).fetchone()
    if row is None:
        raise NotFound(f"no member with id {member_id}")
    return _row_to_member(row)


def member_count(conn: sqlite3.Connection) -> int:
    """How many members are registered (a broadcast's audience)."""
    return int(conn.execute("SELECT count(*) FROM members").fetchone()[0])


# Members looked up most recently, kept in memory: nearly every update starts by finding
# its member, and only this repository changes what a Member holds.
MEMBER_CACHE = 20_000


class Members(Facade):
    """The members repository (the one writer of members' rows in the running bot)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._cache: OrderedDict[int, Member] = OrderedDict()

    def _remember(self, member: Member) -> Member:
        self._cache[member.telegram_id] = member
        self._cache.move_to_end(member.telegram_id)
        while len(self._cache) > MEMBER_CACHE:
            self._cache.popitem(last=False)
        return member

    async def register(
        self, profile: Profile, *, payload: str | None = None, now: datetime | None = None
    ) -> tuple[Member, bool]:
        """Register a member at /start (or refresh a returning one); return (member, is_new)."""
        when = self._store.now(now)
        member, is_new = await self._store.write(
            lambda c: register_member(c, profile, payload, when)
        )
        return self._remember(member), is_new

    async def by_telegram_id(self, telegram_id: int) -> Member | None:
        """Return the member with this Telegram id, or None."""
        if (cached := self._cache.get(telegram_id)) is not None:
            self._cache.move_to_end(telegram_id)
            return cached
        member = await self._store.lookup(lambda c: _get_by_telegram_id(c, telegram_id))
        return None if member is None else self._remember(member)

    async def set_language(self, telegram_id: int, language: str | None) -> None:
        """Remember the member's /language choice (None: follow Telegram); raises NotFound."""

        def update(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE members SET language = ? WHERE telegram_id = ?", (language, telegram_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no member with Telegram id {telegram_id}")

        self._cache.pop(telegram_id, None)
        await self._store.write(update)

    # Each runs this module's sync function.
    by_code = looks_up(member_by_code)
    by_id = looks_up(member_by_id)
    count = reads(member_count)
