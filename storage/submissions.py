"""Shares and reviews a member sends for a task, and the staff decision on each.

A submission is filed once per message (`source`), a photo counts once for everyone (a unique
index on Telegram's file_unique_id), and at most `cap` submissions pending or approved count
per member, task and period. A decision is taken once (a trigger refuses a second): the
decision, what it causes (`on_decided`: the task's progress and reward, booked by the caller
in this transaction) and the member's message commit together. Like `storage.feedback`, the
core is synchronous functions on a `sqlite3.Connection`; the `Submissions` facade serves them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, Literal

from storage.errors import InvalidRequest, InvalidState, LimitReached, NotFound, StoreError
from storage.facade import Facade, looks_up, reads, writes
from storage.pushes import Push, enqueue
from storage.sql import atomic, dt, dt_or_none, insert_id, required_now, savepoint, ts

SubmissionKind = Literal["share", "review"]


class DuplicatePhoto(StoreError):
    """This photo (its file_unique_id) was sent for a task before, by someone."""


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo as Telegram identifies it: to show it again, and to know it again."""

    file_id: str
    file_unique_id: str


@dataclass(frozen=True, slots=True)
class Submission:
    """What a member sent for a task, and what staff decided."""

    id: int
    member_id: int
    telegram_id: int
    member_code: str
    member_name: str
    task_id: str
    kind: str
    period: str
    photo: Photo | None
    caption: str | None
    category: str | None
    rating: int | None
    text: str | None
    status: str
    decided_by: str | None
    reason: str | None
    created_at: datetime
    decided_at: datetime | None
    # The same message was filed before (a redelivered update): nothing new was written.
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class ReviewDraft:
    """A review being written: the task, category and rating chosen so far."""

    member_id: int
    task_id: str
    category: str
    rating: int


_SELECT: Final = (
    "SELECT s.id, s.member_id, m.telegram_id, m.member_code, m.first_name, s.task_id, s.kind,"
    " s.period, s.file_id, s.file_unique_id, s.caption, s.category, s.rating, s.text,"
    " s.status, s.decided_by, s.reason, s.created_at, s.decided_at"
    " FROM task_submissions AS s JOIN members AS m ON m.id = s.member_id"
)


def _submission(row: Sequence[Any], *, replayed: bool = False) -> Submission:
    return Submission(
        id=row[0],
        member_id=row[1],
        telegram_id=row[2],
        member_code=row[3],
        member_name=row[4] or "",
        task_id=row[5],
        kind=row[6],
        period=row[7],
        photo=None if row[8] is None else Photo(row[8], row[9]),
        caption=row[10],
        category=row[11],
        rating=row[12],
        text=row[13],
        status=row[14],
        decided_by=row[15],
        reason=row[16],
        created_at=dt(row[17]),
        decided_at=dt_or_none(row[18]),
        replayed=replayed,
    )


def submission(conn: sqlite3.Connection, submission_id: int) -> Submission:
    """One submission; raises NotFound."""
    row = conn.execute(_SELECT + " WHERE s.id = ?", (submission_id,)).fetchone()
    if row is None:
        raise NotFound(f"no submission {submission_id}")
    return _submission(row)


def counted(conn: sqlite3.Connection, member_id: int, task_id: str, period: str) -> int:
    """How many of the member's submissions for the task and period count: pending or approved."""
    row = conn.execute(
        "SELECT count(*) FROM task_submissions WHERE member_id = ? AND task_id = ?"
        " AND period = ? AND status IN ('pending', 'approved')",
        (member_id, task_id, period),
    ).fetchone()
    return int(row[0])


def submit(
    conn: sqlite3.Connection,
    member_id: int,
    task_id: str,
    kind: SubmissionKind,
    period: str,
    *,
    cap: int,
    source: str,
    photo: Photo | None = None,
    caption: str | None = None,
    category: str | None = None,
    rating: int | None = None,
    text: str | None = None,
    approved_by: str | None = None,
    on_decided: Callable[[sqlite3.Connection, Submission], Push | None] | None = None,
    now: datetime | None = None,
) -> Submission:
    """File a submission for a task (once per `source`; the same `source` again returns the
    first, replayed), at most `cap` counting per member, task and period; `approved_by` files
    it approved at once, running `on_decided` and queueing the push it returns in the same
    transaction. Raises DuplicatePhoto, LimitReached, NotFound, InvalidRequest."""
    now = required_now(now)
    if not source:
        raise InvalidRequest("say which message the submission came from")
    if cap < 1:
        raise InvalidRequest("the cap must be at least 1")
    with atomic(conn):
        row = conn.execute(_SELECT + " WHERE s.source = ?", (source,)).fetchone()
        if row is not None:
            if row[1] != member_id:
                raise InvalidRequest(f"message {source} was filed by another member")
            return _submission(row, replayed=True)
        if conn.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
            raise NotFound(f"no member {member_id}")
        if photo is not None and (
            conn.execute(
                "SELECT 1 FROM task_submissions WHERE file_unique_id = ?", (photo.file_unique_id,)
            ).fetchone()
            is not None
        ):
            raise DuplicatePhoto(photo.file_unique_id)
        if counted(conn, member_id, task_id, period) >= cap:
            raise LimitReached(cap)
        now_ts = ts(now)
        try:
            # A savepoint: a refused INSERT spoils a PostgreSQL transaction otherwise.
            with savepoint(conn):
                submission_id = insert_id(
                    conn,
                    "INSERT INTO task_submissions (member_id, task_id, kind, period, source,"
                    " file_id, file_unique_id, caption, category, rating, text, status,"
                    " decided_by, created_at, decided_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        member_id,
                        task_id,
                        kind,
                        period,
                        source,
                        None if photo is None else photo.file_id,
                        None if photo is None else photo.file_unique_id,
                        caption,
                        category,
                        rating,
                        text,
                        "pending" if approved_by is None else "approved",
                        approved_by,
                        now_ts,
                        None if approved_by is None else now_ts,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise InvalidRequest(f"not a valid {kind} submission: {exc}") from None
        filed = submission(conn, submission_id)
        if approved_by is not None and on_decided is not None:
            _queue(conn, on_decided(conn, filed), now)
        return filed


def _queue(conn: sqlite3.Connection, push: Push | None, now: datetime) -> None:
    if push is not None:
        enqueue(conn, [push], now)


def pending(conn: sqlite3.Connection, *, limit: int) -> tuple[list[Submission], int]:
    """The oldest submissions waiting for staff, and how many wait in all; raises
    InvalidRequest (limit <= 0)."""
    if limit <= 0:
        raise InvalidRequest("limit must be > 0")
    total = conn.execute(
        "SELECT count(*) FROM task_submissions WHERE status = 'pending'"
    ).fetchone()[0]
    found = [
        _submission(row)
        for row in conn.execute(
            _SELECT + " WHERE s.status = 'pending' ORDER BY s.id LIMIT ?", (limit,)
        )
    ]
    return found, int(total)


def decide(
    conn: sqlite3.Connection,
    submission_id: int,
    *,
    approve: bool,
    actor: str,
    reason: str | None = None,
    on_decided: Callable[[sqlite3.Connection, Submission], Push | None] | None = None,
    now: datetime | None = None,
) -> Submission:
    """Approve or decline (with `reason`) a pending submission, run `on_decided` (an approval
    moves the task) and queue the push it returns, all in one transaction. Raises NotFound,
    InvalidState(the status it has), InvalidRequest."""
    now = required_now(now)
    if not actor or not actor.strip():
        raise InvalidRequest("say who decided")
    if approve and reason is not None:
        raise InvalidRequest("a reason is for a decline")
    with atomic(conn):
        found = submission(conn, submission_id)
        if found.status != "pending":
            raise InvalidState(found.status)
        conn.execute(
            "UPDATE task_submissions SET status = ?, decided_by = ?, reason = ?, decided_at = ?"
            " WHERE id = ?",
            ("approved" if approve else "declined", actor, reason, ts(now), submission_id),
        )
        decided = submission(conn, submission_id)
        if on_decided is not None:
            _queue(conn, on_decided(conn, decided), now)
        return decided


def categories_bought(
    conn: sqlite3.Connection, member_id: int, since: date, categories: Collection[str]
) -> list[str]:
    """The categories (of `categories`; empty: any) of the member's purchases made on local
    `since` or later and not reversed, in the order first bought."""
    # Through the member's postings (indexed by account): operations has no member index.
    rows = conn.execute(
        "SELECT json_extract(o.meta, '$.category') AS category, min(o.id)"
        " FROM operations AS o WHERE o.id IN (SELECT p.operation_id FROM postings AS p"
        "   JOIN accounts AS a ON a.id = p.account_id"
        "   WHERE a.member_id = ? AND a.kind = 'member')"
        " AND o.kind = 'purchase' AND json_extract(o.meta, '$.purchased_on') >= ?"
        " AND NOT EXISTS (SELECT 1 FROM operations AS r WHERE r.reverses_operation_id = o.id)"
        " GROUP BY category ORDER BY min(o.id)",
        (member_id, since.isoformat()),
    ).fetchall()
    wanted = set(categories)
    return [str(row[0]) for row in rows if row[0] is not None and (not wanted or row[0] in wanted)]


def save_draft(
    conn: sqlite3.Connection,
    member_id: int,
    task_id: str,
    category: str,
    rating: int,
    *,
    now: datetime | None = None,
) -> ReviewDraft:
    """Keep the member's review in progress (replacing any earlier one)."""
    now = required_now(now)
    with atomic(conn):
        conn.execute(
            "INSERT INTO review_drafts (member_id, task_id, category, rating, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (member_id) DO UPDATE SET"
            " task_id = excluded.task_id, category = excluded.category,"
            " rating = excluded.rating, created_at = excluded.created_at",
            (member_id, task_id, category, rating, ts(now)),
        )
    return ReviewDraft(member_id, task_id, category, rating)


def draft_of(conn: sqlite3.Connection, member_id: int) -> ReviewDraft | None:
    """The member's review in progress, if any."""
    row = conn.execute(
        "SELECT task_id, category, rating FROM review_drafts WHERE member_id = ?", (member_id,)
    ).fetchone()
    return None if row is None else ReviewDraft(member_id, row[0], row[1], row[2])


def drop_draft(conn: sqlite3.Connection, member_id: int) -> None:
    """Forget the member's review in progress (filed or cancelled)."""
    with atomic(conn):
        conn.execute("DELETE FROM review_drafts WHERE member_id = ?", (member_id,))


def submit_review(
    conn: sqlite3.Connection,
    draft: ReviewDraft,
    period: str,
    *,
    cap: int,
    source: str,
    text: str,
    photo: Photo | None = None,
    now: datetime | None = None,
) -> Submission:
    """File the drafted review with its text (and photo) and forget the draft, together.
    Raises what `submit` raises."""
    with atomic(conn):
        filed = submit(
            conn,
            draft.member_id,
            draft.task_id,
            "review",
            period,
            cap=cap,
            source=source,
            photo=photo,
            category=draft.category,
            rating=draft.rating,
            text=text,
            now=now,
        )
        drop_draft(conn, draft.member_id)
        return filed


class Submissions(Facade):
    """Async access to shares and reviews (one write transaction per call)."""

    submit = writes(submit)
    submit_review = writes(submit_review)
    decide = writes(decide)
    submission = looks_up(submission)
    counted = looks_up(counted)
    pending = reads(pending)
    categories_bought = looks_up(categories_bought)
    save_draft = writes(save_draft)
    draft_of = looks_up(draft_of)
    drop_draft = writes(drop_draft)
