"""A small run of the end-to-end benchmark: the real bot process, the baselines, the figures."""

from __future__ import annotations

import re

import pytest

from bench import api, e2e, postgres_api, postgres_e2e, tiers, webhook
from tests.postgres import require_server


def test_e2e_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    e2e.main(["--members", "2000", "--concurrent", "10", "--seconds", "1", "--think", "0.1"])
    out = capsys.readouterr().out
    figures = re.findall(
        r"^(echo|floor|pointsbot)\s+(?:saturated|think 0.1s)\s+10 members: ([\d,]+) updates/s,"
        r" p50 [\d.]+ ms, p99 [\d.]+ ms \(handled p99 [\d.]+ ms\),"
        r" peak RSS (\d+) MB, timeouts (\d+)$",
        out,
        re.MULTILINE,
    )
    assert [kind for kind, *_ in figures] == ["echo", "floor", "pointsbot", "echo", "pointsbot"], (
        out
    )
    for _kind, rate, rss, timeouts in figures:
        assert int(rate.replace(",", "")) > 0
        assert 0 < int(rss) < 1000
        assert timeouts == "0"
    assert "pointsbot/echo saturated throughput ratio" in out
    assert re.search(r"^floor/echo [\d.]+ .*, pointsbot/floor [\d.]+$", out, re.MULTILINE), out


def test_tier_review_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    tiers.main(["--quick"])
    out = capsys.readouterr().out
    found = re.search(
        r"^yearly tier review, 10,000 members \(7,500 above the lowest tier, .*\): [\d.]+ s,"
        r" ([\d,]+) moved down .* ratio review/baseline [\d.]+; a second run [\d.]+ s, 0 moved$",
        out,
        re.MULTILINE,
    )
    assert found, out
    assert int(found.group(1).replace(",", "")) > 0


def test_till_api_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    api.main(["--quick"])
    out = capsys.readouterr().out
    found = re.search(
        r"^till API, 200 purchases by 10 concurrent signed tills, 100 members:"
        r" ([\d,]+) purchases/s, p50 [\d.]+ ms, p99 [\d.]+ ms;"
        r" import-purchases of the same rows ([\d,]+) purchases/s; ratio api/import [\d.]+$",
        out,
        re.MULTILINE,
    )
    assert found, out
    assert all(int(rate.replace(",", "")) > 0 for rate in found.groups())


def test_webhook_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    webhook.main(["--quick", "--round-trip", "4"])
    out = capsys.readouterr().out
    assert out.startswith("emulated round trip 4 ms\n"), out
    for mode in ("polling", "webhook", "webhook+answer"):
        found = re.search(
            rf"^{re.escape(mode)}\s+5 members, 30 updates: ([\d,]+) updates/s;"
            r" message p50 [\d.]+ ms p99 [\d.]+ ms; tap answered p50 [\d.]+ ms p99 [\d.]+ ms;"
            r" ([\d.]+) Bot API requests a round \((\d+)% of taps answered in the webhook"
            r" response\)$",
            out,
            re.MULTILINE,
        )
        assert found, out
        assert int(found.group(1).replace(",", "")) > 0
        # Each round is /mall, a reply, a tap, its answer and an edit: at least 2 requests.
        assert float(found.group(2)) >= 2
        if mode != "webhook+answer":
            assert found.group(3) == "0"
    for pair in ("webhook/polling", "webhook+answer/polling", "webhook+answer/webhook"):
        assert re.search(
            rf"^ratio {re.escape(pair)}: updates/s [\d.]+, message p50 [\d.]+,"
            r" tap answered p50 [\d.]+, requests [\d.]+$",
            out,
            re.MULTILINE,
        ), out


def test_postgres_e2e_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    require_server()
    postgres_e2e.main(["--members", "2000", "--concurrent", "10", "--seconds", "1", "--think", "0"])
    out = capsys.readouterr().out
    assert re.search(
        r"^database: 2,000 members, [\d,]+ ledger rows, built in \d+ s;"
        r" [\d,]+ rows copied into PostgreSQL in \d+ s$",
        out,
        re.MULTILINE,
    ), out
    figures = re.findall(
        r"^(SQLite|PostgreSQL)\s+saturated\s+10 members: ([\d,]+) updates/s,"
        r" p50 [\d.]+ ms, p99 [\d.]+ ms \(handled p99 [\d.]+ ms\),"
        r" peak RSS (\d+) MB, timeouts (\d+)$",
        out,
        re.MULTILINE,
    )
    assert [engine for engine, *_ in figures] == ["SQLite", "PostgreSQL"], out
    for _engine, rate, rss, timeouts in figures:
        assert int(rate.replace(",", "")) > 0
        assert 0 < int(rss) < 1000
        assert timeouts == "0"
    assert re.search(
        r"^ratio PostgreSQL/SQLite saturated: updates/s [\d.]+, p50 [\d.]+, p99 [\d.]+$",
        out,
        re.MULTILINE,
    ), out
    assert "think" not in out


def test_postgres_till_api_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    require_server()
    postgres_api.main(["--purchases", "30", "--tills", "3", "--members", "10"])
    out = capsys.readouterr().out
    runs = re.findall(
        r"^till API on (SQLite|PostgreSQL), (1 process|2 processes),"
        r" 30 purchases by 3 tills, 10 members: ([\d,]+) purchases/s,"
        r" p50 [\d.]+ ms, p99 [\d.]+ ms, \d+ retried after a 500$",
        out,
        re.MULTILINE,
    )
    assert [(engine, processes) for engine, processes, _ in runs] == [
        ("SQLite", "1 process"),
        ("PostgreSQL", "1 process"),
        ("PostgreSQL", "2 processes"),
    ], out
    assert all(int(rate.replace(",", "")) > 0 for *_, rate in runs)
    assert re.search(
        r"^ratio PostgreSQL two processes/one [\d.]+;"
        r" PostgreSQL one process/SQLite one process [\d.]+"
        r" \(PostgreSQL fsync (on|off), SQLite synchronous FULL\)$",
        out,
        re.MULTILINE,
    ), out


def test_webhook_cluster_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.postgres import require_server

    require_server()  # the benchmark's own databases go on the suite's server
    webhook.main(["--quick", "--cluster", "--round-trip", "4"])
    out = capsys.readouterr().out
    assert out.startswith("webhook mode on PostgreSQL, emulated round trip 4 ms\n"), out
    for name in ("1 process", "2 processes"):
        found = re.search(
            rf"^{name}\s+5 members, 30 updates: ([\d,]+) updates/s;", out, re.MULTILINE
        )
        assert found, out
        assert int(found.group(1).replace(",", "")) > 0
    assert re.search(r"^ratio 2 processes/1 process: updates/s [\d.]+,", out, re.MULTILINE), out
