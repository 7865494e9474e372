"""The async SQLite store: one serialized writer, a reader, inline lookups, migrations."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import tempfile
import warnings
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import aiosqlite

from storage.audit import AuditReport, audit
from storage.errors import BackupRefused, MigrationError
from storage.fence import with_fence

log = logging.getLogger(__name__)

T = TypeVar("T")
# The inline lookup connection's page cache: 16 MiB (a negative size is in KiB).
_LOOKUP_CACHE: Final = "PRAGMA cache_size = -16384"
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
# A pragma's value cannot be a parameter: one fixed statement per allowed setting.
_SYNCHRONOUS: Final[dict[str, str]] = {
    "OFF": "PRAGMA synchronous = OFF",
    "NORMAL": "PRAGMA synchronous = NORMAL",
    "FULL": "PRAGMA synchronous = FULL",
    "EXTRA": "PRAGMA synchronous = EXTRA",
}
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """The packaged migrations as (version, name, sql), in order; raises MigrationError on a gap."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("storage.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _sql) in enumerate(found, start=1):
        if version != expected:
            raise MigrationError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


def latest_version() -> int:
    """Return the schema version the packaged migrations lead to."""
    return len(migrations())


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the database's `PRAGMA user_version`."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int | None = None) -> list[int]:
    """Apply pending migrations up to `target`, each atomically with its version bump; raises
    MigrationError."""
    available = migrations()
    target = len(available) if target is None else target
    current = schema_version(conn)
    if current > len(available):
        raise MigrationError(
            f"database schema version {current} is newer than this pointsbot ({len(available)})"
        )
    applied: list[int] = []
    for version, name, sql in available[current:target]:
        # executescript would commit an open transaction first; the script carries its own
        # BEGIN/COMMIT so the schema change and the version bump land together or not at all.
        script = f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {version};\nCOMMIT;"
        try:
            conn.executescript(script)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(f"migration {name} failed: {exc}") from exc
        log.info("applied migration %s", name)
        applied.append(version)
    return applied


def connect_sync(path: str | Path, *, synchronous: Synchronous = "FULL") -> sqlite3.Connection:
    """Open a plain sqlite3 connection with the store's pragmas (CLI tools, benchmarks)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    configure(conn, synchronous)
    return conn


def configure(conn: sqlite3.Connection, synchronous: Synchronous) -> None:
    """Set the pragmas every connection of ours uses."""
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(_SYNCHRONOUS[synchronous])
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")


# The files SQLite keeps beside a database: writing over any of them loses commits.
_COMPANIONS: Final = ("", "-wal", "-shm", "-journal")


def database_files(conn: sqlite3.Connection) -> tuple[Path, ...]:
    """The main database file of `conn` and its -wal, -shm and -journal, symlinks resolved."""
    main = next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
    database = Path(main).resolve()
    return tuple(database.with_name(database.name + suffix) for suffix in _COMPANIONS)


def _backup_target(conn: sqlite3.Connection, destination: Path, *, replace: bool) -> Path:
    """Where a backup may go, resolved; raises BackupRefused."""
    target = destination.resolve()  # follows symlinks and `..`, relative to the working folder
    live = database_files(conn)
    # A hard link (or a bind mount) has a path of its own: compare the files themselves too.
    if target in live or any(
        target.exists() and f.exists() and os.path.samefile(target, f) for f in live
    ):
        raise BackupRefused(
            f"{destination} is the live database {live[0]} (or one of its files):"
            " back up to another file"
        )
    if target.exists() and not replace:
        raise BackupRefused(f"{destination} exists (use --force to replace it)")
    # A -wal beside the destination belongs to whatever database is there and would be
    # replayed onto the copy when it is opened.
    wal = target.with_name(target.name + "-wal")
    if wal.exists():
        raise BackupRefused(f"{destination} is a database in use ({wal} exists)")
    return target


def backup_to(
    conn: sqlite3.Connection,
    destination: str | Path,
    *,
    replace: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> AuditReport:
    """Copy the database to `destination` while other connections keep writing, and put the
    copy there only if it passes integrity_check and the audit, whose report it returns;
    raises BackupRefused, sqlite3.Error or OSError, with nothing at `destination` touched.
    `progress` is told (pages copied, pages to copy) as the copy grows, and (n, n) when done."""
    target = _backup_target(conn, Path(destination), replace=replace)
    # A temporary file in the destination's folder, so the final rename is atomic: the old
    # destination stays whole until a verified copy replaces it. VACUUM INTO accepts an
    # existing empty file, so mkstemp's exclusive creation also makes the name ours (and its
    # mode 0600 keeps members' data from other accounts on the machine).
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    partial = Path(name)
    try:
        # One read transaction: a consistent snapshot of every commit made before it began.
        if progress is None:
            conn.execute("VACUUM INTO ?", (str(partial),))
        else:
            _vacuum_into_watched(conn, partial, progress)
        # Read-only: verifying must not change the copy (not even into WAL mode).
        copy = sqlite3.connect(f"{partial.as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            report = audit(copy, integrity="full")
        finally:
            copy.close()
        if not report.ok:
            return report
        # VACUUM INTO does not fsync its output: make the copy durable before it counts.
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        if not replace and target.exists():
            raise BackupRefused(f"{destination} exists (use --force to replace it)")
        os.replace(partial, target)
        _fsync_folder(target.parent)
        return report
    finally:
        partial.unlink(missing_ok=True)


# SQLite virtual-machine steps between two looks at the copy's size: a few looks per MiB.
_BACKUP_WATCH_STEPS: Final = 20_000


def _vacuum_into_watched(
    conn: sqlite3.Connection, partial: Path, progress: Callable[[int, int | None], None]
) -> None:
    """VACUUM INTO `partial`, telling `progress` the pages written so far (out of the pages in
    use, which the copy's size approaches: VACUUM leaves the free ones out)."""
    # VACUUM INTO (one snapshot, free pages left out) reports no progress of its own; but
    # SQLite's progress handler runs inside it, and the copy grows as its page cache spills,
    # so the copy's size is the measure.
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    in_use = int(conn.execute("PRAGMA page_count").fetchone()[0]) - int(
        conn.execute("PRAGMA freelist_count").fetchone()[0]
    )
    progress(0, in_use)

    def watch() -> int:
        written = partial.stat().st_size // page_size
        progress(min(written, in_use), in_use)
        return 0  # never interrupt the copy

    conn.set_progress_handler(watch, _BACKUP_WATCH_STEPS)
    try:
        conn.execute("VACUUM INTO ?", (str(partial),))
    finally:
        conn.set_progress_handler(None, 0)
    copied = partial.stat().st_size // page_size
    progress(copied, copied)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform can open folders)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class ClockedStore:
    """What every store has: the application's clock, "now" for a call not told the time."""

    clock: Callable[[], datetime] | None

    def now(self, now: datetime | None = None) -> datetime:
        """`now` when given, else the store's clock; raises RuntimeError with neither."""
        if now is not None:
            return now
        if self.clock is None:
            raise RuntimeError("the store has no clock: pass now=")
        return self.clock()


class Store(ClockedStore):
    """The database: `async with Store(path) as store:` opens, migrates and closes it."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        migrate: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        # The application's clock: "now" for a write or read that is not told the time.
        self.clock = clock
        self.synchronous: Synchronous = synchronous
        self._migrate = migrate
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lookup: sqlite3.Connection | None = None

    async def open(self) -> Store:
        """Open the writer, reader and lookup connections and apply pending migrations."""
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        await self._call(self._writer, configure, self.synchronous)
        if self._migrate:
            await self._call(self._writer, migrate)
        self._reader = await aiosqlite.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        await self._call(self._reader, configure, self.synchronous)
        await self._call(self._reader, lambda c: c.execute("PRAGMA query_only = ON"))
        self._lookup = connect_sync(self.path, synchronous=self.synchronous)
        self._lookup.execute("PRAGMA query_only = ON")
        self._lookup.execute("PRAGMA busy_timeout = 1000")  # never stall the loop for long
        self._lookup.execute(_LOOKUP_CACHE)
        return self

    async def close(self) -> None:
        """Close every connection; safe to call twice."""
        if self._lookup is not None:
            self._lookup.close()
            self._lookup = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self) -> None:
        if self._writer is not None:
            warnings.warn(f"{self!r} was not closed", ResourceWarning, stacklevel=1)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._writer is not None

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one `BEGIN IMMEDIATE` transaction on the single writer thread; raises what
        `fn` raises (after rolling back), RuntimeError when the store is closed."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        return await self._call(self._writer, _in_transaction, with_fence(fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the reader connection (a consistent snapshot per call); raises what `fn`
        raises, RuntimeError when the store is closed."""
        if self._reader is None:
            raise RuntimeError("store is not open")
        return await self._call(self._reader, _in_read_snapshot, fn)

    async def lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a short indexed read right here on the event loop, in one snapshot; raises what `fn`
        raises, RuntimeError when the store is closed."""
        # A lookup touching a handful of rows costs SQLite microseconds, less than the hop
        # to a reader thread and back, and it cannot queue behind the GIL as that thread
        # does under load. Scans (reports, sweeps, exports) belong in `read`.
        if self._lookup is None:
            raise RuntimeError("store is not open")
        return _in_read_snapshot(self._lookup, fn)

    async def version(self) -> int:
        """Return the database's schema version."""
        return await self.read(schema_version)

    @staticmethod
    async def _call(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(sqlite3_connection, *args)` on `conn`'s own thread, in one hop."""
        # The one place that uses aiosqlite's private API (checked by tests/test_store.py on
        # every run): `Connection._execute(fn, *args)` queues `fn` to the connection's worker
        # thread and awaits its result, and `Connection._conn` is the sqlite3.Connection that
        # thread owns. aiosqlite has no public "run this function in your thread": one hop per
        # operation instead of one per statement is what makes the single writer fast
        # (DESIGN.md). Should aiosqlite change them, change this method alone.
        result: T = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
        return result


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` inside BEGIN IMMEDIATE .. COMMIT, rolling back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _in_read_snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` inside one read transaction so all its queries see the same snapshot."""
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")
