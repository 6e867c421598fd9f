"""Reading a posted ``application/x-www-form-urlencoded`` form, bounded in size and fields."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request

__all__ = ["FormError", "read_form"]

MAX_FORM_BYTES = 16 * 1024
DEFAULT_TIMEOUT_SECONDS = 30.0


class FormError(Exception):
    """The body is not a small url-encoded form; pages answer ``status`` (408 when it came too
    slowly, else 403 like a CSRF failure: please try again)."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


async def read_form(
    request: Request,
    *,
    max_bytes: int = MAX_FORM_BYTES,
    max_fields: int = 20,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, str]:
    """The form's fields (first value of each name), all of it within ``timeout`` seconds.

    The deadline is for the whole body: a client sending a byte a second passes any
    deadline on each read, and would hold the request (and a sign-in slot) as long as it liked.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError("send the body as application/x-www-form-urlencoded")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise FormError(f"the form is larger than {max_bytes} bytes")
    except TimeoutError as exc:
        raise FormError(f"the form did not arrive within {timeout:g} seconds", status=408) from exc
    except ClientDisconnect as exc:
        raise FormError("the form did not arrive whole") from exc
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=max_fields, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError("the form could not be read") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields
