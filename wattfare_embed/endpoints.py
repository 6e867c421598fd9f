"""The HTTP API under the mount: sessions, connections, consent, callback, dev consent page."""

from __future__ import annotations

import html
import json
import logging
import secrets
import time
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import consent_flow
from ._http import json_response, parse_monthly_usd, read_body, read_json_object, safe_return_path
from ._origin import is_https, public_origin
from .auth import app_user_id_of, require_secret_key, require_session
from .config import call_resolve_user
from .consent import DevConsent
from .errors import AuthError, GrantInvalidError, InvalidRequestError
from .money import usd_text
from .pkce import s256_challenge

if TYPE_CHECKING:
    from .app import Wattfare

__all__ = ["MAX_JSON_BODY_BYTES", "mount_url", "routes"]

# The embed's own JSON bodies (sessions, connections, consent) are a few dozen bytes; the
# proxy's larger limit (`max_body_bytes`) is for model requests only.
MAX_JSON_BODY_BYTES = 64 * 1024
MAX_FORM_BYTES = 4096

logger = logging.getLogger("wattfare_embed")


def _template(name: str) -> Template:
    text: str = resources.files("wattfare_embed").joinpath("templates", name).read_text("utf-8")
    return Template(text)


def mount_url(embed: Wattfare, request: Request) -> str:
    """The embed's public base URL: ``public_url`` when configured, else the (checked) request host."""
    root: str = request.scope.get("root_path", "")
    return public_origin(embed.settings, request) + root


def _with_result(return_to: str, result: str) -> str:
    """``return_to`` with ``wattfare=<result>`` in its query, before any #fragment (which the
    app's server would never see)."""
    path, hash_mark, fragment = return_to.partition("#")
    separator = "&" if "?" in path else "?"
    return f"{path}{separator}wattfare={result}{hash_mark}{fragment}"


def routes(embed: Wattfare) -> list[BaseRoute]:
    from . import grant_pages

    settings = embed.settings
    json_limit = min(settings.max_body_bytes, MAX_JSON_BODY_BYTES)

    async def read_object(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
        return await read_json_object(
            request, json_limit, timeout=settings.body_timeout_seconds, allow_empty=allow_empty
        )

    async def session_for_current_user(request: Request) -> Response:
        user = await call_resolve_user(embed.resolve_user, request)
        if user is None:
            raise AuthError("nobody is signed in to the app")
        return json_response(dict(await embed.create_session(user)))

    async def create_session(request: Request) -> Response:
        require_secret_key(request, embed.keys)
        body = await read_object(request)
        user = app_user_id_of(body.get("appUserId"))
        limit = body.get("requestLimit")
        monthly = None
        if limit is not None:
            if not isinstance(limit, dict):
                raise InvalidRequestError('requestLimit must be an object like {"monthlyUsd": 10}')
            monthly = usd_text(parse_monthly_usd(limit.get("monthlyUsd"), maximum=settings.max_monthly_cap))
        return json_response(dict(await embed.create_session(user, monthly_usd=monthly)))

    async def read_connection(request: Request) -> Response:
        claims = require_session(request, embed.tokens)
        return json_response((await embed.status(claims.app_user_id)).to_json())

    async def update_connection(request: Request) -> Response:
        claims = require_session(request, embed.tokens)
        body = await read_object(request, allow_empty=True)
        return_to = safe_return_path(body.get("returnTo"))
        if "monthlyUsd" in body and body["monthlyUsd"] is None:
            # What JSON.stringify({monthlyUsd: NaN}) sends: a client bug, not "nothing asked".
            raise InvalidRequestError("monthlyUsd is null; send a number of US dollars, or leave it out")
        if "monthlyUsd" not in body:
            status = await embed.status(claims.app_user_id)
            if status.connected:
                return json_response(status.to_json())  # nothing asked for, nothing changes
            wanted = claims.requested_monthly or settings.default_monthly_cap
        else:
            wanted = parse_monthly_usd(body["monthlyUsd"], maximum=settings.max_monthly_cap)
        lowered = await embed.lower_cap(claims.app_user_id, wanted)
        if lowered is not None:
            return json_response(lowered.to_json())
        # Raising a cap (or connecting at all) needs the user's consent on the authority's page.
        status = await embed.status(claims.app_user_id)
        url, browser_id = await _begin(request, claims.app_user_id, wanted, return_to, "popup")
        response = json_response({**status.to_json(), "consentUrl": url})
        _bind_browser(request, response, browser_id)
        return response

    async def delete_connection(request: Request) -> Response:
        claims = require_session(request, embed.tokens)
        await embed.disconnect(claims.app_user_id)
        return Response(status_code=204, headers={"cache-control": "no-store"})

    async def status_for_server(request: Request) -> Response:
        require_secret_key(request, embed.keys)
        user = app_user_id_of(request.query_params.get("appUserId"))
        return json_response((await embed.status(user)).to_json())

    async def _begin(
        request: Request,
        app_user_id: str | None,
        monthly_cap: int,
        return_to: Any,
        mode: str,
        grant_requests: int | None = None,
    ) -> tuple[str, str]:
        browser_id = request.cookies.get(_browser_cookie(request)) or secrets.token_urlsafe(32)
        url = await consent_flow.begin(
            embed,
            app_user_id=app_user_id or grant_pages.grant_consent_owner(embed.keys.app_id, browser_id),
            grant_requests=grant_requests,
            monthly_cap=monthly_cap,
            return_to=safe_return_path(return_to),
            mode=mode,
            browser_id=browser_id,
            mount_url=mount_url(embed, request),
        )
        return url, browser_id

    def _browser_cookie(request: Request) -> str:
        return consent_flow.browser_cookie_name(secure=is_https(settings, request))

    def _bind_browser(request: Request, response: Response, browser_id: str) -> None:
        # httpOnly and SameSite=Lax: sent on the authority's top-level redirect back to
        # /callback, never readable by scripts, never sent on cross-site subrequests. Over https
        # the name is `__Host-`-prefixed, so the browser takes it only from this exact origin
        # (Secure, Path=/, no Domain): a sibling subdomain cannot plant its own browser id.
        secure = is_https(settings, request)
        response.set_cookie(
            consent_flow.browser_cookie_name(secure=secure),
            browser_id,
            max_age=86400,
            path="/" if secure else request.scope.get("root_path", "") or "/",
            httponly=True,
            samesite="lax",
            secure=secure,
        )

    def _requested_cap(value: Any, fallback: int | None) -> int:
        if value is None or value == "":
            return fallback or settings.default_monthly_cap
        return parse_monthly_usd(value, maximum=settings.max_monthly_cap)

    async def create_consent(request: Request) -> Response:
        claims = require_session(request, embed.tokens)
        body = await read_object(request, allow_empty=True)
        mode = body.get("mode", "popup")
        if mode not in ("popup", "redirect"):
            raise InvalidRequestError('mode must be "popup" or "redirect"')
        cap = _requested_cap(body.get("monthlyUsd"), claims.requested_monthly)
        url, browser_id = await _begin(request, claims.app_user_id, cap, body.get("returnTo"), mode)
        response = json_response({"url": url})
        _bind_browser(request, response, browser_id)
        return response

    async def create_grant_consent(request: Request) -> Response:
        # An app without accounts has no session: the publishable key names the app, and what
        # the visitor approves on the authority's page is the only thing that grants anything.
        body = await read_object(request)
        ask = grant_pages.read_grant_ask(embed, body)
        url, browser_id = await _begin(request, None, ask.max_cost, body.get("returnTo"), ask.mode, ask.requests)
        response = json_response({"url": url})
        _bind_browser(request, response, browser_id)
        return response

    async def connect_redirect(request: Request) -> Response:
        # A link on another site must not start a consent flow (and pick its cap) for a signed-in
        # user; browsers say where a navigation came from. Typed or bookmarked URLs say "none".
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise InvalidRequestError("start connecting from the app itself, not from a link on another site")
        user = await call_resolve_user(embed.resolve_user, request)
        if user is None:
            raise AuthError("nobody is signed in to the app")
        app_user_id_of(user, "the signed-in user's id")
        cap = _requested_cap(request.query_params.get("monthlyUsd"), None)
        url, browser_id = await _begin(request, user, cap, request.query_params.get("returnTo"), "redirect")
        response = RedirectResponse(url, status_code=302, headers={"cache-control": "no-store"})
        _bind_browser(request, response, browser_id)
        return response

    async def callback(request: Request) -> Response:
        query = request.query_params
        outcome = await consent_flow.finish(
            embed,
            state=query.get("state"),
            code=query.get("code"),
            error=query.get("error"),
            browser_id=request.cookies.get(_browser_cookie(request)),
        )
        if outcome.grant_requests is not None:
            callback_page = _template("callback.html")
            return grant_pages.grant_callback(embed, request, outcome, callback_page, _page_headers())
        result = "error" if outcome.error is not None else "denied" if outcome.denied else "connected"
        back = _with_result(outcome.return_to, result)
        if outcome.mode == "redirect" and outcome.error is None:
            return RedirectResponse(back, status_code=303)
        if outcome.error is not None:
            title, message, status_code = "Not connected", outcome.error.message, 400
        elif outcome.denied:
            title, message, status_code = (
                "Not connected",
                "You did not connect a budget. Nothing was changed.",
                200,
            )
        else:
            cap = usd_text(outcome.status.monthly_cap)
            title, message, status_code = (
                "Connected",
                f"Your AI budget is connected with a ${cap} monthly cap.",
                200,
            )
        payload = {
            "origin": public_origin(settings, request),
            "returnTo": back,
            # An error stays on screen (with a link back) instead of vanishing in a redirect.
            "type": "wattfare:connect",
            "navigate": outcome.error is None,
            "status": outcome.status.to_json(),
            "error": outcome.error.to_json()["error"] if outcome.error else None,
        }
        page = _template("callback.html").substitute(
            title=html.escape(title),
            message=html.escape(message),
            return_to=html.escape(back),
            app_name=html.escape(settings.app_name),
            # `<` escaped so no value can close the script element early.
            result_json=json.dumps(payload).replace("<", "\\u003c"),
        )
        return Response(page, status_code=status_code, media_type="text/html", headers=_page_headers())

    def _dev_authority() -> DevConsent:
        if not isinstance(embed.consent, DevConsent) or embed.keys.live:
            raise InvalidRequestError("the development consent page is only served with test keys and DevConsent")
        return embed.consent

    async def _pending(state: Any) -> Any:
        request = await embed.store.find_consent_request(state) if consent_flow.plausible_state(state) else None
        now = int(time.time())
        if request is None or request.app_id != embed.keys.app_id:
            raise GrantInvalidError("this consent link is unknown; start connecting again from the app")
        if request.used_at is not None or request.expires_at <= now:
            raise GrantInvalidError("this consent link was used or has expired; start connecting again")
        return request

    def _back_to_callback(pending: Any, **params: str) -> Response:
        query = urlencode({**params, "state": pending.state})
        return RedirectResponse(f"{pending.redirect_uri}?{query}", status_code=303)

    def _link_error_page(request: Request, error: GrantInvalidError) -> Response:
        # A person followed this link: a page for them, not the JSON an API client gets.
        logger.info("consent link refused: %s", error.message)
        page = _template("consent_link.html").substitute(
            title="This link can no longer be used",
            message="Consent links work once and only for a few minutes. Go back and click "
            "“Connect AI budget” again to get a fresh one.",
            back=html.escape(f"{public_origin(settings, request)}/"),
            app_name=html.escape(settings.app_name),
            code=error.code,
        )
        return Response(page, status_code=error.status, media_type="text/html", headers=_page_headers())

    async def dev_consent_page(request: Request) -> Response:
        authority = _dev_authority()
        try:
            pending = await _pending(request.query_params.get("state"))
        except GrantInvalidError as exc:
            return _link_error_page(request, exc)
        if authority.auto_approve:
            code = _dev_code(authority, pending, pending.requested_cap)
            return _back_to_callback(pending, code=code)
        if pending.grant_requests is not None:
            grant_page = grant_pages.render_dev_grant_page(embed, request, pending, _template("dev_grant.html"))
            return Response(grant_page, media_type="text/html", headers=_page_headers())
        page = _template("dev_consent.html").substitute(
            app_name=html.escape(settings.app_name),
            app_initial=html.escape(settings.app_name[:1].upper() or "A"),
            app_user_id=html.escape(pending.app_user_id),
            action=html.escape(f"{request.scope.get('root_path', '')}/dev/consent"),
            state=html.escape(pending.state),
            cap_usd=html.escape(usd_text(pending.requested_cap)),
            max_usd=html.escape(usd_text(settings.max_monthly_cap)),
            funding="your development OpenRouter key" if settings.upstream_api_key else "the simulated upstream",
        )
        return Response(page, media_type="text/html", headers=_page_headers())

    async def dev_consent_decision(request: Request) -> Response:
        authority = _dev_authority()
        body = await read_body(request, MAX_FORM_BYTES, timeout=settings.body_timeout_seconds)
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        try:
            pending = await _pending(form.get("state"))
        except GrantInvalidError as exc:
            return _link_error_page(request, exc)
        if form.get("decision") != "approve":
            return _back_to_callback(pending, error="access_denied")
        if pending.grant_requests is not None:
            cap = pending.requested_cap  # a grant's terms are the app's ask, approved or denied whole
        else:
            cap = parse_monthly_usd(form.get("monthlyUsd"), maximum=settings.max_monthly_cap)
        return _back_to_callback(pending, code=_dev_code(authority, pending, cap))

    def _dev_code(authority: DevConsent, pending: Any, cap: int) -> str:
        challenge = s256_challenge(pending.verifier)
        return authority.issue_code(
            pending.state, challenge, cap, embed.authority_context(), grant_requests=pending.grant_requests
        )

    async def browser_client(request: Request) -> Response:
        script = resources.files("wattfare_embed").joinpath("static", "wattfare.js").read_bytes()
        return Response(
            script,
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=300", "x-content-type-options": "nosniff"},
        )

    return [
        Route("/wattfare.js", browser_client, methods=["GET"]),
        Route("/session", session_for_current_user, methods=["POST"]),
        Route("/api/v1/sessions", create_session, methods=["POST"]),
        Route("/api/v1/connections", read_connection, methods=["GET"]),
        Route("/api/v1/connections", update_connection, methods=["POST"]),
        Route("/api/v1/connections", delete_connection, methods=["DELETE"]),
        Route("/api/v1/status", status_for_server, methods=["GET"]),
        Route("/api/v1/consent", create_consent, methods=["POST"]),
        Route("/api/v1/grants/consent", create_grant_consent, methods=["POST"]),
        Route("/connect", connect_redirect, methods=["GET"]),
        Route("/callback", callback, methods=["GET"]),
        Route("/dev/consent", dev_consent_page, methods=["GET"]),
        Route("/dev/consent", dev_consent_decision, methods=["POST"]),
    ]


def _page_headers() -> dict[str, str]:
    return {
        "cache-control": "no-store",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'",
    }
