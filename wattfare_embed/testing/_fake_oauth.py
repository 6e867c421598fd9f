"""The fake's OAuth PKCE flow (§1): the `/auth` approval page, and trading a code for a key."""

from __future__ import annotations

import hmac
import html
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..pkce import s256_challenge
from ._fake_wire import OpenRouterError, json_object

if TYPE_CHECKING:
    from .fake_openrouter import FakeOpenRouter

# Codes are single-use and expire 10 minutes after issuance (§1.1).
CODE_LIFETIME_SECONDS = 600
_CHALLENGE_METHODS = frozenset({"S256", "plain"})
_INVALID_CODE = "Invalid code or code_verifier"
# The fields the approval page carries from GET /auth to POST /auth/decide.
_AUTHORIZATION_FIELDS = ("callback_url", "code_challenge", "code_challenge_method", "state", "key_label")


@dataclass(eq=False)
class _Grant:
    """What the user approved, waiting for the app to trade its code for a key."""

    code_challenge: str | None
    code_challenge_method: str | None
    issued_at: float
    key_label: str | None
    used: bool = False

    def accepts(self, verifier: object, method: object) -> bool:
        if self.code_challenge is None:
            return True
        if not isinstance(verifier, str) or not verifier.isascii():
            return False
        if method is not None and method != self.code_challenge_method:
            return False
        expected = s256_challenge(verifier) if self.code_challenge_method == "S256" else verifier
        return hmac.compare_digest(expected, self.code_challenge)


class _AuthorizationCodes:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._grants: dict[str, _Grant] = {}

    def issue(self, fields: Mapping[str, str]) -> str:
        code = f"auth_code_{secrets.token_urlsafe(18)}"
        challenge = fields.get("code_challenge") or None
        self._grants[code] = _Grant(
            code_challenge=challenge,
            # RFC 7636: a challenge sent without a method is "plain".
            code_challenge_method=(fields.get("code_challenge_method") or "plain") if challenge else None,
            issued_at=self._clock(),
            key_label=fields.get("key_label") or None,
        )
        return code

    def redeem(self, code: object, verifier: object, method: object) -> _Grant:
        grant = self._grants.get(code) if isinstance(code, str) else None
        if grant is None or grant.used:
            raise OpenRouterError(403, _INVALID_CODE)
        if self._clock() - grant.issued_at >= CODE_LIFETIME_SECONDS:
            raise OpenRouterError(403, "Authorization code expired")
        if not grant.accepts(verifier, method):
            raise OpenRouterError(403, _INVALID_CODE)
        grant.used = True
        return grant


def oauth_routes(fake: FakeOpenRouter) -> list[Route]:
    codes = _AuthorizationCodes(lambda: fake.clock())

    async def authorize(request: Request) -> Response:
        fields = _authorization_fields(request.query_params)
        if fake.oauth_auto_approve:
            return _approve(codes, fields, status_code=302)
        return HTMLResponse(_approval_page(fields, action=request.scope.get("root_path", "") + "/auth/decide"))

    async def decide(request: Request) -> Response:
        # Parsed by hand so the fake needs no python-multipart.
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        fields = _authorization_fields(form)
        # 303: the browser follows a POSTed form's redirect with a GET.
        if form.get("decision") == "approve":
            return _approve(codes, fields, status_code=303)
        # A denial carries no `state` (§1.1); Spawn reads `error` and `error_description`.
        denied = {"error": "access_denied", "error_description": "The user denied the request"}
        return RedirectResponse(_with_query(fields["callback_url"], denied), status_code=303)

    async def exchange_code(request: Request) -> Response:
        body = await json_object(request)
        method = body.get("code_challenge_method")
        if method is not None and method not in _CHALLENGE_METHODS:
            raise OpenRouterError(400, "Invalid code_challenge_method")
        grant = codes.redeem(body.get("code"), body.get("code_verifier"), method)
        key = fake.keys.create(name=grant.key_label or "OAuth key", limit=fake.oauth_key_limit, via_oauth=True)
        return JSONResponse({"key": key.secret, "user_id": fake.oauth_user_id})

    return [
        Route("/auth", authorize, methods=["GET"]),
        Route("/auth/decide", decide, methods=["POST"]),
        Route("/api/v1/auth/keys", exchange_code, methods=["POST"]),
    ]


def _authorization_fields(source: Mapping[str, str]) -> dict[str, str]:
    fields = {name: source.get(name, "") for name in _AUTHORIZATION_FIELDS}
    if not fields["callback_url"]:
        # Headless mode (no callback_url) is not simulated.
        raise OpenRouterError(400, "callback_url is required")
    if not _callback_allowed(fields["callback_url"]):
        raise OpenRouterError(400, "callback_url must be https, or http on localhost")
    if fields["code_challenge_method"] and fields["code_challenge_method"] not in _CHALLENGE_METHODS:
        raise OpenRouterError(400, "Invalid code_challenge_method")
    return fields


def _callback_allowed(url: str) -> bool:
    # Any https URL, and localhost on any port (§1.1).
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in {"localhost", "127.0.0.1"})


def _approve(codes: _AuthorizationCodes, fields: dict[str, str], *, status_code: int) -> Response:
    params = {"code": codes.issue(fields)}
    if fields["state"]:
        params["state"] = fields["state"]
    return RedirectResponse(_with_query(fields["callback_url"], params), status_code=status_code)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _approval_page(fields: dict[str, str], *, action: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">' for name, value in fields.items()
    )
    app = html.escape(fields["key_label"] or urlsplit(fields["callback_url"]).netloc)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {app} - OpenRouter (fake)</title></head>
<body>
<h1>{app} wants to connect to your OpenRouter account</h1>
<form method="post" action="{html.escape(action)}">{hidden}
<button type="submit" name="decision" value="approve">Approve</button></form>
<form method="post" action="{html.escape(action)}">{hidden}
<button type="submit" name="decision" value="deny">Deny</button></form>
</body></html>
"""
