"""The audit-trail exports: every posting with its operation (a transfer's rows name both
members), every household event, and every member's task progress and completions, as CSV,
times in local time."""

from __future__ import annotations

import csv
import json
import sqlite3
from typing import TYPE_CHECKING, Final, TextIO

from bot.config import Config
from storage.family import household_events
from storage.ledger import LedgerLine, count_ledger_lines, iter_ledger
from storage.members import member_codes_by_id
from storage.tasks import iter_task_records

if TYPE_CHECKING:
    from bot.progress import ProgressCallback

COLUMNS: Final = (
    "posting_id",
    "operation_id",
    "created_at",
    "kind",
    "key",
    "actor",
    "reason",
    "reference",
    "reverses_operation_id",
    "account",
    "member_id",
    "member_code",
    "amount",
    "meta",
    # Both sides of a transfer (and of its undo): whose points left, and who got them.
    "transfer_from_code",
    "transfer_to_code",
    # A purchase's tier bonus: the tier held and the points its multiplier added (within
    # the purchase's amount), so tier bonuses can be told from the purchase's own points.
    "tier",
    "tier_bonus_points",
)
# Postings written between two look-ups of the member codes they name.
_CHUNK: Final = 5_000


def _text(value: object) -> object:
    return "" if value is None else value


def _tier_bonus(line: LedgerLine) -> tuple[object, object]:
    """The tier and tier bonus a purchase's stored facts record, or blanks."""
    if line.kind != "purchase" or not line.meta or '"tier_bonus"' not in line.meta:
        return "", ""  # most postings: no JSON to read
    facts = json.loads(line.meta)
    return _text(facts.get("tier")), _text(facts.get("tier_bonus"))


def write_ledger_csv(
    conn: sqlite3.Connection,
    out: TextIO,
    config: Config,
    member_id: int | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> int:
    """Write the postings (of one member's account, or all) as CSV with a header, telling
    `progress` (written, total) as it goes; return how many."""
    tz = config.program.tz
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    codes: dict[int, str] = {}
    count = 0
    chunk: list[LedgerLine] = []

    def flush() -> None:
        named = {m for p in chunk for m in (p.member_id, p.moved_from, p.moved_to) if m is not None}
        if missing := named - codes.keys():
            codes.update(member_codes_by_id(conn, missing))
        writer.writerows(
            (
                p.posting_id,
                p.operation_id,
                p.created_at.astimezone(tz).isoformat(),
                p.kind,
                p.key,
                p.actor,
                _text(p.reason),
                _text(p.reference),
                _text(p.reverses_operation_id),
                p.account,
                _text(p.member_id),
                "" if p.member_id is None else codes.get(p.member_id, ""),
                p.amount,
                _text(p.meta),
                "" if p.moved_from is None else codes.get(p.moved_from, ""),
                "" if p.moved_to is None else codes.get(p.moved_to, ""),
                *_tier_bonus(p),
            )
            for p in chunk
        )
        chunk.clear()

    # The total only for a progress report: counting costs a pass over the postings' index.
    total = count_ledger_lines(conn, member_id) if progress is not None else None
    for posting in iter_ledger(conn, member_id):
        chunk.append(posting)
        count += 1
        if len(chunk) >= _CHUNK:
            flush()
            if progress is not None:
                progress(count, total)
    flush()
    if progress is not None:
        progress(count, total)
    return count


HOUSEHOLD_COLUMNS: Final = (
    "event_id",
    "household_id",
    "at",
    "kind",
    "member_id",
    "member_code",
    "actor",
    "reason",
)


def write_household_events_csv(
    conn: sqlite3.Connection, out: TextIO, config: Config, household_id: int | None = None
) -> int:
    """Write the households' audit trail (created, joined, left, removed, head changed,
    dissolved with its reason) as CSV with a header; return how many events."""
    tz = config.program.tz
    writer = csv.writer(out)
    writer.writerow(HOUSEHOLD_COLUMNS)
    count = 0
    for event in household_events(conn, household_id):
        writer.writerow(
            (
                event.id,
                event.household_id,
                event.at.astimezone(tz).isoformat(),
                event.kind,
                _text(event.member_id),
                _text(event.member_code),
                event.actor,
                _text(event.reason),
            )
        )
        count += 1
    return count


TASK_COLUMNS: Final = (
    "member_code",
    "task",
    "period",
    "progress",
    "target",
    "completed_at",
    "reward_operation_id",
    "reward_points",
    "updated_at",
)


def write_tasks_csv(
    conn: sqlite3.Connection, out: TextIO, config: Config, task_id: str | None = None
) -> int:
    """Write every member's task progress and completions (of one task, or all) as CSV with
    a header, times in local time, with the operation and points each reward paid; return
    how many rows."""
    tz = config.program.tz
    writer = csv.writer(out)
    writer.writerow(TASK_COLUMNS)
    count = 0
    for record in iter_task_records(conn, task_id):
        writer.writerow(
            (
                record.member_code,
                record.task_id,
                record.period,
                record.progress,
                record.target,
                ""
                if record.completed_at is None
                else record.completed_at.astimezone(tz).isoformat(),
                _text(record.reward_operation_id),
                _text(record.reward_points),
                record.updated_at.astimezone(tz).isoformat(),
            )
        )
        count += 1
    return count
