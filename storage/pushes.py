"""Pushes and daily jobs: member preferences, the outbox, job runs, and what the jobs plan.

The jobs are stateless sweeps: everything they need is derived from the database, and every
message they plan carries a dedupe key, so running a job twice (a restart, a catch-up)
enqueues nothing new (DESIGN.md "Scheduler and pushes").
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from storage import ledger
from storage.errors import InvalidRequest, NotFound, StoreError
from storage.facade import Facade, looks_up, reads, writes
from storage.fence import check_epoch
from storage.ledger import EarnRequest, OperationResult
from storage.members import member_count
from storage.sql import atomic, dt, dt_or_none, insert_id, stands_alone, ts
from storage.store import Store

SERVICE: Final = "service"
MARKETING: Final = "marketing"


# --- member preferences ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preferences:
    """What a member set in /settings, and whether we can reach them."""

    member_id: int
    telegram_id: int
    birthday_month: int | None
    birthday_day: int | None
    birthday_year: int | None
    birthday_entered_at: datetime | None
    birthday_changed_at: datetime | None
    marketing_opt_in: bool
    reachable: bool
    # Whether a message is sent for each purchase (the other notices of points always are).
    receipts_opt_in: bool = True


def preferences(conn: sqlite3.Connection, telegram_id: int) -> Preferences:
    """A member's preferences; raises NotFound."""
    row = conn.execute(
        "SELECT id, telegram_id, birthday_month, birthday_day, birthday_year,"
        " birthday_entered_at, birthday_changed_at, marketing_opt_in, reachable,"
        " receipts_opt_in FROM members WHERE telegram_id = ?",
        (telegram_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no member with Telegram id {telegram_id}")
    return Preferences(
        member_id=row[0],
        telegram_id=row[1],
        birthday_month=row[2],
        birthday_day=row[3],
        birthday_year=row[4],
        birthday_entered_at=dt_or_none(row[5]),
        birthday_changed_at=dt_or_none(row[6]),
        marketing_opt_in=bool(row[7]),
        reachable=bool(row[8]),
        receipts_opt_in=bool(row[9]),
    )


def set_birthday(
    conn: sqlite3.Connection,
    telegram_id: int,
    month: int,
    day: int,
    year: int | None,
    *,
    now: datetime,
    change_allowed_after: datetime | None,
) -> Preferences:
    """Record a birthday. A first entry is always taken; a change only when the last change
    was before `change_allowed_after` (None: never changed may change). Raises NotFound,
    InvalidRequest (a change too soon)."""
    current = preferences(conn, telegram_id)
    now_ts = ts(now)
    if current.birthday_month is not None:
        if (current.birthday_month, current.birthday_day, current.birthday_year) == (
            month,
            day,
            year,
        ):
            return current  # the same birthday again changes nothing
        last = current.birthday_changed_at
        if last is not None and change_allowed_after is not None and last > change_allowed_after:
            raise InvalidRequest("the birthday was already changed within the last year")
        conn.execute(
            "UPDATE members SET birthday_month = ?, birthday_day = ?, birthday_year = ?,"
            " birthday_entered_at = ?, birthday_changed_at = ? WHERE telegram_id = ?",
            (month, day, year, now_ts, now_ts, telegram_id),
        )
    else:
        conn.execute(
            "UPDATE members SET birthday_month = ?, birthday_day = ?, birthday_year = ?,"
            " birthday_entered_at = ? WHERE telegram_id = ?",
            (month, day, year, now_ts, telegram_id),
        )
    return preferences(conn, telegram_id)


def set_marketing(conn: sqlite3.Connection, telegram_id: int, opt_in: bool) -> Preferences:
    """Turn marketing messages on or off; raises NotFound."""
    cur = conn.execute(
        "UPDATE members SET marketing_opt_in = ? WHERE telegram_id = ?", (int(opt_in), telegram_id)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no member with Telegram id {telegram_id}")
    return preferences(conn, telegram_id)


def set_receipts(conn: sqlite3.Connection, telegram_id: int, opt_in: bool) -> Preferences:
    """Turn purchase receipts on or off; raises NotFound."""
    cur = conn.execute(
        "UPDATE members SET receipts_opt_in = ? WHERE telegram_id = ?", (int(opt_in), telegram_id)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no member with Telegram id {telegram_id}")
    return preferences(conn, telegram_id)


def receipts_wanted(conn: sqlite3.Connection, member_id: int) -> bool:
    """Whether the member wants a message for each purchase (False for no such member)."""
    row = conn.execute("SELECT receipts_opt_in FROM members WHERE id = ?", (member_id,)).fetchone()
    return row is not None and bool(row[0])


def set_reachable(conn: sqlite3.Connection, telegram_id: int, reachable: bool) -> bool:
    """Record that Telegram lets us reach (or not) this user; False when they are no member."""
    cur = conn.execute(
        "UPDATE members SET reachable = ? WHERE telegram_id = ?", (int(reachable), telegram_id)
    )
    return cur.rowcount > 0


def unreachable_telegram_ids(conn: sqlite3.Connection) -> list[int]:
    """The Telegram ids of members marked unreachable."""
    return [
        int(row[0]) for row in conn.execute("SELECT telegram_id FROM members WHERE reachable = 0")
    ]


# --- the outbox --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Push:
    """A message to plan: who, what (a catalog key and its params), and its dedupe key."""

    dedupe_key: str
    member_id: int
    category: str
    message_key: str
    params: Mapping[str, Any]
    # (label message key, callback data) rows of inline buttons.
    buttons: Sequence[Sequence[tuple[str, str]]] | None = None


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A pending push, with what the sender needs to render and deliver it."""

    id: int
    dedupe_key: str
    member_id: int
    telegram_id: int
    language: str | None
    telegram_language: str | None
    category: str
    message_key: str
    params: dict[str, Any]
    buttons: list[list[tuple[str, str]]] | None
    attempts: int
    reachable: bool
    marketing_opt_in: bool


def enqueue(conn: sqlite3.Connection, pushes: Iterable[Push], now: datetime) -> int:
    """Add pushes to the outbox, skipping keys already there; return how many were new. Raises
    InvalidRequest (an unknown category)."""
    now_ts = ts(now)
    rows = [
        (
            p.dedupe_key,
            p.member_id,
            p.category,
            p.message_key,
            json.dumps(p.params, ensure_ascii=False, sort_keys=True, default=str),
            None if p.buttons is None else json.dumps(p.buttons, ensure_ascii=False),
            now_ts,
        )
        for p in pushes
    ]
    for row in rows:
        if row[2] not in (SERVICE, MARKETING):
            raise InvalidRequest(f"unknown push category {row[2]!r}")
    if not rows:
        return 0
    # The rows inserted, summed over the batch (a key already there changes none).
    return conn.executemany(
        "INSERT INTO outbox (dedupe_key, member_id, category, message_key, params, buttons,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
        rows,
    ).rowcount


def due(conn: sqlite3.Connection, *, marketing: bool, limit: int) -> list[OutboxMessage]:
    """The oldest pending pushes; marketing ones only when `marketing` (outside quiet hours)."""
    rows = conn.execute(
        "SELECT o.id, o.dedupe_key, o.member_id, m.telegram_id, m.language, m.telegram_language,"
        " o.category, o.message_key, o.params, o.buttons, o.attempts, m.reachable,"
        " m.marketing_opt_in"
        " FROM outbox AS o JOIN members AS m ON m.id = o.member_id"
        " WHERE o.status = 'pending' AND (? = 1 OR o.category = 'service')"
        " ORDER BY o.id LIMIT ?",
        (int(marketing), limit),
    ).fetchall()
    return [
        OutboxMessage(
            id=r[0],
            dedupe_key=r[1],
            member_id=r[2],
            telegram_id=r[3],
            language=r[4],
            telegram_language=r[5],
            category=r[6],
            message_key=r[7],
            params=json.loads(r[8]),
            buttons=None if r[9] is None else [[tuple(b) for b in row] for row in json.loads(r[9])],
            attempts=r[10],
            reachable=bool(r[11]),
            marketing_opt_in=bool(r[12]),
        )
        for r in rows
    ]


@stands_alone
def start_sending(conn: sqlite3.Connection, message_id: int, epoch: int | None = None) -> int:
    """Mark a pending push as being handed to Telegram; return its requests so far, this one
    included (0: it is no longer pending). Its own commit, right before the request: see
    `settle_interrupted`. Raises NotLeader unless `epoch` (when given) is the leader's."""
    check_epoch(conn, epoch)
    rows = conn.execute(
        "UPDATE outbox SET status = 'sending', attempts = attempts + 1"
        " WHERE id = ? AND status = 'pending' RETURNING attempts",
        (message_id,),
    ).fetchall()
    return int(rows[0][0]) if rows else 0


# What `mark` may record: back to pending (a request that certainly did not arrive, to try
# again), or an outcome.
MARKS: Final = ("pending", "sent", "unconfirmed", "unreachable", "skipped", "failed")


@stands_alone
def mark(
    conn: sqlite3.Connection, message_id: int, status: str, now: datetime, error: str | None = None
) -> None:
    """Record what happened to a push: sent, unconfirmed (it may have arrived), unreachable,
    skipped or failed, or pending again; raises InvalidRequest (an unknown status)."""
    if status not in MARKS:
        raise InvalidRequest(f"unknown outbox status {status!r}")
    conn.execute(
        "UPDATE outbox SET status = ?, last_error = ?,"
        " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
        (status, error, status, ts(now), message_id),
    )


INTERRUPTED: Final = "interrupted while sending: it may have arrived"


@dataclass(frozen=True, slots=True)
class Settled:
    """What a start found left in flight by a crash."""

    # Queued again: service pushes, and marketing ones when configured so.
    again: int
    # Marketing pushes not sent again: they may have arrived.
    unconfirmed: int


def settle_interrupted(conn: sqlite3.Connection, *, resend_marketing: bool) -> Settled:
    """At start, before anything is sent: decide each push a crash left 'sending'."""
    # Telegram may or may not have taken it: a service push is worse lost than doubled; a
    # marketing push is worse doubled than lost (README "Pushes").
    again = conn.execute(
        "UPDATE outbox SET status = 'pending', last_error = ?"
        " WHERE status = 'sending' AND (category = 'service' OR ? = 1)",
        (INTERRUPTED, int(resend_marketing)),
    ).rowcount
    unconfirmed = conn.execute(
        "UPDATE outbox SET status = 'unconfirmed', last_error = ? WHERE status = 'sending'",
        (INTERRUPTED,),
    ).rowcount
    return Settled(again, unconfirmed)


def outbox_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many pushes are in each status."""
    return {
        status: int(count)
        for status, count in conn.execute("SELECT status, count(*) FROM outbox GROUP BY status")
    }


# --- points booked with their notice --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Booked:
    """An operation just booked, with what the notice to the member it concerns needs."""

    result: OperationResult
    # The member told: the recipient of a transfer, else the operation's member.
    member_id: int
    # Their spendable points right after the operation.
    available: int
    # Whether they want a message for each purchase (/settings).
    receipts: bool


# What to tell the member about an operation just booked (None: nothing).
Notice = Callable[[Booked], Push | None]


def booked_facts(conn: sqlite3.Connection, result: OperationResult, now: datetime) -> Booked:
    """The facts a notice of `result` is built from, read in the booking's transaction."""
    member = result.recipient_id if result.recipient_id is not None else result.member_id
    return Booked(
        result, member, ledger.available(conn, member, now), receipts_wanted(conn, member)
    )


def book_and_notify(
    conn: sqlite3.Connection,
    book: Callable[[sqlite3.Connection], OperationResult],
    notice: Notice,
    now: datetime,
) -> OperationResult:
    """Book one ledger operation with `book` and queue the notice it calls for, in one
    transaction (booked and told, or neither); a replay queues nothing. Raises what `book`
    raises."""
    with atomic(conn):
        result = book(conn)
        if not result.replayed and (push := notice(booked_facts(conn, result, now))) is not None:
            enqueue(conn, [push], now)
    return result


@dataclass(frozen=True, slots=True)
class ImportedPurchases:
    """One member's purchases booked by one import run, summed for their one notice."""

    run: str
    member_id: int
    purchases: int
    amount_fen: int
    points: int
    first_operation: int
    # Their spendable points when the notice is queued, and whether they want receipts.
    available: int
    receipts: bool


def stage_import_batch(conn: sqlite3.Connection, run: str, booked: Sequence[int]) -> None:
    """Remember the operations (ids) an import run's batch just booked, for the run's notices;
    call it in the transaction that booked them."""
    # One row per batch, not one per member: a batch's new operations have consecutive ids
    # (one writer, one transaction), so their range says it all and the sums wait for the end.
    if booked:
        conn.execute(
            "INSERT INTO import_batches (run, first_operation, last_operation) VALUES (?, ?, ?)",
            (run, min(booked), max(booked)),
        )


def earn_groups_and_stage(
    conn: sqlite3.Connection,
    groups: Sequence[Sequence[EarnRequest]],
    *,
    run: str,
    then: Callable[[list[tuple[OperationResult, ...] | StoreError]], None] | None = None,
) -> list[tuple[OperationResult, ...] | StoreError]:
    """`ledger.earn_groups` of an import run's batch (a purchase and its campaign's extra
    points, say), its new operations remembered for the run's notices in the same
    transaction, where `then` also sees the outcomes (the purchases' tasks)."""

    def stage(results: list[tuple[OperationResult, ...] | StoreError]) -> None:
        booked = [
            one.operation_id
            for r in results
            if isinstance(r, tuple) and not r[0].replayed
            for one in r
        ]
        stage_import_batch(conn, run, booked)
        if then is not None:
            then(results)

    return ledger.earn_groups(conn, groups, then=stage)


# Each member's purchases (and the campaigns' extra points on them) in an import run's
# batches: how many, their amount in fen (stored as two-decimal text), points, first purchase.
_IMPORT_SUMS = """
SELECT b.run, o.member_id, count(CASE WHEN o.kind = 'purchase' THEN 1 END),
       sum(CASE WHEN o.kind = 'purchase'
           THEN CAST(replace(json_extract(o.meta, '$.amount'), '.', '') AS BIGINT) ELSE 0 END),
       sum(o.points), min(CASE WHEN o.kind = 'purchase' THEN o.id END)
FROM import_batches AS b
JOIN operations AS o ON o.id BETWEEN b.first_operation AND b.last_operation
WHERE (b.run = :run OR :run IS NULL) AND o.kind IN ('purchase', 'campaign')
GROUP BY b.run, o.member_id
ORDER BY b.run, o.member_id
"""


def release_import_notices(
    conn: sqlite3.Connection,
    build: Callable[[ImportedPurchases], Push | None],
    now: datetime,
    run: str | None = None,
) -> int:
    """Queue the notices of an import run's purchases, summed per member (every run's when
    `run` is None: runs that stopped before their end), and forget the run, in one
    transaction; return how many notices were queued."""
    with atomic(conn):
        rows = conn.execute(_IMPORT_SUMS, {"run": run}).fetchall()
        pushes = [
            push
            for r in rows
            if r[2]
            and (
                push := build(
                    ImportedPurchases(
                        run=r[0],
                        member_id=r[1],
                        purchases=r[2],
                        amount_fen=r[3],
                        points=r[4],
                        first_operation=r[5],
                        available=ledger.available(conn, r[1], now),
                        receipts=receipts_wanted(conn, r[1]),
                    )
                )
            )
            is not None
        ]
        # The column first: PostgreSQL types the parameter from it (a bare NULL has no type).
        conn.execute("DELETE FROM import_batches WHERE run = :run OR :run IS NULL", {"run": run})
        return enqueue(conn, pushes, now)


# --- job runs ----------------------------------------------------------------------------------


def job_ran(conn: sqlite3.Connection, job: str, day: date) -> bool:
    """True when the job finished for that local day."""
    row = conn.execute(
        "SELECT finished_at FROM job_runs WHERE job = ? AND day = ?", (job, day.isoformat())
    ).fetchone()
    return row is not None and row[0] is not None


def last_run_day(conn: sqlite3.Connection, job: str) -> date | None:
    """The latest local day the job finished for."""
    row = conn.execute(
        "SELECT max(day) FROM job_runs WHERE job = ? AND finished_at IS NOT NULL", (job,)
    ).fetchone()
    return None if row[0] is None else date.fromisoformat(row[0])


def record_job(
    conn: sqlite3.Connection,
    job: str,
    day: date,
    started: datetime,
    finished: datetime,
    summary: str,
) -> None:
    """Record that a daily job finished for a local day."""
    conn.execute(
        "INSERT INTO job_runs (job, day, started_at, finished_at, summary) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (job, day) DO UPDATE SET finished_at = excluded.finished_at,"
        " summary = excluded.summary",
        (job, day.isoformat(), ts(started), ts(finished), summary),
    )


# --- what the daily jobs plan ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BirthdayMember:
    """A member whose birthday is celebrated today."""

    member_id: int
    birthday_entered_at: datetime | None


def birthdays_on(
    conn: sqlite3.Connection, dates: Sequence[tuple[int, int]]
) -> list[BirthdayMember]:
    """Members whose birthday (month, day) is one of `dates`."""
    found: list[BirthdayMember] = []
    for month, day in dates:
        found += [
            BirthdayMember(row[0], dt_or_none(row[1]))
            for row in conn.execute(
                "SELECT id, birthday_entered_at FROM members"
                " WHERE birthday_month = ? AND birthday_day = ? ORDER BY id",
                (month, day),
            )
        ]
    return found


@dataclass(frozen=True, slots=True)
class Expiring:
    """Points of one member that stop being usable at one instant."""

    member_id: int
    expires_at: datetime
    points: int


def expiring_between(conn: sqlite3.Connection, start: datetime, end: datetime) -> list[Expiring]:
    """Unspent points whose lots expire in (start, end], summed per member and instant: a lot
    expiring at the end of local day D (the next midnight) is last usable on D."""
    return [
        Expiring(row[0], dt(row[1]), int(row[2]))
        for row in conn.execute(
            "SELECT member_id, expires_at, sum(remainder) FROM lots"
            " WHERE remainder > 0 AND expires_at IS NOT NULL"
            " AND expires_at > ? AND expires_at <= ?"
            " GROUP BY member_id, expires_at ORDER BY member_id, expires_at",
            (ts(start), ts(end)),
        )
    ]


def member_ids(conn: sqlite3.Connection) -> list[int]:
    """Every member's id (for notices that go to everyone)."""
    return [int(row[0]) for row in conn.execute("SELECT id FROM members ORDER BY id")]


# --- announced policy changes and broadcasts ---------------------------------------------


@dataclass(frozen=True, slots=True)
class TermChange:
    """An announced change of one of the terms members were promised (values as JSON)."""

    id: int
    term: str
    # The value it was announced against (None: whatever the configuration says).
    replaces: Any
    value: Any
    effective_on: date
    announced_at: datetime
    actor: str


def term_changes(conn: sqlite3.Connection) -> list[TermChange]:
    """Every announced change, by effective day (then announcement)."""
    return [
        TermChange(
            r[0],
            r[1],
            None if r[2] is None else json.loads(r[2]),
            json.loads(r[3]),
            date.fromisoformat(r[4]),
            dt(r[5]),
            r[6],
        )
        for r in conn.execute(
            "SELECT id, term, replaces, value, effective_on, announced_at, actor"
            " FROM term_changes ORDER BY effective_on, id"
        )
    ]


def announce_term_change(
    conn: sqlite3.Connection,
    *,
    term: str,
    replaces: Any,
    value: Any,
    effective_on: date,
    actor: str,
    now: datetime,
    message_key: str,
    params: Mapping[str, Any],
) -> tuple[TermChange, int]:
    """Record a change and put a notice for every member in the outbox (one per change and
    member), in one transaction; return the change and how many notices were queued. Raises
    InvalidRequest (a change of that term for that day exists already)."""
    # ON CONFLICT, not a caught IntegrityError: PostgreSQL would spoil the transaction.
    inserted = conn.execute(
        "INSERT INTO term_changes (term, replaces, value, effective_on, announced_at, actor)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (term, effective_on) DO NOTHING RETURNING id",
        (
            term,
            None if replaces is None else json.dumps(replaces, sort_keys=True),
            json.dumps(value, sort_keys=True),
            effective_on.isoformat(),
            ts(now),
            actor,
        ),
    ).fetchone()
    if inserted is None:
        raise InvalidRequest(
            f"a change of {term} effective on {effective_on} was already announced"
        )
    change_id = int(inserted[0])
    # One set-based insert: a million members are one statement, not a million.
    notices = conn.execute(
        "INSERT INTO outbox (dedupe_key, member_id, category, message_key, params, created_at)"
        " SELECT 'policy:' || ? || ':' || id, id, 'service', ?, ?, ? FROM members"
        # WHERE true: without it SQLite reads ON CONFLICT as a join constraint.
        " WHERE true ON CONFLICT (dedupe_key) DO NOTHING",
        (change_id, message_key, json.dumps(params, sort_keys=True, ensure_ascii=False), ts(now)),
    ).rowcount
    [change] = [c for c in term_changes(conn) if c.id == change_id]
    return change, notices


def promised_terms(conn: sqlite3.Connection) -> dict[str, tuple[Any, datetime]] | None:
    """The terms members were last promised: value and when it became the promise, by term
    (None: never recorded, a new database)."""
    rows = conn.execute("SELECT term, value, recorded_at FROM promised_terms").fetchall()
    if not rows:
        return None
    return {str(term): (json.loads(value), dt(at)) for term, value, at in rows}


def record_promise(conn: sqlite3.Connection, terms: Mapping[str, Any], now: datetime) -> None:
    """Make `terms` the promise (terms no longer offered, such as a delisted item, leave it)."""
    with atomic(conn):
        conn.execute(
            # NOT (x IN ...): the PostgreSQL connection rewrites `x IN (... json_each(?))`.
            "DELETE FROM promised_terms WHERE NOT (term IN (SELECT value FROM json_each(?)))",
            (json.dumps(sorted(terms)),),
        )
        conn.executemany(
            "INSERT INTO promised_terms (term, value, recorded_at) VALUES (?, ?, ?)"
            " ON CONFLICT (term) DO UPDATE SET value = excluded.value,"
            " recorded_at = excluded.recorded_at WHERE promised_terms.value IS NOT excluded.value",
            [
                (term, json.dumps(value, sort_keys=True), ts(now))
                for term, value in sorted(terms.items())
            ],
        )


@dataclass(frozen=True, slots=True)
class Broadcast:
    """An operator's message to every member."""

    id: int
    text: str
    actor: str
    created_at: datetime
    confirmed_at: datetime | None


def create_broadcast(conn: sqlite3.Connection, text: str, actor: str, now: datetime) -> Broadcast:
    """Keep a broadcast for its preview; nothing is sent until it is confirmed."""
    broadcast_id = insert_id(
        conn,
        "INSERT INTO broadcasts (text, actor, created_at) VALUES (?, ?, ?)",
        (text, actor, ts(now)),
    )
    return Broadcast(broadcast_id, text, actor, now, None)


def confirm_broadcast(
    conn: sqlite3.Connection, broadcast_id: int, actor: str, now: datetime, message_key: str
) -> int:
    """Queue a previewed broadcast for every member (a second confirmation queues nothing);
    return how many messages were queued. Raises NotFound (no such broadcast of this actor)."""
    row = conn.execute(
        "SELECT text FROM broadcasts WHERE id = ? AND actor = ?", (broadcast_id, actor)
    ).fetchone()
    if row is None:
        raise NotFound(f"no broadcast {broadcast_id} by {actor}")
    conn.execute(
        "UPDATE broadcasts SET confirmed_at = coalesce(confirmed_at, ?) WHERE id = ?",
        (ts(now), broadcast_id),
    )
    params = json.dumps({"text": row[0]}, ensure_ascii=False)
    return conn.execute(
        "INSERT INTO outbox (dedupe_key, member_id, category, message_key, params, created_at)"
        " SELECT 'broadcast:' || ? || ':' || id, id, 'marketing', ?, ?, ? FROM members"
        # WHERE true: without it SQLite reads ON CONFLICT as a join constraint.
        " WHERE true ON CONFLICT (dedupe_key) DO NOTHING",
        (broadcast_id, message_key, params, ts(now)),
    ).rowcount


# --- the async facade ----------------------------------------------------------------------


class Pushes(Facade):
    """The async facade over the outbox, preferences and job runs."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # Telegram ids of members marked unreachable, read once: every private update asks
        # `seen_in_private`, which must cost no database work for everyone else. Only this
        # facade changes `members.reachable` in the running bot.
        self._unreachable: set[int] | None = None

    async def _unreachable_ids(self) -> set[int]:
        if self._unreachable is None:
            self._unreachable = set(await self._lookup(unreachable_telegram_ids))
        return self._unreachable

    async def set_reachable(self, telegram_id: int, reachable: bool) -> bool:
        """Record that Telegram lets us reach (or not) this user; False when they are no
        member."""
        unreachable = await self._unreachable_ids()
        found = await self._write(lambda c: set_reachable(c, telegram_id, reachable))
        if found and not reachable:
            unreachable.add(telegram_id)
        else:
            unreachable.discard(telegram_id)
        return found

    async def seen_in_private(self, telegram_id: int) -> bool:
        """A user wrote to the bot in private, so it can reach them: a member marked
        unreachable is reachable again (True when that changed anything)."""
        if telegram_id not in await self._unreachable_ids():
            return False  # the hot path: no database work
        return await self.set_reachable(telegram_id, True)

    # Each runs this module's sync function of the same name (`counts`: outbox_counts).
    preferences = looks_up(preferences)
    set_birthday = writes(set_birthday)
    set_marketing = writes(set_marketing)
    set_receipts = writes(set_receipts)
    book_and_notify = writes(book_and_notify)
    enqueue = writes(enqueue)
    due = reads(due)
    start_sending = writes(start_sending)
    mark = writes(mark)
    settle_interrupted = writes(settle_interrupted)
    counts = reads(outbox_counts)
    term_changes = reads(term_changes)
    promised_terms = reads(promised_terms)
    record_promise = writes(record_promise)
    create_broadcast = writes(create_broadcast)
    confirm_broadcast = writes(confirm_broadcast)
    member_ids = reads(member_ids)
    member_count = reads(member_count)
    record_job = writes(record_job)
    job_ran = looks_up(job_ran)
    last_run_day = looks_up(last_run_day)
    birthdays_on = reads(birthdays_on)
    expiring_between = reads(expiring_between)
