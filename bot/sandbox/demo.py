"""`pointsbot demo`: the Bot API emulator, the real bot against it, and a terminal chat."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.text import Text

from bot.app import build_application, running
from bot.config import Config, StaffMember, StorageConfig
from bot.programme.till_api import draw_key
from bot.sandbox.client import ChatClient, Reply
from bot.sandbox.seed import DEMO_FIRST_NAME, DEMO_LANGUAGE, DEMO_USER_ID, seed_demo
from bot.sandbox.server import BotApiEmulator
from handlers.common import Services

PROMPT = "你 › "


def demo_config(config: Config, directory: Path, *, api: bool = False) -> Config:
    """The programme with a throwaway database and the demo member as its only staff, an owner
    (every staff command works in the demo, and nothing meant for staff goes to the sample's
    made-up ids); and the till API served, with `api`."""
    storage = StorageConfig(path=str(directory / "demo.sqlite3"), synchronous="NORMAL")
    owner = StaffMember(telegram_id=DEMO_USER_ID, name=DEMO_FIRST_NAME, role="owner")
    program = config.program.model_copy(update={"admins": []})
    # The demo polls its emulator whatever the file says (no webhook to reach a terminal).
    telegram = config.telegram.model_copy(update={"mode": "polling", "webhook_url": ""})
    update: dict[str, object] = {
        "storage": storage,
        "program": program,
        "staff": [owner],
        "telegram": telegram,
    }
    if api:
        update["api"] = config.api.model_copy(update={"enabled": True})
    return config.model_copy(update=update)


async def demo_till_key(services: Services, member_id: int) -> Text:
    """Issue a key for a demo store and say how examples/till.py uses it (the key, like the
    database, lasts as long as the demo)."""
    till_api = services.till_api
    assert till_api is not None
    key_id, secret = draw_key()
    await services.api_keys.create(key_id, "demo", secret)
    member = await services.members.by_id(member_id)
    return Text(
        f"till API on {till_api.url} — in another terminal:\n"
        f"  POINTSBOT_API_KEY={key_id} POINTSBOT_API_SECRET={secret} \\\n"
        f"    python examples/till.py {member.member_code} --url {till_api.url}",
        style="magenta",
    )


def render(console: Console, replies: list[Reply]) -> None:
    """Print the bot's replies; buttons numbered so typing the number taps one."""
    if not replies:
        console.print(Text("  (没有回复 / no reply)", style="dim"))
    for reply in replies:
        if reply.kind == "callback_answer":
            if reply.text:
                console.print(Text(f"  💬 {reply.text}", style="yellow"))
            continue
        marker = {"edit": "🤖 (edited)", "photo": "🤖 [photo]", "document": "🤖 [file]"}
        console.print(Text(marker.get(reply.kind, "🤖"), style="bold green"), end=" ")
        console.print(Text(reply.text or ""))
        numbered = [label for row in reply.keyboard for label in row]
        if numbered:
            console.print(
                Text(
                    "   " + "  ".join(f"[{i}] {label}" for i, label in enumerate(numbered, 1)),
                    style="cyan",
                )
            )


async def interpret(client: ChatClient, line: str) -> list[Reply]:
    """Send a line as text, or tap a button when it is a shown button's number or label."""
    labels = client.buttons()
    if line.isdigit() and 1 <= int(line) <= len(labels):
        return await client.tap(labels[int(line) - 1])
    if line in labels:
        return await client.tap(line)
    # A unique part of a label taps it too ("兑换" for "🎁 兑换"); anything else is a message.
    partial = [label for label in labels if len(line) >= 2 and line in label]
    if len(partial) == 1 and not line.startswith("/"):
        return await client.tap(partial[0])
    return await client.send(line)


async def run_demo(config: Config, *, stdin: object = None, api: bool = False) -> int:
    """Run the demo chat until end of input (serving the till API too, with `api`); return the
    exit status."""
    interactive = sys.stdin.isatty() if stdin is None else False
    console = Console(highlight=False, soft_wrap=True)
    read_line: Callable[[], Awaitable[str]]
    if interactive:
        read_line = lambda: asyncio.to_thread(console.input, PROMPT)  # noqa: E731
    else:
        read_line = lambda: asyncio.to_thread(sys.stdin.readline)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="pointsbot-demo-") as directory:
        programme = demo_config(config, Path(directory), api=api)
        async with BotApiEmulator() as emulator:
            app = build_application(programme, emulator.token, base_url=emulator.base_url)
            async with running(app, poll_timeout=1):
                member_id = await seed_demo(app.bot_data, app.bot_data.clock())
                client = ChatClient(
                    emulator, DEMO_USER_ID, first_name=DEMO_FIRST_NAME, language_code=DEMO_LANGUAGE
                )
                console.print(
                    Text(
                        f"pointsbot demo — {programme.program.brand} · "
                        f"{programme.program.name.zh_CN}. /start 开始，/help 帮助；"
                        "输入数字或按钮文字即可点按钮；Ctrl-D 退出。",
                        style="bold",
                    )
                )
                if api:
                    console.print(await demo_till_key(app.bot_data, member_id))
                while True:
                    try:
                        line = await read_line()
                    except (EOFError, KeyboardInterrupt):
                        break
                    if not interactive:
                        if line == "":
                            break
                        line = line.rstrip("\n")
                        console.print(Text(PROMPT + line, style="bold"))
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        render(console, await interpret(client, line))
                    except (TimeoutError, LookupError) as exc:
                        console.print(Text(f"  ({exc})", style="red"))
    return 0
