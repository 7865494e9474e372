"""Run the benchmarks: all `bench/*.py` modules, or the ones named; `--quick` scales down ~100x."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    """Names of the benchmark modules in this package."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not info.name.startswith("_")
    )


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
    for name in names:
        print(f"== bench.{name}{' (quick)' if quick else ''}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        module.main(["--quick"] if quick else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
