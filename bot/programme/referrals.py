"""Referrals (task kind `referral`): each member's personal link, the friend it registers,
and the referrer's reward when that friend makes a first purchase.

The rule: a friend counts when they are NEW when they open the link (not a member before, not
the referrer), once ever, and only when they make a first purchase; the referrer is credited
for at most the task's `max_per_month` friends per local calendar month. Each credited friend
is one completion of the referral task (its period names the friend, so its reward key
`task:<task>:<referrer>:friend-<friend id>` is paid once per friend by the ledger itself),
whatever the task's `repeat` and `target`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bot.config import Config, Task
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.tasks import completion_effects, reward_for, tasks_of_kind
from storage.members import Member, Profile, is_valid_member_code
from storage.pushes import SERVICE, Push
from storage.referrals import FirstPurchase, ReferralCounts, Registered, credit_first_purchase
from storage.tasks import TaskStep, advance

# The /start payload of a member's personal link: ref_<member code>.
START_PREFIX: Final = "ref_"
REFERRAL_ACTOR: Final = "referral"


def referral_link(bot_username: str, member: Member) -> str:
    """The member's personal link for inviting friends."""
    return f"https://t.me/{bot_username}?start={START_PREFIX}{member.member_code}"


def referrer_from_payload(payload: str | None) -> str | None:
    """The referrer's member code in a /start payload (ref_<code>), or None."""
    if payload is None or not payload.startswith(START_PREFIX):
        return None
    code = payload.removeprefix(START_PREFIX)
    return code if is_valid_member_code(code) else None


async def join(programme: Programme, profile: Profile, payload: str) -> Registered:
    """/start through a referral link: register the member and, when new, record them as the
    referrer's friend, in one transaction."""
    code = referrer_from_payload(payload)
    if code is None:
        raise ValueError("not a referral payload")
    return await programme.referrals.register(profile, payload, code, now=programme.now())


def month_of(now: datetime, config: Config) -> str:
    """The local calendar month of `now`, as the cap counts it: '2026-11'."""
    return local_today(now, config).strftime("%Y-%m")


def referral_task(config: Config, now: datetime) -> Task | None:
    """The referral task open on the local day of `now`, if any (the first configured)."""
    open_now = tasks_of_kind(config, "referral", local_today(now, config))
    return open_now[0] if open_now else None


def friend_period(referee_id: int) -> str:
    """The task period of one friend's credit: one completion per friend."""
    return f"friend-{referee_id}"


def _credited_notice(task: Task, first: FirstPurchase) -> Callable[[TaskStep], Push | None]:
    """The referrer's message: which friend, the points, and the month's count."""

    def build(step: TaskStep) -> Push:
        return Push(
            f"referral:{first.referee_id}:credited",
            step.member_id,
            SERVICE,
            N_("referral.notice_credited"),
            {
                "friend": first.referee_name,
                "points": task.reward_points,
                "count": first.credited_in_month,
                "max": task.max_per_month,
            },
        )

    return build


def credit_referral(
    conn: sqlite3.Connection, member_id: int, operation_id: int, config: Config, now: datetime
) -> TaskStep | None:
    """THE purchase hook of referrals, inside the transaction that books a purchase of
    `member_id` (operation `operation_id`, booked now, not replayed): when it is a referred
    friend's first purchase, record it and, within the month's cap, complete the referrer's
    referral task for this friend (reward, badge seam, message). None: nothing credited."""
    task = referral_task(config, now)
    first = credit_first_purchase(
        conn,
        member_id,
        operation_id,
        month=month_of(now, config) if task is not None else None,
        cap=task.max_per_month if task is not None else 0,
        now=now,
    )
    if task is None or first is None or not first.credited:
        return None
    return advance(
        conn,
        first.referrer_id,
        task.id,
        friend_period(first.referee_id),
        1,
        target=1,
        reward=reward_for(task, config, now),
        actor=REFERRAL_ACTOR,
        notice=_credited_notice(task, first),
        on_complete=completion_effects(config, now),
        now=now,
    )


@dataclass(frozen=True, slots=True)
class Invitation:
    """What /invite shows a member: their link and how their friends stand."""

    task: Task | None
    counts: ReferralCounts


async def invitation(programme: Programme, member: Member) -> Invitation:
    """The member's referral standing this month (the task open now, if any)."""
    now = programme.now()
    counts = await programme.referrals.counts(member.id, month_of(now, programme.config))
    return Invitation(referral_task(programme.config, now), counts)
