"""Two bot processes on one PostgreSQL: the leader killed with SIGKILL five times (once
mid-transaction) and PostgreSQL restarted once while 200 members send 2,000 updates and five
stores' tills post purchases; nothing is lost, doubled or reordered, one process polls at a
time, each job tick runs once, and each failover is quick (the harness is bench/failover.py;
`python -m bench failover` runs the issue's full size). The PostgreSQL here is a throwaway
server of the test's own (`.ci/postgres start`): the shared one is never restarted."""

from __future__ import annotations

from pathlib import Path

from bench.failover import FAILOVER_BOUND, QUICK, run_failover
from tests.postgres import require_server


async def test_the_leader_killed_and_postgres_restarted_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    require_server()  # PostgreSQL is installed (the server here is the test's own)
    report = await run_failover(tmp_path, QUICK)
    assert report.failures() == [], str(report)
    assert report.nonces == QUICK.updates and report.till_purchases == 5 * QUICK.purchases
    assert len(report.kills) == 5 and report.restarts == 1, str(report)
    assert max(report.kills) <= FAILOVER_BOUND, report.kills
    # A kill caught a transaction that had written and not committed: it was rolled back.
    assert "aborted" in report.torn, report.torn
    # Each kill and the restart made a new leader, and each leader polled in turn.
    assert report.epochs == report.pollers == 7, str(report)
    # The tills' retries and the cross-process duplicates were answered, once booked.
    assert report.till_sent_again > 0 and not report.till_created_twice, str(report)
    # The round is in CI's time budget (2 shared cores).
    assert report.seconds < 90, str(report)
