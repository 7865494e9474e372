"""PostgreSQL under the storage functions written for sqlite3: the same functions, both engines.

Every storage function takes a `sqlite3.Connection` and speaks the part of SQL both engines
share. `PgConnection` is a psycopg 3 connection that takes the same calls: `execute` and
`executemany` with `?` or `:name` parameters, rows read by position or by name, `lastrowid`,
`in_transaction`, and the transaction statements `atomic` issues (BEGIN IMMEDIATE, SAVEPOINT,
RELEASE, ROLLBACK, COMMIT) in autocommit mode, so the storage code's own transaction control
runs unchanged. What the two dialects spell differently is rewritten once per statement text
(cached):

- `?` and `:name` become psycopg's `%s` and `%(name)s` (a literal `%` is doubled), outside
  quotes and comments; `::` casts are left alone;
- `?1`, `?2` (SQLite's numbered parameters, each usable twice) become named ones;
- `x IN (SELECT value FROM json_each(?))`, the storage code's way to pass a list as one JSON
  parameter, becomes `x = ANY(%s)` with the list decoded, so PostgreSQL compares it with the
  column's own type (`NOT IN`: `<> ALL`);
- `a IS b` and `a IS NOT b` (SQLite's null-safe comparisons of two expressions) become
  `a IS NOT DISTINCT FROM b` and `a IS DISTINCT FROM b`;
- `BEGIN IMMEDIATE` (a write) becomes a SERIALIZABLE transaction, as the PostgreSQL store
  runs its writes (storage/pg_store.py), and a plain `BEGIN` (a read that must see one
  snapshot) a REPEATABLE READ one.

Functions SQLite has and PostgreSQL lacks (`total`, `json_valid`, ...) are defined by the
PostgreSQL baseline migration. Errors come out as the sqlite3 exceptions the storage code
catches (IntegrityError for a constraint, OperationalError for a lost connection or a lock),
with PostgreSQL's message and its SQLSTATE in `sqlite_errorname`-like `pg_code`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, NamedTuple

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

Parameters = Sequence[Any] | Mapping[str, Any]
# Seconds a connection attempt may take (libpq's connect_timeout; it takes at least 2).
CONNECT_TIMEOUT: Final = 5

# `x IN (SELECT value FROM json_each(?))` (or a named parameter), whitespace as written.
_JSON_LIST: Final = re.compile(
    r"\b(NOT\s+)?IN\s*\(\s*SELECT\s+value\s+FROM\s+json_each\s*\("
    r"\s*(\?\d*|:[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*\)",
    re.IGNORECASE,
)
# SQLite's `a IS b` / `a IS NOT b` with b an expression (null-safe equality): PostgreSQL
# spells it IS [NOT] DISTINCT FROM (IS NULL, IS TRUE and the like are the same in both).
_NULL_SAFE: Final = re.compile(
    r"\bIS(\s+NOT)?\s+(?!(?:NOT|NULL|TRUE|FALSE|UNKNOWN|DISTINCT)\b)", re.IGNORECASE
)
_BEGIN_IMMEDIATE: Final = re.compile(r"^\s*BEGIN\s+IMMEDIATE\s*;?\s*$", re.IGNORECASE)
_BEGIN: Final = re.compile(r"^\s*BEGIN\s*;?\s*$", re.IGNORECASE)
_PRAGMA: Final = re.compile(r"^\s*PRAGMA\b", re.IGNORECASE)
# A marker the JSON-list rewrite leaves for the placeholder pass (never valid SQL itself).
_LIST_MARK: Final = "\x00list\x00"


class Statement(NamedTuple):
    """A statement rewritten for psycopg, and which parameters are JSON lists to decode."""

    sql: str
    # Positional: the indexes of the `?` that carry a JSON list; named: their names.
    list_positions: frozenset[int]
    list_names: frozenset[str]
    named: bool
    # `?1`, `?2`, ... (SQLite's numbered parameters): sent by name, p1, p2, ...
    numbered: bool = False


@lru_cache(maxsize=4096)
def translate(sql: str) -> Statement:
    """The statement psycopg runs for storage SQL written for sqlite3 (cached per text)."""
    if _PRAGMA.match(sql):
        raise sqlite3.NotSupportedError(f"PostgreSQL has no PRAGMA: {sql.strip()[:60]!r}")
    if _BEGIN_IMMEDIATE.match(sql):  # a write: as the store runs its writes
        return Statement("BEGIN ISOLATION LEVEL SERIALIZABLE", frozenset(), frozenset(), False)
    if _BEGIN.match(sql):  # a read snapshot (the audit, a report)
        return Statement("BEGIN ISOLATION LEVEL REPEATABLE READ", frozenset(), frozenset(), False)
    sql = _JSON_LIST.sub(
        lambda m: f"{'<> ALL' if m.group(1) else '= ANY'}({_LIST_MARK}{m.group(2)})", sql
    )
    sql = _NULL_SAFE.sub(
        lambda m: "IS DISTINCT FROM " if m.group(1) else "IS NOT DISTINCT FROM ", sql
    )
    out: list[str] = []
    positions: set[int] = set()
    names: set[str] = set()
    index = 0
    named = positional = numbered = False
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":  # a string literal or a quoted identifier: copied as is
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # a doubled quote inside
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif sql.startswith(_LIST_MARK, i):
            i += len(_LIST_MARK)
            if sql[i] == "?" and i + 1 < n and sql[i + 1].isdigit():
                match = re.match(r"\?(\d+)", sql[i:])
                assert match is not None
                names.add(f"p{match.group(1)}")
            elif sql[i] == "?":
                positions.add(index)
            else:
                match = re.match(r":([A-Za-z_][A-Za-z0-9_]*)", sql[i:])
                assert match is not None
                names.add(match.group(1))
        elif ch == "?" and i + 1 < n and sql[i + 1].isdigit():
            match = re.match(r"\?(\d+)", sql[i:])
            assert match is not None
            out.append(f"%(p{match.group(1)})s")
            numbered = True
            i += len(match.group(0))
        elif ch == "?":
            out.append("%s")
            index += 1
            positional = True
            i += 1
        elif ch == ":" and sql.startswith("::", i):
            out.append("::")
            i += 2
        elif ch == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            match = re.match(r":([A-Za-z_][A-Za-z0-9_]*)", sql[i:])
            assert match is not None
            out.append(f"%({match.group(1)})s")
            named = True
            i += len(match.group(0))
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    if named + positional + numbered > 1:
        raise sqlite3.ProgrammingError("a statement mixes ?, ?NNN and :name parameters")
    return Statement("".join(out), frozenset(positions), frozenset(names), named, numbered)


def _decoded(value: Any) -> Any:
    """A JSON list parameter as a Python list (psycopg sends it as an array)."""
    if isinstance(value, str | bytes):
        decoded = json.loads(value)
        if not isinstance(decoded, list):
            raise sqlite3.ProgrammingError("json_each(?) expects a JSON array here")
        return decoded
    return list(value)


def _bound(statement: Statement, parameters: Parameters) -> Parameters:
    """The parameters as psycopg takes them, JSON lists decoded."""
    if statement.numbered:
        if isinstance(parameters, Mapping):
            raise sqlite3.ProgrammingError("numbered parameters need a sequence")
        return {
            f"p{i}": _decoded(v) if f"p{i}" in statement.list_names else v
            for i, v in enumerate(parameters, start=1)
        }
    if statement.named:
        if not isinstance(parameters, Mapping):
            raise sqlite3.ProgrammingError("named parameters need a mapping")
        if not statement.list_names:
            return parameters
        return {k: _decoded(v) if k in statement.list_names else v for k, v in parameters.items()}
    if isinstance(parameters, Mapping):
        raise sqlite3.ProgrammingError("positional parameters need a sequence")
    if not statement.list_positions:
        return parameters
    return [_decoded(v) if i in statement.list_positions else v for i, v in enumerate(parameters)]


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, as sqlite3.Row is."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names[key])
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    description = cursor.description or []
    names: dict[str, int] = {}
    for i, column in enumerate(description):
        names.setdefault(column.name, i)  # a name given twice reads the first, as in SQLite

    def make(values: Sequence[Any]) -> Row:
        return Row(values, names)

    return make


class _NumericLoader(Loader):
    """NUMERIC (what sum() of BIGINT gives) as SQLite gives it: int when whole, else float."""

    def load(self, data: Any) -> int | float:
        """Parse PostgreSQL's text form of a numeric."""
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


def _translated_error(exc: psycopg.Error) -> sqlite3.Error:
    """The sqlite3 exception the storage code catches for a PostgreSQL error."""
    message = exc.diag.message_primary or str(exc)
    if exc.diag.message_detail:
        message = f"{message} ({exc.diag.message_detail})"
    error: sqlite3.Error
    if isinstance(exc, pg_errors.IntegrityError):
        error = sqlite3.IntegrityError(message)
    elif isinstance(exc, pg_errors.OperationalError):
        error = sqlite3.OperationalError(message)
    elif isinstance(exc, pg_errors.ProgrammingError):
        error = sqlite3.ProgrammingError(message)
    else:
        error = sqlite3.DatabaseError(message)
    error.pg_code = exc.sqlstate  # type: ignore[attr-defined]
    return error


class Cursor:
    """What `PgConnection.execute` returns: rows, rowcount and lastrowid, as sqlite3's."""

    def __init__(self, connection: PgConnection, cursor: psycopg.Cursor[Any]) -> None:
        self._connection = connection
        self._cursor = cursor
        self.rowcount = cursor.rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    def close(self) -> None:
        """Let go of the rows not read."""
        self._cursor.close()

    @property
    def lastrowid(self) -> int | None:
        """Refused: PostgreSQL has no last row id (storage.sql.insert_id: RETURNING id)."""
        raise sqlite3.NotSupportedError(
            "PostgreSQL has no lastrowid: INSERT through storage.sql.insert_id (RETURNING id)"
        )


class PgConnection:
    """A psycopg connection that runs the storage functions written for sqlite3."""

    # What storage.sql.engine() reads (a sqlite3.Connection has no such attribute).
    engine: Final = "postgres"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        raw.row_factory = _row_factory
        raw.adapters.register_loader("numeric", _NumericLoader)
        # Ignored: rows are always readable by name (sqlite3 code sets this to sqlite3.Row).
        self.row_factory: Any = None
        # Statements sent, each a round trip to the server (the store's metrics add them up).
        self.round_trips = 0

    @classmethod
    def connect(
        cls, url: str, *, connect_timeout: int = CONNECT_TIMEOUT, **settings: Any
    ) -> PgConnection:
        """Open a connection in autocommit mode (the storage code issues BEGIN and COMMIT),
        giving up after `connect_timeout` seconds (OperationalError)."""
        try:
            raw = psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout, **settings)
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        return cls(raw)

    def execute(self, sql: str, parameters: Parameters = ()) -> Cursor:
        """Run one statement written for sqlite3."""
        statement = translate(sql)
        self.round_trips += 1
        try:
            # Always with parameters (maybe none): psycopg then reads `%%` as `%`.
            cursor = self.raw.execute(
                statement.sql,
                _bound(statement, parameters),
            )
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        return Cursor(self, cursor)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Parameters]) -> Cursor:
        """Run one statement for each set of parameters."""
        statement = translate(sql)
        cursor = self.raw.cursor()
        rowcount = 0
        try:
            # One statement at a time: psycopg's executemany pipelines, and a pipeline a
            # serialization failure aborts leaves the connection needing more than ROLLBACK.
            for parameters in seq_of_parameters:
                self.round_trips += 1
                cursor.execute(statement.sql, _bound(statement, parameters))
                rowcount += max(cursor.rowcount, 0)
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        result = Cursor(self, cursor)
        result.rowcount = rowcount
        return result

    @property
    def broken(self) -> bool:
        """Whether the connection is closed or lost (a new one is needed to go on)."""
        return self.raw.closed or self.raw.broken

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (BEGIN issued, not yet committed or rolled back)."""
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()
