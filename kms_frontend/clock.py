"""The frontend's clock, injectable so key deletion windows (7..30 days) can be
driven in seconds by tests and chaos runs.

``KMS_CLOCK_OFFSET_FILE`` names a file holding a number of seconds added to the
wall clock; it is re-read when it changes, so a running frontend can be moved
forward in time from outside.
"""
from __future__ import annotations

import os
import time


class OffsetClock:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._mtime = -1.0
        self._offset = 0.0

    def __call__(self) -> float:
        if self.path:
            try:
                mtime = os.stat(self.path).st_mtime
                if mtime != self._mtime:
                    with open(self.path) as f:
                        self._offset = float(f.read().strip() or 0)
                    self._mtime = mtime
            except (OSError, ValueError):
                pass
        return time.time() + self._offset
