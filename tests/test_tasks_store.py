"""Task rewards against the ledger: the audit finds a reward paid without its completion, to
the wrong completion or by the wrong kind of operation; a survey task moves in the transaction
that completes its survey; `pointsbot export-tasks` writes every member's progress and
completions with the reward each paid."""

from __future__ import annotations

import csv
import dataclasses
import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import Config, load_config
from bot.export import TASK_COLUMNS
from bot.programme.tasks import advance_task, survey_completion_effects
from storage import ledger
from storage.audit import audit
from storage.members import Member, Profile, register_member
from storage.sql import engine, ts
from storage.store import connect_sync, migrate
from storage.surveys import QuestionSpec, SurveySpec, progress, rate, start
from storage.tasks import progress_of
from tests.conftest import SAMPLE
from tests.postgres import ENGINES, migrated_connection

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # noon in Shanghai
CONFIG = load_config(SAMPLE)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tasks.sqlite3"


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


@pytest.fixture
def file_conn(db: Path) -> Iterator[sqlite3.Connection]:
    """A SQLite file the CLI opens through a config."""
    connection = connect_sync(db, synchronous="NORMAL")
    migrate(connection)
    yield connection
    connection.close()


@pytest.fixture
def ann(conn: sqlite3.Connection) -> Member:
    return register_member(conn, Profile(1, "ann"), None, NOW)[0]


def complete(conn: sqlite3.Connection, who: Member, task_id: str, now: datetime = NOW) -> None:
    task = CONFIG.task(task_id)
    assert task is not None
    advance_task(conn, task, who.id, task.target, CONFIG, now, actor="test")


def checks(conn: sqlite3.Connection) -> set[str]:
    return {v.check for v in audit(conn, integrity="none").violations}


def test_completions_made_the_ordinary_way_pass(conn: sqlite3.Connection, ann: Member) -> None:
    complete(conn, ann, "eco_monthly")
    complete(conn, ann, "green_share")  # the share bonus, from its own source
    complete(conn, ann, "benefits_survey")  # a badge only: no operation
    report = audit(conn, integrity="none")
    assert report.ok, str(report)
    assert report.summary["task_completions"] == 3


def test_a_task_reward_without_its_completion_is_caught(
    conn: sqlite3.Connection, ann: Member
) -> None:
    # Points booked under a task key, but no completion row names the operation.
    ledger.earn(
        conn,
        ann.id,
        30,
        kind="task",
        key="task:eco_monthly:1:2026-11",
        actor="forged",
        expires_at=None,
        now=NOW,
    )
    assert checks(conn) == {"task_operation_has_completion"}


def test_a_second_payment_for_one_completion_is_caught(
    conn: sqlite3.Connection, ann: Member
) -> None:
    complete(conn, ann, "green_share")
    # The same day's share paid again under another key, as the share bonus.
    ledger.earn(
        conn,
        ann.id,
        20,
        kind="share_bonus",
        key="share:again",
        actor="forged",
        expires_at=None,
        now=NOW,
    )
    assert checks(conn) == {"task_operation_has_completion"}


def test_a_completion_pointing_at_another_periods_reward_is_caught(
    conn: sqlite3.Connection, ann: Member
) -> None:
    complete(conn, ann, "eco_monthly")
    [operation] = conn.execute("SELECT reward_operation_id FROM task_progress").fetchone()
    # A forged row for December claims November's payment (the row it copies is moved away).
    on_table = " ON task_progress" if engine(conn) == "postgres" else ""  # PostgreSQL names it
    conn.execute(f"DROP TRIGGER task_progress_no_delete{on_table}")
    conn.execute("DELETE FROM task_progress")
    conn.execute(
        "INSERT INTO task_progress (member_id, task_id, period, progress, target, completed_at,"
        " reward_operation_id, updated_at) VALUES (?, 'eco_monthly', '2026-12', 3, 3, ?, ?, ?)",
        (ann.id, ts(NOW), operation, ts(NOW)),
    )
    found = checks(conn)
    assert "task_reward" in found and "triggers" in found  # and the missing trigger


def test_a_completion_paid_by_a_purchase_operation_is_caught(
    conn: sqlite3.Connection, ann: Member
) -> None:
    purchase = ledger.earn(
        conn, ann.id, 30, kind="purchase", key="till:1", actor="till", expires_at=None, now=NOW
    ).operation_id
    conn.execute(
        "INSERT INTO task_progress (member_id, task_id, period, progress, target, completed_at,"
        " reward_operation_id, updated_at) VALUES (?, 'eco_monthly', '2026-11', 3, 3, ?, ?, ?)",
        (ann.id, ts(NOW), purchase, ts(NOW)),
    )
    assert checks(conn) == {"task_reward"}


# SQLite only: the CLI opens the database a config file names (a SQLite path).
def test_export_tasks_writes_progress_and_completions(
    tmp_path: Path, file_conn: sqlite3.Connection, db: Path
) -> None:
    conn = file_conn
    ann = register_member(conn, Profile(1, "ann"), None, NOW)[0]
    bob = register_member(conn, Profile(2, "bob"), None, NOW)[0]
    complete(conn, ann, "eco_monthly")
    task = CONFIG.task("spend_monthly")
    assert task is not None
    advance_task(conn, task, bob.id, 120, CONFIG, NOW + timedelta(hours=1), actor="test")
    complete(conn, bob, "benefits_survey")
    config_file = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    config_file.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    result = CliRunner().invoke(main, ["export-tasks", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == TASK_COLUMNS
    [survey, monthly, spend] = rows
    assert monthly == {
        "member_code": ann.member_code,
        "task": "eco_monthly",
        "period": "2026-11",
        "progress": "3",
        "target": "3",
        # Local time (Shanghai).
        "completed_at": "2026-11-25T12:00:00+08:00",
        "reward_operation_id": monthly["reward_operation_id"],
        "reward_points": "30",
        "updated_at": "2026-11-25T12:00:00+08:00",
    }
    assert monthly["reward_operation_id"].isdigit()
    assert (spend["member_code"], spend["progress"], spend["target"]) == (
        bob.member_code,
        "120",
        "300",
    )
    assert spend["completed_at"] == spend["reward_operation_id"] == spend["reward_points"] == ""
    assert (survey["task"], survey["period"], survey["reward_points"]) == (
        "benefits_survey",
        "once",
        "",
    )
    assert survey["completed_at"] == "2026-11-25T12:00:00+08:00"
    out = tmp_path / "tasks.csv"
    args = ["export-tasks", "--config", str(config_file), "-o", str(out), "--task", "spend_monthly"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "1 task rows" in result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def one_question_survey(config: Config) -> SurveySpec:
    """The survey the sample's survey task names, cut to one rating question."""
    return SurveySpec(
        id="benefits_2026",
        reward_points=5,
        opens_at=NOW - timedelta(days=1),
        closes_at=NOW + timedelta(days=1),
        questions=(QuestionSpec("ease", "rating"),),
        on_complete=survey_completion_effects("benefits_2026", config),
    )


def test_the_survey_task_completes_with_the_survey(conn: sqlite3.Connection, ann: Member) -> None:
    spec = one_question_survey(CONFIG)
    start(conn, spec, ann.id, now=NOW)
    done = rate(conn, spec, ann.id, 0, 4, reward_expires_at=None, actor="member:1", now=NOW)
    assert done.completed
    step = progress_of(conn, ann.id, [("benefits_survey", "once")])[("benefits_survey", "once")]
    assert step.completed and step.reward_operation_id is None
    assert audit(conn, integrity="none").ok


def test_a_failing_task_move_undoes_the_survey_completion(
    conn: sqlite3.Connection, ann: Member
) -> None:
    def broken(conn: sqlite3.Connection, member_id: int, actor: str, now: datetime) -> None:
        raise RuntimeError("the task could not move")

    spec = dataclasses.replace(one_question_survey(CONFIG), on_complete=broken)
    start(conn, spec, ann.id, now=NOW)
    with pytest.raises(RuntimeError):
        rate(conn, spec, ann.id, 0, 4, reward_expires_at=None, actor="member:1", now=NOW)
    # One transaction: neither the completion nor its reward was kept.
    response = progress(conn, "benefits_2026", ann.id)
    assert response is not None and not response.completed
    assert conn.execute("SELECT count(*) FROM operations").fetchone()[0] == 0


def test_a_survey_task_outside_its_window_does_not_move(
    conn: sqlite3.Connection, ann: Member
) -> None:
    task = CONFIG.task("benefits_survey")
    assert task is not None
    ended = task.model_copy(update={"ends": date(2026, 11, 1)})
    config = CONFIG.model_copy(
        update={"tasks": [ended if t.id == task.id else t for t in CONFIG.tasks]}
    )
    spec = one_question_survey(config)
    start(conn, spec, ann.id, now=NOW)
    assert rate(conn, spec, ann.id, 0, 4, reward_expires_at=None, actor="m", now=NOW).completed
    assert progress_of(conn, ann.id, [("benefits_survey", "once")]) == {}
    # A survey no task names has no hook at all.
    assert survey_completion_effects("satisfaction_2026h2", CONFIG) is None
