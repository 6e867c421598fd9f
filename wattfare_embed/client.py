"""The server-side client: ``wf.user(uid)`` with status, disconnect and a metered OpenAI client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from ._redaction import redact
from .auth import app_user_id_of
from .errors import (
    BudgetExceededError,
    FundingInvalidError,
    NotConnectedError,
    WattfareError,
    error_from_code,
    is_wattfare_code,
)
from .status import ConnectionStatus

if TYPE_CHECKING:
    import anthropic
    import openai
    from openai import OpenAI as SyncOpenAI  # the method `openai` hides the module inside the class

    from .app import Session, Wattfare

__all__ = ["WattfareUser", "is_budget_exceeded", "is_not_connected", "to_wattfare_error", "user_id_header"]

# Requests from `openai()` and `anthropic()` never leave the process; this host only names them.
INTERNAL_BASE_URL = "http://wattfare.internal/api/v1"
# The anthropic SDK adds `/v1/messages` itself.
INTERNAL_ANTHROPIC_URL = "http://wattfare.internal/api"


class MeteredClients(ABC):
    """The metered clients of one funding source (a user's connection, or a one-time grant): the
    requests they make carry ``_caller_headers()`` and never leave the process."""

    _embed: Wattfare

    @abstractmethod
    def _caller_headers(self) -> dict[str, str]:
        """The headers naming who pays (the user's id, or the grant's token)."""

    def openai(self, **options: Any) -> openai.AsyncOpenAI:
        """An ``openai.AsyncOpenAI`` whose calls are metered in process (no HTTP hop).

        Streams arrive token by token; ``max_retries`` is 0 because a retried
        metered call could be charged twice. Errors are the SDK's own exception
        types; ``to_wattfare_error(exc)`` turns them into ours.
        """
        try:
            import httpx2
            import openai
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError("wf.user(...).openai() needs: pip install 'wattfare-embed[openai]'") from exc
        from ._inprocess import InProcessTransport

        timeout = options.pop("timeout", self._embed.settings.upstream_timeout_seconds)
        http_client = httpx2.AsyncClient(transport=InProcessTransport(self._embed), timeout=timeout)
        headers = {**self._caller_headers(), **options.pop("default_headers", {})}
        return openai.AsyncOpenAI(
            base_url=INTERNAL_BASE_URL,
            api_key=self._embed.keys.secret_key,
            default_headers=headers,
            max_retries=options.pop("max_retries", 0),
            # The openai 2 line types it as an httpx client, the 3 line as an httpx2 one; both take httpx2.
            http_client=cast(Any, http_client),
            **options,
        )

    def model(self, model_name: str) -> Any:
        """A pydantic-ai model billed here (needs the ``pydantic-ai`` extra)."""
        try:
            from pydantic_ai.models.openai import OpenAIChatModel
            from pydantic_ai.providers.openai import OpenAIProvider
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError("wf.user(...).model() needs: pip install 'wattfare-embed[pydantic-ai]'") from exc
        return OpenAIChatModel(model_name, provider=OpenAIProvider(openai_client=self.openai()))


class WattfareUser(MeteredClients):
    """One of your users, as seen by the embed.

    ```python
    ai = wf.user("user_123")
    client = ai.openai()                       # an openai.AsyncOpenAI, metered
    sync_client = ai.openai_sync()             # an openai.OpenAI, for sync code and worker threads
    stream = await client.chat.completions.create(model="openai/gpt-4o-mini", messages=[...], stream=True)
    claude = ai.anthropic()                    # an anthropic.AsyncAnthropic, metered (Anthropic Messages)
    print((await ai.status()).remaining)       # micro-dollars
    ```
    """

    def __init__(self, embed: Wattfare, app_user_id: str) -> None:
        self._embed = embed
        self.app_user_id = app_user_id_of(app_user_id)

    def _caller_headers(self) -> dict[str, str]:
        return user_id_header(self.app_user_id)

    async def status(self) -> ConnectionStatus:
        """Connection and budget; ``connected=False`` on first run, never an error."""
        return await self._embed.status(self.app_user_id)

    async def disconnect(self) -> None:
        await self._embed.disconnect(self.app_user_id)

    async def create_session(self, *, monthly_usd: float | int | str | None = None) -> Session:
        return await self._embed.create_session(self.app_user_id, monthly_usd=monthly_usd)

    def openai_sync(self, **options: Any) -> SyncOpenAI:
        """An ``openai.OpenAI`` for sync code, metered in process like ``openai()``.

        Each call runs on the embed's event loop and this thread waits for it, every wait ending by
        ``timeout``. From a worker thread of your async app (a sync route, ``asyncio.to_thread``) it
        joins the loop your app runs the embed on; in a program with no event loop at all (a script,
        a task-queue worker) the embed runs on a background thread of its own. Called on the event
        loop's own thread it raises ``RuntimeError`` (it would block the loop it waits for): use
        ``openai()`` there.
        """
        try:
            import httpx2

            from ._sync_openai import MeteredOpenAI
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError("wf.user(...).openai_sync() needs: pip install 'wattfare-embed[openai]'") from exc
        from ._inprocess import ThreadedInProcessTransport

        made_on: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            made_on = asyncio.get_running_loop()

        def embed_loop() -> asyncio.AbstractEventLoop:
            return _loop_to_run_on(self._embed, made_on)

        timeout = options.pop("timeout", self._embed.settings.upstream_timeout_seconds)
        transport = ThreadedInProcessTransport(self._embed, embed_loop, deadline=timeout)
        headers = {**self._caller_headers(), **options.pop("default_headers", {})}
        return MeteredOpenAI(
            embed_loop=embed_loop,
            base_url=INTERNAL_BASE_URL,
            api_key=self._embed.keys.secret_key,
            default_headers=headers,
            max_retries=options.pop("max_retries", 0),
            http_client=cast(Any, httpx2.Client(transport=transport, timeout=timeout)),
            **options,
        )

    def anthropic(self, **options: Any) -> anthropic.AsyncAnthropic:
        """An ``anthropic.AsyncAnthropic`` whose calls are metered in process, like ``openai()``: Anthropic
        Messages as OpenRouter serves them, for any model it routes (``anthropic/claude-sonnet-4``…).

        ``max_retries`` is 0, as a retried metered call could be charged twice. A refused call raises
        the SDK's own ``APIStatusError`` (``PaymentRequiredError`` for a 402) and a stream cut at the
        cap raises ``APIStatusError`` too; ``to_wattfare_error(exc)`` turns either into ours.
        """
        try:
            import anthropic
            import httpx2
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError("wf.user(...).anthropic() needs: pip install 'wattfare-embed[anthropic]'") from exc
        from ._inprocess import InProcessTransport

        timeout = options.pop("timeout", self._embed.settings.upstream_timeout_seconds)
        http_client = httpx2.AsyncClient(transport=InProcessTransport(self._embed), timeout=timeout)
        headers = {**self._caller_headers(), **options.pop("default_headers", {})}
        return anthropic.AsyncAnthropic(
            base_url=INTERNAL_ANTHROPIC_URL,
            api_key=self._embed.keys.secret_key,
            default_headers=headers,
            max_retries=options.pop("max_retries", 0),
            http_client=http_client,
            **options,
        )

    def __repr__(self) -> str:
        return f"WattfareUser({self.app_user_id!r})"


def _loop_to_run_on(embed: Wattfare, made_on: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """Where a sync client's calls run: the loop the embed started on; before it has started, the
    loop the client was made on, else the host app's (from one of its worker threads), else one
    of the embed's own."""
    loop = embed.loop
    if loop is not None:
        if not loop.is_running():
            raise RuntimeError("the event loop the embed was started on has stopped: start it again (`async with wf:`)")
        return loop
    if made_on is not None and made_on.is_running():
        return made_on
    with contextlib.suppress(RuntimeError, ImportError):
        import anyio.from_thread

        # Starlette, FastAPI and Litestar run sync routes on anyio worker threads, which know their loop.
        host: asyncio.AbstractEventLoop = anyio.from_thread.run_sync(asyncio.get_running_loop)
        return host
    from ._inprocess import background_loop

    return background_loop(embed)


def user_id_header(app_user_id: str) -> dict[str, str]:
    """The headers naming the user to charge, for apps calling the proxy over HTTP.

    ```python
    client = openai.AsyncOpenAI(base_url=f"{app_url}/wattfare/api/v1", api_key=WATTFARE_SECRET_KEY,
                                default_headers=user_id_header("usér 42"))
    ```

    HTTP headers carry bytes, not text: an id beyond printable ASCII (or with a ``%``) is sent
    percent-encoded (UTF-8) with ``X-Wattfare-User-Encoding: percent``. The id is checked by the
    same rule the embed applies (``InvalidRequestError`` otherwise), so the header always names
    exactly the user the store knows.
    """
    app_user_id_of(app_user_id)
    if app_user_id.isascii() and app_user_id.isprintable() and "%" not in app_user_id:
        return {"X-Wattfare-User": app_user_id}
    return {"X-Wattfare-User": quote(app_user_id, safe=""), "X-Wattfare-User-Encoding": "percent"}


def to_wattfare_error(exc: BaseException) -> WattfareError | None:
    """Our typed error behind an exception, seeing through the SDKs' wrappers (the openai and
    anthropic SDKs keep the body; LiteLLM its wrapped exception, or on its own HTTP paths the body
    as text)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, WattfareError):
            return current
        body = getattr(current, "body", None)
        if body is None:
            body = _json_object(getattr(current, "message", None))
        if isinstance(body, dict):
            inner = body.get("error", body)
            code = inner.get("code") if isinstance(inner, dict) else None
            if isinstance(inner, dict) and is_wattfare_code(code):
                assert isinstance(code, str)
                # Redacted again here: the error may come from an upstream called directly.
                message = redact(str(inner.get("message") or code))
                # Keep Retry-After, so a host re-raising the error tells its client when to retry.
                response_headers = getattr(getattr(current, "response", None), "headers", None)
                retry_after = response_headers.get("retry-after") if response_headers is not None else None
                return error_from_code(code, message, {"Retry-After": retry_after} if retry_after else None)
        wrapped = getattr(current, "original_exception", None)  # LiteLLM's MidStreamFallbackError
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__ or current.__context__
    return None


def _json_object(text: object) -> dict[str, Any] | None:
    """A JSON object sent as an exception's message (LiteLLM's own HTTP client keeps the body so)."""
    if not isinstance(text, str) or not text.startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def openai_error_types() -> tuple[type[Exception], ...]:
    """The openai SDK's error base, when the SDK is installed."""
    try:
        import openai
    except ImportError:  # pragma: no cover - depends on the installed extras
        return ()
    return (openai.APIError,)


def typed_error_of(exc: BaseException) -> WattfareError | None:
    """What a host's error handler should answer: our error, whatever wraps it (the openai SDK,
    pydantic-ai, instructor, LangChain, LiteLLM…); ``None`` when no error of ours is behind ``exc``,
    which is then the host's to answer."""
    return to_wattfare_error(exc)


def is_budget_exceeded(exc: BaseException) -> bool:
    """True when the user's cap is reached: show their usage and a raise-cap link."""
    return isinstance(to_wattfare_error(exc), BudgetExceededError)


def is_not_connected(exc: BaseException) -> bool:
    """True when the user must connect (again): no budget yet, revoked, or funding refused."""
    return isinstance(to_wattfare_error(exc), (NotConnectedError, FundingInvalidError))
