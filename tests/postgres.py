"""The PostgreSQL the suite may use (`.ci/postgres start` prints its URL), and the storage
conformance tests' connections: the same test on SQLite and on PostgreSQL.

Tests that need it take the `pg_url` fixture (tests/conftest.py): a fresh, empty database of
their own, dropped afterwards. Without POINTSBOT_TEST_POSTGRES they are skipped (`make test`
says so in one line), except under CI (CI=true), where a missing server is a failure.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Final, cast
from urllib.parse import urlsplit, urlunsplit

import pytest

from storage.store import Store, Synchronous

URL_ENV: Final = "POINTSBOT_TEST_POSTGRES"


def server_url() -> str | None:
    """The test server's URL (a database on it the suite may connect to), or None."""
    return os.environ.get(URL_ENV) or None


def require_server() -> str:
    """The server's URL; skips the test without one (fails it under CI, which never skips)."""
    url = server_url()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{URL_ENV} is not set: .ci/run starts PostgreSQL before the tests")
        pytest.skip(f'PostgreSQL tests need {URL_ENV} (eval "$(.ci/postgres start)")')
    return url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@cache
def _template(url: str) -> str:
    """A database migrated to the latest schema, made once per run (named by the migrations'
    text, so a changed migration makes a new one): copying it is much quicker than migrating."""
    import psycopg

    from storage.pg import PgConnection
    from storage.pg_store import pg_migrate, pg_migrations

    digest = hashlib.sha256("".join(sql for _v, _n, sql in pg_migrations()).encode())
    name = f"pointsbot_template_{digest.hexdigest()[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return name
        building = f"{name}_{uuid.uuid4().hex[:6]}"
        admin.execute(f'CREATE DATABASE "{building}"')
    conn = PgConnection.connect(_with_database(url, building))
    try:
        pg_migrate(conn)
    finally:
        conn.close()
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        except psycopg.errors.DuplicateDatabase:  # another run made it meanwhile
            admin.execute(f'DROP DATABASE "{building}"')
    return name


@contextmanager
def fresh_database(url: str, *, migrated: bool = False) -> Iterator[str]:
    """A new database on the server at `url` for one test, empty or (`migrated`) at the
    latest schema: its URL; dropped after."""
    import psycopg

    name = f"pointsbot_t_{uuid.uuid4().hex[:12]}"
    template = f' TEMPLATE "{_template(url)}"' if migrated else ""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{template}')
    try:
        yield _with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The engines the storage conformance tests run on (tests parametrized with ENGINES).
ENGINES: Final = ("sqlite", "postgres")


@contextmanager
def migrated_connection(engine: str, folder: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a new database of `engine`, migrated to the latest schema: a SQLite
    file in `folder`, or a fresh PostgreSQL database (skipped without a server)."""
    if engine == "sqlite":
        from storage.store import connect_sync, migrate

        connection = connect_sync(folder / "conformance.db")
        migrate(connection)
        try:
            yield connection
        finally:
            connection.close()
        return
    from storage.pg import PgConnection
    from storage.pg_store import pg_migrate

    with fresh_database(require_server(), migrated=True) as url:
        pg = PgConnection.connect(url)
        try:
            pg_migrate(pg)
            yield cast(sqlite3.Connection, pg)  # what the storage functions take
        finally:
            pg.close()


@asynccontextmanager
async def opened_store(
    engine: str,
    folder: Path,
    *,
    clock: Callable[[], datetime] | None = None,
    synchronous: Synchronous = "FULL",
) -> AsyncIterator[Store]:
    """An open store on a new database of `engine` (a SQLite file in `folder`, or a fresh
    PostgreSQL database), migrated; the facades take either."""
    if engine == "sqlite":
        async with Store(folder / "conformance.db", synchronous=synchronous, clock=clock) as store:
            yield store
        return
    from storage.pg_store import PgStore

    with fresh_database(require_server(), migrated=True) as url:
        async with PgStore(url, clock=clock) as pg_store:
            yield cast(Store, pg_store)  # the same calls as Store's (storage/pg_store.py)
