"""``/dashboard``: the user's budget page. The budget across apps (when the operator set one), what
is used and left this month, and every app that can spend from it, with its cap, its spend and
Raise / lower and Revoke.

This month's spend is read from each grant's own upstream key (``usage_monthly``); showing the
page also re-limits the keys to the budget (``budgets.py``).
A revoke deletes the upstream key before the page answers and sends the app its
webhook; a new cap is set on the upstream key first, then announced to the app.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..consent._protocol import parse_wire_usd, wire_usd
from .budgets import BudgetKeeper
from .config import DomainSettings
from .forms import FormError, read_form
from .grants import GrantLifecycle
from .login import Authenticate, call_authenticate, refusal_page
from .pages import BudgetSummary, DashboardRow, dashboard_page, error_page, page_response
from .records import Grant, GrantState
from .sessions import CsrfError, Sessions
from .storage import DomainStore
from .upstream import UpstreamFailure

__all__ = ["Dashboard"]

_NOTICES = {
    "revoked": "Revoked. That app can no longer spend from your budget.",
    "updated": "The monthly cap is changed.",
    "invalid": "Enter a monthly cap more than zero and within this domain's maximum.",
    "failed": "The change could not be made right now; nothing was changed. Try again.",
    "gone": "That app was already disconnected.",
}


class Dashboard:
    def __init__(
        self,
        store: DomainStore,
        sessions: Sessions,
        grants: GrantLifecycle,
        budgets: BudgetKeeper,
        settings: DomainSettings,
        authenticate: Authenticate,
        login_url: str,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._grants = grants
        self._budgets = budgets
        self._settings = settings
        self._authenticate = authenticate
        self._login_url = login_url

    def routes(self) -> list[Route]:
        return [
            Route("/", lambda request: RedirectResponse("/dashboard", status_code=303), methods=["GET"]),
            Route("/dashboard", self.show, methods=["GET"]),
            Route("/dashboard/grants/{grant_id}/cap", self.change_cap, methods=["POST"]),
            Route("/dashboard/grants/{grant_id}/revoke", self.revoke, methods=["POST"]),
        ]

    async def show(self, request: Request) -> Response:
        user_id = await call_authenticate(self._authenticate, request)
        if user_id is None:
            separator = "&" if "?" in self._login_url else "?"
            return RedirectResponse(f"{self._login_url}{separator}{urlencode({'next': '/dashboard'})}", 303)
        now = int(time.time())
        async with self._budgets.lock(user_id):
            try:
                view, _ = await self._budgets.rebalance(user_id)
            except UpstreamFailure:
                view = None  # shown without re-limiting; the next pass tries again
        if view is None:
            grants = [g for g in await self._store.live_grants(user_id=user_id) if g.status == GrantState.ACTIVE]
            rows = [
                DashboardRow(g.id, g.app_name, wire_usd(g.monthly_cap), None, grant_requests=g.grant_requests)
                for g in grants
                if g.expires_at is None or g.expires_at > now  # an expired one-time grant is gone
            ]
            summary = None
        else:
            rows = [
                DashboardRow(
                    app.grant.id,
                    app.grant.app_name,
                    wire_usd(app.grant.monthly_cap),
                    wire_usd(app.spent) if app.spent is not None else None,
                    wire_usd(app.key_limit) if view.budget is not None else None,
                    grant_requests=app.grant.grant_requests,
                )
                for app in view.apps
                if app.grant.expires_at is None or app.grant.expires_at > now
            ]
            summary = BudgetSummary(
                budget_usd=wire_usd(view.budget) if view.budget is not None else None,
                used_usd=wire_usd(view.used),
                left_usd=wire_usd(view.left) if view.left is not None else None,
                period=view.period,
            )
        csrf, fresh = self._sessions.csrf_token(request, await self._sessions.binding(request, user_id))
        page = dashboard_page(
            payer=await self._store.user_email(user_id) or user_id,
            rows=rows,
            summary=summary,
            csrf=csrf,
            domain_name=self._settings.name,
            notice=_NOTICES.get(request.query_params.get("notice", "")),
        )
        response = page_response(page)
        self._sessions.set_csrf_cookie(response, fresh)
        return response

    async def change_cap(self, request: Request) -> Response:
        checked = await self._owned_grant(request)
        if isinstance(checked, Response):
            return checked
        grant, form = checked
        try:
            cap = parse_wire_usd(form.get("monthly_usd", ""))
        except ValueError:
            return _notice("invalid")
        if cap > self._settings.max_monthly_cap or grant.one_time:
            return _notice("invalid")  # a one-time grant's cap is what was approved: revoke it instead
        try:
            changed = await self._grants.change_cap(grant, cap)
        except UpstreamFailure:
            return _notice("failed")
        return _notice("updated" if changed is not None else "gone")

    async def revoke(self, request: Request) -> Response:
        checked = await self._owned_grant(request)
        if isinstance(checked, Response):
            return checked
        grant, _ = checked
        await self._grants.revoke(grant, reason="user", notify=True)
        return _notice("revoked")

    async def _owned_grant(self, request: Request) -> tuple[Grant, dict[str, str]] | Response:
        """The signed-in user's active grant named in the path, after the CSRF check."""
        try:
            form = await read_form(request, timeout=self._settings.body_timeout_seconds)
        except FormError as exc:
            return refusal_page(str(exc), exc.status, self._settings.name, nothing=" Nothing was changed.")
        user_id = await call_authenticate(self._authenticate, request)
        if user_id is None:
            page = error_page("Sign in first", "Your session has ended; nothing was changed.", self._settings.name)
            return page_response(page, status=401)
        try:
            # Bound to the session the dashboard was shown in: a token from another session is refused.
            self._sessions.check_csrf(request, form, await self._sessions.binding(request, user_id))
        except CsrfError as exc:
            page = error_page("Please try again", f"{exc}. Nothing was changed.", self._settings.name)
            return page_response(page, status=403)
        grant = await self._store.get_grant(request.path_params["grant_id"])
        if grant is None or grant.user_id != user_id:
            page = error_page("Not found", "There is no such app on your dashboard.", self._settings.name)
            return page_response(page, status=404)
        if grant.status != GrantState.ACTIVE:
            return _notice("gone")
        return grant, form


def _notice(code: str) -> Response:
    return RedirectResponse(f"/dashboard?notice={code}", status_code=303)
