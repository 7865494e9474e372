"""Staff roles: every staff command and button of the one table (bot.programme.staff) tried by
every role and by a plain member, partner scope, staff /help per role, who is told about a new
return, and check-config's note about [program] admins.

The matrix is generated from STAFF_ACTIONS, so a new entry is tried automatically; an entry
whose command or button no handler takes yet (another branch adds it) is skipped, not failed.
One bot serves the whole module (the matrix alone is some 240 conversations)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import CliRunner
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ConversationHandler

from bot.app import build_application, running
from bot.cli import main
from bot.clock import FixedClock
from bot.config import Config, LimitsConfig, Role, StorageConfig, load_config
from bot.programme.broadcasts import draft_broadcast
from bot.programme.mall import request_return
from bot.programme.staff import ROLE_PERMISSIONS, STAFF_ACTIONS, may
from bot.sandbox.client import ChatClient
from bot.sandbox.server import BotApiEmulator
from handlers.common import Texts
from storage.mall import Redemption
from storage.members import Member
from tests.conftest import NOW, SAMPLE, Sandbox, assert_audit_ok

MEMBER_ID = 7001  # a plain member, on no staff list
ALL_ROLES: tuple[Role, ...] = ("owner", "manager", "cashier", "partner", "reviewer")
WHO = (*ALL_ROLES, "member")
COMMANDS = [name for name in STAFF_ACTIONS if name.startswith("/")]
BUTTONS = [name for name in STAFF_ACTIONS if not name.startswith("/")]
# Bookkeeping every update touches, whoever sends it: not what a staff action changes.
NOT_COMPARED = frozenset({"update_journal", "update_journal_last_fetch", "conversations"})
# What each command would do if the check let it through: real codes and SKUs, so a missing
# check shows as a change. A command not listed (a new entry) is tried bare.
ARGS = {
    "/purchase": "{member} 100",
    "/purchase_return": "R-1001",
    "/member": "{member}",
    "/fulfil": "{issued}",
    "/fulfil_prize": "ABCDEFGH",
    "/stock": "BAG-01 5",
    "/delist": "BOTTLE-01 停产",
    "/approve_return": "{returned}",
    "/reject_return": "{returned} 商品已使用",
    "/cannot_fulfil": "{issued} 断货",
    "/broadcast": "新品上市",
    "/survey_stats": "benefits_2026",
    "/event_new": "2026-11-25 18:00-20:00 讲座",
    "/event_stats": "ABCDEF",
    "/dissolve_household": "{member} 应会员要求",
    "/adjust": "{member} +100 补偿",
    "/vip_mark": "{member} 大客户",
    "/vip_unmark": "{member} 不再是",
    "/plan": "{member}",
    "/plan_end": "{member} 提前结束",
    "/plan_log": "{member}",
    "/report": "2026-11",
}
# A forged tap per button prefix that would act if the check let it through; a prefix not
# listed is tried with "<prefix>ok:1".
TAPS = {
    "tp:": "tp:ok:1",
    "rv:": "rv:a:{returned}",
    "bc:": "bc:ok:{broadcast}",
    "fb:": "fb:a:1",
    "sq:": "sq:a:1",
    "pl:": "pl:ok",
}


@dataclass
class World:
    """The module's bot, its staff by role, and what their commands act on."""

    sandbox: Sandbox
    staff: dict[str, int]  # role (or "member") -> Telegram id
    member: Member
    values: dict[str, str]  # what ARGS and TAPS name: codes, ids

    def chat(self, who: str, language: str = "zh-hans") -> ChatClient:
        """The chat of this role's staff member (or the plain member)."""
        user_id = self.staff[who]
        self.sandbox.emu.add_user(user_id, who, language_code=language)
        return self.sandbox.member(user_id, who, language)

    def texts(self, language: str = "zh-CN") -> Texts:
        """The bot's catalogs in one language."""
        return Texts(self.sandbox.services.i18n, language)


def module_config(directory: Path) -> Config:
    """The sample programme (one staff member per role), a fresh database, and no flood limit
    in the way of a member trying 40 commands in a row."""
    config = load_config(SAMPLE)
    storage = StorageConfig(path=str(directory / "bot.sqlite3"), synchronous="NORMAL")
    limits = LimitsConfig(flood_updates=1000, flood_seconds=1)
    return config.model_copy(update={"storage": storage, "limits": limits})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One bot for the module, with a member, an issued code, a return waiting and a draft
    broadcast to act on."""
    config = module_config(tmp_path_factory.mktemp("staff"))
    staff: dict[str, int] = {s.role: s.telegram_id for s in config.staff}
    assert sorted(staff) == sorted(ALL_ROLES), "the sample programme has one person per role"
    staff["member"] = MEMBER_ID
    async with BotApiEmulator() as emu:
        app = build_application(
            config,
            emu.token,
            base_url=emu.base_url,
            schedule_jobs=False,
            clock=FixedClock(NOW),
        )
        emu.clock = lambda: app.bot_data.clock()
        async with running(app, poll_timeout=1):
            sandbox = Sandbox(emu, app, config)
            services = sandbox.services
            await sandbox.member(MEMBER_ID).send("/start")
            member = await services.members.by_telegram_id(MEMBER_ID)
            assert member is not None
            await services.ledger.earn(
                member.id, 20_000, kind="purchase", key="seed:staff", actor="t", expires_at=None
            )
            issued = await redeem(sandbox, member, "BAG-01", 300)
            returned = await redeem(sandbox, member, "BAG-01", 300)
            await sandbox.admin().send(f"/fulfil {returned.code}")
            await request_return(services, member.id, returned.code, "damaged", actor="test")
            draft = await draft_broadcast(services, "周末活动", actor="test")
            values = {
                "member": member.member_code,
                "issued": issued.code,
                "returned": returned.code,
                "broadcast": str(draft.id),
            }
            yield World(sandbox, staff, member, values)
            await assert_audit_ok(sandbox)


async def redeem(sandbox: Sandbox, member: Member, sku: str, points: int) -> Redemption:
    """The member redeemed `sku` (as the mall's Confirm does); the redemption."""
    mall = sandbox.services.mall
    offer = await mall.create_offer(member.id, sku, points, now=NOW, ttl=timedelta(minutes=10))
    return await mall.redeem(offer.id, member.id, now=NOW, actor=f"member:{member.id}")


def _handlers(handlers: list[BaseHandler]) -> Iterator[BaseHandler]:  # type: ignore[type-arg]
    """Every handler, those inside conversations too."""
    for handler in handlers:
        if isinstance(handler, ConversationHandler):
            yield from _handlers(list(handler.entry_points))
            for state in handler.states.values():
                yield from _handlers(list(state))
        else:
            yield handler


def registered(world: World, action: str, data: str) -> bool:
    """Whether a handler takes this command, or (for a button) this callback data."""
    every = [h for group in world.sandbox.app.handlers.values() for h in _handlers(group)]
    if action.startswith("/"):
        return any(isinstance(h, CommandHandler) and action[1:] in h.commands for h in every)
    return any(
        isinstance(h, CallbackQueryHandler)
        and isinstance(h.pattern, re.Pattern)
        and h.pattern.match(data) is not None
        for h in every
    )


async def digest(world: World) -> dict[str, str]:
    """A fingerprint of every table a staff action could change."""

    def read(conn: sqlite3.Connection) -> dict[str, str]:
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if row[0] not in NOT_COMPARED and not row[0].startswith("sqlite_")
        ]
        found = {}
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()  # noqa: S608
            found[table] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
        return found

    return await world.sandbox.services.store.read(read)


def allowed(world: World, who: str, action: str) -> bool:
    """What the table says (a member holds no permission)."""
    return may(world.sandbox.config, world.staff[who], action)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("command", COMMANDS)
async def test_every_staff_command_runs_or_is_refused_changing_nothing(
    world: World, command: str, who: str
) -> None:
    if not registered(world, command, ""):
        pytest.skip(f"{command} is in the staff table but no handler takes it yet")
    chat = world.chat(who)
    denied = world.texts()("staff.denied")
    if allowed(world, who, command):
        # Bare: a usage line or a read-only view; either way the check let the role in.
        replies = await chat.send(command)
        assert replies and all(r.text != denied for r in replies), chat.transcript()
        return
    before = await digest(world)
    typed = f"{command} {ARGS.get(command, '').format(**world.values)}".strip()
    [refused] = await chat.send(typed)
    assert refused.text == denied
    assert await digest(world) == before


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("prefix", BUTTONS)
async def test_every_staff_button_refuses_a_role_without_it_before_anything_changes(
    world: World, prefix: str, who: str
) -> None:
    data = TAPS.get(prefix, f"{prefix}ok:1").format(**world.values)
    assert data.startswith(prefix) and len(data.encode()) <= 64
    if not registered(world, prefix, data):
        pytest.skip(f"{prefix} is in the staff table but no handler takes it yet")
    chat = world.chat(who)
    denied = world.texts()("staff.denied")
    if allowed(world, who, prefix):
        # A tap that points at nothing: the role gets past the check to "expired" and the like.
        [shown] = await chat.send("/help")
        await chat.tap_data(shown.message_id, f"{prefix}zz:0", expect=0)
        assert chat.last_callback_answer != denied
        return
    [shown] = await chat.send("/help")
    before = await digest(world)
    await chat.tap_data(shown.message_id, data, expect=0)
    answer = chat.last_callback_event
    assert answer is not None and answer.text == denied
    assert answer.show_alert  # an alert the staff member must dismiss, not a passing toast
    assert await digest(world) == before


def test_the_table_gives_each_role_what_the_issue_says() -> None:
    roles = {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}
    assert roles["owner"] >= {"policy", "reports", "adjust", "plans"} | roles["manager"]
    assert {"catalog", "stock", "returns", "broadcasts", "queues"} <= roles["manager"]
    assert roles["cashier"] == {
        "purchases",
        "purchase_returns",
        "member_lookup",
        "fulfil",
        "prizes",
    }
    assert roles["partner"] == {"fulfil", "stock"}
    assert roles["reviewer"] == {"queues"}
    # Commands have a /help line, buttons none.
    assert all((a.help is not None) == name.startswith("/") for name, a in STAFF_ACTIONS.items())


# --- partner scope ----------------------------------------------------------------------------


async def status_of(world: World, code: str) -> str:
    """A redemption's status now."""
    return (await world.sandbox.services.mall.redemption_by_code(code)).status


@pytest.mark.asyncio(loop_scope="module")
async def test_a_partner_fulfils_its_own_items_only(world: World) -> None:
    partner = world.chat("partner")
    carwash = await redeem(world.sandbox, world.member, "CARWASH-01", 1500)
    [done] = await partner.send(f"/fulfil {carwash.code}")
    assert done.text == f"✅ {carwash.code}（合作门店洗车一次）已核销。"
    assert await status_of(world, carwash.code) == "used"
    # Someone else's goods: refused, the code still issued, nothing said about the member.
    voucher = await redeem(world.sandbox, world.member, "VOUCHER-10", 800)
    before = await digest(world)
    [refused] = await partner.send(f"/fulfil {voucher.code}")
    assert refused.text == world.texts()("staff.out_of_scope")
    assert world.member.display_name not in (refused.text or "")
    assert await status_of(world, voucher.code) == "issued"
    assert await digest(world) == before
    # A cashier may take the same voucher.
    [handed] = await world.chat("cashier").send(f"/fulfil {voucher.code}")
    assert handed.text == f"✅ {voucher.code}（满 100 减 10 元券）已核销。"


@pytest.mark.asyncio(loop_scope="module")
async def test_a_partner_restocks_its_own_items_only(world: World) -> None:
    partner = world.chat("partner", "en")
    mall = world.sandbox.services.mall
    [done] = await partner.send("/stock CARWASH-01 40")
    assert (await mall.item("CARWASH-01")).left == 40
    assert "CARWASH-01" in (done.text or "")
    left = (await mall.item("BAG-01")).left
    for typed in ("/stock BAG-01 999", "/stock NOSUCH-1 5"):  # another's item, or no item
        [refused] = await partner.send(typed)
        assert refused.text == world.texts("en")("staff.out_of_scope"), typed
    assert (await mall.item("BAG-01")).left == left


@pytest.mark.asyncio(loop_scope="module")
async def test_a_partner_accepts_no_game_prize(world: World) -> None:
    # A prize has no SKU or category, so no partner's scope holds one: the role lacks it.
    [refused] = await world.chat("partner").send("/fulfil_prize ABCDEFGH")
    assert refused.text == world.texts()("staff.denied")
    [tried] = await world.chat("cashier").send("/fulfil_prize ABCDEFGH")
    assert tried.text != world.texts()("staff.denied")


# --- staff /help ------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("language", ["zh-hans", "en"])
async def test_help_lists_exactly_what_each_role_may_use(world: World, language: str) -> None:
    _ = world.texts("en" if language == "en" else "zh-CN")
    [member_help] = await world.chat("member", language).send("/help")
    member_text = member_help.text or ""
    assert _("staff.help.title") not in member_text
    assert not any(_(a.help) in member_text for a in STAFF_ACTIONS.values() if a.help)
    for role in ALL_ROLES:
        [shown] = await world.chat(role, language).send("/help")
        text = shown.text or ""
        # The member part unchanged, then the staff part: the title and the role's lines.
        head, _sep, staff_part = text.partition("\n\n" + _("staff.help.title") + "\n")
        assert staff_part, text
        expected = [
            _(action.help)
            for name, action in STAFF_ACTIONS.items()
            if action.help is not None and allowed(world, role, name)
        ]
        assert staff_part.split("\n")[: len(expected)] == expected
        commands = {line.split()[0] for line in staff_part.split("\n") if line.startswith("/")}
        assert commands == {
            name for name, a in STAFF_ACTIONS.items() if a.help and allowed(world, role, name)
        }
        assert head in member_text


# --- who hears of a new return ----------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_a_new_return_reaches_owners_and_managers_only(world: World) -> None:
    bag = await redeem(world.sandbox, world.member, "BOTTLE-01", 1200)
    await world.chat("cashier").send(f"/fulfil {bag.code}")
    chat = world.chat("member")
    await chat.send("/redemptions")
    await chat.tap(f"申请退货 {bag.code}")
    await chat.tap("拿错了商品", expect=1)
    heard = world.texts()("returns.new")

    def told(role: str) -> bool:
        messages = world.sandbox.emu.messages(world.staff[role])
        return any(heard in (m.text or "") and bag.code in (m.text or "") for m in messages)

    await world.sandbox.emu.wait_for(world.staff["manager"], lambda: told("manager"), 5)
    assert told("owner") and told("manager")
    assert not any(told(role) for role in ("cashier", "partner", "reviewer"))


# --- staff at a busy till ---------------------------------------------------------------------


async def test_staff_of_any_role_are_not_flood_limited(sandbox: Sandbox) -> None:
    # Over the sample's 20 updates in 10 s: a cashier's and a reviewer's busy hour.
    assert sandbox.config.limits.flood_updates < 25
    for user_id, command in ((100000003, "/member 1234567890"), (100000005, "/tasks_queue")):
        chat = sandbox.member(user_id, "店员")
        for _n in range(25):
            [reply] = await chat.send(command)
            assert "太频繁" not in (reply.text or "") and "too fast" not in (reply.text or "")


# --- check-config -----------------------------------------------------------------------------


def test_check_config_lists_the_staff_and_warns_about_admins(tmp_path: Path) -> None:
    clean = CliRunner().invoke(main, ["check-config", "--config", str(SAMPLE)])
    assert clean.exit_code == 0, clean.output
    assert "deprecated" not in clean.stderr
    assert "100000004 绿洁洗车 · partner · scope CARWASH-01" in clean.stdout
    assert "100000005 赵审核 · reviewer" in clean.stdout
    legacy = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    contact = 'support_contact = "400-800-1234"'
    legacy.write_text(text.replace(contact, f"admins = [123456789]\n{contact}"), encoding="utf-8")
    warned = CliRunner().invoke(main, ["check-config", "--config", str(legacy)])
    assert warned.exit_code == 0, warned.output
    assert "123456789 (from [program] admins) · owner" in warned.stdout
    assert warned.stderr == (
        f"warning: {legacy}: [program] admins is deprecated: list each of them as a [[staff]]"
        ' with role = "owner" (they are owners until then)\n'
    )
