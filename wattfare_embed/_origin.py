"""The app's public origin, for the URLs the consent flow builds (its callback, the opener's origin).

``public_url`` when it is configured. Otherwise the request's own ``Host`` header, which the
client chooses: behind a proxy that passes any ``Host`` through, a forged one would put the
attacker's host into consent links and callbacks. So the header is checked for shape and
length, and against ``allowed_hosts`` when that is set.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from .config import Settings
from .errors import InvalidRequestError

__all__ = ["host_allowed", "is_https", "public_origin"]

# A DNS name (underscores too: container names have them) or a bracketed IPv6 address, and a port.
_HOST = re.compile(
    r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\.?(?::[0-9]{1,5})?"  # labels joined by single dots: no backtracking
    r"|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)
MAX_HOST_LENGTH = 255


def host_allowed(hostname: str, allowed: tuple[str, ...]) -> bool:
    """``hostname`` matches an entry exactly, or a ``*.example.com`` entry as a subdomain."""
    hostname = hostname.lower().rstrip(".")
    for pattern in allowed:
        if pattern == hostname or (pattern.startswith("*.") and hostname.endswith(pattern[1:])):
            return True
    return False


def _check_host(settings: Settings, request: Request) -> None:
    host = request.headers.get("host")
    if host is not None and (len(host) > MAX_HOST_LENGTH or not _HOST.fullmatch(host)):
        raise InvalidRequestError(f"the Host header must be a host name of at most {MAX_HOST_LENGTH} characters")
    if settings.allowed_hosts and not host_allowed(request.url.hostname or "", settings.allowed_hosts):
        raise InvalidRequestError("this host is not one of the app's allowed_hosts")


def public_origin(settings: Settings, request: Request) -> str:
    """``https://app.example.com``: the origin the app's users see."""
    _check_host(settings, request)
    if settings.public_url:
        return settings.public_url
    # No Host header (HTTP/1.0): the server's own address, which the client does not choose.
    return f"{request.url.scheme}://{request.url.netloc}"


def is_https(settings: Settings, request: Request) -> bool:
    """Whether the browser reaches the app over https (a TLS proxy may hide it from the request)."""
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")
