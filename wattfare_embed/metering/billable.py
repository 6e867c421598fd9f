"""What a request can be billed for, read once from its body: the normalized view admission works from.

An endpoint's reader (``read_chat_request``, ``read_embeddings_request``) turns its own wire
shape into a ``BillableRequest``: the models it may run on, the prompt text, each media part
with what its bytes say about its size, the web searches it allows, the output it asks for and
the limits it sent. Admission, clamping and pricing then know nothing of where those live in
the body, so another endpoint (``/responses``, ``/messages``) only needs a reader of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic_core import to_json

from ..errors import InvalidRequestError
from .media import DataUrl, audio_seconds, mp4_seconds, parse_data_url, pdf_pages

__all__ = [
    "BillableRequest",
    "MediaPart",
    "SearchAllowance",
    "ToolReader",
    "audio_part",
    "file_part",
    "image_part",
    "models_of",
    "positive_int",
    "read_chat_request",
    "read_chat_tool",
    "read_embeddings_request",
    "search_allowance",
    "searches_and_tools",
    "text_bytes",
    "video_part",
]

# OpenRouter's web plugin brings in 5 results unless told otherwise (reference: plugins/web-search).
DEFAULT_SEARCH_RESULTS = 5
MAX_SEARCH_RESULTS = 25
# Characters of content per result: Exa's adaptive highlights are "typically ~2,000-4,000"; the
# presets fix 5,000 / 15,000 / 30,000 (OpenRouter's web search docs).
DEFAULT_RESULT_CHARS = 5_000
_RESULT_CHARS_BY_CONTEXT = {"low": 5_000, "medium": 15_000, "high": 30_000}
# Plugins that bill nothing of their own (the file parser's cost is part of each file's bound).
_UNBILLED_PLUGINS = frozenset({"file-parser", "response-healing", "context-compression"})
_TEXT_PARTS = frozenset({None, "text", "input_text", "refusal"})
_OUTPUT_MODALITIES = frozenset({"image", "audio"})
_SEARCH_OR_TOOL_KEYS = ("plugins", "web_search_options", "tools")
CHAT_TEXT_KEYS = ("messages", "prompt", "input", "tools", "tool_choice", "response_format", "functions")


@dataclass(frozen=True, slots=True)
class MediaPart:
    """One image, audio clip, video or file in the prompt, and what its bytes say about its size."""

    kind: str  # image | audio | video | file
    where: str  # e.g. "messages[0].content[2]", to name it in a refusal
    seconds: Decimal | None = None  # audio and video, when the file states it
    pages: int | None = None  # PDFs, when the page tree states it
    by_url: bool = False

    @property
    def sized(self) -> bool:
        """Whether its bill can be bounded from the request alone (images always can)."""
        return self.kind == "image" or self.seconds is not None or self.pages is not None


@dataclass(frozen=True, slots=True)
class SearchAllowance:
    """Web searches a request allows: by the ``web`` plugin, ``:online``, native search or a server tool."""

    where: str
    searches: int
    results: int
    result_chars: int


# Not frozen: one is built for every request, and a frozen dataclass's __init__ (a call of
# object.__setattr__ per field) took 4 µs of the reader's 8.5. Nothing changes one once read.
@dataclass(slots=True)
class BillableRequest:
    """The billable parts of one request, whatever endpoint it came through."""

    models: tuple[str, ...]  # the model, then any fallbacks, in order
    text_bytes: int  # the prompt's text (JSON), media payloads left out
    messages: int
    media: tuple[MediaPart, ...] = ()
    searches: tuple[SearchAllowance, ...] = ()
    completes: bool = True  # produces output tokens (chat), or not (embeddings)
    choices: int = 1
    completion_limit: int | None = None  # the smallest output limit the client sent
    output_modalities: frozenset[str] = frozenset()  # beyond text: "image", "audio"
    cache_write_1h: bool = False  # asks for one-hour prompt caching
    unbounded: tuple[str, ...] = ()  # parts no bound can be put on (unknown server tools, plugins)

    @property
    def dimensions(self) -> frozenset[str]:
        """The pricing keys this request can be billed on."""
        keys = {"prompt", "request", "input_cache_read", "input_cache_write"}
        if self.completes:
            keys |= {"completion", "internal_reasoning"}
        kinds = {part.kind for part in self.media}
        if "image" in kinds:
            keys |= {"image", "image_token"}
        if "audio" in kinds:
            keys |= {"audio", "input_audio_cache"}
        if self.searches:
            keys.add("web_search")
        if self.cache_write_1h:
            keys.add("input_cache_write_1h")
        keys |= {f"{modality}_output" for modality in self.output_modalities}
        return frozenset(keys)


def positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def models_of(payload: dict[str, Any]) -> tuple[str, ...]:
    """The model, then any fallbacks (``models``), in order and once each."""
    fallbacks = payload.get("models")
    if fallbacks is not None and not (
        isinstance(fallbacks, list) and all(isinstance(name, str) and name for name in fallbacks)
    ):
        raise InvalidRequestError("`models` must be a list of model ids")
    return tuple(dict.fromkeys([payload["model"], *(fallbacks or [])]))


def text_bytes(payload: dict[str, Any], keys: Iterable[str], inline_media_chars: int) -> int:
    """The bytes of the prompt's text: the JSON of the fields under ``keys``, inline media payloads left out."""
    parts = [payload[key] for key in keys if key in payload]
    # The same UTF-8 as compact ``json.dumps(ensure_ascii=False)`` (floats aside, e.g. 1e-7 for
    # 1e-07), made in Rust as bytes: a MiB of prompt in about a millisecond, against several.
    return len(to_json(parts)) - inline_media_chars


def read_embeddings_request(payload: dict[str, Any]) -> BillableRequest:
    return BillableRequest(
        models=models_of(payload), text_bytes=text_bytes(payload, CHAT_TEXT_KEYS, 0), messages=1, completes=False
    )


def read_chat_request(payload: dict[str, Any]) -> BillableRequest:
    """A chat completion's billable parts (``messages`` content parts, plugins, tools, modalities, limits)."""
    models = models_of(payload)
    media: list[MediaPart] = []
    inline_chars = 0
    cache_1h = _caches_for_an_hour(payload.get("cache_control"))
    messages = payload.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            continue
        content, images = message.get("content"), message.get("images")
        if isinstance(content, str) and images is None:
            continue  # plain text: nothing but its bytes to count
        parts = [(f"messages[{i}].content[{j}]", part) for j, part in enumerate(_list(content))]
        # Images an assistant made, sent back in a later turn.
        parts += [(f"messages[{i}].images[{j}]", part) for j, part in enumerate(_list(images))]
        for where, part in parts:
            if not isinstance(part, dict):
                continue
            cache_1h = cache_1h or _caches_for_an_hour(part.get("cache_control"))
            item, chars = _media_part(where, part)
            if item is not None:
                media.append(item)
                inline_chars += chars
    searches, unbounded = searches_and_tools(payload, models)
    limits = [
        limit for limit in map(positive_int, (payload.get("max_tokens"), payload.get("max_completion_tokens"))) if limit
    ]
    modalities = payload.get("modalities")
    n = positive_int(payload.get("n"))
    return BillableRequest(
        models=models,
        text_bytes=text_bytes(payload, CHAT_TEXT_KEYS, inline_chars),
        messages=len(messages) if isinstance(messages, list) else 1,
        media=tuple(media),
        searches=searches,
        choices=n or 1,
        completion_limit=min(limits) if limits else None,
        output_modalities=_OUTPUT_MODALITIES.intersection(m for m in _list(modalities) if isinstance(m, str)),
        cache_write_1h=cache_1h,
        unbounded=unbounded,
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _caches_for_an_hour(control: Any) -> bool:
    return isinstance(control, dict) and control.get("ttl") == "1h"


def _url_of(value: Any, key: str = "url") -> str:
    if isinstance(value, str):
        return value
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, str) else ""


def image_part(where: str, url: str) -> tuple[MediaPart, int]:
    """An image by data URL or link, and the characters of its inline payload."""
    inline = parse_data_url(url)
    return MediaPart("image", where, by_url=inline is None), len(url) if inline else 0


def audio_part(where: str, data: Any, audio_format: Any) -> tuple[MediaPart, int]:
    """Audio as base64 (bare or a data URL) in a stated format, or a link."""
    if not isinstance(data, str) or data.startswith(("http://", "https://")):
        return MediaPart("audio", where, by_url=True), 0
    inline = DataUrl("audio/" + str(audio_format), data.partition(",")[2] if data.startswith("data:") else data)
    return MediaPart("audio", where, seconds=audio_seconds(inline, str(audio_format or ""))), len(data)


def video_part(where: str, url: str) -> tuple[MediaPart, int]:
    inline = parse_data_url(url)
    if inline is None:
        return MediaPart("video", where, by_url=True), 0
    data = inline.data()
    return MediaPart("video", where, seconds=mp4_seconds(data) if data else None), len(url)


def file_part(where: str, url: str) -> tuple[MediaPart, int]:
    """A file by data URL or link; a PDF is sized by its pages."""
    inline = parse_data_url(url)
    if inline is None:
        return MediaPart("file", where, by_url=True), 0
    data = inline.data() if inline.mime == "application/pdf" else None
    return MediaPart("file", where, pages=pdf_pages(data) if data else None), len(url)


def _media_part(where: str, part: dict[str, Any]) -> tuple[MediaPart | None, int]:
    """The media item a chat content part is (``None`` for text), and the characters of its inline payload."""
    kind = part.get("type")
    if not isinstance(kind, str | None):
        return MediaPart(repr(kind)[:40], where), 0  # not a type anyone knows: cannot be sized
    if kind in _TEXT_PARTS:
        return None, 0
    if kind == "image_url":
        return image_part(where, _url_of(part.get("image_url")))
    if kind == "input_audio":
        audio = part.get("input_audio")
        audio = audio if isinstance(audio, dict) else {}
        return audio_part(where, audio.get("data"), audio.get("format"))
    if kind == "video_url":
        return video_part(where, _url_of(part.get("video_url")))
    if kind == "file":
        return file_part(where, _url_of(part.get("file"), "file_data"))
    # A part we do not know (a new media type): it cannot be sized, so it is treated as one.
    return MediaPart(str(kind), where), 0


def _result_chars(options: dict[str, Any]) -> int:
    exact = positive_int(options.get("max_characters"))
    if exact is not None:
        return exact
    return _RESULT_CHARS_BY_CONTEXT.get(str(options.get("search_context_size")), DEFAULT_RESULT_CHARS)


def _results(options: dict[str, Any]) -> int:
    return min(positive_int(options.get("max_results")) or DEFAULT_SEARCH_RESULTS, MAX_SEARCH_RESULTS)


def search_allowance(where: str, searches: int, options: dict[str, Any]) -> SearchAllowance:
    """``searches`` web searches with the result count and size ``options`` allow (or the defaults)."""
    return SearchAllowance(where, searches, _results(options), _result_chars(options))


# What one tool of a request can bill: a search allowance, why it cannot be bounded, or None (nothing
# of its own: a function the client runs).
ToolReader = Callable[[str, Any], SearchAllowance | str | None]


def read_chat_tool(where: str, tool: Any) -> SearchAllowance | str | None:
    """A chat (or Responses) tool: functions bill nothing of their own; OpenRouter's web search is
    bounded by its ``parameters.max_uses``; any other server tool cannot be bounded."""
    kind = tool.get("type", "function") if isinstance(tool, dict) else "function"
    if kind == "function":
        return None
    parameters = tool.get("parameters") if isinstance(tool, dict) else None
    options = parameters if isinstance(parameters, dict) else {}
    uses = positive_int(options.get("max_uses"))
    if kind == "openrouter:web_search" and uses is not None:
        return search_allowance(where, uses, options)
    if kind == "openrouter:web_search":
        return f"{where} (openrouter:web_search without parameters.max_uses)"
    return f"{where} (server tool {kind!r:.40})"


def searches_and_tools(
    payload: dict[str, Any], models: tuple[str, ...], read_tool: ToolReader = read_chat_tool
) -> tuple[tuple[SearchAllowance, ...], tuple[str, ...]]:
    """Web searches the request allows, and the parts that bill without any bound we can state."""
    if not any(key in payload for key in _SEARCH_OR_TOOL_KEYS) and not any(":" in model for model in models):
        return (), ()
    searches: list[SearchAllowance] = []
    unbounded: list[str] = []
    plugins = payload.get("plugins")
    if plugins is not None and not isinstance(plugins, list):
        raise InvalidRequestError("`plugins` must be a list")
    for index, plugin in enumerate(plugins or ()):
        if not isinstance(plugin, dict) or plugin.get("enabled") is False:
            continue
        plugin_id = plugin.get("id")
        if plugin_id == "web":
            searches.append(search_allowance(f"plugins[{index}]", 1, plugin))
        elif not (isinstance(plugin_id, str) and plugin_id in _UNBILLED_PLUGINS):
            unbounded.append(f"plugins[{index}] (plugin {plugin_id!r:.40})")
    if any(":online" in model for model in models) and not searches:
        # `:online` is the web plugin with its defaults.
        searches.append(SearchAllowance("the :online model variant", 1, DEFAULT_SEARCH_RESULTS, DEFAULT_RESULT_CHARS))
    options = payload.get("web_search_options")
    if isinstance(options, dict):
        searches.append(search_allowance("web_search_options", 1, options))
    tools = payload.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        found = read_tool(f"tools[{index}]", tool)
        if isinstance(found, SearchAllowance):
            searches.append(found)
        elif found is not None:
            unbounded.append(found)
    return tuple(searches), tuple(unbounded)
