"""``useChat``'s ``UIMessage`` list (``{id, role, parts}``) as OpenAI chat messages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequestError

__all__ = ["to_openai_messages"]

_ROLES = ("system", "user", "assistant")
# Tool parts that carry an answer the model must see; a call still waiting for one is left out,
# since OpenAI refuses an assistant tool call with no tool message after it.
_ANSWERED = {"output-available", "output-error", "output-denied"}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _file_part(part: Mapping[str, Any]) -> dict[str, Any]:
    url = part.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequestError("a file part needs a url")
    media_type = str(part.get("mediaType") or "")
    if media_type.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"filename": str(part.get("filename") or "file"), "file_data": url}}


def _tool_name(part: Mapping[str, Any]) -> str:
    kind = str(part.get("type"))
    return str(part.get("toolName") or "") if kind == "dynamic-tool" else kind.removeprefix("tool-")


def _tool_answer(part: Mapping[str, Any]) -> str:
    state = part.get("state")
    if state == "output-error":
        return str(part.get("errorText") or "the tool failed")
    if state == "output-denied":
        return "the user denied this tool call"
    return _text(part.get("output"))


class _AssistantTurn:
    """One step of an assistant message: its text, its tool calls and their answers."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []

    def add(self, part: Mapping[str, Any]) -> None:
        kind = part.get("type")
        if kind == "text":
            self.text.append(str(part.get("text") or ""))
        elif isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool"):
            if part.get("state") not in _ANSWERED:
                return
            call_id = str(part.get("toolCallId") or "")
            arguments = _text(part.get("input") if part.get("input") is not None else {})
            self.calls.append(
                {"id": call_id, "type": "function", "function": {"name": _tool_name(part), "arguments": arguments}}
            )
            self.answers.append({"role": "tool", "tool_call_id": call_id, "content": _tool_answer(part)})
        # reasoning, sources, files the model made, data-* and step markers are not sent back

    def flush(self, into: list[dict[str, Any]]) -> None:
        if not self.text and not self.calls:
            return
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None}
        if self.calls:
            message["tool_calls"] = self.calls
        into.append(message)
        into.extend(self.answers)
        self.text, self.calls, self.answers = [], [], []


def _user_content(parts: list[Mapping[str, Any]]) -> str | list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in parts:
        if part.get("type") == "text":
            content.append({"type": "text", "text": str(part.get("text") or "")})
        elif part.get("type") == "file":
            content.append(_file_part(part))
    if all(item["type"] == "text" for item in content):
        return "\n".join(item["text"] for item in content)
    return content


def to_openai_messages(messages: Any, *, system: str | None = None) -> list[dict[str, Any]]:
    """Convert ``useChat``'s ``messages`` (each ``{id, role, parts}``) to OpenAI chat messages.

    Text and files (images as ``image_url``) become content; answered tool calls become assistant
    ``tool_calls`` and ``tool`` messages, split at step boundaries; reasoning, sources and
    ``data-*`` parts stay on the client. A message with a plain ``content`` string is taken as it
    is. ``system`` is put first. Anything that is not a list of such messages is an
    ``InvalidRequestError``.
    """
    if not isinstance(messages, list):
        raise InvalidRequestError("messages must be a list of UI messages ({id, role, parts})")
    converted: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            raise InvalidRequestError(f"messages[{index}] needs a role of {', '.join(_ROLES)}")
        role = message["role"]
        parts = message.get("parts")
        if parts is None and isinstance(message.get("content"), str):
            converted.append({"role": role, "content": message["content"]})
            continue
        if not isinstance(parts, list) or not all(isinstance(part, Mapping) for part in parts):
            raise InvalidRequestError(f"messages[{index}].parts must be a list of parts")
        if role == "assistant":
            turn = _AssistantTurn()
            for part in parts:
                if part.get("type") == "step-start":
                    turn.flush(converted)
                else:
                    turn.add(part)
            turn.flush(converted)
        elif role == "user":
            converted.append({"role": "user", "content": _user_content(parts)})
        else:
            text = "".join(str(part.get("text") or "") for part in parts if part.get("type") == "text")
            converted.append({"role": "system", "content": text})
    return converted
