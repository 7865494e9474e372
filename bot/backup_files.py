"""Dated backups in one folder, the newest N kept: what a nightly timer runs (`backup --into`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

# UTC, so the names sort in time order across daylight-saving changes and host moves.
_DATED: Final = re.compile(r"pointsbot-\d{8}T\d{6}Z\.sqlite3")


def dated_backup(folder: Path, now: datetime) -> Path:
    """The file a backup taken at `now` goes to in `folder`."""
    return folder / f"pointsbot-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.sqlite3"


def stale_backups(folder: Path, keep: int, live: Path) -> list[Path]:
    """The dated backups in `folder` beyond the newest `keep`, oldest first; nothing else in
    the folder (another file, a copy still being written, the live database) is named."""
    dated = sorted(
        path
        for path in folder.iterdir()
        if _DATED.fullmatch(path.name) and path.is_file() and not _same_file(path, live)
    )
    return dated[: max(len(dated) - keep, 0)]


def _same_file(path: Path, live: Path) -> bool:
    # A database deliberately named like a backup, in the backup folder: never pruned.
    try:
        return path.samefile(live)
    except OSError:
        return False
