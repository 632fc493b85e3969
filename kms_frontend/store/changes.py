"""What lets several frontend processes (``kms-frontend --workers N``) share one metadata database
and still refuse a disabled key, a revoked grant or a disconnected store from the next call on.

Every write of the repository that changes what a worker keeps in memory (stores, keys, aliases,
grants) adds rows to the ``change_log`` table in the same transaction (:mod:`.sqlite`), and after
the commit raises the **change counter** to the newest row's sequence number. The counter is 8
bytes in a small file beside the database, mapped into every worker's memory (:class:`ChangeCounter`):
reading it is a memory load, so a worker can look at it on every request (a few hundred
nanoseconds) and, only when it moved, read the rows after the last one it applied and reload just
those records. A writer raises the counter under an exclusive ``flock`` and only ever upwards, so
two writers that commit in one order and publish in the other cannot move it back; a worker that
sees the counter at N finds every row up to N committed (the counter moves after the commit).

:class:`SharedRateLimiter` is the same idea for each custom key store's request quota: one token
bucket per store in a mapped file, updated under ``flock`` (two system calls per request, only when
several workers run), so the quota is global, not per worker.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from pathlib import Path

_U64 = struct.Struct("=Q")
_BUCKET = struct.Struct("=dd")  # tokens, at (CLOCK_MONOTONIC: one clock for every process of the machine)


def _mapped(path: Path, size: int) -> tuple[int, mmap.mmap]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)  # zero-filled
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


class ChangeCounter:
    """The newest committed change's sequence number, shared by the processes that map ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd, self._map = _mapped(self.path, _U64.size)
        self._read = _U64.unpack_from

    @property
    def value(self) -> int:
        """One aligned 8-byte load: a reader never sees a half-written value on the platforms we run."""
        return self._read(self._map, 0)[0]

    def advance(self, seq: int) -> None:
        """Raise the counter to ``seq`` (never lower it). Called after the commit that wrote ``seq``."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if self._read(self._map, 0)[0] < seq:
                _U64.pack_into(self._map, 0, seq)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class SharedRateLimiter:
    """A token bucket shared by every process that maps ``path``: ``rate`` requests per second,
    bursts up to one second's worth (the behaviour of :class:`kms_frontend.service.crypto.RateLimiter`)."""

    def __init__(self, path: str | os.PathLike[str], rate: int) -> None:
        self.rate = float(rate)
        self._fd, self._map = _mapped(Path(path), _BUCKET.size)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            tokens, at = _BUCKET.unpack_from(self._map, 0)
            if at == 0.0:  # a new bucket starts full
                _BUCKET.pack_into(self._map, 0, self.rate, time.monotonic())
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def allow(self) -> bool:
        fd, buf = self._fd, self._map
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            tokens, at = _BUCKET.unpack_from(buf, 0)
            now = time.monotonic()
            tokens = min(self.rate, tokens + (now - at) * self.rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            _BUCKET.pack_into(buf, 0, tokens, now)
            return allowed
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
