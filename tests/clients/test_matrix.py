"""Every mainstream Python client, against the proxy over HTTP and against the in-process handles.

Rows are data: client, endpoint, scenario and mode. A client joins with a driver (drivers.py for
chat completions, endpoint_drivers.py for the Responses API, Anthropic Messages and legacy
completions), one per client and endpoint. Each row asserts what the user's code sees, errors
included: the typed error behind whatever the client raises.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from wattfare_embed import is_budget_exceeded, is_not_connected, to_wattfare_error

from .calls import EXPECTED_CITY, Conn, Driver, catches
from .conftest import CUT_OFF_CAP_USD, MINI, OVERRUN_REPLY, REFUSED_CAP_USD, REPLY, SONNET, Stack, require_client
from .drivers import DRIVERS

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Where a row's faults are injected: the upstream path of its endpoint.
UPSTREAM_PATHS = {
    "chat": "/api/v1/chat/completions",
    "responses": "/api/v1/responses",
    "messages": "/api/v1/messages",
    "completions": "/api/v1/completions",
}


@dataclass(frozen=True)
class Row:
    client: str
    endpoint: str
    scenario: str
    mode: str

    @property
    def id(self) -> str:
        return f"{self.client}-{self.endpoint}-{self.scenario}-{self.mode}"


async def _conn(stack: Stack, row: Row, monthly_usd: str | None = "1", model: str = MINI) -> Conn:
    return Conn(row.mode, await stack.user(monthly_usd), stack.api_url, stack.secret_key, model, row.endpoint)


async def plain(driver: Driver, row: Row, stack: Stack) -> None:
    conn = await _conn(stack, row)
    assert await driver.plain(conn) == REPLY
    await stack.nothing_held(conn.user)
    assert (await conn.user.status()).spent > 0


async def stream(driver: Driver, row: Row, stack: Stack) -> None:
    conn = await _conn(stack, row)
    pieces: list[str] = []
    await driver.stream(conn, pieces)
    if driver.name == "instructor":  # partial objects: the list grows as its JSON streams in
        assert pieces[-1] == ",".join(["example"] * 60)
    else:
        assert "".join(pieces) == REPLY
    assert len(pieces) > 5, pieces  # piece by piece, not one late blob
    await stack.nothing_held(conn.user)


async def tools(driver: Driver, row: Row, stack: Stack) -> None:
    conn = await _conn(stack, row)
    seen = await driver.tools(conn)
    assert (seen.name, seen.arguments) == ("get_weather", {"city": "example"})
    if seen.answer is not None:  # the client ran the tool and asked the model again with its result
        assert seen.answer == REPLY
    await stack.nothing_held(conn.user)


async def structured(driver: Driver, row: Row, stack: Stack) -> None:
    conn = await _conn(stack, row)
    city = await driver.structured(conn)
    assert city.model_dump() == EXPECTED_CITY.model_dump(), city
    await stack.nothing_held(conn.user)


async def _first_call_fails(driver: Driver, conn: Conn) -> BaseException:
    with pytest.raises(Exception) as raised:  # the type is the client's own: asserted below
        await getattr(driver, driver.first_call)(conn)
    assert catches(driver.raises, raised.value), repr(raised.value)
    return raised.value


async def not_connected(driver: Driver, row: Row, stack: Stack) -> None:
    conn = await _conn(stack, row, monthly_usd=None)
    exc = await _first_call_fails(driver, conn)
    assert is_not_connected(exc), repr(exc)
    error = to_wattfare_error(exc)
    assert error is not None and error.code == "not_connected" and error.status == 402, repr(exc)


async def over_cap(driver: Driver, row: Row, stack: Stack) -> None:
    conn = await _conn(stack, row, monthly_usd=REFUSED_CAP_USD, model=SONNET)
    exc = await _first_call_fails(driver, conn)
    assert is_budget_exceeded(exc), repr(exc)
    error = to_wattfare_error(exc)
    assert error is not None and error.code == "budget_exceeded" and error.status == 402, repr(exc)
    await stack.nothing_held(conn.user)


async def cut_off(driver: Driver, row: Row, stack: Stack) -> None:
    """A provider overrunning max_tokens: the proxy cuts the stream at the hold; the client raises."""
    stack.fake.reply_text = OVERRUN_REPLY
    stack.fake.inject(ignore_max_tokens=True, path=UPSTREAM_PATHS[row.endpoint])
    conn = await _conn(stack, row, monthly_usd=CUT_OFF_CAP_USD, model=SONNET)
    pieces: list[str] = []
    with pytest.raises(Exception) as raised:  # the type is the client's own: asserted below
        await driver.stream(conn, pieces)
    exc = raised.value
    assert catches(driver.raises_mid_stream, exc), repr(exc)
    assert is_budget_exceeded(exc), repr(exc)
    error = to_wattfare_error(exc)
    assert error is not None and error.code == "budget_exceeded", repr(exc)
    assert pieces, "the text before the cut reached the user's code"
    if driver.name != "instructor":
        text = "".join(pieces)
        assert OVERRUN_REPLY.startswith(text) and len(text) < len(OVERRUN_REPLY)
    await stack.nothing_held(conn.user)
    status = await conn.user.status()
    assert status.spent <= status.monthly_cap  # never past the cap


async def upstream_cut(driver: Driver, row: Row, stack: Stack) -> None:
    """The provider drops the stream: the proxy ends it with our ``upstream`` error; the client raises."""
    stack.fake.reply_text = OVERRUN_REPLY
    stack.fake.inject(drop_after=20, path=UPSTREAM_PATHS[row.endpoint])
    conn = await _conn(stack, row)
    pieces: list[str] = []
    with pytest.raises(Exception) as raised:  # the type is the client's own: asserted below
        await driver.stream(conn, pieces)
    exc = raised.value
    assert catches(driver.raises_mid_stream, exc), repr(exc)
    error = to_wattfare_error(exc)
    assert error is not None and error.code == "upstream", repr(exc)
    assert not is_budget_exceeded(exc) and not is_not_connected(exc)
    await stack.nothing_held(conn.user)


SCENARIOS: dict[str, Callable[[Driver, Row, Stack], Awaitable[None]]] = {
    "plain": plain,
    "stream": stream,
    "tools": tools,
    "structured": structured,
    "not_connected": not_connected,
    "over_cap": over_cap,
    "cut_off": cut_off,
    "upstream_cut": upstream_cut,
}
ERROR_SCENARIOS = {"not_connected", "over_cap"}  # made with the client's first call
STREAM_SCENARIOS = {"cut_off", "upstream_cut"}  # made with its stream


def _rows() -> list[Row]:
    rows = []
    for (client, endpoint), driver in DRIVERS.items():
        for scenario in SCENARIOS:
            needs = "stream" if scenario in STREAM_SCENARIOS else None if scenario in ERROR_SCENARIOS else scenario
            if needs is not None and needs not in driver.calls:
                continue
            rows.extend(Row(client, endpoint, scenario, mode) for mode in driver.modes)
    return rows


ROWS = _rows()


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_client_row(row: Row, stack: Stack) -> None:
    driver = DRIVERS[(row.client, row.endpoint)]
    require_client(driver.package, driver.module, row.client)
    await SCENARIOS[row.scenario](driver, row, stack)
