"""The bots for bench/failover.py: several `pointsbot run`, forked from one process that has
imported the bot once (bench/_crash_bot.py does the same for one bot).

`python -m bench._cluster_bot` reads commands from stdin, one a line, and answers each with
one line: `start CONFIG LOG` forks a child running `pointsbot run --config CONFIG` (its
output appended to LOG) and answers its pid; `reap` answers the children that ended since
the last `reap` as `pid:wait-status` words (`-` for none). The harness signals the children
itself (kill -9 at the instant it chooses); this process only forks and reaps them. End of
input kills the children still running.
"""

from __future__ import annotations

import os
import signal
import sys

from bench._crash_bot import start


def reap(children: set[int]) -> list[tuple[int, int]]:
    """The children that ended, with their wait status (without waiting for the others)."""
    ended = []
    for pid in sorted(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            ended.append((pid, status))
            children.discard(pid)
    return ended


def main() -> None:
    """Serve start and reap commands from stdin until it closes."""
    children: set[int] = set()
    for line in sys.stdin:
        command, *args = line.split()
        if command == "start" and len(args) == 2:
            pid = start(args[0], args[1])
            children.add(pid)
            print(pid, flush=True)
        elif command == "reap" and not args:
            ended = reap(children)
            print(" ".join(f"{pid}:{status}" for pid, status in ended) or "-", flush=True)
        else:
            print(f"error: {line.strip()!r}", flush=True)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
