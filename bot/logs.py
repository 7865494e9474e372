"""Logs for operators: plain text by default, one JSON object per line for a log shipper.

A JSON line carries the record (time, level, logger, message, the exception's traceback)
and what was being handled: the update's id, the member as a salted hash (never the
Telegram id) and the ledger operation booked, where there is one. The token is scrubbed
before any of it is written: `bot.app.redact_token_in_logs` puts its filter on every root
handler, and a filter runs before the handler's formatter (traceback text included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Final

from bot.config import LoggingConfig
from bot.programme.booked import booked_operation

LOG_SALT_ENV: Final = "POINTSBOT_LOG_SALT"
# The line `pointsbot` has always written; `[logging] format = "text"` keeps it.
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Enough to tell members apart in a day of logs, too short to be worth a rainbow table.
MEMBER_HASH_HEX: Final = 16

# Set by the update processor around each update it handles (bot/updates.py).
handled_update: ContextVar[int | None] = ContextVar("handled_update", default=None)
handled_member: ContextVar[str | None] = ContextVar("handled_member", default=None)
# Whether a `handling` block is open: the operation booked is named only inside one, since
# a task that books outside any (an aiohttp connection serving request after request) would
# name its last operation on every line after it.
_handling: ContextVar[bool] = ContextVar("handling", default=False)


def member_salt(token: str) -> bytes:
    """The salt members are hashed with: POINTSBOT_LOG_SALT when set, else one derived from
    the bot token (stable for the install, changed with the token)."""
    if salt := os.environ.get(LOG_SALT_ENV, "").strip():
        return salt.encode()
    # One-way: the logs show hashes made with this, never anything the token can be read from.
    return hmac.new(token.encode(), b"pointsbot log member salt", hashlib.sha256).digest()


def member_hash(telegram_id: int, salt: bytes) -> str:
    """A member's stable name in the logs: a keyed hash of the Telegram id, not the id."""
    # Telegram ids are small enough to enumerate: a plain hash would hide nothing.
    digest = hmac.new(salt, str(telegram_id).encode(), hashlib.sha256).hexdigest()
    return digest[:MEMBER_HASH_HEX]


@contextmanager
def handling(update_id: int | None = None, member: str | None = None) -> Iterator[None]:
    """Name this update and member (hashed), and the operation booked inside the block once
    there is one, in everything logged inside it (an HTTP request may open one too)."""
    update_token = handled_update.set(update_id)
    member_token = handled_member.set(member)
    operation_token = booked_operation.set(None)
    handling_token = _handling.set(True)
    try:
        yield
    finally:
        _handling.reset(handling_token)
        booked_operation.reset(operation_token)
        handled_member.reset(member_token)
        handled_update.reset(update_token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the record and the update, member and operation it concerns."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (non-ASCII kept readable)."""
        # ISO 8601 with the host's offset: a shipper needs no guess about the zone.
        when = datetime.fromtimestamp(record.created).astimezone()
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (update_id := handled_update.get()) is not None:
            line["update_id"] = update_id
        if (member := handled_member.get()) is not None:
            line["member"] = member
        if _handling.get() and (operation_id := booked_operation.get()) is not None:
            line["operation_id"] = operation_id
        # The token filter leaves the scrubbed traceback in exc_text: use it, never re-render.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(config: LoggingConfig, *, verbose: bool = False) -> None:
    """Apply [logging] to the root handlers: their format, and the level (DEBUG when -v)."""
    formatter = JsonFormatter() if config.format == "json" else logging.Formatter(TEXT_FORMAT)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(logging.DEBUG if verbose else config.level)
