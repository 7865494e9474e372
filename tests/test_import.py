"""Purchase import from CSV: the shared rule, idempotent re-import, bad rows named by line."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.config import Config, load_config
from bot.imports import (
    HEADER,
    ImportFileError,
    ImportSummary,
    ImportTexts,
    RejectedRow,
    import_purchases,
    scan_file,
)
from storage import ledger
from storage.audit import audit
from storage.members import Profile, luhn_digit, member_ids_by_code, register_member
from storage.store import connect_sync, migrate
from tests.amount_cases import BAD_PARAMS, GOOD_PARAMS, refusal
from tests.conftest import PinnedCliRunner

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config.example.toml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# After the sample's December 2026 campaign, so its purchases are neither future nor expired.
NOW = datetime(2027, 1, 15, 12, 0, tzinfo=SHANGHAI)
HEAD = ",".join(HEADER)
# Registered nowhere, but with a right check digit.
STRANGER = "123456789" + luhn_digit("123456789")


@pytest.fixture
def config() -> Config:
    # Purchase points that expire (the sample's never do), so the import's expiry arithmetic
    # shows; tests/test_rules.py and test_expiry_sources.py cover the lifetime ones.
    sample = load_config(SAMPLE)
    return sample.model_copy(update={"expiry": sample.expiry.model_copy(update={"sources": {}})})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "points.sqlite3"


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    connection = connect_sync(db)
    migrate(connection)
    yield connection
    connection.close()


@pytest.fixture
def codes(conn: sqlite3.Connection) -> dict[str, str]:
    """Member codes of alice and bob."""
    joined = NOW - timedelta(days=400)
    return {
        name: register_member(conn, Profile(tid, name), None, joined)[0].member_code
        for tid, name in ((1, "alice"), (2, "bob"))
    }


def member_id(conn: sqlite3.Connection, code: str) -> int:
    return member_ids_by_code(conn, [code])[code]


def run(
    conn: sqlite3.Connection, config: Config, *rows: str, batch_size: int = 10_000
) -> ImportSummary:
    return import_purchases(
        conn,
        [HEAD + "\n", *(row + "\n" for row in rows)],
        config,
        actor="import:test.csv",
        now=NOW,
        batch_size=batch_size,
    )


def available(conn: sqlite3.Connection, code: str) -> int:
    return ledger.balance(conn, member_id(conn, code), NOW).available


def operation_count(conn: sqlite3.Connection) -> int:
    return audit(conn, integrity="none").summary["operations"]


EN = ImportTexts("en")


def said(excinfo: pytest.ExceptionInfo[ImportFileError]) -> str:
    """Why the file was refused, in English."""
    return EN.error(excinfo.value)


def flat(output: str) -> str:
    """The output with runs of spaces as one (the summary aligns its columns)."""
    return re.sub(" +", " ", output)


def yesterday() -> str:
    """A purchase time the command accepts (it imports at NOW)."""
    return (NOW - timedelta(days=1)).isoformat(timespec="seconds")


def csv_row(*fields: str) -> str:
    """One CSV line (without its line break), quoted where a field needs it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def write_csv(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([HEAD, *rows]) + "\n", encoding="utf-8")
    return path


# --- good rows --------------------------------------------------------------------------------


def test_good_rows_are_imported_with_the_rule_s_points(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    alice, bob = codes["alice"], codes["bob"]
    summary = run(
        conn,
        config,
        f"R1,{alice},100.00,eco,2026-03-01T10:00:00+08:00",
        f"R2,{bob},12.50,general,2026-03-02T10:00:00+08:00",
        f"R3,{alice},9.99,,2026-03-03T10:00:00+08:00",  # no category: the default, general
        f"R4,{bob},10,refill,2026-03-04T10:00:00+08:00",
    )
    assert summary.ok
    assert (summary.rows, summary.imported, summary.replayed) == (4, 4, 0)
    assert summary.points == 200 + 12 + 9 + 15
    assert available(conn, alice) == 209
    assert available(conn, bob) == 27
    assert audit(conn).ok


def test_an_imported_operation_keeps_receipt_actor_expiry_and_facts(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    run(conn, config, f"R1,{codes['alice']},100.00,eco,2026-03-01T10:00:00+08:00")
    (line,) = [p for p in ledger.iter_ledger(conn) if p.member_id is not None]
    record = ledger.operation(conn, line.operation_id)
    assert record.kind == "purchase"
    assert record.key == "purchase:R1"
    assert record.reference == "R1"
    assert record.actor == "import:test.csv"
    assert record.created_at == NOW  # when it was recorded; the purchase time is in meta
    assert record.meta == {
        "amount": "100.00",
        "category": "eco",
        "purchased_on": "2026-03-01",
    }
    (lot,) = ledger.lots(conn, record.member_id)
    # Rolling 12 months through the local day of the purchase.
    assert lot.expires_at == datetime(2027, 3, 2, tzinfo=SHANGHAI)


def test_a_time_without_offset_is_read_in_the_programme_timezone(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    alice = codes["alice"]
    run(
        conn,
        config,
        # 23:30 in Shanghai is still 1 March there...
        f"R1,{alice},10,general,2026-03-01T23:30:00",
        # ...while 23:30 UTC is 07:30 on 2 March in Shanghai.
        f"R2,{alice},10,general,2026-03-01T23:30:00+00:00",
    )
    first, second = ledger.lots(conn, member_id(conn, alice))
    assert first.expires_at == datetime(2027, 3, 2, tzinfo=SHANGHAI)
    assert second.expires_at == datetime(2027, 3, 3, tzinfo=SHANGHAI)
    meta = ledger.operation(conn, first.operation_id).meta
    assert meta is not None and meta["purchased_on"] == "2026-03-01"


@pytest.mark.parametrize(
    ("category", "day", "points"),
    [
        ("eco", "2026-11-30", 200),  # ×2 for eco
        ("eco", "2026-12-01", 400),  # ×2 again in the green-winter campaign
        ("refill", "2026-12-31", 300),  # 1.5 × 2
        ("general", "2026-12-15", 100),  # the campaign leaves general goods alone
        ("eco", "2027-01-01", 200),  # over
    ],
)
def test_points_follow_the_rule_and_the_campaign(
    conn: sqlite3.Connection,
    config: Config,
    codes: dict[str, str],
    category: str,
    day: str,
    points: int,
) -> None:
    summary = run(conn, config, f"R1,{codes['alice']},100,{category},{day}T12:00:00")
    assert summary.points == points
    assert available(conn, codes["alice"]) == points


def test_columns_may_come_in_any_order_and_blank_lines_are_ignored(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    lines = [
        "purchased_at, Amount ,member_code,receipt_id,category\n",
        "\n",
        f"2026-03-01T10:00:00,5.00,{codes['bob']},R1,eco\n",
        "\n",
    ]
    summary = import_purchases(conn, lines, config, actor="t", now=NOW)
    assert (summary.rows, summary.imported, summary.points) == (1, 1, 10)


# --- re-import ------------------------------------------------------------------------------


def test_a_receipt_imported_long_ago_is_already_imported_not_expired(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    row = f"OLD-1,{codes['alice']},50.00,general,2025-02-01T10:00:00"
    then = datetime(2025, 2, 2, 12, 0, tzinfo=SHANGHAI)
    header = "receipt_id,member_code,amount,category,purchased_at\n"
    first = import_purchases(conn, [header, row + "\n"], config, actor="t", now=then)
    assert first.imported == 1
    # A year and more later the nightly file is replayed: its points have expired meanwhile.
    again = run(conn, config, row, "NEW-1," + row.split(",", 1)[1])
    assert (again.imported, again.replayed) == (0, 1)
    assert [r.reason for r in again.rejected] == ["expired"]  # the new receipt, truly too old
    assert operation_count(conn) == 1


def test_re_import_writes_nothing_and_reports_every_row_as_already_imported(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    rows = [
        f"R{n},{codes['alice' if n % 2 else 'bob']},{n}.00,eco,2026-03-01T10:00:00"
        for n in range(1, 8)
    ]
    first = run(conn, config, *rows, batch_size=3)
    balances = (available(conn, codes["alice"]), available(conn, codes["bob"]))
    operations = operation_count(conn)
    again = run(conn, config, *rows, batch_size=3)
    assert (first.imported, first.replayed) == (7, 0)
    assert (again.rows, again.imported, again.replayed, again.points) == (7, 0, 7, 0)
    assert again.ok
    assert (available(conn, codes["alice"]), available(conn, codes["bob"])) == balances
    assert operation_count(conn) == operations


def test_the_same_receipt_with_another_amount_is_a_conflict(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    alice = codes["alice"]
    run(conn, config, f"R1,{alice},100.00,eco,2026-03-01T10:00:00")
    summary = run(
        conn,
        config,
        f"R2,{alice},1.00,eco,2026-03-01T10:00:00",
        f"R1,{alice},120.00,eco,2026-03-01T10:00:00",
    )
    assert (summary.imported, summary.replayed) == (1, 0)
    assert summary.skipped == {"conflict": 1}
    (row,) = summary.rejected
    assert (row.line, row.reason) == (3, "conflict")
    assert "R1" in row.message
    assert available(conn, alice) == 202


# --- bad rows -------------------------------------------------------------------------------

BAD_ROWS: list[tuple[str, str, str]] = [
    ("too few columns", "R9,{alice},10,eco", "columns"),
    ("too many columns", "R9,{alice},10,eco,2026-03-01,x", "columns"),
    ("empty receipt id", " ,{alice},10,eco,2026-03-01", "receipt_missing"),
    ("repeated receipt id", "R1,{alice},10,eco,2026-03-01", "receipt_duplicate"),
    ("check digit wrong", "R9,{alice_typo},10,eco,2026-03-01", "member_code"),
    ("code not digits", "R9,alice,10,eco,2026-03-01", "member_code"),
    ("nobody's code", "R9," + STRANGER + ",10,eco,2026-03-01", "member_unknown"),
    ("amount not a number", "R9,{alice},ten,eco,2026-03-01", "amount"),
    ("amount zero", "R9,{alice},0,eco,2026-03-01", "amount"),
    ("amount three decimals", "R9,{alice},1.005,eco,2026-03-01", "amount"),
    ("amount over the cap", "R9,{alice},50000.01,eco,2026-03-01", "amount"),
    ("time not ISO", "R9,{alice},10,eco,01/03/2026", "date"),
    ("time impossible", "R9,{alice},10,eco,2026-02-30T10:00:00", "date"),
    ("unknown category", "R9,{alice},10,toys,2026-03-01", "category"),
    ("in the future", "R9,{alice},10,eco,2027-01-15T13:00:00", "future"),
    ("already expired", "R9,{alice},10,eco,2025-12-31T10:00:00", "expired"),
    ("earns nothing", "R9,{alice},0.99,general,2026-03-01", "earns_nothing"),
    ("unreadable CSV", 'R9,{alice},"10"x,eco,2026-03-01', "csv"),
]


@pytest.mark.parametrize(("row", "reason"), [pytest.param(r, k, id=n) for n, r, k in BAD_ROWS])
def test_a_bad_row_is_skipped_with_its_line_and_reason_while_good_rows_go_in(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], row: str, reason: str
) -> None:
    alice = codes["alice"]
    typo = alice[:-1] + str((int(alice[-1]) + 1) % 10)
    summary = run(
        conn,
        config,
        f"R1,{alice},100,general,2026-03-01T10:00:00",
        row.format(alice=alice, alice_typo=typo),
        f"R2,{codes['bob']},50,general,2026-03-01T10:00:00",
    )
    assert (summary.rows, summary.imported, summary.points) == (3, 2, 150)
    assert summary.skipped == {reason: 1}
    assert not summary.ok
    (rejected,) = summary.rejected
    assert (rejected.line, rejected.reason) == (3, reason)
    assert rejected.message
    assert audit(conn).ok


def test_a_rule_error_is_explained_in_the_programme_language(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    summary = run(conn, config, f"R1,{codes['alice']},10,toys,2026-03-01")
    assert "toys" in summary.rejected[0].message
    assert "日常商品（general）、绿色环保商品（eco）" in summary.rejected[0].message
    english = config.model_copy(
        update={"program": config.program.model_copy(update={"default_language": "en"})}
    )
    summary = run(conn, english, f"R1,{codes['alice']},10,toys,2026-03-01")
    assert summary.rejected[0].message.startswith("There is no product category")


@pytest.mark.parametrize(("typed", "read"), GOOD_PARAMS)
def test_an_amount_in_the_file_is_read_as_the_till_reads_it(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], typed: str, read: str
) -> None:
    summary = run(conn, config, csv_row("R1", codes["alice"], typed, "general", "2026-03-01"))
    assert (summary.imported, summary.skipped_total) == (1, 0)
    meta = ledger.operation(conn, 1).meta
    assert meta is not None and meta["amount"] == read


@pytest.mark.parametrize(("typed", "key"), BAD_PARAMS)
def test_a_bad_amount_in_the_file_is_a_skipped_row_named_as_at_the_till(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], typed: str, key: str
) -> None:
    alice = codes["alice"]
    summary = run(
        conn,
        config,
        csv_row("R1", alice, "10", "general", "2026-03-01"),
        csv_row("R2", alice, typed, "general", "2026-03-01"),
        csv_row("R3", alice, "20", "general", "2026-03-01"),
        batch_size=1,  # the bad row's batch after a committed one, and one after it
    )
    assert (summary.rows, summary.imported, summary.points) == (3, 2, 30)
    (rejected,) = summary.rejected
    assert (rejected.line, rejected.reason) == (3, "amount")
    assert rejected.message == refusal(typed, key)
    assert audit(conn).ok


def test_line_numbers_count_lines_of_the_file_across_batches(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], tmp_path: Path
) -> None:
    alice = codes["alice"]
    rows = [f"R{n},{alice},10,general,2026-03-01" for n in range(1, 10)]
    rows[4] = f"R5,{STRANGER},10,general,2026-03-01"  # line 6
    rows[7] = 'R8,"unreadable"x,10,general,2026-03-01'  # line 9
    rows[8] = f"R9,{alice},x,general,2026-03-01"  # line 10
    path = write_csv(tmp_path / "purchases.csv", *rows)
    seen: list[RejectedRow] = []
    summary = import_purchases(
        conn,
        path,
        config,
        actor="t",
        now=NOW,
        batch_size=2,
        on_reject=seen.append,
    )
    assert [(r.line, r.reason) for r in summary.rejected] == [
        (6, "member_unknown"),
        (9, "csv"),
        (10, "amount"),
    ]
    assert seen == summary.rejected
    assert summary.imported == 6


def test_only_the_first_rejections_are_kept_but_every_one_is_counted_and_reported(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    rows = [f"R{n},{STRANGER},10,general,2026-03-01" for n in range(30)]
    seen: list[RejectedRow] = []
    summary = import_purchases(
        conn,
        [HEAD, *rows],
        config,
        actor="t",
        now=NOW,
        keep_rejected=5,
        on_reject=seen.append,
    )
    assert summary.skipped_total == 30
    assert [r.line for r in summary.rejected] == [2, 3, 4, 5, 6]
    assert len(seen) == 30


# --- the file as a whole --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("receipt,member,amount,category,time\n", id="other names"),
        pytest.param("receipt_id,member_code,amount,category\n", id="a column missing"),
        pytest.param(HEAD + ",note\n", id="a column too many"),
        pytest.param("R1,{alice},10,eco,2026-03-01\n", id="no header"),
        pytest.param('"receipt_id"x,member_code\n', id="not CSV"),
    ],
)
def test_a_garbled_header_stops_the_import_before_anything_is_written(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], tmp_path: Path, text: str
) -> None:
    path = tmp_path / "purchases.csv"
    path.write_text(
        text.format(alice=codes["alice"]) + f"R2,{codes['bob']},10,eco,2026-03-01\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError) as refused:
        import_purchases(conn, path, config, actor="t", now=NOW)
    assert re.search("line 1|empty", said(refused))
    assert operation_count(conn) == 0


def test_a_file_excel_saved_with_a_bom_is_read(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "purchases.csv"
    path.write_text(
        f"{HEAD}\r\nR1,{codes['alice']},10,eco,2026-03-01 10:00\r\n", encoding="utf-8-sig"
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    summary = import_purchases(conn, path, config, actor="t", now=NOW)
    assert (summary.imported, summary.points) == (1, 20)


def test_a_file_that_is_not_utf8_is_refused_whole(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "purchases.csv"
    lines = [
        HEAD,
        f"R1,{codes['alice']},10,eco,2026-03-01",
        f"R2,{codes['bob']},10,绿色,2026-03-01",
    ]
    path.write_bytes("\n".join(lines).encode("gbk"))
    with pytest.raises(ImportFileError) as refused:
        import_purchases(conn, path, config, actor="t", now=NOW)
    assert said(refused) == "line 3 is not UTF-8 text (save the file as CSV UTF-8)"
    assert operation_count(conn) == 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13])
def test_the_utf8_check_names_the_line_whatever_the_read_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr("bot.imports._CHUNK", chunk)
    good = tmp_path / "good.csv"
    good.write_text("绿色,环保\n补充装\n", encoding="utf-8")  # 3-byte characters cut anywhere
    assert scan_file(good) == 2
    bad = tmp_path / "bad.csv"
    bad.write_bytes("绿色\n环保\n".encode() + "补充装\n".encode("gbk") + b"x\n")
    with pytest.raises(ImportFileError) as refused:
        scan_file(bad)
    assert said(refused).startswith("line 3 is not UTF-8")


def broken_quote(codes: dict[str, str]) -> list[str]:
    """The issue's file: 16 data lines, and on line 7 a quote that never closes."""
    when = yesterday()
    rows = [csv_row(f"R{n}", codes["alice"], "10", "general", when) for n in range(1, 17)]
    rows[5] = f'R6,{codes["alice"]},"10,general,{when}'
    return rows


def test_an_unclosed_quote_stops_the_file_before_anything_is_written(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "purchases.csv", *broken_quote(codes))
    with pytest.raises(ImportFileError) as refused:
        import_purchases(conn, path, config, actor="t", now=NOW)
    assert said(refused).startswith("line 7 opens a quoted field")
    assert operation_count(conn) == 0


def test_lines_handed_over_one_by_one_are_read_again_after_an_unclosed_quote(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    rows = broken_quote(codes)
    rows[11] = f'R12,"{codes["alice"]}\n",10,general,{yesterday()}'  # lines 13 and 14
    summary = run(conn, config, *"".join(row + "\n" for row in rows).splitlines())
    # Every line of the file is a row of the summary: none swallowed by another.
    assert summary.rows == 17
    assert [(r.line, r.reason) for r in summary.rejected] == [
        (7, "csv"),
        (13, "csv"),
        (14, "csv"),
    ]
    # In the programme's language, like every message of the import.
    assert summary.rejected[0].message == '这一行的引号（"）没有在本行内闭合'
    assert summary.imported == 14
    assert audit(conn).ok


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13, 1 << 20])
def test_the_quote_check_names_the_line_whatever_the_read_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr("bot.imports._CHUNK", chunk)
    good = tmp_path / "good.csv"
    lines = [
        '"receipt_id",member_code,amount,category,purchased_at',  # after the BOM
        'R1,1234567897,"1,000",eco,"2026-03-01"',
        'R2,1234567897,"说 ""好"", 元",eco,2026-03-01',
        'R3,12"34,10,eco,2026-03-01',  # a stray quote inside a field: read as a character
        'R4,1234567897,"10"x,eco,2026-03-01',  # unreadable, but on its own line
        'R5,1234567897,10,eco,"2026-03-01',  # the last line, unfinished: only itself
    ]
    good.write_text("\r\n".join(lines), encoding="utf-8-sig")
    assert scan_file(good) == 6
    bad = tmp_path / "bad.csv"
    broken = [*lines[:3], 'R9,"绿色,10,eco,2026-03-01', *lines[1:3]]
    bad.write_text("\n".join(broken) + "\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as refused:
        scan_file(bad)
    assert said(refused).startswith("line 4 opens a quoted field")


def test_a_big_file_goes_in_batch_by_batch_with_progress(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "purchases.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        for n in range(2_500):
            out.writerow([f"R{n}", codes["alice"], "1.00", "eco", "2026-03-01T10:00:00"])
    reports: list[tuple[int, int | None]] = []
    summary = import_purchases(
        conn,
        path,
        config,
        actor="t",
        now=NOW,
        batch_size=1_000,
        progress=lambda done, total: reports.append((done, total)),
    )
    assert (summary.imported, summary.points) == (2_500, 5_000)
    assert reports == [(1_000, 2_500), (2_000, 2_500), (2_500, 2_500)]
    assert audit(conn).ok


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    path.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    return path


def test_the_command_imports_and_exits_0_when_every_row_went_in(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path, tmp_path: Path
) -> None:
    when = yesterday()
    path = write_csv(
        tmp_path / "till.csv",
        f"R1,{codes['alice']},100,general,{when}",
        f"R2,{codes['bob']},10,general,{when}",
    )
    args = ["import-purchases", str(path), "--config", str(config_file), "--lang", "en"]
    first = PinnedCliRunner(NOW).invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "2 rows read" in first.output
    assert "imported 2 (110 points)" in flat(first.output)
    again = PinnedCliRunner(NOW).invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "already imported 2" in flat(again.output)
    record = ledger.operation(conn, 1)
    assert record.actor == "import:till.csv"


def test_the_command_lists_skipped_rows_and_exits_1(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path, tmp_path: Path
) -> None:
    when = yesterday()
    rows = [f"R{n},{codes['alice']},10,general,{when}" for n in range(60)]
    rows[3] = f"R3,{codes['alice']},abc,general,{when}"
    rows += [f"X{n},{STRANGER},10,general,{when}" for n in range(60)]
    path = write_csv(tmp_path / "till.csv", *rows)
    errors = tmp_path / "errors.csv"
    result = PinnedCliRunner(NOW).invoke(
        main,
        [
            "import-purchases",
            str(path),
            "--config",
            str(config_file),
            "--actor",
            "ops:mei",
            "--errors",
            str(errors),
            "--lang",
            "en",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "imported 59 (590 points)" in flat(result.output)
    assert "skipped 61" in flat(result.output)
    assert "unknown member 60" in flat(result.output)
    assert "line 5: bad amount:" in result.output
    assert f"line 63: unknown member: no member has the code {STRANGER}" in result.output
    assert "line 111:" not in result.output  # 50 listed...
    assert f"… and 11 more (all in {errors})" in result.output  # ...and the rest counted
    with errors.open(encoding="utf-8-sig", newline="") as fh:
        written = list(csv.reader(fh))
    assert written[0] == ["line", "reason", "message", "fields"]
    assert len(written) == 62
    assert written[1][:2] == ["5", "amount"]
    assert written[1][3:] == ["R3", codes["alice"], "abc", "general", when]
    assert ledger.operation(conn, 1).actor == "ops:mei"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"id,code\nR1,1\n", "must be the header", id="garbled header"),
        pytest.param(HEAD.encode() + "\nR1,1,\u00e9".encode("latin-1"), "not UTF-8", id="latin-1"),
    ],
)
def test_the_command_exits_2_when_the_file_cannot_be_read(
    conn: sqlite3.Connection, config_file: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "till.csv"
    path.write_bytes(content)
    result = PinnedCliRunner(NOW).invoke(
        main, ["import-purchases", str(path), "--config", str(config_file), "--lang", "en"]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert operation_count(conn) == 0


def test_the_command_exits_2_without_a_database(config_file: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "till.csv", f"R1,{STRANGER},10,general,{yesterday()}")
    result = PinnedCliRunner(NOW).invoke(
        main, ["import-purchases", str(path), "--config", str(config_file)]
    )
    assert result.exit_code == 2
    assert "init-db" in result.output


def test_json_meta_round_trips(
    conn: sqlite3.Connection, config: Config, codes: dict[str, str]
) -> None:
    run(conn, config, f"R1,{codes['alice']},100,eco,2026-12-10T09:00:00")
    # The purchase's own points, then the campaign's: two operations, booked together.
    line, bonus = [p for p in ledger.iter_ledger(conn) if p.member_id is not None]
    assert bonus.meta is not None
    assert json.loads(bonus.meta) == {
        "purchase": "purchase:R1",
        "campaign": "green_winter",
        "receipt": "R1",
    }
    assert line.meta is not None
    assert json.loads(line.meta) == {
        "amount": "100.00",
        "campaign": "green_winter",
        "campaign_multiplier": "2",
        "category": "eco",
        "purchased_on": "2026-12-10",
    }


def test_the_command_skips_an_amount_it_cannot_read_and_goes_on(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path, tmp_path: Path
) -> None:
    when = yesterday()
    alice = codes["alice"]
    rows = [csv_row(f"R{n}", alice, "10", "general", when) for n in range(1, 6)]
    rows[1] = csv_row("R2", alice, "1e400", "general", when)
    rows[3] = csv_row("R4", alice, "9" * 200, "general", when)
    path = write_csv(tmp_path / "till.csv", *rows)
    result = PinnedCliRunner(NOW).invoke(
        main, ["import-purchases", str(path), "--config", str(config_file)]
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    # In the programme's language (zh-CN), every line of it.
    assert "读取 5 行" in result.output
    assert "本次导入 3 笔（30 积分）" in flat(result.output)
    assert "第 3 行：金额有误：金额「1e400」无效" in result.output
    assert f"第 5 行：金额有误：金额 {'9' * 24}… 超过单笔上限 50000 元。" in result.output


def test_the_command_stops_at_an_unclosed_quote_with_exit_2(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "till.csv", *broken_quote(codes))
    result = PinnedCliRunner(NOW).invoke(
        main, ["import-purchases", str(path), "--config", str(config_file)]
    )
    assert result.exit_code == 2, result.output
    assert '第 7 行的引号（"）没有在本行内闭合' in result.output
    assert "读取" not in result.output
    assert operation_count(conn) == 0
    # Quotes corrected, every one of the 16 lines is read.
    rows = broken_quote(codes)
    rows[5] = rows[5].replace('"', "")
    write_csv(path, *rows)
    fixed = PinnedCliRunner(NOW).invoke(
        main, ["import-purchases", str(path), "--config", str(config_file)]
    )
    assert fixed.exit_code == 0, fixed.output
    assert "读取 16 行" in fixed.output
    assert "本次导入 16 笔（160 积分）" in flat(fixed.output)


def every_kind_of_skip(codes: dict[str, str]) -> list[str]:
    """Rows the import skips for each of its reasons, and two it imports."""
    when = yesterday()
    alice = codes["alice"]
    return [
        csv_row("R1", alice, "10", "general", when),
        csv_row("R1", alice, "10", "general", when),  # the receipt again
        csv_row("R2", alice, "abc", "general", when),
        csv_row("R3", "12345", "10", "general", when),
        csv_row("R4", STRANGER, "10", "general", when),
        csv_row("R5", alice, "10", "toys", when),
        csv_row("R6", alice, "10", "general", "yesterday"),
        csv_row("R7", alice, "10"),
        csv_row("", alice, "10", "general", when),
        csv_row("R8", alice, "0.10", "general", when),
        "R9," + alice + ',"10"x,general,' + when,  # unreadable CSV
        csv_row("R10", codes["bob"], "10", "general", when),
    ]


LATIN_WORD = re.compile(r"[A-Za-z]{3,}")
HAN = re.compile(r"[\u4e00-\u9fff]")


def test_the_command_speaks_the_programme_s_language_on_every_line(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "till.csv", *every_kind_of_skip(codes))
    result = PinnedCliRunner(NOW).invoke(
        main, ["import-purchases", str(path), "--config", str(config_file)]
    )
    assert result.exit_code == 1, result.output
    lines = result.output.replace(str(path), "").splitlines()
    assert len(lines) == 26  # read, 3 counts, 10 reasons, notified, a heading, 10 rows
    for line in lines:
        # Nothing English but the file's own content (quoted, receipts, times) and the names
        # of formats (CSV, ISO 8601) and the category ids a file may use.
        content = re.sub(r"“[^”]*”|「[^」]*」|（[a-z_]+）|R\d+|CSV|ISO", "", line)
        assert not LATIN_WORD.search(content), line
        assert HAN.search(line), line
    assert "  第 3 行：小票号在文件中重复：小票 R1 也出现在第 2 行" in lines
    assert "  第 6 行：会员不存在：没有会员号为 " + STRANGER + " 的会员" in lines
    assert "  通知会员            2 位" in lines


def test_the_command_speaks_english_on_every_line_when_asked(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "till.csv", *every_kind_of_skip(codes))
    result = PinnedCliRunner(NOW).invoke(
        main, ["import-purchases", str(path), "--config", str(config_file), "--lang", "en"]
    )
    assert result.exit_code == 1, result.output
    assert not HAN.search(result.output), result.output
    assert "  line 3: receipt id repeated in the file: receipt R1 is also on line 2" in (
        result.output.splitlines()
    )
    assert "members notified 2" in flat(result.output)
