"""Update processing: every update kept until handled; members served concurrently, each one's
updates one at a time and in order.

python-telegram-bot either processes updates one by one (a slow member holds up everyone)
or all at once (two taps of one member may race through a conversation). This processor
does both right: each member's updates queue behind a lock of their own, in arrival order,
and a bounded number of members are served at the same time.

python-telegram-bot also acknowledges a batch of updates to Telegram (the offset of its next
getUpdates) as soon as it has queued them, before any handler has run: a bot killed then
loses them for good, a cashier's purchase with them. So the getUpdates transport journals
every batch in the database, and holds the next getUpdates back until that is committed;
each update is marked done once its handlers have finished, and at start the updates a
crash left unfinished are handled first, oldest first. (The batch is handled while it is
being written: killed before the commit, it was never acknowledged and Telegram delivers it
again.) The copies Telegram delivers again of the last batch fetched are dropped here.
Handling an update twice is possible (killed after the handler, before its done mark was
written, or before its batch was) and safe: every change a member or cashier makes is keyed
by the update (a receipt, a till message, a single-use offer behind a button).

In webhook mode on PostgreSQL, with several processes behind one webhook URL, any of them may
receive a member's update, and Telegram sends that member's next one as soon as the last had
its 200, maybe to another process. So there the journal is the inbox: every process journals
what it receives and answers 200, and only the leader handles, reading the updates not yet
done from the journal in update id order (`read_inbox`) and queuing each once. A member's
next update was journaled after the last (it was sent only then), so no look sees it
without the one before: each member's updates reach the processor in order, whoever
received them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from telegram import Bot, Update
from telegram.error import NetworkError
from telegram.ext import BaseUpdateProcessor
from telegram.request import BaseRequest, RequestData

from bot.logs import handling, member_hash
from bot.metrics import Metrics, update_kind
from bot.ptb_private import JSONDict, ODVInput
from bot.sending import drop_tapped_keyboards, resume_reading_back, stop_reading_back
from bot.transport import AiohttpRequest
from storage.errors import NotLeader
from storage.journal import Journal

log = logging.getLogger(__name__)

# What the journal says about an update reaching the processor (UpdateJournal.admit).
Admission = Literal["fresh", "replay", "copy"]

# PTB's own semaphore is taken before our per-member lock; set so high it never blocks,
# so updates waiting behind their member's lock do not occupy the real slots below.
_UNBOUNDED: Final = 1_000_000
# An update whose replay was started this many times, never finished, is given up (and
# logged): one that brings the bot down whenever it is handled would otherwise keep it down.
MAX_REPLAYS: Final = 5
# Done marks are written in batches: the first waits this long (seconds) for others to join
# it; fetched batches take the waiting ones along in their own transaction.
DONE_BATCH_SECONDS: Final = 0.05
# Handled updates are kept this long (Telegram's copies after a crash come within seconds;
# a day lets an operator look back), and pruned this often.
KEEP_DONE: Final = timedelta(days=1)
PRUNE_EVERY_SECONDS: Final = 3600.0
# Webhook mode on PostgreSQL: the leader looks in the inbox at once when told of a delivery
# journaled (its own, or another process's notice), and this often (seconds) anyway, in case a
# notice was missed; up to this many updates a look. Listening again after a failure waits.
INBOX_POLL_SECONDS: Final = 0.25
INBOX_BATCH: Final = 500
INBOX_LISTEN_RETRY_SECONDS: Final = 1.0


def member_key(update: object) -> int | None:
    """Whose queue an update joins: the user, else the chat; None for neither."""
    if not isinstance(update, Update):
        return None
    if update.effective_user is not None:
        return update.effective_user.id
    if update.effective_chat is not None:
        return update.effective_chat.id
    return None


class UpdateJournal:
    """Updates kept from their fetch until handled, replayed at start after a crash."""

    def __init__(self, journal: Journal, clock: Callable[[], datetime]) -> None:
        self.journal = journal
        self.clock = clock
        self._done: list[int] = []
        # Ids queued for replay at start: their first copy to arrive is the replay.
        self._replaying: set[int] = set()
        # Replays about to start, counted in one transaction (`started`).
        self._starting: list[int] = []
        self._starts: asyncio.Future[None] | None = None
        # Webhook deliveries about to be journaled together (`delivered`).
        self._delivering: list[JSONDict] = []
        self._deliveries: asyncio.Future[set[int]] | None = None
        # Delivered updates not yet journaled (their done marks wait), and the newest id ever
        # journaled (known from `resume` on; None: not known, every delivery journaled first).
        self._delivering_ids: set[int] = set()
        self._newest: int | None = None
        # Ids Telegram delivered again that were journaled before: that copy is dropped.
        self._redelivered: set[int] = set()
        # The last run's last fetch, until this run's first: the only copies Telegram sends.
        self._previous_fetch: set[int] = set()
        # The batch fetched last, until it is in the journal (the next fetch waits for that).
        self._unrecorded: list[JSONDict] | None = None
        self._unrecorded_ids: frozenset[int] = frozenset()
        self._recording: asyncio.Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._pruned_at: float | None = None
        # Webhook mode on PostgreSQL, where the journal is the inbox of every process's
        # deliveries: the ids journaled and not known done that this leader queued (replays
        # included), the task that queues the others, what wakes it, and where they go.
        self._inboxed: set[int] = set()
        self._inbox: asyncio.Task[None] | None = None
        self._inbox_wake: asyncio.Event | None = None
        self._inbox_to: tuple[Bot | None, asyncio.Queue[object]] | None = None
        self._listener: asyncio.Task[None] | None = None
        # Whether journaling deliveries now notifies the leader (on PostgreSQL, a standby's;
        # the leader looks at once after its own).
        self.notify_inbox: Callable[[], bool] = lambda: False
        # The leader's epoch, checked as each fetched batch is journaled (None: not checked),
        # and who is told when it is over (bot/leader.py).
        self.epoch: int | None = None
        self.on_not_leader: Callable[[str], None] | None = None

    def fetched(self, batch: list[JSONDict]) -> None:
        """Start journaling a fetched batch; drop the copies in it (see `admit`)."""
        ids = [int(update["update_id"]) for update in batch]
        if self._previous_fetch:  # Telegram delivers its copies in the first fetch
            self._redelivered.update(self._previous_fetch.intersection(ids))
            self._previous_fetch = set()
        self._unrecorded, self._unrecorded_ids = batch, frozenset(ids)
        self._recording = asyncio.ensure_future(self._record(batch))

    def surely_new(self, update: JSONDict) -> bool:
        """Whether a webhook's update is newer than any journaled (Telegram's ids only grow):
        then it cannot be a copy, and is handled while it is being journaled, as a polled
        batch is. Anything else is journaled first, and handled only if new there."""
        update_id = int(update["update_id"])
        if self._newest is None or update_id <= self._newest:
            return False
        self._newest = update_id
        return True

    async def delivered(self, update: JSONDict) -> bool:
        """Journal an update a webhook delivered (before it is acknowledged); False for a copy
        of one journaled before, which is not to be handled again."""
        update_id = int(update["update_id"])
        # Deliveries arriving together share one transaction (one fsync), and the done marks
        # waiting go along, as they do with a fetched batch.
        self._delivering.append(update)
        self._delivering_ids.add(update_id)
        if self._deliveries is None:
            self._deliveries = asyncio.ensure_future(self._record_deliveries())
        try:
            fresh = await asyncio.shield(self._deliveries)
        finally:
            self._delivering_ids.discard(update_id)
        if self._newest is not None and update_id > self._newest:
            self._newest = update_id
        return update_id in fresh

    async def _record_deliveries(self) -> set[int]:
        await asyncio.sleep(0)  # let the deliveries received in this turn of the loop join in
        updates, self._delivering, self._deliveries = self._delivering, [], None
        ids = {int(update["update_id"]) for update in updates}
        # Marks of updates still to be journaled by another transaction wait for it.
        waiting = self._delivering_ids - ids
        done = [i for i in self._done if i not in waiting]
        self._done = [i for i in self._done if i in waiting]
        try:
            return await self.journal.deliver(
                updates, done, self.clock(), notify=self.notify_inbox()
            )
        except BaseException:
            self._done[:0] = done
            raise

    async def recorded(self) -> None:
        """Wait until the last fetched batch is in the journal (the next fetch acknowledges it);
        raises what writing it raised, and tries again on the next call."""
        if self._unrecorded is None:
            return
        if self._recording is None or self._recording.cancelled():
            self._recording = asyncio.ensure_future(self._record(self._unrecorded))
        try:
            # Shielded: the polling task is cancelled at shutdown while it waits here, and the
            # write must not be (the shutdown's last getUpdates waits for the same one).
            await asyncio.shield(self._recording)
        except Exception:
            self._recording = None
            raise

    async def _record(self, batch: list[JSONDict]) -> None:
        # The done marks waiting go along, this batch's own included (written after it).
        done, self._done = self._done, []
        try:
            await self.journal.record(batch, done, self.clock(), epoch=self.epoch)
        except BaseException as exc:
            self._done[:0] = done
            if isinstance(exc, NotLeader) and self.on_not_leader is not None:
                # Never acknowledged: the leader now fetches this batch again.
                self.on_not_leader(str(exc))
            raise
        if self._unrecorded is batch:
            self._unrecorded, self._unrecorded_ids, self._recording = None, frozenset(), None
            if self._done and self._wake is not None:  # marks held back for this batch
                self._wake.set()

    async def resume(self, bot: Bot | None, queue: asyncio.Queue[object]) -> int:
        """Queue the updates the last run left unhandled, oldest first, and start writing done
        marks; return how many were queued."""
        now = self.clock()
        await self.journal.prune_done(now - KEEP_DONE)
        self._pruned_at = asyncio.get_running_loop().time()
        unfinished = await self.journal.take_unfinished(now, max_attempts=MAX_REPLAYS)
        self._newest = await self.journal.newest()
        if self._newest is None:  # nothing journaled (or all pruned): nothing to copy
            self._newest = 0
        self._previous_fetch = set(unfinished.last_fetch)
        for update_id in unfinished.given_up:
            log.error("update %s given up: not handled in %d replays", update_id, MAX_REPLAYS)
        queued = 0
        for update_id, body in unfinished.replay:
            data = json.loads(body)  # stored without the tapped keyboards (do_request)
            try:
                update = Update.de_json(data, bot)
            except Exception:  # python-telegram-bot could not read it when fetched either
                log.exception("update %s cannot be read; not replayed", update_id)
                self._done.append(update_id)
                continue
            self._replaying.add(update_id)
            await queue.put(update)
            queued += 1
        # Queued, or marked done just above: what the inbox reader is not to queue again.
        self._inboxed = {update_id for update_id, _body in unfinished.replay}
        if queued:
            log.warning("replaying %d update(s) the last run left unhandled", queued)
        self.start()
        return queued

    def read_inbox(
        self, bot: Bot | None, queue: asyncio.Queue[object], leads: Callable[[], bool]
    ) -> None:
        """Webhook mode on PostgreSQL: while `leads()`, queue every update any process
        journals, in update id order, each once (after `resume`, which queued the older)."""
        if self._inbox is None:
            self._inbox_to = bot, queue
            self._inbox_wake = asyncio.Event()
            self._inbox = asyncio.create_task(self._read_inbox_forever(leads), name="inbox")
            self._listener = asyncio.create_task(self._hear_forever(), name="inbox-notices")

    def wake_inbox(self) -> None:
        """An update was journaled here: look in the inbox now, not at the next look."""
        if self._inbox_wake is not None:
            self._inbox_wake.set()

    async def stop_inbox(self, *, last_look: bool) -> None:
        """Stop reading the inbox; with `last_look`, queue what it holds first (what this
        process received is handled before it stops, as in polling)."""
        task, self._inbox = self._inbox, None
        if task is None:
            return
        listener, self._listener = self._listener, None
        for running in (task, listener):
            if running is not None:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        if last_look:
            try:
                await self._take_inbox()
            except Exception:  # journaled: the next leader handles it
                log.exception("could not take the last updates from the inbox")

    async def _hear_forever(self) -> None:
        """Look in the inbox at each notice of deliveries journaled by any process (the
        reader's own looks go on meanwhile, and while notices cannot be listened to)."""
        while True:
            try:
                async for _notice in self.journal.inbox_notices():
                    self.wake_inbox()
            except Exception as exc:  # the server restarting, the network
                log.warning("not listening for journaled deliveries (%s); trying again", exc)
            await asyncio.sleep(INBOX_LISTEN_RETRY_SECONDS)

    async def _read_inbox_forever(self, leads: Callable[[], bool]) -> None:
        assert self._inbox_wake is not None
        while leads():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox_wake.wait(), INBOX_POLL_SECONDS)
            self._inbox_wake.clear()
            try:
                if not await self._take_inbox():
                    return
            except Exception:  # the store retries a lost connection; tried again next look
                log.exception("could not read the update inbox")

    async def _take_inbox(self) -> bool:
        """Queue the updates journaled since the last look, lowest id first; False once
        another process leads."""
        assert self._inbox_to is not None
        bot, queue = self._inbox_to
        try:
            inbox = await self.journal.inbox(
                frozenset(self._inboxed), limit=INBOX_BATCH, epoch=self.epoch
            )
        except NotLeader as exc:
            if self.on_not_leader is not None:
                self.on_not_leader(str(exc))
            return False
        # Each member's next update is delivered only once the last was journaled (by
        # whichever process), so it is never seen before that one: queued in id order,
        # each member's updates reach the processor in the order they were sent. An id no
        # longer unfinished is done for good: it cannot come back, and need not be kept.
        self._inboxed.intersection_update(inbox.unfinished)
        for update_id, body in inbox.new:
            self._inboxed.add(update_id)
            try:
                update = Update.de_json(json.loads(body), bot)
            except Exception:  # the webhook checked it could be read: a bug, not a member
                log.exception("update %s cannot be read; not handled", update_id)
                self._done.append(update_id)
                if self._wake is not None:
                    self._wake.set()
                continue
            queue.put_nowait(update)
        if len(inbox.new) >= INBOX_BATCH and self._inbox_wake is not None:
            self._inbox_wake.set()  # more waiting: the next look at once
        return True

    def admit(self, update: object) -> Admission:
        """Whether to handle an update: a fresh one, the replay of one a crash left unhandled,
        or a copy Telegram delivered again of one handled or being replayed (dropped)."""
        if not isinstance(update, Update):
            return "fresh"
        update_id = update.update_id
        if update_id in self._replaying:  # the replay is queued before any fetch
            self._replaying.discard(update_id)
            return "replay"
        if update_id in self._redelivered:
            self._redelivered.discard(update_id)
            return "copy"
        return "fresh"

    async def started(self, update: object) -> None:
        """Count a replay as started, in the database, before its handlers run."""
        # Durable first: a replay that kills the bot at once is still counted, and given up
        # after MAX_REPLAYS starts. Replays starting together share one transaction.
        if not isinstance(update, Update):
            return
        self._starting.append(update.update_id)
        if self._starts is None:
            self._starts = asyncio.ensure_future(self._count_starts())
        await asyncio.shield(self._starts)

    async def _count_starts(self) -> None:
        await asyncio.sleep(0)  # let the replays starting in this turn of the loop join in
        ids, self._starting, self._starts = self._starting, [], None
        try:
            await self.journal.count_attempts(ids)
        except Exception:  # a safeguard only: the replays go ahead uncounted
            log.exception("could not count the start of %d replayed update(s)", len(ids))

    def done(self, update: object) -> None:
        """Mark an update handled (written within `DONE_BATCH_SECONDS` or with the next batch)."""
        if isinstance(update, Update):
            self._done.append(update.update_id)
            if self._wake is not None:
                self._wake.set()

    def start(self) -> None:
        """Start writing done marks in the background (inside the running loop)."""
        if self._flusher is None:
            self._wake = asyncio.Event()
            self._flusher = asyncio.create_task(self._flush_forever(), name="update-journal")

    async def stop(self, *, flush: bool = True) -> None:
        """Stop the background writer and the inbox reader and (unless told not to) write the
        last fetched batch and the waiting done marks."""
        await self.stop_inbox(last_look=False)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = self._wake = None
        if flush:
            try:
                await self.recorded()
            except Exception:  # never acknowledged: Telegram delivers it again
                log.exception("the last fetched updates were not journaled")
            try:
                await self.flush()
            except Exception:  # the database is gone (a lost leadership, a restart)
                log.exception(
                    "done marks not written: those updates are replayed at the next start"
                )

    async def flush(self) -> None:
        """Write the waiting done marks now (those of a batch not yet journaled go with it)."""
        if waiting := self._unrecorded_ids | self._delivering_ids:
            done = [i for i in self._done if i not in waiting]
            self._done = [i for i in self._done if i in waiting]
        else:
            done, self._done = self._done, []
        if not done:
            return
        try:
            await self.journal.mark_done(done, self.clock())
        except BaseException:
            self._done[:0] = done
            raise

    async def _flush_forever(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            await asyncio.sleep(DONE_BATCH_SECONDS)
            self._wake.clear()
            try:
                await self.flush()
                if self._pruned_at is None or loop.time() - self._pruned_at > PRUNE_EVERY_SECONDS:
                    self._pruned_at = loop.time()
                    await self.journal.prune_done(self.clock() - KEEP_DONE)
            except Exception:  # kept for the next try; a replay after a crash is safe anyway
                log.exception("could not write the update journal's done marks")


class JournalingRequest(AiohttpRequest):
    """The getUpdates transport: each batch is journaled before python-telegram-bot sees it."""

    __slots__ = ("journal",)

    def __init__(self, journal: UpdateJournal, connection_pool_size: int = 2) -> None:
        super().__init__(connection_pool_size=connection_pool_size)
        self.journal = journal

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one request; a getUpdates waits until the batch before it is journaled."""
        polling = url.endswith("/getUpdates")
        if polling:
            # Its offset acknowledges the last batch: only once that is in the journal.
            try:
                await self.journal.recorded()
            except Exception as exc:
                log.exception("could not journal the fetched updates")
                # PTB retries a NetworkError, backing off; the batch is written again first.
                raise NetworkError("fetched updates not journaled; not acknowledging") from exc
        code, payload = await super().do_request(
            url, method, request_data, read_timeout, write_timeout, connect_timeout, pool_timeout
        )
        if polling and code == 200:
            # Journaled while python-telegram-bot handles it. (PTB's `post`, which hands back
            # the parsed batch, is final: the batch is parsed here too.)
            batch = self.parse_json_payload(payload).get("result")
            if isinstance(batch, list) and batch:
                drop_tapped_keyboards(batch)  # never read (bot/sending.py): not worth a write
                self.journal.fetched(batch)
        return code, payload


class PerMemberUpdateProcessor(BaseUpdateProcessor):
    """Serve up to `workers` members at once; each member's updates strictly in order."""

    def __init__(self, workers: int = 256, journal: UpdateJournal | None = None) -> None:
        super().__init__(max_concurrent_updates=_UNBOUNDED)
        self.workers = workers
        # Told when each update is handled; build_application sets it (bot/app.py).
        self.journal = journal
        # Told how long each update's handlers took; build_application sets it.
        self.metrics: Metrics | None = None
        # Members are named in the logs hashed with this (bot/logs.py); build_application sets it.
        self.member_salt: bytes | None = None
        self._slots: asyncio.Semaphore | None = None
        self._locks: dict[int, asyncio.Lock] = {}
        self._queued: dict[int, int] = {}

    async def initialize(self) -> None:
        """Create the worker slots inside the running loop."""
        self._slots = asyncio.Semaphore(self.workers)

    async def shutdown(self) -> None:
        """Nothing to release: locks go with their last update."""
        self._locks.clear()
        self._queued.clear()

    @property
    def busy_members(self) -> int:
        """How many members have updates being processed or queued."""
        return len(self._locks)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Wait for this member's earlier updates, then for a free slot, then process; mark the
        update done in the journal once handled, whatever the outcome."""
        journal = self.journal
        admission = "fresh" if journal is None else journal.admit(update)
        if admission == "copy":
            if inspect.iscoroutine(coroutine):
                coroutine.close()  # never started: nothing to undo
            return
        try:
            await self._process(update, coroutine, replay=admission == "replay")
        except Exception:
            # Escaped PTB's own error handling: it would fail the same way when replayed.
            if journal is not None:
                journal.done(update)
            raise
        # Cancelled (shutting down) is not handled: no done mark, replayed at the next start.
        if journal is not None:
            journal.done(update)

    async def _process(self, update: object, coroutine: Awaitable[Any], *, replay: bool) -> None:
        if self._slots is None:
            await self.initialize()
        assert self._slots is not None
        key = member_key(update)
        journal = self.journal if replay else None
        metrics = self.metrics
        # Everything logged while this update is handled names it (bot/logs.py).
        update_id = update.update_id if isinstance(update, Update) else None
        member = (
            None if key is None or self.member_salt is None else member_hash(key, self.member_salt)
        )

        async def handle() -> None:
            with handling(update_id, member):
                if journal is not None:
                    await journal.started(update)
                if metrics is None:
                    await coroutine
                    return
                # Timed from its turn: the wait behind the member's earlier updates is not its
                # own.
                started = time.perf_counter()
                await coroutine
                metrics.update_handled(update_kind(update), time.perf_counter() - started)

        # Replies are sent, not read back (bot/sending.py); this task serves one update.
        reading = stop_reading_back()
        try:
            if key is None:
                async with self._slots:
                    await handle()
                return
            lock = self._locks.setdefault(key, asyncio.Lock())
            self._queued[key] = self._queued.get(key, 0) + 1
            try:
                async with lock, self._slots:
                    await handle()
            finally:
                self._queued[key] -= 1
                if not self._queued[key]:
                    del self._queued[key]
                    del self._locks[key]
        finally:
            resume_reading_back(reading)
