"""The metered, capped, OpenAI-compatible proxy: one request, read top to bottom.

authenticate → price → reserve → forward (streaming untouched) → settle exactly once.

The routes are raw ASGI endpoints: Starlette routes to them for free, but its
``Request``/``StreamingResponse`` cost ~0.3 ms a request (see ``bench/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from pydantic_core import to_json
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from ._dispatch import Endpoint
from ._eager import start_eagerly
from ._json import read_reply
from ._upstream_http import NotReceived
from ._upstream_identity import UpstreamIdentities
from .auth import model_caller
from .crypto import derive_key
from .errors import (
    FundingInvalidError,
    InvalidRequestError,
    NotConnectedError,
    UnavailableError,
    UpstreamError,
    WattfareError,
)
from .grants import GrantAdmission, is_grant_id
from .metering.dialects import CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES, RESPONSES, Dialect
from .metering.estimate import Admission, HoldPolicy, affordable_tokens, plan_admission
from .metering.generation_notes import GenerationNotes
from .metering.limits import pin_prices
from .metering.meter import ResponseMeter, TokenPrices
from .metering.pricing import PriceBook
from .metering.reconcile import Reconciler
from .metering.refusals import needs_status, refusal_error
from .metering.settle_batches import SettleBatches, Unsettled
from .metering.settle_journal import PendingSettle, SettleJournal
from .metering.streams import OpenStream, OpenStreams, Stopped, read_upstream, watch_disconnect
from .metering.upstream_errors import error_for_upstream_status
from .metering.wire import (
    cut_off_error,
    parse_request,
    read_body,
    relayed_headers,
    request_headers,
    require_json_body,
    send_bytes,
    send_error,
    upstream_headers,
)
from .store import ConnectionRecord, ConnectionState, Refusal, Reservation, ReservationRequest, new_ledger_id
from .telemetry import CANCELLED, OK, RequestTrace

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["Proxy"]

logger = logging.getLogger("wattfare_embed")

REVOCATION_POLL_SECONDS = 2.0
# Where each metered endpoint is, below the mount, and its dialect.
METERED_PATHS: dict[str, Dialect] = {
    "/api/v1/chat/completions": CHAT,
    "/api/v1/completions": COMPLETIONS,
    "/api/v1/responses": RESPONSES,
    "/api/v1/messages": MESSAGES,
    "/api/v1/embeddings": EMBEDDINGS,
}


@dataclass(slots=True)
class _Exchange:
    """One metered request in flight."""

    user: str
    dialect: Dialect
    reservation: Reservation
    admission: Admission
    meter: ResponseMeter
    control: OpenStream
    trace: RequestTrace
    passed_on: dict[str, str] = field(default_factory=dict)  # client headers the endpoint passes upstream
    outcome: str | None = None  # the error code the client got, once one was sent
    refused_upstream: bool = False
    outcome_unknown: bool = False
    cut_off: str | None = None
    settling: asyncio.Future[None] | None = None  # the request's one settle, once started
    owed: asyncio.Future[None] | None = None  # set once its answer is going out before its settle


class _ModelNotFound(InvalidRequestError):
    status = 404  # what OpenAI answers for a model it does not have, so clients raise their NotFoundError


class Proxy:
    """Chat completions, legacy completions, embeddings, the Responses API and Anthropic Messages, metered
    against each user's cap by one flow (each endpoint's differences are its ``Dialect``), and the
    model list."""

    def __init__(self, embed: Wattfare) -> None:
        self._embed = embed
        self._settings = embed.settings
        self.prices = PriceBook(
            embed.settings.upstream_url,
            lambda: embed.http,
            api_key=embed.settings.upstream_api_key,
            ttl_seconds=embed.settings.models_ttl_seconds,
        )
        self.reconciler = Reconciler(embed, self._credential)
        self._recorder = embed.recorder
        self._hold_policy = HoldPolicy(embed.settings.max_request_hold, embed.settings.media_hold)
        settings = embed.settings
        self._identities = UpstreamIdentities(
            self._credential,
            derive_key(embed.keys.secret_key, b"wattfare upstream user ids v1"),
            lambda credential: upstream_headers(credential, settings.app_name, settings.public_url),
        )
        self._open = OpenStreams()
        self._grants = GrantAdmission(embed)
        self._generations = GenerationNotes()  # for the sweeper, should this process die mid-request
        self.journal = SettleJournal(embed.settings.settle_journal_dir)  # settles the store could not take
        self._settles = SettleBatches(lambda: embed.store, self.journal)  # grouped, one transaction each
        self.unsettled = Unsettled()  # answered, not yet settled: what this process's reads wait for
        embed.on_connection_ended(self._connection_ended)
        embed.on_startup(self._start_revocation_watch)

    # -- ASGI entry points ------------------------------------------------------------------

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._metered(scope, receive, send, CHAT)

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._metered(scope, receive, send, COMPLETIONS)

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._metered(scope, receive, send, EMBEDDINGS)

    async def responses(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._metered(scope, receive, send, RESPONSES)

    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._metered(scope, receive, send, MESSAGES)

    def direct_endpoints(self) -> dict[str, Endpoint]:
        """The metered endpoints by path, each the one flow with its dialect bound: a ``partial``, so
        no coroutine of its own stands between the embed's entry and the flow."""
        return {path: functools.partial(self._metered, dialect=dialect) for path, dialect in METERED_PATHS.items()}

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self._caller(Headers(scope=scope), allow_anonymous_user=True)
            listing = await self.prices.listing()
        except WattfareError as exc:
            await send_error(send, exc)
            return
        await send_bytes(send, 200, listing, [(b"content-type", b"application/json")])

    async def model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /models/{id}`` (``client.models.retrieve(id)``): the upstream's entry, as an OpenAI model object."""
        model_id: str = scope["path_params"]["model_id"]
        try:
            self._caller(Headers(scope=scope), allow_anonymous_user=True)
            entry = await self.prices.model(model_id)
            if entry is None:
                raise _ModelNotFound(f"the upstream lists no model {model_id!r}")
        except WattfareError as exc:
            await send_error(send, exc)
            return
        author = model_id.split("/", 1)[0] if "/" in model_id else "openrouter"
        body = {"object": "model", "owned_by": author, **entry}
        await send_bytes(send, 200, json.dumps(body).encode(), [(b"content-type", b"application/json")])

    # -- one metered request ----------------------------------------------------------------

    async def _metered(self, scope: Scope, receive: Receive, send: Send, dialect: Dialect) -> None:
        trace = self._recorder.begin(dialect.operation)  # telemetry: NO_TRACE, doing nothing, when off
        try:
            headers = request_headers(scope)
            # A one-time grant's request names its grant (X-Wattfare-Grant) instead of a user.
            grant = self._grants.token_of(headers, dialect.api_key_header)
            user = self._caller(headers, api_key_header=dialect.api_key_header) if grant is None else ""
            trace.authenticated(user)
            # Input hardening (issue 10): JSON only, and the whole body within the deadline.
            require_json_body(headers)
            body = await read_body(receive, self._settings.max_body_bytes, timeout=self._settings.body_timeout_seconds)
            payload = parse_request(body, dialect.check)
            # Bounded admission: every billable part of the request priced at its dearest, or refused.
            request = dialect.read_request(payload)
            price = await self.prices.for_request(request, allow_unpriced=self._settings.allow_unpriced_models)
            trace.priced(payload["model"])
            admission = plan_admission(request, price, self._hold_policy)
            reservation = await self._reserve_shielded(user, payload["model"], dialect.kind, admission, grant)
            user = reservation.connection.app_user_id  # a grant's requests go as the grant's id
            trace.reserved(reservation.ledger_id, reservation.amount)
        except WattfareError as exc:
            trace.finished(exc.code)
            await send_error(send, exc, dialect.error_body)
            return

        meter = ResponseMeter(
            admission.prompt_cost,
            admission.output_price,
            hold=reservation.amount,
            free=price.free,
            read_event=dialect.read_event,
            usage_tokens=dialect.usage_tokens,
            # A usage without cost (streamed Messages; Responses when the cost is left out) is priced from its tokens.
            token_prices=TokenPrices(admission.input_price, admission.output_price, admission.prompt_fees),
        )
        # Revocable from the moment money is held: a revoke while the upstream is still thinking
        # must stop the call before its first byte, not after its last.
        control = OpenStream(reservation.connection.id, user)
        passed_on = {name: headers[name] for name in dialect.passed_headers if name in headers}
        exchange = _Exchange(user, dialect, reservation, admission, meter, control, trace, passed_on)
        self._open.add(control)
        self._generations.watch(reservation.ledger_id, meter)
        try:
            await self._forward(exchange, payload, receive, send)
        finally:
            self._open.discard(control)
            self._generations.forget(reservation.ledger_id)
            try:
                # Shielded: a cancelled request (client gone, server stopping) still settles. Most
                # requests started settling right after their answer; this waits for that same settle.
                await asyncio.shield(self._settle_once(exchange))
            finally:
                trace.finished(_outcome(exchange))

    def _caller(
        self, headers: Mapping[str, str], *, allow_anonymous_user: bool = False, api_key_header: str | None = None
    ) -> str:
        return model_caller(
            headers,
            self._embed.keys,
            self._embed.tokens,
            allow_session_tokens=self._settings.allow_browser_inference,
            allow_anonymous_user=allow_anonymous_user,
            api_key_header=api_key_header,
        )

    async def _reserve_shielded(
        self, user: str, model: str, kind: str, admission: Admission, grant: str | None = None
    ) -> Reservation:
        """Reserve; if the request is cancelled meanwhile, the hold (committed or not) is released."""
        reserving = self._reserve(user, model, kind, admission, grant)
        # Started on this task only where no deadline is entered before the first wait: one entered
        # there (asyncio.timeout, as asyncpg.connect does) would cancel this task, not the one that
        # goes on waiting, which would then wait with no deadline at all.
        eager = getattr(self._embed.store, "reserves_inline", False) is True
        task = start_eagerly(reserving) if eager else asyncio.ensure_future(reserving)
        if task.done():  # it never waited (SQLite's inline transaction), so nothing could cancel it
            return task.result()
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Released from a callback, not from this (cancelled, maybe cancelled again) task:
            # the reservation may still commit after we stopped waiting for it.
            task.add_done_callback(self._release_abandoned)
            raise

    def _release_abandoned(self, task: asyncio.Future[Reservation]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        release = PendingSettle(task.result().ledger_id, 0, "none", int(time.time()))
        _keep(asyncio.ensure_future(self.journal.settle(self._embed.store, release)))

    async def _reserve(
        self, user: str, model: str, kind: str, admission: Admission, grant: str | None = None
    ) -> Reservation:
        # Absurd asks (max_tokens in the billions) stay within a 64-bit column.
        wanted, minimum = min(admission.wanted, MAX_HOLD), min(admission.minimum, MAX_HOLD)
        if grant is not None:
            return await self._grants.reserve(grant, model, kind, wanted, minimum)
        now = int(time.time())
        ledger_id = new_ledger_id()
        request = ReservationRequest(
            app_id=self._embed.keys.app_id,
            app_user_id=user,
            wanted=wanted,
            minimum=minimum,
            kind=kind,
            model=model,
            ttl_seconds=self._settings.reservation_ttl_seconds,
            ledger_id=ledger_id,
        )
        try:
            result = await self._embed.store.reserve(request, now)
            if result is Refusal.HELD_IN_FLIGHT and await self.unsettled.caught_up(user):
                # Only holds stand in the way, and some are of answers this process has sent whose
                # settles are being written: once written, those holds are their (smaller) charges.
                result = await self._embed.store.reserve(request, now)
        except Exception:
            # Fail closed: nothing is forwarded without a committed hold. The hold may have
            # committed with its reply lost, so it is released by its id once the store is back
            # (a no-op if it never committed), and the 503 tells clients not to retry on their own.
            logger.warning("reserving for a request failed; answered unavailable", exc_info=True)
            self.journal.keep(PendingSettle(ledger_id, 0, "none", now))
            raise UnavailableError("the budget store is unavailable; nothing was charged, try again shortly") from None
        if isinstance(result, Reservation):
            return result
        status = None
        if needs_status(result):
            with contextlib.suppress(Exception):  # the figures only make the message clearer
                status = await self._embed.status(user)
        raise refusal_error(result, status, minimum)

    # -- forwarding -------------------------------------------------------------------------

    def _upstream_request(self, exchange: _Exchange, payload: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        reservation, admission, dialect = exchange.reservation, exchange.admission, exchange.dialect
        if dialect.prepare is not None:
            # The cap is enforced before the call: the upstream stops at what the hold pays for.
            dialect.prepare(payload, affordable_tokens(admission, reservation.amount))
        # ... and is told the prices the hold assumed, so it refuses rather than route dearer.
        pin_prices(payload, admission.price, completes=dialect.prepare is not None, images=admission.images)
        identity = self._identities.of(reservation.connection)  # opened on the connection's first call
        if identity is None:
            raise FundingInvalidError("this user's funding credential cannot be read; ask them to connect again")
        dialect.name_user(payload, identity.pseudonym)
        # The connection's own headers win over the client's; without client headers, they go as they are.
        headers = {**exchange.passed_on, **identity.headers} if exchange.passed_on else identity.headers
        base = reservation.connection.upstream_url or self._settings.upstream_url
        # Compact UTF-8 JSON, in Rust (stdlib's encoder takes five times as long).
        return base + dialect.upstream_path, to_json(payload), headers

    async def _forward(self, exchange: _Exchange, payload: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            url, body, headers = self._upstream_request(exchange, payload)
        except WattfareError as exc:
            exchange.refused_upstream = True
            await _refuse(exchange, send, exc)
            return
        try:
            response = await self._embed.upstream.post_metered(url, data=body, headers=headers)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, NotReceived) as exc:
            exchange.refused_upstream = True  # never connected, so never sent: nothing to pay
            unreachable = UpstreamError(f"the model provider could not be reached: {type(exc).__name__}")
            await _refuse(exchange, send, unreachable)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            exchange.outcome_unknown = True
            await _refuse(exchange, send, UpstreamError(f"the model provider did not answer: {type(exc).__name__}"))
            return
        exchange.trace.upstream_first_byte(response.status)
        try:
            if response.status >= 400:
                exchange.refused_upstream = True
                try:
                    refusal = await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    refusal = b""
                error = error_for_upstream_status(
                    response.status,
                    refusal,
                    response.headers,
                    credential=headers["authorization"].removeprefix("Bearer "),  # redacted from the message
                )
                if isinstance(error, FundingInvalidError) and response.status == 401:
                    await self._mark_funding_invalid(exchange)
                await _refuse(exchange, send, error)
                return
            generation_id = response.headers.get("x-generation-id")
            # Kept only when the ledger's column can hold it (an id past that is no id the upstream gives).
            exchange.meter.generation_id = generation_id if generation_id and len(generation_id) <= 128 else None
            relayed = relayed_headers(response.headers)
            if exchange.control.revoked:  # revoked while the upstream was preparing its first byte
                await self._answer_revoked(exchange, send)
            elif "text/event-stream" in response.headers.get("content-type", ""):
                await self._relay_stream(exchange, response, relayed, receive, send)
            else:
                await self._relay_body(exchange, response, relayed, send)
        finally:
            response.close()

    async def _answer_revoked(self, exchange: _Exchange, send: Send) -> None:
        """402 for a call revoked before its answer went out. The upstream may bill it in full (a
        non-streamed answer is billed even when nobody reads it), so it is settled as estimated
        and reconciled from the generation record, or charged its hold when there is none."""
        if exchange.meter.generation_id is None:
            exchange.outcome_unknown = True
        await asyncio.shield(self._settle_once(exchange))  # a refusal: nothing to gain by settling after it
        await _refuse(exchange, send, NotConnectedError("the user disconnected their AI budget; the call was stopped"))

    async def _relay_body(
        self, exchange: _Exchange, response: aiohttp.ClientResponse, headers: list[tuple[bytes, bytes]], send: Send
    ) -> None:
        try:
            if response.content.is_eof() and not exchange.control.stopped:
                # The whole body came with the head: reading it does not wait, so nothing can
                # stop it half way, and it needs no task of its own.
                body = await response.read()
            else:
                # A revoke from here on ends the read (``read_upstream``), never closes under it.
                body = await read_upstream(exchange.control, response.read())
        except Stopped:
            await self._answer_revoked(exchange, send)
            return
        except (aiohttp.ClientError, TimeoutError):
            if exchange.meter.generation_id is None:
                exchange.outcome_unknown = True  # no record to ask later: charge the hold
            await _refuse(exchange, send, UpstreamError("the model provider dropped the response"))
            return
        exchange.trace.upstream_last_byte()
        with contextlib.suppress(ValueError):
            parsed = read_reply(body)
            if isinstance(parsed, dict):
                exchange.meter.observe(parsed, whole=True)
        if exchange.control.revoked:
            await self._answer_revoked(exchange, send)
            return
        answer = send_bytes(send, response.status, body, [*headers, (b"content-length", str(len(body)).encode())])
        await self._answer_then_settle(exchange, answer)

    async def _relay_stream(
        self,
        exchange: _Exchange,
        response: aiohttp.ClientResponse,
        headers: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
    ) -> None:
        meter, control = exchange.meter, exchange.control
        watcher = asyncio.get_running_loop().create_task(watch_disconnect(receive, control))
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            # A revoke or the client leaving ends the pump's read; the response is closed after.
            await read_upstream(control, _pump(exchange, response, send))
        except (Stopped, aiohttp.ClientError, TimeoutError):
            pass  # stopped (client gone, revoked) or dropped by the provider: told apart below
        finally:
            watcher.cancel()
            response.close()
            exchange.trace.upstream_last_byte()
        if exchange.control.disconnected:
            return
        if exchange.cut_off is None and not meter.done:
            if control.revoked:
                exchange.cut_off = "revoked"
            elif meter.error is None:
                # Neither [DONE] nor the provider's own error event: the stream was cut short.
                exchange.cut_off = "upstream"
        if exchange.cut_off:
            # An error, as a refusal is: settled before it ends (nothing to gain by settling after).
            event = meter.separator() + exchange.dialect.cut_off(cut_off_error(exchange.cut_off), meter.events)
            await send({"type": "http.response.body", "body": event, "more_body": True})
            await asyncio.shield(self._settle_once(exchange))
            await send(_end_of_body())
            return
        # A whole stream's end goes out before its settle too: clients read to the end of the body.
        await self._answer_then_settle(exchange, send(_end_of_body()))

    async def _start_revocation_watch(self) -> None:
        self._embed.run_in_background(self._watch_revocations)
        self._embed.run_in_background(lambda: self._generations.write_forever(self._embed.store))
        self._embed.run_in_background(lambda: self.journal.run(self._embed.store))

    async def _watch_revocations(self) -> None:
        """Re-read, every couple of seconds, the connections that have calls in flight, so a revoke
        handled by another process (another worker got the webhook or the DELETE) also stops them
        within seconds; one read per connection, not per call. A revoke in this process stops them
        at once through ``connection_ended``. A store error skips one look, never the rest."""
        store, app_id = self._embed.store, self._embed.keys.app_id
        while True:
            await asyncio.sleep(REVOCATION_POLL_SECONDS)
            self._identities.expire()  # so an opened credential goes when due, calls or not
            for connection_id, user in self._open.in_flight():
                try:
                    if is_grant_id(connection_id):
                        if not await self._grants.still_active(connection_id):
                            self._connection_ended(connection_id)
                        continue
                    record = await store.get_connection(app_id, user, int(time.time()))
                except Exception:
                    logger.warning("checking a connection for a revoke failed; trying again", exc_info=True)
                    continue
                if record is None or record.status is not ConnectionState.ACTIVE:
                    self._connection_ended(connection_id)

    def _connection_ended(self, connection_id: str) -> None:
        """A connection revoked (here, or found revoked): its calls stop, its credential is forgotten."""
        self._identities.drop(connection_id)
        self._open.stop(connection_id)

    # -- settling ---------------------------------------------------------------------------

    async def _answer_then_settle(self, exchange: _Exchange, answer: Awaitable[None]) -> None:
        """Send the (successful) answer, then settle: the client does not wait for the ledger. From
        just before the answer goes out, this process's reads of the user's spend wait for this
        settle (``Unsettled``), so they never miss a charge whose answer they could have seen. The
        answer was paid for, so a store that fails the settle does not touch it: the charge is kept
        in the settle journal and applied when the store is back."""
        exchange.owed = self.unsettled.owe(exchange.user)
        await answer
        await asyncio.shield(self._settle_once(exchange))

    def _settle_once(self, exchange: _Exchange) -> asyncio.Future[None]:
        """The request's one settle, started by the first call; every later call gets the same one.
        Its own task (held until it ends), so that awaiting it shielded, a request cancelled
        (client gone, server stopping) still settles."""
        if exchange.settling is None:
            exchange.settling = _keep(asyncio.ensure_future(self._settle(exchange)))
        return exchange.settling

    async def _settle(self, exchange: _Exchange) -> None:
        """Final ledger row for the request, whatever happened."""
        try:
            await self._write_final_row(exchange)
        finally:
            if exchange.owed is not None:
                self.unsettled.paid(exchange.user, exchange.owed)

    async def _write_final_row(self, exchange: _Exchange) -> None:
        meter, reservation = exchange.meter, exchange.reservation
        cost, source, reconcile = self._charge(exchange)
        generation_id = meter.generation_id if source != "none" else None
        exchange.trace.settling()
        counted = exchange.dialect.usage_tokens(meter.usage) if meter.usage is not None else None
        tokens_in, tokens_out = (_bounded(count) for count in counted) if counted is not None else (None, None)
        final = PendingSettle(
            reservation.ledger_id, cost, source, int(time.time()), generation_id, reconcile, tokens_in, tokens_out
        )
        # The store has the final row, token counts included (written with the settles pending at
        # the same moment, in one transaction), or the journal does until the store is back (never lost).
        settled = await self._settles.settle(final, exchange.user)
        exchange.trace.settled(cost, source, meter.usage, meter.response_model)
        if settled is None:
            return  # journaled: applied, and then reconciled, when the store is back
        # Threshold alerts: queued here (unless the spend the settle returned passed none), checked
        # by a background task.
        self._embed.alerts.settled(exchange.user, cost, settled.spend)
        if reconcile and meter.generation_id:
            self.reconciler.later(reservation.ledger_id, meter.generation_id, reservation.connection)

    def _charge(self, exchange: _Exchange) -> tuple[int, str, bool]:
        """What the request is charged: (micro-dollars, how the figure is known, reconcile later)."""
        meter, reservation = exchange.meter, exchange.reservation
        if exchange.refused_upstream:
            return 0, "none", False
        if exchange.outcome_unknown:
            # Sent, but no answer came back: the upstream may bill it all, and without a generation
            # id there is no record to ask later, so the whole hold is charged.
            return reservation.amount, "estimated", False
        trusted = meter.trusted_cost()
        if trusted is not None:
            return min(trusted, MAX_HOLD), "reported", False  # an absurd figure still fits the ledger's column
        # No usable figure (client gone, stream cut, upstream error): charge an estimate now and
        # ask the upstream's generation record for the truth later.
        if meter.finish_reason == "error" and not exchange.control.disconnected:
            estimate = 0  # the upstream does not bill tokens of a generation that failed
        else:
            estimate = min(meter.estimated_cost(), reservation.amount)
        return estimate, "estimated", meter.generation_id is not None

    async def sweep(self) -> None:
        """Settle reservations orphaned by a dead process; retry reconciliations still open."""
        await self.reconciler.sweep()

    async def _mark_funding_invalid(self, exchange: _Exchange) -> None:
        self._identities.drop(exchange.reservation.connection.id)
        await self._embed.store.set_status(
            self._embed.keys.app_id,
            exchange.user,
            ConnectionState.FUNDING_INVALID,
            int(time.time()),
            drop_credential=False,
        )

    def _credential(self, record: ConnectionRecord) -> str | None:
        """The user's funding credential, or None when there is none or it cannot be opened
        (sealed under another key, or bound to another user: ``open_credential`` logs it)."""
        return self._embed.open_credential(record) or None


# -- helpers --------------------------------------------------------------------------------

_SETTLING: set[asyncio.Future[Any]] = set()
MAX_HOLD = 2**62  # micro-dollars; far beyond any cap


_CUT_OFF_CODES = {"budget_exceeded": "budget_exceeded", "revoked": "not_connected", "upstream": "upstream"}


async def _refuse(exchange: _Exchange, send: Send, error: WattfareError) -> None:
    """Answer a request that holds money with an error (the outcome telemetry reports)."""
    exchange.outcome = error.code
    await send_error(send, error, exchange.dialect.error_body)


def _outcome(exchange: _Exchange) -> str:
    """How the request ended, for telemetry: ``ok``, ``cancelled`` or its client's error code."""
    if exchange.outcome is not None:
        return exchange.outcome
    if exchange.control.disconnected:
        return CANCELLED
    if exchange.cut_off is not None:
        return _CUT_OFF_CODES.get(exchange.cut_off, "upstream")
    if exchange.meter.error is not None:
        return "upstream"
    return OK


async def _pump(exchange: _Exchange, response: aiohttp.ClientResponse, send: Send) -> None:
    """Relay the upstream's stream as it comes, metered, until its end or the hold is spent."""
    meter = exchange.meter
    async for chunk in response.content.iter_any():
        # The cut comes at the event that passed the hold, not after the rest of this read.
        cut = meter.feed(chunk)
        await send({"type": "http.response.body", "body": chunk[:cut], "more_body": True})
        if cut is not None:
            exchange.cut_off = "budget_exceeded"
            return


def _bounded(count: int | None) -> int | None:
    """A token count as the ledger's 64-bit column holds it (an upstream may state any number)."""
    return None if count is None else min(count, MAX_HOLD)


def _end_of_body() -> dict[str, Any]:
    """A streamed body's end: a new message each time, as middleware may change what it is sent."""
    return {"type": "http.response.body", "body": b"", "more_body": False}


def _keep(task: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """Hold a task until it ends, so it is not collected half way."""
    _SETTLING.add(task)
    task.add_done_callback(_SETTLING.discard)
    return task
