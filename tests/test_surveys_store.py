"""storage.surveys: answering one question at a time, one completion and one reward, and the
audit that ties responses to the ledger."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import ledger
from storage.audit import audit
from storage.errors import (
    AlreadyCompleted,
    InvalidAnswer,
    NotFound,
    StaleQuestion,
    SurveyChanged,
    SurveyClosed,
)
from storage.members import Member, Profile, register_member
from storage.surveys import (
    QuestionSpec,
    Surveys,
    SurveySpec,
    back,
    choose,
    confirm_choices,
    iter_response_answers,
    keep,
    progress,
    rate,
    skip,
    start,
    survey_stats,
    toggle,
    write_text,
)
from tests.postgres import ENGINES, migrated_connection, opened_store

T0 = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=365)
QUESTIONS = (
    QuestionSpec("use", "single", options=("goods", "vouchers", "bill")),
    QuestionSpec("wanted", "multiple", options=("double", "delivery", "shops"), max_choices=2),
    QuestionSpec("ease", "rating"),
    QuestionSpec("ideas", "text", required=False, max_length=20),
)
SPEC = SurveySpec(
    id="benefits",
    reward_points=50,
    opens_at=T0 - timedelta(days=1),
    closes_at=T0 + timedelta(days=30),
    questions=QUESTIONS,
)
REWARD = {"reward_expires_at": EXPIRES, "actor": "telegram:1", "now": T0}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn: every test runs on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def fresh(engine: str, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A new database (tests that tamper with it to prove the audit notices use this)."""
    with migrated_connection(engine, tmp_path) as connection:
        yield connection


@pytest.fixture
def conn(fresh: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A new database that must pass the audit after the test."""
    yield fresh
    report = audit(fresh, integrity="quick")
    assert report.ok, str(report)


@pytest.fixture
def alice(fresh: sqlite3.Connection) -> Member:
    return register_member(fresh, Profile(1, "Alice"), None, T0)[0]


def balance(conn: sqlite3.Connection, member: Member) -> int:
    return ledger.balance(conn, member.id, T0).available


def answer_all(conn: sqlite3.Connection, member: Member) -> None:
    start(conn, SPEC, member.id, now=T0)
    choose(conn, SPEC, member.id, 0, "bill", **REWARD)
    toggle(conn, SPEC, member.id, 1, "shops", now=T0)
    toggle(conn, SPEC, member.id, 1, "double", now=T0)
    confirm_choices(conn, SPEC, member.id, 1, **REWARD)
    rate(conn, SPEC, member.id, 2, 4, **REWARD)
    write_text(conn, SPEC, member.id, 3, "  more shops  ", **REWARD)


def test_a_full_response_pays_once_with_the_last_answer(
    conn: sqlite3.Connection, alice: Member
) -> None:
    opened = start(conn, SPEC, alice.id, now=T0)
    assert (opened.position, opened.questions, opened.completed) == (0, 4, False)
    after_first = choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    assert after_first.position == 1 and after_first.answers["use"].choices == ("bill",)
    toggle(conn, SPEC, alice.id, 1, "shops", now=T0)
    ticked = toggle(conn, SPEC, alice.id, 1, "double", now=T0)
    # Ticks are kept in the question's order and as a draft until Done.
    assert ticked.answers["wanted"].choices == ("double", "shops")
    assert ticked.answers["wanted"].status == "draft" and ticked.position == 1
    confirm_choices(conn, SPEC, alice.id, 1, **REWARD)
    rate(conn, SPEC, alice.id, 2, 4, **REWARD)
    assert balance(conn, alice) == 0  # nothing is paid before the last answer
    done = write_text(conn, SPEC, alice.id, 3, "  more shops  ", **REWARD)
    assert done.completed and done.position == 4 and done.reward_points == 50
    assert done.answers["ideas"].text == "more shops"
    assert balance(conn, alice) == 50
    record = ledger.operation(conn, done.reward_operation_id or 0)
    assert (record.kind, record.key, record.reference) == (
        "survey",
        f"survey:{alice.id}:benefits",
        "benefits",
    )
    assert ledger.lots(conn, alice.id)[0].expires_at == EXPIRES
    # Completing again, by any road, pays nothing more.
    with pytest.raises(AlreadyCompleted):
        start(conn, SPEC, alice.id, now=T0)
    with pytest.raises(AlreadyCompleted):
        write_text(conn, SPEC, alice.id, 3, "again", **REWARD)
    assert balance(conn, alice) == 50


def test_a_stale_position_answers_nothing(conn: sqlite3.Connection, alice: Member) -> None:
    start(conn, SPEC, alice.id, now=T0)
    choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    # A double tap on the first question's button: it is no longer the question asked.
    with pytest.raises(StaleQuestion) as caught:
        choose(conn, SPEC, alice.id, 0, "goods", **REWARD)
    assert caught.value.position == 1
    assert progress(conn, "benefits", alice.id).answers["use"].choices == ("bill",)


@pytest.mark.parametrize(
    ("position", "act", "reason"),
    [
        (0, lambda c, m: choose(c, SPEC, m, 0, "cash", **REWARD), "option"),
        (0, lambda c, m: toggle(c, SPEC, m, 0, "bill", now=T0), "kind"),
        (0, lambda c, m: skip(c, SPEC, m, 0, **REWARD), "required"),
        (0, lambda c, m: back(c, SPEC, m, 0, now=T0), "first"),
        (0, lambda c, m: keep(c, SPEC, m, 0, **REWARD), "nothing"),
        (1, lambda c, m: confirm_choices(c, SPEC, m, 1, **REWARD), "required"),
        (2, lambda c, m: rate(c, SPEC, m, 2, 6, **REWARD), "rating"),
        (2, lambda c, m: rate(c, SPEC, m, 2, 0, **REWARD), "rating"),
        (3, lambda c, m: write_text(c, SPEC, m, 3, "x" * 21, **REWARD), "too_long"),
        (3, lambda c, m: write_text(c, SPEC, m, 3, "   ", **REWARD), "empty"),
    ],
)
def test_bad_answers_are_refused_and_change_nothing(
    conn: sqlite3.Connection, alice: Member, position: int, act: object, reason: str
) -> None:
    start(conn, SPEC, alice.id, now=T0)
    if position >= 1:
        choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    if position >= 2:
        toggle(conn, SPEC, alice.id, 1, "shops", now=T0)
        confirm_choices(conn, SPEC, alice.id, 1, **REWARD)
    if position >= 3:
        rate(conn, SPEC, alice.id, 2, 5, **REWARD)
    before = progress(conn, "benefits", alice.id)
    with pytest.raises(InvalidAnswer) as caught:
        act(conn, alice.id)
    assert caught.value.reason == reason
    assert progress(conn, "benefits", alice.id) == before


def test_too_many_ticks_are_refused(conn: sqlite3.Connection, alice: Member) -> None:
    start(conn, SPEC, alice.id, now=T0)
    choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    toggle(conn, SPEC, alice.id, 1, "double", now=T0)
    toggle(conn, SPEC, alice.id, 1, "delivery", now=T0)
    with pytest.raises(InvalidAnswer) as caught:
        toggle(conn, SPEC, alice.id, 1, "shops", now=T0)
    assert (caught.value.reason, caught.value.limit) == ("too_many", 2)
    # Unticking makes room.
    toggle(conn, SPEC, alice.id, 1, "double", now=T0)
    ticked = toggle(conn, SPEC, alice.id, 1, "shops", now=T0)
    assert ticked.answers["wanted"].choices == ("delivery", "shops")


def test_back_keeps_the_answer_until_it_is_changed(conn: sqlite3.Connection, alice: Member) -> None:
    start(conn, SPEC, alice.id, now=T0)
    choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    toggle(conn, SPEC, alice.id, 1, "shops", now=T0)
    confirm_choices(conn, SPEC, alice.id, 1, **REWARD)
    returned = back(conn, SPEC, alice.id, 2, now=T0)
    assert returned.position == 1 and returned.answers["wanted"].choices == ("shops",)
    kept = keep(conn, SPEC, alice.id, 1, **REWARD)
    assert kept.position == 2
    back(conn, SPEC, alice.id, 2, now=T0)
    back(conn, SPEC, alice.id, 1, now=T0)
    changed = choose(conn, SPEC, alice.id, 0, "goods", **REWARD)
    assert changed.position == 1 and changed.answers["use"].choices == ("goods",)


def test_skipping_an_optional_question_completes(conn: sqlite3.Connection, alice: Member) -> None:
    start(conn, SPEC, alice.id, now=T0)
    choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    toggle(conn, SPEC, alice.id, 1, "shops", now=T0)
    confirm_choices(conn, SPEC, alice.id, 1, **REWARD)
    rate(conn, SPEC, alice.id, 2, 3, **REWARD)
    done = skip(conn, SPEC, alice.id, 3, **REWARD)
    assert done.completed and done.answers["ideas"].status == "skipped"
    assert balance(conn, alice) == 50


@pytest.mark.parametrize(
    ("now", "reason"),
    [(SPEC.opens_at - timedelta(seconds=1), "not_open"), (SPEC.closes_at, "closed")],
)
def test_outside_the_window_nothing_is_answered(
    conn: sqlite3.Connection, alice: Member, now: datetime, reason: str
) -> None:
    with pytest.raises(SurveyClosed) as caught:
        start(conn, SPEC, alice.id, now=now)
    assert caught.value.reason == reason
    assert progress(conn, "benefits", alice.id) is None


def test_a_survey_that_closes_halfway_pays_nothing(conn: sqlite3.Connection, alice: Member) -> None:
    start(conn, SPEC, alice.id, now=T0)
    late = {**REWARD, "now": SPEC.closes_at + timedelta(minutes=1)}
    with pytest.raises(SurveyClosed):
        choose(conn, SPEC, alice.id, 0, "bill", **late)
    assert balance(conn, alice) == 0


def test_a_changed_survey_starts_over(conn: sqlite3.Connection, alice: Member) -> None:
    start(conn, SPEC, alice.id, now=T0)
    choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    changed = SurveySpec(
        id=SPEC.id,
        reward_points=SPEC.reward_points,
        opens_at=SPEC.opens_at,
        closes_at=SPEC.closes_at,
        questions=(QUESTIONS[0], QUESTIONS[2]),
    )
    with pytest.raises(SurveyChanged):
        rate(conn, changed, alice.id, 1, 4, **REWARD)
    again = start(conn, changed, alice.id, now=T0)
    assert again.restarted and again.position == 0 and again.answers == {}
    assert again.questions == 2


def test_a_forged_or_unknown_response(conn: sqlite3.Connection, alice: Member) -> None:
    with pytest.raises(NotFound):
        choose(conn, SPEC, alice.id, 0, "bill", **REWARD)
    with pytest.raises(NotFound):
        start(conn, SPEC, 999, now=T0)


def test_a_completed_response_is_final_in_the_database(
    conn: sqlite3.Connection, alice: Member
) -> None:
    answer_all(conn, alice)
    with pytest.raises(sqlite3.IntegrityError, match="final"):
        conn.execute("UPDATE survey_answers SET rating = 1 WHERE question_id = 'ease'")
    with pytest.raises(sqlite3.IntegrityError, match="final"):
        conn.execute("UPDATE survey_responses SET reward_points = 500")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        conn.execute("DELETE FROM survey_responses")


def test_stats_and_export_rows(conn: sqlite3.Connection, alice: Member) -> None:
    bob = register_member(conn, Profile(2, "Bob"), None, T0)[0]
    carol = register_member(conn, Profile(3, "Carol"), None, T0)[0]
    answer_all(conn, alice)
    start(conn, SPEC, bob.id, now=T0)
    choose(conn, SPEC, bob.id, 0, "goods", **REWARD)
    toggle(conn, SPEC, bob.id, 1, "shops", now=T0)
    confirm_choices(conn, SPEC, bob.id, 1, **REWARD)
    rate(conn, SPEC, bob.id, 2, 5, **REWARD)
    skip(conn, SPEC, bob.id, 3, **REWARD)
    start(conn, SPEC, carol.id, now=T0)  # unfinished: not counted
    choose(conn, SPEC, carol.id, 0, "goods", **REWARD)
    stats = survey_stats(conn, SPEC)
    assert (stats.completed, stats.in_progress, stats.points_paid) == (2, 1, 100)
    use, wanted, ease, ideas = stats.questions
    assert use.option_counts == {"bill": 1, "goods": 1} and use.answered == 2
    assert wanted.option_counts == {"double": 1, "shops": 2}
    assert ease.rating_counts == {4: 1, 5: 1} and ease.average_rating == 4.5
    assert (ideas.answered, ideas.skipped, ideas.text_samples) == (1, 1, ("more shops",))
    rows = list(iter_response_answers(conn, "benefits"))
    assert len(rows) == 8 and {r.member_code for r in rows} == {alice.member_code, bob.member_code}
    assert [r.position for r in rows[:4]] == [0, 1, 2, 3]
    everything = list(iter_response_answers(conn, "benefits", include_unfinished=True))
    assert len(everything) == 9


# --- the audit -------------------------------------------------------------------------------


def test_the_audit_finds_a_reward_without_its_response(
    fresh: sqlite3.Connection, alice: Member
) -> None:
    answer_all(fresh, alice)
    for key in ("survey:1:phantom", "feedback:77"):
        ledger.earn(fresh, alice.id, 5, kind="survey", key=key, actor="x", expires_at=None, now=T0)
    checks = {v.check for v in audit(fresh, integrity="none").violations}
    assert checks == {"survey_operation_has_response", "feedback_operation_has_suggestion"}


def test_the_audit_finds_a_completion_without_answers(
    fresh: sqlite3.Connection, alice: Member
) -> None:
    start(fresh, SPEC, alice.id, now=T0)
    fresh.execute(
        "UPDATE survey_responses SET position = questions, completed_at = 1 WHERE member_id = ?",
        (alice.id,),
    )
    checks = {v.check for v in audit(fresh, integrity="none").violations}
    assert checks == {"survey_answers_complete"}


async def test_the_async_facade_writes_one_transaction_per_answer(
    tmp_path: Path, engine: str
) -> None:
    async with opened_store(engine, tmp_path, synchronous="NORMAL") as store:
        member = await store.write(lambda c: register_member(c, Profile(5, "Dora"), None, T0)[0])
        surveys = Surveys(store)
        assert await surveys.active_response(member.id) is None
        await surveys.start(SPEC, member.id, now=T0)
        await surveys.choose(SPEC, member.id, 0, "bill", **REWARD)
        await surveys.toggle(SPEC, member.id, 1, "double", now=T0)
        await surveys.confirm_choices(SPEC, member.id, 1, **REWARD)
        await surveys.rate(SPEC, member.id, 2, 2, **REWARD)
        active = await surveys.active_response(member.id)
        assert active is not None and active.position == 3
        done = await surveys.write_text(SPEC, member.id, 3, "ok", source="tg:5:1", **REWARD)
        assert done.completed
        # The same message delivered again answers nothing and pays nothing.
        again = await surveys.write_text(SPEC, member.id, 3, "ok", source="tg:5:1", **REWARD)
        assert again.replayed and again.reward_operation_id == done.reward_operation_id
        assert await surveys.active_response(member.id) is None
        assert (await surveys.stats(SPEC)).completed == 1
        report = await store.read(lambda c: audit(c, integrity="quick"))
        assert report.ok, str(report)
