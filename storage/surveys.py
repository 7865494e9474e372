"""Reward surveys: answered one question at a time, completed and rewarded once.

A survey response is answered one question at a time and every answer is written as it is
given, so a member who stops halfway, or whose bot restarts, continues at the same question.
Completing a response and crediting its reward (a 'survey' ledger operation keyed
'survey:<member>:<survey>') are one transaction, with whatever the spec's `on_complete` books
(a survey task's progress); a completed response never changes.

The caller turns the configuration into plain `SurveySpec`s (storage never reads the
configuration) and decides "now" and the reward's expiry; this module keeps the rules that
money depends on: the open window, the question being asked, one completion, one payment.
Like `storage.games`, the core is synchronous functions on a `sqlite3.Connection`, each
all-or-nothing through `storage.sql.atomic`; `Surveys` is the async facade, which also serves
the suggestions of `storage.feedback`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from storage import feedback, ledger
from storage.errors import (
    AlreadyCompleted,
    InvalidAnswer,
    InvalidRequest,
    NotFound,
    StaleQuestion,
    SurveyChanged,
    SurveyClosed,
)
from storage.facade import Facade, looks_up, reads, writes
from storage.sql import atomic, dt, dt_or_none, insert_id, required_now, ts

QUESTION_KINDS: Final = ("single", "multiple", "rating", "text")
CHOICE_KINDS: Final = frozenset({"single", "multiple"})
RATINGS: Final = range(1, 6)
# Text answers an operator sees per question in the statistics.
TEXT_SAMPLES: Final = 5


# --- what the caller describes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuestionSpec:
    """One question as the configuration says: its kind, options (ids) and limits."""

    id: str
    kind: str
    required: bool = True
    options: tuple[str, ...] = ()
    max_choices: int | None = None
    max_length: int = 500


@dataclass(frozen=True, slots=True)
class SurveySpec:
    """A survey as the configuration says: its window, reward and questions."""

    id: str
    reward_points: int
    opens_at: datetime
    closes_at: datetime
    questions: tuple[QuestionSpec, ...]
    # What completing a response also books, in the completing transaction, called with
    # (conn, member id, actor, now): a survey task's progress. The caller's rules decide it;
    # it is not part of the survey's identity.
    on_complete: Callable[[sqlite3.Connection, int, str, datetime], None] | None = field(
        default=None, compare=False, repr=False
    )

    @property
    def definition(self) -> str:
        """A hash of the questions: a response started under another one starts over."""
        shape = [
            [q.id, q.kind, q.required, list(q.options), q.max_choices, q.max_length]
            for q in self.questions
        ]
        canonical = json.dumps(shape, separators=(",", ":"), ensure_ascii=False)
        return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()

    def is_open(self, now: datetime) -> bool:
        """True while members may answer (from opens_at, until closes_at)."""
        return self.opens_at <= now < self.closes_at


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """A member's answer to one question ('draft': ticked boxes not yet confirmed)."""

    question_id: str
    position: int
    kind: str
    status: str
    choices: tuple[str, ...] | None
    rating: int | None
    text: str | None
    answered_at: datetime


@dataclass(frozen=True, slots=True)
class Progress:
    """A member's response: the question being asked, the answers so far, the reward."""

    response_id: int
    survey_id: str
    member_id: int
    # The hash of the questions it was started under (`SurveySpec.definition`).
    definition: str
    position: int
    questions: int
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    reward_points: int
    reward_operation_id: int | None
    answers: Mapping[str, Answer]
    # The survey changed since the member started, so the earlier answers were dropped.
    restarted: bool = field(default=False, compare=False)
    # The same message was taken before (a redelivered update): nothing was written.
    replayed: bool = field(default=False, compare=False)

    @property
    def completed(self) -> bool:
        """True once every question was answered and the reward credited."""
        return self.completed_at is not None


@dataclass(frozen=True, slots=True)
class QuestionStats:
    """How a question was answered in the completed responses."""

    question_id: str
    answered: int
    skipped: int
    # Choice questions: option id → how many picked it (options nobody picked are absent).
    option_counts: Mapping[str, int]
    # Rating questions: stars → how many gave them.
    rating_counts: Mapping[int, int]
    # Text questions: the newest answers.
    text_samples: tuple[str, ...]

    @property
    def average_rating(self) -> float | None:
        """The mean rating, or None when nobody rated."""
        total = sum(self.rating_counts.values())
        if not total:
            return None
        return sum(stars * count for stars, count in self.rating_counts.items()) / total


@dataclass(frozen=True, slots=True)
class SurveyStats:
    """A survey's results: completed and unfinished responses, points paid, every question."""

    survey_id: str
    completed: int
    in_progress: int
    points_paid: int
    questions: tuple[QuestionStats, ...]


@dataclass(frozen=True, slots=True)
class ResponseAnswer:
    """One question of one response: a row of the survey export."""

    response_id: int
    member_code: str
    started_at: datetime
    completed_at: datetime | None
    reward_points: int
    position: int
    question_id: str
    kind: str
    status: str
    choices: tuple[str, ...] | None
    rating: int | None
    text: str | None


# --- helpers -------------------------------------------------------------------------------

_RESPONSE_COLUMNS: Final = (
    "id, survey_id, member_id, definition, questions, position, started_at, updated_at,"
    " completed_at, reward_points, reward_operation_id"
)


def _check_spec(spec: SurveySpec) -> None:
    """Refuse a description the tables could not hold, naming what is wrong."""
    if not spec.questions:
        raise InvalidRequest(f"survey {spec.id}: no questions")
    points = spec.reward_points
    if isinstance(points, bool) or not isinstance(points, int) or points < 0:
        raise InvalidRequest(f"survey {spec.id}: the reward must be an integer >= 0")
    for moment in (spec.opens_at, spec.closes_at):
        ts(moment)  # aware datetimes only: raises ValueError for a naive one
    for question in spec.questions:
        if question.kind not in QUESTION_KINDS:
            raise InvalidRequest(f"question {question.id}: unknown kind {question.kind!r}")
        if (question.kind in CHOICE_KINDS) != bool(question.options):
            raise InvalidRequest(f"question {question.id}: only choice questions have options")


def _answer(row: Sequence[Any]) -> Answer:
    return Answer(
        question_id=row[0],
        position=row[1],
        kind=row[2],
        status=row[3],
        choices=None if row[4] is None else tuple(json.loads(row[4])),
        rating=row[5],
        text=row[6],
        answered_at=dt(row[7]),
    )


def _answers(conn: sqlite3.Connection, response_id: int) -> dict[str, Answer]:
    return {
        row[0]: _answer(row)
        for row in conn.execute(
            "SELECT question_id, position, kind, status, choices, rating, text, answered_at"
            " FROM survey_answers WHERE response_id = ? ORDER BY position",
            (response_id,),
        )
    }


def _progress(conn: sqlite3.Connection, row: Sequence[Any], *, restarted: bool = False) -> Progress:
    return Progress(
        response_id=row[0],
        survey_id=row[1],
        member_id=row[2],
        definition=row[3],
        position=row[5],
        questions=row[4],
        started_at=dt(row[6]),
        updated_at=dt(row[7]),
        completed_at=dt_or_none(row[8]),
        reward_points=row[9],
        reward_operation_id=row[10],
        answers=_answers(conn, row[0]),
        restarted=restarted,
    )


def _row(conn: sqlite3.Connection, survey_id: str, member_id: int) -> Sequence[Any] | None:
    row: Sequence[Any] | None = conn.execute(
        f"SELECT {_RESPONSE_COLUMNS} FROM survey_responses"  # noqa: S608 - fixed columns
        " WHERE survey_id = ? AND member_id = ?",
        (survey_id, member_id),
    ).fetchone()
    return row


def _by_id(conn: sqlite3.Connection, response_id: int) -> Progress:
    row = conn.execute(
        f"SELECT {_RESPONSE_COLUMNS} FROM survey_responses WHERE id = ?",  # noqa: S608
        (response_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no survey response {response_id}")
    return _progress(conn, row)


def _check_window(spec: SurveySpec, now: datetime) -> None:
    if now < spec.opens_at:
        raise SurveyClosed("not_open", spec.opens_at, spec.closes_at)
    if now >= spec.closes_at:
        raise SurveyClosed("closed", spec.opens_at, spec.closes_at)


def _current(
    conn: sqlite3.Connection, spec: SurveySpec, member_id: int, position: int, now: datetime
) -> tuple[Sequence[Any], QuestionSpec]:
    """The member's open response and the question it asks, checked against the button."""
    _check_spec(spec)
    row = _row(conn, spec.id, member_id)
    if row is None:
        raise NotFound(f"member {member_id} has not started survey {spec.id}")
    if row[8] is not None:
        raise AlreadyCompleted(f"member {member_id} completed survey {spec.id}")
    if row[3] != spec.definition:
        raise SurveyChanged(f"survey {spec.id} changed since member {member_id} started it")
    _check_window(spec, now)
    if position != row[5]:
        raise StaleQuestion(row[5])
    return row, spec.questions[position]


def _save_answer(
    conn: sqlite3.Connection,
    response_id: int,
    question: QuestionSpec,
    position: int,
    status: str,
    *,
    now_ts: int,
    choices: Sequence[str] | None = None,
    rating: int | None = None,
    text: str | None = None,
    source: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO survey_answers (response_id, question_id, position, kind, status, choices,"
        " rating, text, source, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (response_id, question_id) DO UPDATE SET position = excluded.position,"
        " kind = excluded.kind, status = excluded.status, choices = excluded.choices,"
        " rating = excluded.rating, text = excluded.text, source = excluded.source,"
        " answered_at = excluded.answered_at",
        (
            response_id,
            question.id,
            position,
            question.kind,
            status,
            None if choices is None else json.dumps(list(choices), ensure_ascii=False),
            rating,
            text,
            source,
            now_ts,
        ),
    )


def _advance(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    row: Sequence[Any],
    *,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime,
) -> Progress:
    """Move to the next question, or complete the response after the last one."""
    response_id, member_id, position = row[0], row[2], row[5]
    now_ts = ts(now)
    if position + 1 < len(spec.questions):
        conn.execute(
            "UPDATE survey_responses SET position = ?, updated_at = ? WHERE id = ?",
            (position + 1, now_ts, response_id),
        )
        return _by_id(conn, response_id)
    answers = _answers(conn, response_id)
    for question in spec.questions:
        done = answers.get(question.id)
        if (
            done is None
            or done.status == "draft"
            or (question.required and done.status != "answered")
        ):
            raise InvalidRequest(f"question {question.id} of survey {spec.id} is not answered")
    operation_id = None
    if spec.reward_points:
        operation_id = ledger.earn(
            conn,
            member_id,
            spec.reward_points,
            kind="survey",
            key=f"survey:{member_id}:{spec.id}",
            actor=actor,
            expires_at=reward_expires_at,
            reference=spec.id,
            meta={"survey": spec.id, "response": response_id},
            now=now,
        ).operation_id
    conn.execute(
        "UPDATE survey_responses SET position = questions, completed_at = ?, updated_at = ?,"
        " reward_points = ?, reward_operation_id = ? WHERE id = ?",
        (now_ts, now_ts, spec.reward_points, operation_id, response_id),
    )
    if spec.on_complete is not None:
        spec.on_complete(conn, member_id, actor, now)
    return _by_id(conn, response_id)


# --- answering -------------------------------------------------------------------------------


def progress(conn: sqlite3.Connection, survey_id: str, member_id: int) -> Progress | None:
    """The member's response to a survey, or None before they open it."""
    row = _row(conn, survey_id, member_id)
    return None if row is None else _progress(conn, row)


def responses(conn: sqlite3.Connection, member_id: int) -> dict[str, Progress]:
    """Every response of the member (completed or not), by survey id."""
    return {
        row[1]: _progress(conn, row)
        for row in conn.execute(
            f"SELECT {_RESPONSE_COLUMNS} FROM survey_responses"  # noqa: S608 - fixed columns
            " WHERE member_id = ? ORDER BY id",
            (member_id,),
        )
    }


def active_response(conn: sqlite3.Connection, member_id: int) -> Progress | None:
    """The unfinished response the member touched last: the survey they are answering."""
    row = conn.execute(
        f"SELECT {_RESPONSE_COLUMNS} FROM survey_responses"  # noqa: S608 - fixed columns
        " WHERE member_id = ? AND completed_at IS NULL ORDER BY updated_at DESC, id DESC LIMIT 1",
        (member_id,),
    ).fetchone()
    return None if row is None else _progress(conn, row)


def start(
    conn: sqlite3.Connection, spec: SurveySpec, member_id: int, *, now: datetime | None = None
) -> Progress:
    """Open the member's response (a new one, or the unfinished one where they left it); a
    survey changed since they started starts over (`restarted`). Raises NotFound,
    AlreadyCompleted, SurveyClosed."""
    now = required_now(now)
    _check_spec(spec)
    now_ts = ts(now)
    with atomic(conn):
        if conn.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone() is None:
            raise NotFound(f"no member {member_id}")
        row = _row(conn, spec.id, member_id)
        if row is not None and row[8] is not None:
            raise AlreadyCompleted(f"member {member_id} completed survey {spec.id}")
        _check_window(spec, now)
        if row is None:
            response_id = insert_id(
                conn,
                "INSERT INTO survey_responses (survey_id, member_id, definition, questions,"
                " started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (spec.id, member_id, spec.definition, len(spec.questions), now_ts, now_ts),
            )
            return _by_id(conn, response_id)
        if row[3] != spec.definition:
            conn.execute("DELETE FROM survey_answers WHERE response_id = ?", (row[0],))
            conn.execute(
                "UPDATE survey_responses SET definition = ?, questions = ?, position = 0,"
                " started_at = ?, updated_at = ? WHERE id = ?",
                (spec.definition, len(spec.questions), now_ts, now_ts, row[0]),
            )
            return dataclasses.replace(_by_id(conn, row[0]), restarted=True)
        conn.execute("UPDATE survey_responses SET updated_at = ? WHERE id = ?", (now_ts, row[0]))
        return _by_id(conn, row[0])


def choose(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    option_id: str,
    *,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime | None = None,
) -> Progress:
    """Answer a single-choice question and move on (completing after the last question).
    Raises NotFound, AlreadyCompleted, SurveyChanged, SurveyClosed, StaleQuestion,
    InvalidAnswer."""
    now = required_now(now)
    with atomic(conn):
        row, question = _current(conn, spec, member_id, position, now)
        if question.kind != "single":
            raise InvalidAnswer("kind")
        if option_id not in question.options:
            raise InvalidAnswer("option")
        _save_answer(
            conn, row[0], question, position, "answered", now_ts=ts(now), choices=[option_id]
        )
        return _advance(conn, spec, row, reward_expires_at=reward_expires_at, actor=actor, now=now)


def toggle(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    option_id: str,
    *,
    now: datetime | None = None,
) -> Progress:
    """Tick or untick an option of a multiple-choice question (confirmed later with Done).
    Raises what `choose` raises; InvalidAnswer('too_many') beyond max_choices."""
    now = required_now(now)
    with atomic(conn):
        row, question = _current(conn, spec, member_id, position, now)
        if question.kind != "multiple":
            raise InvalidAnswer("kind")
        if option_id not in question.options:
            raise InvalidAnswer("option")
        current = _answers(conn, row[0]).get(question.id)
        ticked = set(current.choices or ()) if current is not None else set()
        if option_id in ticked:
            ticked.discard(option_id)
        else:
            if question.max_choices is not None and len(ticked) >= question.max_choices:
                raise InvalidAnswer("too_many", question.max_choices)
            ticked.add(option_id)
        ordered = [o for o in question.options if o in ticked]
        now_ts = ts(now)
        _save_answer(conn, row[0], question, position, "draft", now_ts=now_ts, choices=ordered)
        conn.execute("UPDATE survey_responses SET updated_at = ? WHERE id = ?", (now_ts, row[0]))
        return _by_id(conn, row[0])


def confirm_choices(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    *,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime | None = None,
) -> Progress:
    """Done on a multiple-choice question: keep the ticked options and move on (nothing
    ticked skips an optional question). Raises what `choose` raises; InvalidAnswer('required')
    when a required question has nothing ticked."""
    now = required_now(now)
    with atomic(conn):
        row, question = _current(conn, spec, member_id, position, now)
        if question.kind != "multiple":
            raise InvalidAnswer("kind")
        current = _answers(conn, row[0]).get(question.id)
        ticked = [o for o in question.options if current and o in (current.choices or ())]
        now_ts = ts(now)
        if ticked:
            _save_answer(
                conn, row[0], question, position, "answered", now_ts=now_ts, choices=ticked
            )
        elif question.required:
            raise InvalidAnswer("required")
        else:
            _save_answer(conn, row[0], question, position, "skipped", now_ts=now_ts)
        return _advance(conn, spec, row, reward_expires_at=reward_expires_at, actor=actor, now=now)


def rate(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    stars: int,
    *,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime | None = None,
) -> Progress:
    """Answer a rating question (1–5) and move on. Raises what `choose` raises;
    InvalidAnswer('rating', 5) for other stars."""
    now = required_now(now)
    with atomic(conn):
        row, question = _current(conn, spec, member_id, position, now)
        if question.kind != "rating":
            raise InvalidAnswer("kind")
        if isinstance(stars, bool) or not isinstance(stars, int) or stars not in RATINGS:
            raise InvalidAnswer("rating", RATINGS.stop - 1)
        _save_answer(conn, row[0], question, position, "answered", now_ts=ts(now), rating=stars)
        return _advance(conn, spec, row, reward_expires_at=reward_expires_at, actor=actor, now=now)


def write_text(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    text: str,
    *,
    source: str | None = None,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime | None = None,
) -> Progress:
    """Answer a free-text question and move on; the message `source` already answered a
    question returns the response unchanged (replayed). Raises what `choose` raises;
    InvalidAnswer('empty') or ('too_long', max_length)."""
    now = required_now(now)
    with atomic(conn):
        if source is not None:
            taken = conn.execute(
                "SELECT r.id FROM survey_answers AS a"
                " JOIN survey_responses AS r ON r.id = a.response_id"
                " WHERE r.survey_id = ? AND r.member_id = ? AND a.source = ?",
                (spec.id, member_id, source),
            ).fetchone()
            if taken is not None:
                return dataclasses.replace(_by_id(conn, taken[0]), replayed=True)
        row, question = _current(conn, spec, member_id, position, now)
        if question.kind != "text":
            raise InvalidAnswer("kind")
        cleaned = text.strip()
        if not cleaned:
            raise InvalidAnswer("empty")
        if len(cleaned) > question.max_length:
            raise InvalidAnswer("too_long", question.max_length)
        _save_answer(
            conn,
            row[0],
            question,
            position,
            "answered",
            now_ts=ts(now),
            text=cleaned,
            source=source,
        )
        return _advance(conn, spec, row, reward_expires_at=reward_expires_at, actor=actor, now=now)


def skip(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    *,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime | None = None,
) -> Progress:
    """Skip an optional question and move on. Raises what `choose` raises;
    InvalidAnswer('required') for a required question."""
    now = required_now(now)
    with atomic(conn):
        row, question = _current(conn, spec, member_id, position, now)
        if question.required:
            raise InvalidAnswer("required")
        _save_answer(conn, row[0], question, position, "skipped", now_ts=ts(now))
        return _advance(conn, spec, row, reward_expires_at=reward_expires_at, actor=actor, now=now)


def keep(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    *,
    reward_expires_at: datetime | None,
    actor: str,
    now: datetime | None = None,
) -> Progress:
    """Keep the answer given before (after Back) and move on. Raises what `choose` raises;
    InvalidAnswer('nothing') when there is no finished answer to keep."""
    now = required_now(now)
    with atomic(conn):
        row, question = _current(conn, spec, member_id, position, now)
        given = _answers(conn, row[0]).get(question.id)
        if given is None or given.status == "draft":
            raise InvalidAnswer("nothing")
        return _advance(conn, spec, row, reward_expires_at=reward_expires_at, actor=actor, now=now)


def back(
    conn: sqlite3.Connection,
    spec: SurveySpec,
    member_id: int,
    position: int,
    *,
    now: datetime | None = None,
) -> Progress:
    """Go back to the previous question (its answer is kept until changed). Raises what
    `choose` raises; InvalidAnswer('first') on the first question."""
    now = required_now(now)
    with atomic(conn):
        row, _question = _current(conn, spec, member_id, position, now)
        if position == 0:
            raise InvalidAnswer("first")
        conn.execute(
            "UPDATE survey_responses SET position = ?, updated_at = ? WHERE id = ?",
            (position - 1, ts(now), row[0]),
        )
        return _by_id(conn, row[0])


# --- results ---------------------------------------------------------------------------------


def survey_stats(conn: sqlite3.Connection, spec: SurveySpec) -> SurveyStats:
    """How the completed responses answered each question of the survey."""
    completed, in_progress, paid = conn.execute(
        "SELECT count(completed_at), count(*) - count(completed_at),"
        " coalesce(sum(reward_points), 0) FROM survey_responses WHERE survey_id = ?",
        (spec.id,),
    ).fetchone()
    done = (
        "FROM survey_answers AS a JOIN survey_responses AS r ON r.id = a.response_id"
        " WHERE r.survey_id = ? AND r.completed_at IS NOT NULL"
    )
    statuses: dict[str, dict[str, int]] = {}
    for question_id, status, count in conn.execute(
        f"SELECT a.question_id, a.status, count(*) {done} GROUP BY 1, 2",  # noqa: S608
        (spec.id,),
    ):
        statuses.setdefault(question_id, {})[status] = int(count)
    options: dict[str, dict[str, int]] = {}
    for question_id, option, count in conn.execute(
        "SELECT a.question_id, j.value, count(*)"
        " FROM survey_answers AS a JOIN survey_responses AS r ON r.id = a.response_id,"
        " json_each(a.choices) AS j"
        " WHERE r.survey_id = ? AND r.completed_at IS NOT NULL AND a.status = 'answered'"
        " GROUP BY 1, 2",
        (spec.id,),
    ):
        options.setdefault(question_id, {})[str(option)] = int(count)
    ratings: dict[str, dict[int, int]] = {}
    for question_id, stars, count in conn.execute(
        f"SELECT a.question_id, a.rating, count(*) {done}"  # noqa: S608
        " AND a.rating IS NOT NULL GROUP BY 1, 2",
        (spec.id,),
    ):
        ratings.setdefault(question_id, {})[int(stars)] = int(count)
    questions = []
    for question in spec.questions:
        samples: tuple[str, ...] = ()
        if question.kind == "text":
            samples = tuple(
                r[0]
                for r in conn.execute(
                    f"SELECT a.text {done} AND a.question_id = ? AND a.text IS NOT NULL"  # noqa: S608
                    " ORDER BY r.completed_at DESC, r.id DESC LIMIT ?",
                    (spec.id, question.id, TEXT_SAMPLES),
                )
            )
        counts = statuses.get(question.id, {})
        questions.append(
            QuestionStats(
                question_id=question.id,
                answered=counts.get("answered", 0),
                skipped=counts.get("skipped", 0),
                option_counts=options.get(question.id, {}),
                rating_counts=dict(sorted(ratings.get(question.id, {}).items())),
                text_samples=samples,
            )
        )
    return SurveyStats(spec.id, int(completed), int(in_progress), int(paid), tuple(questions))


def iter_response_answers(
    conn: sqlite3.Connection, survey_id: str, *, include_unfinished: bool = False
) -> Iterator[ResponseAnswer]:
    """Every answer of the survey's completed (and with `include_unfinished`, unfinished)
    responses, by response then question."""
    cur = conn.execute(
        "SELECT r.id, m.member_code, r.started_at, r.completed_at, r.reward_points, a.position,"
        " a.question_id, a.kind, a.status, a.choices, a.rating, a.text"
        " FROM survey_responses AS r JOIN members AS m ON m.id = r.member_id"
        " JOIN survey_answers AS a ON a.response_id = r.id"
        " WHERE r.survey_id = ? AND (r.completed_at IS NOT NULL OR ? = 1)"
        " ORDER BY r.id, a.position",
        (survey_id, int(include_unfinished)),
    )
    for row in cur:
        yield ResponseAnswer(
            response_id=row[0],
            member_code=row[1],
            started_at=dt(row[2]),
            completed_at=dt_or_none(row[3]),
            reward_points=row[4],
            position=row[5],
            question_id=row[6],
            kind=row[7],
            status=row[8],
            choices=None if row[9] is None else tuple(json.loads(row[9])),
            rating=row[10],
            text=row[11],
        )


def survey_ids_with_responses(conn: sqlite3.Connection) -> list[str]:
    """Surveys anyone has answered (also ones since removed from the configuration)."""
    return [
        r[0] for r in conn.execute("SELECT DISTINCT survey_id FROM survey_responses ORDER BY 1")
    ]


# --- the async facade ----------------------------------------------------------------------


class Surveys(Facade):
    """Surveys and suggestions over a `Store`: every write is one transaction (one hop)."""

    # Each runs the sync function of the same name (`stats`: survey_stats).
    progress = looks_up(progress)
    responses = looks_up(responses)
    active_response = looks_up(active_response)
    start = writes(start)
    choose = writes(choose)
    toggle = writes(toggle)
    confirm_choices = writes(confirm_choices)
    rate = writes(rate)
    write_text = writes(write_text)
    skip = writes(skip)
    keep = writes(keep)
    back = writes(back)
    stats = reads(survey_stats)
    # Suggestions (storage.feedback), served here as the handlers have always reached them.
    submit_feedback = writes(feedback.submit_feedback)
    feedback_count = looks_up(feedback.feedback_count)
    pending_feedback = reads(feedback.pending_feedback)
    feedback_item = looks_up(feedback.feedback_item)
    review_feedback = writes(feedback.review_feedback)
