"""Login sessions of one node (in memory: a node restart logs everyone out,
as an HSM reboot does)."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from .errors import NOT_LOGGED_IN, PermissionDenied, Unauthenticated


@dataclass
class LoginSession:
    token: str
    username: str
    user_id: int
    user_type: str
    client_id: str
    last_used: float


class LoginSessions:
    def __init__(self, idle_timeout_s: float = 900.0) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._by_token: dict[str, LoginSession] = {}

    def open(self, username: str, user_id: int, user_type: str, client_id: str = "") -> LoginSession:
        if client_id:  # one session per (user, client) on a node: a restarted client replaces its old one
            for s in [s for s in self._by_token.values() if s.username == username and s.client_id == client_id]:
                del self._by_token[s.token]
        s = LoginSession(secrets.token_urlsafe(24), username, user_id, user_type, client_id, time.monotonic())
        self._by_token[s.token] = s
        return s

    def get(self, token: str) -> LoginSession:
        s = self._by_token.get(token) if token else None
        now = time.monotonic()
        if s is None or now - s.last_used > self.idle_timeout_s:
            if s is not None:
                del self._by_token[token]
            raise Unauthenticated(NOT_LOGGED_IN)
        s.last_used = now
        return s

    def require(self, token: str, *types: str) -> LoginSession:
        s = self.get(token)
        if s.user_type not in types:
            who = {"CO": "a crypto officer (CO)", "CU": "a crypto user (CU)", "PRECO": "the PRECO user"}
            need = " or ".join(who.get(t, t) for t in types)
            raise PermissionDenied(f"0xc6 : HSM Error: this operation needs {need}; you are logged in as {s.user_type}")
        return s

    def close(self, token: str) -> None:
        self._by_token.pop(token, None)

    def of_user(self, username: str) -> list[LoginSession]:
        self._expire()
        return [s for s in self._by_token.values() if s.username == username]

    def drop_user(self, username: str) -> None:
        for s in self.of_user(username):
            del self._by_token[s.token]

    def count(self) -> int:
        return len(self._by_token)

    def drop_all(self) -> None:
        self._by_token.clear()

    def _expire(self) -> None:
        now = time.monotonic()
        for t in [t for t, s in self._by_token.items() if now - s.last_used > self.idle_timeout_s]:
            del self._by_token[t]
