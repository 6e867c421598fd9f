"""No secret leaves through an error: not the funding key an upstream echoes, not a key in a log line."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

import wattfare_embed
from tests.proxy.conftest import MINI, Proxied, error_of
from wattfare_embed import WattfareMiddleware
from wattfare_embed._redaction import LOGGER_NAMES
from wattfare_embed.testing.live_server import serve_in_loop

from .conftest import EchoingUpstream

ECHOED = {  # the upstream's status → the status and code of our error
    400: (400, "invalid_request"),
    402: (402, "funding_invalid"),
    403: (400, "invalid_request"),
    429: (429, "rate_limited"),
    500: (502, "upstream"),
    503: (502, "upstream"),
}


def assert_no_secret(text: str, stack: Proxied, user: str) -> None:
    funding_key = stack.users[user].secret
    for secret in (funding_key, stack.keys.secret_key, funding_key[len("sk-or-v1-") :][:24], "sk-or-", "Bearer sk"):
        assert secret not in text, f"{secret[:12]}… leaked: {text}"


def echo(stack: Proxied, status: int) -> None:
    fake = stack.fake
    assert isinstance(fake, EchoingUpstream)
    fake.echo_status = status


@pytest.mark.parametrize("status", sorted(ECHOED))
async def test_an_upstream_echoing_the_funding_key_never_puts_it_in_our_error(
    echoing: Proxied, user_id: str, status: int
) -> None:
    await echoing.connect(user_id)
    echo(echoing, status)

    response = await echoing.chat(user_id, max_tokens=20)

    assert error_of(response) == ECHOED[status]
    assert_no_secret(response.text, echoing, user_id)
    message = response.json()["error"]["message"]
    assert "echo: Authorization: Bearer [redacted]" in message, "the upstream's message is kept, redacted"
    assert len(message) < 450
    # Refused before a byte came back: nothing charged, nothing held.
    [row] = await echoing.settled(user_id, 1)
    assert (row.state, row.cost) == ("released", 0)


async def test_the_in_process_client_gets_the_redacted_error_too(echoing: Proxied, user_id: str) -> None:
    await echoing.connect(user_id)
    echo(echoing, 400)

    with pytest.raises(openai.BadRequestError) as raised:
        await (
            echoing.wf.user(user_id)
            .openai()
            .chat.completions.create(model=MINI, messages=[{"role": "user", "content": "hi"}], max_tokens=20)
        )

    assert_no_secret(str(raised.value.body) + str(raised.value), echoing, user_id)


async def test_the_readme_middleware_pattern_carries_no_key_to_the_browser(echoing: Proxied, user_id: str) -> None:
    """The host route lets the openai SDK's error rise; WattfareMiddleware answers it to the browser."""
    await echoing.connect(user_id)
    wf = echoing.wf

    async def summarise(request: Request) -> Response:
        client = wf.user(user_id).openai()
        reply = await client.chat.completions.create(
            model=MINI, messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        return JSONResponse({"answer": reply.choices[0].message.content})

    host = Starlette(routes=[Route("/summarise", summarise, methods=["POST"]), Mount("/wattfare", app=wf)])
    host.add_middleware(WattfareMiddleware, wattfare=wf)
    async with serve_in_loop(host) as base, httpx2.AsyncClient(base_url=base) as browser:
        for status in (402, 429, 500):
            echo(echoing, status)
            response = await browser.post("/summarise")
            assert error_of(response) == ECHOED[status]
            assert_no_secret(response.text, echoing, user_id)
            assert "[redacted]" in response.text
    await echoing.settled(user_id, 3)


async def test_no_log_line_of_the_package_carries_a_key(
    echoing: Proxied, user_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    await echoing.connect(user_id)
    funding_key = echoing.users[user_id].secret
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("wattfare_embed")
    domain_logger = logging.getLogger("wattfare_embed.consent_domain")

    # Whatever a message, its arguments or an exception carry, the record is redacted before
    # any handler formats it: the app's secret key (known to the embed), a funding key and a
    # bearer token (by their shape), a management key.
    logger.warning("calling with %s and %s", echoing.keys.secret_key, f"Authorization: Bearer {funding_key}")
    try:
        raise RuntimeError(f"upstream said: key {funding_key} is out of credit")
    except RuntimeError:
        logger.exception("a failure")
    domain_logger.error("management key sk-or-mgmt-%s refused", "0123456789abcdef")
    echo(echoing, 500)
    await echoing.chat(user_id, max_tokens=20)  # and a real failure on the way

    text = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert caplog.records, "the records were captured"
    assert_no_secret(text, echoing, user_id)
    assert "sk-or-mgmt-0123" not in text
    assert "[redacted]" in caplog.text and "out of credit" in caplog.text, "the message stays useful"


async def test_an_echoed_error_from_an_upstream_called_directly_is_redacted_when_answered(
    echoing: Proxied, user_id: str
) -> None:
    """The middleware also answers errors of our wire codes from an upstream called without the
    proxy; their messages are redacted on the way out as well."""
    await echoing.connect(user_id)
    funding_key = echoing.users[user_id].secret
    body: dict[str, Any] = {"error": {"code": "invalid_request", "message": f"bad key Bearer {funding_key}"}}
    error = openai.BadRequestError(
        "bad", response=httpx2.Response(400, request=httpx2.Request("POST", "http://x")), body=body
    )

    from wattfare_embed import to_wattfare_error

    typed = to_wattfare_error(error)
    assert typed is not None and funding_key not in typed.message and "[redacted]" in typed.message


def test_every_logger_of_the_package_is_redacted() -> None:
    """A filter on a logger sees only that logger's own records, so each one the code names must
    be in the list the embed installs the filter on."""
    named = set()
    for source in Path(wattfare_embed.__file__).parent.rglob("*.py"):
        named |= set(re.findall(r"getLogger\(\s*\"([^\"]+)\"", source.read_text()))
    assert named and named <= set(LOGGER_NAMES), named - set(LOGGER_NAMES)
