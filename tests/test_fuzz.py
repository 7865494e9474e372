"""Hostile input: thousands of random and malformed updates, none of which breaks anything.

Random text and Unicode, the longest messages Telegram allows, stickers, photos, edits,
forged and unknown callback data, commands with garbage arguments, members who never sent
/start, and updates the bot does not serve (groups, channels). Afterwards: no handler
raised, the ledger audits clean, and the bot still answers a member normally.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
import time

import pytest

from storage.audit import audit
from tests.conftest import ADMIN_ID, Sandbox

UPDATES = 3000
MEMBERS = 60
COMMANDS = (
    "/start",
    "/balance",
    "/history",
    "/card",
    "/mall",
    "/redemptions",
    "/settings",
    "/rules",
    "/help",
    "/language",
    "/wheel",
    "/scratch",
    "/odds",
    "/cancel",
    "/purchase",
    "/adjust",
    "/member",
    "/fulfil",
    "/stock",
    "/delist",
    "/broadcast",
    "/approve_return",
    "/nope",
)
CALLBACK_PREFIXES = (
    "menu:",
    "lang:",
    "hist:",
    "mall:",
    "mall:ok:",
    "mall:buy:",
    "mall:cat:",
    "mall:deduct:",
    "red:",
    "red:rety:",
    "red:list:",
    "set:",
    "set:mkt:",
    "bc:ok:",
    "bc:no:",
    "game:",
    "x",
)


def garbage(rng: random.Random, longest: int = 80) -> str:
    """Text from every corner of Unicode that Telegram would deliver (no surrogates, no NUL)."""
    alphabet = (
        string.printable
        + "积分兑换转盘刮刮乐红米好物😀🎉👍🏽‍🔥"
        + "\u202e\u200b\u00a0ÄÖÜßçñ"
        + "".join(chr(c) for c in range(0x0400, 0x0420))
    )
    size = rng.randint(1, longest)
    text = "".join(rng.choice(alphabet) for _ in range(size)).strip()
    return text or "x"


def garbage_arguments(rng: random.Random) -> str:
    parts = [
        rng.choice(["-1", "0", "1e9", "NaN", "∞", "9" * 40, "١٢٣", "1.005", "abc", "¥", "''"]),
        garbage(rng, 20).replace(" ", ""),
    ]
    return " ".join(rng.sample(parts, k=rng.randint(0, 2)))


async def test_thousands_of_hostile_updates_break_nothing(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(20261125)  # a fixed seed: a failure replays exactly
    emu = sandbox.emu
    users = [8000 + i for i in range(MEMBERS)] + [ADMIN_ID]
    for user_id in users:
        emu.add_user(
            user_id, garbage(rng, 10), language_code=rng.choice(["zh-hans", "en", None, "fr"])
        )
    await sandbox.member(users[0]).send("/start")
    caplog.set_level(logging.ERROR)
    for _ in range(UPDATES):
        user_id = rng.choice(users)
        kind = rng.random()
        mine = [m for m in emu.messages(user_id) if not m.from_bot and m.kind == "text"]
        theirs = [m for m in emu.messages(user_id) if m.from_bot]
        if kind < 0.30:
            emu.user_sends_text(user_id, f"{rng.choice(COMMANDS)} {garbage_arguments(rng)}".strip())
        elif kind < 0.50:
            emu.user_sends_text(user_id, garbage(rng))
        elif kind < 0.53:
            emu.user_sends_text(user_id, garbage(rng, 4096)[:4096])
        elif kind < 0.58:
            emu.user_sends_sticker(user_id)
        elif kind < 0.62:
            emu.user_sends_photo(user_id)
        elif kind < 0.66 and mine:
            emu.user_edits_text(user_id, rng.choice(mine).message_id, garbage(rng))
        elif kind < 0.92 and theirs:
            message = rng.choice(theirs)
            if message.buttons and rng.random() < 0.5:
                data = rng.choice([b.callback_data for row in message.keyboard for b in row])
                data = data or "x"
            else:
                data = (rng.choice(CALLBACK_PREFIXES) + garbage(rng, 30).replace(" ", ""))[:64]
            emu.user_taps(user_id, message.message_id, data)
        elif kind < 0.95:
            emu.enqueue_raw_update(
                {
                    "message": {
                        "message_id": rng.randint(1, 10**6),
                        "date": int(time.time()),
                        "chat": {"id": -100123, "type": "supergroup", "title": "群"},
                        "from": {"id": user_id, "is_bot": False, "first_name": "g"},
                        "text": rng.choice(COMMANDS),
                    }
                }
            )
        else:
            emu.enqueue_raw_update(
                {
                    "channel_post": {
                        "message_id": rng.randint(1, 10**6),
                        "date": int(time.time()),
                        "chat": {"id": -100999, "type": "channel", "title": "频道"},
                        "text": garbage(rng),
                    }
                }
            )
        if rng.random() < 0.05:
            await asyncio.sleep(0)  # let the bot breathe now and then, as a real stream would

    # Wait until the bot has taken every update and gone quiet.
    for _ in range(600):
        if emu.pending_update_count == 0:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert emu.pending_update_count == 0
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, "\n".join(
        caplog.handler.format(r)
        for r in failures[:3]  # with the traceback
    )
    report = await sandbox.services.store.read(lambda conn: audit(conn, integrity="quick"))
    assert report.ok, str(report)
    # And a member who just wants their points still gets them.
    [reply] = await sandbox.member(9999, language_code="en").send("/balance")
    assert (reply.text or "").startswith("💰 Available points: 0")
