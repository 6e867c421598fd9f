"""Key derivation and at-rest encryption of funding credentials."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CredentialBox", "derive_key"]


def derive_key(secret: str, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose, derived from a secret with HKDF-SHA256.

    Separate purposes get unrelated keys, so a leaked token-signing key says
    nothing about the credential key.
    """
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"wattfare_embed", info=purpose).derive(secret.encode())


class CredentialBox:
    """AES-256-GCM for funding credentials at rest.

    The stored form is ``v1.<base64(nonce + ciphertext)>``; the owner
    (``app_id/app_user_id``) is bound as associated data, so a ciphertext copied onto another user's
    row does not decrypt.
    """

    def __init__(self, secret: str) -> None:
        self._aead = AESGCM(derive_key(secret, b"wattfare credentials v1"))

    def seal(self, plaintext: str, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), bound_to.encode())
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, stored: str, bound_to: str) -> str:
        version, _, payload = stored.partition(".")
        if version != "v1":
            raise ValueError("unknown credential format")
        raw = base64.urlsafe_b64decode(payload)
        return self._aead.decrypt(raw[:12], raw[12:], bound_to.encode()).decode()
