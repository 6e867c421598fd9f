"""OpenRouter's own OAuth PKCE: the user approves on openrouter.ai, funded by their credits."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import aiohttp

from ..errors import GrantInvalidError, UpstreamError
from ..keys import AppKeys
from .base import AuthorityContext, AuthorizeRequest, FundingGrant

__all__ = ["OpenRouterConsent"]


class OpenRouterConsent:
    """Connect a user's own OpenRouter account.

    ```python
    Wattfare(consent=OpenRouterConsent())
    ```

    The key OpenRouter returns belongs to the user, who can set its own limit on
    openrouter.ai; the embed always enforces the approved cap locally as well.
    OpenRouter offers apps no call to delete a user's key, so disconnecting
    drops the key from the database (it can no longer be used by the app) and
    the user may delete it on openrouter.ai.
    """

    name = "openrouter"

    def __init__(
        self,
        *,
        auth_url: str = "https://openrouter.ai/auth",
        api_url: str = "https://openrouter.ai/api/v1",
    ) -> None:
        self.auth_url = auth_url
        self.api_url = api_url.rstrip("/")

    def check(self, keys: AppKeys) -> None:
        return None

    def authorize_url(self, request: AuthorizeRequest, context: AuthorityContext) -> str:
        query = urlencode(
            {
                "callback_url": request.redirect_uri,
                "code_challenge": request.code_challenge,
                "code_challenge_method": "S256",
                "state": request.state,
            }
        )
        return f"{self.auth_url}?{query}"

    async def exchange(self, code: str, verifier: str, redirect_uri: str, context: AuthorityContext) -> FundingGrant:
        body = {"code": code, "code_verifier": verifier, "code_challenge_method": "S256"}
        try:
            async with context.http.post(f"{self.api_url}/auth/keys", json=body) as response:
                status = response.status
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None  # an HTML error page: the status still says what happened
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError("OpenRouter could not be reached to finish the connection") from exc
        if status in (400, 401, 403):
            raise GrantInvalidError("OpenRouter refused the authorization code (expired, used or mismatched)")
        key = payload.get("key") if isinstance(payload, dict) else None
        if status != 200 or not isinstance(key, str):
            raise UpstreamError(f"OpenRouter answered the key exchange with HTTP {status}")
        return FundingGrant(credential=key, grant_id="or_" + hashlib.sha256(key.encode()).hexdigest()[:24])

    async def revoke(self, credential: str | None, grant_id: str | None, context: AuthorityContext) -> None:
        return None
