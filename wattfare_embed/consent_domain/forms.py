"""Reading a posted ``application/x-www-form-urlencoded`` form, bounded in size and fields."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

__all__ = ["FormError", "read_form"]

MAX_FORM_BYTES = 16 * 1024


class FormError(Exception):
    """The body is not a small url-encoded form."""


async def read_form(request: Request, *, max_bytes: int = MAX_FORM_BYTES, max_fields: int = 20) -> dict[str, str]:
    """The form's fields (first value of each name)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError("send the body as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise FormError(f"the form is larger than {max_bytes} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=max_fields, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError("the form could not be read") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields
