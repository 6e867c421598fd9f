"""``wf.grant(token)``: a one-time grant's status and metered clients, on the app's server."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .client import MeteredClients
from .errors import GrantInvalidError
from .grants import GRANT_TOKEN_PREFIX, GrantStatus, grant_token_hash

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["WattfareGrant", "grant_header"]


def grant_header(grant_token: str) -> dict[str, str]:
    """The header that spends a grant, for apps calling the proxy over HTTP with their secret key.

    ```python
    client = openai.AsyncOpenAI(base_url=f"{app_url}/wattfare/api/v1", api_key=WATTFARE_SECRET_KEY,
                                default_headers=grant_header(token))
    ```
    """
    return {"X-Wattfare-Grant": grant_token}


class WattfareGrant(MeteredClients):
    """A one-time grant a visitor approved in the browser (``requestGrant()``), spent by the server.

    ```python
    grant = wf.grant(token)                       # the grantToken the browser sent along
    client = grant.openai()                       # each call takes one of the grant's requests
    reply = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=[...])
    print((await grant.status()).requests_left)
    ```

    A call past the grant (unknown, expired, used up, over its dollar cap, revoked) raises the
    SDK's 402 error whose body is ``grant_invalid``; ``to_wattfare_error(exc)`` gives
    ``GrantInvalidError``.
    """

    def __init__(self, embed: Wattfare, grant_token: str) -> None:
        if not isinstance(grant_token, str) or not grant_token.startswith(GRANT_TOKEN_PREFIX):
            raise GrantInvalidError("a grant token starts with wfg_ (the grantToken requestGrant() resolved with)")
        self._embed = embed
        self._token = grant_token

    def _caller_headers(self) -> dict[str, str]:
        return grant_header(self._token)

    async def status(self) -> GrantStatus:
        """Requests and dollars left, and whether the grant still spends (``active``); never an error."""
        await self._embed.startup()
        token_hash = grant_token_hash(self._token)
        record = await self._embed.store.find_grant(self._embed.keys.app_id, token_hash)
        # Its id is known only now: read again if this process still owed it settles it answered.
        if record is not None and await self._embed.proxy.unsettled.caught_up(record.id):
            record = await self._embed.store.find_grant(self._embed.keys.app_id, token_hash)
        return GrantStatus.of(record, int(time.time()))

    async def revoke(self) -> None:
        """End the grant here (the app is done with it) and ask the consent authority to end its key."""
        await self._embed.startup()
        record = await self._embed.store.find_grant(self._embed.keys.app_id, grant_token_hash(self._token))
        if record is None or record.revoked:
            return
        credential = self._embed.open_credential_of_grant(record)
        await self._embed.store.revoke_grant(self._embed.keys.app_id, record.id, int(time.time()))
        self._embed.connection_ended(record.id)
        await self._embed.revoke_with_authority(credential, record.authority_grant_id)

    def __repr__(self) -> str:
        return "WattfareGrant(wfg_…)"  # the token is a bearer secret: never in a repr or a log
