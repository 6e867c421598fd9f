"""Faults a test queues for the fake's next requests: HTTP errors, broken streams, odd usage, slowness."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, get_args

from starlette.types import Scope

from ._fake_wire import JSONObject, OpenRouterError, parse_usd, usd

UsageShape = Literal["empty_choices", "with_choices"]

CHAT_COMPLETIONS_PATH = "/api/v1/chat/completions"
EMBEDDINGS_PATH = "/api/v1/embeddings"
MESSAGES_PATH = "/api/v1/messages"
# Only these produce a generation, so only they can take a fault that shapes one.
GENERATING_PATHS = frozenset(
    {CHAT_COMPLETIONS_PATH, "/api/v1/completions", "/api/v1/responses", MESSAGES_PATH, EMBEDDINGS_PATH}
)
# Where the fake's front door leaves the fault it took for a request, for the endpoint to read.
FAULT_SCOPE_KEY = "wattfare.fake_fault"

# The messages OpenRouter sends with these statuses (§5.2), used when a fault names none.
_DEFAULT_MESSAGES = {
    400: "Bad Request",
    401: "User not found.",
    402: "Insufficient credits",
    403: "Forbidden",
    404: "Not Found",
    408: "Request timed out",
    413: "Payload too large",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Your chosen model is down or we received an invalid response from it",
    503: "There is no available model provider that meets your routing requirements",
    524: "Request timed out upstream",
    529: "Provider returned error: overloaded",
}
_ERROR_TYPES = {
    400: "invalid_request",
    401: "authentication",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    429: "rate_limit_exceeded",
    502: "provider_unavailable",
    503: "provider_overloaded",
    504: "timeout",
}


@dataclass(frozen=True)
class Fault:
    """What goes wrong for the next `count` requests to `path` (None: any path but `/_fake/*`).

    At most one of `status` (an HTTP error answered before anything else, authentication
    included), `mid_stream_error_after` and `drop_after` (both counted in content chunks) is set;
    the other fields combine freely and only shape requests that generate (chat and legacy
    completions, responses, messages, embeddings).
    A cut connection (`drop_after` without `clean_eof`) needs a real server such as uvicorn.
    """

    path: str | None = CHAT_COMPLETIONS_PATH
    count: int = 1
    status: int | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None
    mid_stream_error_after: int | None = None
    mid_stream_error_code: int | str = 502
    drop_after: int | None = None
    # False: the connection is cut mid-body; True: the body ends cleanly, just without [DONE] or usage.
    clean_eof: bool = False
    no_usage: bool = False
    usage_shape: UsageShape | None = None
    slow: float | None = None
    cost_override: Decimal | None = None
    # A provider that overruns max_tokens: the whole reply streams whatever was asked for.
    ignore_max_tokens: bool = False

    def __post_init__(self) -> None:
        breaks = [self.status, self.mid_stream_error_after, self.drop_after]
        if sum(value is not None for value in breaks) > 1:
            raise ValueError("a fault sets at most one of status, mid_stream_error_after, drop_after")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.usage_shape is not None and self.usage_shape not in get_args(UsageShape):
            raise ValueError(f"usage_shape must be one of {get_args(UsageShape)}")
        if self.slow is not None and not (isinstance(self.slow, int | float) and self.slow >= 0):
            raise ValueError("slow must be a number of seconds >= 0")
        if not isinstance(self.headers, dict) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in self.headers.items()
        ):
            raise ValueError("headers must be an object of header names to values")
        for name in ("mid_stream_error_after", "drop_after"):
            after = getattr(self, name)
            if after is not None and after < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def shapes_generation(self) -> bool:
        return self.status is None

    def applies_to(self, path: str) -> bool:
        if self.path is not None and self.path != path:
            return False
        return not self.shapes_generation or path in GENERATING_PATHS

    def http_error(self) -> OpenRouterError:
        assert self.status is not None
        message = self.message or _DEFAULT_MESSAGES.get(self.status, "Error")
        metadata = {"error_type": self.error_type} if self.error_type else None
        return OpenRouterError(self.status, message, headers=self.headers, metadata=metadata)

    def mid_stream_error(self) -> JSONObject:
        """The top-level `error` of the final SSE event (§4.3)."""
        code = self.mid_stream_error_code
        error: JSONObject = {"code": code, "message": self.message or "Upstream provider error"}
        error_type = self.error_type or (_ERROR_TYPES.get(code) if isinstance(code, int) else None)
        # OpenRouter omits the typed metadata on 500s (§4.3), so a bare 500 carries none.
        if error_type:
            error["metadata"] = {"error_type": error_type}
        return error

    @classmethod
    def from_json(cls, body: JSONObject) -> Fault:
        """A fault from `POST /_fake/faults`; same field names, `cost_override` as a number or string."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(body) - known
        if unknown:
            raise OpenRouterError(400, f"unknown fault fields: {sorted(unknown)}")
        fields = dict(body)
        if "cost_override" in fields:
            fields["cost_override"] = parse_usd(fields["cost_override"], "cost_override")
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise OpenRouterError(400, f"invalid fault: {exc}") from None

    def to_json(self) -> JSONObject:
        fields = dataclasses.asdict(self)
        fields["cost_override"] = usd(self.cost_override)
        return fields


class FaultQueue:
    """Pending faults, first in first out; each request takes at most one."""

    def __init__(self) -> None:
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self._pending.append(fault)
        return fault

    def take(self, path: str) -> Fault | None:
        for index, fault in enumerate(self._pending):
            if fault.applies_to(path):
                if fault.count == 1:
                    del self._pending[index]
                else:
                    self._pending[index] = dataclasses.replace(fault, count=fault.count - 1)
                return fault
        return None

    def pending(self) -> list[Fault]:
        """Faults not yet used up; `count` is what remains of each."""
        return list(self._pending)

    def clear(self) -> None:
        self._pending.clear()


def fault_of(scope: Scope) -> Fault | None:
    """The fault taken for this request, if any."""
    fault = scope.get(FAULT_SCOPE_KEY)
    return fault if isinstance(fault, Fault) else None
