"""Reward surveys: which are open to a member now, answering them one question at a time, and
the reward, paid once, with the answer that completes a survey.

Every answer goes to the store as it is given; the store re-checks that it answers the question
being asked, so a double tap or an old button answers nothing twice. A survey whose questions
changed since the member started starts over (their earlier answers no longer fit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

from bot.config import Config, Survey, SurveyQuestion
from bot.i18n import N_
from bot.programme.calendar import display_expiry
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.tasks import survey_effects
from storage.errors import InvalidAnswer, SurveyChanged, SurveyClosed
from storage.surveys import Progress, QuestionSpec, SurveySpec, SurveyStats


class SurveyGone(RuleError):
    """The survey left the configuration since its button was shown."""

    def __init__(self) -> None:
        super().__init__(N_("survey.gone"))


class NoActiveSurvey(RuleError):
    """Typed text, but the member is answering no survey."""

    def __init__(self) -> None:
        super().__init__(N_("survey.none_active"))


class NotATextQuestion(RuleError):
    """Typed text while the question being asked takes a button; `step` is that question."""

    def __init__(self, step: SurveyStep) -> None:
        super().__init__(N_("survey.use_buttons"))
        self.step = step


# --- the surveys as the configuration defines them ----------------------------------------------


def survey_spec(survey: Survey, config: Config) -> SurveySpec:
    """The survey as the store checks answers against it."""
    tz = config.program.tz
    return SurveySpec(
        id=survey.id,
        reward_points=survey.reward_points,
        opens_at=survey.opens_at(tz),
        closes_at=survey.closes_at(tz),
        questions=tuple(
            QuestionSpec(
                id=q.id,
                kind=q.kind,
                required=q.required,
                options=tuple(o.id for o in q.options),
                max_choices=q.max_choices,
                max_length=q.max_length,
            )
            for q in survey.questions
        ),
        on_complete=survey_effects(config),
    )


def open_surveys(config: Config, now: datetime) -> list[Survey]:
    """The surveys members may answer at `now`, in configuration order."""
    tz = config.program.tz
    return [s for s in config.surveys if s.opens_at(tz) <= now < s.closes_at(tz)]


def closing_day(survey: Survey, config: Config) -> date:
    """The last local day to answer (a survey closing at midnight closed the day before)."""
    return display_expiry(survey.closes_at(config.program.tz), config)


def refusal(spec: SurveySpec, now: datetime) -> SurveyClosed:
    """Why a survey that is not open at `now` refuses answers."""
    reason: Literal["not_open", "closed"] = "not_open" if now < spec.opens_at else "closed"
    return SurveyClosed(reason, spec.opens_at, spec.closes_at)


# --- what a member sees ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SurveyOffer:
    """An open survey the member has not completed, and their progress in it (if started)."""

    survey: Survey
    response: Progress | None


@dataclass(frozen=True, slots=True)
class MemberSurveys:
    """What /surveys offers a member: the open surveys left, and how many they completed."""

    offers: list[SurveyOffer]
    completed: int


async def surveys_for(programme: Programme, member_id: int) -> MemberSurveys:
    """The open surveys the member may still answer, with their progress."""
    responses = await programme.surveys.responses(member_id)
    offers = []
    for survey in open_surveys(programme.config, programme.now()):
        response = responses.get(survey.id)
        if response is None or not response.completed:
            offers.append(SurveyOffer(survey, response))
    completed = sum(1 for r in responses.values() if r.completed)
    return MemberSurveys(offers, completed)


@dataclass(frozen=True, slots=True)
class SurveyReward:
    """The reward a completed survey paid: points, their expiry, and the balance after."""

    points: int
    expires_at: datetime | None
    available: int


@dataclass(frozen=True, slots=True)
class SurveyStep:
    """Where the member stands after an action: the question to show next, or the end (with
    the reward paid, if the survey pays one)."""

    survey: Survey
    progress: Progress
    reward: SurveyReward | None = None


async def _step(programme: Programme, survey: Survey, progress: Progress) -> SurveyStep:
    if not (progress.completed and progress.reward_points and progress.completed_at):
        return SurveyStep(survey, progress)
    # The reward's expiry as the store booked it: the policy at the moment of completion.
    expiry = expires_at(progress.completed_at, programme.config, "survey")
    available = await programme.ledger.available(progress.member_id, programme.now())
    return SurveyStep(survey, progress, SurveyReward(progress.reward_points, expiry, available))


def _survey(programme: Programme, survey_id: str) -> Survey:
    survey = programme.config.survey(survey_id)
    if survey is None:
        raise SurveyGone
    return survey


async def open_survey(programme: Programme, member_id: int, survey_id: str) -> SurveyStep:
    """Start the survey, or continue it where the member left it. Raises SurveyGone and what
    `Surveys.start` raises (NotFound, AlreadyCompleted, SurveyClosed)."""
    survey = _survey(programme, survey_id)
    spec = survey_spec(survey, programme.config)
    progress = await programme.surveys.start(spec, member_id, now=programme.now())
    return await _step(programme, survey, progress)


# One store call that answers the question at a position; given the reward's expiry.
_Answer = Callable[[SurveySpec, SurveyQuestion, datetime | None, datetime], Awaitable[Progress]]


async def _answer(
    programme: Programme,
    member_id: int,
    survey_id: str,
    position: int,
    answer: _Answer,
    option: int | None = None,
) -> SurveyStep:
    """Answer (or move within) the survey at `position`; start over if its questions changed.
    Raises SurveyGone, InvalidAnswer for a question or option the survey does not have, and
    what the store raises (NotFound, AlreadyCompleted, SurveyClosed, StaleQuestion,
    InvalidAnswer)."""
    survey = _survey(programme, survey_id)
    if position >= len(survey.questions):
        raise InvalidAnswer("position")
    question = survey.questions[position]
    if option is not None and option >= len(question.options):
        raise InvalidAnswer("option")
    config = programme.config
    spec = survey_spec(survey, config)
    now = programme.now()
    try:
        # Survey rewards are bonus points: they expire as the policy says at completion.
        progress = await answer(spec, question, expires_at(now, config, "survey"), now)
    except SurveyChanged:
        # The questions changed under the member: start over (the question says why).
        progress = await programme.surveys.start(spec, member_id, now=now)
    return await _step(programme, survey, progress)


async def choose_option(
    programme: Programme, member_id: int, survey_id: str, position: int, option: int, actor: str
) -> SurveyStep:
    """Pick option number `option` of a single-choice question (raises as `_answer`)."""

    async def answer(
        spec: SurveySpec, question: SurveyQuestion, expiry: datetime | None, now: datetime
    ) -> Progress:
        return await programme.surveys.choose(
            spec,
            member_id,
            position,
            question.options[option].id,
            reward_expires_at=expiry,
            actor=actor,
            now=now,
        )

    return await _answer(programme, member_id, survey_id, position, answer, option)


async def toggle_option(
    programme: Programme, member_id: int, survey_id: str, position: int, option: int
) -> SurveyStep:
    """Tick or untick option number `option` of a multiple-choice question (not yet an
    answer: Done confirms it)."""

    async def answer(
        spec: SurveySpec, question: SurveyQuestion, expiry: datetime | None, now: datetime
    ) -> Progress:
        return await programme.surveys.toggle(
            spec, member_id, position, question.options[option].id, now=now
        )

    return await _answer(programme, member_id, survey_id, position, answer, option)


class _Settle(Protocol):
    """A store call that settles the question at a position (and pays on the last one)."""

    def __call__(
        self,
        spec: SurveySpec,
        member_id: int,
        position: int,
        *,
        reward_expires_at: datetime | None,
        actor: str,
        now: datetime | None = None,
    ) -> Awaitable[Progress]: ...


async def _settle(
    programme: Programme,
    member_id: int,
    survey_id: str,
    position: int,
    actor: str,
    settle: _Settle,
) -> SurveyStep:
    async def answer(
        spec: SurveySpec, question: SurveyQuestion, expiry: datetime | None, now: datetime
    ) -> Progress:
        return await settle(
            spec, member_id, position, reward_expires_at=expiry, actor=actor, now=now
        )

    return await _answer(programme, member_id, survey_id, position, answer)


async def confirm_choices(
    programme: Programme, member_id: int, survey_id: str, position: int, actor: str
) -> SurveyStep:
    """Done: the ticked options answer the multiple-choice question."""
    settle = programme.surveys.confirm_choices
    return await _settle(programme, member_id, survey_id, position, actor, settle)


async def rate_question(
    programme: Programme, member_id: int, survey_id: str, position: int, stars: int, actor: str
) -> SurveyStep:
    """Answer a rating question with 1-5 stars."""

    async def answer(
        spec: SurveySpec, question: SurveyQuestion, expiry: datetime | None, now: datetime
    ) -> Progress:
        return await programme.surveys.rate(
            spec, member_id, position, stars, reward_expires_at=expiry, actor=actor, now=now
        )

    return await _answer(programme, member_id, survey_id, position, answer)


async def keep_answer(
    programme: Programme, member_id: int, survey_id: str, position: int, actor: str
) -> SurveyStep:
    """Keep the text given before (after Back) as the answer."""
    settle = programme.surveys.keep
    return await _settle(programme, member_id, survey_id, position, actor, settle)


async def skip_question(
    programme: Programme, member_id: int, survey_id: str, position: int, actor: str
) -> SurveyStep:
    """Skip an optional question."""
    settle = programme.surveys.skip
    return await _settle(programme, member_id, survey_id, position, actor, settle)


async def go_back(
    programme: Programme, member_id: int, survey_id: str, position: int
) -> SurveyStep:
    """Back to the question before (its answer is shown and may be changed)."""

    async def answer(
        spec: SurveySpec, question: SurveyQuestion, expiry: datetime | None, now: datetime
    ) -> Progress:
        return await programme.surveys.back(spec, member_id, position, now=now)

    return await _answer(programme, member_id, survey_id, position, answer)


async def answer_text(
    programme: Programme, member_id: int, text: str, *, source: str, actor: str
) -> SurveyStep:
    """Typed text answers the text question the member is being asked (once per `source`
    message: a redelivered one is `progress.replayed`). Raises NoActiveSurvey, SurveyGone,
    NotATextQuestion, SurveyClosed, AlreadyCompleted, StaleQuestion, InvalidAnswer."""
    surveys, config = programme.surveys, programme.config
    active = await surveys.active_response(member_id)
    if active is None:
        raise NoActiveSurvey
    survey = _survey(programme, active.survey_id)
    spec = survey_spec(survey, config)
    now = programme.now()
    if active.definition != spec.definition:
        return await _step(programme, survey, await surveys.start(spec, member_id, now=now))
    if not spec.is_open(now):
        raise refusal(spec, now)
    if survey.questions[active.position].kind != "text":
        raise NotATextQuestion(SurveyStep(survey, active))
    try:
        progress = await surveys.write_text(
            spec,
            member_id,
            active.position,
            text,
            source=source,
            reward_expires_at=expires_at(now, config, "survey"),
            actor=actor,
            now=now,
        )
    except SurveyChanged:
        progress = await surveys.start(spec, member_id, now=now)
    return await _step(programme, survey, progress)


# --- operators -----------------------------------------------------------------------------------


async def survey_results(programme: Programme, survey_id: str) -> tuple[Survey, SurveyStats]:
    """The survey's responses, counts per option and ratings; raises SurveyGone."""
    survey = _survey(programme, survey_id)
    return survey, await programme.surveys.stats(survey_spec(survey, programme.config))
