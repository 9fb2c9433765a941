"""What an API key looks like and how it is stored: shared by the registry and the checker."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIXES = {"write": "apk_w_", "read": "apk_r_"}
KEY_ID_CHARS = 12
# What a key looks like: anything else is refused before a hash is computed or a query runs.
SECRET_PATTERN = re.compile(r"apk_[wr]_[A-Za-z0-9_-]{43}")


def key_hash(secret: str) -> bytes:
    """The stored form of a key. SHA-256, not a slow KDF: a key has 256 random bits, so
    there is nothing to guess, and a fast hash keeps each request's check cheap."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def new_secret(kind: str) -> str:
    """A fresh key of `kind`: its prefix and 32 bytes from the OS's CSPRNG (43 characters)."""
    return KEY_PREFIXES[kind] + secrets.token_urlsafe(32)
