"""The command line: check-config, init-db, and run without a token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config.example.toml"


def test_check_config_prints_a_summary() -> None:
    result = CliRunner().invoke(main, ["check-config", "--config", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "红米好物" in result.output
    assert "Asia/Shanghai" in result.output


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text(SAMPLE.read_text(encoding="utf-8").replace("months = 12", "months = 0"))
    result = CliRunner().invoke(main, ["check-config", "--config", str(bad)])
    assert result.exit_code == 2
    assert "[expiry.months]" in result.output


def test_init_db_creates_the_database(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    db = tmp_path / "data" / "points.sqlite3"
    text = SAMPLE.read_text(encoding="utf-8")
    config.write_text(text.replace('path = "data/pointsbot.sqlite3"', f'path = "{db}"'))
    runner = CliRunner()
    first = runner.invoke(main, ["init-db", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert db.exists()
    again = runner.invoke(main, ["init-db", "--config", str(config)])
    assert again.exit_code == 0
    assert first.output == again.output


def test_the_operator_commands_are_listed() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("audit", "import-purchases", "export-ledger", "init-db", "check-config"):
        assert command in result.output


def test_run_without_token_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POINTSBOT_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["run", "--config", str(SAMPLE)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "POINTSBOT_TOKEN" in lines[0]


def test_python_dash_m_bot_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "--config", str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
