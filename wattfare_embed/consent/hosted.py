"""A consent domain speaking the Wattfare consent protocol (docs/consent-protocol.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import aiohttp

from ..errors import AuthError, ConfigurationError, GrantInvalidError, UpstreamError
from ..keys import AppKeys
from ._protocol import DISCOVERY_PATH, PROTOCOL_VERSION, is_secure_url, parse_wire_usd, wire_usd
from .base import AuthorityContext, AuthorizeRequest, FundingGrant

__all__ = ["HostedConsent"]

logger = logging.getLogger("wattfare_embed")


@dataclass(frozen=True, slots=True)
class Discovery:
    """The endpoints a domain announces at ``/.well-known/wattfare-configuration``."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    fetched_at: float


class HostedConsent:
    """Users approve a monthly cap on a consent domain: the hosted service or a self-hosted one.

    ```python
    Wattfare(consent=HostedConsent("https://consent.example.com"), ...)
    ```

    The domain mints one upstream key per grant whose own limit is the approved cap,
    so the cap holds even if the app's metering were wrong. Register the app at the
    domain with its redirect URI ``{mount}/callback`` and webhook URL ``{mount}/webhooks``;
    the key pair the domain prints is the embed's ``secret_key`` and ``publishable_key``.
    Plain ``http`` is only accepted for loopback hosts unless ``allow_insecure_http``.
    """

    name = "hosted"

    def __init__(
        self,
        domain_url: str,
        *,
        discovery_ttl_seconds: float = 3600.0,
        timeout_seconds: float = 15.0,
        allow_insecure_http: bool = False,
    ) -> None:
        self.domain_url = domain_url.rstrip("/")
        self.discovery_ttl_seconds = discovery_ttl_seconds
        self.allow_insecure_http = allow_insecure_http
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._discovery: Discovery | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._check_url(self.domain_url, "the consent domain URL")

    def _check_url(self, url: str, what: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{what} must be an http(s) URL, not {url!r}")
        if not (self.allow_insecure_http or is_secure_url(url)):
            raise ConfigurationError(
                f"{what} must use https (plain http only to localhost), not {url!r}; "
                "pass allow_insecure_http=True to accept it anyway"
            )

    def check(self, keys: AppKeys) -> None:
        return None

    # -- discovery --------------------------------------------------------------------------

    async def discover(self, http: aiohttp.ClientSession, *, force: bool = False) -> Discovery:
        """The domain's discovery document, fetched once and cached for ``discovery_ttl_seconds``."""
        cached = self._discovery
        if cached is not None and not force and time.monotonic() - cached.fetched_at < self.discovery_ttl_seconds:
            return cached
        # Two callers may both fetch once the cache turns stale; the document is small and the same.
        self._discovery = await self._fetch_discovery(http)
        return self._discovery

    async def warm_up(self, context: AuthorityContext) -> None:
        """Fetch the discovery document ahead of the first consent; never raises."""
        try:
            await self.discover(context.http)
        except Exception as exc:
            logger.warning("the consent domain %s did not answer its discovery document: %s", self.domain_url, exc)

    async def _fetch_discovery(self, http: aiohttp.ClientSession) -> Discovery:
        url = self.domain_url + DISCOVERY_PATH
        try:
            async with http.get(url, timeout=self._timeout, allow_redirects=False) as response:
                payload = await response.json(content_type=None) if response.status == 200 else None
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError(f"the consent domain {self.domain_url} could not be reached") from exc
        if not isinstance(payload, dict):
            raise UpstreamError(f"the consent domain answered its discovery document with HTTP {status}")
        # RFC 8414 §3.3: the issuer must be the URL we were configured with, or a document
        # served by someone else could send our client secret to their token endpoint.
        issuer = str(payload.get("issuer", "")).rstrip("/")
        if issuer != self.domain_url:
            raise UpstreamError(f"the consent domain's issuer {issuer!r} is not {self.domain_url!r}")
        if payload.get("protocol_version") != PROTOCOL_VERSION:
            raise UpstreamError(f"the consent domain speaks protocol {payload.get('protocol_version')!r}, not 1")
        if "S256" not in (payload.get("code_challenge_methods_supported") or []):
            raise UpstreamError("the consent domain does not support PKCE S256")
        endpoints = {
            name: self._same_origin_endpoint(payload.get(name), name)
            for name in ("authorization_endpoint", "token_endpoint", "revocation_endpoint")
        }
        return Discovery(issuer=issuer, fetched_at=time.monotonic(), **endpoints)

    def _same_origin_endpoint(self, value: Any, name: str) -> str:
        origin = urlsplit(self.domain_url)
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
            raise UpstreamError(f"the consent domain's {name} is not on its own origin: {value!r}")
        return str(value)

    def _cached_for_authorize(self, http: aiohttp.ClientSession) -> Discovery:
        cached = self._discovery
        stale = cached is None or time.monotonic() - cached.fetched_at >= self.discovery_ttl_seconds
        if stale and (self._refreshing is None or self._refreshing.done()):
            # authorize_url is synchronous: refresh in the background, use what we have meanwhile.
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly(http))
        if cached is None:
            raise UpstreamError(f"the consent domain {self.domain_url} has not answered yet; try again in a moment")
        return cached

    async def _refresh_quietly(self, http: aiohttp.ClientSession) -> None:
        try:
            await self.discover(http, force=True)
        except UpstreamError as exc:
            logger.warning("refreshing the consent domain's discovery document failed: %s", exc.message)

    # -- the protocol -----------------------------------------------------------------------

    def authorize_url(self, request: AuthorizeRequest, context: AuthorityContext) -> str:
        params = {
            "response_type": "code",
            "client_id": context.keys.publishable_key,
            "redirect_uri": request.redirect_uri,
            "state": request.state,
            "code_challenge": request.code_challenge,
            "code_challenge_method": "S256",
        }
        if request.grant_requests is not None:
            # A one-time grant (docs/consent-protocol.md, §3.1): a request count and a dollar cap.
            params["grant_requests"] = str(request.grant_requests)
            params["max_usd"] = wire_usd(request.monthly_cap)
        else:
            params["monthly_usd"] = wire_usd(request.monthly_cap)
        query = urlencode(params)
        return f"{self._cached_for_authorize(context.http).authorization_endpoint}?{query}"

    async def exchange(self, code: str, verifier: str, redirect_uri: str, context: AuthorityContext) -> FundingGrant:
        discovery = await self.discover(context.http)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        status, payload = await self._post(context, discovery.token_endpoint, form)
        error = payload.get("error") if isinstance(payload, dict) else None
        if status == 401 or error == "invalid_client":
            raise AuthError("the consent domain refused this app's keys (invalid_client)")
        if error == "invalid_grant":
            raise GrantInvalidError("the consent domain refused the code: it is used, expired or does not match")
        if status != 200 or not isinstance(payload, dict):
            raise UpstreamError(f"the consent domain answered the token request with HTTP {status} ({error})")
        return self._grant(payload)

    def _grant(self, payload: dict[str, Any]) -> FundingGrant:
        key, grant_id, upstream = payload.get("funding_key"), payload.get("grant_id"), payload.get("upstream_url")
        kind = payload.get("token_type")
        if kind not in ("funding", "grant") or not isinstance(key, str) or not key:
            raise UpstreamError("the consent domain's token response has no funding key")
        if not isinstance(grant_id, str) or not grant_id or len(grant_id) > 128:
            raise UpstreamError("the consent domain's token response has no grant id")
        if upstream is not None and (not isinstance(upstream, str) or not self._upstream_allowed(upstream)):
            raise UpstreamError(f"the consent domain named an upstream that is not https: {upstream!r}")
        requests = expires_at = None
        if kind == "grant":
            requests, expires_at = payload.get("grant_requests"), payload.get("expires_at")
            if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
                raise UpstreamError("the consent domain's grant has no request count")
            if isinstance(expires_at, bool) or not isinstance(expires_at, int):
                raise UpstreamError("the consent domain's grant has no expiry")
        try:
            cap = parse_wire_usd(payload.get("max_usd" if kind == "grant" else "monthly_usd"))
            hard = payload.get("hard_limit_usd")
            hard_limit = parse_wire_usd(hard) if hard is not None else None
        except ValueError as exc:
            raise UpstreamError(f"the consent domain's token response has a bad amount: {exc}") from exc
        return FundingGrant(
            credential=key,
            grant_id=grant_id,
            monthly_cap=cap,
            hard_limit=hard_limit,
            upstream_url=upstream.rstrip("/") if upstream else None,
            grant_requests=requests,
            expires_at=expires_at,
        )

    def _upstream_allowed(self, url: str) -> bool:
        # The funding key is sent there on every request: never over plain http off this machine.
        parts = urlsplit(url)
        return bool(parts.hostname) and (is_secure_url(url) or (self.allow_insecure_http and parts.scheme == "http"))

    async def revoke(self, credential: str | None, grant_id: str | None, context: AuthorityContext) -> None:
        if not grant_id:
            return
        discovery = await self.discover(context.http)
        form = {"token": grant_id, "token_type_hint": "funding_grant"}
        status, payload = await self._post(context, discovery.revocation_endpoint, form)
        if status != 200:
            error = payload.get("error") if isinstance(payload, dict) else None
            raise UpstreamError(f"the consent domain answered the revocation with HTTP {status} ({error})")

    async def _post(self, context: AuthorityContext, url: str, form: dict[str, str]) -> tuple[int, Any]:
        # RFC 6749 §2.3.1: both halves form-encoded before Basic (a no-op for well-formed keys).
        pair = f"{quote_plus(context.keys.publishable_key)}:{quote_plus(context.keys.secret_key)}"
        headers = {"authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
        try:
            async with context.http.post(
                url, data=form, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"the consent domain {self.domain_url} could not be reached") from exc
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None
