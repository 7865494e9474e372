"""The points-value guarantee: a change worse for members needs an announced change with the
notice period; improvements apply at once (check-config, `pointsbot run`, the running bot)."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.app import build_application, running
from bot.cli import main
from bot.clock import FixedClock
from bot.config import EXPIRY_SOURCES, Config, load_config
from bot.programme.policy import TermsRefused, keep_promise
from bot.programme.policy import worse as policy_worse
from bot.sandbox.server import BotApiEmulator
from storage.store import connect_sync, migrate
from tests.conftest import NOW, SAMPLE, PinnedCliRunner, Sandbox, assert_audit_ok, joined

TODAY = date(2026, 11, 25)
FIRST_DAY = TODAY + timedelta(days=30)
SAMPLE_TEXT = SAMPLE.read_text(encoding="utf-8")


def write(tmp_path: Path, name: str, text: str, db: Path) -> Path:
    path = tmp_path / name
    path.write_text(
        text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'), encoding="utf-8"
    )
    return path


def promise(db: Path, text: str, tmp_path: Path, now: datetime = NOW) -> None:
    """The bot started on this database with this file (its terms are now the promise)."""
    config = load_config(write(tmp_path, "promised.toml", text, db))
    conn = connect_sync(db)
    try:
        migrate(conn)
        keep_promise(conn, config, now, "test")
    finally:
        conn.close()


def check(path: Path, now: datetime = NOW) -> tuple[int, str]:
    result = PinnedCliRunner(now).invoke(main, ["check-config", "--config", str(path)])
    return result.exit_code, result.output


# Each kind of term made worse, from the sample's value (promised) to the edited one.
EDITS = [
    ("earn.points_per_yuan", "points_per_yuan = 1\n", "points_per_yuan = 2\n", "2 → 1", True),
    ("earn.eco.multiplier", 'multiplier = "2"\n', 'multiplier = "1.5"\n', "2 → 1.5", False),
    (
        "redemption.deduction_points_per_yuan",
        "deduction_points_per_yuan = 100",
        "deduction_points_per_yuan = 120",
        "100 → 120",
        False,
    ),
    (
        "expiry.purchase",
        'purchase = { mode = "never" }',
        'purchase = { mode = "rolling", months = 24 }',
        "never → rolling 24 months",
        False,
    ),
    ("mall.BAG-01.price", "price = 300", "price = 350", "300 → 350", False),
]


@pytest.mark.parametrize(("term", "sample", "edited", "shown", "promised_is_edited"), EDITS)
def test_a_worse_term_without_notice_is_refused_naming_it(
    tmp_path: Path, term: str, sample: str, edited: str, shown: str, promised_is_edited: bool
) -> None:
    db = tmp_path / "bot.sqlite3"
    worse_text = SAMPLE_TEXT.replace(sample, edited, 1)
    # The earn rate cannot go below the sample's 1: promise 2, then go back to the sample.
    before, after = (worse_text, SAMPLE_TEXT) if promised_is_edited else (SAMPLE_TEXT, worse_text)
    promise(db, before, tmp_path)
    path = write(tmp_path, "config.toml", after, db)
    code, output = check(path)
    assert code == 2
    assert f"[{term}] {shown} leaves members worse off" in output
    assert f"the first day it could take effect is {FIRST_DAY}" in output
    # `pointsbot run` refuses before it starts (the bot checks again in post_init).
    run = PinnedCliRunner().invoke(
        main, ["run", "--config", str(path)], env={"POINTSBOT_TOKEN": "123:abc"}
    )
    assert run.exit_code == 2 and f"[{term}] {shown}" in run.output


def test_a_new_database_takes_the_file_and_improvements_apply_at_once(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite3"
    path = write(tmp_path, "config.toml", SAMPLE_TEXT, db)
    code, output = check(path)
    assert code == 0 and "no database yet" in output
    # A database made by `init-db` but never started holds no promise yet: check-config says
    # so instead of claiming nothing is worse.
    assert CliRunner().invoke(main, ["init-db", "--config", str(path)]).exit_code == 0
    code, output = check(
        write(tmp_path, "worse.toml", SAMPLE_TEXT.replace("price = 300", "price = 350"), db)
    )
    assert code == 0 and "no terms recorded yet" in output and "no term is worse" not in output
    promise(db, SAMPLE_TEXT, tmp_path)
    better = SAMPLE_TEXT.replace("price = 300", "price = 250").replace(
        "deduction_points_per_yuan = 100", "deduction_points_per_yuan = 80"
    )
    code, output = check(write(tmp_path, "better.toml", better, db))
    assert code == 0 and "no term is worse for members than promised" in output
    # Once the bot has started with it, it is the promise: going back is a worsening.
    promise(db, better, tmp_path)
    code, output = check(path)
    assert code == 2 and "[mall.BAG-01.price] 250 → 300" in output


def schedule(config: Path, *args: str, now: datetime = NOW) -> tuple[int, str]:
    result = PinnedCliRunner(now).invoke(
        main, ["schedule-policy-change", "--config", str(config), *args]
    )
    return result.exit_code, result.output


def test_an_announced_change_is_accepted_on_its_day_and_refused_before(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite3"
    promise(db, SAMPLE_TEXT, tmp_path)
    sample = write(tmp_path, "config.toml", SAMPLE_TEXT, db)
    # Too soon for a worsening: the notice period.
    code, output = schedule(
        sample, "--term", "mall.BAG-01.price", "--value", "350", "--effective", "2026-12-01"
    )
    assert code == 2 and f"最早可定在 {FIRST_DAY}" in output
    code, output = schedule(
        sample, "--term", "mall.BAG-01.price", "--value", "350", "--effective", "2026-12-27"
    )
    assert code == 0 and "mall.BAG-01.price 300 → 350 from 2026-12-27" in output
    edited = write(tmp_path, "edited.toml", SAMPLE_TEXT.replace("price = 300", "price = 350"), db)
    # The file edited before the day: refused, saying when it is scheduled.
    code, output = check(edited)
    assert code == 2 and "[mall.BAG-01.price] 300 → 350 is scheduled for 2026-12-27" in output
    assert check(sample)[0] == 0
    # On the day (and after, at the start that records it), the file edited or not is fine.
    on_the_day = datetime(2026, 12, 26, 16, 0, tzinfo=UTC)  # midnight in Shanghai
    assert check(edited, on_the_day)[0] == 0
    assert check(sample, on_the_day)[0] == 0
    promise(db, SAMPLE_TEXT, tmp_path, on_the_day)
    assert check(edited, on_the_day + timedelta(days=3))[0] == 0


async def test_the_bot_refuses_a_worse_file_at_start(sandbox: Sandbox) -> None:
    services = sandbox.services
    eco = [
        c.model_copy(update={"multiplier": c.multiplier / 2}) if c.id == "eco" else c
        for c in services.config.earn.categories
    ]
    earn = services.config.earn.model_copy(update={"categories": eco})
    services.config = services.config.model_copy(update={"earn": earn})
    with pytest.raises(TermsRefused, match=r"\[earn.eco.multiplier\] 2 → 1"):
        await services.refresh_policies()


async def test_a_change_is_told_once_shown_in_rules_and_applies_on_its_day(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    for user_id, lang in ((7301, "zh-hans"), (7302, "en")):
        await sandbox.member(user_id, language_code=lang).send("/start")
    db = Path(sandbox.config.storage.path)
    path = write(tmp_path, "config.toml", SAMPLE_TEXT, db)
    args = ("--term", "earn.eco.multiplier", "--value", "1.5", "--effective", "2026-12-27")
    code, output = schedule(path, *args)
    assert code == 0 and "2 member notices queued" in output
    # Announced again: refused, and nobody is told twice.
    again, output = schedule(path, *args)
    assert again == 2 and "already announced" in output
    services = sandbox.services
    await services.refresh_policies()
    await services.sender.drain()
    zh_notice = (
        "📢 积分规则变更通知：自 2026-12-27 起，绿色环保商品的积分倍数由 2 倍调整为 1.5 倍。"
        "发送 /rules 查看完整规则。"
    )
    en_notice = (
        "📢 A change to the points rules: from 2026-12-27, purchases in Eco-friendly products"
        " earn 1.5× points instead of 2×. Send /rules for the full rules."
    )
    zh = [m.text for m in sandbox.emu.messages(7301) if m.from_bot]
    en = [m.text for m in sandbox.emu.messages(7302) if m.from_bot]
    assert zh.count(zh_notice) == 1 and en.count(en_notice) == 1
    rules = joined(await sandbox.member(7301).send("/rules"))
    assert "• 自 2026-12-27 起：绿色环保商品的积分倍数由 2 倍调整为 1.5 倍。" in (rules.text or "")
    # Long rules arrive in several messages, cut between sections.
    replies = await sandbox.member(7302, language_code="en").send("/rules")
    line = "• From 2026-12-27: purchases in Eco-friendly products earn 1.5× points instead of 2×."
    assert line in "\n".join(reply.text or "" for reply in replies)
    eco = "eco"
    assert services.config.earn.category(eco).multiplier == 2  # type: ignore[union-attr]
    # Local midnight of the day: the change applies by itself.
    services.clock = lambda: datetime(2026, 12, 26, 16, 0, tzinfo=UTC)
    await services.refresh_policies()
    assert services.config.earn.category(eco).multiplier == Decimal("1.5")  # type: ignore[union-attr]
    member = await services.members.by_telegram_id(7301)
    assert member is not None
    await sandbox.admin().send(f"/purchase {member.member_code} 10 general R-G1")
    services.clock = lambda: datetime(2027, 1, 5, 4, 0, tzinfo=UTC)
    await services.refresh_policies()
    await sandbox.admin().send(f"/purchase {member.member_code} 100 eco R-ECO-1")
    lots = await services.ledger.lots(member.id)
    assert sorted(lot.points for lot in lots) == [10, 150]
    rules = joined(await sandbox.member(7301).send("/rules"))
    assert "2026-12-27" not in (rules.text or "")  # in force: no longer a coming change
    await sandbox.services.sender.drain()
    assert [m.text for m in sandbox.emu.messages(7301) if m.from_bot].count(zh_notice) == 1
    await assert_audit_ok(sandbox)


def test_unknown_terms_and_sources_are_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite3"
    promise(db, SAMPLE_TEXT, tmp_path)
    path = write(tmp_path, "config.toml", SAMPLE_TEXT, db)
    code, output = schedule(
        path, "--term", "mall.NOPE.price", "--value", "1", "--effective", "2027-03-01"
    )
    assert code == 2 and "no priced item 'NOPE'" in output
    code, output = schedule(
        path, "--source", "lottery", "--mode", "never", "--effective", "2027-03-01"
    )
    assert code == 2 and "unknown source 'lottery'" in output
    bad = write(
        tmp_path,
        "bad.toml",
        SAMPLE_TEXT.replace('purchase = { mode = "never" }', 'lottery = { mode = "never" }'),
        db,
    )
    code, output = check(bad)
    assert code == 2 and "[expiry.sources] unknown source 'lottery'" in output
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM term_changes").fetchone()[0] == 0


async def test_the_running_bot_applies_a_change_at_local_midnight(
    sample_config: Config, tmp_path: Path
) -> None:
    async with BotApiEmulator() as emu:
        app = build_application(
            sample_config, emu.token, base_url=emu.base_url, clock=FixedClock(NOW)
        )
        async with running(app, poll_timeout=1):
            assert app.job_queue is not None
            jobs = {job.name: job for job in app.job_queue.jobs()}
            midnight = jobs["rules-in-force"].next_t
            tz = sample_config.program.tz
            assert midnight is not None and midnight.astimezone(tz).time() == time(0, 0)
            path = write(tmp_path, "config.toml", SAMPLE_TEXT, Path(sample_config.storage.path))
            code, output = schedule(
                path, "--term", "mall.BAG-01.price", "--value", "350", "--effective", "2026-12-27"
            )
            assert code == 0, output
            services = app.bot_data
            item = services.config.mall.item("BAG-01")
            assert item is not None and item.price == 300
            services.clock = lambda: datetime(2026, 12, 26, 16, 0, 5, tzinfo=UTC)
            await jobs["rules-in-force"].run(app)
            item = services.config.mall.item("BAG-01")
            assert item is not None and item.price == 350
            # The store the redeeming transaction checks has the new price too.
            listed = await services.mall.item("BAG-01")
            assert listed is not None and listed.price == 350


def test_a_delisted_item_is_no_price_rise_and_old_configs_load(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite3"
    promise(db, SAMPLE_TEXT, tmp_path)
    sample = load_config(write(tmp_path, "config.toml", SAMPLE_TEXT, db))
    items = [item for item in sample.mall.items if item.sku != "BAG-01"]
    delisted = sample.model_copy(update={"mall": sample.mall.model_copy(update={"items": items})})
    with contextlib.closing(connect_sync(db)) as conn:
        config = keep_promise(conn, delisted, NOW, "test")
    assert config.mall.item("BAG-01") is None
    # A configuration from before [expiry.sources]: its one policy is every source's.
    old = SAMPLE_TEXT.replace("[expiry.sources]", "").replace('purchase = { mode = "never" }', "")
    old_config = load_config(write(tmp_path, "old.toml", old, db))
    assert {old_config.expiry.policy_on(TODAY, s).rule() for s in EXPIRY_SOURCES} == {
        ("rolling", 12)
    }


@pytest.mark.parametrize(
    ("new", "old", "worse"),
    [
        ({"mode": "rolling", "months": 12}, {"mode": "rolling", "months": 24}, True),
        ({"mode": "year_end", "years": 1}, {"mode": "rolling", "months": 12}, False),
        ({"mode": "year_end", "years": 1}, {"mode": "rolling", "months": 13}, True),
        ({"mode": "rolling", "months": 23}, {"mode": "year_end", "years": 1}, True),
        ({"mode": "rolling", "months": 24}, {"mode": "year_end", "years": 1}, False),
        ({"mode": "rolling", "months": 120}, {"mode": "never"}, True),
        ({"mode": "never"}, {"mode": "year_end", "years": 0}, False),
    ],
)
def test_expiry_policies_compare_on_the_members_worst_day(
    new: dict[str, object], old: dict[str, object], worse: bool
) -> None:
    assert policy_worse("expiry.game", new, old) is worse
