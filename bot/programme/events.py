"""Check-in events (task kind `checkin`): staff create an event with a local time window and
an optional capacity; a member checks in once, inside the window, by its code or its QR deep
link, and the check-in advances the open checkin tasks in the same transaction."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final, Literal

from bot.config import Config
from bot.i18n import N_
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.tasks import advance_task, tasks_of_kind
from storage.events import CODE_ALPHABET, CODE_LENGTH, Event, EventCounts
from storage.members import Member

# The /start payload of an event's deep link: ev_<code>.
START_PREFIX: Final = "ev_"
MAX_CAPACITY: Final = 100_000
MAX_NAME_LENGTH: Final = 60
# How far ahead an event may be created (a typo in the year should not make a valid event).
MAX_AHEAD: Final = timedelta(days=366)

_DATE: Final = re.compile(r"(?:(?P<year>[0-9]{4})-)?(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})")
_WINDOW: Final = re.compile(
    r"(?P<sh>[0-9]{1,2}):(?P<sm>[0-9]{2})[-~](?P<eh>[0-9]{1,2}):(?P<em>[0-9]{2})"
)
_CODE: Final = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")


def _folded(text: str) -> str:
    """Full-width digits, colons and dashes (Chinese input methods) read as ASCII ones."""
    return unicodedata.normalize("NFKC", text).replace("—", "-").replace("–", "-")


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event as staff typed it, checked."""

    name: str
    starts_at: datetime
    ends_at: datetime
    capacity: int | None


def _day(text: str, today: date) -> date | None:
    """A typed date: 2026-12-05, or 12-05 (the next such day from today)."""
    found = _DATE.fullmatch(text)
    if found is None:
        return None
    try:
        if found["year"]:
            return date(int(found["year"]), int(found["month"]), int(found["day"]))
        day = date(today.year, int(found["month"]), int(found["day"]))
        return day if day >= today else date(today.year + 1, day.month, day.day)
    except ValueError:
        return None


def parse_event(words: list[str], config: Config, now: datetime) -> EventDraft:
    """`<date> <HH:MM-HH:MM> [capacity] <name>` as typed after /event_new; raises RuleError
    (the usage when the shape is wrong, else what is wrong)."""
    if len(words) < 3:
        raise RuleError(N_("events.usage"))
    today = local_today(now, config)
    day = _day(_folded(words[0]), today)
    window = _WINDOW.fullmatch(_folded(words[1]))
    if day is None or window is None:
        raise RuleError(N_("events.usage"))
    try:
        start = time(int(window["sh"]), int(window["sm"]))
        end = time(int(window["eh"]), int(window["em"]))
    except ValueError:
        raise RuleError(N_("events.usage")) from None
    rest = words[2:]
    capacity = None
    if _folded(rest[0]).isdigit() and len(rest) > 1:
        capacity = int(_folded(rest[0]))
        if not 1 <= capacity <= MAX_CAPACITY:
            raise RuleError(N_("events.bad_capacity"), max=MAX_CAPACITY)
        rest = rest[1:]
    name = " ".join(rest).strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise RuleError(N_("events.bad_name"), max=MAX_NAME_LENGTH)
    tz = config.program.tz
    starts_at = datetime.combine(day, start, tz)
    ends_at = datetime.combine(day, end, tz)
    if ends_at <= starts_at:
        raise RuleError(N_("events.bad_window"))
    if ends_at <= now:
        raise RuleError(N_("events.window_over"))
    if starts_at - now > MAX_AHEAD:
        raise RuleError(N_("events.too_far"))
    return EventDraft(name, starts_at, ends_at, capacity)


async def create_event(programme: Programme, words: list[str], *, actor: str) -> Event:
    """Create the event staff typed (`parse_event`) with a fresh code; raises RuleError."""
    now = programme.now()
    draft = parse_event(words, programme.config, now)
    return await programme.events.create(
        draft.name, draft.starts_at, draft.ends_at, draft.capacity, created_by=actor, now=now
    )


def event_code(text: str) -> str | None:
    """An event code as typed or scanned (any case, spaces around), or None when it is none."""
    code = _folded(text).strip().upper()
    return code if _CODE.fullmatch(code) else None


def code_from_payload(payload: str | None) -> str | None:
    """The event code of a /start payload (ev_<code>), or None when it is no event link."""
    if payload is None or not payload.startswith(START_PREFIX):
        return None
    return event_code(payload.removeprefix(START_PREFIX))


def event_link(bot_username: str, event: Event) -> str:
    """The deep link that checks a member in at the event."""
    return f"https://t.me/{bot_username}?start={START_PREFIX}{event.code}"


# checked_in: recorded now; already: checked in before; full: no places left; early: the
# window has not opened; closed: it is over; unknown: no event has that code.
CheckInOutcome = Literal["checked_in", "already", "full", "early", "closed", "unknown"]


@dataclass(frozen=True, slots=True)
class CheckInResult:
    """What a member's check-in did, for their reply."""

    outcome: CheckInOutcome
    event: Event | None = None
    # A checkin task this check-in completed (its message is queued with the check-in).
    completed_task: bool = False


async def check_in(programme: Programme, member: Member, text: str) -> CheckInResult:
    """Check the member in at the event with the code typed or scanned: once, inside its
    window, within its capacity, advancing the open checkin tasks in the same transaction."""
    code = event_code(text)
    event = None if code is None else await programme.events.by_code(code)
    if event is None:
        return CheckInResult("unknown")
    now = programme.now()
    if now < event.starts_at:
        return CheckInResult("early", event)
    if now >= event.ends_at:
        return CheckInResult("closed", event)
    config = programme.config
    tasks = tasks_of_kind(config, "checkin", local_today(now, config))

    def advance(conn: sqlite3.Connection) -> str | None:
        completed = None
        for task in tasks:
            step = advance_task(conn, task, member.id, 1, config, now, actor=f"event:{event.code}")
            if step.completed_now and completed is None:
                completed = task.id
        return completed

    done = await programme.events.check_in(
        event.id, member.id, day=local_today(now, config).isoformat(), advance=advance, now=now
    )
    return CheckInResult(done.status, event, done.task_id is not None)


@dataclass(frozen=True, slots=True)
class EventStats:
    """An event at a glance, for staff."""

    event: Event
    counts: EventCounts


async def event_stats(programme: Programme, text: str) -> EventStats:
    """The event with the code typed and its check-ins; raises RuleError (no such event)."""
    code = event_code(text)
    event = None if code is None else await programme.events.by_code(code)
    if event is None:
        raise RuleError(N_("events.unknown"), code=text.strip()[:16])
    return EventStats(event, await programme.events.counts(event.id))
