"""Input rules of the HSM, as CloudHSM states them (pure functions)."""
from __future__ import annotations

import re

from .errors import InvalidArgument

USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{1,31}$")
PASSWORD_MIN, PASSWORD_MAX = 7, 32
LABEL_MAX = 127
AES_KEY_SIZES = (16, 32)
MAX_PLAINTEXT = 65536
MAX_AAD = 8192
MAX_RANDOM = 4096
IV_LEN = 12
TAG_LEN = 16
MAX_LOGIN_FAILURES = 5
MAX_ORDINAL = 31  # node ordinals 1..31 (CloudHSM allows 28 HSMs per cluster)
PRECO_USERNAME = "admin"
PRECO_DEFAULT_PASSWORD = "password"
CLUSTER_ID_RE = re.compile(r"cluster-[2-7a-zA-Z]{11,16}")  # CloudHSM's pattern
APPLIANCE_USERNAME = "app_user"  # CloudHSM's appliance user (AU), the service's own


def username(name: str) -> str:
    """Validate a user name and return its canonical (lower-case) form."""
    if not USERNAME_RE.match(name or ""):
        raise InvalidArgument(
            f"invalid user name {name[:40]!r}: use 1 to 31 letters, digits or '_'"
        )
    return name.lower()


def password(pw: str) -> str:
    if not (PASSWORD_MIN <= len(pw or "") <= PASSWORD_MAX):
        raise InvalidArgument(
            f"invalid password: it must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long"
            f" (got {len(pw or '')})"
        )
    return pw


def label(text: str) -> str:
    if len(text) > LABEL_MAX:
        raise InvalidArgument(f"key label too long: {len(text)} characters, at most {LABEL_MAX}")
    return text


def key_size(size: int) -> int:
    if size == 0:
        return 32
    if size not in AES_KEY_SIZES:
        raise InvalidArgument(f"invalid AES key size {size} bytes: use 16 (AES-128) or 32 (AES-256)")
    return size


def length(value: int, what: str, lo: int, hi: int) -> int:
    if not (lo <= value <= hi):
        raise InvalidArgument(f"{what} must be between {lo} and {hi} (got {value})")
    return value


def max_bytes(data: bytes, what: str, hi: int, lo: int = 0) -> bytes:
    if not (lo <= len(data) <= hi):
        raise InvalidArgument(f"{what} must be {lo} to {hi} bytes long (got {len(data)})")
    return data
