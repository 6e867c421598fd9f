"""OpenRouter's management API: one capped key per grant (``/keys``, with the domain's management key).

Each key's own limit is the grant's cap and resets monthly at midnight UTC on the
first, the same calendar month the embed meters; that limit is the hard ceiling
that holds even if an app's metering were wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from ..money import Micros, micros_from_usd, usd_number

__all__ = ["UpstreamFailure", "UpstreamKeys"]


class UpstreamFailure(Exception):
    """The upstream did not do what was asked (unreachable, refused, or an odd answer)."""


class UpstreamKeys:
    """Create, read, re-limit and delete the domain's per-grant keys."""

    def __init__(
        self,
        base_url: str,
        management_key: str | None,
        http: Callable[[], aiohttp.ClientSession],
        *,
        timeout_seconds: float = 15.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._management_key = management_key
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def create(self, name: str, limit: Micros, *, monthly: bool = True) -> tuple[str, str]:
        """A new key limited to ``limit`` a month (or in all, when not ``monthly``: a one-time
        grant's key): ``(hash, secret)``; the secret is never seen again."""
        body: dict[str, object] = {"name": name[:100], "limit": usd_number(limit)}
        if monthly:
            body["limit_reset"] = "monthly"
        status, payload = await self._call("POST", "/keys", body)
        data = payload.get("data") if isinstance(payload, dict) else None
        secret = payload.get("key") if isinstance(payload, dict) else None
        if status not in (200, 201) or not isinstance(data, dict) or not isinstance(secret, str):
            raise UpstreamFailure(f"creating a key answered HTTP {status}")
        key_hash = data.get("hash")
        if not isinstance(key_hash, str) or not key_hash:
            raise UpstreamFailure("the created key has no hash")
        return key_hash, secret

    async def set_limit(self, key_hash: str, limit: Micros) -> None:
        status, _ = await self._call("PATCH", f"/keys/{key_hash}", {"limit": usd_number(limit)})
        if status != 200:
            raise UpstreamFailure(f"changing the key's limit answered HTTP {status}")

    async def delete(self, key_hash: str) -> None:
        """Delete a key; one that is gone already counts as deleted."""
        status, _ = await self._call("DELETE", f"/keys/{key_hash}")
        if status not in (200, 204, 404):
            raise UpstreamFailure(f"deleting the key answered HTTP {status}")

    async def monthly_usage(self, key_hash: str) -> Micros | None:
        """This month's spend on a key (``usage_monthly``); ``None`` when the upstream cannot say."""
        try:
            status, payload = await self._call("GET", f"/keys/{key_hash}")
        except UpstreamFailure:
            return None
        data = payload.get("data") if isinstance(payload, dict) else None
        usage = data.get("usage_monthly") if isinstance(data, dict) else None
        if status != 200 or isinstance(usage, bool) or not isinstance(usage, (int, float)):
            return None
        return micros_from_usd(usage)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        if not self._management_key:
            raise UpstreamFailure("the consent domain has no upstream management key configured")
        headers = {"authorization": f"Bearer {self._management_key}"}
        try:
            async with self._http().request(
                method, self.base_url + path, json=body, headers=headers, timeout=self._timeout
            ) as response:
                status = response.status
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamFailure(f"the upstream could not be reached: {type(exc).__name__}") from exc
        return status, payload
