"""Progress of long operator commands: a bar on a terminal, a plain line at each interval and a
closing one elsewhere, always on standard error, never changing what a command writes to
standard output."""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from bot.clock import FixedClock
from bot.config import load_config
from bot.imports import HEADER, import_purchases
from bot.progress import ProgressOptions, report_progress
from storage.ledger import count_ledger_lines
from storage.members import Profile, register_member
from storage.store import backup_to, connect_sync, migrate
from tests.conftest import NOW, SAMPLE

# Purchases in the shared database: 2 postings each, so the ledger export passes its 5,000-row
# chunk (and reports progress in between).
PURCHASES = 3_000


class Ticks:
    """A monotonic ticker the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a console's stderr does."""

    def isatty(self) -> bool:
        return True


def stepping(seconds: float) -> ProgressOptions:
    """Plain lines on a fresh buffer, every `seconds`, with a ticker that moves 1 s per look."""
    ticks = iter(range(1_000_000))
    return ProgressOptions(stream=io.StringIO(), interval=seconds, ticker=lambda: next(ticks))


def lines(options: ProgressOptions) -> list[str]:
    """What a reporter wrote to its (buffer) stream, by line."""
    assert isinstance(options.stream, io.StringIO)
    return options.stream.getvalue().splitlines()


# --- the reporter -------------------------------------------------------------------------


def test_a_run_off_a_terminal_writes_a_line_per_interval_and_a_closing_one() -> None:
    ticks = Ticks()
    options = ProgressOptions(stream=io.StringIO(), interval=10, ticker=ticks)
    with report_progress("import-purchases", "rows", options=options) as progress:
        for second in range(1, 41):  # a batch of 25,000 rows a second for 40 seconds
            ticks.now += 1
            progress(second * 25_000, 1_000_000)
            assert len(lines(options)) == second // 10  # never more than one per interval
        ticks.now += 2  # the command's last words after its last row
    assert lines(options) == [
        "import-purchases: 250,000 of 1,000,000 rows (25%), 25,000 rows/s, about 30.0 s left",
        "import-purchases: 500,000 of 1,000,000 rows (50%), 25,000 rows/s, about 20.0 s left",
        "import-purchases: 750,000 of 1,000,000 rows (75%), 25,000 rows/s, about 10.0 s left",
        "import-purchases: 1,000,000 of 1,000,000 rows (100%), 25,000 rows/s",
        "import-purchases: done, 1,000,000 rows in 42.0 s, 23,810 rows/s",
    ]


def test_the_rate_is_the_pace_since_the_last_line_and_a_long_wait_is_spelled_out() -> None:
    ticks = Ticks()
    options = ProgressOptions(stream=io.StringIO(), interval=10, ticker=ticks)
    with report_progress("backup", "pages", options=options) as progress:
        ticks.now += 10
        progress(1_000, 100_000)  # 100 pages/s: 99,000 pages to go
        ticks.now += 20
        progress(1_100, 100_000)  # it slowed down: 5 pages/s
    assert lines(options)[:2] == [
        "backup: 1,000 of 100,000 pages (1%), 100 pages/s, about 16 min 30 s left",
        "backup: 1,100 of 100,000 pages (1%), 5 pages/s, about 5 h 29 min left",
    ]


def test_a_run_within_the_interval_adds_nothing() -> None:
    ticks = Ticks()
    options = ProgressOptions(stream=io.StringIO(), interval=10, ticker=ticks)
    with report_progress("export-ledger", "postings", options=options) as progress:
        for done in range(0, 50_000, 5_000):
            ticks.now += 0.9
            progress(done, 50_000)
    assert lines(options) == []


def test_without_a_total_the_lines_count_and_advance_adds_up() -> None:
    ticks = Ticks()
    options = ProgressOptions(stream=io.StringIO(), interval=5, ticker=ticks)
    with report_progress("report", "tables", options=options) as progress:
        for _ in range(3):
            ticks.now += 5
            progress.advance(2)
    assert lines(options) == [
        "report: 2 tables, 0 tables/s",
        "report: 4 tables, 0 tables/s",
        "report: 6 tables, 0 tables/s",
        "report: done, 6 tables in 15.0 s, 0 tables/s",
    ]


def test_a_run_that_fails_says_where_it_stopped_and_the_error_goes_on() -> None:
    ticks = Ticks()
    options = ProgressOptions(stream=io.StringIO(), interval=10, ticker=ticks)
    with (
        pytest.raises(sqlite3.OperationalError),
        report_progress("import-purchases", "rows", options=options) as progress,
    ):
        ticks.now += 12
        progress(40_000, 100_000)
        ticks.now += 3
        raise sqlite3.OperationalError("disk I/O error")
    assert (
        lines(options)[-1]
        == "import-purchases: stopped at 40,000 of 100,000 rows (40%) after 15.0 s"
    )


def test_on_a_terminal_a_bar_is_drawn_and_removed_and_no_plain_line_written() -> None:
    ticks = Ticks()
    terminal = Terminal()
    options = ProgressOptions(stream=terminal, interval=10, ticker=ticks)
    with report_progress(
        "import-purchases", "rows", description="importing till.csv", options=options
    ) as progress:
        for second in range(1, 41):
            ticks.now += 1
            progress(second * 25_000, 1_000_000)
    drawn = terminal.getvalue()
    assert "importing till.csv" in drawn
    assert "\x1b[" in drawn  # drawn in place, with terminal controls
    assert "import-purchases:" not in drawn
    assert "rows (" not in drawn  # no plain line's percentage
    assert "\x1b[?25h" in drawn  # the cursor given back...
    assert drawn.endswith("\x1b[2K")  # ...and the bar's lines erased


def test_no_bar_when_the_data_goes_to_the_same_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", Terminal())
    terminal = Terminal()
    options = ProgressOptions(stream=terminal, interval=0, ticker=Ticks())
    with report_progress("export-ledger", "postings", writes_stdout=True, options=options) as p:
        p(10, 10)
    assert terminal.getvalue() == ""


# --- the commands -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with two members and PURCHASES imported purchases (to copy, never change)."""
    folder = tmp_path_factory.mktemp("shop")
    db = folder / "points.sqlite3"
    conn = connect_sync(db)
    migrate(conn)
    codes = [
        register_member(conn, Profile(tid, name), None, NOW - timedelta(days=400))[0].member_code
        for tid, name in ((1, "alice"), (2, "bob"))
    ]
    when = (NOW - timedelta(days=1)).isoformat(timespec="seconds")
    rows = [f"S{n},{codes[n % 2]},{n % 90 + 10},general,{when}\n" for n in range(PURCHASES)]
    config = load_config(SAMPLE)
    import_purchases(
        conn, [",".join(HEADER) + "\n", *rows], config, actor="import:seed.csv", now=NOW
    )
    conn.close()
    return db


@pytest.fixture
def db(shop: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the shop's database of this test's own."""
    copy = tmp_path / "points.sqlite3"
    copy.write_bytes(shop.read_bytes())
    yield copy


@pytest.fixture
def config_file(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    path.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    return path


def invoke(args: list[str], progress: ProgressOptions | None = None) -> Result:
    """Run a command at NOW; with `progress`, shown as those options say."""
    obj: dict[str, Any] = {"clock": FixedClock(NOW)}
    if progress is not None:
        obj["progress"] = progress
    return CliRunner().invoke(main, args, obj=obj)


def test_export_ledger_writes_the_same_bytes_with_progress_shown_or_not(
    config_file: Path, db: Path
) -> None:
    args = ["export-ledger", "--config", str(config_file)]
    plain = stepping(0.5)
    quiet, shown, drawn = (
        invoke(args),
        invoke(args, plain),
        invoke(args, ProgressOptions(stream=Terminal(), ticker=Ticks())),
    )
    for result in (quiet, shown, drawn):
        assert result.exit_code == 0, result.output
    assert quiet.stderr == ""  # a quick export to a pipe says nothing more than before
    assert shown.stdout_bytes == quiet.stdout_bytes == drawn.stdout_bytes
    postings = quiet.stdout.count("\n") - 1
    conn = connect_sync(db)
    assert count_ledger_lines(conn) == postings > PURCHASES * 2  # tier rewards too
    conn.close()
    # A line per chunk of 5,000 written (the ticker moves 1 s per look), then the total.
    assert lines(plain) == [
        f"export-ledger: 5,000 of {postings:,} postings ({500_000 // postings}%), 5,000"
        f" postings/s, about {(postings - 5_000) / 5_000:.1f} s left",
        f"export-ledger: {postings:,} of {postings:,} postings (100%), {postings - 5_000:,}"
        " postings/s",
        f"export-ledger: done, {postings:,} postings in 3.0 s, {postings / 3:,.0f} postings/s",
    ]


def test_export_ledger_of_one_member_counts_that_member_and_still_names_the_file(
    config_file: Path, db: Path, tmp_path: Path
) -> None:
    conn = connect_sync(db)
    code = conn.execute("SELECT member_code FROM members ORDER BY id LIMIT 1").fetchone()[0]
    conn.close()
    out = tmp_path / "alice.csv"
    plain = stepping(0.5)
    args = ["export-ledger", "--config", str(config_file), "--member", code, "-o", str(out)]
    result = invoke(args, plain)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    postings = out.read_text(encoding="utf-8").count("\n") - 1
    assert 0 < postings < 5_000  # one line, when the export is done
    assert lines(plain)[0] == (
        f"export-ledger: {postings:,} of {postings:,} postings (100%), {postings:,} postings/s"
    )
    assert result.stderr.endswith(f"{out}: {postings:,} postings\n")


def _read_seconds(stdout: str) -> str:
    """The import's summary without its timing (which differs from run to run)."""
    return re.sub(r"\d+\.\d s", "… s", stdout)


def test_import_purchases_prints_the_same_summary_with_progress_shown_or_not(
    config_file: Path, tmp_path: Path
) -> None:
    conn = connect_sync(Path(load_config(config_file).storage.path))
    codes = [r[0] for r in conn.execute("SELECT member_code FROM members ORDER BY id")]
    conn.close()
    when = (NOW - timedelta(days=1)).isoformat(timespec="seconds")
    till = tmp_path / "till.csv"
    rows = [f"T{n},{codes[n % 2]},20,general,{when}" for n in range(30)]
    till.write_text("\n".join([",".join(HEADER), *rows]) + "\n", encoding="utf-8")
    args = ["import-purchases", str(till), "--config", str(config_file), "--lang", "en"]
    before = tmp_path / "before.sqlite3"
    before.write_bytes(Path(load_config(config_file).storage.path).read_bytes())

    plain = stepping(0.5)
    shown = invoke(args, plain)
    assert shown.exit_code == 0, shown.output
    assert lines(plain) == [
        "import-purchases: 30 of 30 rows (100%), 30 rows/s",
        "import-purchases: done, 30 rows in 2.0 s, 15 rows/s",
    ]
    # The same file into the same database as it was, without progress.
    Path(load_config(config_file).storage.path).write_bytes(before.read_bytes())
    quiet = invoke(args)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert "imported 30" in re.sub(" +", " ", quiet.stdout)
    assert _read_seconds(shown.stdout) == _read_seconds(quiet.stdout)


def test_backup_prints_the_same_with_progress_shown_or_not(
    config_file: Path, tmp_path: Path
) -> None:
    plain = stepping(0.5)
    shown = invoke(["backup", "--config", str(config_file), str(tmp_path / "a.sqlite3")], plain)
    quiet = invoke(["backup", "--config", str(config_file), str(tmp_path / "b.sqlite3")])
    for result in (shown, quiet):
        assert result.exit_code == 0, result.output
    assert quiet.stderr == ""
    pages = (tmp_path / "a.sqlite3").stat().st_size // 4096  # the sample's page size
    assert lines(plain)[-2].startswith(f"backup: {pages:,} of {pages:,} pages (100%), ")
    assert re.fullmatch(r"backup: done, [\d,]+ pages in [\d.]+ s, [\d,]+ pages/s", lines(plain)[-1])

    def same(stdout: str) -> str:
        return re.sub(r"[ab]\.sqlite3: [\d.]+ MiB in [\d.]+ s", "copy", stdout)

    assert same(shown.stdout) == same(quiet.stdout)


def test_backup_to_reports_the_pages_of_the_copy_as_it_grows(db: Path, tmp_path: Path) -> None:
    conn = connect_sync(db)
    seen: list[tuple[int, int | None]] = []
    destination = tmp_path / "copy.sqlite3"
    report = backup_to(conn, destination, progress=lambda done, total: seen.append((done, total)))
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert report.ok, report
    pages = destination.stat().st_size // page_size
    assert seen[-1] == (pages, pages)
    assert len(seen) > 3  # seen growing, not only at the end
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert all(total is not None and 0 <= d <= total for d, total in seen)
