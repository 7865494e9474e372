"""A local emulator of the Telegram Bot API over HTTP, for tests, the demo and benchmarks.

The emulator speaks the Bot API wire format on 127.0.0.1 so that an unchanged
python-telegram-bot ``Application`` can run against it through ``base_url``. A plain
Python simulation API (same event loop) plays the users: it enqueues updates, and
records every output of the bot so that tests can read what a member would see.
"""

# The waiting helpers take a `timeout` argument on purpose: it is part of the test API.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, Self

import aiohttp
from aiohttp import web
from aiohttp.web_request import FileField

from bot.clock import Clock, system_clock

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

EventKind = Literal["message", "edit", "delete", "photo", "document", "callback_answer"]
MessageKind = Literal["text", "photo", "document", "sticker", "contact", "location"]

MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_CALLBACK_DATA_BYTES: Final = 64

_INT_PARAMS: Final = frozenset(
    {
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "cache_time",
        "user_id",
        "message_thread_id",
    }
)
_JSON_PARAMS: Final = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "menu_button",
        "link_preview_options",
    }
)
_BOOL_PARAMS: Final = frozenset(
    {
        "show_alert",
        "disable_notification",
        "protect_content",
        "disable_web_page_preview",
        "drop_pending_updates",
        "allow_sending_without_reply",
        "has_spoiler",
        "show_caption_above_media",
        "disable_content_type_detection",
        "allow_paid_broadcast",
    }
)
_STR_PARAMS: Final = frozenset({"text", "caption", "callback_query_id", "description", "name"})
_RATE_LIMITED: Final = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    }
)
_SENDING_ACTIONS: Final = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_DEFAULT_UPDATE_TYPES: Final = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
_INLINE_BUTTON_ACTIONS: Final = (
    "callback_data",
    "url",
    "login_url",
    "web_app",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_COMMAND_RE: Final = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_BOT_COMMAND_NAME_RE: Final = re.compile(r"[a-z0-9_]{1,32}")
_URL_RE: Final = re.compile(r"(?:https?|tg)://\S+", re.IGNORECASE)
_HTML_ENTITY_RE: Final = re.compile(r"&(#[xX][0-9a-fA-F]{1,8}|#[0-9]{1,8}|[a-zA-Z]{2,8});")
_HTML_NAMED: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_TAG_TYPES: Final = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "tg-emoji": "custom_emoji",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_MDV2_RESERVED: Final = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES: Final = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


class ApiError(Exception):
    """A Bot API error reply: ``{"ok": false, "error_code": N, "description": "..."}``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def to_dict(self) -> JSONDict:
        """Return the JSON body of the error reply."""
        body: JSONDict = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> ApiError:
    """Build a 400 Bad Request error."""
    return ApiError(400, f"Bad Request: {description}")


def _too_many_requests(retry_after: int) -> ApiError:
    """Build a 429 Too Many Requests error."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit Telegram counts in."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


@dataclass(frozen=True, slots=True)
class Button:
    """One inline keyboard button as the user sees it."""

    text: str
    callback_data: str | None = None
    url: str | None = None

    def __str__(self) -> str:
        """The label, so that a button prints as the member sees it."""
        return self.text


Keyboard = tuple[tuple[Button, ...], ...]


def _flat_labels(keyboard: Keyboard) -> list[str]:
    """Flatten keyboard rows to a list of button labels."""
    return [button.text for row in keyboard for button in row]


@dataclass(slots=True)
class SandboxUser:
    """A simulated Telegram user, who chats with the bot in a private chat."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "zh-hans"
    blocked: bool = False
    has_started: bool = True

    def to_dict(self) -> JSONDict:
        """The user as a Bot API ``User`` object."""
        user: JSONDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def chat_dict(self) -> JSONDict:
        """The user's private chat as a Bot API ``Chat`` object."""
        chat: JSONDict = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            chat["last_name"] = self.last_name
        if self.username:
            chat["username"] = self.username
        return chat


@dataclass(slots=True)
class SandboxMessage:
    """A message in a private chat, in its current state (edits applied)."""

    chat_id: int
    message_id: int
    from_bot: bool
    kind: MessageKind
    date: int
    text: str | None = None  # the text, or the caption of a media message
    entities: list[JSONDict] = field(default_factory=list)
    reply_markup: JSONDict | None = None  # inline keyboards only, as in the Bot API
    keyboard: Keyboard = ()
    photo: bytes | None = None
    document: bytes | None = None
    filename: str | None = None
    media: JSONDict = field(default_factory=dict)  # "photo"/"document"/"sticker"/... fields
    reply_to_message_id: int | None = None
    edit_date: int | None = None

    @property
    def buttons(self) -> list[str]:
        """Labels of the inline buttons, row by row."""
        return _flat_labels(self.keyboard)

    @property
    def caption(self) -> str | None:
        """The caption of a media message (None for text messages)."""
        return None if self.kind == "text" else self.text


@dataclass(frozen=True, slots=True)
class BotEvent:
    """One output of the bot to a chat, recorded in the order the bot produced it."""

    index: int
    kind: EventKind
    chat_id: int
    message_id: int
    text: str | None
    timestamp: float
    entities: tuple[JSONDict, ...] = ()
    keyboard: Keyboard = ()
    photo: bytes | None = None
    document: bytes | None = None
    filename: str | None = None
    reply_markup: JSONDict | None = None
    show_alert: bool = False
    url: str | None = None
    callback_query_id: str | None = None

    @property
    def buttons(self) -> list[str]:
        """Labels of the inline buttons, row by row."""
        return _flat_labels(self.keyboard)

    @property
    def caption(self) -> str | None:
        """The caption of a photo or document output."""
        return self.text if self.kind in ("photo", "document") else None


class ApiCall(NamedTuple):
    """One Bot API call received by the emulator."""

    method: str
    params: JSONDict


# Telegram's answer to a getUpdates that a newer one ended while it waited.
CONFLICT_OTHER_POLL: Final = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance"
    " is running"
)


class Poll(NamedTuple):
    """One getUpdates served (recorded with `record_polls`): who sent it, when it arrived and
    was answered (time.monotonic()), its offset, how many updates it returned, its status."""

    poller: object
    arrived: float
    answered: float
    offset: int | None
    updates: int
    status: int


class PollConflict(NamedTuple):
    """A waiting getUpdates ended with 409 because another arrived (time.monotonic())."""

    at: float
    ended: object  # the poller whose request was ended
    by: object  # the poller whose request ended it


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file uploaded in a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(slots=True)
class StoredFile:
    """A file known to the emulator, addressable by file_id."""

    file_id: str
    file_unique_id: str
    data: bytes | None
    file_path: str
    filename: str | None = None
    mime_type: str | None = None
    url: str | None = None
    width: int = 0
    height: int = 0


@dataclass(slots=True)
class _Chat:
    user: SandboxUser
    next_message_id: int = 1
    messages: dict[int, SandboxMessage] = field(default_factory=dict)
    events: list[BotEvent] = field(default_factory=list)
    cond: asyncio.Condition | None = None
    reply_keyboard: tuple[tuple[str, ...], ...] | None = None


@dataclass(slots=True)
class _Fault:
    error_code: int
    description: str
    retry_after: int | None
    remaining: int


@dataclass(slots=True)
class _CallbackQuery:
    id: str
    chat_id: int
    message_id: int
    data: str
    answered: bool = False


@dataclass(slots=True)
class _Markup:
    inline: JSONDict | None = None
    keyboard: Keyboard = ()
    reply_keyboard: tuple[tuple[str, ...], ...] | None = None
    remove_keyboard: bool = False


@dataclass(slots=True)
class _ParkedPoll:
    poller: object
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _RateLimit:
    per_second: float
    tokens: float
    updated: float


def _tiny_png() -> bytes:
    """A valid 1x1 PNG, used as the default photo a simulated user sends."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


TINY_PNG: Final = _tiny_png()


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, GIF or JPEG image; (512, 512) when unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + int(length)
    return 512, 512


def _scaled(width: int, height: int, limit: int) -> tuple[int, int]:
    """Scale (width, height) down so that the longer side is at most ``limit``."""
    longest = max(width, height, 1)
    if longest <= limit:
        return width, height
    return max(1, width * limit // longest), max(1, height * limit // longest)


# --------------------------------------------------------------------------- formatting


def _parse_error(message: str) -> ApiError:
    """A 400 for text whose markup Telegram cannot parse."""
    return _bad(f"can't parse entities: {message}")


class _Builder:
    """Accumulates plain text and UTF-16 offsets while parsing marked-up text."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[JSONDict] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.pos > start:
            self.entities.append(
                {"type": kind, "offset": start, "length": self.pos - start, **extra}
            )

    def result(self) -> tuple[str, list[JSONDict]]:
        entities = [
            {key: value for key, value in entity.items() if not key.startswith("_")}
            for entity in sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        ]
        return "".join(self.parts), entities


def _byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of ``text[index]``, as Telegram reports parse errors."""
    return len(text[:index].encode("utf-8"))


def _html_entity(text: str, i: int) -> tuple[str | None, int]:
    """Decode an HTML character reference at ``text[i]``; (None, 0) when there is none."""
    match = _HTML_ENTITY_RE.match(text, i)
    if match is None:
        return None, 0
    body = match.group(1)
    if body.startswith("#"):
        code = int(body[2:], 16) if body[1:2] in ("x", "X") else int(body[1:])
        if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            return chr(code), match.end() - i
        return None, 0
    named = _HTML_NAMED.get(body)
    return (named, match.end() - i) if named is not None else (None, 0)


def _html_unescape(value: str) -> str:
    """Decode the character references of an HTML attribute value."""
    out: list[str] = []
    i = 0
    while i < len(value):
        decoded, consumed = _html_entity(value, i) if value[i] == "&" else (None, 0)
        if decoded is None:
            out.append(value[i])
            i += 1
        else:
            out.append(decoded)
            i += consumed
    return "".join(out)


def _is_tag_char(ch: str) -> bool:
    """Whether ``ch`` may appear in an HTML tag or attribute name."""
    return ch.isascii() and (ch.isalnum() or ch == "-")


def parse_html(text: str) -> tuple[str, list[JSONDict]]:
    """Parse Telegram-flavoured HTML into plain text and entities, strictly like the server."""
    out = _Builder()
    stack: list[tuple[str, int, dict[str, str]]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "&":
            decoded, consumed = _html_entity(text, i)
            if decoded is not None:
                out.add(decoded)
                i += consumed
                continue
        if ch != "<":
            out.add(ch)
            i += 1
            continue
        begin = i
        i += 1
        if i < n and text[i] == "/":
            i += 1
            start = i
            while i < n and _is_tag_char(text[i]):
                i += 1
            name = text[start:i].lower()
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != ">":
                raise _parse_error(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            i += 1
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            tag, offset, attrs = stack.pop()
            if tag != name:
                raise _parse_error(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{tag}>", found "</{name}>"'
                )
            _close_html_tag(out, tag, offset, attrs)
            continue
        start = i
        while i < n and _is_tag_char(text[i]):
            i += 1
        name = text[start:i].lower()
        if name not in _HTML_TAG_TYPES:
            raise _parse_error(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}'
            )
        attrs, i = _html_attributes(text, i, name, begin)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        stack.append((name, out.pos, attrs))
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


def _html_attributes(text: str, i: int, tag: str, begin: int) -> tuple[dict[str, str], int]:
    """Parse the attributes of a start tag; return them and the index after ``>``."""
    attrs: dict[str, str] = {}
    n = len(text)
    unclosed = _parse_error(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise unclosed
        if text[i] == ">":
            return attrs, i + 1
        start = i
        while i < n and _is_tag_char(text[i]):
            i += 1
        name = text[start:i].lower()
        if not name:
            raise _parse_error(
                f'Empty attribute name in the tag "{tag}" at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise unclosed
        if text[i] != "=":
            attrs[name] = ""
            continue
        i += 1
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            raise unclosed
        if text[i] in "\"'":
            end = text.find(text[i], i + 1)
            if end < 0:
                raise unclosed
            raw, i = text[i + 1 : end], end + 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            raw = text[start:i]
        attrs[name] = _html_unescape(raw)


def _close_html_tag(out: _Builder, tag: str, offset: int, attrs: dict[str, str]) -> None:
    """Turn a closed HTML tag into its entity."""
    kind = _HTML_TAG_TYPES[tag]
    if tag == "a":
        href = attrs.get("href")
        if href:
            out.entity("text_link", offset, url=href)
    elif tag == "tg-emoji":
        emoji_id = attrs.get("emoji-id")
        if emoji_id:
            out.entity("custom_emoji", offset, custom_emoji_id=emoji_id)
    elif tag == "code":
        language = attrs.get("class", "")
        if language.startswith("language-"):
            out.entity("code", offset, _language=language[len("language-") :])
        else:
            out.entity("code", offset)
    elif tag == "pre":
        inner = out.entities[-1] if out.entities else None
        if (
            inner is not None
            and inner["type"] == "code"
            and inner["offset"] == offset
            and inner["length"] == out.pos - offset
        ):
            out.entities.pop()
            code_language = inner.get("_language")
            if code_language:
                out.entity("pre", offset, language=code_language)
                return
        out.entity("pre", offset)
    elif tag == "blockquote":
        out.entity("expandable_blockquote" if "expandable" in attrs else "blockquote", offset)
    else:
        out.entity(kind, offset)


def _mdv2_is_end(kind: str, text: str, i: int) -> bool:
    """Whether the MarkdownV2 character at ``text[i]`` closes an entity of ``kind``."""
    ch = text[i]
    if kind == "bold":
        return ch == "*"
    if kind == "italic":
        return ch == "_" and not text.startswith("__", i)
    if kind == "underline":
        return text.startswith("__", i)
    if kind == "strikethrough":
        return ch == "~"
    if kind == "spoiler":
        return text.startswith("||", i)
    if kind == "code":
        return ch == "`"
    if kind == "pre":
        return text.startswith("```", i)
    return ch == "]"  # text_link, custom_emoji


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Parse MarkdownV2 into plain text and entities, with Telegram's reserved-character rules."""
    out = _Builder()
    stack: list[tuple[str, int, int, JSONDict]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        if ch not in _MDV2_RESERVED:
            out.add(ch)
            i += 1
            continue
        top = stack[-1][0] if stack else None
        if top is not None and _mdv2_is_end(top, text, i):
            i = _mdv2_close(text, i, out, stack.pop())
            continue
        if top in ("code", "pre"):
            out.add(ch)
            i += 1
            continue
        begin = i
        extra: JSONDict = {}
        if ch == "_":
            kind, i = ("underline", i + 2) if text.startswith("__", i) else ("italic", i + 1)
        elif ch == "*":
            kind, i = "bold", i + 1
        elif ch == "~":
            kind, i = "strikethrough", i + 1
        elif ch == "|" and text.startswith("||", i):
            kind, i = "spoiler", i + 2
        elif ch == "[":
            kind, i = "text_link", i + 1
        elif ch == "!" and text.startswith("![", i):
            kind, i = "custom_emoji", i + 2
        elif ch == "`" and text.startswith("```", i):
            kind, i = "pre", i + 3
            lang_end = i
            while lang_end < n and not text[lang_end].isspace() and text[lang_end] != "`":
                lang_end += 1
            if lang_end < n and text[lang_end] == "\n":
                if lang_end > i:
                    extra["language"] = text[i:lang_end]
                i = lang_end + 1
        elif ch == "`":
            kind, i = "code", i + 1
        elif ch == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # block quotation marker at a line start: accepted, no entity recorded
            continue
        else:
            raise _parse_error(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        stack.append((kind, out.pos, begin, extra))
    if stack:
        kind, _, begin, _ = stack[-1]
        raise _parse_error(
            f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset "
            f"{_byte_offset(text, begin)}"
        )
    return out.result()


def _mdv2_close(text: str, i: int, out: _Builder, opened: tuple[str, int, int, JSONDict]) -> int:
    """Close a MarkdownV2 entity at ``text[i]``; return the index after its end marker."""
    kind, offset, _, extra = opened
    if kind in ("text_link", "custom_emoji"):
        i += 1
        url = ""
        if i < len(text) and text[i] == "(":
            j = i + 1
            chars: list[str] = []
            while j < len(text) and text[j] != ")":
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                chars.append(text[j])
                j += 1
            if j >= len(text):
                raise _parse_error(
                    f"Can't find end of a URL at byte offset {_byte_offset(text, i)}"
                )
            url, i = "".join(chars), j + 1
        if kind == "text_link" and url:
            out.entity("text_link", offset, url=url)
        elif kind == "custom_emoji":
            emoji_id = url.removeprefix("tg://emoji?id=")
            if not url.startswith("tg://emoji?id=") or not emoji_id:
                raise _parse_error(
                    f"Custom emoji entity must contain a tg://emoji URL at byte offset "
                    f"{_byte_offset(text, i)}"
                )
            out.entity("custom_emoji", offset, custom_emoji_id=emoji_id)
        return i
    out.entity(kind, offset, **extra)
    return i + {"pre": 3, "underline": 2, "spoiler": 2}.get(kind, 1)


def parse_markdown(text: str) -> tuple[str, list[JSONDict]]:
    """Parse legacy Markdown (``*bold*``, ``_italic_``, `` `code` ``, links) like the server."""
    out = _Builder()
    i, n = 0, len(text)
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        if ch not in "_*`[":
            out.add(ch)
            i += 1
            continue
        missing_end = _parse_error(
            f"Can't find end of the entity starting at byte offset {_byte_offset(text, i)}"
        )
        start = out.pos
        if ch == "[":
            end = text.find("]", i + 1)
            if end < 0:
                raise missing_end
            out.add(text[i + 1 : end])
            i = end + 1
            if text.startswith("(", i):
                close = text.find(")", i + 1)
                if close < 0:
                    raise missing_end
                out.entity("text_link", start, url=text[i + 1 : close])
                i = close + 1
        elif text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise missing_end
            body = text[i + 3 : end]
            first, newline, rest = body.partition("\n")
            language = first if newline and first and not any(c.isspace() for c in first) else ""
            out.add(rest if language else body)
            if language:
                out.entity("pre", start, language=language)
            else:
                out.entity("pre", start)
            i = end + 3
        else:
            end = text.find(ch, i + 1)
            if end < 0:
                raise missing_end
            out.add(text[i + 1 : end])
            out.entity(kinds[ch], start)
            i = end + 1
    return out.result()


def _strip_text(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Trim leading/trailing whitespace as Telegram does, shifting entities to match."""
    left = text.lstrip()
    lead = len(text) - len(left)  # whitespace is in the BMP: characters == UTF-16 units
    plain = left.rstrip()
    if lead == 0 and len(plain) == len(text):
        return text, entities
    size = utf16_len(plain)
    shifted: list[JSONDict] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, size)
        if end > start:
            shifted.append({**entity, "offset": start, "length": end - start})
    return plain, shifted


# --------------------------------------------------------------------------- the emulator


def _update_user(body: str) -> int | None:
    """Who an update (as JSON) comes from: its sender, else its chat; None for neither."""
    update = json.loads(body)
    for key, value in update.items():
        if key != "update_id" and isinstance(value, dict):
            sender = value.get("from") or value.get("chat")
            if isinstance(sender, dict) and type(sender.get("id")) is int:
                return int(sender["id"])
    return None


class BotApiEmulator:
    """A Telegram Bot API server on 127.0.0.1 plus a simulation API that plays the users."""

    def __init__(
        self,
        token: str = "123456:SANDBOX",  # noqa: S107 - a sandbox token, not a secret
        bot_username: str = "pointsbot_sandbox_bot",
        *,
        bot_first_name: str = "PointsBot Sandbox",
        host: str = "127.0.0.1",
        port: int = 0,
        record_calls: bool = True,
        record_polls: bool = False,
        clock: Clock = system_clock,
    ) -> None:
        bot_id, sep, _ = token.partition(":")
        if not sep or not bot_id.isdigit():
            raise ValueError("token must look like '<digits>:<secret>'")
        self.token = token
        self.bot_id = int(bot_id)
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.host = host
        self.port = port
        self.record_calls = record_calls
        # Telegram's clock, which dates every message; tests share the bot's clock with it.
        self.clock = clock
        self.calls: list[ApiCall] = []
        # Every getUpdates served, when `record_polls` (harnesses running several bots); a
        # poller is the client's port unless `identify_poller` names it (from that port).
        self.record_polls = record_polls
        self.polls: list[Poll] = []
        self.identify_poller: Callable[[int | None], object] | None = None
        # Like Telegram, a getUpdates ends one still waiting with 409: each such end.
        self.poll_conflicts: list[PollConflict] = []
        self.webhook_url = ""
        # Sent with every delivery as X-Telegram-Bot-Api-Secret-Token (setWebhook's
        # secret_token); tests may change it to play a forged sender.
        self.webhook_secret = ""
        # Every webhook delivery attempt: (update_id, HTTP status; 0 when it could not connect).
        self.webhook_deliveries: list[tuple[int, int]] = []
        # A refused or failed delivery is tried again after this many seconds (Telegram backs
        # off much longer).
        self.webhook_retry_seconds = 0.05
        # Tests and benchmarks of several bot processes: the URLs a load balancer in front of
        # the webhook URL would spread deliveries over, each delivery (and each retry) to the
        # next in turn; empty: every delivery to the webhook URL itself.
        self.webhook_targets: list[str] = []
        self._next_target = 0
        # The network between the bot and Telegram (benchmarks), 0 on loopback: half of it on
        # the way there, half on the way back. A Bot API request is served half a round trip
        # after it was sent and its answer reaches the bot half a round trip later (a long poll
        # too); a webhook delivery reaches the bot half a round trip after the update is
        # picked, and the method call in its response is carried out half a round trip later.
        self.round_trip_seconds = 0.0
        # Bot API requests served (files and webhook responses not counted), and the method
        # calls that came back in webhook responses instead.
        self.requests_served = 0
        self.webhook_response_calls = 0
        self._webhook_wake = asyncio.Event()
        self._deliverers: list[asyncio.Task[None]] = []
        self._delivering: set[int] = set()
        self._delivering_users: set[int] = set()
        self._webhook_delivered: dict[int, str] = {}
        self._update_users: dict[int, int | None] = {}
        self.menu_buttons: dict[int | None, JSONDict] = {}
        self.bot_texts: dict[tuple[str, str], str] = {}
        self._users: dict[int, SandboxUser] = {}
        self._chats: dict[int, _Chat] = {}
        self._all_events: list[BotEvent] = []
        self._updates: deque[tuple[int, str]] = deque()
        self._next_update_id = 1
        self._updates_event = asyncio.Event()
        self._poller_parked = asyncio.Event()
        self._pollers = 0
        self._parked: list[_ParkedPoll] = []
        self._allowed_updates: frozenset[str] = _DEFAULT_UPDATE_TYPES
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._callback_queries: dict[str, _CallbackQuery] = {}
        self._next_callback_id = 1
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._next_file = 1
        self._faults: dict[str, deque[_Fault]] = {}
        self._rate: _RateLimit | None = None
        self._dirty: set[int] = set()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[JSONDict], Any]] = {
            "getMe": self._get_me,
            "logOut": self._return_true,
            "close": self._return_true,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
            "setMyDescription": self._setter("description"),
            "getMyDescription": self._getter("description"),
            "setMyShortDescription": self._setter("short_description"),
            "getMyShortDescription": self._getter("short_description"),
            "setMyName": self._setter("name"),
            "getMyName": self._getter("name"),
            "sendChatAction": self._send_chat_action,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
        }
        self._method_names = {name.lower(): name for name in [*self._handlers, "getUpdates"]}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start serving on ``host:port`` (port 0 picks a free port)."""
        if self._runner is not None:
            return
        self._closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Wake pending long polls and stop serving."""
        if self._runner is None:
            return
        self._closing = True
        self._updates_event.set()
        await self._stop_delivering()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    def _wake_readers(self) -> None:
        """New pending updates: wake the long polls and the webhook deliverers."""
        self._updates_event.set()
        self._webhook_wake.set()

    def _seconds(self) -> int:
        """Now on Telegram's clock, as the Bot API dates messages: whole Unix seconds."""
        return int(self.clock().timestamp())

    @property
    def base_url(self) -> str:
        """The value for ``ApplicationBuilder().base_url(...)``."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """The value for ``ApplicationBuilder().base_file_url(...)``."""
        return f"http://{self.host}:{self.port}/file/bot"

    @property
    def bot_user(self) -> JSONDict:
        """The bot as a Bot API ``User`` object (short form used in messages)."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Route one HTTP request: ``/bot<token>/<method>`` or ``/file/bot<token>/<path>``."""
        path = request.path
        if path.startswith("/file/bot"):
            return self._serve_file(path[len("/file/bot") :])
        if not path.startswith("/bot"):
            return _error_response(ApiError(404, "Not Found"))
        token, sep, method = path[len("/bot") :].partition("/")
        if not sep or not method:
            return _error_response(ApiError(404, "Not Found"))
        if token != self.token:
            return _error_response(ApiError(401, "Unauthorized"))
        name = self._method_names.get(method.lower())
        if name is None:
            return _error_response(ApiError(404, "Not Found"))
        self.requests_served += 1
        if self.round_trip_seconds:
            await asyncio.sleep(self.round_trip_seconds / 2)
        try:
            params = await _read_params(request)
            if self.record_calls:
                self.calls.append(ApiCall(name, params))
            self._check_fault(name)
            if name in _RATE_LIMITED:
                self._check_rate()
            if name == "getUpdates":
                body = await self._get_updates(params, self._poller(request))
            else:
                body = _ok_body(self._handlers[name](params))
            response = web.Response(body=body, content_type="application/json")
        except ApiError as exc:
            response = _error_response(exc)
        await self._notify_dirty()
        if self.round_trip_seconds:
            await asyncio.sleep(self.round_trip_seconds / 2)
        return response

    def _poller(self, request: web.Request) -> object:
        """Who sent a getUpdates: `identify_poller`'s name for the client's port, or the port."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        port = int(peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else None
        return port if self.identify_poller is None else self.identify_poller(port)

    def _serve_file(self, rest: str) -> web.Response:
        """Serve the bytes of a stored file (``base_file_url + token + "/" + file_path``)."""
        token, _, file_path = rest.partition("/")
        stored = self._files_by_path.get(file_path) if token == self.token else None
        if stored is None or stored.data is None:
            return _error_response(ApiError(404, "Not Found"))
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _notify_dirty(self) -> None:
        """Wake the waiters of every chat that got new bot output."""
        while self._dirty:
            chat = self._chats.get(self._dirty.pop())
            if chat is not None and chat.cond is not None:
                async with chat.cond:
                    chat.cond.notify_all()

    def _check_fault(self, method: str) -> None:
        """Raise the next injected failure for ``method``, if any."""
        queue = self._faults.get(method)
        if not queue:
            return
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        raise ApiError(fault.error_code, fault.description, fault.retry_after)

    def _check_rate(self) -> None:
        """Answer 429 when the bot sends faster than the configured rate."""
        rate = self._rate
        if rate is None:
            return
        now = time.monotonic()
        rate.tokens = min(rate.per_second, rate.tokens + (now - rate.updated) * rate.per_second)
        rate.updated = now
        if rate.tokens >= 1.0:
            rate.tokens -= 1.0
            return
        raise _too_many_requests(max(1, math.ceil((1.0 - rate.tokens) / rate.per_second)))

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int = 1,
        count: int = 1,
    ) -> None:
        """Make the next ``count`` calls of ``method`` fail with the given Bot API error."""
        name = self._method_names.get(method.lower())
        if name is None:
            raise ValueError(f"unknown Bot API method {method!r}")
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                400: "Bad Request: injected failure",
                403: "Forbidden: bot was blocked by the user",
                409: "Conflict: terminated by other getUpdates request",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(error_code, f"Error {error_code}")
        fault = _Fault(error_code, description, retry_after if error_code == 429 else None, count)
        self._faults.setdefault(name, deque()).append(fault)

    def rate_limit(self, per_second: float | None) -> None:
        """Answer 429 to sending methods beyond ``per_second`` calls (None switches it off)."""
        if per_second is None:
            self._rate = None
        else:
            self._rate = _RateLimit(per_second, per_second, time.monotonic())

    # ------------------------------------------------------------------ simulation: users

    def add_user(
        self,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "zh-hans",
        has_started: bool = True,
    ) -> SandboxUser:
        """Register a user (and their private chat); re-adding updates the profile."""
        user = self._users.get(user_id)
        if user is None:
            user = SandboxUser(user_id, first_name, last_name, username, language_code)
            user.has_started = has_started
            self._users[user_id] = user
            self._chats[user_id] = _Chat(user)
        else:
            user.first_name, user.last_name = first_name, last_name
            user.username, user.language_code = username, language_code
        return user

    def user(self, user_id: int) -> SandboxUser:
        """The registered user with this id."""
        return self._chat_of(user_id).user

    def _chat_of(self, user_id: int) -> _Chat:
        """The chat of a registered user, or a clear KeyError."""
        chat = self._chats.get(user_id)
        if chat is None:
            raise KeyError(f"unknown sandbox user {user_id}; call add_user() first")
        return chat

    def _user_message(self, user_id: int, kind: MessageKind, **fields: Any) -> SandboxMessage:
        """Store a new message from the user (unblocking the bot like Telegram's Restart)."""
        chat = self._chat_of(user_id)
        if chat.user.blocked:
            self.user_unblocks_bot(user_id)
        chat.user.has_started = True
        return self._new_message(chat, from_bot=False, kind=kind, **fields)

    def user_sends_text(self, user_id: int, text: str) -> int:
        """The user sends ``text``; return the update_id of the ``message`` update."""
        if not text.strip():
            raise ValueError("a member cannot send an empty message")
        msg = self._user_message(user_id, "text", text=text, entities=_command_entities(text))
        return self._enqueue("message", self._message_dict(msg))

    def user_edits_text(self, user_id: int, message_id: int, text: str) -> int:
        """The user edits one of their text messages; return the ``edited_message`` update_id."""
        chat = self._chat_of(user_id)
        msg = chat.messages.get(message_id)
        if msg is None or msg.from_bot or msg.kind != "text":
            raise ValueError(f"user {user_id} has no text message {message_id} to edit")
        msg.text, msg.entities = text, _command_entities(text)
        msg.edit_date = self._seconds()
        return self._enqueue("edited_message", self._message_dict(msg))

    def user_sends_sticker(self, user_id: int, emoji: str = "👍") -> int:
        """The user sends a sticker; return the update_id."""
        file = self._store_file("sticker", None, mime_type="image/webp", width=512, height=512)
        sticker = {
            "file_id": file.file_id,
            "file_unique_id": file.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        msg = self._user_message(user_id, "sticker", media={"sticker": sticker})
        return self._enqueue("message", self._message_dict(msg))

    def user_sends_photo(
        self, user_id: int, caption: str | None = None, *, data: bytes = TINY_PNG
    ) -> int:
        """The user sends a photo (bytes retrievable through getFile); return the update_id."""
        sizes = self._photo_sizes(data, None)
        msg = self._user_message(user_id, "photo", text=caption, photo=data, media={"photo": sizes})
        return self._enqueue("message", self._message_dict(msg))

    def user_resends_photo(self, user_id: int, file_id: str, caption: str | None = None) -> int:
        """The user sends again a photo Telegram already holds (forwarded, or picked again from
        a chat): the message carries the very PhotoSize array, file ids and file_unique_ids
        included, of the message it first came in. Return the update_id."""
        for chat in self._chats.values():
            for earlier in chat.messages.values():
                sizes = earlier.media.get("photo") or []
                if any(size.get("file_id") == file_id for size in sizes):
                    msg = self._user_message(
                        user_id,
                        "photo",
                        text=caption,
                        photo=earlier.photo,
                        media={"photo": [dict(size) for size in sizes]},
                    )
                    return self._enqueue("message", self._message_dict(msg))
        raise KeyError(f"no photo {file_id} in any chat")

    def user_sends_contact(self, user_id: int, phone_number: str = "+8613800138000") -> int:
        """The user shares their own contact; return the update_id."""
        user = self._chat_of(user_id).user
        contact: JSONDict = {
            "phone_number": phone_number,
            "first_name": user.first_name,
            "user_id": user.id,
        }
        if user.last_name:
            contact["last_name"] = user.last_name
        msg = self._user_message(user_id, "contact", media={"contact": contact})
        return self._enqueue("message", self._message_dict(msg))

    def user_sends_location(
        self, user_id: int, latitude: float = 31.2304, longitude: float = 121.4737
    ) -> int:
        """The user shares a location; return the update_id."""
        location = {"latitude": latitude, "longitude": longitude}
        msg = self._user_message(user_id, "location", media={"location": location})
        return self._enqueue("message", self._message_dict(msg))

    def user_taps(self, user_id: int, message_id: int, callback_data: str) -> str:
        """The user taps an inline button carrying ``callback_data``; return the query id."""
        chat = self._chat_of(user_id)
        msg = chat.messages.get(message_id)
        if msg is None:
            raise ValueError(f"chat {user_id} has no message {message_id} to tap on")
        query_id = str(4_000_000_000_000_000 + self._next_callback_id)
        self._next_callback_id += 1
        self._callback_queries[query_id] = _CallbackQuery(
            query_id, user_id, message_id, callback_data
        )
        query = {
            "id": query_id,
            "from": chat.user.to_dict(),
            "message": self._message_dict(msg),
            "chat_instance": str(user_id * 1_000_003 % 9_223_372_036_854_775_783),
            "data": callback_data,
        }
        self._enqueue("callback_query", query)
        return query_id

    def user_blocks_bot(self, user_id: int) -> int:
        """The user blocks the bot; return the update_id of the ``my_chat_member`` update."""
        user = self._chat_of(user_id).user
        user.blocked = True
        return self._enqueue("my_chat_member", self._member_update(user, "member", "kicked"))

    def user_unblocks_bot(self, user_id: int) -> int:
        """The user unblocks the bot; return the update_id of the ``my_chat_member`` update."""
        user = self._chat_of(user_id).user
        user.blocked = False
        return self._enqueue("my_chat_member", self._member_update(user, "kicked", "member"))

    def user_removes_bot_from_group(self, user_id: int, group_id: int, title: str = "群") -> int:
        """The user removes the bot from a group (``group_id`` < 0); return the update_id of the
        ``my_chat_member`` update. The user's private chat is not affected."""
        update = self._member_update(self.user(user_id), "member", "left")
        update["chat"] = {"id": group_id, "type": "group", "title": title}
        return self._enqueue("my_chat_member", update)

    def enqueue_raw_update(self, update: JSONDict) -> int:
        """Enqueue any update dict as-is (its update_id is assigned); return the update_id."""
        update_id = self._next_update_id
        self._next_update_id += 1
        body = {**update, "update_id": update_id}
        self._updates.append((update_id, json.dumps(body, ensure_ascii=False)))
        self._wake_readers()
        return update_id

    def redeliver(self, update_id: int) -> None:
        """Deliver an update to the webhook again, as Telegram does when it missed the 2xx."""
        self._updates.append((update_id, self._webhook_delivered[update_id]))
        self._wake_readers()

    def _member_update(self, user: SandboxUser, old: str, new: str) -> JSONDict:
        """A ``my_chat_member`` update payload for the bot's status change in a private chat."""

        def member(status: str) -> JSONDict:
            entry: JSONDict = {"user": {**self.bot_user, "is_bot": True}, "status": status}
            if status == "kicked":
                entry["until_date"] = 0
            return entry

        return {
            "chat": user.chat_dict(),
            "from": user.to_dict(),
            "date": self._seconds(),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        }

    def _enqueue(self, kind: str, payload: JSONDict) -> int:
        """Append an update of ``kind`` unless ``allowed_updates`` filters it out."""
        update_id = self._next_update_id
        self._next_update_id += 1
        if kind in self._allowed_updates:
            body = json.dumps({"update_id": update_id, kind: payload}, ensure_ascii=False)
            self._updates.append((update_id, body))
            self._wake_readers()
        return update_id

    # ------------------------------------------------------------------ observation

    def messages(self, chat_id: int) -> list[SandboxMessage]:
        """Current state of the chat: bot and user messages, edits applied, deletions removed."""
        return list(self._chat_of(chat_id).messages.values())

    def message(self, chat_id: int, message_id: int) -> SandboxMessage | None:
        """One message of a chat in its current state (None once deleted)."""
        return self._chat_of(chat_id).messages.get(message_id)

    def events(self, chat_id: int | None = None, *, after: int = 0) -> list[BotEvent]:
        """The bot's outputs to one chat (or to all chats) in order, from index ``after``."""
        if chat_id is None:
            return self._all_events[after:]
        return self._chat_of(chat_id).events[after:]

    def event_count(self, chat_id: int) -> int:
        """How many outputs the bot has produced in the chat so far."""
        return len(self._chat_of(chat_id).events)

    def reply_keyboard(self, chat_id: int) -> tuple[tuple[str, ...], ...] | None:
        """The custom reply keyboard the user currently sees, as rows of labels."""
        return self._chat_of(chat_id).reply_keyboard

    def commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """The command list set with setMyCommands for a scope and language."""
        return list(self._commands.get((_scope_key(scope), language_code), []))

    def callback_answer(self, callback_query_id: str) -> BotEvent | None:
        """The answerCallbackQuery output for a query, if the bot answered it."""
        query = self._callback_queries.get(callback_query_id)
        if query is None or not query.answered:
            return None
        for event in reversed(self._chat_of(query.chat_id).events):
            if event.callback_query_id == callback_query_id:
                return event
        return None

    def file(self, file_id: str) -> StoredFile | None:
        """A stored file by its file_id."""
        return self._files.get(file_id)

    @property
    def pending_update_count(self) -> int:
        """Updates enqueued and not yet confirmed by a getUpdates offset."""
        return len(self._updates)

    async def wait_for(
        self,
        chat_id: int,
        predicate: Callable[[], bool],
        timeout: float = 5.0,
    ) -> None:
        """Wait until ``predicate()`` holds, re-checking on each new output to the chat."""
        chat = self._chat_of(chat_id)
        if predicate():
            return
        if chat.cond is None:
            chat.cond = asyncio.Condition()
        cond = chat.cond
        async with asyncio.timeout(timeout), cond:
            await cond.wait_for(predicate)

    async def wait_for_events(
        self,
        chat_id: int,
        after_index: int = 0,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[BotEvent]:
        """Wait for ``count`` outputs after ``after_index``; return all outputs after it.

        Raises TimeoutError when they do not arrive within ``timeout`` seconds.
        """
        events = self._chat_of(chat_id).events
        await self.wait_for(chat_id, lambda: len(events) >= after_index + count, timeout)
        return events[after_index:]

    async def wait_for_long_poll(self, timeout: float = 5.0) -> None:
        """Wait until a getUpdates long poll is parked waiting for updates."""
        if self._pollers:
            return
        self._poller_parked.clear()
        async with asyncio.timeout(timeout):
            await self._poller_parked.wait()

    # ------------------------------------------------------------------ storage helpers

    def _new_message(
        self, chat: _Chat, *, from_bot: bool, kind: MessageKind, **fields: Any
    ) -> SandboxMessage:
        """Create and store the next message of a chat."""
        msg = SandboxMessage(
            chat_id=chat.user.id,
            message_id=chat.next_message_id,
            from_bot=from_bot,
            kind=kind,
            date=self._seconds(),
            **fields,
        )
        chat.next_message_id += 1
        chat.messages[msg.message_id] = msg
        return msg

    def _emit(
        self,
        chat: _Chat,
        kind: EventKind,
        message_id: int,
        msg: SandboxMessage | None = None,
        **fields: Any,
    ) -> BotEvent:
        """Record one bot output to a chat and mark the chat for waking its waiters."""
        if msg is not None:
            fields = {
                "text": msg.text,
                "entities": tuple(msg.entities),
                "keyboard": msg.keyboard,
                "photo": msg.photo,
                "document": msg.document,
                "filename": msg.filename,
                **fields,
            }
        fields.setdefault("text", None)
        event = BotEvent(
            index=len(chat.events),
            kind=kind,
            chat_id=chat.user.id,
            message_id=message_id,
            timestamp=self.clock().timestamp(),
            **fields,
        )
        chat.events.append(event)
        self._all_events.append(event)
        self._dirty.add(chat.user.id)
        return event

    def _message_dict(self, msg: SandboxMessage, *, with_reply: bool = True) -> JSONDict:
        """The message as a Bot API ``Message`` object."""
        user = self._chats[msg.chat_id].user
        body: JSONDict = {
            "message_id": msg.message_id,
            "from": self.bot_user if msg.from_bot else user.to_dict(),
            "chat": user.chat_dict(),
            "date": msg.date,
        }
        if msg.edit_date is not None:
            body["edit_date"] = msg.edit_date
        if with_reply and msg.reply_to_message_id is not None:
            original = self._chats[msg.chat_id].messages.get(msg.reply_to_message_id)
            if original is not None:
                body["reply_to_message"] = self._message_dict(original, with_reply=False)
        if msg.kind == "text":
            body["text"] = msg.text
            if msg.entities:
                body["entities"] = msg.entities
        else:
            body.update(msg.media)
            if msg.text:
                body["caption"] = msg.text
                if msg.entities:
                    body["caption_entities"] = msg.entities
        if msg.reply_markup is not None:
            body["reply_markup"] = msg.reply_markup
        return body

    def _store_file(
        self,
        kind: str,
        data: bytes | None,
        *,
        filename: str | None = None,
        mime_type: str | None = None,
        url: str | None = None,
        width: int = 0,
        height: int = 0,
    ) -> StoredFile:
        """Register a file and give it a file_id, a file_unique_id and a download path."""
        number = self._next_file
        self._next_file += 1
        suffix = filename.rsplit(".", 1)[-1] if filename and "." in filename else "bin"
        if kind == "photo":
            suffix = "jpg"
        stored = StoredFile(
            file_id=f"SBX-{kind}-{number:08d}",
            file_unique_id=f"SBXU{number:08d}",
            data=data,
            file_path=f"{kind}s/file_{number}.{suffix}",
            filename=filename,
            mime_type=mime_type,
            url=url,
            width=width,
            height=height,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _photo_sizes(self, data: bytes | None, url: str | None) -> list[JSONDict]:
        """Store a photo and return its PhotoSize array (a thumbnail and the full size)."""
        width, height = image_size(data) if data else (800, 600)
        sizes: list[JSONDict] = []
        limits = (90, 1280) if max(width, height) > 90 else (1280,)
        for limit in limits:
            w, h = _scaled(width, height, limit)
            stored = self._store_file(
                "photo", data, mime_type="image/jpeg", url=url, width=w, height=h
            )
            size: JSONDict = {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "width": w,
                "height": h,
            }
            if data is not None:
                size["file_size"] = len(data)
            sizes.append(size)
        return sizes

    # ------------------------------------------------------------------ parameter helpers

    def _target_chat(self, params: JSONDict, *, sending: bool = True) -> _Chat:
        """Resolve ``chat_id`` to a chat; 400 when unknown, 403 when the user is unreachable."""
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        chat = self._chats.get(chat_id) if type(chat_id) is int else None
        if chat is None:
            raise _bad("chat not found")
        if sending and chat.user.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if sending and not chat.user.has_started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return chat

    def _target_message(self, chat: _Chat, params: JSONDict, missing: str) -> SandboxMessage:
        """Resolve ``message_id`` within a chat, answering ``missing`` when it does not exist."""
        if params.get("inline_message_id") is not None:
            raise _bad("MESSAGE_ID_INVALID")
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        msg = chat.messages.get(message_id) if type(message_id) is int else None
        if msg is None:
            raise _bad(missing)
        return msg

    def _render(self, text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSONDict]]:
        """Apply ``parse_mode`` (or explicit entities) and trim like Telegram."""
        mode = str(parse_mode).lower() if parse_mode else ""
        if mode == "html":
            plain, found = parse_html(text)
        elif mode == "markdownv2":
            plain, found = parse_markdown_v2(text)
        elif mode == "markdown":
            plain, found = parse_markdown(text)
        elif mode:
            raise _bad("unsupported parse_mode")
        else:
            plain, found = text, _explicit_entities(entities)
        return _strip_text(plain, found)

    def _markup(self, raw: Any, *, inline_only: bool = False) -> _Markup:
        """Validate ``reply_markup`` like Telegram and split it into what each side sees."""
        if raw is None:
            return _Markup()
        if not isinstance(raw, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in raw:
            return _inline_markup(raw["inline_keyboard"])
        if inline_only:
            raise _bad("inline keyboard expected")
        if "keyboard" in raw:
            rows = raw["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad("can't parse reply keyboard markup JSON object")
            labels: list[tuple[str, ...]] = []
            for row in rows:
                row_labels: list[str] = []
                for button in row:
                    label = button.get("text") if isinstance(button, dict) else button
                    if not isinstance(label, str) or not label:
                        raise _bad("can't parse keyboard button: Text must be a String")
                    row_labels.append(label)
                labels.append(tuple(row_labels))
            return _Markup(reply_keyboard=tuple(labels))
        if raw.get("remove_keyboard"):
            return _Markup(remove_keyboard=True)
        if "force_reply" in raw:
            return _Markup()
        raise _bad("can't parse reply keyboard markup JSON object")

    def _reply_target(self, chat: _Chat, params: JSONDict) -> int | None:
        """The message this one replies to, validated like Telegram."""
        reply = params.get("reply_parameters")
        allow_missing = bool(params.get("allow_sending_without_reply"))
        message_id: Any = params.get("reply_to_message_id")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = bool(reply.get("allow_sending_without_reply", allow_missing))
        if message_id is None:
            return None
        if type(message_id) is int and message_id in chat.messages:
            return message_id
        if allow_missing:
            return None
        raise _bad("message to be replied not found")

    def _apply_reply_keyboard(self, chat: _Chat, markup: _Markup) -> None:
        """Update the custom keyboard the user sees after a message carrying ``markup``."""
        if markup.reply_keyboard is not None:
            chat.reply_keyboard = markup.reply_keyboard
        elif markup.remove_keyboard:
            chat.reply_keyboard = None

    def _caption(self, params: JSONDict) -> tuple[str | None, list[JSONDict]]:
        """The rendered caption of a media message, limited to 1024 characters."""
        caption = params.get("caption")
        if caption is None or caption == "":
            return None, []
        plain, entities = self._render(
            str(caption), params.get("parse_mode"), params.get("caption_entities")
        )
        if utf16_len(plain) > MAX_CAPTION_LENGTH:
            raise _bad("message caption is too long")
        return plain or None, entities

    # ------------------------------------------------------------------ methods

    def _return_true(self, params: JSONDict) -> bool:
        """Methods that only acknowledge (close, logOut)."""
        return True

    def _get_me(self, params: JSONDict) -> JSONDict:
        """getMe."""
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: JSONDict, poller: object = None) -> bytes:
        """getUpdates: end a long poll still waiting (409, as Telegram does), confirm by
        offset, then return pending updates or long-poll for them."""
        arrived = time.monotonic()
        offset = params.get("offset")
        try:
            body, count = await self._poll(params, poller)
        except ApiError as exc:
            self._record_poll(poller, arrived, offset, 0, exc.error_code)
            raise
        except asyncio.CancelledError:  # the client went away while it waited: status 0
            self._record_poll(poller, arrived, offset, 0, 0)
            raise
        self._record_poll(poller, arrived, offset, count, 200)
        return body

    def _record_poll(
        self, poller: object, arrived: float, offset: Any, count: int, status: int
    ) -> None:
        if self.record_polls:
            at = offset if type(offset) is int else None
            self.polls.append(Poll(poller, arrived, time.monotonic(), at, count, status))

    async def _poll(self, params: JSONDict, poller: object) -> tuple[bytes, int]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        for parked in self._parked:  # one getUpdates at a time: the newest wins
            if not parked.ended.is_set():
                parked.ended.set()
                self.poll_conflicts.append(PollConflict(time.monotonic(), parked.poller, poller))
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = (
                frozenset(str(a) for a in allowed) if allowed else _DEFAULT_UPDATE_TYPES
            )
        offset = params.get("offset")
        if type(offset) is int and offset > 0:
            while self._updates and self._updates[0][0] < offset:
                self._updates.popleft()
        elif type(offset) is int and offset < 0:
            while len(self._updates) > -offset:
                self._updates.popleft()
        limit = params.get("limit")
        limit = min(max(limit, 1), 100) if type(limit) is int else 100
        timeout = params.get("timeout")
        if (
            not self._updates
            and isinstance(timeout, int | float)
            and not isinstance(timeout, bool)
            and timeout > 0
            and not self._closing
        ):
            await self._park(_ParkedPoll(poller), timeout)
        batch = [body for _, body in itertools.islice(self._updates, limit)]
        return ('{"ok":true,"result":[' + ",".join(batch) + "]}").encode(), len(batch)

    async def _park(self, parked: _ParkedPoll, timeout: float) -> None:
        """Wait up to `timeout` for updates; raises 409 when another getUpdates ends the wait."""
        self._updates_event.clear()
        self._pollers += 1
        self._parked.append(parked)
        self._poller_parked.set()
        updates = asyncio.ensure_future(self._updates_event.wait())
        ended = asyncio.ensure_future(parked.ended.wait())
        try:
            await asyncio.wait(
                (updates, ended), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            updates.cancel()
            ended.cancel()
            self._pollers -= 1
            self._parked.remove(parked)
        if parked.ended.is_set():
            raise ApiError(409, CONFLICT_OTHER_POLL)

    def _set_webhook(self, params: JSONDict) -> bool:
        """setWebhook: pending and new updates are POSTed to the URL from now on, as Telegram
        does (up to max_connections at once, one at a time per user, in order, each retried
        until answered with a 2xx)."""
        url = params.get("url")
        self.webhook_url = str(url) if url else ""
        secret = params.get("secret_token")
        self.webhook_secret = str(secret) if secret else ""
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = (
                frozenset(str(a) for a in allowed) if allowed else _DEFAULT_UPDATE_TYPES
            )
        if params.get("drop_pending_updates"):
            self._updates.clear()
        connections = params.get("max_connections")
        connections = min(max(connections, 1), 100) if type(connections) is int else 40
        if self.webhook_url and not self._deliverers:
            self._deliverers = [
                asyncio.create_task(self._deliver_forever(), name=f"sandbox-webhook-{n}")
                for n in range(connections)
            ]
        self._webhook_wake.set()
        return True

    def _delete_webhook(self, params: JSONDict) -> bool:
        """deleteWebhook, optionally dropping pending updates."""
        self.webhook_url = ""
        self._webhook_wake.set()  # the deliverers see no URL and end
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _stop_delivering(self) -> None:
        deliverers, self._deliverers = self._deliverers, []
        for task in deliverers:
            task.cancel()
        await asyncio.gather(*deliverers, return_exceptions=True)

    def _next_delivery(self) -> tuple[int, str, int | None] | None:
        """The oldest pending update not being delivered whose user has none in delivery."""
        for update_id, body in self._updates:
            if update_id in self._delivering:
                continue
            user = self._update_users.get(update_id, -1)
            if user == -1:  # parsed once per update, not at every look
                user = self._update_users[update_id] = _update_user(body)
            if user is not None and user in self._delivering_users:
                continue
            return update_id, body, user
        return None

    async def _deliver_forever(self) -> None:
        """One of the webhook's connections: POST pending updates until the webhook is gone."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while self.webhook_url and not self._closing:
                picked = self._next_delivery()
                if picked is None:
                    self._webhook_wake.clear()
                    await self._webhook_wake.wait()
                    continue
                update_id, body, user = picked
                self._delivering.add(update_id)
                if user is not None:
                    self._delivering_users.add(user)
                try:
                    status = await self._post_update(session, body, update_id)
                finally:
                    self._delivering.discard(update_id)
                    if user is not None:
                        self._delivering_users.discard(user)
                    self._webhook_wake.set()  # this user's next update may go now
                self.webhook_deliveries.append((update_id, status))
                if 200 <= status < 300:
                    self._webhook_delivered[update_id] = body
                    with contextlib.suppress(ValueError):
                        self._updates.remove((update_id, body))
                else:
                    await asyncio.sleep(self.webhook_retry_seconds)

    async def _post_update(self, session: aiohttp.ClientSession, body: str, update_id: int) -> int:
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret
        if self.round_trip_seconds:
            await asyncio.sleep(self.round_trip_seconds / 2)
        url = self.webhook_url
        if self.webhook_targets:
            url = self.webhook_targets[self._next_target % len(self.webhook_targets)]
            self._next_target += 1
        try:
            async with session.post(url, data=body.encode(), headers=headers) as r:
                answer = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            return 0
        if 200 <= status < 300 and answer:
            if self.round_trip_seconds:
                await asyncio.sleep(self.round_trip_seconds / 2)
            await self._call_from_response(answer, update_id)
        return status

    async def _call_from_response(self, answer: bytes, update_id: int) -> None:
        """Carry out the one method call a webhook response may hold, as Telegram does: its
        result goes nowhere, and a call that fails is dropped."""
        try:
            call = json.loads(answer)
        except ValueError:
            return
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return
        name = self._method_names.get(call.pop("method").lower())
        if name is None or name == "getUpdates":
            return
        params = {key: _coerce(key, value) for key, value in call.items()}
        if self.record_calls:
            self.calls.append(ApiCall(name, params))
        self.webhook_response_calls += 1
        try:
            self._check_fault(name)
            self._handlers[name](params)
        except ApiError as exc:
            log.info("method %s in the response to update %s failed: %s", name, update_id, exc)
        await self._notify_dirty()

    def _get_webhook_info(self, params: JSONDict) -> JSONDict:
        """getWebhookInfo."""
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    def _set_my_commands(self, params: JSONDict) -> bool:
        """setMyCommands, stored per scope and language_code."""
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        cleaned: list[JSONDict] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse commands JSON object")
            name = str(command.get("command", "")).removeprefix("/")
            description = str(command.get("description", ""))
            if not _BOT_COMMAND_NAME_RE.fullmatch(name):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = (_scope_key(params.get("scope")), str(params.get("language_code") or ""))
        self._commands[key] = cleaned
        return True

    def _get_my_commands(self, params: JSONDict) -> list[JSONDict]:
        """getMyCommands."""
        key = (_scope_key(params.get("scope")), str(params.get("language_code") or ""))
        return self._commands.get(key, [])

    def _delete_my_commands(self, params: JSONDict) -> bool:
        """deleteMyCommands."""
        key = (_scope_key(params.get("scope")), str(params.get("language_code") or ""))
        self._commands.pop(key, None)
        return True

    def _set_chat_menu_button(self, params: JSONDict) -> bool:
        """setChatMenuButton, for one chat or the default."""
        chat_id = params.get("chat_id")
        if chat_id is not None:
            self._target_chat(params, sending=False)
        button = params.get("menu_button")
        self.menu_buttons[chat_id] = button if isinstance(button, dict) else {"type": "default"}
        return True

    def _get_chat_menu_button(self, params: JSONDict) -> JSONDict:
        """getChatMenuButton."""
        chat_id = params.get("chat_id")
        return self.menu_buttons.get(chat_id) or self.menu_buttons.get(None) or {"type": "commands"}

    def _setter(self, key: str) -> Callable[[JSONDict], bool]:
        """setMyDescription / setMyShortDescription / setMyName, stored per language."""

        def handler(params: JSONDict) -> bool:
            value = params.get(key)
            language = str(params.get("language_code") or "")
            if value:
                self.bot_texts[(key, language)] = str(value)
            else:
                self.bot_texts.pop((key, language), None)
            return True

        return handler

    def _getter(self, key: str) -> Callable[[JSONDict], JSONDict]:
        """getMyDescription / getMyShortDescription / getMyName."""

        def handler(params: JSONDict) -> JSONDict:
            language = str(params.get("language_code") or "")
            value = self.bot_texts.get((key, language), self.bot_texts.get((key, ""), ""))
            if key == "name" and not value:
                value = self.bot_first_name
            return {key: value}

        return handler

    def _send_chat_action(self, params: JSONDict) -> bool:
        """sendChatAction (not recorded as an output: it is gone after 5 seconds)."""
        self._target_chat(params)
        if params.get("action") not in _SENDING_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _send_message(self, params: JSONDict) -> JSONDict:
        """sendMessage."""
        chat = self._target_chat(params)
        text = params.get("text")
        if text is None or not str(text).strip():
            raise _bad("message text is empty")
        plain, entities = self._render(str(text), params.get("parse_mode"), params.get("entities"))
        if not plain:
            raise _bad("message text is empty")
        if utf16_len(plain) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        markup = self._markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat, params)
        msg = self._new_message(
            chat,
            from_bot=True,
            kind="text",
            text=plain,
            entities=entities,
            reply_markup=markup.inline,
            keyboard=markup.keyboard,
            reply_to_message_id=reply_to,
        )
        self._apply_reply_keyboard(chat, markup)
        self._emit(chat, "message", msg.message_id, msg, reply_markup=params.get("reply_markup"))
        return self._message_dict(msg)

    def _media_input(self, params: JSONDict, name: str) -> tuple[UploadedFile | None, str | None]:
        """The uploaded file or the file_id/URL string given for a media parameter."""
        value = params.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value[len("attach://") :])
        if isinstance(value, UploadedFile):
            if not value.data:
                raise _bad("file must be non-empty")
            return value, None
        if isinstance(value, str) and value:
            return None, value
        raise _bad(f"there is no {name} in the request")

    def _send_photo(self, params: JSONDict) -> JSONDict:
        """sendPhoto with an uploaded file, a known file_id or a URL (not downloaded)."""
        chat = self._target_chat(params)
        upload, reference = self._media_input(params, "photo")
        caption, entities = self._caption(params)
        markup = self._markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat, params)
        data: bytes | None
        if upload is not None:
            data = upload.data
            sizes = self._photo_sizes(data, None)
        elif reference is not None and _URL_RE.fullmatch(reference):
            data = None
            sizes = self._photo_sizes(None, reference)
        else:
            known = self._files.get(reference or "")
            if known is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            data = known.data
            sizes = self._photo_sizes(data, known.url)
        msg = self._new_message(
            chat,
            from_bot=True,
            kind="photo",
            text=caption,
            entities=entities,
            reply_markup=markup.inline,
            keyboard=markup.keyboard,
            photo=data,
            media={"photo": sizes},
            reply_to_message_id=reply_to,
        )
        self._apply_reply_keyboard(chat, markup)
        self._emit(chat, "photo", msg.message_id, msg, reply_markup=params.get("reply_markup"))
        return self._message_dict(msg)

    def _send_document(self, params: JSONDict) -> JSONDict:
        """sendDocument with an uploaded file or a known file_id."""
        chat = self._target_chat(params)
        upload, reference = self._media_input(params, "document")
        caption, entities = self._caption(params)
        markup = self._markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat, params)
        if upload is not None:
            filename = upload.filename or "document"
            stored = self._store_file(
                "document",
                upload.data,
                filename=filename,
                mime_type=upload.content_type or "application/octet-stream",
            )
        else:
            known = self._files.get(reference or "")
            if known is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            stored = known
        document: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": stored.filename or "document",
            "mime_type": stored.mime_type or "application/octet-stream",
        }
        if stored.data is not None:
            document["file_size"] = len(stored.data)
        msg = self._new_message(
            chat,
            from_bot=True,
            kind="document",
            text=caption,
            entities=entities,
            reply_markup=markup.inline,
            keyboard=markup.keyboard,
            document=stored.data,
            filename=stored.filename,
            media={"document": document},
            reply_to_message_id=reply_to,
        )
        self._apply_reply_keyboard(chat, markup)
        self._emit(chat, "document", msg.message_id, msg, reply_markup=params.get("reply_markup"))
        return self._message_dict(msg)

    def _editable(self, params: JSONDict) -> tuple[_Chat, SandboxMessage]:
        """The chat and bot message an edit method targets."""
        chat = self._target_chat(params)
        msg = self._target_message(chat, params, "message to edit not found")
        if not msg.from_bot:
            raise _bad("message can't be edited")
        return chat, msg

    def _finish_edit(self, chat: _Chat, msg: SandboxMessage, params: JSONDict) -> JSONDict:
        """Stamp the edit, record it as an output and return the edited Message."""
        msg.edit_date = self._seconds()
        self._emit(chat, "edit", msg.message_id, msg, reply_markup=params.get("reply_markup"))
        return self._message_dict(msg)

    def _edit_message_text(self, params: JSONDict) -> JSONDict:
        """editMessageText (omitting reply_markup removes the inline keyboard, like Telegram)."""
        chat, msg = self._editable(params)
        text = params.get("text")
        if text is None or not str(text).strip():
            raise _bad("message text is empty")
        if msg.kind != "text":
            raise _bad("there is no text in the message to edit")
        plain, entities = self._render(str(text), params.get("parse_mode"), params.get("entities"))
        if not plain:
            raise _bad("message text is empty")
        if utf16_len(plain) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        markup = self._markup(params.get("reply_markup"), inline_only=True)
        if (plain, entities, markup.inline) == (msg.text, msg.entities, msg.reply_markup):
            raise _not_modified()
        msg.text, msg.entities = plain, entities
        msg.reply_markup, msg.keyboard = markup.inline, markup.keyboard
        return self._finish_edit(chat, msg, params)

    def _edit_message_caption(self, params: JSONDict) -> JSONDict:
        """editMessageCaption."""
        chat, msg = self._editable(params)
        if msg.kind == "text":
            raise _bad("there is no caption in the message to edit")
        caption, entities = self._caption(params)
        markup = self._markup(params.get("reply_markup"), inline_only=True)
        if (caption, entities, markup.inline) == (msg.text, msg.entities, msg.reply_markup):
            raise _not_modified()
        msg.text, msg.entities = caption, entities
        msg.reply_markup, msg.keyboard = markup.inline, markup.keyboard
        return self._finish_edit(chat, msg, params)

    def _edit_message_reply_markup(self, params: JSONDict) -> JSONDict:
        """editMessageReplyMarkup (no reply_markup removes the keyboard)."""
        chat, msg = self._editable(params)
        markup = self._markup(params.get("reply_markup"), inline_only=True)
        if markup.inline == msg.reply_markup:
            raise _not_modified()
        msg.reply_markup, msg.keyboard = markup.inline, markup.keyboard
        return self._finish_edit(chat, msg, params)

    def _delete_message(self, params: JSONDict) -> bool:
        """deleteMessage (bot or user messages of the private chat)."""
        chat = self._target_chat(params, sending=False)
        msg = self._target_message(chat, params, "message to delete not found")
        del chat.messages[msg.message_id]
        self._emit(chat, "delete", msg.message_id, text=msg.text)
        return True

    def _answer_callback_query(self, params: JSONDict) -> bool:
        """answerCallbackQuery; each query can be answered once."""
        query = self._callback_queries.get(str(params.get("callback_query_id", "")))
        if query is None or query.answered:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and utf16_len(str(text)) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query.answered = True
        chat = self._chats[query.chat_id]
        url = params.get("url")
        self._emit(
            chat,
            "callback_answer",
            query.message_id,
            text=str(text) if text is not None else None,
            show_alert=bool(params.get("show_alert")),
            url=str(url) if url else None,
            callback_query_id=query.id,
        )
        return True

    def _get_file(self, params: JSONDict) -> JSONDict:
        """getFile: a path under ``base_file_url`` for a stored file."""
        stored = self._files.get(str(params.get("file_id", "")))
        if stored is None:
            raise _bad("invalid file_id")
        body: JSONDict = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_path": stored.file_path,
        }
        if stored.data is not None:
            body["file_size"] = len(stored.data)
        return body


# --------------------------------------------------------------------------- module helpers


def _not_modified() -> ApiError:
    """The 400 Telegram answers to an edit that changes nothing."""
    return _bad(
        "message is not modified: specified new message content and reply markup are "
        "exactly the same as a current content and reply markup of the message"
    )


def _scope_key(scope: Any) -> str:
    """A hashable key for a BotCommandScope."""
    if not isinstance(scope, dict) or not scope:
        return '{"type":"default"}'
    return json.dumps(scope, sort_keys=True, separators=(",", ":"))


def _command_entities(text: str) -> list[JSONDict]:
    """A ``bot_command`` entity for a leading ``/command`` or ``/command@botname``."""
    match = _COMMAND_RE.match(text)
    if match is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(match.group())}]


def _explicit_entities(entities: Any) -> list[JSONDict]:
    """Validate an explicit ``entities`` list."""
    if entities is None:
        return []
    if not isinstance(entities, list):
        raise _bad("can't parse entities JSON object")
    checked: list[JSONDict] = []
    for entity in entities:
        if (
            not isinstance(entity, dict)
            or not isinstance(entity.get("type"), str)
            or type(entity.get("offset")) is not int
            or type(entity.get("length")) is not int
        ):
            raise _bad("can't parse entities JSON object")
        checked.append(dict(entity))
    return checked


def _inline_markup(rows: Any) -> _Markup:
    """Validate an inline keyboard and parse it into Buttons."""
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
    parsed: list[tuple[Button, ...]] = []
    clean_rows: list[list[JSONDict]] = []
    for row in rows:
        buttons: list[Button] = []
        clean_row: list[JSONDict] = []
        for raw in row:
            if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
                raise _bad("can't parse inline keyboard button: Text must be a String")
            actions = [key for key in _INLINE_BUTTON_ACTIONS if key in raw]
            if not actions:
                raise _bad("text buttons are unallowed in the inline keyboard")
            data = raw.get("callback_data")
            if data is not None:
                size = len(str(data).encode("utf-8"))
                if not isinstance(data, str) or not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad("BUTTON_DATA_INVALID")
            url = raw.get("url")
            if url is not None and (not isinstance(url, str) or not _URL_RE.fullmatch(url)):
                raise _bad("BUTTON_URL_INVALID")
            buttons.append(Button(raw["text"], data, url))
            clean_row.append(dict(raw))
        parsed.append(tuple(buttons))
        clean_rows.append(clean_row)
    inline: JSONDict | None = {"inline_keyboard": clean_rows} if any(clean_rows) else None
    return _Markup(inline=inline, keyboard=tuple(row for row in parsed if row))


def _coerce(name: str, value: Any) -> Any:
    """Decode one request parameter the way the Bot API types it."""
    if isinstance(value, UploadedFile):
        return value
    if name in _JSON_PARAMS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            if name == "reply_markup":
                raise _bad("can't parse reply keyboard markup JSON object") from None
            raise _bad(f"can't parse {name} JSON object") from None
    if name in _INT_PARAMS and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if name in _BOOL_PARAMS and isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    if name in _STR_PARAMS and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


async def _read_params(request: web.Request) -> JSONDict:
    """Read query string, JSON, urlencoded or multipart parameters into one typed dict."""
    raw: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.body_exists:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise _bad("can't parse JSON object")
            raw.update(body)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, FileField):
                    raw[key] = UploadedFile(value.filename, value.content_type, value.file.read())
                elif isinstance(value, bytes | bytearray):
                    raw[key] = bytes(value).decode("utf-8", errors="replace")
                else:
                    raw[key] = value
    return {key: _coerce(key, value) for key, value in raw.items()}


def _ok_body(result: Any) -> bytes:
    """Serialize a successful reply."""
    return json.dumps({"ok": True, "result": result}, ensure_ascii=False).encode("utf-8")


def _error_response(error: ApiError) -> web.Response:
    """Serialize an error reply with the matching HTTP status."""
    return web.Response(
        status=error.error_code,
        body=json.dumps(error.to_dict(), ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
    )


__all__ = [
    "MAX_CALLBACK_DATA_BYTES",
    "MAX_CAPTION_LENGTH",
    "MAX_TEXT_LENGTH",
    "TINY_PNG",
    "ApiCall",
    "ApiError",
    "BotApiEmulator",
    "BotEvent",
    "Button",
    "Keyboard",
    "SandboxMessage",
    "SandboxUser",
    "StoredFile",
    "UploadedFile",
    "image_size",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
    "utf16_len",
]
