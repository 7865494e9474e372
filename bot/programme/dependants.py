"""Family birthdays: the children and pets a member adds, and their greetings and gifts.

Each dependant follows the member's own birthday rules (bot/programme/birthdays.py): set once,
changed at most once a year, no gift when entered or changed within `min_days_before` days
of the date, 29 February by the configured policy. Removing a dependant and adding it again
continues its history, and a member receives at most `max_dependants` such gifts a year, so
neither a re-entry nor a new name collects a second gift.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from bot.config import Config, DependantGift, MallItem
from bot.i18n import N_
from bot.programme.birthdays import (
    CHANGE_INTERVAL,
    NotABirthday,
    birthday_dates,
    dependant_gift_key,
    gift_allowed,
    next_celebration,
    parse_birthday,
)
from bot.programme.calendar import local_today
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from bot.programme.expiry import expires_at
from bot.programme.mall import voucher_last_day
from storage.dependants import (
    KINDS,
    ChangeTooSoon,
    Dependant,
    Dependants,
    DuplicateDependant,
    TooManyDependants,
)
from storage.errors import NotFound, StoreError
from storage.mall import Redemption
from storage.pushes import SERVICE, Push

log = logging.getLogger(__name__)

NAME_MAX: Final = 20
# Inside a name: the joiner of emoji sequences (👨‍👧) is text, every other format or control
# character is not (a newline, a direction override that reorders the greeting).
_JOINER: Final = "\u200d"

# The greeting for each kind: without a gift, with points, with a mall item.
GREETINGS: Final = {
    "child": (N_("push.dep_child"), N_("push.dep_child_points"), N_("push.dep_child_item")),
    "pet": (N_("push.dep_pet"), N_("push.dep_pet_points"), N_("push.dep_pet_item")),
}


class StaleStep(RuleError):
    """The conversation's step no longer matches what the member has (restart, other chat)."""


# --- what /rules and the job say about the gifts ------------------------------------------


@dataclass(frozen=True, slots=True)
class DependantGiftTerms:
    """The gift for one kind of dependant: points, a mall item, or none (a greeting)."""

    kind: str
    points: int | None
    item: MallItem | None


@dataclass(frozen=True, slots=True)
class FamilyBirthdayTerms:
    """Family birthdays as /rules states them."""

    gifts: tuple[DependantGiftTerms, ...]
    max_dependants: int
    min_days_before: int


def gift_for(kind: str, config: Config) -> DependantGiftTerms:
    """The configured gift for a kind of dependant."""
    gift: DependantGift | None = getattr(config.birthday, kind)
    if gift is None:
        return DependantGiftTerms(kind, None, None)
    item = None if gift.item is None else config.mall.item(gift.item)
    return DependantGiftTerms(kind, gift.points, item)


def dependant_gift_terms(config: Config) -> FamilyBirthdayTerms | None:
    """Family birthdays' terms, or None when members cannot add dependants."""
    if not config.family.enabled or config.family.max_dependants == 0:
        return None
    return FamilyBirthdayTerms(
        tuple(gift_for(kind, config) for kind in KINDS),
        config.family.max_dependants,
        config.birthday.min_days_before,
    )


# --- names -----------------------------------------------------------------------------------


def clean_name(text: str) -> tuple[str, str]:
    """(the name as shown, the name as compared) from what the member typed; raises RuleError."""
    name = text.strip()
    if not 1 <= len(name) <= NAME_MAX or any(
        unicodedata.category(ch).startswith("C") and ch != _JOINER for ch in name
    ):
        raise RuleError(N_("dep.name_invalid"), max=NAME_MAX)
    return name, unicodedata.normalize("NFKC", name).casefold()


# --- the member's list, and what each birthday brings -------------------------------------


@dataclass(frozen=True, slots=True)
class DependantView:
    """A dependant, its next celebration, and whether that one brings the gift."""

    dependant: Dependant
    next_celebration: date
    gift: DependantGiftTerms
    gift_on_next: bool
    # Whether its birthday may be changed now (once a year).
    changeable: bool


@dataclass(frozen=True, slots=True)
class FamilyBirthdays:
    """A member's dependants and whether another can be added."""

    dependants: tuple[DependantView, ...]
    max_dependants: int

    @property
    def can_add(self) -> bool:
        """True when the member may add another dependant."""
        return len(self.dependants) < self.max_dependants


def _changeable(found: Dependant, now: datetime) -> bool:
    return found.changed_at is None or found.changed_at <= now - CHANGE_INTERVAL


async def _view(programme: Programme, found: Dependant, now: datetime) -> DependantView:
    config = programme.config
    upcoming = next_celebration(found.month, found.day, local_today(now, config), config)
    gift = gift_for(found.kind, config)
    has_gift = gift.points is not None or gift.item is not None
    allowed = (
        has_gift
        and gift_allowed(found.entered_at, upcoming, config)
        and not await programme.dependants.gift_booked(
            dependant_gift_key(found.origin_id, upcoming)
        )
    )
    return DependantView(found, upcoming, gift, allowed, _changeable(found, now))


async def family_birthdays(programme: Programme, member_id: int) -> FamilyBirthdays:
    """The member's dependants as /settings lists them."""
    now = programme.now()
    found = await programme.dependants.dependants_of(member_id)
    views = tuple([await _view(programme, d, now) for d in found])
    return FamilyBirthdays(views, programme.config.family.max_dependants)


async def dependant_view(programme: Programme, member_id: int, dependant_id: int) -> DependantView:
    """One current dependant of the member; raises StaleStep when it is not (any more)."""
    try:
        found = await programme.dependants.current_dependant(dependant_id, member_id)
    except NotFound:
        raise StaleStep(N_("button.expired")) from None
    return await _view(programme, found, programme.now())


# --- adding, changing, removing -----------------------------------------------------------


def _require_enabled(config: Config) -> None:
    if dependant_gift_terms(config) is None:
        raise RuleError(N_("dep.unavailable"))


async def start_adding(programme: Programme, member_id: int, kind: str) -> None:
    """The member chose to add a child or pet: remember the kind; raises RuleError (the limit)."""
    config = programme.config
    _require_enabled(config)
    if kind not in KINDS:
        raise StaleStep(N_("button.expired"))
    limit = config.family.max_dependants
    if len(await programme.dependants.dependants_of(member_id)) >= limit:
        raise RuleError(N_("dep.limit"), max=limit)
    await programme.dependants.save_draft(
        member_id, kind=kind, name=None, dependant_id=None, now=programme.now()
    )


async def name_dependant(programme: Programme, member_id: int, text: str) -> str:
    """The member typed the name: keep it for the birthday step; return it. Raises RuleError
    (a bad name, one already there), StaleStep."""
    draft = await programme.dependants.draft(member_id)
    if draft is None or draft.kind is None:
        raise StaleStep(N_("dep.start_again"))
    name, key = clean_name(text)
    for current in await programme.dependants.dependants_of(member_id):
        if current.kind == draft.kind and clean_name(current.name)[1] == key:
            raise RuleError(N_("dep.name_taken"), name=name)
    await programme.dependants.save_draft(
        member_id, kind=draft.kind, name=name, dependant_id=None, now=programme.now()
    )
    return name


@dataclass(frozen=True, slots=True)
class SavedDependant:
    """A dependant as saved, and what its next birthday brings."""

    view: DependantView
    # Why the next celebration brings no gift although the kind has one: "late" (entered
    # within min_days_before), "given" (its gift of that year was given already).
    no_gift_because: str | None
    min_days_before: int


def _parse(text: str, now: datetime, config: Config) -> tuple[int, int, int | None]:
    parsed = parse_birthday(text, local_today(now, config))
    if parsed is None:
        raise NotABirthday(N_("settings.birthday_invalid"), value=text[:32])
    return parsed


async def _saved(programme: Programme, found: Dependant, now: datetime) -> SavedDependant:
    view = await _view(programme, found, now)
    reason = None
    if (view.gift.points is not None or view.gift.item is not None) and not view.gift_on_next:
        late = not gift_allowed(found.entered_at, view.next_celebration, programme.config)
        reason = "late" if late else "given"
    return SavedDependant(view, reason, programme.config.birthday.min_days_before)


async def add_dependant(programme: Programme, member_id: int, text: str) -> SavedDependant:
    """The member typed the birthday: add the dependant named before; raises NotABirthday,
    RuleError (the limit, a change too soon for one added again), StaleStep."""
    config, now = programme.config, programme.now()
    draft = await programme.dependants.draft(member_id)
    if draft is None or draft.kind is None or draft.name is None:
        raise StaleStep(N_("dep.start_again"))
    month, day, year = _parse(text, now, config)
    name, key = clean_name(draft.name)
    try:
        found = await programme.dependants.add_dependant(
            member_id,
            draft.kind,
            name,
            key,
            month,
            day,
            year,
            max_dependants=config.family.max_dependants,
            change_allowed_after=now - CHANGE_INTERVAL,
            now=now,
        )
    except TooManyDependants as exc:
        await programme.dependants.clear_draft(member_id)
        raise RuleError(N_("dep.limit"), max=exc.limit) from None
    except DuplicateDependant:
        await programme.dependants.clear_draft(member_id)
        raise RuleError(N_("dep.name_taken"), name=name) from None
    except ChangeTooSoon:
        await programme.dependants.clear_draft(member_id)
        raise RuleError(N_("dep.readded_change_too_soon"), name=name) from None
    await programme.dependants.clear_draft(member_id)
    return await _saved(programme, found, now)


async def start_change(programme: Programme, member_id: int, dependant_id: int) -> Dependant:
    """The member chose to change a dependant's birthday: remember which; raises StaleStep,
    RuleError (changed within the last year)."""
    now = programme.now()
    view = await dependant_view(programme, member_id, dependant_id)
    if not view.changeable:
        raise RuleError(N_("dep.change_too_soon"), name=view.dependant.name)
    await programme.dependants.save_draft(
        member_id, kind=None, name=None, dependant_id=dependant_id, now=now
    )
    return view.dependant


async def change_birthday(programme: Programme, member_id: int, text: str) -> SavedDependant:
    """The member typed the new birthday; raises NotABirthday, RuleError, StaleStep."""
    config, now = programme.config, programme.now()
    draft = await programme.dependants.draft(member_id)
    if draft is None or draft.dependant_id is None:
        raise StaleStep(N_("dep.start_again"))
    month, day, year = _parse(text, now, config)
    try:
        found = await programme.dependants.change_birthday(
            draft.dependant_id,
            member_id,
            month,
            day,
            year,
            change_allowed_after=now - CHANGE_INTERVAL,
            now=now,
        )
    except NotFound:
        await programme.dependants.clear_draft(member_id)
        raise StaleStep(N_("dep.start_again")) from None
    except ChangeTooSoon:
        await programme.dependants.clear_draft(member_id)
        current = await programme.dependants.dependant(draft.dependant_id)
        raise RuleError(N_("dep.change_too_soon"), name=current.name) from None
    await programme.dependants.clear_draft(member_id)
    return await _saved(programme, found, now)


async def remove_dependant(programme: Programme, member_id: int, dependant_id: int) -> Dependant:
    """Remove a dependant (its history stays); raises StaleStep."""
    try:
        return await programme.dependants.remove_dependant(
            dependant_id, member_id, now=programme.now()
        )
    except NotFound:
        raise StaleStep(N_("button.expired")) from None


async def forget_draft(programme: Programme, member_id: int) -> None:
    """The member left the conversation (/cancel): nothing half-entered is kept."""
    await programme.dependants.clear_draft(member_id)


# --- the daily job ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Celebrated:
    """What one day's family birthdays did: greetings planned and gifts booked."""

    greetings: int
    gifts: int


def _item_greeting(
    key: str, member_id: int, message: str, name: str, item: MallItem, redemption: Redemption
) -> Push:
    """The greeting naming the code of the item just given."""
    names = {"zh-CN": item.name.zh_CN, "en": item.name.en}
    params = {"name": name, "item": names, "code": redemption.code}
    return Push(key, member_id, SERVICE, message, params)


async def celebrate_dependants(
    dependants: Dependants, config: Config, today: date, now: datetime
) -> Celebrated:
    """Greet each member on their children's and pets' birthdays celebrated on local `today`,
    with the gift for the kind when the rules allow it (once per dependant and year)."""
    found = await dependants.dependants_on(birthday_dates(today, config))
    gifts = 0
    for dependant in found:
        key = dependant_gift_key(dependant.origin_id, today)
        plain, with_points, with_item = GREETINGS[dependant.kind]
        member = dependant.member_id
        params: dict[str, object] = {"name": dependant.name}
        gift = gift_for(dependant.kind, config)
        due = (
            (gift.points is not None or gift.item is not None)
            and gift_allowed(dependant.entered_at, today, config)
            and not await dependants.gift_booked(key)
            # However many children or pets come and go, no more gifts a year than the limit.
            and await dependants.gifts_in_year(member, today.year) < config.family.max_dependants
        )
        points = gift.points
        if due and gift.item is not None:
            item = gift.item
            greeting = functools.partial(
                _item_greeting, key, member, with_item, dependant.name, item
            )
            try:
                await dependants.give_item(
                    member,
                    item.sku,
                    key=key,
                    expires_at=expires_at(now, config, "birthday"),
                    reason=str(today.year),
                    valid_until=voucher_last_day(item, now, config),
                    refund_if_unused=item.refund_if_unused,
                    offer_ttl=timedelta(minutes=config.mall.offer_minutes),
                    greeting=greeting,
                    now=now,
                )
                gifts += 1
                continue
            except StoreError as exc:
                # Sold out, withdrawn, over its per-member limit: the member is not the one
                # to lose the gift, so its list price comes as points instead.
                log.warning("birthday gift %s (%s) given as points: %s", key, item.sku, exc)
                points = item.price
        if due and points is not None:
            await dependants.give_points(
                member,
                points,
                key=key,
                expires_at=expires_at(now, config, "birthday"),
                reason=str(today.year),
                greeting=Push(key, member, SERVICE, with_points, {**params, "points": points}),
                now=now,
            )
            gifts += 1
            continue
        # No gift (or given already: the greeting with that key is in the outbox, and this
        # one adds nothing).
        await dependants.enqueue_greeting(Push(key, member, SERVICE, plain, params), now)
    return Celebrated(len(found), gifts)
