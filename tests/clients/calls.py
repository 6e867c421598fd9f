"""What the client matrix asks of every client, and where a client points: shared by the drivers and the rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from wattfare_embed import WattfareUser

HELLO = "Say hello"
ASK_WEATHER = "What is the weather in Paris?"
ASK_CITY = "Name a city and its population"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class City(BaseModel):
    name: str
    population: int


# What the fake answers a schema with: "example" for strings, the minimum (or 1) for integers.
EXPECTED_CITY = City(name="example", population=1)


class Cities(BaseModel):
    """Structured output long enough to be cut off mid-stream (the fake fills every item)."""

    names: list[str] = Field(min_length=60)


@dataclass(frozen=True)
class Conn:
    """Where a client points: the proxy over HTTP, or the embed in process."""

    mode: str  # "http" | "inprocess"
    user: WattfareUser
    api_url: str
    secret_key: str
    model: str
    endpoint: str = "chat"  # the API a call goes to: a driver serving more than one branches on it

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Wattfare-User": self.user.app_user_id}

    def async_openai(self) -> Any:
        import openai

        if self.mode == "inprocess":
            return self.user.openai()
        return openai.AsyncOpenAI(
            base_url=self.api_url, api_key=self.secret_key, default_headers=self.headers, max_retries=0
        )

    def sync_openai(self) -> Any:
        import openai

        if self.mode == "inprocess":
            return self.user.openai_sync()
        return openai.OpenAI(
            base_url=self.api_url, api_key=self.secret_key, default_headers=self.headers, max_retries=0
        )


@dataclass
class ToolSeen:
    """A tool call as the client reported it; ``answer`` is the final text when the client ran the tool."""

    name: str
    arguments: dict[str, Any]
    answer: str | None = None


class WeatherTool:
    """``get_weather`` for clients that run tools themselves, recording what they were called with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

        def get_weather(city: str) -> str:
            """The weather in a city."""
            self.calls.append({"city": city})
            return f"sunny in {city}"

        self.function = get_weather


class Driver:
    name: ClassVar[str]
    package: ClassVar[str]  # what to pip install
    module: ClassVar[str]  # what to import
    endpoints: ClassVar[tuple[str, ...]] = ("chat",)
    modes: ClassVar[tuple[str, ...]] = ("http", "inprocess")
    calls: ClassVar[frozenset[str]] = frozenset({"plain", "stream", "tools", "structured"})
    # The call the error rows make: the one this client's users make most.
    first_call: ClassVar[str] = "plain"
    # What the user's code catches when a call is refused, and when a stream is cut: class names,
    # any of which is in the exception's MRO (a library's newer versions may wrap differently).
    raises: ClassVar[tuple[str, ...]] = ("APIStatusError",)
    raises_mid_stream: ClassVar[tuple[str, ...]] = ("APIError",)


def catches(names: tuple[str, ...], exc: BaseException) -> bool:
    """True when ``except`` with one of the classes named ``names`` catches ``exc``."""
    return bool(set(names) & {cls.__name__ for cls in type(exc).__mro__})
