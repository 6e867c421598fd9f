"""App keys: ``sk_{live|test}_{appId}_{secret}`` and ``pk_{live|test}_{appId}``."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from .errors import ConfigurationError

__all__ = ["AppKeys", "new_key_pair", "parse_keys"]

# Used with fullmatch: `$` alone also matches before a trailing newline ("sk_…\n" from a file).
_SECRET = re.compile(r"^sk_(live|test)_([A-Za-z0-9]+)_([A-Za-z0-9_-]+)$")
_PUBLISHABLE = re.compile(r"^pk_(live|test)_([A-Za-z0-9]+)$")
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class AppKeys:
    """A validated key pair of one app."""

    secret_key: str
    publishable_key: str
    app_id: str
    live: bool

    @property
    def mode(self) -> str:
        return "live" if self.live else "test"

    def __repr__(self) -> str:  # never print the secret
        return f"AppKeys(app_id={self.app_id!r}, mode={self.mode!r})"


def parse_keys(secret_key: str, publishable_key: str) -> AppKeys:
    """Check a key pair and return it with its app id and mode."""
    secret_match = _SECRET.fullmatch(secret_key or "")
    if not secret_match:
        raise ConfigurationError(
            "the secret key must look like sk_live_<appId>_<secret> or sk_test_<appId>_<secret> "
            "(make a pair with `wattfare keys new --test`)"
        )
    mode, app_id, secret = secret_match.groups()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"the secret part of the secret key must be at least {MIN_SECRET_BYTES} bytes")
    publishable_match = _PUBLISHABLE.fullmatch(publishable_key or "")
    if not publishable_match:
        raise ConfigurationError("the publishable key must look like pk_live_<appId> or pk_test_<appId>")
    pk_mode, pk_app_id = publishable_match.groups()
    if pk_app_id != app_id:
        raise ConfigurationError(
            f"the secret key belongs to app {app_id!r} but the publishable key to app {pk_app_id!r}"
        )
    if pk_mode != mode:
        raise ConfigurationError(f"the secret key is a {mode} key but the publishable key a {pk_mode} key")
    return AppKeys(secret_key=secret_key, publishable_key=publishable_key, app_id=app_id, live=mode == "live")


def new_key_pair(*, live: bool = False, app_id: str | None = None) -> AppKeys:
    """Make a fresh key pair (for self-hosting or tests)."""
    mode = "live" if live else "test"
    app = app_id or "app" + secrets.token_hex(6)
    secret = secrets.token_hex(24)
    return parse_keys(f"sk_{mode}_{app}_{secret}", f"pk_{mode}_{app}")
