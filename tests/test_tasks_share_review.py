"""The rules and the store behind shares and reviews: a photo counts once for everyone, a
decision is taken once (two operators racing pay once), and an approval counts for the period
the share was sent in."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Config
from bot.programme.errors import RuleError
from bot.programme.purchases import record_purchase
from bot.programme.submissions import decide_submission, share_photo
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from storage.errors import InvalidState, LimitReached
from storage.members import Member, Profile, register_member
from storage.persistence import conversation_counts
from storage.submissions import DuplicatePhoto, Photo, decide, submit
from tests.conftest import NOW, Sandbox, assert_audit_ok
from tests.postgres import ENGINES, migrated_connection
from tests.restart_support import assert_audit_ok as restart_audit_ok
from tests.restart_support import bot_on

T0 = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
CAPTION = "补充装洗衣液 https://example.com/refill"


@pytest.fixture(params=ENGINES)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database on each engine."""
    with migrated_connection(request.param, tmp_path) as connection:
        yield connection


@pytest.fixture
def alice(conn: sqlite3.Connection) -> Member:
    return register_member(conn, Profile(1, "Alice"), None, T0)[0]


def test_the_database_keeps_a_photo_once_and_a_decision_final(
    conn: sqlite3.Connection, alice: Member
) -> None:
    photo = Photo("file-1", "unique-1")
    filed = submit(
        conn, alice.id, "green_share", "share", "2026-05-01", cap=2, source="m:1",
        photo=photo, caption=CAPTION, now=T0,
    )  # fmt: skip
    # A redelivered update files nothing new.
    again = submit(
        conn, alice.id, "green_share", "share", "2026-05-01", cap=2, source="m:1",
        photo=photo, caption=CAPTION, now=T0,
    )  # fmt: skip
    assert again.id == filed.id and again.replayed
    with pytest.raises(DuplicatePhoto):
        submit(
            conn, alice.id, "green_share", "share", "2026-05-01", cap=2, source="m:2",
            photo=Photo("file-2", "unique-1"), caption=CAPTION, now=T0,
        )  # fmt: skip
    # Past the Python check, the unique index still refuses the same photo.
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO task_submissions (member_id, task_id, kind, period, source, file_id,"
            " file_unique_id, caption, created_at) VALUES (?, 'x', 'share', 'p', 'm:9', 'f',"
            " 'unique-1', 'c', 0)",
            (alice.id,),
        )
    decided = decide(conn, filed.id, approve=False, actor="staff:1", reason="unclear", now=T0)
    assert (decided.status, decided.reason) == ("declined", "unclear")
    assert decided.decided_by == "staff:1"
    with pytest.raises(InvalidState):
        decide(conn, filed.id, approve=True, actor="staff:2", now=T0)
    with pytest.raises(sqlite3.IntegrityError, match="decided once"):
        conn.execute("UPDATE task_submissions SET status = 'approved' WHERE id = ?", (filed.id,))


def test_the_cap_counts_pending_and_approved_not_declined(
    conn: sqlite3.Connection, alice: Member
) -> None:
    def share(n: int) -> int:
        return submit(
            conn, alice.id, "green_share", "share", "2026-05-01", cap=1, source=f"m:{n}",
            photo=Photo(f"f{n}", f"u{n}"), caption=CAPTION, now=T0,
        ).id  # fmt: skip

    first = share(1)
    with pytest.raises(LimitReached):
        share(2)
    decide(conn, first, approve=False, actor="staff:1", reason="unrelated", now=T0)
    second = share(3)
    decide(conn, second, approve=True, actor="staff:1", now=T0)
    with pytest.raises(LimitReached):
        share(4)


async def _member(sandbox: Sandbox, user_id: int) -> Member:
    await sandbox.member(user_id).send("/start")
    found = await sandbox.services.members.by_telegram_id(user_id)
    assert found is not None
    return found


async def test_two_operators_approving_at_once_pay_once(sandbox: Sandbox) -> None:
    services = sandbox.services
    who = await _member(sandbox, 7401)
    filed = await share_photo(services, who.id, Photo("f", "u"), CAPTION, source="t:1")
    results = await asyncio.gather(
        decide_submission(services, filed.submission.id, approve=True, actor="telegram:1"),
        decide_submission(services, filed.submission.id, approve=True, actor="telegram:2"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Decided", "InvalidState"]
    assert (await services.ledger.balance(who.id)).available == 20
    statement = await services.ledger.history(who.id)
    [line] = statement.lines
    assert (line.kind, line.points, line.task) == ("share_bonus", 20, "green_share")
    await assert_audit_ok(sandbox)


async def test_an_approval_the_next_day_counts_for_the_day_sent(sandbox: Sandbox) -> None:
    services = sandbox.services
    who = await _member(sandbox, 7402)
    sent = await share_photo(services, who.id, Photo("f1", "u1"), CAPTION, source="t:1")
    services.clock = lambda: NOW + timedelta(days=1)
    # The new day has room for a share of its own, whatever is still pending from yesterday.
    today = await share_photo(services, who.id, Photo("f2", "u2"), CAPTION, source="t:2")
    assert sent.submission.period == "2026-11-25" and today.submission.period == "2026-11-26"
    first = await decide_submission(services, sent.submission.id, approve=True, actor="t:1")
    second = await decide_submission(services, today.submission.id, approve=True, actor="t:1")
    assert first.step is not None and first.step.period == "2026-11-25"
    assert second.step is not None and second.step.completed_now
    assert (await services.ledger.balance(who.id)).available == 40
    await assert_audit_ok(sandbox)


async def test_a_task_removed_from_the_programme_cannot_be_approved(sandbox: Sandbox) -> None:
    services = sandbox.services
    who = await _member(sandbox, 7403)
    filed = await share_photo(services, who.id, Photo("f", "u"), CAPTION, source="t:1")
    config = services.config
    services.config = config.model_copy(
        update={"tasks": [t for t in config.tasks if t.kind != "share"]}
    )
    with pytest.raises(RuleError) as refused:
        await decide_submission(services, filed.submission.id, approve=True, actor="t:1")
    assert refused.value.key == "submissions.task_gone"
    # Declining still works, and tells the member.
    declined = await decide_submission(
        services, filed.submission.id, approve=False, actor="t:1", reason="unrelated"
    )
    assert declined.submission.status == "declined"
    # And no share task open: a photo is not a share.
    with pytest.raises(RuleError) as closed:
        await share_photo(services, who.id, Photo("f3", "u3"), CAPTION, source="t:3")
    assert closed.value.key == "share.closed"


async def test_a_review_half_written_survives_a_restart(sample_config: Config) -> None:
    async with BotApiEmulator() as emu:
        chat = ChatClient(emu, 7404, first_name="小明")
        async with bot_on(emu, sample_config) as app:
            await chat.send("/start")
            who = await app.bot_data.members.by_telegram_id(7404)
            assert who is not None
            await record_purchase(
                app.bot_data, who.member_code, "30", "eco", "R-1",
                purchased_at=NOW - timedelta(days=3), actor="till", tell_member=False,
            )  # fmt: skip
            await chat.send("/review")
            await chat.tap("绿色环保商品", expect=0)
            await chat.tap("★★★★☆", expect=0)
        # A new process on the same database: the rating and the question are still there.
        async with bot_on(emu, sample_config) as app:
            assert await app.bot_data.store.read(conversation_counts) == {"review": 1}
            [received] = await chat.send("买了环保洗洁精，去油效果很好，瓶子也能回收。")
            assert (received.text or "").startswith("📨 已收到您的评价（编号 1）")
            [item], _total = await app.bot_data.submissions.pending(limit=5)
            assert (item.category, item.rating) == ("eco", 4)
            await restart_audit_ok(app)
