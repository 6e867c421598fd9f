"""The outbox: webhooks to apps and upstream keys to delete, delivered with retries and backoff.

A change and the work it causes are written in one transaction (``DomainStore``),
so nothing is lost across a restart: the worker picks up whatever is pending.
Jobs with the same ordering key (a grant's webhooks) run strictly in order, so an
app never sees an older cap after a newer one. A webhook answered 2xx is done;
400 is final (the app looked at it and refused it: a bad signature, or an event
it already applied when our earlier 2xx was lost); anything else is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from sqlalchemy import Connection, and_, exists, select, update
from sqlalchemy.orm import aliased

from ..consent._protocol import SIGNATURE_HEADER, sign_webhook
from . import schema
from .config import DomainSettings
from .notifier import BudgetNotice, Notifier
from .records import Grant, Job, NewJob
from .storage import DomainStore
from .upstream import UpstreamFailure, UpstreamKeys

__all__ = ["DELETE_KEY", "NOTIFY", "WEBHOOK", "Outbox", "delete_key_job", "webhook_job"]

logger = logging.getLogger("wattfare_embed.consent_domain")

WEBHOOK = "webhook"
DELETE_KEY = "delete_key"
NOTIFY = "notify"  # a budget notice to a user, through the domain's notifier
_O = schema.outbox.c
_LEASE_MS = 120_000


def webhook_job(grant: Grant, event_type: str, data: dict[str, Any], delay_seconds: float = 0.0) -> NewJob:
    """A signed-later webhook event about one grant (the body is fixed now, the signature per attempt)."""
    event = {
        "id": "evt_" + secrets.token_hex(16),
        "type": event_type,
        "created": int(time.time()),
        "data": {"grant_id": grant.id, **data},
    }
    payload = json.dumps(event, separators=(",", ":"))
    return NewJob(WEBHOOK, grant.app_id, "grant:" + grant.id, payload, int(delay_seconds * 1000))


def delete_key_job(grant: Grant) -> NewJob:
    assert grant.key_hash is not None
    return NewJob(DELETE_KEY, grant.app_id, "key:" + grant.key_hash, grant.key_hash)


class Outbox:
    """Delivers pending jobs: woken at once when work is queued, polling otherwise."""

    def __init__(
        self,
        store: DomainStore,
        upstream: UpstreamKeys,
        http: Callable[[], aiohttp.ClientSession],
        settings: DomainSettings,
    ) -> None:
        self._store = store
        self._upstream = upstream
        self._http = http
        self._settings = settings
        self._wake: asyncio.Event | None = None
        self.notifier: Notifier | None = None  # budget notices to users (``notify`` jobs)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run_forever(self) -> None:
        self._wake = asyncio.Event()
        pruned_at = 0.0
        while True:
            try:
                await self.deliver_due()
                if time.monotonic() - pruned_at > 3600:
                    await self._store.prune(int(time.time()))
                    pruned_at = time.monotonic()
            except Exception:
                logger.exception("the consent domain's outbox failed; trying again")
            # The timeout first: a coroutine made before an await that is cancelled is never awaited.
            timeout = await self._sleep_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()

    async def _sleep_seconds(self) -> float:
        def operation(db: Connection) -> int | None:
            query = select(_O.next_attempt_ms).where(_O.state == "pending").order_by(_O.next_attempt_ms).limit(1)
            value = db.execute(query).scalar()
            return int(value) if value is not None else None

        due = await self._store.runner.run(operation)
        if due is None:
            return self._settings.poll_seconds
        return min(self._settings.poll_seconds, max(0.02, due / 1000 - time.time()))

    async def deliver_due(self) -> int:
        """Attempt every job that is due now (each ordering key's oldest only); returns how many."""
        jobs = await self._claim(int(time.time() * 1000))
        await asyncio.gather(*(self._attempt(job) for job in jobs))
        return len(jobs)

    async def _claim(self, now_ms: int, limit: int = 50) -> list[Job]:
        earlier = aliased(schema.outbox)

        def operation(db: Connection) -> list[Job]:
            blocked = exists().where(
                earlier.c.ordering_key == _O.ordering_key, earlier.c.state == "pending", earlier.c.id < _O.id
            )
            free = and_(
                _O.state == "pending",
                _O.next_attempt_ms <= now_ms,
                (_O.locked_until_ms.is_(None)) | (_O.locked_until_ms < now_ms),
            )
            rows = db.execute(select(schema.outbox).where(free, ~blocked).order_by(_O.id).limit(limit)).all()
            claimed: list[Job] = []
            for row in rows:
                # Guarded, so two processes sharing a PostgreSQL database never run one job twice.
                taken = db.execute(
                    update(schema.outbox)
                    .where(_O.id == row.id, (_O.locked_until_ms.is_(None)) | (_O.locked_until_ms < now_ms))
                    .values(locked_until_ms=now_ms + _LEASE_MS)
                )
                if taken.rowcount == 1:
                    claimed.append(Job(row.id, row.kind, row.app_id, row.ordering_key, row.payload, row.attempts))
            return claimed

        return await self._store.runner.run(operation)

    async def _attempt(self, job: Job) -> None:
        try:
            if job.kind == WEBHOOK:
                error, final = await self._deliver(job)
            elif job.kind == NOTIFY:
                error, final = await self._notify(job)
            else:
                error, final = await self._delete_key(job)
        except Exception as exc:  # a bug must not lose the job: retry it like any failure
            logger.exception("outbox job %s failed unexpectedly", job.id)
            error, final = f"{type(exc).__name__}: {exc}", False
        await self._record(job, error, final)

    async def _deliver(self, job: Job) -> tuple[str | None, bool]:
        app = await self._store.get_app(job.app_id)
        if app is None:
            return "the app is no longer registered", True
        body = job.payload.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": "wattfare-consent-domain/1",
            SIGNATURE_HEADER: sign_webhook(app.signing_key, int(time.time()), body),
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_seconds)
        try:
            async with self._http().post(
                app.webhook_url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                status = response.status
                answer = (await response.content.read(500)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}", False
        if 200 <= status < 300:
            return None, False
        return f"HTTP {status}: {answer}", status == 400

    async def _notify(self, job: Job) -> tuple[str | None, bool]:
        notice = BudgetNotice.from_payload(json.loads(job.payload))
        if self.notifier is None:
            return "no notifier is configured in this process", False
        if not notice.email:
            return f"user {notice.user_id} has no e-mail address", True
        try:
            await self.notifier.notify(notice)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}", False
        return None, False

    async def _delete_key(self, job: Job) -> tuple[str | None, bool]:
        try:
            await self._upstream.delete(job.payload)
        except UpstreamFailure as exc:
            return str(exc), False
        return None, False

    async def _record(self, job: Job, error: str | None, final: bool) -> None:
        now_ms = int(time.time() * 1000)
        attempts = job.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "locked_until_ms": None, "last_error": error}
        if error is None:
            values.update(state="done", finished_at=now_ms // 1000)
        elif final or attempts >= self._settings.max_attempts:
            values.update(state="failed", finished_at=now_ms // 1000)
            logger.warning("outbox job %s (%s) gave up after %d attempts: %s", job.id, job.kind, attempts, error)
        else:
            settings = self._settings
            delay = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempts - 1))
            values["next_attempt_ms"] = now_ms + int(delay * 1000)
        await self._store.runner.run(
            lambda db: db.execute(update(schema.outbox).where(_O.id == job.id).values(**values))
        )

    async def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows as dicts, oldest first (for operators and tests)."""

        def operation(db: Connection) -> list[dict[str, Any]]:
            query = select(schema.outbox).order_by(_O.id)
            if state is not None:
                query = query.where(_O.state == state)
            return [dict(row._mapping) for row in db.execute(query)]

        return await self._store.runner.run(operation)
