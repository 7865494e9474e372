"""[[surveys]] and [feedback] in the configuration: the sample is valid, mistakes name the key."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, load_config, parse_config
from bot.programme.surveys import open_surveys, survey_spec

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
RAW: dict[str, Any] = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
SHANGHAI_MIDNIGHT = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)


def test_the_sample_has_a_benefits_and_a_satisfaction_survey() -> None:
    config = load_config(SAMPLE)
    benefits, satisfaction = config.surveys
    assert benefits.title.zh_CN == "积分权益问卷" and benefits.reward_points == 50
    assert [q.kind for q in benefits.questions] == ["single", "multiple", "rating", "text"]
    assert satisfaction.reward_points == 20
    assert config.feedback.reward_points == 20 and config.feedback.daily_limit == 3
    tz = config.program.tz
    # A local date opens at its first moment and closes after its last.
    assert benefits.opens_at(tz) == SHANGHAI_MIDNIGHT
    assert benefits.closes_at(tz) == datetime(2027, 12, 31, 16, 0, tzinfo=UTC)
    # A time with an offset is taken as it is.
    assert satisfaction.opens_at(tz) == datetime(2026, 7, 1, 1, 0, tzinfo=UTC)


def test_open_surveys_follow_the_window() -> None:
    config = load_config(SAMPLE)
    assert open_surveys(config, SHANGHAI_MIDNIGHT) == [config.surveys[0]]
    assert open_surveys(config, datetime(2025, 12, 31, 15, 59, 59, tzinfo=UTC)) == []
    assert [s.id for s in open_surveys(config, datetime(2026, 7, 1, 1, 0, tzinfo=UTC))] == [
        "benefits_2026",
        "satisfaction_2026h2",
    ]
    assert open_surveys(config, datetime(2028, 1, 1, tzinfo=UTC)) == []


def test_the_store_sees_option_ids_and_limits() -> None:
    config = load_config(SAMPLE)
    spec = survey_spec(config.surveys[0], config)
    assert spec.reward_points == 50
    assert spec.questions[0].options == ("goods", "vouchers", "bill", "games")
    assert spec.questions[1].max_choices == 3
    assert spec.questions[3].max_length == 300 and not spec.questions[3].required
    # The definition is a stable hash of the questions only.
    assert spec.definition == survey_spec(config.surveys[0], config).definition
    richer = config.surveys[0].model_copy(update={"reward_points": 80})
    assert survey_spec(richer, config).definition == spec.definition


def _survey(raw: dict[str, Any]) -> dict[str, Any]:
    survey: dict[str, Any] = raw["surveys"][0]
    return survey


def _question(raw: dict[str, Any], index: int = 0) -> dict[str, Any]:
    question: dict[str, Any] = _survey(raw)["questions"][index]
    return question


def _set(
    path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: object
) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        path(raw)[key] = value

    return change


def _drop_options(raw: dict[str, Any]) -> None:
    _question(raw)["options"] = _question(raw)["options"][:1]


def _duplicate_question(raw: dict[str, Any]) -> None:
    _question(raw, 1)["id"] = _question(raw, 0)["id"]


def _duplicate_survey(raw: dict[str, Any]) -> None:
    raw["surveys"][1]["id"] = raw["surveys"][0]["id"]


def _options_on_rating(raw: dict[str, Any]) -> None:
    _question(raw, 2)["options"] = _question(raw, 0)["options"]


def _duplicate_option(raw: dict[str, Any]) -> None:
    _question(raw)["options"][1]["id"] = _question(raw)["options"][0]["id"]


def _long_label(raw: dict[str, Any]) -> None:
    _question(raw)["options"][0]["label"]["en"] = "x" * 41


def _no_questions(raw: dict[str, Any]) -> None:
    _survey(raw)["questions"] = []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set(_survey, "id", "Benefits!"), "[surveys[1].id] String should match pattern"),
        (_set(_survey, "reward_points", -5), "[surveys[1].reward_points] Input should be greater"),
        (_set(_survey, "reward_points", 2.5), "[surveys[1].reward_points] Input should be a valid"),
        (_set(_survey, "opens", "soon"), "[surveys[1].opens"),
        (
            _set(_survey, "opens", datetime(2026, 1, 1, 9, 0)),
            "survey 'benefits_2026': give opens as a date or a time with an offset",
        ),
        (
            _set(_survey, "closes", datetime(2025, 6, 1, tzinfo=UTC)),
            "survey 'benefits_2026' closes before it opens",
        ),
        (_no_questions, "[surveys[1].questions] List should have at least 1 item"),
        (_set(_question, "kind", "slider"), "[surveys[1].questions[1].kind] Input should be"),
        (_drop_options, "question 'favourite': a choice question has 2 to 10 options, not 1"),
        (_options_on_rating, "question 'ease': only a choice question has options"),
        (_duplicate_option, "question 'favourite': duplicate option goods"),
        (_long_label, "option 'goods': a label fits on a button (at most 40 characters)"),
        (_duplicate_question, "survey 'benefits_2026': duplicate question favourite"),
        (_duplicate_survey, "surveys: duplicate id benefits_2026"),
        (
            lambda raw: _question(raw, 1).__setitem__("max_choices", 6),
            "question 'wanted': max_choices (6) is more than the 5 options",
        ),
        (
            lambda raw: _question(raw, 0).__setitem__("max_choices", 2),
            "question 'favourite': max_choices is for multiple choice",
        ),
        (
            lambda raw: _question(raw, 3).__setitem__("max_length", 5000),
            "[surveys[1].questions[4].max_length] Input should be less than or equal to 2000",
        ),
        (
            lambda raw: _question(raw, 3).__setitem__("hint", "x"),
            "[surveys[1].questions[4].hint] is not a known setting",
        ),
        (
            lambda raw: raw["feedback"].__setitem__("daily_limit", 0),
            "[feedback.daily_limit] Input should be greater than or equal to 1",
        ),
        (
            lambda raw: raw["feedback"].update(min_length=100, max_length=50),
            "max_length (50) is below min_length (100)",
        ),
    ],
)
def test_survey_mistakes_name_the_key(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    raw = copy.deepcopy(RAW)
    change(raw)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "config.toml")
    assert message in str(caught.value)


def test_no_surveys_and_no_feedback_section_is_fine() -> None:
    raw = copy.deepcopy(RAW)
    del raw["surveys"], raw["feedback"]
    # Without surveys, no task can ask for one (nor a badge or set build on such a task).
    survey_tasks = {t["id"] for t in raw["tasks"] if t["kind"] == "survey"}
    raw["tasks"] = [t for t in raw["tasks"] if t["id"] not in survey_tasks]
    dropped = {b["id"] for b in raw["badges"] if b.get("task") in survey_tasks}
    raw["badges"] = [b for b in raw["badges"] if b["id"] not in dropped]
    raw["badge_sets"] = [s for s in raw["badge_sets"] if not dropped & set(s["badges"])]
    config = parse_config(raw)
    assert config.surveys == [] and config.feedback.enabled
