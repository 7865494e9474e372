"""What /tasks is built from: each open task's period, deadline (local days, ISO weeks, month
ends, the task's own end), progress, reward and when a completed one starts again."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bot.config import Config, Task, load_config
from bot.i18n import I18n
from bot.programme.calendar import local_today
from bot.programme.tasks import (
    listed_tasks,
    next_period_start,
    period_days,
    period_of,
    task_deadline,
    task_standings,
)
from handlers.common import Texts
from handlers.tasks import progress_bar, render_tasks
from storage.tasks import TaskStep
from tests.conftest import SAMPLE

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # noon in Shanghai, a Wednesday


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(SAMPLE)


def task(config: Config, task_id: str, **changes: object) -> Task:
    found = config.task(task_id)
    assert found is not None
    return found.model_copy(update=changes)


def with_tasks(config: Config, *tasks: Task) -> Config:
    return config.model_copy(update={"tasks": list(tasks)})


def step(found: Task, period: str, progress: int, done: bool = False) -> TaskStep:
    return TaskStep(1, found.id, period, progress, found.target, NOW if done else None, None)


def test_weekly_deadline_is_the_sunday_of_the_iso_week_even_across_new_year(
    config: Config,
) -> None:
    weekly = task(config, "eco_monthly", repeat="weekly")
    # Thursday 31 December 2026 is in ISO week 53 of 2026, which ends on Sunday 3 January.
    day = date(2026, 12, 31)
    assert period_of(weekly, day) == "2026-W53"
    assert period_days(weekly, day) == (date(2026, 12, 28), date(2027, 1, 3))
    assert task_deadline(weekly, day) == date(2027, 1, 3)
    # Friday 1 January 2027 is still that week; Monday 4 January starts 2027-W01.
    assert period_of(weekly, date(2027, 1, 1)) == "2026-W53"
    assert next_period_start(weekly, day) == date(2027, 1, 4)
    assert period_of(weekly, date(2027, 1, 4)) == "2027-W01"


def test_monthly_deadline_is_the_last_day_of_the_month(config: Config) -> None:
    monthly = task(config, "eco_monthly")
    assert task_deadline(monthly, date(2026, 11, 25)) == date(2026, 11, 30)
    assert task_deadline(monthly, date(2026, 12, 1)) == date(2026, 12, 31)
    assert task_deadline(monthly, date(2028, 2, 3)) == date(2028, 2, 29)  # a leap year
    assert task_deadline(monthly, date(2027, 2, 3)) == date(2027, 2, 28)
    assert next_period_start(monthly, date(2026, 12, 31)) == date(2027, 1, 1)


def test_daily_deadline_is_the_day_itself(config: Config) -> None:
    daily = task(config, "green_share")
    assert task_deadline(daily, date(2026, 11, 25)) == date(2026, 11, 25)
    assert next_period_start(daily, date(2026, 11, 25)) == date(2026, 11, 26)


def test_the_tasks_own_end_comes_first_and_ends_the_repeats(config: Config) -> None:
    monthly = task(config, "eco_monthly", ends=date(2026, 11, 20))
    assert task_deadline(monthly, date(2026, 11, 10)) == date(2026, 11, 20)
    # Done in its last month: it does not start again.
    assert next_period_start(monthly, date(2026, 11, 10)) is None
    once = task(config, "eco_streak", ends=date(2027, 3, 31))
    assert task_deadline(once, date(2026, 11, 25)) == date(2027, 3, 31)
    assert task_deadline(task(config, "eco_streak"), date(2026, 11, 25)) is None
    assert next_period_start(once, date(2026, 11, 25)) is None


def test_the_local_day_decides_the_period_not_utc(config: Config) -> None:
    monthly = task(config, "eco_monthly")
    # 16:30 UTC on 30 November is 00:30 on 1 December in Shanghai.
    late = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    day = local_today(late, config)
    [standing] = task_standings(with_tasks(config, monthly), day, {})
    assert (standing.period, standing.deadline) == ("2026-12", date(2026, 12, 31))


def test_standings_show_progress_reward_badge_and_reset(config: Config) -> None:
    monthly, survey = task(config, "eco_monthly"), task(config, "benefits_survey")
    spend = task(config, "spend_monthly")
    day = date(2026, 11, 25)
    steps = {
        ("eco_monthly", "2026-11"): step(monthly, "2026-11", 3, done=True),
        ("spend_monthly", "2026-11"): step(spend, "2026-11", 120),
        # Last month's progress is not this month's.
        ("benefits_survey", "2026-10"): step(survey, "2026-10", 1, done=True),
    }
    standings = task_standings(with_tasks(config, monthly, spend, survey), day, steps, {"x"})
    done, spending, answering = standings
    assert done.done and done.progress == 3 and done.resets_on == date(2026, 12, 1)
    assert done.points == 30 and done.badge is not None and done.badge.id == "eco_regular"
    assert not spending.done and (spending.progress, spending.target) == (120, 300)
    assert spending.unit == "yuan" and spending.badge is None and spending.resets_on is None
    assert (answering.progress, answering.points, answering.deadline) == (0, 0, None)
    assert answering.badge is not None and answering.badge.id == "voice"
    assert not answering.badge_earned
    # Completed in an earlier period: the badge is the member's already.
    [again] = task_standings(with_tasks(config, survey), day, {}, {"benefits_survey"})
    assert again.badge_earned and not again.done


def test_closed_and_future_tasks(config: Config) -> None:
    later = task(config, "eco_monthly", starts=date(2027, 1, 1))
    over = task(config, "spend_monthly", ends=date(2026, 10, 31))
    now_open = task(config, "green_share")
    cfg = with_tasks(config, later, over, now_open)
    day = date(2026, 11, 25)
    # /tasks: what can be done today; /rules: also what opens later.
    assert [s.task.id for s in task_standings(cfg, day, {})] == ["green_share"]
    assert [t.id for t in listed_tasks(cfg, day)] == ["eco_monthly", "green_share"]


@pytest.mark.parametrize(
    ("progress", "target", "bar"),
    [(0, 5, "░░░░░"), (3, 5, "▓▓▓░░"), (5, 5, "▓▓▓▓▓"), (299, 300, "▓▓▓▓▓▓▓▓▓░"), (1, 1, "▓")],
)
def test_progress_bar(progress: int, target: int, bar: str) -> None:
    assert progress_bar(progress, target) == bar


def test_a_long_programme_is_cut_between_tasks(config: Config) -> None:
    day = date(2026, 11, 25)
    many = [task(config, "eco_monthly", id=f"eco_{n}") for n in range(40)]
    standings = task_standings(with_tasks(config, *many), day, {})
    texts = Texts(I18n.load(), "en")
    [one] = render_tasks(standings[:3], config, day, texts)
    parts = render_tasks(standings, config, day, texts)
    assert len(parts) > 1 and all(len(p) <= 4096 for p in parts)
    # Nothing lost, no task cut in two.
    assert "\n\n".join(parts).count("3 green purchases this month") == 40
    assert all(p.startswith("🎯 ") for p in parts)
    assert one.count("\n\n") == 3
