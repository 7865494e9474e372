"""Rewarded suggestions: a few a day per member, within a length range, paid only when an
operator approves one.

The decision, the payment (ledger key 'feedback:<id>') and the notice to the member are one
store transaction, so an approval pays exactly once however often its button is tapped, and
the member hears about it through the outbox even if the bot restarts right after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.config import Config
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from storage.errors import LimitReached
from storage.feedback import Feedback
from storage.pushes import SERVICE, Push

# The start of a suggestion quoted in the member's notice of the decision.
EXCERPT_LENGTH: Final = 40


class SuggestionLength(RuleError):
    """The suggestion is too short or too long: the member may type it again."""


@dataclass(frozen=True, slots=True)
class SuggestionTerms:
    """What a suggestion earns and how many a member may send: for the prompt and /rules."""

    reward_points: int
    daily_limit: int
    min_length: int
    max_length: int


def suggestion_terms(config: Config) -> SuggestionTerms | None:
    """The terms suggestions are taken on, or None when the programme takes none."""
    settings = config.feedback
    if not settings.enabled:
        return None
    return SuggestionTerms(
        settings.reward_points, settings.daily_limit, settings.min_length, settings.max_length
    )


def _terms(config: Config) -> SuggestionTerms:
    terms = suggestion_terms(config)
    if terms is None:
        raise RuleError(N_("feedback.disabled"))
    return terms


async def may_suggest(programme: Programme, member_id: int) -> SuggestionTerms:
    """The terms, when the member may send a suggestion now; raises RuleError (suggestions
    are off, or today's are used up)."""
    terms = _terms(programme.config)
    today = local_today(programme.now(), programme.config)
    if await programme.surveys.feedback_count(member_id, today) >= terms.daily_limit:
        raise RuleError(N_("feedback.limit"), limit=terms.daily_limit)
    return terms


async def suggest(
    programme: Programme, member_id: int, text: str, *, source: str
) -> tuple[Feedback, SuggestionTerms]:
    """File a suggestion for review (once per `source` message) and the terms it was filed
    on; raises SuggestionLength, RuleError (suggestions off, today's used up)."""
    terms = _terms(programme.config)
    text = text.strip()
    if len(text) < terms.min_length:
        raise SuggestionLength(N_("feedback.too_short"), min=terms.min_length, length=len(text))
    if len(text) > terms.max_length:
        raise SuggestionLength(N_("feedback.too_long"), max=terms.max_length, length=len(text))
    now = programme.now()
    try:
        filed = await programme.surveys.submit_feedback(
            member_id,
            text,
            source=source,
            local_day=local_today(now, programme.config),
            daily_limit=terms.daily_limit,
            now=now,
        )
    except LimitReached as exc:
        raise RuleError(N_("feedback.limit"), limit=exc.limit) from None
    return filed, terms


def excerpt(text: str, length: int = EXCERPT_LENGTH) -> str:
    """The start of a suggestion on one line, for notices."""
    flat = " ".join(text.split())
    return flat if len(flat) <= length else flat[: length - 1] + "…"


def decision_notice(item: Feedback) -> Push:
    """The member's notice of the decision (rendered in their language when sent)."""
    if item.status == "approved":
        key = N_("feedback.notice_approved") if item.reward_points else N_("feedback.notice_thanks")
    else:
        key = N_("feedback.notice_rejected")
    return Push(
        dedupe_key=f"feedback:{item.id}:decision",
        member_id=item.member_id,
        category=SERVICE,
        message_key=key,
        params={"points": item.reward_points, "excerpt": excerpt(item.text)},
    )


async def review_suggestion(
    programme: Programme, feedback_id: int, *, approve: bool, actor: str
) -> Feedback:
    """Approve (paying the configured reward, once) or reject a pending suggestion, and queue
    the member's notice; raises NotFound, InvalidState (decided already)."""
    config = programme.config
    now = programme.now()
    return await programme.surveys.review_feedback(
        feedback_id,
        approve=approve,
        reward_points=config.feedback.reward_points,
        # Suggestion rewards are bonus points: they expire as the policy says at approval.
        reward_expires_at=expires_at(now, config, "feedback"),
        actor=actor,
        now=now,
        notice=decision_notice,
    )
