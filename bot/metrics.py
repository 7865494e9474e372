"""The bot's Prometheus metrics, in a registry of its own (GET /metrics, bot/health.py).

Counted as things happen: updates handled by kind and how long their handlers took
(bot/updates.py), Bot API errors by method and code (bot/transport.py, which every Bot API
call passes through), and the last contact with Telegram. Read from the database when
scraped: the outbox backlog, the points issued and spent, the database's size on disk.

Hooks for the code that receives updates:
- `bot_api_contact()`: Telegram was heard from: a getUpdates answered (the polling
  transport calls it) or a webhook call arrived (the webhook server calls it). /healthz
  calls the bot unhealthy when this has not happened for `[health] contact_within_seconds`.
- `update_handled(kind, seconds)`: an update's handlers ran, taking `seconds`.
- `tap_answer(outcome)`: a tap's webhook call carried its answer, or it was posted.
- `bot_api_error(method, code)`: a Bot API call failed: its HTTP status, or "timeout" /
  "network" when no answer came.
- `leader_epoch`: set when this process becomes the leader (bot/app.py).

On PostgreSQL the store's connections are counted too (storage/pg_store.py `use`): the
statements each kind sent, every one a round trip, and the seconds it spent in calls; a
writer busy nearly all the time is what limits the points operations a process books.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from telegram import Update

from storage.health import StoreSample

if TYPE_CHECKING:
    from storage.pg_store import RoleUse

# Handler time in seconds: most updates take a few milliseconds; a slow one is worth seeing.
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# The update fields a bot can receive, as python-telegram-bot knows them; "other" for any
# added later (it keeps those in api_kwargs until it knows them).
_KINDS: Final = tuple(str(kind) for kind in Update.ALL_TYPES)


def update_kind(update: object) -> str:
    """What an update is, for the metrics: "command" for a message that is a bot command, else
    the Bot API's name of the field it carries ("message", "callback_query", ...)."""
    if not isinstance(update, Update):
        return "other"
    message = update.message
    if message is not None:
        text = message.text
        return "command" if text is not None and text.startswith("/") else "message"
    for kind in _KINDS:
        if getattr(update, kind, None) is not None:
            return kind
    return "other"


class Metrics:
    """The bot's counters and histograms, and the database figures read when scraped."""

    def __init__(self) -> None:
        # Never the global registry: tests and benchmarks build many applications in one process.
        self.registry = CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "pointsbot_updates_handled",
            "Updates whose handlers ran, by kind (command, message, callback_query, ...).",
            ["kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pointsbot_update_handling_seconds",
            "Time the handlers took for one update (waiting for the member's earlier updates"
            " excluded), by kind.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.api_errors = Counter(
            "pointsbot_bot_api_errors",
            "Bot API calls that failed, by method and HTTP status (or timeout, network).",
            ["method", "code"],
            registry=self.registry,
        )
        self.tap_answers = Counter(
            "pointsbot_webhook_tap_answers",
            "Taps delivered by webhook, by how their answer went: carried in the webhook call's"
            " response (in_response), posted because it came before the update was journaled"
            " (posted_first) or after [telegram] answer_in_response_ms (waited_out).",
            ["outcome"],
            registry=self.registry,
        )
        self.leader_epoch = Gauge(
            "pointsbot_leader_epoch",
            "This process's leader epoch while it leads (fetching updates, running the jobs,"
            " sending pushes); 0 while it waits in line (bot/leader.py).",
            registry=self.registry,
        )
        self._store = _StoreCollector()
        self.registry.register(self._store)
        # Monotonic seconds: how long ago Telegram was last heard from, whatever the clock.
        self.started = time.monotonic()
        self.last_contact: float | None = None

    def bot_api_contact(self) -> None:
        """Telegram was heard from: a getUpdates answered, or a webhook call arrived."""
        self.last_contact = time.monotonic()

    def seconds_since_contact(self) -> float:
        """Seconds since Telegram was last heard from (since start, before the first time)."""
        since = self.started if self.last_contact is None else self.last_contact
        return time.monotonic() - since

    def update_handled(self, kind: str, seconds: float) -> None:
        """An update of this kind was handled in `seconds`."""
        self.updates.labels(kind).inc()
        self.latency.labels(kind).observe(seconds)

    def tap_answer(self, outcome: str) -> None:
        """How a webhook-delivered tap was answered: "in_response", "posted_first" or
        "waited_out"."""
        self.tap_answers.labels(outcome).inc()

    def bot_api_error(self, method: str, code: int | str) -> None:
        """A Bot API call failed with this HTTP status (or "timeout", "network")."""
        self.api_errors.labels(method, str(code)).inc()

    def exposition(
        self,
        sample: StoreSample | None,
        now: datetime,
        database: Path | None,
        connections: Mapping[str, RoleUse] | None = None,
    ) -> bytes:
        """The metrics in the Prometheus text format, with this sample of the database (None:
        the store did not answer, its figures are left out) and, on PostgreSQL, what its
        connections did."""
        self._store.sample, self._store.now, self._store.database = sample, now, database
        self._store.connections = connections
        try:
            return generate_latest(self.registry)
        finally:
            self._store.sample = self._store.now = self._store.database = None
            self._store.connections = None


class _StoreCollector(Collector):
    """The database figures, from the sample taken for this scrape."""

    def __init__(self) -> None:
        self.sample: StoreSample | None = None
        self.now: datetime | None = None
        self.database: Path | None = None
        self.connections: Mapping[str, RoleUse] | None = None

    def describe(self) -> list[Metric]:
        """Nothing to describe ahead: the figures exist only while scraped."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The outbox backlog, the ledger's system accounts, the database's size and (on
        PostgreSQL) its connections' work."""
        yield from self._connections()
        sample, now = self.sample, self.now
        size = None if sample is None else sample.database_bytes
        if size is None and self.database is not None:
            size = database_bytes(self.database)
        if size is not None:
            yield GaugeMetricFamily(
                "pointsbot_database_bytes",
                "Size of the database on disk (SQLite: its write-ahead log included).",
                value=size,
            )
        if sample is None or now is None:
            return
        yield GaugeMetricFamily(
            "pointsbot_outbox_pending", "Pushes waiting in the outbox.", value=sample.pending
        )
        age = 0.0
        if sample.oldest_pending_at is not None:
            age = max((now - sample.oldest_pending_at).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            "pointsbot_outbox_oldest_pending_seconds",
            "Age of the oldest push waiting in the outbox (0 when none waits).",
            value=age,
        )
        issued = GaugeMetricFamily(
            "pointsbot_points_issued",
            "Points issued by each source account, net of reversals (minus its balance).",
            labels=["source"],
        )
        for name, balance in sample.sources.items():
            issued.add_metric([name], -balance)
        yield issued
        spent = GaugeMetricFamily(
            "pointsbot_points_spent",
            "Points received by each sink account, net of refunds (redeemed, expired, game_cost).",
            labels=["sink"],
        )
        for name, balance in sample.sinks.items():
            spent.add_metric([name], balance)
        yield spent

    def _connections(self) -> Iterator[Metric]:
        """What each kind of PostgreSQL connection did (nothing on SQLite)."""
        if not self.connections:
            return
        count = GaugeMetricFamily(
            "pointsbot_database_connections",
            "PostgreSQL connections this process holds, by kind: writer (SERIALIZABLE"
            " writes), alone (writes that stand alone, READ COMMITTED), reader.",
            labels=["kind"],
        )
        trips = CounterMetricFamily(
            "pointsbot_database_round_trips",
            "Statements sent to PostgreSQL, each a round trip, by kind of connection.",
            labels=["kind"],
        )
        busy = CounterMetricFamily(
            "pointsbot_database_busy_seconds",
            "Seconds the connections of a kind spent running calls (per connection: a writer"
            " near 1 s a second is what limits this process's points operations).",
            labels=["kind"],
        )
        conflicts = CounterMetricFamily(
            "pointsbot_database_conflicts",
            "Write transactions PostgreSQL refused as conflicting with another (SQLSTATE 40001,"
            " 40P01) and the store ran again, by kind of connection.",
            labels=["kind"],
        )
        for kind, use in self.connections.items():
            count.add_metric([kind], use.connections)
            trips.add_metric([kind], use.round_trips)
            busy.add_metric([kind], use.busy_seconds)
            conflicts.add_metric([kind], use.conflicts)
        yield from (count, trips, busy, conflicts)


def database_bytes(path: Path) -> int:
    """The size of the database file and its write-ahead log (0 for what is missing)."""
    total = 0
    for file in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):  # no -wal between checkpoints
            total += file.stat().st_size
    return total
