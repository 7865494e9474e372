"""SIGKILL the real bot again and again while a cashier floods it with purchases and members with
/mall: every update the Bot API handed out is handled, no receipt is booked twice, the ledger
stays sound (the harness is bench/kills.py; `python -m bench kills` runs a heavier round)."""

from __future__ import annotations

from pathlib import Path

from bench.kills import run_kills

KILLS = 24


async def test_sigkill_of_the_bot_loses_no_update_and_books_no_receipt_twice(
    tmp_path: Path,
) -> None:
    report = await run_kills(tmp_path, kills=KILLS, purchases=60, malls=10, max_delay=0.25)
    assert report.kills == KILLS and report.purchases == 2 * KILLS * 60, report
    assert report.lost_receipts == [], report
    assert report.unanswered_malls == [], report
    assert report.not_journaled == 0 and report.unfinished == 0, report
    assert report.duplicated_effects == 0, report
    assert report.audit_ok, report.audit_text
    assert report.trouble == [], report.trouble
    # The kills landed while updates were in flight: some were handled again after a restart.
    assert report.replays > 0, report
    assert report.seconds < 60, report
