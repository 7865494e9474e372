"""storage.family and bot.programme.family: invitations answered once, the last place taken
once, a head who leaves hands over, staff dissolve with a reason, and the history kept."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.export import HOUSEHOLD_COLUMNS
from bot.programme import family as rules
from storage import ledger
from storage.errors import Conflict, InvalidRequest, InvalidState, LimitReached, NotFound
from storage.family import (
    Families,
    Invitation,
    answer_invitation,
    create_household,
    create_invitation,
    dissolve_household,
    hand_over_head,
    household_by_id,
    household_events,
    household_glance,
    household_of,
    invitation_by_code,
    leave_household,
    set_share_balance,
    shared_household_at,
)
from storage.members import Member, Profile, register_member
from storage.pushes import SERVICE, Push
from storage.store import Store
from tests.postgres import ENGINES, migrated_connection, opened_store

T0 = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
EXPIRES = T0 + timedelta(hours=48)


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


def member(conn: sqlite3.Connection, telegram_id: int, name: str) -> Member:
    return register_member(conn, Profile(telegram_id, name), None, T0)[0]


@pytest.fixture
def people(conn: sqlite3.Connection) -> dict[str, Member]:
    return {n: member(conn, i, n) for i, n in enumerate(("ann", "bob", "cat", "dan"), start=1)}


def invite(
    conn: sqlite3.Connection, inviter: Member, n: int = 0, max_members: int = 6
) -> Invitation:
    return create_invitation(
        conn,
        inviter.id,
        token=f"token-{inviter.id}-{n}-xyz",
        code=f"CODE{inviter.id}{n}"[:6],
        expires_at=EXPIRES,
        max_members=max_members,
        now=T0,
    )


def accept(
    conn: sqlite3.Connection, invitation: Invitation, who: Member, max_members: int = 6
) -> Invitation:
    return answer_invitation(
        conn,
        invitation.id,
        who.id,
        accept=True,
        max_members=max_members,
        actor=f"member:{who.id}",
        now=LATER,
    )


def outbox(conn: sqlite3.Connection) -> list[tuple[str, int, str]]:
    return [
        (r[0], r[1], r[2])
        for r in conn.execute("SELECT dedupe_key, member_id, message_key FROM outbox ORDER BY id")
    ]


def test_an_invitation_is_answered_once_and_the_inviter_told_once(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    create_household(conn, ann.id, actor="member", now=T0)
    invitation = invite(conn, ann)

    def told(inv: Invitation) -> Push:
        return Push(f"family:invitation:{inv.id}:answer", inv.invited_by, SERVICE, "k", {})

    answered = answer_invitation(
        conn, invitation.id, bob.id, accept=True, max_members=6, actor="m", notice=told, now=LATER
    )
    assert answered.answer == "accepted" and answered.answered_by == bob.id
    household = household_of(conn, bob.id)
    assert household is not None and [m.member_id for m in household.members] == [ann.id, bob.id]
    # A second use, by anyone, is refused and tells nobody again.
    with pytest.raises(InvalidState) as refused:
        answer_invitation(
            conn,
            invitation.id,
            cat.id,
            accept=True,
            max_members=6,
            actor="m",
            notice=told,
            now=LATER,
        )
    assert refused.value.status == "accepted"
    assert outbox(conn) == [(f"family:invitation:{invitation.id}:answer", ann.id, "k")]


@pytest.mark.parametrize(
    ("case", "status"),
    [("expired", "expired"), ("own", "own"), ("in a household", "in a household")],
)
def test_invitations_refused_cleanly(
    conn: sqlite3.Connection, people: dict[str, Member], case: str, status: str
) -> None:
    ann, bob = people["ann"], people["bob"]
    create_household(conn, ann.id, actor="m", now=T0)
    invitation = invite(conn, ann)
    who, at = bob, LATER
    if case == "expired":
        at = EXPIRES  # the instant it lapses
    elif case == "own":
        who = ann
    else:
        create_household(conn, bob.id, actor="m", now=T0)
    with pytest.raises(InvalidState) as refused:
        answer_invitation(
            conn, invitation.id, who.id, accept=True, max_members=6, actor="m", now=at
        )
    assert refused.value.status == status
    # Nothing changed: the invitation is still open, nobody joined.
    assert invitation_by_code(conn, invitation.code) == invitation
    assert len(household_by_id(conn, invitation.household_id).members) == 1


def test_a_full_household_takes_no_one_more(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    create_household(conn, ann.id, actor="m", now=T0)
    first, second = invite(conn, ann, 1), invite(conn, ann, 2)
    accept(conn, first, bob, max_members=2)
    with pytest.raises(LimitReached):
        accept(conn, second, cat, max_members=2)
    # And no new invitation can be made while it is full.
    with pytest.raises(LimitReached):
        invite(conn, ann, 3, max_members=2)
    assert invitation_by_code(conn, second.code) == second  # still unanswered


def test_a_declined_invitation_is_closed(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob = people["ann"], people["bob"]
    create_household(conn, ann.id, actor="m", now=T0)
    invitation = invite(conn, ann)
    answered = answer_invitation(
        conn, invitation.id, bob.id, accept=False, max_members=6, actor="m", now=LATER
    )
    assert answered.answer == "declined"
    assert household_of(conn, bob.id) is None
    with pytest.raises(InvalidState):
        accept(conn, invitation, bob)


def test_a_taken_code_is_a_conflict_to_draw_again(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob = people["ann"], people["bob"]
    create_household(conn, ann.id, actor="m", now=T0)
    create_household(conn, bob.id, actor="m", now=T0)
    taken = invite(conn, ann)
    with pytest.raises(Conflict):
        create_invitation(
            conn,
            bob.id,
            token="another-token-1",
            code=taken.code,
            expires_at=EXPIRES,
            max_members=6,
            now=T0,
        )


def test_a_head_who_leaves_hands_over_to_the_longest_standing(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    created = create_household(conn, ann.id, actor="m", now=T0)
    accept(conn, invite(conn, ann, 1), bob)
    later = answer_invitation(
        conn,
        invite(conn, ann, 2).id,
        cat.id,
        accept=True,
        max_members=6,
        actor="m",
        now=LATER + timedelta(hours=1),
    )
    assert later.answer == "accepted"
    # Bob is handed the role first, then handed it back: Ann is head again, then leaves.
    hand_over_head(conn, ann.id, bob.id, actor="m", now=LATER)
    with pytest.raises(InvalidState):
        hand_over_head(conn, ann.id, cat.id, actor="m", now=LATER)  # no longer head
    hand_over_head(conn, bob.id, ann.id, actor="m", now=LATER)
    departure = leave_household(conn, ann.id, actor="m", now=LATER + timedelta(hours=2))
    assert departure.new_head_id == bob.id and not departure.ended
    assert household_by_id(conn, created.id).head_id == bob.id
    # Bob and Cat leave: the last one out ends the household.
    leave_household(conn, bob.id, actor="m", now=LATER + timedelta(hours=3))
    last = leave_household(conn, cat.id, actor="m", now=LATER + timedelta(hours=4))
    assert last.ended
    with pytest.raises(NotFound):
        household_by_id(conn, created.id)
    kinds = [e.kind for e in household_events(conn, created.id)]
    assert kinds == [
        "created",
        "joined",
        "joined",
        "head_changed",
        "head_changed",
        "left",
        "head_changed",
        "left",
        "head_changed",  # Bob was head when he left: Cat heads the household alone
        "left",
        "dissolved",
    ]
    # The history is kept: Ann and Bob shared the household an hour after Bob joined.
    assert shared_household_at(conn, ann.id, bob.id, LATER + timedelta(minutes=30)) == created.id
    assert shared_household_at(conn, ann.id, bob.id, LATER + timedelta(hours=5)) is None


def test_only_the_head_removes_and_never_themselves(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    create_household(conn, ann.id, actor="m", now=T0)
    accept(conn, invite(conn, ann, 1), bob)
    accept(conn, invite(conn, ann, 2), cat)
    with pytest.raises(InvalidState) as not_head:
        leave_household(conn, cat.id, how="removed", head_id=bob.id, actor="m", now=LATER)
    assert not_head.value.status == "not head"
    with pytest.raises(InvalidState):
        leave_household(conn, ann.id, how="removed", head_id=ann.id, actor="m", now=LATER)
    removed = leave_household(conn, cat.id, how="removed", head_id=ann.id, actor="m", now=LATER)
    assert removed.new_head_id is None and household_of(conn, cat.id) is None
    # Removed members may be invited again later: membership is a history, not a flag.
    accept(conn, invite(conn, ann, 3), cat)
    assert household_of(conn, cat.id) is not None


def test_staff_dissolve_with_a_reason(conn: sqlite3.Connection, people: dict[str, Member]) -> None:
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    created = create_household(conn, ann.id, actor="m", now=T0)
    accept(conn, invite(conn, ann, 1), bob)
    pending = invite(conn, ann, 2)
    with pytest.raises(InvalidRequest):
        dissolve_household(conn, created.id, actor="telegram:1", reason="  ", now=LATER)
    dissolution = dissolve_household(
        conn, created.id, actor="telegram:1", reason="member request", now=LATER
    )
    assert {m.member_id for m in dissolution.members} == {ann.id, bob.id}
    assert household_of(conn, ann.id) is None and household_of(conn, bob.id) is None
    row = conn.execute(
        "SELECT dissolved_by, dissolve_reason FROM households WHERE id = ?", (created.id,)
    ).fetchone()
    assert tuple(row) == ("telegram:1", "member request")
    hows = {r[0] for r in conn.execute("SELECT left_how FROM household_members")}
    assert hows == {"dissolved"}
    (event,) = [e for e in household_events(conn) if e.kind == "dissolved"]
    assert event.reason == "member request" and event.actor == "telegram:1"
    # The pending invitation died with the household.
    with pytest.raises(InvalidState) as refused:
        accept(conn, pending, cat)
    assert refused.value.status == "revoked"
    with pytest.raises(NotFound):
        dissolve_household(conn, created.id, actor="telegram:1", reason="again", now=LATER)


def test_the_glance_shows_only_what_members_share(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob = people["ann"], people["bob"]
    create_household(conn, ann.id, actor="m", now=T0)
    accept(conn, invite(conn, ann), bob)
    for who, points in ((ann, 100), (bob, 40)):
        ledger.earn(
            conn,
            who.id,
            points,
            kind="purchase",
            key=f"p:{who.id}",
            actor="t",
            expires_at=T0 + timedelta(days=30),
            now=T0,
        )
    found = household_glance(conn, bob.id, LATER)
    assert found is not None and found[1] == {}  # nobody shares by default
    set_share_balance(conn, ann.id, True)
    found = household_glance(conn, bob.id, LATER)
    assert found is not None
    household, balances = found
    assert list(balances) == [ann.id] and balances[ann.id].available == 100
    assert household.member(ann.id) is not None and household.member(ann.id).shares_balance  # type: ignore[union-attr]


def test_events_are_append_only(conn: sqlite3.Connection, people: dict[str, Member]) -> None:
    create_household(conn, people["ann"].id, actor="m", now=T0)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM household_events")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE household_events SET reason = 'x'")


# --- the programme's pure rules ---------------------------------------------------------------


def test_codes_and_tokens_fit_telegram_and_typing() -> None:
    codes = {rules.new_code() for _ in range(200)}
    assert len(codes) > 190  # random, not a counter
    assert all(len(c) == rules.CODE_LENGTH and set(c) <= set(rules.CODE_ALPHABET) for c in codes)
    assert not set("01ILO") & set(rules.CODE_ALPHABET)
    token = rules.new_token()
    payload = rules.START_PREFIX + token
    assert len(payload) <= 64 and rules.token_from_payload(payload) == token
    code = rules.new_code()
    assert rules.typed_code(f" {code[:3].lower()}-{code[3:]} ") == code


@pytest.mark.parametrize("payload", [None, "", "fam_", "ref_abc", "fam_a:b", "fam_" + "a" * 60])
def test_a_payload_that_is_no_invitation(payload: str | None) -> None:
    assert rules.token_from_payload(payload) is None


@pytest.mark.parametrize("typed", ["", "ABC", "ABCDEFG", "ABCDE0", "ABCDEI", "abc12!"])
def test_a_mistyped_code_is_no_code(typed: str) -> None:
    assert rules.typed_code(typed) is None


def test_who_may_remove_and_who_heads_next(
    conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob, cat = people["ann"], people["bob"], people["cat"]
    create_household(conn, ann.id, actor="m", now=T0)
    accept(conn, invite(conn, ann, 1), bob)
    accept(conn, invite(conn, ann, 2), cat)
    household = household_of(conn, ann.id)
    assert household is not None
    assert rules.may_remove(household, ann.id, bob.id)
    assert not rules.may_remove(household, bob.id, cat.id)  # not the head
    assert not rules.may_remove(household, ann.id, ann.id)  # not themselves
    assert not rules.may_remove(household, ann.id, people["dan"].id)  # not a member
    after = rules.successor(household, ann.id)
    assert after is not None and after.member_id == bob.id


# --- one writer: the last place is taken once ------------------------------------------------


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open store on each engine."""
    async with opened_store(
        request.param, tmp_path, synchronous="NORMAL", clock=lambda: T0
    ) as opened:
        yield opened


async def test_two_invitees_race_for_the_last_place(store: Store) -> None:
    def seed(conn: sqlite3.Connection) -> tuple[list[int], list[int]]:
        ids = [register_member(conn, Profile(i, f"m{i}"), None, T0)[0].id for i in (1, 2, 3)]
        create_household(conn, ids[0], actor="m", now=T0)
        invitations = [invite_id(conn, ids[0], n) for n in (1, 2)]
        return ids, invitations

    def invite_id(conn: sqlite3.Connection, inviter: int, n: int) -> int:
        return create_invitation(
            conn,
            inviter,
            token=f"race-token-{n}",
            code=f"RACE{n}X",
            expires_at=EXPIRES,
            max_members=2,
            now=T0,
        ).id

    ids, invitations = await store.write(seed)
    families = Families(store)
    results = await asyncio.gather(
        *(
            families.answer_invitation(inv, who, accept=True, max_members=2, actor="m", now=LATER)
            for inv, who in zip(invitations, ids[1:], strict=True)
        ),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Invitation", "LimitReached"]
    household = await families.household_of(ids[0])
    assert household is not None and len(household.members) == 2


# --- the audit trail operators export --------------------------------------------------------

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


# SQLite only: the CLI opens the configured SQLite file.
@pytest.mark.parametrize("conn", ["sqlite"], indirect=True)
def test_export_households_writes_every_event_with_its_reason(
    tmp_path: Path, conn: sqlite3.Connection, people: dict[str, Member]
) -> None:
    ann, bob = people["ann"], people["bob"]
    household = create_household(conn, ann.id, actor="member:1", now=T0)
    accept(conn, invite(conn, ann), bob)
    dissolve_household(conn, household.id, actor="telegram:9", reason="moved away", now=LATER)
    config_file = tmp_path / "config.toml"
    db = tmp_path / "conformance.db"
    text = SAMPLE.read_text(encoding="utf-8")
    config_file.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    result = CliRunner().invoke(main, ["export-households", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == HOUSEHOLD_COLUMNS
    assert [(r["kind"], r["member_code"], r["actor"], r["reason"]) for r in rows] == [
        ("created", ann.member_code, "member:1", ""),
        ("joined", bob.member_code, f"member:{bob.id}", ""),
        ("dissolved", "", "telegram:9", "moved away"),
    ]
    # Local time (Shanghai): noon on the day it happened.
    assert rows[0]["at"] == "2026-05-01T12:00:00+08:00"
    out = tmp_path / "events.csv"
    args = ["export-households", "--config", str(config_file), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--household", str(household.id)])
    assert result.exit_code == 0 and "3 household events" in result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4
