"""Run the benchmarks: all `bench/*.py` modules, or the ones named; `--quick` scales down ~100x.

The `postgres*` ones need a PostgreSQL server: POINTSBOT_TEST_POSTGRES's, else one throwaway
server for them all (bench/postgres.py's `pg_server`); without either they are skipped, each
with one line saying so.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Where the PostgreSQL benchmarks find their server (tests/postgres.py reads the same).
POSTGRES_ENV = "POINTSBOT_TEST_POSTGRES"


def available() -> list[str]:
    """Names of the benchmark modules in this package."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not info.name.startswith("_")
    )


def needs_postgres(name: str) -> bool:
    """Whether the benchmark runs on PostgreSQL."""
    return name.startswith("postgres")


@contextmanager
def postgres_for(names: list[str]) -> Iterator[bool]:
    """Whether the PostgreSQL benchmarks among `names` have a server: POINTSBOT_TEST_POSTGRES,
    else a throwaway one started once for them all (and its URL set there while they run)."""
    if os.environ.get(POSTGRES_ENV) or not any(needs_postgres(name) for name in names):
        yield True
        return
    from bench.postgres import pg_server

    with pg_server() as url:
        if url is None:
            yield False
            return
        os.environ[POSTGRES_ENV] = url
        try:
            yield True
        finally:
            del os.environ[POSTGRES_ENV]


def main(argv: list[str] | None = None) -> int:
    """Run the named (or all) benchmarks, passing `--quick` through."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {available()})"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run, ~100x smaller")
    args = parser.parse_args(argv)
    names = args.names or available()
    if unknown := sorted(set(names) - set(available())):
        parser.error(f"no such benchmark: {', '.join(unknown)}")
    quick = args.quick or os.environ.get("BENCH_QUICK") == "1"
    with postgres_for(names) as postgres:
        for name in names:
            print(f"== bench.{name}{' (quick)' if quick else ''}", flush=True)
            if needs_postgres(name) and not postgres:
                from bench.postgres import NO_POSTGRES

                print(NO_POSTGRES, flush=True)
                continue
            module = importlib.import_module(f"bench.{name}")
            module.main(["--quick"] if quick else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
