"""Progress of a long operator command, on standard error: a bar on a terminal, elsewhere (a
pipe, cron, a log, CI) a plain line every so often and one when it ends.

    with report_progress("import-purchases", "rows") as progress:
        progress(done, total)        # or progress.advance(n); total may stay None

Standard output is never written, so a command's data there (a CSV) stays clean. Time comes
from a monotonic ticker (not business time: the programme's clock stays the only "now"), which
tests replace through `ProgressOptions`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TimeRemainingColumn,
)

# What a long operation calls as it goes: (done so far, total if known).
ProgressCallback = Callable[[int, int | None], None]
# Seconds from an arbitrary start that never go back (time.monotonic).
Ticker = Callable[[], float]

# Seconds between two plain lines: a line in a log every 10 s says it is alive without
# flooding it.
DEFAULT_INTERVAL: Final = 10.0


@dataclass(frozen=True, slots=True)
class ProgressOptions:
    """Where and how often progress is shown (tests hand their own)."""

    # None: standard error as it is when the command starts.
    stream: TextIO | None = None
    interval: float = DEFAULT_INTERVAL
    ticker: Ticker = time.monotonic


class _Display(Protocol):
    def show(self, done: int, total: int | None) -> None: ...

    def close(self, done: int, total: int | None, *, stopped: bool) -> None: ...


class ProgressReporter:
    """The running count of one command's work; call it with (done, total) or `advance`."""

    def __init__(self, display: _Display, total: int | None = None) -> None:
        self._display = display
        self.done = 0
        self.total = total

    def __call__(self, done: int, total: int | None = None) -> None:
        """Record that `done` units are finished (of `total`, when it is known now)."""
        self.done = done
        if total is not None:
            self.total = total
        self._display.show(self.done, self.total)

    def advance(self, count: int = 1) -> None:
        """Record `count` more units finished."""
        self(self.done + count)


@contextlib.contextmanager
def report_progress(
    command: str,
    unit: str,
    *,
    total: int | None = None,
    description: str | None = None,
    writes_stdout: bool = False,
    options: ProgressOptions | None = None,
) -> Iterator[ProgressReporter]:
    """Show the progress of `command` counted in `unit` (plural: "rows") while the block runs.

    `description` labels the bar (default: the command); `writes_stdout`: the command writes
    its data to standard output, so no bar is drawn when that is the same terminal.
    """
    options = options or ProgressOptions()
    stream = options.stream if options.stream is not None else sys.stderr
    display: _Display
    if not _is_terminal(stream):
        display = _PlainLines(command, unit, stream, options.interval, options.ticker)
    elif writes_stdout and _is_terminal(sys.stdout):
        display = _Hidden()  # a bar redrawn between the data's lines would garble both
    else:
        display = _Bar(description or command, unit, stream, options.ticker)
    reporter = ProgressReporter(display, total)
    stopped = True
    try:
        yield reporter
        stopped = False
    finally:
        display.close(reporter.done, reporter.total, stopped=stopped)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or bare stream
        return False


class _Hidden:
    """Nothing shown."""

    def show(self, done: int, total: int | None) -> None:
        """Show nothing."""

    def close(self, done: int, total: int | None, *, stopped: bool) -> None:
        """Show nothing."""


class _PlainLines:
    """A line every `interval` seconds, and a last one if any was written: a run shorter than
    the interval adds nothing to a log or a cron mail."""

    def __init__(
        self, command: str, unit: str, stream: TextIO, interval: float, ticker: Ticker
    ) -> None:
        self.command = command
        self.unit = unit
        self.stream = stream
        self.interval = interval
        self.ticker = ticker
        self.started = self.last_at = ticker()
        self.last_done = 0
        self.lines = 0

    def show(self, done: int, total: int | None) -> None:
        """Write a line when `interval` has passed since the last one."""
        now = self.ticker()
        if now - self.last_at < self.interval:
            return
        # The pace since the last line: it tells how the run goes now, not how it started.
        rate = (done - self.last_done) / (now - self.last_at) if now > self.last_at else 0.0
        line = f"{self.command}: {_counted(done, total, self.unit)}, {rate:,.0f} {self.unit}/s"
        if total is not None and rate > 0 and done < total:
            line += f", about {_duration((total - done) / rate)} left"
        self._write(line)
        self.last_at, self.last_done = now, done

    def close(self, done: int, total: int | None, *, stopped: bool) -> None:
        """Close the lines with how it ended, if any line was written."""
        if not self.lines:
            return
        elapsed = self.ticker() - self.started
        if stopped:
            self._write(
                f"{self.command}: stopped at {_counted(done, total, self.unit)}"
                f" after {_duration(elapsed)}"
            )
            return
        rate = done / elapsed if elapsed > 0 else 0.0
        self._write(
            f"{self.command}: done, {done:,} {self.unit} in {_duration(elapsed)},"
            f" {rate:,.0f} {self.unit}/s"
        )

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()  # a log or a pipe sees each line when it is written
        self.lines += 1


def _counted(done: int, total: int | None, unit: str) -> str:
    """'250,000 of 1,000,000 rows (25%)', or '250,000 rows' without a total."""
    if total is None:
        return f"{done:,} {unit}"
    # Rounded down: 100% only when everything is done.
    percent = done * 100 // total if total > 0 else 100
    return f"{done:,} of {total:,} {unit} ({percent}%)"


def _duration(seconds: float) -> str:
    """'12.5 s', '4 min 5 s', '2 h 5 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class _Bar:
    """rich's progress bar, removed when the command ends: count, total, percentage, rate,
    time left."""

    def __init__(self, description: str, unit: str, stream: TextIO, ticker: Ticker) -> None:
        self.bar = Progress(
            "{task.description}",
            BarColumn(),
            _CountColumn(),
            TaskProgressColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream, force_terminal=True),
            transient=True,
            get_time=ticker,
            # The command's own output (a CSV on standard output) must not go through the bar.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.task = self.bar.add_task(description, total=None, unit=unit)
        self.bar.start()

    def show(self, done: int, total: int | None) -> None:
        """Move the bar."""
        self.bar.update(self.task, completed=done, total=total)

    def close(self, done: int, total: int | None, *, stopped: bool) -> None:
        """Remove the bar."""
        self.bar.stop()


class _CountColumn(ProgressColumn):
    """'250,000 of 1,000,000 rows' (without a total: '250,000 rows')."""

    def render(self, task: Task) -> str:
        """The count in the task's unit."""
        unit = task.fields["unit"]
        if task.total is None:
            return f"{int(task.completed):,} {unit}"
        return f"{int(task.completed):,} of {int(task.total):,} {unit}"


class _RateColumn(ProgressColumn):
    """'41,000 rows/s' once rich has measured a speed."""

    def render(self, task: Task) -> str:
        """The recent rate in the task's unit."""
        speed = task.finished_speed or task.speed
        return "" if speed is None else f"{speed:,.0f} {task.fields['unit']}/s"
