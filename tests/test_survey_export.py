"""`pointsbot export-survey`: one CSV row per response and question, for operators' analysis."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import load_config
from bot.programme.surveys import survey_spec
from bot.surveys import EXPORT_COLUMNS
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate
from storage.surveys import choose, confirm_choices, rate, skip, start, toggle, write_text

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # noon in Shanghai
SPEC = survey_spec(load_config(SAMPLE).surveys[0], load_config(SAMPLE))
PAY = {"reward_expires_at": T0 + timedelta(days=365), "actor": "telegram:1", "now": T0}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "points.sqlite3"


@pytest.fixture
def config_file(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    path.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    return path


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    connection = connect_sync(db)
    migrate(connection)
    yield connection
    connection.close()


@pytest.fixture
def codes(conn: sqlite3.Connection) -> dict[str, str]:
    """Alice completes the benefits survey, Bob skips the last question, Carol stops halfway."""
    alice = register_member(conn, Profile(1, "alice"), None, T0)[0]
    bob = register_member(conn, Profile(2, "bob"), None, T0)[0]
    carol = register_member(conn, Profile(3, "carol"), None, T0)[0]
    for who, text in ((alice, '=HYPERLINK("x")'), (bob, None)):
        start(conn, SPEC, who.id, now=T0)
        choose(conn, SPEC, who.id, 0, "bill", **PAY)
        toggle(conn, SPEC, who.id, 1, "recycling", now=T0)
        toggle(conn, SPEC, who.id, 1, "double_days", now=T0)
        confirm_choices(conn, SPEC, who.id, 1, **PAY)
        rate(conn, SPEC, who.id, 2, 5, **PAY)
        if text is None:
            skip(conn, SPEC, who.id, 3, **PAY)
        else:
            write_text(conn, SPEC, who.id, 3, text, **PAY)
    start(conn, SPEC, carol.id, now=T0)
    choose(conn, SPEC, carol.id, 0, "goods", **PAY)
    return {"alice": alice.member_code, "bob": bob.member_code, "carol": carol.member_code}


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_one_row_per_response_and_question(
    config_file: Path, tmp_path: Path, codes: dict[str, str]
) -> None:
    out = tmp_path / "benefits.csv"
    result = CliRunner().invoke(
        main, ["export-survey", "benefits_2026", "--config", str(config_file), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"{out}: 2 responses" in result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM, so spreadsheets read the Chinese
    rows = rows_of(raw.decode("utf-8-sig"))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert len(rows) == 8 and {r["member_code"] for r in rows} == {codes["alice"], codes["bob"]}
    first = rows[:4]
    assert [r["question_id"] for r in first] == ["favourite", "wanted", "ease", "ideas"]
    assert [r["question_no"] for r in first] == ["1", "2", "3", "4"]
    assert first[0]["question"] == "您最常用积分做什么？"
    assert (first[0]["answer"], first[0]["answer_label"]) == ("bill", "积分抵现")
    # Ticks in the question's order, ids for machines and labels for people.
    assert (first[1]["answer"], first[1]["answer_label"]) == (
        "double_days;recycling",
        "会员积分翻倍日; 旧物回收换积分",
    )
    assert (first[2]["kind"], first[2]["answer"]) == ("rating", "5")
    # A member's text is data: a spreadsheet must not run it as a formula.
    assert first[3]["answer"] == '\'=HYPERLINK("x")'
    assert first[0]["completed_at"] == "2026-11-25T12:00:00+08:00"
    assert first[0]["reward_points"] == "50"
    skipped = rows[7]
    assert (skipped["status"], skipped["answer"]) == ("skipped", "")


def test_unfinished_responses_on_request(config_file: Path, codes: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["export-survey", "benefits_2026", "--config", str(config_file)]
    )
    assert result.exit_code == 0
    assert codes["carol"] not in result.output
    result = CliRunner().invoke(
        main,
        ["export-survey", "benefits_2026", "--config", str(config_file), "--include-unfinished"],
    )
    rows = rows_of(result.output)
    carol = [r for r in rows if r["member_code"] == codes["carol"]]
    assert len(carol) == 1 and carol[0]["completed_at"] == "" and carol[0]["answer"] == "goods"


def test_a_survey_nobody_answered_gives_the_header_only(
    config_file: Path, codes: dict[str, str]
) -> None:
    result = CliRunner().invoke(
        main, ["export-survey", "satisfaction_2026h2", "--config", str(config_file)]
    )
    assert result.exit_code == 0
    assert result.output.strip() == ",".join(EXPORT_COLUMNS)


def test_an_unknown_survey_is_an_error(config_file: Path, conn: sqlite3.Connection) -> None:
    result = CliRunner().invoke(main, ["export-survey", "nope", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "error: no survey 'nope' (surveys: benefits_2026, satisfaction_2026h2)" in result.output


def test_no_database_is_an_error(config_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["export-survey", "benefits_2026", "--config", str(config_file)]
    )
    assert result.exit_code == 2
    assert "no database" in result.output
