"""Console sign-in: an access key pair (and, for temporary credentials, its session token) proves a
principal exactly as a SigV4 signature does (:meth:`Identities.credential`); the console then holds
a session for it. Every page and action runs as that principal through ``Services.call``, so the
console can do nothing the API would refuse the same caller.

Sessions live in memory (a frontend restart signs everyone out), expire after ``IDLE_S`` without a
request, and carry a CSRF token that every form posts back. Failed sign-ins are limited per client
address, so the form is no faster an oracle for secrets than the API.
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import errors
from ..service.principals import Identities, Principal

IDLE_S = 3600.0
MAX_FAILURES = 10          # failed sign-ins per client address ...
FAILURE_WINDOW_S = 60.0    # ... in this window, then refused until it passes


@dataclass
class ConsoleSession:
    token: str
    principal: Principal
    csrf: str
    last_seen: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown once on the next page


class SignInRefused(Exception):
    """Wrong credentials, or too many tries: the message says which, never which part was wrong."""


class ConsoleSessions:
    def __init__(self, identities: Identities, clock: Callable[[], float] = time.monotonic) -> None:
        self.identities = identities
        self._now = clock
        self._sessions: dict[str, ConsoleSession] = {}
        self._failures: dict[str, deque[float]] = {}

    def sign_in(self, access_key_id: str, secret: str, session_token: str | None, client: str) -> ConsoleSession:
        now = self._now()
        self._expire(now)
        recent = self._failures.setdefault(client, deque())
        while recent and now - recent[0] > FAILURE_WINDOW_S:
            recent.popleft()
        if len(recent) >= MAX_FAILURES:
            raise SignInRefused(f"Too many failed sign-ins from {client}; wait a minute and try again.")
        try:
            expected, principal = self.identities.credential(access_key_id.strip(), session_token or None)
        except errors.KmsError:
            expected, principal = "", None
        if principal is None or not hmac.compare_digest(expected.encode(), secret.strip().encode()):
            recent.append(now)
            raise SignInRefused("The access key pair (or session token) is not valid.")
        session = ConsoleSession(secrets.token_urlsafe(32), principal, secrets.token_urlsafe(24), now)
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> ConsoleSession | None:
        if not token:
            return None
        session = self._sessions.get(token)
        now = self._now()
        if session is None or now - session.last_seen > IDLE_S or self._expired(session):
            self._sessions.pop(token or "", None)
            return None
        session.last_seen = now
        return session

    def sign_out(self, token: str | None) -> None:
        self._sessions.pop(token or "", None)

    def _expired(self, session: ConsoleSession) -> bool:
        """Temporary credentials (AssumeRole) end the session when they expire."""
        expires_ms = session.principal.expires_ms
        return expires_ms is not None and self.identities.now_ms() >= expires_ms

    def _expire(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items() if now - s.last_seen > IDLE_S]:
            del self._sessions[token]
        for client in [c for c, q in self._failures.items() if not q or now - q[-1] > FAILURE_WINDOW_S]:
            del self._failures[client]  # addresses that stopped failing are forgotten
