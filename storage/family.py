"""Households: members who share points, and the history of who belonged when.

A member belongs to at most one household at a time (a unique index says so); a stay is a
row in `household_members` that is ended, never deleted, so whether two members shared a
household at the instant of a transfer can be checked afterwards (`pointsbot audit`). Like
`storage.feedback`, the core is synchronous functions on a `sqlite3.Connection`, each
all-or-nothing through `storage.sql.atomic`; the `Families` facade serves them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from storage.errors import Conflict, InvalidRequest, InvalidState, LimitReached, NotFound
from storage.facade import Facade, looks_up, reads, writes
from storage.ledger import Balance
from storage.ledger.queries import balance as ledger_balance
from storage.pushes import Push, enqueue
from storage.sql import atomic, dt, insert_id, required_now, ts

LeftHow = Literal["left", "removed", "dissolved"]


@dataclass(frozen=True, slots=True)
class HouseholdMember:
    """One current member of a household."""

    member_id: int
    telegram_id: int
    member_code: str
    name: str
    joined_at: datetime
    is_head: bool
    # The member lets the household see their balance and what expires soon.
    shares_balance: bool


@dataclass(frozen=True, slots=True)
class Household:
    """A household and its current members (the head first, then by joining)."""

    id: int
    head_id: int
    created_at: datetime
    members: tuple[HouseholdMember, ...]

    def member(self, member_id: int) -> HouseholdMember | None:
        """The current member with this id, or None."""
        for m in self.members:
            if m.member_id == member_id:
                return m
        return None


_MEMBERS_SELECT: Final = (
    "SELECT hm.member_id, m.telegram_id, m.member_code,"
    " trim(m.first_name || ' ' || coalesce(m.last_name, '')), hm.joined_at, m.share_balance"
    " FROM household_members AS hm JOIN members AS m ON m.id = hm.member_id"
    " WHERE hm.household_id = ? AND hm.left_at IS NULL ORDER BY hm.joined_at, hm.id"
)


def household_by_id(conn: sqlite3.Connection, household_id: int) -> Household:
    """A household that has not been dissolved, with its current members; raises NotFound."""
    row = conn.execute(
        "SELECT id, head_id, created_at FROM households WHERE id = ? AND dissolved_at IS NULL",
        (household_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"household {household_id}")
    members = [
        HouseholdMember(
            member_id=r[0],
            telegram_id=r[1],
            member_code=r[2],
            name=r[3],
            joined_at=dt(r[4]),
            is_head=r[0] == row[1],
            shares_balance=bool(r[5]),
        )
        for r in conn.execute(_MEMBERS_SELECT, (household_id,))
    ]
    members.sort(key=lambda m: not m.is_head)  # stable: the head first, then by joining
    return Household(id=row[0], head_id=row[1], created_at=dt(row[2]), members=tuple(members))


def household_id_of(conn: sqlite3.Connection, member_id: int) -> int | None:
    """The id of the member's current household, or None."""
    row = conn.execute(
        "SELECT household_id FROM household_members WHERE member_id = ? AND left_at IS NULL",
        (member_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def household_of(conn: sqlite3.Connection, member_id: int) -> Household | None:
    """The member's current household, or None."""
    household_id = household_id_of(conn, member_id)
    return None if household_id is None else household_by_id(conn, household_id)


def current_stay_since(conn: sqlite3.Connection, member_id: int) -> datetime | None:
    """When the member joined their current household (the cooling-off counts from it)."""
    row = conn.execute(
        "SELECT joined_at FROM household_members WHERE member_id = ? AND left_at IS NULL",
        (member_id,),
    ).fetchone()
    return None if row is None else dt(row[0])


def shared_household_at(
    conn: sqlite3.Connection, member_a: int, member_b: int, at: datetime
) -> int | None:
    """The household both members belonged to at instant `at`, or None."""
    at_ts = ts(at)
    row = conn.execute(
        "SELECT a.household_id FROM household_members AS a"
        " JOIN household_members AS b ON b.household_id = a.household_id"
        " WHERE a.member_id = ? AND b.member_id = ?"
        " AND a.joined_at <= ? AND (a.left_at IS NULL OR a.left_at > ?)"
        " AND b.joined_at <= ? AND (b.left_at IS NULL OR b.left_at > ?)",
        (member_a, member_b, at_ts, at_ts, at_ts, at_ts),
    ).fetchone()
    return None if row is None else int(row[0])


def record_event(
    conn: sqlite3.Connection,
    household_id: int,
    kind: str,
    *,
    member_id: int | None,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> int:
    """Append one line to the household's audit trail; return its id."""
    return insert_id(
        conn,
        "INSERT INTO household_events (household_id, kind, member_id, actor, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (household_id, kind, member_id, actor, reason, ts(now)),
    )


def create_household(
    conn: sqlite3.Connection, member_id: int, *, actor: str, now: datetime | None = None
) -> Household:
    """A new household with the member as its head; raises InvalidState when the member
    already belongs to one."""
    now = required_now(now)
    with atomic(conn):
        if household_id_of(conn, member_id) is not None:
            raise InvalidState("in a household")
        household_id = insert_id(
            conn,
            "INSERT INTO households (created_by, head_id, created_at) VALUES (?, ?, ?)",
            (member_id, member_id, ts(now)),
        )
        conn.execute(
            "INSERT INTO household_members (household_id, member_id, joined_at) VALUES (?, ?, ?)",
            (household_id, member_id, ts(now)),
        )
        record_event(conn, household_id, "created", member_id=member_id, actor=actor, now=now)
        return household_by_id(conn, household_id)


def join_household(
    conn: sqlite3.Connection,
    household_id: int,
    member_id: int,
    *,
    max_members: int,
    actor: str,
    now: datetime | None = None,
) -> Household:
    """Add a member to a household; raises NotFound (dissolved), InvalidState (already in a
    household) and LimitReached (full)."""
    now = required_now(now)
    with atomic(conn):
        household = household_by_id(conn, household_id)
        if household_id_of(conn, member_id) is not None:
            raise InvalidState("in a household")
        if len(household.members) >= max_members:
            raise LimitReached(max_members)
        conn.execute(
            "INSERT INTO household_members (household_id, member_id, joined_at) VALUES (?, ?, ?)",
            (household_id, member_id, ts(now)),
        )
        record_event(conn, household_id, "joined", member_id=member_id, actor=actor, now=now)
        return household_by_id(conn, household_id)


def end_stay(
    conn: sqlite3.Connection,
    member_id: int,
    how: LeftHow,
    *,
    actor: str,
    now: datetime | None = None,
    reason: str | None = None,
) -> int:
    """End the member's current stay (left or removed) and return the household's id; raises
    NotFound when the member is in no household."""
    now = required_now(now)
    with atomic(conn):
        household_id = household_id_of(conn, member_id)
        if household_id is None:
            raise NotFound(f"member {member_id} is in no household")
        conn.execute(
            "UPDATE household_members SET left_at = ?, left_how = ?"
            " WHERE member_id = ? AND left_at IS NULL",
            (ts(now), how, member_id),
        )
        if how != "dissolved":
            record_event(
                conn, household_id, how, member_id=member_id, actor=actor, now=now, reason=reason
            )
        return household_id


# --- invitations, leaving, removal, the head role, dissolution (issue 20) -------------------

InvitationAnswer = Literal["accepted", "declined", "revoked"]


@dataclass(frozen=True, slots=True)
class Invitation:
    """A one-time invitation into a household, for one person."""

    id: int
    household_id: int
    invited_by: int
    inviter_name: str
    token: str
    code: str
    created_at: datetime
    expires_at: datetime
    answer: InvitationAnswer | None
    answered_by: int | None


@dataclass(frozen=True, slots=True)
class Departure:
    """What a member's leaving (or removal) changed: who heads the household now, whether it
    ended, and who is still in it."""

    household_id: int
    member_id: int
    # The stay that ended: one notice per stay, whatever is retried.
    stay_id: int
    event_id: int
    new_head_id: int | None
    ended: bool
    remaining: tuple[HouseholdMember, ...]


@dataclass(frozen=True, slots=True)
class HeadChange:
    """The head role handed from one member to another."""

    household_id: int
    event_id: int
    old_head_id: int
    new_head_id: int


@dataclass(frozen=True, slots=True)
class Dissolution:
    """A household dissolved by staff: who was in it when it ended."""

    household_id: int
    event_id: int
    reason: str
    members: tuple[HouseholdMember, ...]


@dataclass(frozen=True, slots=True)
class HouseholdEvent:
    """One line of a household's audit trail."""

    id: int
    household_id: int
    kind: str
    member_id: int | None
    member_code: str | None
    actor: str
    reason: str | None
    at: datetime


_INVITATION_SELECT: Final = (
    "SELECT i.id, i.household_id, i.invited_by,"
    " trim(m.first_name || ' ' || coalesce(m.last_name, '')), i.token, i.code, i.created_at,"
    " i.expires_at, i.answer, i.answered_by"
    " FROM household_invitations AS i JOIN members AS m ON m.id = i.invited_by"
)


def _invitation(row: tuple[Any, ...]) -> Invitation:
    return Invitation(
        id=int(row[0]),
        household_id=int(row[1]),
        invited_by=int(row[2]),
        inviter_name=str(row[3]),
        token=str(row[4]),
        code=str(row[5]),
        created_at=dt(int(row[6])),
        expires_at=dt(int(row[7])),
        answer=row[8],
        answered_by=None if row[9] is None else int(row[9]),
    )


def create_invitation(
    conn: sqlite3.Connection,
    member_id: int,
    *,
    token: str,
    code: str,
    expires_at: datetime,
    max_members: int,
    now: datetime | None = None,
) -> Invitation:
    """A new invitation into the member's household; raises NotFound (in no household),
    LimitReached (the household is full) and Conflict (the token or code is taken: draw
    again)."""
    now = required_now(now)
    with atomic(conn):
        household_id = household_id_of(conn, member_id)
        if household_id is None:
            raise NotFound(f"member {member_id} is in no household")
        if len(household_by_id(conn, household_id).members) >= max_members:
            raise LimitReached(max_members)
        # DO NOTHING rather than a caught IntegrityError: on PostgreSQL a failed statement
        # would spoil the whole transaction.
        inserted = conn.execute(
            "INSERT INTO household_invitations"
            " (household_id, invited_by, token, code, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (household_id, member_id, token, code, ts(now), ts(expires_at)),
        ).fetchone()
        if inserted is None:
            raise Conflict("invitation token or code taken")
        return invitation_by_id(conn, int(inserted[0]))


def invitation_by_id(conn: sqlite3.Connection, invitation_id: int) -> Invitation:
    """The invitation with this id; raises NotFound."""
    row = conn.execute(_INVITATION_SELECT + " WHERE i.id = ?", (invitation_id,)).fetchone()
    if row is None:
        raise NotFound(f"invitation {invitation_id}")
    return _invitation(row)


def invitation_by_token(conn: sqlite3.Connection, token: str) -> Invitation | None:
    """The invitation a deep link names, or None."""
    row = conn.execute(_INVITATION_SELECT + " WHERE i.token = ?", (token,)).fetchone()
    return None if row is None else _invitation(row)


def invitation_by_code(conn: sqlite3.Connection, code: str) -> Invitation | None:
    """The invitation a typed code names: the open one, else the latest that had it."""
    row = conn.execute(
        f"{_INVITATION_SELECT} WHERE i.code = ? ORDER BY i.answer IS NULL DESC, i.id DESC",
        (code,),
    ).fetchone()
    return None if row is None else _invitation(row)


def _household_open(conn: sqlite3.Connection, household_id: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM households WHERE id = ? AND dissolved_at IS NULL", (household_id,)
    ).fetchone()
    return row is not None


def _revoke_open_invitations(conn: sqlite3.Connection, household_id: int, now: datetime) -> None:
    conn.execute(
        "UPDATE household_invitations SET answer = 'revoked', answered_at = ?"
        " WHERE household_id = ? AND answer IS NULL",
        (ts(now), household_id),
    )


def answer_invitation(
    conn: sqlite3.Connection,
    invitation_id: int,
    member_id: int,
    *,
    accept: bool,
    max_members: int,
    actor: str,
    notice: Callable[[Invitation], Push | None] | None = None,
    now: datetime | None = None,
) -> Invitation:
    """Accept (joining the household) or decline an open invitation, and queue the inviter's
    `notice`, all in one transaction. Raises NotFound (no such invitation, or the household is
    dissolved), InvalidState (status 'accepted'/'declined'/'revoked': answered already;
    'expired'; 'own': the inviter's own; 'in a household': the invitee is in one) and
    LimitReached (the household is full)."""
    now = required_now(now)
    with atomic(conn):
        invitation = invitation_by_id(conn, invitation_id)
        if invitation.answer is not None:
            raise InvalidState(invitation.answer)
        if invitation.invited_by == member_id:
            raise InvalidState("own")
        if invitation.expires_at <= now:
            raise InvalidState("expired")
        if not _household_open(conn, invitation.household_id):
            raise NotFound(f"household {invitation.household_id}")
        if accept:
            # Checked here, inside the write transaction: of two invitees accepting into the
            # last place at once, the second finds the household full.
            join_household(
                conn,
                invitation.household_id,
                member_id,
                max_members=max_members,
                actor=actor,
                now=now,
            )
        conn.execute(
            "UPDATE household_invitations SET answer = ?, answered_by = ?, answered_at = ?"
            " WHERE id = ? AND answer IS NULL",
            ("accepted" if accept else "declined", member_id, ts(now), invitation_id),
        )
        answered = invitation_by_id(conn, invitation_id)
        if notice is not None and (push := notice(answered)) is not None:
            enqueue(conn, [push], now)
        return answered


def _stay_id(conn: sqlite3.Connection, member_id: int) -> int:
    row = conn.execute(
        "SELECT id FROM household_members WHERE member_id = ? AND left_at IS NULL", (member_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"member {member_id} is in no household")
    return int(row[0])


def _last_event_id(conn: sqlite3.Connection, household_id: int) -> int:
    return int(
        conn.execute(
            "SELECT max(id) FROM household_events WHERE household_id = ?", (household_id,)
        ).fetchone()[0]
    )


def _end_household(
    conn: sqlite3.Connection, household_id: int, *, actor: str, reason: str, now: datetime
) -> int:
    conn.execute(
        "UPDATE households SET dissolved_at = ?, dissolved_by = ?, dissolve_reason = ?"
        " WHERE id = ?",
        (ts(now), actor, reason, household_id),
    )
    _revoke_open_invitations(conn, household_id, now)
    return record_event(
        conn, household_id, "dissolved", member_id=None, actor=actor, now=now, reason=reason
    )


def leave_household(
    conn: sqlite3.Connection,
    member_id: int,
    *,
    how: Literal["left", "removed"] = "left",
    head_id: int | None = None,
    actor: str,
    notices: Callable[[Departure], Sequence[Push]] | None = None,
    now: datetime | None = None,
) -> Departure:
    """End the member's stay (they left, or the head `head_id` removed them): a head who
    leaves hands the role to the longest-standing member, and the last member to leave ends
    the household. Queues `notices` in the same transaction. Raises NotFound (in no
    household) and InvalidState ('not head': `head_id` heads no longer; 'head': the head
    cannot be removed)."""
    now = required_now(now)
    with atomic(conn):
        household_id = household_id_of(conn, member_id)
        if household_id is None:
            raise NotFound(f"member {member_id} is in no household")
        household = household_by_id(conn, household_id)
        if head_id is not None:
            if household.head_id != head_id:
                raise InvalidState("not head")
            if member_id == head_id:
                raise InvalidState("head")
        stay_id = _stay_id(conn, member_id)
        end_stay(conn, member_id, how, actor=actor, now=now)
        event_id = _last_event_id(conn, household_id)
        # The head first, then by joining: the longest-standing of the others is next.
        remaining = tuple(m for m in household.members if m.member_id != member_id)
        new_head_id: int | None = None
        ended = not remaining
        if ended:
            _end_household(conn, household_id, actor=actor, reason="last member left", now=now)
        elif household.head_id == member_id:
            new_head_id = min(remaining, key=lambda m: m.joined_at).member_id
            conn.execute(
                "UPDATE households SET head_id = ? WHERE id = ?", (new_head_id, household_id)
            )
            record_event(
                conn, household_id, "head_changed", member_id=new_head_id, actor=actor, now=now
            )
        departure = Departure(
            household_id=household_id,
            member_id=member_id,
            stay_id=stay_id,
            event_id=event_id,
            new_head_id=new_head_id,
            ended=ended,
            remaining=remaining,
        )
        if notices is not None:
            enqueue(conn, notices(departure), now)
        return departure


def hand_over_head(
    conn: sqlite3.Connection,
    head_id: int,
    new_head_id: int,
    *,
    actor: str,
    notices: Callable[[HeadChange], Sequence[Push]] | None = None,
    now: datetime | None = None,
) -> HeadChange:
    """Make another current member the head; raises NotFound (in no household), InvalidState
    ('not head'; 'not a member': the new head is not in the household)."""
    now = required_now(now)
    with atomic(conn):
        household_id = household_id_of(conn, head_id)
        if household_id is None:
            raise NotFound(f"member {head_id} is in no household")
        household = household_by_id(conn, household_id)
        if household.head_id != head_id:
            raise InvalidState("not head")
        if new_head_id == head_id or household.member(new_head_id) is None:
            raise InvalidState("not a member")
        conn.execute("UPDATE households SET head_id = ? WHERE id = ?", (new_head_id, household_id))
        event_id = record_event(
            conn, household_id, "head_changed", member_id=new_head_id, actor=actor, now=now
        )
        change = HeadChange(household_id, event_id, head_id, new_head_id)
        if notices is not None:
            enqueue(conn, notices(change), now)
        return change


def dissolve_household(
    conn: sqlite3.Connection,
    household_id: int,
    *,
    actor: str,
    reason: str,
    notices: Callable[[Dissolution], Sequence[Push]] | None = None,
    now: datetime | None = None,
) -> Dissolution:
    """End a household (staff, with a reason): every stay ends as 'dissolved', open
    invitations are revoked; raises NotFound (no such household, or dissolved already) and
    InvalidRequest (no reason)."""
    now = required_now(now)
    if not reason.strip():
        raise InvalidRequest("a reason is required")
    with atomic(conn):
        household = household_by_id(conn, household_id)
        for member in household.members:
            end_stay(conn, member.member_id, "dissolved", actor=actor, now=now, reason=reason)
        event_id = _end_household(conn, household_id, actor=actor, reason=reason, now=now)
        dissolution = Dissolution(household_id, event_id, reason, household.members)
        if notices is not None:
            enqueue(conn, notices(dissolution), now)
        return dissolution


def set_share_balance(conn: sqlite3.Connection, member_id: int, share: bool) -> bool:
    """Turn the member's balance sharing with their household on or off; return the setting."""
    with atomic(conn):
        found = conn.execute(
            "UPDATE members SET share_balance = ? WHERE id = ?", (int(share), member_id)
        ).rowcount
        if not found:
            raise NotFound(f"member {member_id}")
        return share


def shares_balance(conn: sqlite3.Connection, member_id: int) -> bool:
    """Whether the member shows their balance to their household."""
    row = conn.execute("SELECT share_balance FROM members WHERE id = ?", (member_id,)).fetchone()
    return bool(row and row[0])


def household_glance(
    conn: sqlite3.Connection, member_id: int, now: datetime | None = None
) -> tuple[Household, dict[int, Balance]] | None:
    """The member's household and the balances of those of its members who share theirs
    (one consistent read), or None when the member is in no household."""
    now = required_now(now)
    household = household_of(conn, member_id)
    if household is None:
        return None
    balances = {
        m.member_id: ledger_balance(conn, m.member_id, now)
        for m in household.members
        if m.shares_balance
    }
    return household, balances


def household_events(
    conn: sqlite3.Connection, household_id: int | None = None
) -> Iterator[HouseholdEvent]:
    """The audit trail of one household, or of all, oldest first."""
    sql = (
        "SELECT e.id, e.household_id, e.kind, e.member_id, m.member_code, e.actor, e.reason,"
        " e.at FROM household_events AS e LEFT JOIN members AS m ON m.id = e.member_id"
    )
    # No `?1 IS NULL OR ...`: PostgreSQL can give an untyped NULL parameter no type.
    rows = (
        conn.execute(f"{sql} ORDER BY e.id")
        if household_id is None
        else conn.execute(f"{sql} WHERE e.household_id = ? ORDER BY e.id", (household_id,))
    )
    for row in rows:
        yield HouseholdEvent(
            id=row[0],
            household_id=row[1],
            kind=row[2],
            member_id=row[3],
            member_code=row[4],
            actor=row[5],
            reason=row[6],
            at=dt(row[7]),
        )


class Families(Facade):
    """Async access to households (one write transaction per call)."""

    household_of = looks_up(household_of)
    household_by_id = looks_up(household_by_id)
    current_stay_since = looks_up(current_stay_since)
    create_household = writes(create_household)
    join_household = writes(join_household)
    end_stay = writes(end_stay)
    create_invitation = writes(create_invitation)
    invitation_by_id = looks_up(invitation_by_id)
    invitation_by_token = looks_up(invitation_by_token)
    invitation_by_code = looks_up(invitation_by_code)
    answer_invitation = writes(answer_invitation)
    leave_household = writes(leave_household)
    hand_over_head = writes(hand_over_head)
    dissolve_household = writes(dissolve_household)
    set_share_balance = writes(set_share_balance)
    shares_balance = looks_up(shares_balance)
    household_glance = reads(household_glance)
