"""Shares and reviews: the task kinds a member completes by sending something staff check.

A share is a photo with a caption (or a link in it) of a green purchase or a brand activity;
a review rates a category the member bought within the task's `within_days` and says why in
at least `min_text_length` characters. Each counts for the task's period it was sent in, at
most the task's target per period (pending ones included, so a member cannot queue more than
can ever count), and a photo counts once for everyone. An approval moves the task through
`advance_task` in the transaction that records it, so its reward is paid once however often
the button is tapped; a share task with `auto_approve` is approved as it is filed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bot.config import Config, Task
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.tasks import advance_task, period_of, tasks_of_kind
from storage.errors import LimitReached
from storage.pushes import SERVICE, Push
from storage.submissions import DuplicatePhoto, Photo, ReviewDraft, Submission
from storage.tasks import TaskStep

# Who approved a share filed under an auto_approve task, in the decision and the ledger.
AUTO_APPROVER: Final = "auto"
RATINGS: Final = range(1, 6)
# The longest review text kept (a Telegram message is at most 4096 characters).
MAX_TEXT_LENGTH: Final = 2000

# Why staff decline, each with its button label and the member's notice.
DECLINE_REASONS: Final[dict[str, tuple[str, str]]] = {
    "unrelated": (N_("submissions.reason_unrelated"), N_("submissions.declined_unrelated")),
    "unclear": (N_("submissions.reason_unclear"), N_("submissions.declined_unclear")),
    "not_own": (N_("submissions.reason_not_own"), N_("submissions.declined_not_own")),
    "too_vague": (N_("submissions.reason_too_vague"), N_("submissions.declined_too_vague")),
}

# The cap reached, said for the task's period.
_LIMIT_KEYS: Final = {
    "once": N_("submissions.limit_once"),
    "daily": N_("submissions.limit_daily"),
    "weekly": N_("submissions.limit_weekly"),
    "monthly": N_("submissions.limit_monthly"),
}


class ReviewTextRefused(RuleError):
    """The review's text is too short or too long: the member may type it again."""


@dataclass(frozen=True, slots=True)
class Filed:
    """A share or review filed: the submission, its task, and the task's progress when it was
    approved at once (auto_approve)."""

    submission: Submission
    task: Task
    step: TaskStep | None = None


@dataclass(frozen=True, slots=True)
class ReviewChoice:
    """The review task open to the member and the categories they may review."""

    task: Task
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision taken: the submission as decided and, for an approval, the task's progress."""

    submission: Submission
    step: TaskStep | None


def _names(task: Task) -> dict[str, str]:
    """A task's name in every language, as a push parameter."""
    return {"zh-CN": task.name.zh_CN, "en": task.name.en}


def _limit(task: Task, limit: int) -> RuleError:
    return RuleError(_LIMIT_KEYS[task.repeat], task=task.name, limit=limit)


def _open_task(programme: Programme, kind: str) -> Task | None:
    today = local_today(programme.now(), programme.config)
    found = tasks_of_kind(programme.config, kind, today)
    return found[0] if found else None


def _period(programme: Programme, task: Task) -> str:
    return period_of(task, local_today(programme.now(), programme.config))


class _Approval:
    """What an approval does in its transaction: move the task in the submission's period;
    the member's message is the completion notice, or else this approval's."""

    def __init__(self, task: Task, config: Config, actor: str, now: datetime) -> None:
        self.task, self.config, self.actor, self.now = task, config, actor, now
        self.step: TaskStep | None = None

    def __call__(self, conn: sqlite3.Connection, decided: Submission) -> Push | None:
        """Move the task; the approval's message unless the completion's says it all."""
        self.step = step = advance_task(
            conn,
            self.task,
            decided.member_id,
            1,
            self.config,
            self.now,
            actor=self.actor,
            period=decided.period,
        )
        if step.completed_now:
            return None  # advance_task queued the completion message
        return Push(
            f"submission:{decided.id}:decision",
            decided.member_id,
            SERVICE,
            N_("submissions.notice_approved"),
            {"task": _names(self.task), "progress": step.progress, "target": step.target},
        )


def _declined(task: Task | None, reason: str) -> Callable[[sqlite3.Connection, Submission], Push]:
    def notice(conn: sqlite3.Connection, decided: Submission) -> Push:
        # A task since removed from the programme is still named by its id.
        name = (
            _names(task) if task is not None else {"zh-CN": decided.task_id, "en": decided.task_id}
        )
        return Push(
            f"submission:{decided.id}:decision",
            decided.member_id,
            SERVICE,
            DECLINE_REASONS[reason][1],
            {"task": name},
        )

    return notice


# --- shares ----------------------------------------------------------------------------------


def share_task(programme: Programme) -> Task | None:
    """The share task open today (the first configured), or None."""
    return _open_task(programme, "share")


async def share_photo(
    programme: Programme, member_id: int, photo: Photo, caption: str | None, *, source: str
) -> Filed:
    """File a photo for the open share task, approved at once under `auto_approve`; raises
    RuleError (no share task open, no caption, the photo sent before, the period's cap)."""
    task = share_task(programme)
    if task is None:
        raise RuleError(N_("share.closed"))
    words = (caption or "").strip()
    if not words:
        # Staff judge a share by what it says it shows: the issue asks for a caption or a link.
        raise RuleError(N_("share.caption_needed"))
    now = programme.now()
    auto = _Approval(task, programme.config, AUTO_APPROVER, now) if task.auto_approve else None
    try:
        filed = await programme.submissions.submit(
            member_id,
            task.id,
            "share",
            _period(programme, task),
            cap=task.target,
            source=source,
            photo=photo,
            caption=words[:MAX_TEXT_LENGTH],
            approved_by=AUTO_APPROVER if auto is not None else None,
            on_decided=auto,
            now=now,
        )
    except DuplicatePhoto:
        raise RuleError(N_("share.duplicate")) from None
    except LimitReached as exc:
        raise _limit(task, exc.limit) from None
    return Filed(filed, task, None if auto is None else auto.step)


# --- reviews ---------------------------------------------------------------------------------


def review_task(programme: Programme) -> Task | None:
    """The review task open today (the first configured), or None."""
    return _open_task(programme, "review")


async def _reviewable(programme: Programme, member_id: int, task: Task) -> tuple[str, ...]:
    """The categories the member bought within the task's window, of those it counts."""
    since = local_today(programme.now(), programme.config) - timedelta(days=task.within_days)
    found = await programme.submissions.categories_bought(member_id, since, task.categories)
    earn = programme.config.earn
    return tuple(category for category in found if earn.category(category) is not None)


async def _room(programme: Programme, member_id: int, task: Task) -> None:
    """Raise the cap's RuleError when the period's reviews are all sent."""
    if await programme.submissions.counted(member_id, task.id, _period(programme, task)) >= (
        task.target
    ):
        raise _limit(task, task.target)


async def review_choices(programme: Programme, member_id: int) -> ReviewChoice:
    """The review task and the categories the member may review now; raises RuleError (no
    review task open, the period's reviews sent, nothing bought within the window)."""
    task = review_task(programme)
    if task is None:
        raise RuleError(N_("review.closed"))
    await _room(programme, member_id, task)
    categories = await _reviewable(programme, member_id, task)
    if not categories:
        raise RuleError(N_("review.nothing_bought"), days=task.within_days)
    return ReviewChoice(task, categories)


async def choose_rating(
    programme: Programme, member_id: int, category: str, rating: int
) -> tuple[ReviewDraft, Task]:
    """Keep the category and rating chosen (re-checked: buttons are never trusted) until the
    text arrives; raises RuleError (as `review_choices`, or a choice no longer on offer)."""
    choice = await review_choices(programme, member_id)
    if category not in choice.categories or rating not in RATINGS:
        raise RuleError(N_("button.expired"))
    draft = await programme.submissions.save_draft(
        member_id, choice.task.id, category, rating, now=programme.now()
    )
    return draft, choice.task


async def file_review(
    programme: Programme, member_id: int, text: str, photo: Photo | None, *, source: str
) -> Filed:
    """File the member's drafted review with its text (and photo) for staff; raises
    ReviewTextRefused (too short or long: type again) and RuleError (nothing drafted, the
    task closed, the period's reviews sent, the photo sent before)."""
    draft = await programme.submissions.draft_of(member_id)
    task = review_task(programme)
    if draft is None or task is None or task.id != draft.task_id:
        raise RuleError(N_("review.expired"))
    words = text.strip()
    if len(words) < task.min_text_length:
        raise ReviewTextRefused(N_("review.too_short"), min=task.min_text_length, length=len(words))
    if len(words) > MAX_TEXT_LENGTH:
        raise ReviewTextRefused(N_("review.too_long"), max=MAX_TEXT_LENGTH, length=len(words))
    try:
        filed = await programme.submissions.submit_review(
            draft,
            _period(programme, task),
            cap=task.target,
            source=source,
            text=words,
            photo=photo,
            now=programme.now(),
        )
    except DuplicatePhoto:
        raise ReviewTextRefused(N_("review.duplicate_photo")) from None
    except LimitReached as exc:
        raise _limit(task, exc.limit) from None
    return Filed(filed, task)


async def cancel_review(programme: Programme, member_id: int) -> None:
    """Forget the member's review in progress."""
    await programme.submissions.drop_draft(member_id)


# --- staff -----------------------------------------------------------------------------------


async def pending_submissions(programme: Programme, limit: int) -> tuple[list[Submission], int]:
    """The oldest shares and reviews waiting for staff, and how many wait in all."""
    return await programme.submissions.pending(limit=limit)


async def decide_submission(
    programme: Programme,
    submission_id: int,
    *,
    approve: bool,
    actor: str,
    reason: str | None = None,
) -> Decided:
    """Approve (moving the task in the period it was sent, its reward paid once) or decline
    with one of DECLINE_REASONS; the member is told through the outbox. Raises NotFound,
    InvalidState (decided already), RuleError (an unknown reason, the task removed)."""
    config = programme.config
    found = await programme.submissions.submission(submission_id)
    task = config.task(found.task_id)
    if approve:
        if task is None:
            raise RuleError(N_("submissions.task_gone"))
        now = programme.now()
        approval = _Approval(task, config, actor, now)
        decided = await programme.submissions.decide(
            submission_id, approve=True, actor=actor, on_decided=approval, now=now
        )
        return Decided(decided, approval.step)
    if reason not in DECLINE_REASONS:
        raise RuleError(N_("button.expired"))
    decided = await programme.submissions.decide(
        submission_id,
        approve=False,
        actor=actor,
        reason=reason,
        on_decided=_declined(task, reason),
        now=programme.now(),
    )
    return Decided(decided, None)
