"""`pointsbot export-ledger`: every posting as CSV, local times, traceable by member code."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.export import COLUMNS
from storage import ledger
from storage.family import create_household, join_household
from storage.members import Profile, register_member
from storage.store import connect_sync, migrate

SAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # noon in Shanghai


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "points.sqlite3"


@pytest.fixture
def config_file(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "config.toml"
    text = SAMPLE.read_text(encoding="utf-8")
    path.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    return path


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    connection = connect_sync(db)
    migrate(connection)
    yield connection
    connection.close()


@pytest.fixture
def codes(conn: sqlite3.Connection) -> dict[str, str]:
    """Alice buys, redeems and gets her redemption refunded; Bob buys."""
    alice = register_member(conn, Profile(1, "alice"), None, T0)[0]
    bob = register_member(conn, Profile(2, "bob"), None, T0)[0]
    for member, points, key in ((alice, 100, "purchase:R1"), (bob, 40, "purchase:R2")):
        ledger.earn(
            conn,
            member.id,
            points,
            kind="purchase",
            key=key,
            actor="pos:7",
            expires_at=T0 + timedelta(days=365),
            reference=key.removeprefix("purchase:"),
            meta={"amount": f"{points}.00", "category": "general"},
            now=T0,
        )
    spent = ledger.spend(
        conn,
        alice.id,
        30,
        key="redeem:1",
        actor="member:1",
        reason="tote bag",
        reference="X1",
        now=T0 + timedelta(hours=1),
    )
    ledger.refund(
        conn,
        spent.operation_id,
        key="refund:1",
        actor="ops:mei",
        reason="out of stock",
        merchant_fault=True,
        now=T0 + timedelta(days=1),
    )
    return {"alice": alice.member_code, "bob": bob.member_code}


def export(config_file: Path, *args: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(main, ["export-ledger", "--config", str(config_file), *args])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output)))


def test_every_posting_is_exported_and_each_operation_sums_to_zero(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path
) -> None:
    rows = export(config_file)
    assert list(rows[0]) == list(COLUMNS)
    # two purchases, a redemption and its refund: two legs each
    assert len(rows) == 8
    assert [int(r["posting_id"]) for r in rows] == list(range(1, 9))
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row["operation_id"]] += int(row["amount"])
    assert totals == {"1": 0, "2": 0, "3": 0, "4": 0}
    assert [r["kind"] for r in rows[::2]] == ["purchase", "purchase", "redeem", "refund"]


def test_columns_carry_the_operation_the_account_and_local_times(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path
) -> None:
    rows = export(config_file)
    purchase_source, purchase_member = rows[0], rows[1]
    assert purchase_source["account"] == "purchase"
    assert purchase_source["member_id"] == purchase_source["member_code"] == ""
    assert purchase_source["amount"] == "-100"
    assert purchase_member == {
        "posting_id": "2",
        "operation_id": "1",
        "created_at": "2026-03-01T12:00:00+08:00",
        "kind": "purchase",
        "key": "purchase:R1",
        "actor": "pos:7",
        "reason": "",
        "reference": "R1",
        "reverses_operation_id": "",
        "account": "member:1",
        "member_id": "1",
        "member_code": codes["alice"],
        "amount": "100",
        "meta": purchase_member["meta"],
        "transfer_from_code": "",
        "transfer_to_code": "",
        "tier": "",
        "tier_bonus_points": "",
    }
    assert json.loads(purchase_member["meta"]) == {"amount": "100.00", "category": "general"}
    refund = [r for r in rows if r["kind"] == "refund"]
    assert {r["reverses_operation_id"] for r in refund} == {"3"}
    assert {r["created_at"] for r in refund} == {"2026-03-02T12:00:00+08:00"}
    assert {r["reason"] for r in refund} == {"out of stock"}
    assert {(r["account"], r["amount"]) for r in refund} == {
        ("redeemed", "-30"),
        ("member:1", "30"),
    }


def test_a_member_s_trail_is_found_by_member_code(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path
) -> None:
    rows = export(config_file, "--member", codes["alice"])
    assert [(r["kind"], r["amount"]) for r in rows] == [
        ("purchase", "100"),
        ("redeem", "-30"),
        ("refund", "30"),
    ]
    assert {r["member_code"] for r in rows} == {codes["alice"]}
    (bob,) = export(config_file, "--member", codes["bob"])
    assert (bob["key"], bob["amount"]) == ("purchase:R2", "40")
    # Typed as /card prints it, in groups.
    code = codes["bob"]
    (grouped,) = export(config_file, "--member", f"{code[:4]} {code[4:8]}-{code[8:]}")
    assert grouped == bob


def test_the_export_can_go_to_a_file(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "trail.csv"
    args = ["export-ledger", "--config", str(config_file), "--output", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "8 postings" in result.output
    with out.open(encoding="utf-8", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 8


def test_an_unknown_member_code_exits_2(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path
) -> None:
    result = CliRunner().invoke(
        main, ["export-ledger", "--config", str(config_file), "--member", "1234567897"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == "error: no member has the code 1234567897"


def test_no_database_exits_2(config_file: Path) -> None:
    result = CliRunner().invoke(main, ["export-ledger", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "init-db" in result.output


def test_a_transfer_and_its_undo_name_both_members(
    conn: sqlite3.Connection, codes: dict[str, str], config_file: Path
) -> None:
    alice, bob = 1, 2
    home = create_household(conn, alice, actor="t", now=T0)
    join_household(conn, home.id, bob, max_members=6, actor="t", now=T0)
    later = T0 + timedelta(days=8)
    sent = ledger.transfer(
        conn, alice, bob, 50, key="t", actor="m", reason=None, now=later,
        meta={"household": home.id},
    )  # fmt: skip
    ledger.undo_transfer(
        conn, sent.operation_id, sender_id=alice, within=timedelta(minutes=10), key="u",
        actor="m", now=later,
    )  # fmt: skip
    rows = [r for r in export(config_file) if r["kind"].startswith("transfer")]
    assert [(r["kind"], r["member_code"], r["amount"]) for r in rows] == [
        ("transfer", codes["alice"], "-50"),
        ("transfer", codes["bob"], "50"),
        ("transfer_undo", codes["bob"], "-50"),
        ("transfer_undo", codes["alice"], "50"),
    ]
    # Each row names both sides, whichever member's account it is.
    sides = {(r["kind"], r["transfer_from_code"], r["transfer_to_code"]) for r in rows}
    assert sides == {
        ("transfer", codes["alice"], codes["bob"]),
        ("transfer_undo", codes["bob"], codes["alice"]),
    }
    (bobs,) = [r for r in export(config_file, "--member", codes["bob"]) if r["kind"] == "transfer"]
    assert (bobs["transfer_from_code"], bobs["transfer_to_code"]) == (codes["alice"], codes["bob"])
