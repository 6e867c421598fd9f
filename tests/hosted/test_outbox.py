"""Webhook delivery through the outbox: retried with backoff while the app is down, kept across a restart."""

from __future__ import annotations

import asyncio
from typing import Any

from wattfare_embed.consent_domain import ConsentDomain
from wattfare_embed.money import micros_from_usd
from wattfare_embed.testing.waiting import poll

from .conftest import Stack


async def webhook_jobs(domain: ConsentDomain, app_id: str) -> list[dict[str, Any]]:
    # This app's only: on PostgreSQL the table is shared with other tests' domains.
    return [job for job in await domain.outbox.jobs() if job["kind"] == "webhook" and job["app_id"] == app_id]


async def job_with(stack: Stack, domain: ConsentDomain, *, attempts: int = 1, state: str = "pending") -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        jobs = await webhook_jobs(domain, stack.keys.app_id)
        jobs = [job for job in jobs if job["state"] == state and job["attempts"] >= attempts]
        return jobs[-1] if jobs else None

    return await poll(check, what=f"a {state} webhook after {attempts} attempts")


async def test_a_webhook_is_retried_with_backoff_until_the_app_is_back(stack: Stack) -> None:
    record = await stack.connect("ada")
    stack.gate.down = True
    await stack.on_dashboard(stack.browser(), str(record.grant_id), "revoke")
    failing = await job_with(stack, stack.domain, attempts=3)
    assert "HTTP 503" in failing["last_error"]
    assert (await stack.connection("ada")).status.value == "active", "nothing applied while the app is down"

    stack.gate.down = False
    done = await job_with(stack, stack.domain, state="done")
    assert done["id"] == failing["id"] and done["attempts"] > failing["attempts"]
    assert (await stack.connection("ada")).status.value == "revoked"
    assert stack.gate.refused >= 3 and stack.gate.delivered == 1


async def test_a_pending_webhook_survives_a_restart_of_the_domain(any_db_stack: Stack) -> None:
    stack = any_db_stack
    record = await stack.connect("bea", monthly_usd="10")
    stack.gate.down = True
    await stack.on_dashboard(stack.browser(), str(record.grant_id), "cap", monthly_usd="3")
    await job_with(stack, stack.domain, attempts=1)
    await stack.domain.shutdown()  # the process stops with the webhook undelivered
    refused = stack.gate.refused
    await asyncio.sleep(0.5)
    assert stack.gate.refused == refused, "nothing is delivering any more"

    stack.gate.down = False
    async with ConsentDomain(stack.domain.settings) as restarted:  # a new process on the same database
        await job_with(stack, restarted, state="done")
    assert (await stack.connection("bea")).monthly_cap == micros_from_usd("3")


async def test_one_grants_events_arrive_in_order(any_db_stack: Stack) -> None:
    stack = any_db_stack
    record = await stack.connect("cy", monthly_usd="10")
    browser = stack.browser()
    stack.gate.down = True
    for usd in ("3", "8", "5"):
        await stack.on_dashboard(browser, str(record.grant_id), "cap", monthly_usd=usd)
    await job_with(stack, stack.domain, attempts=2)
    assert all(job["attempts"] == 0 for job in (await webhook_jobs(stack.domain, stack.keys.app_id))[1:]), (
        "later ones wait their turn"
    )
    stack.gate.down = False

    async def all_done() -> bool | None:
        jobs = await webhook_jobs(stack.domain, stack.keys.app_id)
        return True if len(jobs) == 3 and all(job["state"] == "done" for job in jobs) else None

    await poll(all_done, what="the three cap changes delivered")
    assert (await stack.connection("cy")).monthly_cap == micros_from_usd("5"), "the last change wins"


async def test_an_event_the_app_refuses_with_400_is_not_retried(stack: Stack) -> None:
    record = await stack.connect("dee")
    stack.gate.down, stack.gate.status = True, 400
    await stack.on_dashboard(stack.browser(), str(record.grant_id), "revoke")
    failed = await job_with(stack, stack.domain, state="failed")
    assert failed["attempts"] == 1 and "HTTP 400" in failed["last_error"]
    await asyncio.sleep(0.5)
    assert stack.gate.refused == 1
