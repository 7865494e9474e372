"""Bulk import of till purchases from CSV: the programme's purchase rule and ledger request
(the till's and the demo seed's too), written with the ledger's `earn_groups`.

Each batch of rows is checked in two steps. `_Preparer` needs no database: CSV shape,
receipt id, member-code check digit, amount, time and the shared purchase rule. `_Writer`
looks the batch's member codes up in one query, builds each row's request with
`purchase_requests` and writes the batch with `earn_groups`, one transaction per batch, in
which it also records the operations it booked (at the end of the run each member is told
once, their purchases in it summed: bot/programme/notices.py) and moves the tasks of the
purchases booked now (`purchases_booked`, as the till does; a replayed row moves nothing).

A file may add a `return_of` column (header-driven: files without it import as before). A
row whose return_of names a receipt is a return of `amount` yuan of that purchase (empty:
everything not refunded yet), with the row's receipt_id as its return id, through the rule the
till uses (bot.programme.purchase_returns); its member_code must be the purchase's member,
else the row is skipped with the reason. Return rows are booked after the batch's purchases,
so a file may hold a purchase and its return; category and purchased_at are not used.

Everything an import says (skipped rows, file errors, the command's summary) comes from the
catalogs in one language: the programme's default, or the one the operator asks for.
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import secrets
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Final

from bot.config import Config, Tier
from bot.i18n import N_, I18n
from bot.programme.calendar import local_today
from bot.programme.errors import RuleError
from bot.programme.notices import import_notice
from bot.programme.purchase_returns import return_purchase_in
from bot.programme.purchases import (
    PurchaseAward,
    award_fen,
    award_purchase,
    booked_purchase,
    find_category,
    in_tier,
    parse_amount,
    purchase_key,
    purchase_requests,
)
from bot.programme.task_progress import purchases_booked
from bot.programme.tiers import (
    measure,
    month_of,
    qualification_months,
    tier_for_total,
    tier_named,
    tiers_on,
)
from bot.programme.till import compact_code
from storage import tiers as tier_store
from storage.errors import Conflict, NotFound, StoreError
from storage.ledger import OperationResult, existing_keys, stored_purchases
from storage.members import is_valid_member_code, member_ids_by_code
from storage.pushes import earn_groups_and_stage, release_import_notices
from storage.sql import batch as one_batch
from storage.tiers import Qualifying

HEADER: Final = ("receipt_id", "member_code", "amount", "category", "purchased_at")
# Optional columns: a file may have them or not (bot.imports docstring).
RETURN_OF: Final = "return_of"
DEFAULT_BATCH: Final = 10_000
# Rejections kept in the summary for display; `on_reject` sees every one of them.
KEEP_REJECTED: Final = 1_000
_CHUNK: Final = 1 << 20
# What `_records` yields for a record whose quoted field does not close on its line.
UNCLOSED_QUOTE: Final = "unclosed quote"

# Why a row was skipped: a stable code (tests, --errors files) and the catalog message
# operators read.
REASONS: Final[dict[str, str]] = {
    "csv": N_("import.reason.csv"),
    "columns": N_("import.reason.columns"),
    "receipt_missing": N_("import.reason.receipt_missing"),
    "receipt_duplicate": N_("import.reason.receipt_duplicate"),
    "member_code": N_("import.reason.member_code"),
    "member_unknown": N_("import.reason.member_unknown"),
    "amount": N_("import.reason.amount"),
    "date": N_("import.reason.date"),
    "category": N_("import.reason.category"),
    "future": N_("import.reason.future"),
    "expired": N_("import.reason.expired"),
    "earns_nothing": N_("import.reason.earns_nothing"),
    "conflict": N_("import.reason.conflict"),
    "return_unknown": N_("import.reason.return_unknown"),
    "return_member": N_("import.reason.return_member"),
    "return_done": N_("import.reason.return_done"),
    "return_over": N_("import.reason.return_over"),
    "return_conflict": N_("import.reason.return_conflict"),
    "rule": N_("import.reason.rule"),
    "ledger": N_("import.reason.ledger"),
}
_RULE_REASONS: Final[dict[str, str]] = {
    "error.amount_not_number": "amount",
    "error.amount_not_positive": "amount",
    "error.amount_too_precise": "amount",
    "error.amount_too_large": "amount",
    "error.unknown_category": "category",
    "error.purchase_in_future": "future",
    "error.purchase_expired": "expired",
    "error.purchase_earns_nothing": "earns_nothing",
    "error.purchase_under_one_yuan": "earns_nothing",
    "returns.error.unknown_receipt": "return_unknown",
    "returns.error.other_member": "return_member",
    "returns.error.fully_returned": "return_done",
    "returns.error.over_left": "return_over",
}

Progress = Callable[[int, int | None], None]
# What the ledger did with one purchase's group of requests.
Outcome = tuple[OperationResult, ...] | StoreError


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where a file holds each column: `get` puts a row's fields in HEADER order, whatever the
    file's column order; `return_of` is that column's index (None: the file has none)."""

    get: Callable[[list[str]], tuple[str, ...]]
    width: int
    return_of: int | None = None


# (first line of the record, its fields, or the CSV error that made it unreadable)
_Record = tuple[int, list[str] | str]


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, not UTF-8, bad header); nothing written."""

    def __init__(self, key: str, **params: object) -> None:
        # A catalog message: the caller renders it in the import's language.
        super().__init__(key)
        self.key = key
        self.params = params


class ImportTexts:
    """The import's messages in its one language (the programme's default unless asked)."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.i18n = I18n.load(language)

    def __call__(self, key: str, /, **params: object) -> str:
        """Message `key` in the import's language."""
        return self.i18n.t(self.language, key, **params)

    def reason(self, code: str) -> str:
        """What a skip reason code means, for operators."""
        return self(REASONS[code]) if code in REASONS else code

    def error(self, exc: ImportFileError) -> str:
        """Why a file cannot be imported."""
        return self(exc.key, **exc.params)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A skipped CSV row: its first line in the file, why, and its fields as read."""

    line: int
    reason: str
    message: str
    fields: tuple[str, ...]


@dataclass(slots=True)
class ImportSummary:
    """What an import did, row by row counted."""

    rows: int = 0
    imported: int = 0
    points: int = 0
    # Returns (return_of rows) booked now, and the points they took back.
    returned: int = 0
    points_returned: int = 0
    replayed: int = 0
    # Members told about their purchases in this run (one message each).
    notified: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    # The first KEEP_REJECTED rejections, in line order.
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        """How many rows were skipped, whatever the reason."""
        return sum(self.skipped.values())

    @property
    def ok(self) -> bool:
        """True when every row was imported now or before."""
        return self.skipped_total == 0


# A row that passed every check needing no database: (line, fields, receipt id, member code,
# the award, or the refusal that stands if the member exists: an unknown member comes first).
_Candidate = tuple[int, list[str], str, str, PurchaseAward | RejectedRow]


@dataclass(frozen=True, slots=True)
class _ReturnRow:
    """A return_of row that passed the checks needing no database."""

    line: int
    fields: list[str]
    return_id: str
    code: str
    receipt: str
    refund: Decimal | None


_Prepared = RejectedRow | _Candidate | _ReturnRow


def _not_utf8(line: int) -> ImportFileError:
    return ImportFileError(N_("import.file.not_utf8"), line=line)


def _unclosed_quote(text: str, first: int) -> int | None:
    """The first line of `text` (whole lines, the first numbered `first`) that ends inside a
    quoted field, or None."""
    # Our columns never hold a line break, so a record reaching past its line is a quote left
    # open: read on, it would swallow the lines after it. The lenient reader goes on where
    # the strict one stops; its fields then hold the line break.
    reader = csv.reader(io.StringIO(text, newline=""))
    done = 0  # lines before the record being read
    while True:
        try:
            fields = next(reader, None)
        except csv.Error:  # a field over csv's size limit: lines swallowed, or one long line
            fields = []
        if fields is None:
            return None
        if reader.line_num - done > 1 or (fields and fields[-1][-1:] in ("\n", "\r")):
            return first + done
        if reader.line_num == done:
            return None  # nothing read: the reader cannot go on
        done = reader.line_num


class _QuoteScan:
    """Feeds a file's bytes, chunk by chunk, to `_unclosed_quote` in whole lines."""

    def __init__(self) -> None:
        self.held: list[bytes] = []  # the start of a line not finished yet
        self.line = 1  # the number of the first line held

    def feed(self, chunk: bytes, *, final: bool = False) -> int | None:
        """The first line ending inside quotes among those `chunk` finishes, or None."""
        cut = len(chunk) if final else chunk.rfind(b"\n") + 1
        if not cut and not final:
            self.held.append(chunk)
            return None
        block = b"".join([*self.held, chunk[:cut]])
        self.held = [chunk[cut:]]
        first = self.line
        self.line += block.count(b"\n")
        if b'"' not in block:
            return None  # the usual file: not a quote in it, nothing to parse
        # Every byte of it has passed the UTF-8 check, and it ends where a line does.
        return _unclosed_quote(block.decode("utf-8-sig" if first == 1 else "utf-8"), first)


def _unclosed(line: int) -> ImportFileError:
    return ImportFileError(N_("import.file.unclosed_quote"), line=line)


def scan_file(path: Path) -> int:
    """Check the file is UTF-8 (a BOM is fine) with no quoted field left open at the end of a
    line, and return its line count; raises ImportFileError."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    quotes = _QuoteScan()
    newlines = 0
    tail = b""
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                held = len(decoder.getstate()[0])  # the previous chunk's unfinished character
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise _not_utf8(
                        newlines + chunk[: max(exc.start - held, 0)].count(b"\n") + 1
                    ) from None
                if (broken := quotes.feed(chunk)) is not None:
                    raise _unclosed(broken)
                newlines += chunk.count(b"\n")
                tail = chunk[-1:]
    except OSError:
        raise ImportFileError(N_("import.file.unreadable")) from None
    lines = newlines + (1 if tail not in (b"", b"\n") else 0)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _not_utf8(lines) from None  # it ends in the middle of a character
    if (broken := quotes.feed(b"", final=True)) is not None:
        raise _unclosed(broken)
    return lines


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a batch allocates tens of thousands of objects and
    no cycles, and the collections it would trigger cost about a sixth of the import."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Lines:
    """A CSV reader's input: the lines of the source, those of the record being read kept,
    and lines handed back to be read again."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._source = iter(lines)
        self.again: list[str] = []  # last to be read first
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.again.pop() if self.again else next(self._source)
        self.taken.append(line)
        return line


def _records(lines: Iterable[str]) -> Iterator[_Record]:
    """Each CSV record with its line number; blank lines are left out. A record is one line:
    a quoted field left open there is an unreadable record, and the lines it swallowed are
    read again on their own."""
    source = _Lines(lines)
    reader = csv.reader(source, strict=True)
    line = 1
    while True:
        source.taken.clear()
        record: list[str] | str
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if not source.taken:
                return  # nothing was consumed: the reader cannot go on
            record = str(exc)
        if len(source.taken) > 1:
            # No column holds a line break: the quoting broke on this line.
            source.again.extend(reversed(source.taken[1:]))
            record = UNCLOSED_QUOTE
        if record:
            yield line, record
        line += 1


def _columns(header: list[str] | str) -> _Columns:
    """The getter putting a row's fields in HEADER order; raises ImportFileError."""
    expected = ",".join(HEADER)
    if isinstance(header, str):
        raise ImportFileError(N_("import.file.header_invalid"), expected=expected)
    names = [name.strip().lower() for name in header]
    names[0] = names[0].removeprefix("\ufeff")
    if sorted(names) not in (sorted(HEADER), sorted((*HEADER, RETURN_OF))):
        shown = ",".join(header)[:200]
        raise ImportFileError(N_("import.file.header_wrong"), expected=expected, shown=shown)
    returns = names.index(RETURN_OF) if RETURN_OF in names else None
    return _Columns(itemgetter(*(names.index(name) for name in HEADER)), len(names), returns)


def _header(records: Iterator[_Record]) -> _Columns:
    """Read the header record; raises ImportFileError."""
    first = next(records, None)
    if first is None:
        raise ImportFileError(N_("import.file.empty"), expected=",".join(HEADER))
    return _columns(first[1])


def _parse_time(text: str, config: Config) -> datetime | None:
    """An ISO 8601 time; one without an offset is in the programme's timezone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=config.program.tz) if moment.tzinfo is None else moment


class _Preparer:
    """The checks needing no database, for every batch of one file."""

    def __init__(self, config: Config, now: datetime, texts: ImportTexts) -> None:
        self.config = config
        self.now = now
        self.texts = texts
        self.first_line: dict[str, int] = {}
        self.valid_codes: set[str] = set()

    def _refusal(self, line: int, fields: list[str], err: RuleError) -> RejectedRow:
        message = self.texts(err.key, **err.params)
        return RejectedRow(line, _RULE_REASONS.get(err.key, "rule"), message, tuple(fields))

    def prepare(self, batch: list[_Record], columns: _Columns) -> list[_Prepared]:
        """One outcome per record, in order."""
        config, now, _ = self.config, self.now, self.texts
        out: list[_Prepared] = []
        for line, fields in batch:
            if isinstance(fields, str):
                # The csv module's own words are not shown: they are English only.
                key = (
                    N_("import.row.unclosed_quote")
                    if fields == UNCLOSED_QUOTE
                    else N_("import.row.csv")
                )
                out.append(RejectedRow(line, "csv", _(key), ()))
                continue
            if len(fields) != columns.width:
                message = _("import.row.columns", count=len(fields), expected=columns.width)
                out.append(RejectedRow(line, "columns", message, tuple(fields)))
                continue
            receipt, code, amount_text, category, when = columns.get(fields)
            receipt = receipt.strip()
            if not receipt:
                message = _("import.row.receipt_missing")
                out.append(RejectedRow(line, "receipt_missing", message, tuple(fields)))
                continue
            if (first := self.first_line.setdefault(receipt, line)) != line:
                message = _("import.row.receipt_duplicate", receipt=receipt, first=first)
                out.append(RejectedRow(line, "receipt_duplicate", message, tuple(fields)))
                continue
            code = compact_code(code)  # "1173 4896 81" as /card prints it
            if code not in self.valid_codes:
                if not is_valid_member_code(code):
                    message = _("import.row.member_code", code=code)
                    out.append(RejectedRow(line, "member_code", message, tuple(fields)))
                    continue
                self.valid_codes.add(code)
            if columns.return_of is not None and (of := fields[columns.return_of].strip()):
                out.append(self._return_row(line, fields, receipt, code, amount_text, of))
                continue
            outcome: PurchaseAward | RejectedRow
            moment = _parse_time(when, config)
            try:
                amount = parse_amount(amount_text, config)
                if moment is None:
                    message = _("import.row.date", value=when)
                    outcome = RejectedRow(line, "date", message, tuple(fields))
                else:
                    kind = find_category(category, config).id  # an id or a name, any case
                    outcome = award_purchase(amount, kind, moment, now, config)
            except RuleError as err:
                outcome = self._refusal(line, fields, err)
            out.append((line, fields, receipt, code, outcome))
        return out

    def _return_row(
        self, line: int, fields: list[str], return_id: str, code: str, amount: str, of: str
    ) -> _ReturnRow | RejectedRow:
        """A return_of row: the return id, member, receipt returned and amount (empty: all)."""
        try:
            refund = parse_amount(amount, self.config) if amount.strip() else None
        except RuleError as err:
            return self._refusal(line, fields, err)
        return _ReturnRow(line, fields, return_id, code, of, refund)


class _Writer:
    """Looks members up and writes prepared batches: the half that needs the database."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        config: Config,
        *,
        actor: str,
        now: datetime,
        run: str,
        texts: ImportTexts,
        keep_rejected: int,
        on_reject: Callable[[RejectedRow], None] | None,
    ) -> None:
        self.conn = conn
        self.config = config
        self.actor = actor
        self.now = now
        self.run = run
        self.texts = texts
        self.keep_rejected = keep_rejected
        self.on_reject = on_reject
        self.summary = ImportSummary()
        self.members: dict[str, int | None] = {}
        # The local months whose purchases count towards a tier during this import.
        self.months = frozenset(qualification_months(local_today(now, config), config))

    def write(self, prepared: list[_Prepared]) -> None:
        """Write the good rows of one batch in one transaction; record every outcome."""
        self.summary.rows += len(prepared)
        returns = [item for item in prepared if isinstance(item, _ReturnRow)]
        codes = {item[3] for item in prepared if type(item) is tuple} | {r.code for r in returns}
        if lookup := codes - self.members.keys():
            found = member_ids_by_code(self.conn, lookup)
            self.members.update((code, found.get(code)) for code in lookup)
        rejected: list[RejectedRow] = []
        refused_by_rule: list[tuple[str, RejectedRow]] = []
        candidates: list[tuple[_Candidate, int]] = []
        for item in prepared:
            if isinstance(item, RejectedRow):
                rejected.append(item)
                continue
            if isinstance(item, _ReturnRow):
                continue  # after the batch's purchases (`_returns`)
            line, fields, receipt, code, outcome = item
            member_id = self.members[code]
            if member_id is None:
                message = self.texts("import.row.member_unknown", code=code)
                rejected.append(RejectedRow(line, "member_unknown", message, tuple(fields)))
            elif isinstance(outcome, RejectedRow):
                refused_by_rule.append((receipt, outcome))
            else:
                candidates.append((item, member_id))
        if refused_by_rule:
            # A receipt imported before whose points have since expired (or that today's
            # rules would refuse) is already in the ledger: report it as such, not as bad.
            known = existing_keys(self.conn, [purchase_key(r) for r, _row in refused_by_rule])
            for receipt, row in refused_by_rule:
                if purchase_key(receipt) in known:
                    self.summary.replayed += 1
                else:
                    rejected.append(row)
        if candidates:
            # One BEGIN IMMEDIATE .. COMMIT (a savepoint if the caller has a transaction open),
            # which also records the operations booked, for the members' notices at the end;
            # the tiers the batch's purchases earn in are read in it too. All or nothing as a
            # whole, so what runs inside adds no savepoints (a savepoint around the ledger's
            # bulk inserts costs a statement journal of every row).
            with one_batch(self.conn):
                if tiers_on(self.config):
                    candidates = self._in_tiers(candidates, rejected)
                requests = [
                    purchase_requests(
                        member_id, item[4], receipt=item[2], actor=self.actor, now=self.now
                    )
                    for item, member_id in candidates
                    if isinstance(item[4], PurchaseAward)
                ]
                written = [item for item, _member in candidates]
                results = earn_groups_and_stage(
                    self.conn, requests, run=self.run, then=self._tasks(written)
                )
            rejected += self._tally(results, written)
        if returns:
            rejected += self._returns(returns)
        rejected.sort(key=lambda r: r.line)
        for row in rejected:
            self._reject(row)

    def _returns(self, rows: list[_ReturnRow]) -> list[RejectedRow]:
        """Book a batch's return rows in one transaction, by the till's rule; return the rows
        it refused."""
        refused: list[RejectedRow] = []
        summary, _ = self.summary, self.texts
        with one_batch(self.conn):
            for row in rows:
                member_id = self.members.get(row.code)
                fields = tuple(row.fields)
                if member_id is None:
                    message = _("import.row.member_unknown", code=row.code)
                    refused.append(RejectedRow(row.line, "member_unknown", message, fields))
                    continue
                try:
                    # Every refusal comes before anything is written: the batch stays whole.
                    returned = return_purchase_in(
                        self.conn,
                        self.config,
                        row.receipt,
                        row.refund,
                        return_id=row.return_id,
                        actor=self.actor,
                        now=self.now,
                        member_id=member_id,
                    )
                except RuleError as err:
                    reason = _RULE_REASONS.get(err.key, "rule")
                    message = _(err.key, **err.params)
                    refused.append(RejectedRow(row.line, reason, message, fields))
                    continue
                if returned.status == "replayed":
                    summary.replayed += 1
                elif returned.status == "conflict":
                    message = _("import.row.return_conflict", receipt=row.return_id)
                    refused.append(RejectedRow(row.line, "return_conflict", message, fields))
                else:
                    summary.returned += 1
                    summary.points_returned += returned.points
        return refused

    def _in_tiers(
        self, candidates: list[tuple[_Candidate, int]], rejected: list[RejectedRow]
    ) -> list[tuple[_Candidate, int]]:
        """The batch's purchases not booked before, each in the tier its member holds when it
        is booked (after their earlier purchases in the batch, as `tiers_moved` will move
        them); receipts booked before are counted as replayed (the same purchase, whatever
        its tier then) or refused as conflicts."""
        config = self.config
        keys = [purchase_key(item[2]) for item, _m in candidates]
        before = stored_purchases(self.conn, keys)
        members = {m for (_item, m), key in zip(candidates, keys, strict=True) if key not in before}
        held = tier_store.held(self.conn, members)
        top = config.tiers.levels[-1]
        # Members at the top tier stay there: their figures are not needed.
        climbing = {m for m in members if held.get(m) != top.id}
        figures = tier_store.qualifying(self.conn, climbing, self.months)
        ranks = {tier.id: index for index, tier in enumerate(config.tiers.levels)}
        holding: dict[int, Tier] = {}
        running: dict[int, Qualifying] = {}
        counts: dict[date, bool] = {}  # whether a day's purchases count towards a tier now
        fresh: list[tuple[_Candidate, int]] = []
        for (item, member_id), key in zip(candidates, keys, strict=True):
            line, fields, receipt, code, award = item
            assert isinstance(award, PurchaseAward)
            if (earlier := before.get(key)) is not None:
                if award.same_purchase(member_id, earlier):
                    self.summary.replayed += 1
                else:
                    message = self.texts("import.row.conflict", receipt=receipt)
                    rejected.append(RejectedRow(line, "conflict", message, tuple(fields)))
                continue
            tier = holding.get(member_id) or tier_named(held.get(member_id), config)
            fresh.append(((line, fields, receipt, code, in_tier(award, tier, config)), member_id))
            day = award.purchased_on
            if (counted := counts.get(day)) is None:
                counted = counts[day] = month_of(day) in self.months
            if counted and tier.id != top.id:
                # The purchase counts towards the member's tier from the next one on.
                so_far = running.get(member_id) or figures.get(member_id, Qualifying())
                after = Qualifying(so_far.points + award.base_points, so_far.fen + award_fen(award))
                running[member_id] = after
                reached = tier_for_total(measure(after, config), config)
                if ranks[reached.id] > ranks[tier.id]:
                    tier = reached
            holding[member_id] = tier
        return fresh

    def _tasks(self, written: list[_Candidate]) -> Callable[[list[Outcome]], None]:
        """What moves the tasks of the purchases a batch booked now, in its transaction."""

        def move(results: list[Outcome]) -> None:
            booked = [
                booked_purchase(result[0], award)
                for result, (_line, _fields, _receipt, _code, award) in zip(
                    results, written, strict=True
                )
                if isinstance(result, tuple)
                and not result[0].replayed
                and isinstance(award, PurchaseAward)
            ]
            purchases_booked(self.conn, booked, self.config, self.now, actor=self.actor)

        return move

    def _tally(self, results: Iterable[object], written: list[_Candidate]) -> list[RejectedRow]:
        """Count what earn_groups did; return the rows it refused."""
        summary = self.summary
        refused: list[RejectedRow] = []
        _ = self.texts
        for result, (line, fields, receipt, code, _award) in zip(results, written, strict=True):
            if isinstance(result, tuple):
                if result[0].replayed:
                    summary.replayed += 1
                else:
                    summary.imported += 1
                    summary.points += sum(operation.points for operation in result)
                continue
            if isinstance(result, Conflict):
                reason, message = "conflict", _("import.row.conflict", receipt=receipt)
            elif isinstance(result, NotFound):
                reason, message = "member_unknown", _("import.row.member_unknown", code=code)
            else:
                # The ledger's own words are not shown: they are English only.
                reason, message = "ledger", _("import.row.ledger")
            refused.append(RejectedRow(line, reason, message, tuple(fields)))
        return refused

    def _reject(self, row: RejectedRow) -> None:
        self.summary.skipped[row.reason] += 1
        if len(self.summary.rejected) < self.keep_rejected:
            self.summary.rejected.append(row)
        if self.on_reject is not None:
            self.on_reject(row)


def _batches(records: Iterator[_Record], size: int) -> Iterator[list[_Record]]:
    batch: list[_Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_purchases(
    conn: sqlite3.Connection,
    source: Path | Iterable[str],
    config: Config,
    *,
    actor: str,
    now: datetime,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    on_reject: Callable[[RejectedRow], None] | None = None,
    keep_rejected: int = KEEP_REJECTED,
    texts: ImportTexts | None = None,
) -> ImportSummary:
    """Award the points of every good purchase row of a CSV file (or its lines), one
    transaction per batch, skipping bad rows, then tell each member once what the run booked
    for them; raises ImportFileError before writing anything. Messages are in `texts`'s
    language (default: the programme's)."""
    when = now
    texts = texts or ImportTexts(config.program.default_language)
    # Names this run's sums of purchases per member until they are queued at its end.
    run = f"{actor}:{when.isoformat()}:{secrets.token_hex(4)}"
    writer = _Writer(
        conn,
        config,
        actor=actor,
        now=when,
        run=run,
        texts=texts,
        keep_rejected=keep_rejected,
        on_reject=on_reject,
    )
    with _gc_paused():
        if not isinstance(source, Path):
            records = _records(source)
            columns = _header(records)
            batches = _prepared(records, columns, config, when, batch_size, texts)
            _write_all(writer, batches, progress)
        else:
            total = scan_file(source) - 1  # before anything is written: the whole file is UTF-8
            with source.open(encoding="utf-8-sig", newline="") as fh:
                records = _records(fh)
                columns = _header(records)
                batches = _prepared(records, columns, config, when, batch_size, texts)
                _write_all(writer, batches, progress, total)
    # Every run's sums, not only this one's: a run that stopped halfway left its own, and its
    # members are told now (a re-run of its file finds every row booked and adds nothing).
    writer.summary.notified = release_import_notices(conn, import_notice, when)
    return writer.summary


def _prepared(
    records: Iterator[_Record],
    columns: _Columns,
    config: Config,
    now: datetime,
    size: int,
    texts: ImportTexts,
) -> Iterator[list[_Prepared]]:
    preparer = _Preparer(config, now, texts)
    for batch in _batches(records, size):
        yield preparer.prepare(batch, columns)


def _write_all(
    writer: _Writer,
    batches: Iterator[list[_Prepared]],
    progress: Progress | None,
    total: int | None = None,
) -> None:
    for prepared in batches:
        writer.write(prepared)
        if progress is not None:
            progress(writer.summary.rows, total)
