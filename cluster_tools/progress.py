"""Progress of a long phase (re-reading every acknowledged ciphertext can take minutes): a
progress bar on a terminal, a plain line every few seconds otherwise (logs, CI)."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, what: str, *, stream: TextIO | None = None, every_s: float = 5.0,
                 bar: bool | None = None) -> None:
        self.total, self.what, self.every_s = total, what, every_s
        self.stream = stream or sys.stderr
        self.done = 0
        self._started = self._said = time.monotonic()
        use_bar = self.stream.isatty() if bar is None else bar
        self._bar = tqdm(total=total, desc=what, file=self.stream, unit="", dynamic_ncols=True) if use_bar else None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._said >= self.every_s and self.done < self.total:
            self._said = now
            self._line(now)

    def _line(self, now: float) -> None:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / max(now - self._started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        print(f"  {self.what}: {self.done:,}/{self.total:,} ({pct:.0f}%), {rate:,.0f}/s, ~{left:.0f}s left",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            now = time.monotonic()
            print(f"  {self.what}: {self.done:,}/{self.total:,} in {now - self._started:.1f}s", file=self.stream,
                  flush=True)
