"""The development authority: a consent page served by the embed itself (test keys only)."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlencode

import jwt

from ..crypto import derive_key
from ..errors import ConfigurationError, GrantInvalidError
from ..keys import AppKeys
from ..money import Micros
from ..pkce import challenge_matches
from .base import AuthorityContext, AuthorizeRequest, FundingGrant

__all__ = ["DevConsent"]

_CODE_AUDIENCE = "wattfare:dev-consent-code"
SIMULATED_KEY_PREFIX = "sk-or-dev-simulated-"


class DevConsent:
    """Approve caps on a page inside the embed, for development and tests.

    ```python
    Wattfare(consent=DevConsent(auto_approve=False))  # show Approve / Deny
    ```

    Funding is the developer's own ``upstream_api_key`` when one is set, else a
    simulated key that only the fake upstream accepts. Live keys refuse it.
    """

    name = "dev"

    def __init__(self, *, auto_approve: bool = True) -> None:
        self.auto_approve = auto_approve

    def check(self, keys: AppKeys) -> None:
        if keys.live:
            raise ConfigurationError(
                "DevConsent approves budgets without a real consent screen and only runs with test keys "
                "(sk_test_…); use OpenRouterConsent() or HostedConsent(...) with live keys"
            )

    def authorize_url(self, request: AuthorizeRequest, context: AuthorityContext) -> str:
        return f"{request.mount_url}/dev/consent?{urlencode({'state': request.state})}"

    def issue_code(
        self,
        state: str,
        code_challenge: str,
        monthly_cap: Micros,
        context: AuthorityContext,
        *,
        grant_requests: int | None = None,
    ) -> str:
        """A signed, 10-minute code carrying the approved cap (and a grant's request count), bound
        to the PKCE challenge."""
        now = int(time.time())
        claims: dict[str, object] = {
            "aud": _CODE_AUDIENCE,
            "state": state,
            "cap": monthly_cap,
            "chl": code_challenge,
            "iat": now,
            "exp": now + 600,
        }
        if grant_requests is not None:
            claims["req"] = grant_requests
        return jwt.encode(claims, self._key(context), algorithm="HS256")

    async def exchange(self, code: str, verifier: str, redirect_uri: str, context: AuthorityContext) -> FundingGrant:
        try:
            claims = jwt.decode(code, self._key(context), algorithms=["HS256"], audience=_CODE_AUDIENCE)
        except jwt.PyJWTError as exc:
            raise GrantInvalidError("the consent code is not valid or has expired") from exc
        if not challenge_matches(verifier, str(claims.get("chl", ""))):
            raise GrantInvalidError("the consent code does not match this consent request")
        credential = context.upstream_api_key or SIMULATED_KEY_PREFIX + secrets.token_hex(16)
        requests = claims.get("req")
        return FundingGrant(
            credential=credential,
            grant_id="dev_" + secrets.token_hex(8),
            monthly_cap=int(claims["cap"]),
            grant_requests=requests if isinstance(requests, int) else None,
        )

    async def revoke(self, credential: str | None, grant_id: str | None, context: AuthorityContext) -> None:
        return None

    @staticmethod
    def _key(context: AuthorityContext) -> bytes:
        return derive_key(context.keys.secret_key, b"wattfare dev consent codes v1")
