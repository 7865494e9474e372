"""A simulated chat member that talks to the bot through a running BotApiEmulator."""

# The public coroutines take a `timeout` argument on purpose: it is part of the test API.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import Callable

from bot.sandbox.server import (
    TINY_PNG,
    BotApiEmulator,
    BotEvent,
    Button,
    Keyboard,
    SandboxMessage,
    SandboxUser,
)

DEFAULT_SETTLE: float = 0.05
_TRANSCRIPT_LINES = 12


Reply = BotEvent  # what send()/tap() return: one output of the bot to this chat


class ReplyTimeout(TimeoutError):
    """The bot did not produce the expected output in time."""


class ButtonNotFound(LookupError):
    """No (unique) inline button matches what the member tried to tap."""


class ChatClient:
    """One member chatting with the bot: send text, tap buttons, read replies."""

    def __init__(
        self,
        emu: BotApiEmulator,
        user_id: int,
        first_name: str = "测试用户",
        language_code: str | None = "zh-hans",
        username: str | None = None,
        *,
        last_name: str | None = None,
        settle: float = DEFAULT_SETTLE,
    ) -> None:
        self.emu = emu
        self.user_id = user_id
        self.settle = settle
        self.last_callback_answer: str | None = None
        self.last_callback_event: BotEvent | None = None
        try:
            emu.user(user_id)
        except KeyError:
            emu.add_user(
                user_id,
                first_name,
                last_name=last_name,
                username=username,
                language_code=language_code,
            )

    # ------------------------------------------------------------------ actions

    async def send(self, text: str, *, expect: int = 1, timeout: float = 5.0) -> list[BotEvent]:
        """Send ``text``; return the bot's new outputs (at least ``expect``, then settle)."""
        start = self.emu.event_count(self.user_id)
        self.emu.user_sends_text(self.user_id, text)
        return await self._collect(start, expect, timeout, f"sent {text!r}")

    async def edit(
        self, message_id: int, text: str, *, expect: int = 1, timeout: float = 5.0
    ) -> list[BotEvent]:
        """Edit one of the member's own text messages; return the bot's new outputs."""
        start = self.emu.event_count(self.user_id)
        self.emu.user_edits_text(self.user_id, message_id, text)
        return await self._collect(start, expect, timeout, f"edited message {message_id}")

    async def send_sticker(self, *, expect: int = 1, timeout: float = 5.0) -> list[BotEvent]:
        """Send a sticker; return the bot's new outputs."""
        start = self.emu.event_count(self.user_id)
        self.emu.user_sends_sticker(self.user_id)
        return await self._collect(start, expect, timeout, "sent a sticker")

    async def send_photo(
        self,
        caption: str | None = None,
        *,
        data: bytes = TINY_PNG,
        expect: int = 1,
        timeout: float = 5.0,
    ) -> list[BotEvent]:
        """Send a photo (a 1x1 PNG unless ``data`` is given); return the bot's new outputs."""
        start = self.emu.event_count(self.user_id)
        self.emu.user_sends_photo(self.user_id, caption, data=data)
        return await self._collect(start, expect, timeout, "sent a photo")

    async def resend_photo(
        self, file_id: str, caption: str | None = None, *, expect: int = 1, timeout: float = 5.0
    ) -> list[BotEvent]:
        """Send again a photo already in a chat (as forwarding it does: same file_unique_id);
        return the bot's new outputs."""
        start = self.emu.event_count(self.user_id)
        self.emu.user_resends_photo(self.user_id, file_id, caption)
        return await self._collect(start, expect, timeout, f"sent photo {file_id} again")

    async def send_contact(
        self, phone_number: str = "+8613800138000", *, expect: int = 1, timeout: float = 5.0
    ) -> list[BotEvent]:
        """Share the member's own contact; return the bot's new outputs."""
        start = self.emu.event_count(self.user_id)
        self.emu.user_sends_contact(self.user_id, phone_number)
        return await self._collect(start, expect, timeout, "shared a contact")

    async def tap(
        self,
        label: str | int,
        *,
        message: SandboxMessage | BotEvent | int | None = None,
        expect: int = 1,
        timeout: float = 5.0,
        require_answer: bool = True,
    ) -> list[BotEvent]:
        """Tap an inline button by exact label, unique substring or 1-based number.

        The button is looked up on ``message`` (or the latest bot message with inline
        buttons). Returns the new outputs, including the ``callback_answer`` (the toast),
        whose text is also kept in :attr:`last_callback_answer`; ``expect`` counts the
        other outputs only. With ``require_answer`` the tap also waits for
        answerCallbackQuery, as a member's spinner would.
        """
        target = self._keyboard_message(message)
        button = _find_button(target, label, self.transcript)
        if button.callback_data is None:
            raise ButtonNotFound(
                f"button {button.text!r} on message {target.message_id} opens {button.url!r};"
                " it has no callback data to tap"
            )
        return await self.tap_data(
            target.message_id,
            button.callback_data,
            expect=expect,
            timeout=timeout,
            require_answer=require_answer,
            _action=f"tapped {button.text!r} on message {target.message_id}",
        )

    async def tap_data(
        self,
        message_id: int,
        data: str,
        *,
        expect: int = 1,
        timeout: float = 5.0,
        require_answer: bool = True,
        _action: str | None = None,
    ) -> list[BotEvent]:
        """Send a callback query with arbitrary (possibly forged) ``data`` for a message."""
        start = self.emu.event_count(self.user_id)
        query_id = self.emu.user_taps(self.user_id, message_id, data)
        action = _action or f"tapped forged data {data!r} on message {message_id}"
        outputs = await self._collect(
            start, expect, timeout, action, query_id if require_answer else None
        )
        answer = self.emu.callback_answer(query_id)
        self.last_callback_event = answer
        self.last_callback_answer = None if answer is None else (answer.text or "")
        return outputs

    def block(self) -> None:
        """The member blocks the bot."""
        self.emu.user_blocks_bot(self.user_id)

    def unblock(self) -> None:
        """The member unblocks the bot."""
        self.emu.user_unblocks_bot(self.user_id)

    # ------------------------------------------------------------------ reading the chat

    @property
    def user(self) -> SandboxUser:
        """The emulator's record of this member."""
        return self.emu.user(self.user_id)

    @property
    def messages(self) -> list[SandboxMessage]:
        """The chat as the member sees it now (both sides, edits applied)."""
        return self.emu.messages(self.user_id)

    @property
    def bot_messages(self) -> list[SandboxMessage]:
        """The bot's messages in the chat, in their current state."""
        return [msg for msg in self.messages if msg.from_bot]

    @property
    def last_message(self) -> SandboxMessage | None:
        """The latest bot message in its current state."""
        bot_messages = self.bot_messages
        return bot_messages[-1] if bot_messages else None

    @property
    def last_text(self) -> str | None:
        """Text (or caption) of the latest bot message."""
        last = self.last_message
        return None if last is None else last.text

    @property
    def reply_keyboard(self) -> tuple[tuple[str, ...], ...] | None:
        """The custom reply keyboard the member currently sees."""
        return self.emu.reply_keyboard(self.user_id)

    def buttons(self, message: SandboxMessage | BotEvent | int | None = None) -> list[str]:
        """Inline button labels of ``message`` or of the latest bot message that has some."""
        if message is None:
            latest = self._latest_with_keyboard()
            return [] if latest is None else latest.buttons
        return self._current(message).buttons

    def keyboard(self, message: SandboxMessage | BotEvent | int | None = None) -> Keyboard:
        """Inline keyboard rows of ``message`` or of the latest bot message that has one."""
        target = self._current(message) if message is not None else self._latest_with_keyboard()
        return () if target is None else target.keyboard

    def transcript(self, last: int = _TRANSCRIPT_LINES) -> str:
        """The last messages of the chat, one per line, for error messages and debugging."""
        lines = [_describe(msg) for msg in self.messages[-last:]]
        return "\n".join(lines) if lines else "  (the chat is empty)"

    # ------------------------------------------------------------------ internals

    def _current(self, message: SandboxMessage | BotEvent | int) -> SandboxMessage:
        """The current state of a message given by object or id."""
        message_id = message if isinstance(message, int) else message.message_id
        current = self.emu.message(self.user_id, message_id)
        if current is None:
            raise ButtonNotFound(
                f"message {message_id} is not in the chat (deleted?); chat holds:\n"
                + self.transcript()
            )
        return current

    def _latest_with_keyboard(self) -> SandboxMessage | None:
        """The latest bot message that carries inline buttons."""
        for msg in reversed(self.messages):
            if msg.from_bot and msg.keyboard:
                return msg
        return None

    def _keyboard_message(self, message: SandboxMessage | BotEvent | int | None) -> SandboxMessage:
        """The message whose buttons a tap refers to."""
        if message is not None:
            return self._current(message)
        latest = self._latest_with_keyboard()
        if latest is None:
            raise ButtonNotFound(
                "no bot message with inline buttons in the chat; chat holds:\n" + self.transcript()
            )
        return latest

    async def _collect(
        self,
        start: int,
        expect: int,
        timeout: float,
        action: str,
        query_id: str | None = None,
    ) -> list[BotEvent]:
        """Wait for ``expect`` outputs (and the callback answer), settle, return all outputs.

        Callback answers are returned too but do not count towards ``expect``.
        """
        emu, chat_id = self.emu, self.user_id

        def outputs() -> list[BotEvent]:
            return [e for e in emu.events(chat_id, after=start) if e.kind != "callback_answer"]

        def ready() -> bool:
            answered = query_id is None or emu.callback_answer(query_id) is not None
            return answered and len(outputs()) >= expect

        try:
            await emu.wait_for(chat_id, ready, timeout)
        except TimeoutError:
            got = outputs()
            missing_answer = query_id is not None and emu.callback_answer(query_id) is None
            raise ReplyTimeout(
                f"after the member {action}, expected {expect} bot output(s) within "
                f"{timeout}s but got {len(got)}"
                + (" and no answerCallbackQuery" if missing_answer else "")
                + ".\nChat holds:\n"
                + self.transcript()
            ) from None
        await self._settle()
        return emu.events(chat_id, after=start)

    async def _settle(self) -> None:
        """Wait until the bot has been quiet for ``settle`` seconds."""
        while True:
            try:
                await self.emu.wait_for(
                    self.user_id,
                    self._output_after(self.emu.event_count(self.user_id)),
                    self.settle,
                )
            except TimeoutError:
                return

    def _output_after(self, seen: int) -> Callable[[], bool]:
        """A predicate: the bot has produced more than ``seen`` outputs in this chat."""
        return lambda: self.emu.event_count(self.user_id) > seen


def _find_button(
    message: SandboxMessage, label: str | int, transcript: Callable[[], str]
) -> Button:
    """Find one button by exact label, unique case-insensitive substring or 1-based number."""
    buttons = [button for row in message.keyboard for button in row]
    listing = ", ".join(f"{i}. {b.text!r}" for i, b in enumerate(buttons, 1)) or "(none)"
    where = f"on message {message.message_id} ({_short(message.text)!r})"
    if isinstance(label, int) or (label.isdigit() and not any(b.text == label for b in buttons)):
        number = int(label)
        if 1 <= number <= len(buttons):
            return buttons[number - 1]
        raise ButtonNotFound(f"there is no button number {number} {where}; buttons: {listing}")
    exact = [b for b in buttons if b.text == label]
    matches = exact or [b for b in buttons if label.casefold() in b.text.casefold()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ButtonNotFound(
            f"no button {label!r} {where}; buttons: {listing}\nChat holds:\n{transcript()}"
        )
    raise ButtonNotFound(f"{label!r} is ambiguous {where}; matching buttons: {listing}")


def _short(text: str | None, limit: int = 60) -> str:
    """Shorten text for one-line descriptions."""
    flat = (text or "").replace("\n", " ⏎ ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe(msg: SandboxMessage) -> str:
    """One line describing a message: who, id, kind, text and buttons."""
    who = "bot" if msg.from_bot else "member"
    kind = "" if msg.kind == "text" else f"<{msg.kind}> "
    buttons = " ".join(f"[{label}]" for label in msg.buttons)
    return f"  {who} #{msg.message_id}: {kind}{_short(msg.text, 120)}" + (
        f"  {buttons}" if buttons else ""
    )


__all__ = ["DEFAULT_SETTLE", "ButtonNotFound", "ChatClient", "Reply", "ReplyTimeout"]
