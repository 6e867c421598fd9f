"""The metered, capped, OpenAI-compatible proxy: one request, read top to bottom.

authenticate → price → reserve → forward (streaming untouched) → settle exactly once.

The routes are raw ASGI endpoints: Starlette routes to them for free, but its
``Request``/``StreamingResponse`` cost ~0.3 ms a request (see ``bench/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from .auth import secret_key_matches
from .crypto import derive_key
from .errors import (
    AuthError,
    BudgetExceededError,
    FundingInvalidError,
    InvalidRequestError,
    NotConnectedError,
    UpstreamError,
    WattfareError,
)
from .metering.estimate import Admission, affordable_tokens, plan_admission
from .metering.meter import ResponseMeter
from .metering.pricing import ModelPrice, PriceBook
from .metering.upstream_errors import error_for_upstream_status
from .money import micros_from_usd, usd_text
from .store import ConnectionState, Refusal, Reservation, ReservationRequest

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["Proxy"]

logger = logging.getLogger("wattfare_embed")

USER_HEADER = "x-wattfare-user"
# Headers that belong to one hop, or that we change (length, encoding), are not relayed.
_NOT_RELAYED = frozenset(
    {
        "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length",
        "content-encoding", "proxy-authenticate", "proxy-authorization", "set-cookie", "date", "server",
    }
)  # fmt: skip
_RECONCILE_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_RECONCILE_GIVE_UP_SECONDS = 86400


@dataclass(slots=True, eq=False)
class _OpenStream:
    """What the proxy needs to stop one live stream from outside."""

    connection_id: str
    revoked: bool = False
    upstream: aiohttp.ClientResponse | None = None

    def stop(self) -> None:
        self.revoked = True
        if self.upstream is not None:
            self.upstream.close()


@dataclass(slots=True)
class _Exchange:
    """One metered request in flight."""

    user: str
    reservation: Reservation
    price: ModelPrice
    admission: Admission
    meter: ResponseMeter
    refused_upstream: bool = False
    disconnected: bool = False
    cut_off: str | None = None
    settled: bool = field(default=False)


class Proxy:
    """Chat completions, embeddings and the model list, metered against each user's cap."""

    def __init__(self, embed: Wattfare) -> None:
        self._embed = embed
        self._settings = embed.settings
        self.prices = PriceBook(
            embed.settings.upstream_url,
            lambda: embed.http,
            api_key=embed.settings.upstream_api_key,
            ttl_seconds=embed.settings.models_ttl_seconds,
        )
        self._user_key = derive_key(embed.keys.secret_key, b"wattfare upstream user ids v1")
        self._open: dict[str, set[_OpenStream]] = {}
        embed.on_connection_ended(self._stop_streams)

    # -- ASGI entry points ------------------------------------------------------------------

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._metered(scope, receive, send, kind="chat")

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._metered(scope, receive, send, kind="embeddings")

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self._caller(Headers(scope=scope), allow_anonymous_user=True)
            listing = await self.prices.listing()
        except WattfareError as exc:
            await _send_error(send, exc)
            return
        await _send_bytes(send, 200, listing, [(b"content-type", b"application/json")])

    # -- one metered request ----------------------------------------------------------------

    async def _metered(self, scope: Scope, receive: Receive, send: Send, *, kind: str) -> None:
        try:
            user = self._caller(Headers(scope=scope))
            payload = _parse_payload(await _read_body(receive, self._settings.max_body_bytes), kind)
            price = await self._price(payload["model"])
            admission = plan_admission(payload, price, completion=kind == "chat")
            reservation = await self._reserve(user, payload["model"], kind, price, admission)
        except WattfareError as exc:
            await _send_error(send, exc)
            return

        exchange = _Exchange(user, reservation, price, admission, ResponseMeter(price, admission.prompt_cost))
        try:
            await self._forward(exchange, payload, kind, receive, send)
        finally:
            # Shielded: a cancelled request (client gone, server stopping) still settles.
            await asyncio.shield(self._settle(exchange))

    def _caller(self, headers: Headers, *, allow_anonymous_user: bool = False) -> str:
        """The app user a request spends for: secret key + X-Wattfare-User, or a session token."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("send `Authorization: Bearer sk_…` with `X-Wattfare-User: <your user id>`")
        if token.startswith("sk_"):
            if not secret_key_matches(token, self._embed.keys):
                raise AuthError("the secret key is not this app's")
            user = headers.get(USER_HEADER, "")
            if not user and not allow_anonymous_user:
                raise InvalidRequestError("name the app user to charge in the X-Wattfare-User header")
            if len(user) > 255:
                raise InvalidRequestError("X-Wattfare-User may be at most 255 characters")
            return user
        if not self._settings.allow_browser_inference:
            raise AuthError(
                "model calls need the app's secret key; browser inference with session tokens is off "
                "(Wattfare(allow_browser_inference=True) turns it on)"
            )
        return self._embed.tokens.verify(token).app_user_id

    async def _price(self, model: str) -> ModelPrice:
        price = await self.prices.price(model)
        if price is None:
            raise InvalidRequestError(f"unknown model {model!r}; GET /api/v1/models lists what is available")
        if not price.known and not self._settings.allow_unpriced_models:
            raise InvalidRequestError(
                f"model {model!r} has no price to meter in advance, so it cannot run under a cap "
                "(Wattfare(allow_unpriced_models=True) lets it hold the user's whole remaining budget)"
            )
        return price

    async def _reserve(self, user: str, model: str, kind: str, price: ModelPrice, admission: Admission) -> Reservation:
        wanted, minimum = admission.wanted, admission.minimum
        if not price.known:
            wanted, minimum = 2**62, 1  # unknown price: hold whatever is left, charge what is reported
        now = int(time.time())
        result = await self._embed.store.reserve(
            ReservationRequest(
                app_id=self._embed.keys.app_id,
                app_user_id=user,
                wanted=wanted,
                minimum=minimum,
                kind=kind,
                model=model,
                ttl_seconds=self._settings.reservation_ttl_seconds,
            ),
            now,
        )
        if isinstance(result, Reservation):
            return result
        if result is Refusal.NOT_CONNECTED:
            raise NotConnectedError("this user has not connected an AI budget yet")
        if result is Refusal.REVOKED:
            raise NotConnectedError("this user disconnected their AI budget; ask them to connect again")
        if result is Refusal.FUNDING_INVALID:
            raise FundingInvalidError("the upstream refused this user's funding; ask them to connect again")
        status = await self._embed.status(user)
        raise BudgetExceededError(
            f"the monthly cap of ${usd_text(status.monthly_cap)} is reached: ${usd_text(status.remaining)} left, "
            f"this request needs at least ${usd_text(minimum)}"
        )

    # -- forwarding -------------------------------------------------------------------------

    def _upstream_request(
        self, exchange: _Exchange, payload: dict[str, Any], kind: str
    ) -> tuple[str, bytes, dict[str, str]]:
        embed, reservation = self._embed, exchange.reservation
        if kind == "chat":
            limit = affordable_tokens(exchange.admission, reservation.amount, exchange.price)
            # The cap is enforced before the call: the upstream stops at what the user can afford.
            field_name = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
            payload[field_name] = limit
            if payload.get("stream") is True:
                payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        payload["user"] = hmac.new(self._user_key, exchange.user.encode(), hashlib.sha256).hexdigest()[:32]
        credential = embed.open_credential(reservation.connection) or ""
        headers = {
            "authorization": f"Bearer {credential}",
            "content-type": "application/json",
            "accept-encoding": "identity",
            "x-openrouter-title": self._settings.app_name,
            "x-title": self._settings.app_name,
        }
        if self._settings.public_url:
            headers["http-referer"] = self._settings.public_url
        base = reservation.connection.upstream_url or self._settings.upstream_url
        path = "/chat/completions" if kind == "chat" else "/embeddings"
        return base + path, json.dumps(payload, separators=(",", ":")).encode(), headers

    async def _forward(
        self, exchange: _Exchange, payload: dict[str, Any], kind: str, receive: Receive, send: Send
    ) -> None:
        url, body, headers = self._upstream_request(exchange, payload, kind)
        try:
            response = await self._embed.http.post(url, data=body, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            exchange.refused_upstream = True
            await _send_error(send, UpstreamError(f"the model provider could not be reached: {type(exc).__name__}"))
            return
        try:
            if response.status >= 400:
                exchange.refused_upstream = True
                error = error_for_upstream_status(response.status, await response.read(), dict(response.headers))
                if isinstance(error, FundingInvalidError) and response.status == 401:
                    await self._mark_funding_invalid(exchange)
                await _send_error(send, error)
                return
            exchange.meter.generation_id = response.headers.get("x-generation-id")
            relayed = [
                (name.lower().encode(), value.encode())
                for name, value in response.headers.items()
                if name.lower() not in _NOT_RELAYED
            ]
            if "text/event-stream" in response.headers.get("content-type", ""):
                await self._relay_stream(exchange, response, relayed, receive, send)
            else:
                await self._relay_body(exchange, response, relayed, send)
        finally:
            response.close()

    async def _relay_body(
        self, exchange: _Exchange, response: aiohttp.ClientResponse, headers: list[tuple[bytes, bytes]], send: Send
    ) -> None:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            await _send_error(send, UpstreamError("the model provider dropped the response"))
            return
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                exchange.meter.observe(parsed)
        await self._settle(exchange)  # the client sees success only once the ledger is final
        await _send_bytes(send, response.status, body, headers)

    async def _relay_stream(
        self,
        exchange: _Exchange,
        response: aiohttp.ClientResponse,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
    ) -> None:
        meter, hold = exchange.meter, exchange.reservation.amount
        control = _OpenStream(exchange.reservation.connection.id, upstream=response)
        self._open.setdefault(control.connection_id, set()).add(control)
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, control, exchange))
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            async for chunk in response.content.iter_any():
                if control.revoked:
                    exchange.cut_off = "revoked"
                    break
                meter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if meter.trusted_cost() is None and meter.estimated_cost() > hold:
                    exchange.cut_off = "budget_exceeded"
                    break
        except (aiohttp.ClientError, TimeoutError):
            # Closed by us (client gone, revoked) or dropped by the provider mid-stream.
            if not exchange.disconnected and not control.revoked:
                exchange.cut_off = "upstream"
            elif control.revoked:
                exchange.cut_off = "revoked"
        finally:
            watcher.cancel()
            self._open.get(control.connection_id, set()).discard(control)
            response.close()
        if exchange.disconnected:
            return
        if exchange.cut_off:
            await send({"type": "http.response.body", "body": _cut_off_event(exchange.cut_off), "more_body": True})
        await self._settle(exchange)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # -- settling ---------------------------------------------------------------------------

    async def _settle(self, exchange: _Exchange) -> None:
        """Final ledger row for the request, exactly once, whatever happened."""
        if exchange.settled:
            return
        exchange.settled = True
        meter, reservation, now = exchange.meter, exchange.reservation, int(time.time())
        store = self._embed.store
        if exchange.refused_upstream:
            await store.settle(reservation.ledger_id, 0, "none", now)
            return
        trusted = meter.trusted_cost()
        if trusted is not None:
            await store.settle(reservation.ledger_id, trusted, "reported", now, generation_id=meter.generation_id)
            return
        # No usable figure (client gone, stream cut, upstream error): charge an estimate now and
        # ask the upstream's generation record for the truth later.
        if meter.finish_reason == "error" and not exchange.disconnected:
            estimate = 0  # the upstream does not bill tokens of a generation that failed
        else:
            estimate = min(meter.estimated_cost(), reservation.amount)
        reconcile = meter.generation_id is not None
        await store.settle(
            reservation.ledger_id, estimate, "estimated", now, generation_id=meter.generation_id, reconcile=reconcile
        )
        if reconcile and meter.generation_id:
            credential = self._embed.open_credential(reservation.connection)
            base = reservation.connection.upstream_url or self._settings.upstream_url
            generation_id, ledger_id = meter.generation_id, reservation.ledger_id
            self._embed.run_in_background(lambda: self._reconcile_soon(ledger_id, generation_id, credential, base))

    async def _reconcile_soon(self, ledger_id: str, generation_id: str, credential: str | None, base: str) -> None:
        for delay in _RECONCILE_DELAYS:
            await asyncio.sleep(delay)
            if await self.reconcile_once(ledger_id, generation_id, credential, base):
                return

    async def reconcile_once(self, ledger_id: str, generation_id: str, credential: str | None, base: str) -> bool:
        """Ask the upstream what a generation cost; apply it. True when settled for good."""
        if not credential:
            return False
        try:
            async with self._embed.http.get(
                f"{base}/generation", params={"id": generation_id}, headers={"authorization": f"Bearer {credential}"}
            ) as response:
                if response.status != 200:
                    return False  # 404: the record is not there yet
                record = (await response.json(content_type=None)).get("data") or {}
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
            return False
        total = record.get("total_cost")
        if not isinstance(total, (int, float)) or isinstance(total, bool):
            return False
        await self._embed.store.reconcile(ledger_id, micros_from_usd(total), int(time.time()))
        return True

    async def sweep(self) -> None:
        """Settle reservations orphaned by a dead process; retry reconciliations still open."""
        store, now = self._embed.store, int(time.time())
        swept = await store.sweep_expired(now)
        if swept:
            logger.warning("settled %d reservations left open by a process that stopped", swept)
        for entry in await store.pending_reconciliations(limit=100):
            if now - entry.created_at > _RECONCILE_GIVE_UP_SECONDS or not entry.generation_id:
                await store.give_up_reconciliation(entry.id)
                continue
            record = await store.get_connection(self._embed.keys.app_id, entry.app_user_id, now)
            if record is None:
                continue
            base = record.upstream_url or self._settings.upstream_url
            await self.reconcile_once(entry.id, entry.generation_id, self._embed.open_credential(record), base)

    async def _mark_funding_invalid(self, exchange: _Exchange) -> None:
        await self._embed.store.set_status(
            self._embed.keys.app_id,
            exchange.user,
            ConnectionState.FUNDING_INVALID,
            int(time.time()),
            drop_credential=False,
        )

    def _stop_streams(self, connection_id: str) -> None:
        for control in list(self._open.get(connection_id, ())):
            control.stop()


# -- wire helpers ---------------------------------------------------------------------------


def _parse_payload(body: bytes, kind: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError("the request body is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError('`model` is required, e.g. "openai/gpt-4o-mini"')
    if kind == "chat":
        messages = payload.get("messages")
        if not (isinstance(messages, list) and messages) and not isinstance(payload.get("prompt"), str):
            raise InvalidRequestError("`messages` must be a non-empty list")
        if "stream" in payload and not isinstance(payload["stream"], bool):
            raise InvalidRequestError("`stream` must be true or false")
    elif not isinstance(payload.get("input"), (str, list)):
        raise InvalidRequestError("`input` must be a string or a list")
    return payload


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequestError("the client went away before sending the whole request")
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise InvalidRequestError(f"the request body is larger than {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


async def _watch_disconnect(receive: Receive, control: _OpenStream, exchange: _Exchange) -> None:
    """Close the upstream the moment the client goes, so billing stops where the provider supports it."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            exchange.disconnected = True
            if control.upstream is not None:
                control.upstream.close()
            return


def _cut_off_event(reason: str) -> bytes:
    error: WattfareError
    if reason == "revoked":
        error = NotConnectedError("the user disconnected their AI budget; the stream was stopped")
    elif reason == "upstream":
        error = UpstreamError("the model provider dropped the stream")
    else:
        error = BudgetExceededError("the user's monthly cap is reached; the stream was stopped")
    event = {**error.to_json(), "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n"


async def _send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_error(send: Send, error: WattfareError) -> None:
    headers = [(name.lower().encode(), value.encode()) for name, value in error.response_headers().items()]
    await _send_bytes(send, error.status, error.body(), headers)
