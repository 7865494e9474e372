"""The operators' CSV export of survey answers (the survey rules are in
bot/programme/surveys.py)."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Sequence
from typing import Final, TextIO

from bot.config import Config, SurveyQuestion
from storage.surveys import ResponseAnswer, iter_response_answers

EXPORT_COLUMNS: Final = (
    "response_id",
    "member_code",
    "started_at",
    "completed_at",
    "reward_points",
    "question_no",
    "question_id",
    "kind",
    "question",
    "status",
    "answer",
    "answer_label",
)
# A spreadsheet runs a cell starting with one of these as a formula: members' text is data.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def option_label(question: SurveyQuestion | None, option_id: str, language: str) -> str:
    """An option's label in `language` (its id if the option left the configuration)."""
    option = (
        None if question is None else next((o for o in question.options if o.id == option_id), None)
    )
    return option_id if option is None else option.label.get(language)


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _answer_cells(
    row: ResponseAnswer, question: SurveyQuestion | None, language: str
) -> tuple[str, str]:
    """(machine value, readable value) of one answer."""
    if row.status == "skipped":
        return "", ""
    if row.choices is not None:
        labels = [option_label(question, option, language) for option in row.choices]
        return ";".join(row.choices), _cell("; ".join(labels))
    if row.rating is not None:
        return str(row.rating), str(row.rating)
    text = _cell(row.text or "")
    return text, text


def write_survey_csv(
    conn: sqlite3.Connection,
    out: TextIO,
    survey_id: str,
    config: Config,
    *,
    include_unfinished: bool = False,
) -> int:
    """Write one row per response and question (completed responses; with
    `include_unfinished`, the answers given so far too); return how many responses."""
    tz = config.program.tz
    language = config.program.default_language
    survey = config.survey(survey_id)
    questions = {} if survey is None else {q.id: q for q in survey.questions}
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    seen: set[int] = set()
    for row in iter_response_answers(conn, survey_id, include_unfinished=include_unfinished):
        seen.add(row.response_id)
        question = questions.get(row.question_id)
        answer, label = _answer_cells(row, question, language)
        writer.writerow(
            (
                row.response_id,
                row.member_code,
                row.started_at.astimezone(tz).isoformat(),
                "" if row.completed_at is None else row.completed_at.astimezone(tz).isoformat(),
                row.reward_points,
                row.position + 1,
                row.question_id,
                row.kind,
                "" if question is None else _cell(question.text.get(language)),
                row.status,
                answer,
                label,
            )
        )
    return len(seen)


def known_survey_ids(config: Config, answered: Sequence[str]) -> list[str]:
    """Survey ids an operator may ask about: the configured ones and any answered before."""
    ids = [s.id for s in config.surveys]
    return ids + [i for i in answered if i not in ids]
