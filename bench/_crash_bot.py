"""The bot for bench/kills.py: `pointsbot run`, forked from a process that has imported it all.

`python -m bench._crash_bot CONFIG LOG` reads commands from stdin: `start` forks a child that
runs `pointsbot run --config CONFIG` (its output appended to LOG) and prints the child's pid;
`kill` sends that child SIGKILL, reaps it and prints its wait status. Each restart then costs
the bot's own start-up (the database, the Bot API calls of post_init, the first poll), not
Python's imports, so a test can afford dozens of kills. End of input kills a running child.
"""

from __future__ import annotations

import os
import signal
import sys

import bot.app  # noqa: F401 - imported once here, before any fork, for every child
from bot.cli import main as pointsbot


def start(config: str, log: str) -> int:
    """Fork a child running `pointsbot run`; return its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the commands are for this process
        pointsbot(["run", "--config", config])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    """Serve start and kill commands from stdin until it closes."""
    config, log = sys.argv[1:3]
    child: int | None = None
    for line in sys.stdin:
        command = line.strip()
        if command == "start" and child is None:
            child = start(config, log)
            print(child, flush=True)
        elif command == "kill" and child is not None:
            os.kill(child, signal.SIGKILL)
            _, status = os.waitpid(child, 0)
            child = None
            print(status, flush=True)
        else:
            print(f"error: {command!r} now", flush=True)
    if child is not None:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


if __name__ == "__main__":
    main()
