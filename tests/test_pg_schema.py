"""PostgreSQL's schema (the baseline storage/migrations_pg/0030_baseline.sql and the migrations
after it) mirrors SQLite's at the latest version."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from storage.pg import PgConnection
from storage.pg_store import pg_migrate
from storage.store import configure, migrate

BASELINE = (
    Path(__file__).resolve().parent.parent / "storage" / "migrations_pg" / "0030_baseline.sql"
)

# What each SQLite column type became (the baseline's header says why).
PG_TYPES = {"INTEGER": "bigint", "TEXT": "text", "REAL": "double precision", "BLOB": "bytea"}

# A trigger that only refuses: SELECT RAISE(ABORT, 'message') before an UPDATE or a DELETE.
_REFUSAL = re.compile(
    r"CREATE TRIGGER (?P<name>\w+)\s+BEFORE (?P<event>UPDATE|DELETE)(?P<of>\s+OF\s.*?)?"
    r"\s+ON\s+(?P<table>\w+)\s+(?P<when>WHEN\s.*?)?BEGIN\s+"
    r"SELECT RAISE\(ABORT, '(?P<message>(?:[^']|'')*)'\);\s+END$",
    re.S,
)


@dataclass(frozen=True, slots=True)
class Column:
    """A column as SQLite declares it."""

    name: str
    type: str
    notnull: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A SQLite trigger refusing an UPDATE or a DELETE with a message."""

    table: str
    event: str
    message: str
    whole_row: bool  # no OF column list
    always: bool  # no WHEN condition


@dataclass(frozen=True, slots=True)
class SqliteSchema:
    """What SQLite's schema at version 30 holds, to compare PostgreSQL's with."""

    columns: dict[str, list[Column]]
    primary_keys: dict[str, tuple[str, ...]]
    uniques: set[tuple[str, tuple[str, ...]]]
    indexes: set[tuple[str, str]]
    triggers: set[tuple[str, str]]
    refusals: list[Refusal]


@cache
def sqlite_schema() -> SqliteSchema:
    """SQLite's schema after every migration, read from an in-memory database."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    configure(conn, "NORMAL")
    migrate(conn)
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    columns: dict[str, list[Column]] = {}
    primary_keys: dict[str, tuple[str, ...]] = {}
    uniques: set[tuple[str, tuple[str, ...]]] = set()
    for table in tables:
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        # Every table is STRICT, where a PRIMARY KEY column is NOT NULL too.
        columns[table] = [Column(row[1], row[2], bool(row[3]) or row[5] > 0) for row in info]
        keyed = sorted((row[5], row[1]) for row in info if row[5] > 0)
        primary_keys[table] = tuple(name for _position, name in keyed)
        for index in conn.execute(f'PRAGMA index_list("{table}")').fetchall():
            if index[3] == "u":  # a UNIQUE constraint's index
                names = conn.execute(f'PRAGMA index_info("{index[1]}")').fetchall()
                uniques.add((table, tuple(row[2] for row in names)))
    indexes = {
        (row[0], row[1])
        for row in conn.execute(
            "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    triggers: set[tuple[str, str]] = set()
    refusals: list[Refusal] = []
    for table, name, text in conn.execute(
        "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger'"
    ):
        triggers.add((table, name))
        match = _REFUSAL.match(text)
        if match:
            refusals.append(
                Refusal(
                    table=match["table"],
                    event=match["event"],
                    message=match["message"].replace("''", "'"),
                    whole_row=match["of"] is None,
                    always=match["when"] is None,
                )
            )
    conn.close()
    return SqliteSchema(columns, primary_keys, uniques, indexes, triggers, refusals)


def append_only_tables() -> dict[str, str]:
    """Each table SQLite keeps append-only, with the message TRUNCATE is refused with: a
    table refusing every DELETE, or every UPDATE of any column (the DELETE message first)."""
    found: dict[str, str] = {}
    refusals = sqlite_schema().refusals
    for refusal in refusals:
        if refusal.always and refusal.event == "DELETE":
            found[refusal.table] = refusal.message
    for refusal in refusals:
        if refusal.always and refusal.whole_row and refusal.event == "UPDATE":
            found.setdefault(refusal.table, refusal.message)
    return dict(sorted(found.items()))


@pytest.fixture
def pg(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to a fresh PostgreSQL database migrated as a store opening it does."""
    migrated = PgConnection.connect(pg_url)
    pg_migrate(migrated)  # the baseline, then every later migration, as a store opening does
    migrated.close()
    with psycopg.connect(pg_url) as conn:
        yield conn


def test_the_baseline_says_what_it_is() -> None:
    """The file starts by saying it brings an empty database to version 30, and has no
    transaction control of its own."""
    text = BASELINE.read_text(encoding="utf-8")
    assert text.startswith("-- Migration 0030 for PostgreSQL")
    assert "version 30" in text.split("\n\n")[0]
    assert not re.search(r"^\s*(BEGIN|COMMIT|ROLLBACK)\s*;", text, re.M | re.I)
    assert "-- (query compatibility functions follow)" in text


def test_tables_and_columns_match(pg: psycopg.Connection[tuple[object, ...]]) -> None:
    """Every SQLite table exists with the same columns in order, types, NOT NULL-ness and
    primary key; no other table."""
    schema = sqlite_schema()
    found: dict[str, list[tuple[str, str, bool]]] = {}
    for table, name, data_type, nullable in pg.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name IN (SELECT tablename FROM pg_tables"
        "   WHERE schemaname = 'public' AND tablename <> 'schema_version')"
        " ORDER BY table_name, ordinal_position"
    ):
        found.setdefault(str(table), []).append((str(name), str(data_type), nullable == "NO"))
    assert set(found) == set(schema.columns)
    for table, columns in schema.columns.items():
        expected = [(c.name, PG_TYPES[c.type], c.notnull) for c in columns]
        assert found[table] == expected, table
    keys: dict[str, tuple[str, ...]] = {}
    for table, names in pg.execute(
        "SELECT c.conrelid::regclass::text, array_agg(a.attname::text ORDER BY k.position)"
        " FROM pg_constraint AS c"
        " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k (attnum, position)"
        " JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.contype = %s AND c.connamespace = 'public'::regnamespace"
        " GROUP BY c.conrelid, c.conname",
        ("p",),
    ):
        assert isinstance(names, list)
        keys[str(table)] = tuple(names)
    assert keys == schema.primary_keys


def test_unique_constraints_match(pg: psycopg.Connection[tuple[object, ...]]) -> None:
    """Every SQLite UNIQUE constraint is one in PostgreSQL, on the same columns."""
    found = {
        (str(table), tuple(names))
        for table, names in pg.execute(
            "SELECT c.conrelid::regclass::text,"
            " array(SELECT attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k (n, i)"
            " JOIN pg_attribute ON attrelid = c.conrelid AND attnum = k.n ORDER BY k.i)"
            " FROM pg_constraint AS c WHERE c.contype = 'u'"
            " AND c.connamespace = 'public'::regnamespace"
        )
        if isinstance(names, list)
    }
    assert found == sqlite_schema().uniques


def test_indexes_match(pg: psycopg.Connection[tuple[object, ...]]) -> None:
    """Every index SQLite's migrations create exists by name on the same table; PostgreSQL's
    other indexes are its constraints' own."""
    found = {
        (str(table), str(name))
        for table, name in pg.execute(
            "SELECT tablename, indexname FROM pg_indexes AS i WHERE schemaname = 'public'"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = i.indexname)"
        )
    }
    assert found == sqlite_schema().indexes


def test_triggers_match(pg: psycopg.Connection[tuple[object, ...]]) -> None:
    """Every SQLite trigger exists by name on its table; the only others refuse TRUNCATE on
    the append-only tables."""
    found = {
        (str(table), str(name))
        for table, name in pg.execute(
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
        )
    }
    truncates = {(table, f"{table}_no_truncate") for table in append_only_tables()}
    assert found == sqlite_schema().triggers | truncates


def _ledger(pg: psycopg.Connection[tuple[object, ...]]) -> tuple[int, int, int]:
    """A member, the member's account and a source account; their ids."""
    row = pg.execute(
        "INSERT INTO members (telegram_id, member_code, first_name, joined_at, last_seen_at)"
        " VALUES (5001, 'M0001', 'alice', 1, 1) RETURNING id"
    ).fetchone()
    assert row is not None
    member = int(str(row[0]))
    account = pg.execute(
        "INSERT INTO accounts (kind, member_id) VALUES ('member', %s) RETURNING id", (member,)
    ).fetchone()
    source = pg.execute(
        "INSERT INTO accounts (kind, name) VALUES ('source', 'earn') RETURNING id"
    ).fetchone()
    assert account is not None and source is not None
    return member, int(str(account[0])), int(str(source[0]))


def _operation(pg: psycopg.Connection[tuple[object, ...]], member: int, key: str) -> int:
    """An operation of `member`'s; its id."""
    row = pg.execute(
        "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id, points, actor,"
        " created_at, meta) VALUES ('purchase', %s, 'f', %s, 0, 't', 1, '{\"a\": 1}')"
        " RETURNING id",
        (key, member),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def _balance(pg: psycopg.Connection[tuple[object, ...]], account: int) -> object:
    """An account's balance column."""
    row = pg.execute("SELECT balance FROM accounts WHERE id = %s", (account,)).fetchone()
    assert row is not None
    return row[0]


def test_postings_keep_balances_and_refuse_an_overdraft(
    pg: psycopg.Connection[tuple[object, ...]],
) -> None:
    """Postings move a member's cached balance, never below 0 (a CHECK), and every account's
    balance in account_balances."""
    member, account, source = _ledger(pg)
    earn = _operation(pg, member, "earn")
    pg.execute(
        "INSERT INTO postings (operation_id, account_id, amount) VALUES (%s, %s, 100), (%s, %s,"
        " -100)",
        (earn, account, earn, source),
    )
    # Only a member's account keeps a cached balance (migration 31: no hot row); a source's
    # is summed from its postings by the account_balances view, as every reader takes it.
    assert (_balance(pg, account), _balance(pg, source)) == (100, 0)
    viewed = pg.execute(
        "SELECT balance FROM account_balances WHERE id IN (%s, %s) ORDER BY kind", (account, source)
    ).fetchall()
    assert viewed == [(100,), (-100,)]
    spend = _operation(pg, member, "spend")
    with pytest.raises(psycopg.errors.CheckViolation), pg.transaction():
        pg.execute(
            "INSERT INTO postings (operation_id, account_id, amount) VALUES (%s, %s, -101)",
            (spend, account),
        )
    pg.execute(
        "INSERT INTO postings (operation_id, account_id, amount) VALUES (%s, %s, -30)",
        (spend, account),
    )
    assert _balance(pg, account) == 70


def test_allocations_keep_remainders(pg: psycopg.Connection[tuple[object, ...]]) -> None:
    """Allocations take points off their lot's remainder, never below 0; a remainder never
    grows back."""
    member, _account, _source = _ledger(pg)
    earn = _operation(pg, member, "earn")
    lot = pg.execute(
        "INSERT INTO lots (member_id, operation_id, points, remainder, expires_at)"
        " VALUES (%s, %s, 50, 50, NULL) RETURNING id",
        (member, earn),
    ).fetchone()
    assert lot is not None
    spend = _operation(pg, member, "spend")
    insert = "INSERT INTO allocations (operation_id, lot_id, points) VALUES (%s, %s, %s)"
    pg.execute(insert, (spend, lot[0], 20))
    remainder = pg.execute("SELECT remainder FROM lots WHERE id = %s", (lot[0],)).fetchone()
    assert remainder == (30,)
    with pytest.raises(psycopg.errors.CheckViolation), pg.transaction():
        pg.execute(insert, (spend, lot[0], 31))
    grow = sql.SQL("UPDATE lots SET remainder = 40 WHERE id = {}").format(lot[0])
    assert _refused(pg, grow) == "a lot remainder never grows"


def test_checks_translated_from_sqlite_functions(
    pg: psycopg.Connection[tuple[object, ...]],
) -> None:
    """json_valid, GLOB and `date(x) IS x` refuse what SQLite refuses, as CHECK violations."""
    member, _account, _source = _ledger(pg)
    with pytest.raises(psycopg.errors.CheckViolation), pg.transaction():
        pg.execute(
            "INSERT INTO operations (kind, idempotency_key, fingerprint, member_id, points,"
            " actor, created_at, meta) VALUES ('x', 'k', 'f', %s, 0, 't', 1, '{bad')",
            (member,),
        )
    day = "INSERT INTO game_offers (member_id, game, cost, local_day, created_at, expires_at)"
    pg.execute(day + " VALUES (%s, 'wheel', 0, '2025-03-01', 1, 2)", (member,))
    with pytest.raises(psycopg.errors.CheckViolation), pg.transaction():
        pg.execute(day + " VALUES (%s, 'wheel', 0, '2025-3-01', 1, 2)", (member,))
    row = pg.execute(
        "SELECT is_iso_date('2025-02-28'), is_iso_date('2025-02-30'), is_iso_date('2025-2-28'),"
        " json_valid('[1]'), json_valid('[1'), json_type('[1]'), json_type('1.5'),"
        " sqlite_real('2x'), sqlite_real('abc')"
    ).fetchone()
    assert row == (True, False, False, True, False, "array", "real", 2.0, 0.0)


def _insert_any_row(pg: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    """Put one row of placeholder values in `table`, with its CHECKs, foreign keys (either
    way) and triggers out of the way: the test's transaction is rolled back afterwards."""
    for owner, constraint in pg.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint"
        " WHERE (contype = 'c' AND conrelid = %s::regclass)"
        " OR (contype = 'f' AND %s::regclass IN (conrelid, confrelid))",
        (table, table),
    ).fetchall():
        pg.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(str(owner)), sql.Identifier(str(constraint))
            )
        )
    columns = sqlite_schema().columns[table]
    # (An id clear of the seeded rows: accounts holds the system accounts from the start.)
    values = [
        sql.Literal(10**9 if c.name == "id" else 1) if c.type == "INTEGER" else sql.Literal("x")
        for c in columns
    ]
    pg.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
    pg.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
            sql.SQL(", ").join(values),
        )
    )
    pg.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table)))


def _refused(pg: psycopg.Connection[tuple[object, ...]], statement: sql.Composed) -> str:
    """The message `statement` is refused with, as an integrity error (SQLSTATE class 23)."""
    with pytest.raises(psycopg.IntegrityError) as caught, pg.transaction():
        pg.execute(statement)
    assert caught.value.sqlstate is not None and caught.value.sqlstate.startswith("23")
    return str(caught.value.diag.message_primary)


@pytest.mark.parametrize(("table", "message"), list(append_only_tables().items()))
def test_append_only_tables_refuse_changes(
    pg: psycopg.Connection[tuple[object, ...]], table: str, message: str
) -> None:
    """An append-only table refuses UPDATE and DELETE as SQLite does (whichever of the two
    SQLite refuses), and TRUNCATE too, with the table's messages."""
    refusals = [r for r in sqlite_schema().refusals if r.table == table]
    name = sql.Identifier(table)
    count = sql.SQL("SELECT count(*) FROM {}").format(name)
    _insert_any_row(pg, table)
    rows = pg.execute(count).fetchone()
    updates = {r.message for r in refusals if r.event == "UPDATE"}
    if updates:
        # Every column changed: whichever refusing trigger PostgreSQL fires first answers.
        changes = sql.SQL(", ").join(
            sql.SQL("{0} = {0} + 1" if c.type == "INTEGER" else "{0} = {0} || 'y'").format(
                sql.Identifier(c.name)
            )
            for c in sqlite_schema().columns[table]
        )
        statement = sql.SQL("UPDATE {} SET {}").format(name, changes)
        assert _refused(pg, statement) in updates
    deletes = {r.message for r in refusals if r.event == "DELETE" and r.always}
    if deletes:
        assert _refused(pg, sql.SQL("DELETE FROM {}").format(name)) in deletes
    assert _refused(pg, sql.SQL("TRUNCATE {}").format(name)) == message
    assert pg.execute(count).fetchone() == rows


def test_append_only_tables_are_found() -> None:
    """The parametrisation above covers the ledger's tables and the kept histories (a
    broken trigger parser would silently test nothing)."""
    tables = append_only_tables()
    assert {"operations", "postings", "allocations", "lots", "accounts", "offers"} <= set(tables)
    assert len(tables) >= 30
    assert tables["operations"] == "operations are append-only"
