"""The update processor: members are served at the same time, each one's updates in order."""

from __future__ import annotations

import asyncio

from telegram import Chat, Message, Update, User

from bot.sending import read_back
from bot.updates import PerMemberUpdateProcessor, member_key
from tests.conftest import NOW, Sandbox


def text_update(update_id: int, user_id: int, text: str) -> Update:
    user = User(user_id, "m", is_bot=False)
    chat = Chat(user_id, Chat.PRIVATE)
    message = Message(update_id, NOW, chat, from_user=user, text=text)
    return Update(update_id, message=message)


async def run_all(
    processor: PerMemberUpdateProcessor, jobs: list[tuple[Update, float]]
) -> list[str]:
    """Feed updates in order, as the Application does (a task each); return the finish order."""
    finished: list[str] = []

    async def handle(update: Update, seconds: float) -> None:
        await asyncio.sleep(seconds)
        assert update.effective_message is not None
        finished.append(str(update.effective_message.text))

    async with processor:
        tasks = [
            asyncio.create_task(processor.process_update(update, handle(update, seconds)))
            for update, seconds in jobs
        ]
        await asyncio.gather(*tasks)
    return finished


async def test_one_members_updates_finish_in_arrival_order() -> None:
    jobs = [
        (text_update(1, 7, "a1"), 0.05),
        (text_update(2, 7, "a2"), 0.0),
        (text_update(3, 7, "a3"), 0.01),
    ]
    assert await run_all(PerMemberUpdateProcessor(), jobs) == ["a1", "a2", "a3"]


async def test_a_slow_member_does_not_hold_up_another() -> None:
    jobs = [(text_update(1, 7, "slow"), 0.2), (text_update(2, 8, "quick"), 0.0)]
    assert await run_all(PerMemberUpdateProcessor(), jobs) == ["quick", "slow"]


async def test_queued_updates_of_one_member_do_not_take_the_slots_of_others() -> None:
    # 2 slots; member 7 floods 20 slow updates, member 8 still gets served early.
    jobs = [(text_update(i, 7, f"flood{i}"), 0.01) for i in range(1, 21)]
    jobs.append((text_update(99, 8, "other"), 0.0))
    finished = await run_all(PerMemberUpdateProcessor(workers=2), jobs)
    assert finished.index("other") < 3
    assert [f for f in finished if f.startswith("flood")] == [f"flood{i}" for i in range(1, 21)]


def test_member_key_is_the_user_or_the_chat() -> None:
    assert member_key(text_update(1, 42, "x")) == 42
    assert member_key(object()) is None


async def test_replies_keep_the_order_members_wrote_in(sandbox: Sandbox) -> None:
    chat = sandbox.member(4401)
    await chat.send("/start")
    # Long rules come in several messages: how many, another member's /rules shows.
    parts = len(await sandbox.member(4402).send("/rules"))
    sandbox.emu.user_sends_text(4401, "/rules")
    sandbox.emu.user_sends_text(4401, "/help")
    await chat.send("/balance", expect=parts + 2)
    texts = [m.text or "" for m in chat.bot_messages][-(parts + 2) :]
    assert texts[0].startswith("📜") and "/balance" in texts[-2] and texts[-1].startswith("💰")


async def test_replies_are_sent_but_not_read_back_while_an_update_is_served(
    sandbox: Sandbox,
) -> None:
    chat = sandbox.member(4101)
    bot = sandbox.app.bot
    results: list[object] = []

    async def handle() -> None:
        results.append(await bot.send_message(4101, "inside"))
        with read_back():
            results.append(await bot.send_message(4101, "read back"))

    processor = PerMemberUpdateProcessor()
    async with processor:
        await processor.process_update(text_update(1, 4101, "hi"), handle())
    # Outside an update (a job, the outbox sender) the sent message is read back as usual.
    outside = await bot.send_message(4101, "outside")
    assert results[0] is True
    assert isinstance(results[1], Message) and results[1].text == "read back"
    assert isinstance(outside, Message) and outside.text == "outside"
    assert [m.text for m in chat.messages if m.from_bot][-3:] == [
        "inside",
        "read back",
        "outside",
    ]
