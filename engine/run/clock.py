"""The runner's idea of now: real time, or `--now` moving on with real time."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def __init__(self, start: datetime | None = None) -> None:
        self._offset = 0.0 if start is None else start.timestamp() - time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self._offset, UTC)

    def seconds(self) -> int:
        return int(time.time() + self._offset)
