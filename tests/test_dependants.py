"""Family birthdays below the chat: the dependants table keeps its history, the once-a-year
change and the limit hold (also across a removal), and each gift is booked once a year."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, ConfigError, parse_config
from bot.programme.birthdays import NotABirthday, dependant_gift_key
from bot.programme.dependants import (
    FamilyBirthdays,
    SavedDependant,
    StaleStep,
    add_dependant,
    celebrate_dependants,
    change_birthday,
    clean_name,
    dependant_gift_terms,
    family_birthdays,
    name_dependant,
    remove_dependant,
    start_adding,
    start_change,
)
from bot.programme.errors import RuleError
from storage.audit import audit
from storage.dependants import (
    ChangeTooSoon,
    DuplicateDependant,
    TooManyDependants,
    dependants_of,
    history_of,
)
from storage.dependants import add_dependant as store_add
from storage.dependants import change_birthday as store_change
from storage.dependants import remove_dependant as store_remove
from storage.members import Member, Profile, register_member
from tests.conftest import SAMPLE, Sandbox, assert_audit_ok, available, member_with
from tests.postgres import ENGINES, migrated_connection

T0 = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


# --- storage ---------------------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine; the audit passes after every test."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection
        report = audit(connection, integrity="quick")
        assert report.ok, str(report)


@pytest.fixture
def alice(conn: sqlite3.Connection) -> Member:
    return register_member(conn, Profile(1, "Alice"), None, T0)[0]


def add(
    conn: sqlite3.Connection,
    member: Member,
    name: str,
    month: int,
    day: int,
    *,
    kind: str = "pet",
    now: datetime = T0,
    limit: int = 4,
) -> Any:
    return store_add(
        conn,
        member.id,
        kind,
        name,
        clean_name(name)[1],
        month,
        day,
        None,
        max_dependants=limit,
        change_allowed_after=now - YEAR,
        now=now,
    )


def test_a_removed_dependant_stays_as_history(conn: sqlite3.Connection, alice: Member) -> None:
    mimi = add(conn, alice, "Mimi", 3, 1)
    store_remove(conn, mimi.id, alice.id, now=T0 + timedelta(hours=1))
    assert dependants_of(conn, alice.id) == []
    [kept] = history_of(conn, alice.id)
    assert (kept.name, kept.removed_at) == ("Mimi", T0 + timedelta(hours=1))
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        conn.execute("DELETE FROM dependants")
    with pytest.raises(sqlite3.IntegrityError, match="history"):
        conn.execute("UPDATE dependants SET removed_at = NULL")
    coco = add(conn, alice, "Coco", 4, 1)
    with pytest.raises(sqlite3.IntegrityError, match="keeps who it is"):
        conn.execute("UPDATE dependants SET name = 'Lulu' WHERE id = ?", (coco.id,))


def test_at_most_the_limit_and_no_two_of_one_name(conn: sqlite3.Connection, alice: Member) -> None:
    first = add(conn, alice, "Mimi", 3, 1, limit=2)
    add(conn, alice, "小宝", 6, 1, kind="child", limit=2)
    with pytest.raises(TooManyDependants):
        add(conn, alice, "Coco", 7, 1, limit=2)
    store_remove(conn, first.id, alice.id, now=T0)
    add(conn, alice, "Coco", 7, 1, limit=2)
    # Case and width do not make another pet; the same name as a child is someone else.
    with pytest.raises(DuplicateDependant):
        add(conn, alice, "ＣＯＣＯ", 8, 1)
    add(conn, alice, "Coco", 8, 1, kind="child", limit=3)


def test_a_birthday_changes_once_a_year(conn: sqlite3.Connection, alice: Member) -> None:
    mimi = add(conn, alice, "Mimi", 3, 1)
    # The first change may follow at once (a typo), the next one only a year later.
    store_change(conn, mimi.id, alice.id, 3, 2, None, change_allowed_after=T0 - YEAR, now=T0)
    later = T0 + timedelta(days=200)
    with pytest.raises(ChangeTooSoon):
        store_change(
            conn, mimi.id, alice.id, 3, 3, None, change_allowed_after=later - YEAR, now=later
        )
    # The same date again is no change.
    same = store_change(
        conn, mimi.id, alice.id, 3, 2, None, change_allowed_after=later - YEAR, now=later
    )
    assert same.entered_at == T0
    next_year = T0 + YEAR + timedelta(days=1)
    changed = store_change(
        conn, mimi.id, alice.id, 3, 3, None, change_allowed_after=next_year - YEAR, now=next_year
    )
    assert (changed.month, changed.day, changed.entered_at) == (3, 3, next_year)


def test_removing_and_adding_again_resets_nothing(conn: sqlite3.Connection, alice: Member) -> None:
    mimi = add(conn, alice, "Mimi", 3, 1)
    store_change(conn, mimi.id, alice.id, 4, 1, None, change_allowed_after=T0 - YEAR, now=T0)
    later = T0 + timedelta(days=30)
    store_remove(conn, mimi.id, alice.id, now=later)
    # Another date for the same pet is a second change within the year: refused.
    with pytest.raises(ChangeTooSoon):
        add(conn, alice, "mimi ", 5, 1, now=later)
    # The same date continues the same pet: its entry time and its gifts' key stay.
    again = add(conn, alice, "Mimi", 4, 1, now=later)
    assert again.id != mimi.id
    assert (again.origin_id, again.entered_at, again.changed_at) == (mimi.id, T0, T0)
    assert [d.removed_at is None for d in history_of(conn, alice.id)] == [False, True]


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("  小宝  ", "小宝"),
        ("Mimi", "Mimi"),
        ("👨‍👧 Lulu", "👨‍👧 Lulu"),  # the emoji joiner is part of the text
        ("x" * 20, "x" * 20),
        ("<b>Rex</b>", "<b>Rex</b>"),  # plain text: shown as typed, never as markup
    ],
)
def test_names_taken_as_typed(typed: str, name: str) -> None:
    assert clean_name(typed)[0] == name


@pytest.mark.parametrize("typed", ["", "   ", "x" * 21, "Mi\nmi", "Mi\tmi", "\u202eimiM", "a\x00"])
def test_names_refused(typed: str) -> None:
    with pytest.raises(RuleError) as refused:
        clean_name(typed)
    assert refused.value.key == "dep.name_invalid"


# --- the programme ---------------------------------------------------------------------------


def at(sandbox: Sandbox, when: datetime) -> None:
    sandbox.services.clock = lambda: when


async def adding(
    sandbox: Sandbox, member: Member, kind: str, name: str, birthday: str
) -> SavedDependant:
    programme = sandbox.services
    await start_adding(programme, member.id, kind)
    await name_dependant(programme, member.id, name)
    return await add_dependant(programme, member.id, birthday)


async def test_a_birthday_far_ahead_brings_the_gift_one_shortly_before_does_not(
    sandbox: Sandbox,
) -> None:
    alice = await member_with(sandbox, 7001, 0)
    at(sandbox, datetime(2027, 1, 10, 4, tzinfo=UTC))
    far = await adding(sandbox, alice, "child", "小宝", "2020-03-15")
    assert (far.view.next_celebration, far.view.gift_on_next, far.no_gift_because) == (
        date(2027, 3, 15),
        True,
        None,
    )
    assert far.view.gift.points == 66
    near = await adding(sandbox, alice, "pet", "Mimi", "01-20")
    assert (near.view.gift_on_next, near.no_gift_because) == (False, "late")
    assert near.view.gift.item is not None and near.view.gift.item.sku == "PET-CAKE"
    family = await family_birthdays(sandbox.services, alice.id)
    assert [v.dependant.name for v in family.dependants] == ["小宝", "Mimi"]


async def test_bad_steps_are_refused_and_change_nothing(sandbox: Sandbox) -> None:
    programme = sandbox.services
    alice = await member_with(sandbox, 7002, 0)
    at(sandbox, datetime(2027, 1, 10, 4, tzinfo=UTC))
    with pytest.raises(StaleStep):
        await name_dependant(programme, alice.id, "Mimi")  # no kind chosen
    await start_adding(programme, alice.id, "pet")
    with pytest.raises(RuleError):
        await name_dependant(programme, alice.id, "Mi\nmi")
    await name_dependant(programme, alice.id, "Mimi")
    with pytest.raises(NotABirthday):
        await add_dependant(programme, alice.id, "02-30")
    with pytest.raises(NotABirthday):
        await add_dependant(programme, alice.id, "2030-01-01")  # not born yet
    assert (await family_birthdays(programme, alice.id)).dependants == ()
    saved = await add_dependant(programme, alice.id, "2020-02-29")
    assert (saved.view.dependant.month, saved.view.dependant.day) == (2, 29)
    with pytest.raises(StaleStep):
        await add_dependant(programme, alice.id, "03-01")  # the draft is used up


async def test_the_limit_is_said_before_the_name_is_asked(sandbox: Sandbox) -> None:
    programme = sandbox.services
    alice = await member_with(sandbox, 7003, 0)
    for n in range(4):
        await adding(sandbox, alice, "pet", f"Pet{n}", "06-01")
    with pytest.raises(RuleError) as refused:
        await start_adding(programme, alice.id, "child")
    assert (refused.value.key, refused.value.params) == ("dep.limit", {"max": 4})


async def test_change_too_soon_is_said_when_the_button_is_tapped(sandbox: Sandbox) -> None:
    programme = sandbox.services
    alice = await member_with(sandbox, 7004, 0)
    saved = await adding(sandbox, alice, "pet", "Mimi", "06-01")
    mimi = saved.view.dependant
    await start_change(programme, alice.id, mimi.id)
    await change_birthday(programme, alice.id, "06-02")
    with pytest.raises(RuleError) as refused:
        await start_change(programme, alice.id, mimi.id)
    assert refused.value.key == "dep.change_too_soon"
    bob = await member_with(sandbox, 7005, 0)
    with pytest.raises(StaleStep):  # not his
        await start_change(programme, bob.id, mimi.id)
    with pytest.raises(StaleStep):
        await remove_dependant(programme, bob.id, mimi.id)


# --- gifts -----------------------------------------------------------------------------------

BIRTHDAY = date(2027, 3, 15)
ON_THE_DAY = datetime(2027, 3, 14, 16, 5, tzinfo=UTC)  # 00:05 on 15 March in Shanghai
ENTERED = datetime(2027, 1, 5, 4, tzinfo=UTC)


async def celebrate(sandbox: Sandbox, when: datetime = ON_THE_DAY) -> Any:
    services = sandbox.services
    day = when.astimezone(services.config.program.tz).date()
    return await celebrate_dependants(services.dependants, services.config, day, when)


async def outbox_keys(sandbox: Sandbox) -> list[str]:
    rows = await sandbox.services.store.read(
        lambda c: c.execute("SELECT dedupe_key FROM outbox ORDER BY id").fetchall()
    )
    return [r[0] for r in rows]


async def test_points_gift_booked_once_a_year(sandbox: Sandbox) -> None:
    alice = await member_with(sandbox, 7010, 0)
    at(sandbox, ENTERED)
    saved = await adding(sandbox, alice, "child", "小宝", "2021-03-15")
    first = await celebrate(sandbox)
    again = await celebrate(sandbox, ON_THE_DAY + timedelta(hours=8))
    assert (first.greetings, first.gifts, again.gifts) == (1, 1, 0)
    assert await available(sandbox, alice) == 66
    key = dependant_gift_key(saved.view.dependant.origin_id, BIRTHDAY)
    assert (await outbox_keys(sandbox)).count(key) == 1
    lots = await sandbox.services.ledger.lots(alice.id)
    assert [lot.expires_at is not None for lot in lots] == [True]  # the birthday expiry
    await assert_audit_ok(sandbox)


async def test_item_gift_is_a_redemption_given_once(sandbox: Sandbox) -> None:
    alice = await member_with(sandbox, 7011, 100)
    at(sandbox, ENTERED)
    await adding(sandbox, alice, "pet", "Mimi", "03-15")
    done = await celebrate(sandbox)
    await celebrate(sandbox, ON_THE_DAY + timedelta(hours=1))
    assert done.gifts == 1
    found, total = await sandbox.services.mall.redemptions(alice.id)
    assert total == 1
    [cake] = found
    assert (cake.sku, cake.kind, cake.status, cake.points) == ("PET-CAKE", "voucher", "issued", 500)
    assert cake.valid_until == BIRTHDAY + timedelta(days=29)
    # Given, not bought: the member's points are what they were.
    assert await available(sandbox, alice) == 100
    await assert_audit_ok(sandbox)


async def test_a_gift_entered_too_late_is_a_greeting_only(sandbox: Sandbox) -> None:
    alice = await member_with(sandbox, 7012, 0)
    at(sandbox, datetime(2027, 3, 1, 4, tzinfo=UTC))
    await adding(sandbox, alice, "child", "小宝", "03-15")
    done = await celebrate(sandbox)
    assert (done.greetings, done.gifts) == (1, 0)
    assert await available(sandbox, alice) == 0


async def test_remove_and_add_again_earns_no_second_gift(sandbox: Sandbox) -> None:
    programme = sandbox.services
    alice = await member_with(sandbox, 7013, 0)
    at(sandbox, ENTERED)
    saved = await adding(sandbox, alice, "child", "小宝", "03-15")
    await celebrate(sandbox)
    assert await available(sandbox, alice) == 66
    # Removed on the day and added again under the same name: the same child, gifted already.
    at(sandbox, ON_THE_DAY + timedelta(hours=2))
    await remove_dependant(programme, alice.id, saved.view.dependant.id)
    again = await adding(sandbox, alice, "child", "小宝", "03-15")
    assert again.no_gift_because == "given"
    await celebrate(sandbox, ON_THE_DAY + timedelta(hours=3))
    assert await available(sandbox, alice) == 66


def one_dependant(config: Config) -> Config:
    return config.model_copy(
        update={"family": config.family.model_copy(update={"max_dependants": 1})}
    )


@pytest.mark.parametrize("configure", [[one_dependant]])
async def test_new_names_earn_no_more_gifts_a_year_than_the_limit(
    sandbox: Sandbox, configure: list[Callable[[Config], Config]]
) -> None:
    programme = sandbox.services
    alice = await member_with(sandbox, 7014, 0)
    at(sandbox, ENTERED)
    first = await adding(sandbox, alice, "child", "小宝", "03-15")
    await celebrate(sandbox)
    at(sandbox, ON_THE_DAY + timedelta(hours=2))
    await remove_dependant(programme, alice.id, first.view.dependant.id)
    await adding(sandbox, alice, "child", "大宝", "05-20")
    may_20 = datetime(2027, 5, 19, 16, 5, tzinfo=UTC)
    done = await celebrate(sandbox, may_20)
    assert (done.greetings, done.gifts) == (1, 0)
    assert await available(sandbox, alice) == 66
    # A new year, a new gift.
    at(sandbox, datetime(2028, 1, 2, tzinfo=UTC))
    done = await celebrate(sandbox, datetime(2028, 5, 19, 16, 5, tzinfo=UTC))
    assert done.gifts == 1


async def test_the_list_says_when_another_can_be_added(sandbox: Sandbox) -> None:
    alice = await member_with(sandbox, 7015, 0)
    family = await family_birthdays(sandbox.services, alice.id)
    assert family == FamilyBirthdays((), 4) and family.can_add


# --- configuration and /rules --------------------------------------------------------------


def sample() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(SAMPLE.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("gift", "expected"),
    [
        ({"points": 10, "item": "PET-CAKE"}, "[birthday.pet] give either points"),
        ({}, "[birthday.pet] give either points"),
        ({"item": "NO-SUCH"}, "birthday.pet.item: no mall item 'NO-SUCH'"),
        ({"item": "BILL-OFF"}, "birthday.pet.item: 'BILL-OFF' is a bill deduction"),
        ({"item": "VOUCHER-10", "refund": True}, "'VOUCHER-10' gives points back when unused"),
        ({"points": 0}, "[birthday.pet.points]"),
        ({"points": 5, "colour": "red"}, "[birthday.pet.colour]"),
    ],
)
def test_a_wrong_gift_names_the_key(gift: dict[str, Any], expected: str) -> None:
    document = sample()
    if gift.pop("refund", False):
        document["mall"]["items"][2]["refund_if_unused"] = True  # VOUCHER-10
    document["birthday"]["pet"] = gift
    with pytest.raises(ConfigError) as refused:
        parse_config(document, "config.toml")
    assert expected in str(refused.value)


def test_rules_terms_come_from_the_configuration(sample_config: Config) -> None:
    terms = dependant_gift_terms(sample_config)
    assert terms is not None
    child, pet = terms.gifts
    assert (child.kind, child.points, child.item) == ("child", 66, None)
    assert pet.kind == "pet" and pet.item is not None and pet.item.sku == "PET-CAKE"
    assert (terms.max_dependants, terms.min_days_before) == (4, 30)
    none = sample_config.model_copy(
        update={"family": sample_config.family.model_copy(update={"max_dependants": 0})}
    )
    assert dependant_gift_terms(none) is None
