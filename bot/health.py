"""GET /healthz and GET /metrics, for the bot's one HTTP server (bot/web.py mounts `routes`).

/healthz answers 200 when every check passes and 503 naming the one that failed, so a
container's HEALTHCHECK, systemd or a load balancer can restart or route around the bot:
- store: the database answers a read and its single writer takes the write lock within
  `[health] store_timeout_seconds` (another process holding a write transaction, a stuck
  disk, a closed store all fail it);
- telegram: Telegram was heard from (a getUpdates answered, or a webhook call received)
  within `[health] contact_within_seconds`;
- outbox: no push the sender may send now (a service push, or any outside quiet hours) has
  waited longer than `[health] outbox_stuck_after_seconds`;
- leader: whether this process leads (bot/leader.py). A standby (PostgreSQL, several
  processes) checks the store only: Telegram and the outbox are the leader's to keep.
/metrics is the Prometheus text format of the bot's own registry (bot/metrics.py), with the
database figures read at that moment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from handlers.common import Services
from storage.health import StoreSample, store_sample, take_write_lock
from storage.leadership import Leader

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(services: Services) -> list[tuple[str, str, Handler]]:
    """The health and metrics routes, as (method, path, handler), for the one HTTP server."""

    async def healthz(request: web.Request) -> web.StreamResponse:
        healthy, checks = await check_health(services)
        body = {"status": "ok" if healthy else "unhealthy", "checks": checks}
        # Never cached: a proxy must not answer for a bot that has since fallen over.
        return web.json_response(
            body, status=200 if healthy else 503, headers={"Cache-Control": "no-store"}
        )

    async def metrics(request: web.Request) -> web.StreamResponse:
        try:
            sample: StoreSample | None = await _sample(services)
        except Exception as exc:  # the counters are still worth a scrape without the store
            log.warning("metrics: the store did not answer (%s)", type(exc).__name__)
            sample = None
        use = getattr(services.store, "use", None)  # PostgreSQL's connections (storage/pg_store.py)
        body = services.metrics.exposition(
            sample, services.clock(), services.store.path, None if use is None else use()
        )
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [("GET", "/healthz", healthz), ("GET", "/metrics", metrics)]


async def _sample(services: Services) -> StoreSample:
    """The database figures, read within the store timeout; raises TimeoutError, what the
    store raises."""
    local = services.clock().astimezone(services.config.program.tz).time()
    marketing = not services.config.push.is_quiet(local)
    return await asyncio.wait_for(
        services.store.read(lambda conn: store_sample(conn, marketing=marketing)),
        services.config.health.store_timeout_seconds,
    )


async def _leader(services: Services) -> Leader | None:
    """The leader as recorded, or None when the store does not say in time."""
    try:
        return await asyncio.wait_for(
            services.election.leadership.current(), services.config.health.store_timeout_seconds
        )
    except Exception:  # the store check reports the store's trouble
        return None


async def check_health(services: Services) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Whether the bot is healthy, and each check's outcome ({"ok": ..., "detail": ...})."""
    health = services.config.health
    checks: dict[str, dict[str, Any]] = {}
    sample: StoreSample | None = None
    try:
        # One deadline for both: the read proves the database answers, the write that the
        # one connection every points operation goes through is not locked out.
        sample, _ = await asyncio.wait_for(
            asyncio.gather(_sample(services), services.store.write(take_write_lock)),
            health.store_timeout_seconds,
        )
        checks["store"] = {"ok": True, "detail": "answers"}
    except TimeoutError:
        checks["store"] = {
            "ok": False,
            "detail": f"no answer within {health.store_timeout_seconds:g} s (locked or stuck)",
        }
    except Exception as exc:  # a closed store, a disk error: named, never its data
        checks["store"] = {"ok": False, "detail": f"failed: {type(exc).__name__}"}

    election = services.election
    if not election.leads:
        # A standby (PostgreSQL, several processes): Telegram and the outbox are the leader's;
        # this process is healthy when it serves the tills from the database.
        leader = None if sample is None else await _leader(services)
        behind = "" if leader is None else f" behind {leader.holder} (epoch {leader.epoch})"
        checks["leader"] = {"ok": not election.lost.is_set(), "detail": f"standby{behind}"}
        healthy = all(check["ok"] is not False for check in checks.values())
        return healthy, checks
    checks["leader"] = {"ok": True, "detail": f"leading (epoch {election.epoch})"}
    since = services.metrics.seconds_since_contact()
    checks["telegram"] = {
        "ok": since <= health.contact_within_seconds,
        "detail": f"last heard from {since:.0f} s ago",
    }

    if sample is None:
        checks["outbox"] = {"ok": None, "detail": "unknown: the store did not answer"}
    elif sample.oldest_sendable_at is None:
        checks["outbox"] = {"ok": True, "detail": f"{sample.pending} pending, none due"}
    else:
        waited = (services.clock() - sample.oldest_sendable_at).total_seconds()
        checks["outbox"] = {
            "ok": waited <= health.outbox_stuck_after_seconds,
            "detail": f"{sample.pending} pending, the oldest due for {max(waited, 0):.0f} s",
        }
    healthy = all(check["ok"] is not False for check in checks.values())
    return healthy, checks
