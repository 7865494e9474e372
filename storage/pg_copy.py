"""Copy a SQLite database into an empty PostgreSQL one (`pointsbot migrate-to-postgres`).

Both must be at the same schema version (the SQLite file migrated first, the PostgreSQL one
by `pg_migrate`). Every row is copied as it is, ids included, in one transaction, tables in
foreign-key order, with the tables' own triggers paused for the copy (`DISABLE TRIGGER USER`:
the owner of the tables may, no superuser needed), so the counters they keep (balances,
remainders, the game budget) are copied, not counted twice, and no append-only refusal or
insert-time rule fires on history it already checked once. Foreign keys stay checked. Then
the identities continue after the highest id, and a system account's cached balance is
zeroed (PostgreSQL sums it from its postings: migration 31). The caller runs the audit on
the result and compares the row counts (`pointsbot migrate-to-postgres` does both).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from psycopg import sql

from storage.errors import MigrationError
from storage.pg import PgConnection
from storage.pg_store import pg_schema_version
from storage.sql import column_names
from storage.store import schema_version

# Rows sent per COPY progress report.
_REPORT_EVERY: Final = 50_000


@dataclass(frozen=True, slots=True)
class Copied:
    """What the copy wrote: rows per table, in the order copied."""

    rows: dict[str, int]

    @property
    def total(self) -> int:
        """Rows copied in all."""
        return sum(self.rows.values())


def _tables_in_order(source: sqlite3.Connection) -> list[str]:
    """SQLite's tables, each after every table it references."""
    tables = [
        str(row[0])
        for row in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    depends = {
        table: {
            str(row[2])
            for row in source.execute("SELECT * FROM pragma_foreign_key_list(?)", (table,))
            if str(row[2]) != table
        }
        for table in tables
    }
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(tables):
        ready = [t for t in tables if t not in placed and depends[t] <= placed]
        if not ready:
            raise MigrationError(f"foreign keys form a cycle among {set(tables) - placed}")
        ordered += ready
        placed.update(ready)
    return ordered


def _refuse_unless_empty(target: PgConnection) -> None:
    """Refuse a PostgreSQL database that holds anything but the seeded system accounts."""
    for table in ("members", "operations", "accounts"):
        row = target.execute(
            f"SELECT count(*) FROM {table}"  # noqa: S608 - fixed names
            + (" WHERE kind = 'member'" if table == "accounts" else "")
        ).fetchone()
        if row[0]:
            raise MigrationError(f"the PostgreSQL database is not empty ({table} has rows)")


def copy_to_postgres(
    source: sqlite3.Connection,
    target: PgConnection,
    progress: Callable[[str, int], None] | None = None,
) -> Copied:
    """Copy every row of `source` into the empty, migrated `target` in one transaction, then
    gather the planner's statistics; raises MigrationError (versions differ, target not
    empty, a seeded row differs)."""
    version, target_version = schema_version(source), pg_schema_version(target)
    if version != target_version:
        raise MigrationError(
            f"the SQLite database is at schema version {version}, PostgreSQL at"
            f" {target_version}: run `pointsbot init-db` on both first"
        )
    tables = _tables_in_order(source)
    rows: dict[str, int] = {}
    source.execute("BEGIN")  # one snapshot of the source
    target.execute("BEGIN")
    try:
        _refuse_unless_empty(target)
        seeded = {
            int(r[0]): (str(r[1]), str(r[2]))
            for r in target.execute("SELECT id, kind, name FROM accounts")
        }
        for table in tables:
            target.raw.execute(
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table))
            )
        for table in tables:
            rows[table] = _copy_table(source, target, table, seeded, progress)
        for table in tables:
            target.raw.execute(
                sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table))
            )
            _continue_identity(target, table)
        target.execute("UPDATE accounts SET balance = 0 WHERE kind <> 'member'")
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        raise
    finally:
        source.execute("COMMIT")
    # The planner's statistics of the copy, now: until autovacuum gets to it, PostgreSQL
    # would plan for the empty tables it last looked at.
    target.execute("ANALYZE")
    return Copied(rows)


def _copy_table(
    source: sqlite3.Connection,
    target: PgConnection,
    table: str,
    seeded: dict[int, tuple[str, str]],
    progress: Callable[[str, int], None] | None,
) -> int:
    """COPY one table's rows (ordered by rowid); the number copied."""
    columns = column_names(source, table)
    # In id order: a row may reference an earlier one of its own table (a reversal, a lot).
    order = " ORDER BY id" if "id" in columns else ""
    quoted = ", ".join(f'"{column}"' for column in columns)
    # Names read from the database's own catalog, quoted: nothing from outside.
    select = f'SELECT {quoted} FROM "{table}"{order}'  # noqa: S608
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    count = 0
    with target.raw.cursor().copy(copy) as writer:
        for row in source.execute(select):
            if table == "accounts" and int(row[0]) in seeded:
                # The baseline seeded the system accounts with the same ids: check, skip.
                if (str(row[1]), str(row[2])) != seeded[int(row[0])]:
                    raise MigrationError(f"system account {row[0]} differs: {tuple(row)}")
                continue
            writer.write_row(tuple(row))
            count += 1
            if progress is not None and count % _REPORT_EVERY == 0:
                progress(table, count)
    if progress is not None:
        progress(table, count)
    return count


def _continue_identity(target: PgConnection, table: str) -> None:
    """Make the table's identity column (if any) draw after its highest id."""
    row = target.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = ? AND is_identity = 'YES'",
        (table,),
    ).fetchone()
    if row is None:
        return
    column = str(row[0])
    target.raw.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence({table}, {column}),"
            " coalesce((SELECT max({ident}) FROM {name}), 0) + 1, false)"
        ).format(
            table=sql.Literal(table),
            column=sql.Literal(column),
            ident=sql.Identifier(column),
            name=sql.Identifier(table),
        )
    )


def tables_differing(target: PgConnection, copied: Copied) -> list[str]:
    """The tables whose row count in `target` is not what the copy wrote (accounts: the
    seeded system accounts were there before it, so not compared)."""
    differ = []
    for table, rows in copied.rows.items():
        if table == "accounts":
            continue
        count = target.raw.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        if count is None or count[0] != rows:
            differ.append(table)
    return differ
