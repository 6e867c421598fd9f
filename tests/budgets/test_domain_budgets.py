"""One budget across every app on the consent domain: three apps at $10 each, on three origins,
spending concurrently from one user's $10 budget; the budget page, the apps' ledgers and reports
agree to the micro-dollar; threshold e-mails go out once each, also from a second process."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.hosted.conftest import PASSWORD, Servers, Stack, WebhookGate, domain_settings, host_app
from wattfare_embed import HostedConsent, Wattfare
from wattfare_embed.consent_domain import ConsentDomain
from wattfare_embed.consent_domain.budgets import allocate
from wattfare_embed.consent_domain.notifier import SmtpNotifier
from wattfare_embed.periods import period_of
from wattfare_embed.testing._fake_catalog import _model
from wattfare_embed.testing.fake_openrouter import FakeOpenRouter
from wattfare_embed.testing.live_server import free_port
from wattfare_embed.testing.waiting import poll

from .smtp_sink import SmtpSink, smtp_sink

PRICEY = "test/pricey"  # 1 µ$ a prompt token, 1 000 µ$ a completion token: every cost whole micro-dollars
MAX_TOKENS = 300
BUDGET = 10_000_000
WORKERS_PER_APP = 2
THRESHOLDS = (50, 80, 90)


@dataclass
class Domain:
    fake: FakeOpenRouter
    domain: ConsentDomain
    domain_url: str
    stacks: list[Stack]
    user_id: str
    email: str
    sink: SmtpSink


def _settings(database_url: str, domain_url: str, fake_url: str, sink: SmtpSink) -> Any:
    return domain_settings(
        database_url, domain_url, fake_url, budget_sync_seconds=0.2, budget_alert_thresholds=THRESHOLDS
    )


def _notifier(sink: SmtpSink) -> SmtpNotifier:
    return SmtpNotifier("127.0.0.1", sink.port, sender="budgets@consent.example", timeout=5)


@contextlib.asynccontextmanager
async def three_apps(tmp_path: Path, database_url: str | None = None) -> AsyncIterator[Domain]:
    fake = FakeOpenRouter(accept_unknown_keys=False)
    fake.models.append(
        _model(
            PRICEY,
            "Test: Pricey",
            prompt="0.000001",
            completion="0.001",
            context_length=8000,
            max_completion_tokens=4000,
        )
    )
    fake.reply_text = " ".join(f"w{i}" for i in range(MAX_TOKENS + 50))  # every reply is clamped to MAX_TOKENS
    servers = Servers()
    async with smtp_sink() as sink:
        try:
            fake_url = await servers.start(fake, lifespan="off")
            domain_port = free_port()
            domain_url = f"http://localhost:{domain_port}"
            domain_db = database_url or f"sqlite+aiosqlite:///{tmp_path / 'domain.db'}"
            domain = ConsentDomain(_settings(domain_db, domain_url, fake_url, sink), notifier=_notifier(sink))
            email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
            user_id = await domain.add_user(email, PASSWORD)
            await domain.set_budget(user_id, BUDGET)
            await servers.start(domain, port=domain_port)
            stacks = []
            for index, name in enumerate(("Notes", "Chat", "Mail")):
                app_port = free_port()
                app_url = f"http://127.0.0.1:{app_port}"
                keys = await domain.register_app(
                    name=name,
                    redirect_uris=[f"{app_url}/wattfare/callback"],
                    webhook_url=f"{app_url}/wattfare/webhooks",
                )
                embed = Wattfare(
                    secret_key=keys.secret_key,
                    publishable_key=keys.publishable_key,
                    database_url=f"sqlite+aiosqlite:///{tmp_path / f'app{index}.db'}",
                    consent=HostedConsent(domain_url),
                    app_name=name,
                    upstream_url=fake_url + "/api/v1",
                )
                gate = WebhookGate(host_app(embed, keys.publishable_key))
                await servers.start(gate, port=app_port)
                stacks.append(Stack(fake, fake_url, domain, domain_url, embed, app_url, keys, gate, email))
            yield Domain(fake, domain, domain_url, stacks, user_id, email, sink)
        finally:
            for stack in locals().get("stacks", []):
                for browser in stack.browsers:
                    await browser.aclose()
            await servers.stop()


async def _drive(stack: Stack, user: str, outcomes: list[int]) -> None:
    """Spend until refused for long enough that the budget's re-balancing has nothing left to give."""
    refusals = 0
    while refusals < 6:
        response = await stack.chat(user, model=PRICEY, max_tokens=MAX_TOKENS)
        outcomes.append(response.status_code)
        if response.status_code == 200:
            refusals = 0
            continue
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "budget_exceeded"
        refusals += 1
        await asyncio.sleep(0.25)  # a budget pass may move headroom here


def _page_figures(page: str) -> dict[str, str]:
    card = re.search(r'<p class="budget"([^>]*)>', page)
    assert card, page
    return dict(re.findall(r'data-(\w+)="([^"]*)"', card.group(1)))


def test_allocation_never_gives_out_more_than_is_left() -> None:
    assert sorted(allocate(10_000_000, [10_000_000] * 3)) == [3_333_333, 3_333_333, 3_333_334]
    assert allocate(9, [1, 100, 100]) == [1, 4, 4]
    assert allocate(5, [0, 0]) == [0, 0]
    assert allocate(-3, [10]) == [0]
    assert sum(allocate(10_000_000, [3, 7_000_000, 2_999_999, 10])) <= 10_000_000


async def test_three_apps_share_one_budget_and_never_pass_it_beyond_the_bound(tmp_path: Path) -> None:
    async with three_apps(tmp_path) as domain:
        for stack in domain.stacks:
            record = await stack.connect("ada", "10")
            assert record.monthly_cap == 10_000_000  # each app keeps its own $10 cap
        keys = [stack.funding_key(await stack.connection("ada")) for stack in domain.stacks]
        assert sum(key.limit or 0 for key in keys) <= BUDGET / 1_000_000  # the limits fit the budget from the start

        outcomes: list[int] = []
        workers = [_drive(stack, "ada", outcomes) for stack in domain.stacks for _ in range(WORKERS_PER_APP)]
        await asyncio.wait_for(asyncio.gather(*workers), 180)

        spent = [await stack.connection("ada") for stack in domain.stacks]
        total = sum(record.spent for record in spent)
        # The bound: the requests in flight at once across the user's apps, each at most its worst case.
        worst_request = 20 * 1 + MAX_TOKENS * 1000
        bound = len(domain.stacks) * WORKERS_PER_APP * worst_request
        assert total <= BUDGET + bound, (total, outcomes.count(200))
        assert total >= BUDGET - len(domain.stacks) * worst_request  # and the budget was usable in full
        assert all(record.spent > 0 for record in spent)  # every app got some of it
        upstream = sum(int(key.usage * 1_000_000) for key in keys)
        assert upstream == total  # the apps' ledgers and the upstream keys agree to the micro-dollar

        # The budget page: budget, used, left, and each app's spend, as the ledgers say.
        browser = domain.stacks[0].browser()
        page = (await domain.stacks[0].dashboard(browser)).text
        figures = _page_figures(page)
        assert figures["budget"] == "10.00" and figures["period"] == period_of(time.time())
        assert _micros(figures["used"]) == total
        assert _micros(figures["left"]) == max(0, BUDGET - total)
        for stack, record in zip(domain.stacks, spent, strict=True):
            row = re.search(
                rf"<td>{re.escape(stack.embed.settings.app_name)}</td><td>\$([\d.]+)</td><td>\$([\d.]+)</td>", page
            )
            assert row, stack.embed.settings.app_name
            assert _micros(row.group(1)) == 10_000_000 and _micros(row.group(2)) == record.spent
            # The app's own report of the month equals its ledger.
            totals = await stack.embed.store.month_totals(stack.keys.app_id, period_of(time.time()))
            assert sum(t.cost for t in totals) == record.spent

        # The domain's report of the month, per user and app, says the same to the micro-dollar.
        report = await asyncio.to_thread(_domain_report, domain.domain.settings.database_url, period_of(time.time()))
        by_app = {row["x_AppId"]: row for row in report}
        for stack, record in zip(domain.stacks, spent, strict=True):
            row = by_app[stack.keys.app_id]
            assert row["SubAccountId"] == domain.email and row["ResourceName"] == stack.embed.settings.app_name
            assert int(row["x_BilledCostMicros"]) == record.spent == _micros(row["BilledCost"])
        assert sum(int(row["x_BilledCostMicros"]) for row in report) == total

        # 50, 80 and 90 % passed: one e-mail each, to the user.
        await poll(lambda: _count(domain.sink, 3), what="three budget e-mails", timeout=20)
        subjects = sorted(m["Subject"] for m in domain.sink.messages)
        assert subjects == [f"You have used {p}% of your AI budget" for p in (50, 80, 90)]
        assert {m["To"] for m in domain.sink.messages} == {domain.email}

        # A second domain process on the same database (and this one, again): nothing fires twice.
        other = ConsentDomain(domain.domain.settings, notifier=_notifier(domain.sink))
        async with other:
            await asyncio.gather(other.budget(domain.user_id), domain.domain.budget(domain.user_id))
            await other.outbox.deliver_due()
        await domain.domain.outbox.deliver_due()
        await asyncio.sleep(0.5)
        assert len(domain.sink.messages) == 3


def _domain_report(database_url: str, month: str) -> list[dict[str, str]]:
    import contextlib as _contextlib
    import io
    import json

    from wattfare_embed.cli import main

    out = io.StringIO()
    with _contextlib.redirect_stdout(out):
        code = main(["consent-domain", "usage", "--database-url", database_url, "--month", month, "--format", "json"])
    assert code == 0
    rows: list[dict[str, str]] = json.loads(out.getvalue())
    return rows


async def _count(sink: SmtpSink, n: int) -> bool | None:
    return True if len(sink.messages) >= n else None


def _micros(usd: str) -> int:
    from decimal import Decimal

    return int(Decimal(usd) * 1_000_000)


async def test_a_lower_budget_lowers_the_keys_at_once_and_removing_it_gives_the_caps_back(tmp_path: Path) -> None:
    async with three_apps(tmp_path) as domain:
        for stack in domain.stacks[:2]:
            await stack.connect("ada", "10")
        keys = [stack.funding_key(await stack.connection("ada")) for stack in domain.stacks[:2]]
        assert [key.limit for key in keys] == [pytest.approx(5), pytest.approx(5)]  # halves of $10

        await domain.domain.set_budget(domain.user_id, 2_000_000)
        assert sorted(float(key.limit or 0) for key in keys) == [1.0, 1.0]
        await domain.domain.set_budget(domain.user_id, None)  # no budget: each app within its own cap
        assert [key.limit for key in keys] == [pytest.approx(10), pytest.approx(10)]
        view = await domain.domain.budget(domain.user_id)
        assert view.budget is None and view.left is None


async def test_the_budget_is_set_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wattfare_embed.cli import main

    async with three_apps(tmp_path) as domain:
        url = domain.domain.settings.database_url
        await domain.stacks[0].connect("ada", "10")

        def run(*args: str) -> tuple[int, str]:
            code = main(["consent-domain", *args, "--database-url", url])
            return code, capsys.readouterr().out

        assert (await asyncio.to_thread(run, "set-budget", "--email", domain.email, "--usd", "3.5"))[0] == 0
        assert (await asyncio.to_thread(run, "set-budget", "--default", "--usd", "20"))[0] == 0
        code, listing = await asyncio.to_thread(run, "budgets")
        assert code == 0 and "default: $20" in listing and f"{domain.email}: $3.5" in listing
        # The running domain's next pass re-limits the key to the new budget.
        key = domain.stacks[0].funding_key(await domain.stacks[0].connection("ada"))
        await poll(lambda: _limit_is(key, 3.5), what="the key limited to the new budget", timeout=10)
        assert (await asyncio.to_thread(run, "set-budget", "--email", "nobody@example.com", "--usd", "1"))[0] == 2


async def _limit_is(key: Any, usd: float) -> bool | None:
    return True if key.limit is not None and float(key.limit) == usd else None


async def _signed_in(domain: Domain, email: str, path: str) -> tuple[Any, httpx2.Response]:
    from tests.hosted.conftest import Browser, form

    browser = Browser()
    domain.stacks[0].browsers.append(browser)
    response = await browser.get(domain.domain_url + path)
    page = await browser.follow(response)
    fields = form(page.text, "/login").fields
    fields.update(email=email, password=PASSWORD)
    return browser, await browser.follow(await browser.post_form(domain.domain_url + "/login", fields))


async def test_the_operator_page_sets_budgets_for_operators_only(tmp_path: Path) -> None:
    from tests.hosted.conftest import form
    from wattfare_embed.consent_domain import budget_store

    async with three_apps(tmp_path) as domain:
        await domain.stacks[0].connect("ada", "10")
        key = domain.stacks[0].funding_key(await domain.stacks[0].connection("ada"))
        assert float(key.limit or 0) == 10.0

        _, refused = await _signed_in(domain, domain.email, "/operator")
        assert refused.status_code == 403  # an ordinary user

        operator = f"op-{uuid.uuid4().hex[:6]}@example.com"
        await domain.domain.add_user(operator, PASSWORD)
        assert await budget_store.set_role(domain.domain.store, operator, budget_store.OPERATOR)
        browser, page = await _signed_in(domain, operator, "/operator")
        assert page.status_code == 200 and domain.email in page.text
        row = next(f for f in _forms(page.text) if f.fields.get("user_id") == domain.user_id)
        saved = await browser.post_form(domain.domain_url + row.action, {**row.fields, "monthly_usd": "2.5"})
        assert saved.status_code == 303 and "notice=saved" in saved.headers["location"]
        assert float(key.limit or 0) == 2.5  # re-limited at once
        assert (await domain.domain.budget(domain.user_id)).budget == 2_500_000

        forged = await browser.post_form(
            domain.domain_url + row.action, {"user_id": domain.user_id, "monthly_usd": "99"}
        )
        assert forged.status_code == 403  # no CSRF token
        bad = await browser.post_form(domain.domain_url + row.action, {**row.fields, "monthly_usd": "lots"})
        assert "notice=invalid" in bad.headers["location"]
        assert (await domain.domain.budget(domain.user_id)).budget == 2_500_000
        assert form(page.text, "/operator/budgets")  # the default's form is there too


def _forms(page: str) -> list[Any]:
    from tests.hosted.conftest import forms

    return forms(page)
