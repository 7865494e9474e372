"""The points-value guarantee: the terms members were promised, how a configuration compares
with them, announced changes of any of them, and the configuration those changes complete.

A term is one thing a member's points are worth: the earn rate (`earn.points_per_yuan`), a
category's multiplier (`earn.<category>.multiplier`), the bill-deduction rate
(`redemption.deduction_points_per_yuan`), a source's expiry policy (`expiry.<source>`, or
`expiry` for the default every unlisted source follows) and a listed item's price
(`mall.<SKU>.price`). The database keeps the terms in force at the last start or local midnight
(the promise). A configuration worse for members on any term is refused unless an announced
change brings it; a better one becomes the promise at once. An announced change rewrites the
file's value from its effective day, while the file still says the value it was announced
against, so "the configuration in force" = the file + the changes in force by the local day.
An item removed from the mall leaves the promise (delisting has its own compensation rules).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from bot.config import (
    EXPIRY_SOURCES,
    MAX_POINTS_PER_YUAN,
    AnnouncedChange,
    Config,
    ConfigError,
    ExpiryPolicy,
    ScheduledPolicy,
)
from bot.i18n import N_, I18n
from bot.programme.calendar import local_today
from bot.programme.errors import RuleError
from bot.programme.expiry import lasts_at_least
from storage.pushes import (
    TermChange,
    announce_term_change,
    promised_terms,
    record_promise,
    term_changes,
)
from storage.sql import atomic

EARN_RATE = "earn.points_per_yuan"
DEDUCTION = "redemption.deduction_points_per_yuan"
EXPIRY = "expiry"  # the default policy; `expiry.<source>` for one source
# The highest multiplier and price the configuration accepts (bot/config.py).
MAX_MULTIPLIER = Decimal(100)
MAX_PRICE = 10_000_000


# --- terms ---------------------------------------------------------------------------------


def _decimal(value: Decimal) -> str:
    """A multiplier as stored and shown: 2, 1.5 (never 2.00 or 1E+1)."""
    return format(value.normalize(), "f")


def _policy_json(policy: ExpiryPolicy) -> dict[str, Any]:
    return {"mode": policy.mode, "months": policy.months, "years": policy.years}


def _policy(value: Any) -> ExpiryPolicy:
    return ExpiryPolicy.model_validate(value)


def terms_of(config: Config, day: date) -> dict[str, Any]:
    """The terms a configuration (in force) promises for points earned on local `day`."""
    terms: dict[str, Any] = {EARN_RATE: config.earn.points_per_yuan}
    for category in config.earn.categories:
        terms[f"earn.{category.id}.multiplier"] = _decimal(category.multiplier)
    terms[DEDUCTION] = config.redemption.deduction_points_per_yuan
    for source in EXPIRY_SOURCES:
        terms[f"{EXPIRY}.{source}"] = _policy_json(config.expiry.policy_on(day, source))
    for item in config.mall.items:
        if item.kind != "deduction":  # a deduction is priced by the rate above
            terms[f"mall.{item.sku}.price"] = item.price
    return terms


def worse(term: str, new: Any, old: Any) -> bool:
    """True when `new` leaves members worse off than `old` on this term."""
    if term.startswith(EXPIRY):
        return not lasts_at_least(_policy(new), _policy(old))
    if term == DEDUCTION or term.startswith("mall."):
        return int(new) > int(old)  # more points for the same yuan or item
    return Decimal(str(new)) < Decimal(str(old))  # fewer points for the same yuan


def _same(term: str, a: Any, b: Any) -> bool:
    if term.startswith(EXPIRY):
        return _policy(a).rule() == _policy(b).rule()
    return str(a) == str(b)


def file_value(config: Config, term: str) -> Any:
    """The configuration's value of a term; raises ValueError naming what is unknown."""
    if term == EARN_RATE:
        return config.earn.points_per_yuan
    if term == DEDUCTION:
        return config.redemption.deduction_points_per_yuan
    if term == EXPIRY:
        return _policy_json(config.expiry.default_policy())
    parts = term.split(".")
    if len(parts) == 2 and parts[0] == EXPIRY:
        if parts[1] not in EXPIRY_SOURCES:
            raise ValueError(f"unknown source {parts[1]!r} (sources: {', '.join(EXPIRY_SOURCES)})")
        return _policy_json(config.expiry.sources.get(parts[1], config.expiry.default_policy()))
    if len(parts) == 3 and parts[0] == "earn" and parts[2] == "multiplier":
        category = config.earn.category(parts[1])
        if category is None:
            raise ValueError(f"no category {parts[1]!r} in [earn]")
        return _decimal(category.multiplier)
    if len(parts) == 3 and parts[0] == "mall" and parts[2] == "price":
        item = config.mall.item(parts[1])
        if item is None or item.kind == "deduction":
            raise ValueError(f"no priced item {parts[1]!r} in [mall]")
        return item.price
    raise ValueError(
        f"unknown term {term!r} (terms: {EARN_RATE}, earn.<category>.multiplier, {DEDUCTION},"
        f" {EXPIRY}, {EXPIRY}.<source>, mall.<SKU>.price)"
    )


def normalized(term: str, value: Any) -> Any:
    """A new value for a term as stored; raises ValueError saying what is wrong with it."""
    if term.startswith(EXPIRY):
        try:
            return _policy_json(_policy(value))
        except ValidationError as exc:
            raise ValueError(f"not an expiry policy for {term}: {exc}") from None
    if term.endswith(".multiplier"):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number (a multiplier such as 1.5)") from None
        if not 0 < number <= MAX_MULTIPLIER:
            raise ValueError(f"a multiplier is more than 0 and at most {MAX_MULTIPLIER}")
        return _decimal(number)
    highest = MAX_POINTS_PER_YUAN if term == EARN_RATE else MAX_PRICE
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= highest:
        raise ValueError(f"{term} is a whole number from 1 to {highest}, not {value!r}")
    return int(text)


def _with_value(config: Config, term: str, value: Any) -> Config:
    """The configuration with one (non-expiry) term set."""
    if term == EARN_RATE:
        earn = config.earn.model_copy(update={"points_per_yuan": int(value)})
        return config.model_copy(update={"earn": earn})
    if term == DEDUCTION:
        redemption = config.redemption.model_copy(update={"deduction_points_per_yuan": int(value)})
        return config.model_copy(update={"redemption": redemption})
    _, subject, _ = term.split(".")
    if term.startswith("earn."):
        categories = [
            c.model_copy(update={"multiplier": Decimal(str(value))}) if c.id == subject else c
            for c in config.earn.categories
        ]
        earn = config.earn.model_copy(update={"categories": categories})
        return config.model_copy(update={"earn": earn})
    items = [
        i.model_copy(update={"price": int(value)}) if i.sku == subject else i
        for i in config.mall.items
    ]
    return config.model_copy(update={"mall": config.mall.model_copy(update={"items": items})})


# --- the configuration in force ----------------------------------------------------------


def in_force(file: Config, changes: Iterable[TermChange], day: date) -> Config:
    """The configuration the bot uses on local `day`: the file, each announced change in force
    by then rewriting the value it was announced against (expiry changes are kept whole, for
    `ExpiryConfig.policy_on` picks by the day points were earned)."""
    changes = list(changes)
    config = file
    for change in changes:
        if change.term.startswith(EXPIRY) or change.effective_on > day:
            continue
        try:
            current = file_value(config, change.term)
        except ValueError:
            continue  # the category or item is gone from the file: nothing to rewrite
        if change.replaces is None or _same(change.term, current, change.replaces):
            config = _with_value(config, change.term, change.value)
    scheduled = tuple(
        ScheduledPolicy(
            **_policy_json(_policy(c.value)),
            effective_on=c.effective_on,
            source=None if c.term == EXPIRY else c.term.removeprefix(f"{EXPIRY}."),
            replaces=None if c.replaces is None else _policy(c.replaces),
        )
        for c in changes
        if c.term.startswith(EXPIRY)
    )
    announced = tuple(
        AnnouncedChange(
            term=c.term, effective_on=c.effective_on, replaces=c.replaces, value=c.value
        )
        for c in changes
    )
    expiry = config.expiry.model_copy(
        update={
            "scheduled": tuple(sorted(scheduled, key=lambda p: p.effective_on)),
            "announced": announced,
        }
    )
    return config.model_copy(update={"expiry": expiry})


# --- the guarantee -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """A term the configuration makes worse without the notice members are owed."""

    term: str
    promised: Any
    configured: Any
    # The day an announced change brings this very value (the file was edited too early).
    scheduled_on: date | None
    # The first day a change announced today could take effect.
    first_day: date

    def __str__(self) -> str:
        old, new = shown_value(self.promised), shown_value(self.configured)
        if self.scheduled_on is not None:
            return (
                f"[{self.term}] {old} → {new} is scheduled for {self.scheduled_on}: keep {old}"
                " in the file until then (the change applies by itself on that day)"
            )
        return (
            f"[{self.term}] {old} → {new} leaves members worse off: announce it with"
            f" `pointsbot schedule-policy-change --term {self.term} ...`; the first day it"
            f" could take effect is {self.first_day}"
        )


def describe_policy(policy: ExpiryPolicy) -> str:
    """An expiry policy for operators: "rolling 12 months", "year end +1", "never"."""
    if policy.mode == "rolling":
        return f"rolling {policy.months} months"
    if policy.mode == "year_end":
        return f"year end +{policy.years}"
    return "never"


def shown_value(value: Any) -> str:
    """A term's stored value for operators."""
    if value is None:
        return "(as configured)"
    return describe_policy(_policy(value)) if isinstance(value, dict) else str(value)


class TermsRefused(ConfigError):
    """The configuration breaks the points-value guarantee; the message names each term."""

    def __init__(self, source: str, refusals: list[Refusal]) -> None:
        lines = [f"{source}: refused: it leaves members worse off without notice"]
        lines += [f"  {refusal}" for refusal in refusals]
        super().__init__("\n".join(lines))
        self.refusals = refusals


def earliest_effective(now: datetime, config: Config) -> date:
    """The first local day a change announced now may take effect."""
    return local_today(now, config) + timedelta(days=config.expiry.policy_notice_days)


def review(
    file: Config,
    changes: list[TermChange],
    promised: Mapping[str, tuple[Any, datetime]] | None,
    now: datetime,
) -> tuple[Config, dict[str, Any], list[Refusal]]:
    """The configuration in force now, its terms, and each term worse than promised that no
    announced change in force brings (none for a new database: the file is the promise)."""
    today = local_today(now, file)
    config = in_force(file, changes, today)
    terms = terms_of(config, today)
    refusals: list[Refusal] = []
    for term, (old, recorded_at) in (promised or {}).items():
        new = terms.get(term)
        if new is None or not worse(term, new, old):
            continue
        recorded_on = local_today(recorded_at, file)
        related = [
            c for c in changes if c.term == term or (term.startswith(EXPIRY) and c.term == EXPIRY)
        ]
        # Announced and come into force since the promise was made: what members were told.
        if any(
            recorded_on < c.effective_on <= today and _same(term, c.value, new) for c in related
        ):
            continue
        ahead = [
            c.effective_on for c in related if c.effective_on > today and _same(term, c.value, new)
        ]
        refusals.append(
            Refusal(term, old, new, min(ahead, default=None), earliest_effective(now, file))
        )
    return config, terms, refusals


def check_terms(conn: sqlite3.Connection, file: Config, now: datetime, source: str) -> Config:
    """The configuration in force, checked against the promise (nothing written); raises
    TermsRefused naming each term."""
    config, _terms, refusals = review(file, term_changes(conn), promised_terms(conn), now)
    if refusals:
        raise TermsRefused(source, refusals)
    return config


def keep_promise(conn: sqlite3.Connection, file: Config, now: datetime, source: str) -> Config:
    """Check the configuration against the promise and make what is in force the promise
    (an improvement, a change come into force, a new item); raises TermsRefused."""
    with atomic(conn):
        config, terms, refusals = review(file, term_changes(conn), promised_terms(conn), now)
        if refusals:
            raise TermsRefused(source, refusals)
        record_promise(conn, terms, now)
    return config


# --- announcing a change -------------------------------------------------------------------


def source_name_key(term: str) -> str:
    """The message naming whose points an expiry term covers."""
    return "source.default" if term == EXPIRY else f"source.{term.removeprefix(f'{EXPIRY}.')}"


POLICY_TEXTS = {
    "rolling": N_("policy.rolling"),
    "year_end": N_("policy.year_end"),
    "never": N_("policy.never"),
}
SOURCE_NAMES = {
    "source.default": N_("source.default"),
    "source.all": N_("source.all"),
    **{f"source.{s}": N_(f"source.{s}") for s in EXPIRY_SOURCES},
}


def describe_change(change: AnnouncedChange, config: Config, i18n: I18n, language: str) -> str:
    """What a change does, in words a member understands (for /rules and the notice)."""
    t = i18n.t
    term, new, old = change.term, change.value, change.replaces
    if term.startswith(EXPIRY):
        policy = _policy(new)
        return t(
            language,
            N_("change.expiry"),
            source=t(language, SOURCE_NAMES[source_name_key(term)]),
            policy=t(language, POLICY_TEXTS[policy.mode], months=policy.months, years=policy.years),
        )
    if term == EARN_RATE:
        return t(language, N_("change.earn_rate"), old=old, new=new)
    if term == DEDUCTION:
        return t(language, N_("change.deduction"), old=old, new=new)
    _, subject, _ = term.split(".")
    if term.startswith("earn."):
        category = config.earn.category(subject)
        name = category.name.get(language) if category else subject
        return t(language, N_("change.multiplier"), category=name, old=old, new=new)
    item = config.mall.item(subject)
    name = item.name.get(language) if item else subject
    return t(language, N_("change.price"), item=name, old=old, new=new)


def schedule_change(
    conn: sqlite3.Connection,
    file: Config,
    *,
    term: str,
    value: Any,
    effective_on: date,
    actor: str,
    now: datetime,
) -> tuple[TermChange, int]:
    """Announce a change of a term from local `effective_on` and notify every member once;
    a change worse for members needs the notice period. Raises ValueError (unknown term, bad
    value, nothing changes), RuleError (too soon) or storage's InvalidRequest (that term
    already changes that day)."""
    file_value(file, term)  # the term exists
    new = normalized(term, value)
    today = local_today(now, file)
    changes = term_changes(conn)
    # The value in force the day before: what the change replaces.
    before = in_force(file, changes, effective_on - timedelta(days=1))
    if term == EXPIRY:
        old: Any = _policy_json(before.expiry.default_on(effective_on - timedelta(days=1)))
    elif term.startswith(f"{EXPIRY}."):
        old = terms_of(before, effective_on - timedelta(days=1))[term]
    else:
        old = file_value(before, term)
    if _same(term, old, new):
        raise ValueError(f"{term} is {shown_value(old)} already on {effective_on}: nothing changes")
    first = earliest_effective(now, file)
    if worse(term, new, old) and effective_on < first:
        raise RuleError(
            N_("error.policy_too_soon"),
            day=effective_on.isoformat(),
            first=first.isoformat(),
            days=file.expiry.policy_notice_days,
        )
    if effective_on <= today:
        raise ValueError(
            f"{effective_on} is not after today ({today}): an improvement applies at once"
            " when the file says it"
        )
    i18n = I18n.load(file.program.default_language)
    announced = AnnouncedChange(term=term, effective_on=effective_on, replaces=old, value=new)
    described = {
        language: describe_change(announced, file, i18n, language) for language in ("zh-CN", "en")
    }
    # The change and every member's notice, all or nothing.
    with atomic(conn):
        return announce_term_change(
            conn,
            term=term,
            replaces=old,
            value=new,
            effective_on=effective_on,
            actor=actor,
            now=now,
            message_key=N_("push.term_change"),
            params={"day": effective_on.isoformat(), "change": described},
        )


def upcoming(config: Config, today: date) -> list[AnnouncedChange]:
    """The announced changes not in force yet on local `today`, by day (what /rules lists)."""
    return [c for c in config.expiry.announced if c.effective_on > today]
