"""``/operator``: the operator's page, where per-user budgets and the default are set.

Only a signed-in user with the operator role (``wattfare consent-domain set-role --operator``)
sees it; everyone else is answered 403. Every change re-limits the user's keys at once.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..consent._protocol import parse_wire_usd, wire_usd
from . import budget_store
from .budgets import BudgetKeeper
from .config import DomainSettings
from .forms import FormError, read_form
from .login import Authenticate, call_authenticate, refusal_page
from .pages import _e, _hidden, _layout, error_page, page_response
from .sessions import CsrfError, Sessions
from .storage import DomainStore
from .upstream import UpstreamFailure

__all__ = ["OperatorPage"]

_NOTICES = {
    "saved": "Saved. The user's apps are kept within it from now on.",
    "invalid": "Enter a budget of zero or more dollars, or leave it empty to remove it.",
    "failed": "Saved, but the upstream keys could not be re-limited yet; the next pass retries.",
}


class OperatorPage:
    def __init__(
        self,
        store: DomainStore,
        sessions: Sessions,
        budgets: BudgetKeeper,
        settings: DomainSettings,
        authenticate: Authenticate,
        login_url: str,
    ) -> None:
        self._store, self._sessions, self._budgets = store, sessions, budgets
        self._settings, self._authenticate, self._login_url = settings, authenticate, login_url

    def routes(self) -> list[Route]:
        return [
            Route("/operator", self.show, methods=["GET"]),
            Route("/operator/budgets", self.save, methods=["POST"]),
        ]

    async def _operator(self, request: Request) -> str | Response:
        user_id = await call_authenticate(self._authenticate, request)
        if user_id is None:
            separator = "&" if "?" in self._login_url else "?"
            return RedirectResponse(f"{self._login_url}{separator}{urlencode({'next': '/operator'})}", 303)
        if not await budget_store.is_operator(self._store, user_id):
            page = error_page("Operators only", "This page is for the domain's operators.", self._settings.name)
            return page_response(page, status=403)
        return user_id

    async def show(self, request: Request) -> Response:
        checked = await self._operator(request)
        if isinstance(checked, Response):
            return checked
        csrf, fresh = self._sessions.csrf_token(request, await self._sessions.binding(request, checked))
        default = await budget_store.default_budget(self._store)
        rows = []
        for user_id, email, budget in await budget_store.budget_overview(self._store):
            shown = wire_usd(budget) if budget else ("0" if budget == 0 else "")
            rows.append(
                f'<tr data-user="{_e(user_id)}"><td>{_e(email or user_id)}</td><td>'
                '<form method="post" action="/operator/budgets">'
                + _hidden({"csrf": csrf, "user_id": user_id})
                + f'<input type="text" name="monthly_usd" inputmode="decimal" value="{_e(shown)}" '
                f'placeholder="default" aria-label="Monthly budget of {_e(email or user_id)}">'
                '<button type="submit" class="secondary">Set</button></form></td></tr>'
            )
        notice = _NOTICES.get(request.query_params.get("notice", ""))
        body = (
            "<h1>Budgets</h1>"
            + (f'<p class="notice" role="status">{_e(notice)}</p>' if notice else "")
            + '<p class="muted">A budget is what one user may spend in a month across every app; '
            "each app's cap stays within it. Empty: the default.</p>"
            '<form method="post" action="/operator/budgets">'
            + _hidden({"csrf": csrf, "user_id": ""})
            + '<label>Default budget (USD a month, empty for none) <input type="text" name="monthly_usd" '
            f'inputmode="decimal" value="{_e(wire_usd(default) if default else "")}"></label> '
            '<button type="submit">Set default</button></form>'
            "<table><thead><tr><th>User</th><th>Monthly budget</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
        response = page_response(_layout("Budgets", body, self._settings.name, wide=True))
        self._sessions.set_csrf_cookie(response, fresh)
        return response

    async def save(self, request: Request) -> Response:
        try:
            form = await read_form(request, timeout=self._settings.body_timeout_seconds)
        except FormError as exc:
            return refusal_page(str(exc), exc.status, self._settings.name, nothing=" Nothing was changed.")
        checked = await self._operator(request)
        if isinstance(checked, Response):
            return checked
        try:
            self._sessions.check_csrf(request, form, await self._sessions.binding(request, checked))
        except CsrfError as exc:
            page = error_page("Please try again", f"{exc}. Nothing was changed.", self._settings.name)
            return page_response(page, status=403)
        text = form.get("monthly_usd", "").strip()
        try:
            budget = None if text == "" else (0 if text in ("0", "0.0", "0.00") else parse_wire_usd(text))
        except ValueError:
            return _notice("invalid")
        user_id = form.get("user_id", "")
        if len(user_id) > 255 or not user_id.isprintable():
            return _notice("invalid")
        try:
            if user_id == "":
                await budget_store.set_default_budget(self._store, budget)
                await self._budgets.sync_all()
            else:
                await budget_store.set_user_budget(self._store, user_id, budget, int(time.time()))
                async with self._budgets.lock(user_id):
                    await self._budgets.rebalance(user_id)
        except UpstreamFailure:
            return _notice("failed")
        return _notice("saved")


def _notice(code: str) -> Response:
    return RedirectResponse(f"/operator?notice={code}", status_code=303)
