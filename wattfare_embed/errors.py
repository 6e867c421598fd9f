"""Typed errors: one class per wire code, answered in one place.

Every error the embed raises reaches the client as
``{"error": {"code": "...", "message": "..."}}`` with the status of its class,
the same shape the hosted Wattfare API and OpenAI clients understand.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "BudgetExceededError",
    "ConfigurationError",
    "FundingInvalidError",
    "GrantInvalidError",
    "InvalidRequestError",
    "NotConnectedError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RequestTimeoutError",
    "UnavailableError",
    "UpstreamError",
    "WattfareError",
    "error_from_code",
    "is_wattfare_code",
]


class ConfigurationError(ValueError):
    """The embed is set up wrongly (keys, consent authority, URLs); raised at construction."""


class WattfareError(Exception):
    """Base of every error the embed answers with.

    ``code`` and ``status`` are fixed per subclass; ``headers`` carries extras
    such as ``Retry-After``.
    """

    code: ClassVar[str] = "upstream"
    status: ClassVar[int] = 500
    # Metered failures tell OpenAI clients not to retry: a retry could charge twice.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def body(self) -> bytes:
        return json.dumps(self.to_json()).encode()

    def response_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "x-should-retry": str(self.retryable).lower()}
        headers.update(self.headers)
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class NotConnectedError(WattfareError):
    """No budget connected yet: a normal first-run state; show the Connect button."""

    code = "not_connected"
    status = 402


class BudgetExceededError(WattfareError):
    """The user's cap for this period is reached."""

    code = "budget_exceeded"
    status = 402


class FundingInvalidError(WattfareError):
    """The upstream refused the user's credential (revoked, out of credit): reconnect."""

    code = "funding_invalid"
    status = 402


class GrantInvalidError(WattfareError):
    """A one-time grant or consent state is unknown, expired or used up."""

    code = "grant_invalid"
    status = 402


class RateLimitedError(WattfareError):
    """Back off; ``Retry-After`` says how long."""

    code = "rate_limited"
    status = 429
    retryable = True


class AuthError(WattfareError):
    """The app's credentials (secret key or session token) are missing or wrong."""

    code = "auth"
    status = 401


class InvalidRequestError(WattfareError):
    """Bad input; the message says what is wrong."""

    code = "invalid_request"
    status = 400


class PayloadTooLargeError(InvalidRequestError):
    """The request body is over the configured limit (``max_body_bytes``, default 4 MiB)."""

    status = 413


class RequestTimeoutError(InvalidRequestError):
    """The request body did not arrive within the deadline (``body_timeout_seconds``, default 30 s)."""

    status = 408

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        # The rest of the body may still be on its way: the connection cannot be reused.
        super().__init__(message, headers={"connection": "close", **(headers or {})})


class UpstreamError(WattfareError):
    """The model provider failed."""

    code = "upstream"
    status = 502


class UnavailableError(WattfareError):
    """The embed's own database could not be reached (or stayed locked): nothing was forwarded
    and nothing charged for it. Not retried by OpenAI clients (``x-should-retry: false``): the
    reservation may have committed with its reply lost; ``Retry-After`` says when to try again."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "5", **(headers or {})})


_BY_CODE: dict[str, type[WattfareError]] = {
    cls.code: cls
    for cls in (
        NotConnectedError,
        BudgetExceededError,
        FundingInvalidError,
        GrantInvalidError,
        RateLimitedError,
        AuthError,
        InvalidRequestError,
        UnavailableError,
        UpstreamError,
    )
}


def error_from_code(code: str, message: str, headers: dict[str, str] | None = None) -> WattfareError:
    """Rebuild a typed error from its wire code (unknown codes become ``UpstreamError``)."""
    return _BY_CODE.get(code, UpstreamError)(message, headers=headers)


def is_wattfare_code(code: object) -> bool:
    """True for the codes the embed answers with (not, say, a code of OpenAI's own API)."""
    return isinstance(code, str) and code in _BY_CODE
