"""The leader's lock on PostgreSQL: an advisory lock held on a connection of its own.

The process holding it leads (bot/leader.py). The lock lives as long as its session: a
holder killed by any means loses it when the server sees the connection close (at once for
a process that ended; within seconds for a machine that vanished, by TCP keepalives both
ways; and, while a standby waits in `pg_advisory_lock`, by PostgreSQL's own check of the
socket).
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

# Any number, pointsbot's own: the key of the advisory lock the leader holds.
LEADER_LOCK: Final = 0x706F696E7401
# The lock connection's settings on the client's side (libpq keepalives) ...
_CLIENT_SETTINGS: Final[dict[str, Any]] = {
    "autocommit": True,
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    "application_name": "pointsbot-leader",
}
# ... and on the server's.
_SERVER_SETTINGS: Final = (
    "SET client_connection_check_interval = 250",
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 3",
)


class LeaderLock:
    """The advisory lock on its own connection, connected on first use and after a loss."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None  # psycopg.AsyncConnection

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            conn = await psycopg.AsyncConnection.connect(self.url, **_CLIENT_SETTINGS)
            for statement in _SERVER_SETTINGS:
                await conn.execute(statement)
            self._conn = conn
        return self._conn

    async def try_take(self) -> bool:
        """Take the lock if nobody holds it; whether this process holds it now."""
        conn = await self._connection()
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
        row = await cur.fetchone()
        return bool(row[0])

    async def take(self) -> None:
        """Wait in line until the lock is this process's; raises when the connection fails."""
        conn = await self._connection()
        await conn.execute("SELECT pg_advisory_lock(%s)", (LEADER_LOCK,))

    async def check(self) -> None:
        """Raise unless the lock's connection (and so the lock) is alive."""
        if self._conn is None:
            raise ConnectionError("the lock connection is closed")
        await self._conn.execute("SELECT 1")

    async def release(self) -> None:
        """Close the lock's connection, which frees the lock (safe to call twice)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
