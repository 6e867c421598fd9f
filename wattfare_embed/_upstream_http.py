"""The embed's HTTP client to the upstream: a keep-alive pool that never outlives the upstream's
idle timeout, and a POST that survives a pooled connection the upstream had already closed.

An upstream closes connections idle longer than its own timeout. A request sent on such a
connection in the instant before the close reaches us is reset unread (``ServerDisconnectedError``
or ``ClientOSError`` before any byte of an answer). The pool therefore drops idle connections
first (``upstream_keepalive_seconds``, below the usual 5 s and up); and a request that still fails
that way on a reused connection was never received, so it is sent once more on a fresh one.
"""

from __future__ import annotations

import contextvars
import weakref
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace

__all__ = ["NotReceived", "UpstreamHttp", "open_upstream_http"]

# A reused connection reset before any byte came back: the upstream closed it as idle, unread.
_RESET_UNREAD = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class _Attempt:
    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


# The metered POST in progress in this task, for the connector to mark when it got a pooled connection.
_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar("wattfare_upstream_attempt", default=None)


class _PoolConnector(aiohttp.TCPConnector):
    """A pool that tells a metered POST whether its connection was used before.

    A connection is reused when its protocol was handed out before. This replaces a trace
    config (``on_connection_reuseconn``): with one, aiohttp builds trace objects and awaits a
    signal at every step of every request on the session, to learn this one fact."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._handed_out: weakref.WeakSet[object] = weakref.WeakSet()

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        if protocol in self._handed_out:
            attempt = _ATTEMPT.get()
            if attempt is not None:
                attempt.reused = True
        elif protocol is not None:
            self._handed_out.add(protocol)
        return connection


class UpstreamHttp:
    """The pooled session (``session``, for every upstream call) and ``post_metered`` for the
    metered calls, which retries a reset-unread request once on a connection of its own."""

    def __init__(self, session: aiohttp.ClientSession, timeout: aiohttp.ClientTimeout) -> None:
        self.session = session
        self._timeout = timeout
        self._fresh: aiohttp.ClientSession | None = None
        self.retried = 0  # requests sent again after a reset on a reused connection

    async def post_metered(self, url: str, *, data: bytes, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """POST, once more on a fresh connection when a reused one was reset before any byte came
        back. Raises ``NotReceived`` when that retry could not connect: the upstream got nothing."""
        attempt = _Attempt()
        token = _ATTEMPT.set(attempt)
        try:
            return await self.session.post(url, data=data, headers=headers)
        except aiohttp.ClientConnectorError:
            raise
        except _RESET_UNREAD:
            if not attempt.reused:
                raise
        finally:
            _ATTEMPT.reset(token)
        self.retried += 1
        try:
            return await self._fresh_session().post(url, data=data, headers=headers)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise NotReceived(type(exc).__name__) from None

    def _fresh_session(self) -> aiohttp.ClientSession:
        if self._fresh is None or self._fresh.closed:
            self._fresh = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(force_close=True), auto_decompress=False
            )
        return self._fresh

    async def close(self) -> None:
        await self.session.close()
        if self._fresh is not None:
            await self._fresh.close()


class NotReceived(Exception):
    """The request never reached the upstream (its retry could not even connect)."""


def open_upstream_http(*, read_timeout: float, keepalive_seconds: float) -> UpstreamHttp:
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read_timeout)
    session = aiohttp.ClientSession(
        timeout=timeout,
        connector=_PoolConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=keepalive_seconds),
        auto_decompress=False,
    )
    return UpstreamHttp(session, timeout)
