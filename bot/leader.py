"""One leader among the bot's processes: it alone fetches updates, runs the jobs, sends pushes.

Telegram's limits are per bot token and a getUpdates offset acknowledges for everyone, so of
several processes sharing one PostgreSQL database exactly one may poll Telegram, run the
scheduled jobs and drain the outbox; every process serves the till API, /healthz and
/metrics. The leader is whoever holds a PostgreSQL advisory lock on a connection of its own
(`PgElection`): a process killed by any means loses its connection and, with it, the lock,
at once (the server sees the socket close; keepalives catch a machine that vanished). The
others wait in `pg_advisory_lock` and the first in line takes over as soon as it is free.

Each new leader takes the next epoch (storage/leadership.py) and the writes only a leader
makes check it in their own transaction, so a leader that lost its lock without noticing
changes nothing after its successor started. A leader that notices (its lock connection
broke: PostgreSQL restarted, the network went) stops as on SIGTERM and `pointsbot run`
exits 75, for its supervisor to start it again (it then waits in line like any standby):
starting afresh is simpler and surer than handing every duty back in a live process.

The lock and its connection are storage/leader_lock.py's. A SQLite database has one process
by construction: `SoleLeader` leads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from datetime import datetime
from typing import Final

from storage.leader_lock import LeaderLock
from storage.leadership import Leadership
from storage.store import Store

log = logging.getLogger(__name__)

# `pointsbot run`'s exit status after losing the leadership (EX_TEMPFAIL: start me again).
EXIT_LEADERSHIP_LOST: Final = 75
# How often the leader makes sure its lock connection is alive (seconds).
CHECK_SECONDS: Final = 0.5


def holder_name() -> str:
    """How this process is named as the leader: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Election:
    """Who leads; `SoleLeader` and `PgElection` say how it is decided."""

    def __init__(self, store: Store, holder: str | None = None) -> None:
        self.leadership = Leadership(store)
        self.holder = holder or holder_name()
        # This process's epoch while it leads (None: not the leader, or never was).
        self.epoch: int | None = None
        # Set when this process was the leader and no longer is: it is to stop.
        self.lost = asyncio.Event()

    @property
    def leads(self) -> bool:
        """Whether this process is the leader."""
        return self.epoch is not None and not self.lost.is_set()

    async def try_lead(self, now: datetime) -> bool:
        """Become the leader if nobody is; whether this process leads now."""
        raise NotImplementedError

    async def lead(self, now: datetime) -> None:
        """Wait until this process is the leader."""
        raise NotImplementedError

    def lose(self, why: str) -> None:
        """This process no longer leads (it is to stop): say why, once."""
        if not self.lost.is_set():
            log.error("leadership lost (epoch %s): %s", self.epoch, why)
            self.lost.set()

    async def close(self) -> None:
        """Give the leadership up (nothing to do for a sole leader)."""

    async def _take(self, now: datetime) -> None:
        self.epoch = await self.leadership.take(self.holder, now)
        log.info("leading as %s, epoch %d", self.holder, self.epoch)


class SoleLeader(Election):
    """SQLite: the only process there is leads."""

    async def try_lead(self, now: datetime) -> bool:
        """Lead at once (the next epoch)."""
        if self.epoch is None:
            await self._take(now)
        return True

    async def lead(self, now: datetime) -> None:
        """Lead at once."""
        await self.try_lead(now)


class PgElection(Election):
    """PostgreSQL: the leader holds an advisory lock on a connection of its own."""

    def __init__(
        self,
        store: Store,
        url: str,
        holder: str | None = None,
        *,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        super().__init__(store, holder)
        self.check_seconds = check_seconds
        self.lock = LeaderLock(url)
        self._watch: asyncio.Task[None] | None = None

    async def try_lead(self, now: datetime) -> bool:
        """Take the lock if it is free, and lead."""
        if self.leads:
            return True
        if not await self.lock.try_take():
            return False
        await self._led(now)
        return True

    async def lead(self, now: datetime) -> None:
        """Wait in line for the lock (connecting again after a lost connection), then lead."""
        if self.leads:
            return
        pause = 0.1
        while True:
            try:
                await self.lock.take()
                break
            except Exception as exc:  # the server restarting, the network: wait and retry
                await self.lock.release()
                log.warning("waiting for the leadership: %s; trying again", exc)
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
                pause = min(pause * 2, 2.0)
        await self._led(now)

    async def _led(self, now: datetime) -> None:
        """The lock is ours: take the next epoch and watch the lock connection."""
        await self._take(now)
        self._watch = asyncio.create_task(self._watch_lock(), name="leader-lock")

    async def _watch_lock(self) -> None:
        """Make sure, every `check_seconds`, that the lock connection (and so the lock) lives."""
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                async with asyncio.timeout(max(self.check_seconds * 4, 2.0)):
                    await self.lock.check()
            except Exception as exc:
                self.lose(f"the lock connection failed ({exc or type(exc).__name__})")
                return

    async def close(self) -> None:
        """Stop watching and close the lock connection (which frees the lock)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.lock.release()


def election_for(store: Store, url: str) -> Election:
    """The election a store calls for: PostgreSQL's lock when `url` is set, else sole."""
    return PgElection(store, url) if url else SoleLeader(store)
