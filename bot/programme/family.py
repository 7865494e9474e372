"""Households: who may create, invite, join, leave, remove and hand over, what an invitation
looks like, and what members see of each other at a glance.

Every rule is here; the store re-checks the state each step depends on inside its write
transaction (a place still free, the head still the head, an invitation still open), so two
taps at once cannot both succeed. Notices go through the outbox in the same transaction.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from bot.config import Config
from bot.i18n import N_
from bot.programme.calendar import display_expiry
from bot.programme.context import Programme
from bot.programme.errors import RuleError
from storage.errors import Conflict, InvalidRequest, InvalidState, LimitReached, NotFound
from storage.family import (
    Departure,
    Dissolution,
    HeadChange,
    Household,
    HouseholdMember,
    Invitation,
)
from storage.ledger import Balance
from storage.pushes import SERVICE, Push

# A deep link's start payload for an invitation: `fam_` and the token.
START_PREFIX: Final = "fam_"
# 12 random bytes: 16 URL-safe characters, well inside Telegram's 64-character payload.
TOKEN_BYTES: Final = 12
# Codes to type: no 0/O, 1/I/L, so a code read aloud or off a screen is typed right.
CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH: Final = 6
# A drawn code may collide with an open one: draw again this many times.
DRAWS: Final = 5
# A staff reason is kept in the audit trail: one line, not an essay.
MAX_REASON_LENGTH: Final = 200
_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-_")


def new_token() -> str:
    """A fresh, unguessable token for an invitation's deep link."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_code() -> str:
    """A fresh short code for an invitation, to type with /join."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def typed_code(text: str) -> str | None:
    """An invitation code as typed (any case, spaces or dashes), or None when it cannot be
    one."""
    code = "".join(ch for ch in text.upper() if ch not in " -\u3000")
    if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        return None
    return code


def token_from_payload(payload: str | None) -> str | None:
    """The invitation token of a /start payload, or None when it is no invitation."""
    if payload is None or not payload.startswith(START_PREFIX):
        return None
    token = payload.removeprefix(START_PREFIX)
    if not token or len(token) > 48 or not set(token) <= _TOKEN_CHARS:
        return None
    return token


def invitation_link(bot_username: str, invitation: Invitation) -> str:
    """The deep link that opens the bot with the invitation."""
    return f"https://t.me/{bot_username}?start={START_PREFIX}{invitation.token}"


def _enabled(config: Config) -> None:
    if not config.family.enabled:
        raise RuleError(N_("family.disabled"))


def may_remove(household: Household, actor_id: int, member_id: int) -> bool:
    """Only the head removes, and only another current member."""
    return (
        household.head_id == actor_id
        and member_id != actor_id
        and household.member(member_id) is not None
    )


def may_hand_over(household: Household, actor_id: int, member_id: int) -> bool:
    """Only the head hands the role over, and only to another current member."""
    return may_remove(household, actor_id, member_id)


# --- creating and inviting -------------------------------------------------------------------


async def create(programme: Programme, member_id: int, *, actor: str) -> Household:
    """A new household headed by the member; raises RuleError (households are off, the
    member is in one)."""
    _enabled(programme.config)
    try:
        return await programme.families.create_household(
            member_id, actor=actor, now=programme.now()
        )
    except InvalidState:
        raise RuleError(N_("family.already_in")) from None


async def invite(programme: Programme, member_id: int) -> Invitation:
    """A new one-time invitation into the member's household, valid [family]
    invitation_hours; raises RuleError (off, in no household, full)."""
    config = programme.config
    _enabled(config)
    now = programme.now()
    expires = now + timedelta(hours=config.family.invitation_hours)
    for _draw in range(DRAWS):
        try:
            return await programme.families.create_invitation(
                member_id,
                token=new_token(),
                code=new_code(),
                expires_at=expires,
                max_members=config.family.max_members,
                now=now,
            )
        except NotFound:
            raise RuleError(N_("family.not_in")) from None
        except LimitReached as exc:
            raise RuleError(N_("family.full"), max=exc.limit) from None
        except Conflict:
            continue  # a code still open elsewhere: draw another
    raise RuleError(N_("family.try_again"))


@dataclass(frozen=True, slots=True)
class InvitationOffer:
    """An invitation as its invitee sees it before answering."""

    invitation: Invitation
    household: Household


def _refusal(invitation: Invitation, member_id: int, programme: Programme) -> RuleError | None:
    """Why this member may not answer this invitation now, or None."""
    if invitation.answer is not None:
        return RuleError(N_("family.invitation_used"))
    if invitation.invited_by == member_id:
        return RuleError(N_("family.invitation_own"))
    if invitation.expires_at <= programme.now():
        return RuleError(N_("family.invitation_expired"))
    return None


async def _offer(programme: Programme, member_id: int, invitation: Invitation) -> InvitationOffer:
    _enabled(programme.config)
    refused = _refusal(invitation, member_id, programme)
    if refused is not None:
        raise refused
    try:
        household = await programme.families.household_by_id(invitation.household_id)
    except NotFound:
        raise RuleError(N_("family.invitation_dissolved")) from None
    # Said before the buttons, so nobody accepts what cannot be: answer() checks again.
    current = await programme.families.household_of(member_id)
    if current is not None and current.id == household.id:
        raise RuleError(N_("family.already_member"))
    if current is not None:
        raise RuleError(N_("family.in_another"))
    if len(household.members) >= programme.config.family.max_members:
        raise RuleError(N_("family.full"), max=programme.config.family.max_members)
    return InvitationOffer(invitation, household)


async def offer_by_token(programme: Programme, member_id: int, token: str) -> InvitationOffer:
    """The invitation a deep link carries, when the member may answer it; raises RuleError
    (unknown, used, expired, their own, dissolved, they are in a household, full)."""
    invitation = await programme.families.invitation_by_token(token)
    if invitation is None:
        raise RuleError(N_("family.invitation_unknown"))
    return await _offer(programme, member_id, invitation)


async def offer_by_code(programme: Programme, member_id: int, text: str) -> InvitationOffer:
    """The invitation a typed code names, when the member may answer it; raises RuleError
    (not a code, and as offer_by_token)."""
    code = typed_code(text)
    if code is None:
        raise RuleError(N_("family.code_invalid"), length=CODE_LENGTH)
    invitation = await programme.families.invitation_by_code(code)
    if invitation is None:
        raise RuleError(N_("family.invitation_unknown"))
    return await _offer(programme, member_id, invitation)


def answer_notice(name: str) -> Callable[[Invitation], Push | None]:
    """The inviter's notice of an answer, built in the answering transaction."""

    def build(invitation: Invitation) -> Push | None:
        accepted = invitation.answer == "accepted"
        return Push(
            dedupe_key=f"family:invitation:{invitation.id}:answer",
            member_id=invitation.invited_by,
            category=SERVICE,
            message_key=(
                N_("family.notice_accepted") if accepted else N_("family.notice_declined")
            ),
            params={"name": name},
        )

    return build


async def answer(
    programme: Programme,
    member_id: int,
    member_name: str,
    invitation_id: int,
    *,
    accept: bool,
    actor: str,
) -> Invitation:
    """Accept (join) or decline an invitation; the inviter is told either way. Raises
    RuleError (used, expired, own, dissolved, in a household already, full)."""
    config = programme.config
    _enabled(config)
    try:
        return await programme.families.answer_invitation(
            invitation_id,
            member_id,
            accept=accept,
            max_members=config.family.max_members,
            actor=actor,
            notice=answer_notice(member_name),
            now=programme.now(),
        )
    except LimitReached as exc:
        raise RuleError(N_("family.full"), max=exc.limit) from None
    except NotFound:
        raise RuleError(N_("family.invitation_dissolved")) from None
    except InvalidState as exc:
        if exc.status in ("accepted", "declined"):
            # A double tap (or a redelivered update) of the invitee's own answer.
            again = await programme.families.invitation_by_id(invitation_id)
            if again.answered_by == member_id:
                key = (
                    N_("family.already_member")
                    if exc.status == "accepted"
                    else N_("family.declined_before")
                )
                raise RuleError(key) from None
        keys = {
            "expired": N_("family.invitation_expired"),
            "own": N_("family.invitation_own"),
            "in a household": N_("family.in_another"),
        }
        raise RuleError(keys.get(exc.status, N_("family.invitation_used"))) from None


# --- leaving, removing, handing over, dissolving ---------------------------------------------


def _departure_notices(name: str, removed: bool) -> Callable[[Departure], list[Push]]:
    def build(departure: Departure) -> list[Push]:
        key = f"family:stay:{departure.stay_id}"
        pushes = []
        if removed:
            pushes.append(
                Push(
                    f"{key}:removed", departure.member_id, SERVICE, N_("family.notice_removed"), {}
                )
            )
        for other in departure.remaining:
            if other.member_id == departure.new_head_id:
                message = N_("family.notice_left_you_head")
            elif removed:
                continue  # the head removed them: the others see it in the household view
            else:
                message = N_("family.notice_left")
            pushes.append(
                Push(f"{key}:{other.member_id}", other.member_id, SERVICE, message, {"name": name})
            )
        return pushes

    return build


async def leave(programme: Programme, member_id: int, member_name: str, *, actor: str) -> Departure:
    """Leave the household: a head's role passes to the longest-standing member, and the last
    one out ends it; the others are told. Raises RuleError (in no household)."""
    try:
        return await programme.families.leave_household(
            member_id,
            actor=actor,
            notices=_departure_notices(member_name, removed=False),
            now=programme.now(),
        )
    except NotFound:
        raise RuleError(N_("family.not_in")) from None


async def remove(
    programme: Programme, head_id: int, member_id: int, *, actor: str
) -> tuple[Departure, HouseholdMember]:
    """The head removes another member, who is told; returns the departure and who left.
    Raises RuleError (not the head, not a member of the household)."""
    household = await programme.families.household_of(head_id)
    if household is None:
        raise RuleError(N_("family.not_in"))
    if household.head_id != head_id:
        raise RuleError(N_("family.not_head"))
    removed = household.member(member_id)
    if removed is None or not may_remove(household, head_id, member_id):
        raise RuleError(N_("family.member_gone"))
    try:
        departure = await programme.families.leave_household(
            member_id,
            how="removed",
            head_id=head_id,
            actor=actor,
            notices=_departure_notices(removed.name, removed=True),
            now=programme.now(),
        )
    except NotFound:
        raise RuleError(N_("family.member_gone")) from None
    except InvalidState as exc:
        if exc.status == "not head":
            raise RuleError(N_("family.not_head")) from None
        raise RuleError(N_("family.member_gone")) from None
    return departure, removed


async def hand_over(
    programme: Programme, head_id: int, new_head_id: int, *, actor: str
) -> tuple[HeadChange, HouseholdMember]:
    """The head makes another member head, who is told; returns the change and the new head.
    Raises RuleError (not the head, not a member)."""
    household = await programme.families.household_of(head_id)
    if household is None:
        raise RuleError(N_("family.not_in"))
    if household.head_id != head_id:
        raise RuleError(N_("family.not_head"))
    new_head, old_head = household.member(new_head_id), household.member(head_id)
    if new_head is None or old_head is None or not may_hand_over(household, head_id, new_head_id):
        raise RuleError(N_("family.member_gone"))

    def notices(change: HeadChange) -> list[Push]:
        return [
            Push(
                f"family:event:{change.event_id}:{change.new_head_id}",
                change.new_head_id,
                SERVICE,
                N_("family.notice_head_to_you"),
                {"name": old_head.name},
            )
        ]

    try:
        change = await programme.families.hand_over_head(
            head_id, new_head_id, actor=actor, notices=notices, now=programme.now()
        )
    except NotFound:
        raise RuleError(N_("family.not_in")) from None
    except InvalidState as exc:
        if exc.status == "not head":
            raise RuleError(N_("family.not_head")) from None
        raise RuleError(N_("family.member_gone")) from None
    return change, new_head


def clean_reason(text: str) -> str:
    """A staff reason on one line; raises RuleError (missing, too long)."""
    reason = " ".join(text.split())
    if not reason:
        raise RuleError(N_("family.reason_required"))
    if len(reason) > MAX_REASON_LENGTH:
        raise RuleError(N_("family.reason_too_long"), max=MAX_REASON_LENGTH)
    return reason


async def dissolve(programme: Programme, member_id: int, reason: str, *, actor: str) -> Dissolution:
    """Staff end the member's household with a reason (kept in the audit); every member is
    told. Raises RuleError (no reason, in no household)."""
    reason = clean_reason(reason)
    household = await programme.families.household_of(member_id)
    if household is None:
        raise RuleError(N_("family.staff_no_household"))

    def notices(dissolution: Dissolution) -> list[Push]:
        return [
            Push(
                f"family:event:{dissolution.event_id}:{m.member_id}",
                m.member_id,
                SERVICE,
                N_("family.notice_dissolved"),
                {"reason": dissolution.reason},
            )
            for m in dissolution.members
        ]

    try:
        return await programme.families.dissolve_household(
            household.id, actor=actor, reason=reason, notices=notices, now=programme.now()
        )
    except (NotFound, InvalidRequest):
        raise RuleError(N_("family.staff_no_household")) from None


# --- the household at a glance ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberGlance:
    """One member in the household view: balance and next expiry only when they share."""

    member_id: int
    name: str
    is_head: bool
    is_you: bool
    shares: bool
    available: int | None
    # The next points to lapse and their last valid local day (None: nothing dated).
    next_expiry: date | None
    next_expiring: int | None


@dataclass(frozen=True, slots=True)
class Glance:
    """The household as a member sees it."""

    household_id: int
    members: tuple[MemberGlance, ...]
    # What the sharing members hold together, and how many share.
    shared_total: int
    sharing: int
    you_are_head: bool
    you_share: bool
    places_left: int


def _member_glance(
    member: HouseholdMember, viewer_id: int, balance: Balance | None, config: Config
) -> MemberGlance:
    next_expiry: date | None = None
    next_expiring: int | None = None
    if balance is not None:
        dated = [(expiry, points) for expiry, points in balance.expiring if expiry is not None]
        if dated:
            expiry, next_expiring = dated[0]
            next_expiry = display_expiry(expiry, config)
    return MemberGlance(
        member_id=member.member_id,
        name=member.name,
        is_head=member.is_head,
        is_you=member.member_id == viewer_id,
        shares=balance is not None,
        available=None if balance is None else balance.available,
        next_expiry=next_expiry,
        next_expiring=next_expiring,
    )


async def glance(programme: Programme, member_id: int) -> Glance | None:
    """The member's household at a glance, or None when they are in none; raises RuleError
    (households are off)."""
    config = programme.config
    _enabled(config)
    found = await programme.families.household_glance(member_id, programme.now())
    if found is None:
        return None
    household, balances = found
    members = tuple(
        _member_glance(m, member_id, balances.get(m.member_id), config) for m in household.members
    )
    return Glance(
        household_id=household.id,
        members=members,
        shared_total=sum(b.available for b in balances.values()),
        sharing=len(balances),
        you_are_head=household.head_id == member_id,
        you_share=member_id in balances,
        places_left=max(0, config.family.max_members - len(household.members)),
    )


async def set_sharing(programme: Programme, member_id: int, share: bool) -> bool:
    """Show (or stop showing) the member's balance to their household; the new setting."""
    return await programme.families.set_share_balance(member_id, share)


@dataclass(frozen=True, slots=True)
class LeavePreview:
    """What leaving would do, for the confirmation: who heads next, or that it ends."""

    is_head: bool
    successor: str | None
    last: bool


def successor(household: Household, leaving_id: int) -> HouseholdMember | None:
    """Who heads the household after its head leaves: the longest-standing other member."""
    others = [m for m in household.members if m.member_id != leaving_id]
    return min(others, key=lambda m: m.joined_at) if others else None


async def leave_preview(programme: Programme, member_id: int) -> LeavePreview:
    """What the member's leaving would change; raises RuleError (in no household)."""
    household = await programme.families.household_of(member_id)
    if household is None:
        raise RuleError(N_("family.not_in"))
    after = successor(household, member_id)
    is_head = household.head_id == member_id
    return LeavePreview(
        is_head=is_head,
        successor=after.name if is_head and after is not None else None,
        last=after is None,
    )


async def member_choice(programme: Programme, head_id: int, member_id: int) -> HouseholdMember:
    """The member the head picked to remove or make head, still in the household; raises
    RuleError (not in a household, not the head, not a member any more)."""
    household = await programme.families.household_of(head_id)
    if household is None:
        raise RuleError(N_("family.not_in"))
    if household.head_id != head_id:
        raise RuleError(N_("family.not_head"))
    chosen = household.member(member_id)
    if chosen is None or not may_remove(household, head_id, member_id):
        raise RuleError(N_("family.member_gone"))
    return chosen


async def answer_by_token(
    programme: Programme,
    member_id: int,
    member_name: str,
    token: str,
    *,
    accept: bool,
    actor: str,
) -> Invitation:
    """Answer the invitation a button names by its token (unguessable, unlike an id); raises
    RuleError as answer()."""
    invitation = await programme.families.invitation_by_token(token)
    if invitation is None:
        raise RuleError(N_("family.invitation_unknown"))
    return await answer(
        programme, member_id, member_name, invitation.id, accept=accept, actor=actor
    )


async def staff_view(programme: Programme, member_id: int) -> Household | None:
    """The member's current household, for staff (/member)."""
    return await programme.families.household_of(member_id)


async def is_sharing(programme: Programme, member_id: int) -> bool:
    """Whether the member shows their balance to their household (/settings)."""
    return await programme.families.shares_balance(member_id)
