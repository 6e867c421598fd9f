"""PKCE (RFC 7636) S256: a verifier and its challenge, and random opaque values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["challenge_matches", "new_verifier", "s256_challenge"]


def new_verifier() -> str:
    """43 to 128 characters from the unreserved set; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def challenge_matches(verifier: str, challenge: str) -> bool:
    return hmac.compare_digest(s256_challenge(verifier), challenge)
