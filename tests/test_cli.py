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
    assert "warning" not in result.output


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text(SAMPLE.read_text(encoding="utf-8").replace("months = 12", "months = 0"))
    result = CliRunner().invoke(main, ["check-config", "--config", str(bad)])
    assert result.exit_code == 2
    assert "[expiry.months]" in result.output


# Issue 15, defect 9: (what the sample says, what the operator wrote, the error's key line).
BAD_SETTINGS = {
    "admins a string": (
        'support_contact = "400-800-1234"',
        'admins = "123456789"\nsupport_contact = "400-800-1234"',
        "[program.admins] must be a list of Telegram user ids",
    ),
    "a negative admin id": (
        'support_contact = "400-800-1234"',
        'admins = [123456789, -4242]\nsupport_contact = "400-800-1234"',
        "[program.admins[2]] a Telegram user id is a positive number, not -4242",
    ),
    "points_per_yuan 1e12": (
        "points_per_yuan = 1\n",
        "points_per_yuan = 1e12\n",
        "[earn.points_per_yuan] Input should be less than or equal to 1000",
    ),
    "equal quiet hours": (
        "quiet_hours_end = 08:00:00",
        "quiet_hours_end = 22:00:00",
        "[push.quiet_hours_end] is the same as quiet_hours_start (22:00)",
    ),
    "storage.path the root": (
        'path = "data/pointsbot.sqlite3"',
        'path = "/"',
        "[storage.path] '/' is a folder",
    ),
    "storage.path under a file": (
        'path = "data/pointsbot.sqlite3"',
        f'path = "{SAMPLE}/bot.sqlite3"',
        f"[storage.path] '{SAMPLE}/bot.sqlite3': '{SAMPLE}' is a file, not a folder",
    ),
}


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_bad_setting_stops_check_config_and_run_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, command: str
) -> None:
    # No token: should the configuration pass, `run` stops at the token, never at the network.
    monkeypatch.delenv("POINTSBOT_TOKEN", raising=False)
    old, new, expected = BAD_SETTINGS[setting]
    sample = SAMPLE.read_text(encoding="utf-8")
    assert sample.count(old) == 1
    config = tmp_path / "config.toml"
    config.write_text(sample.replace(old, new), encoding="utf-8")
    result = CliRunner().invoke(main, [command, "--config", str(config)])
    assert result.exit_code == 2, result.output
    first, *named = result.output.splitlines()
    assert first == f"error: {config}: invalid configuration"
    assert len(named) == 1 and named[0].startswith(f"  {expected}"), result.output


def test_no_admin_passes_check_config_with_a_warning_and_stops_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POINTSBOT_TOKEN", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(
        # The sample's only owner made a manager: nobody may run the programme.
        SAMPLE.read_text(encoding="utf-8").replace('role = "owner"', 'role = "manager"'),
        encoding="utf-8",
    )
    key = "[program.admins] is empty and [[staff]] name no owner: `pointsbot run` needs"
    checked = CliRunner().invoke(main, ["check-config", "--config", str(config)])
    assert checked.exit_code == 0, checked.output
    assert f"{config}: OK" in checked.output
    assert f"warning: {config}: {key}" in checked.output
    ran = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert ran.exit_code == 2, ran.output
    assert ran.output.startswith(f"error: {config}: invalid configuration\n  {key}")
    assert "POINTSBOT_TOKEN" not in ran.output  # the configuration is named first


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
