"""Tool calls and structured output, answered plausibly: what client libraries' tool and schema paths need.

A request offering tools (and not forbidding them) whose last message is not a tool result gets a call
to the tool it names, else to the first one, with arguments built from the tool's JSON schema. A
request asking for a JSON schema (`response_format`) gets a JSON object that fits it as its content.
Everything is deterministic, so tests can assert on the values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ._fake_wire import JSONObject

__all__ = ["ToolCall", "example_of", "structured_reply", "tool_call_delta", "tool_call_for", "tool_call_message"]

# A string field gets this, unless its schema says more (enum, const, default, format).
EXAMPLE_TEXT = "example"
_FORMATS = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "00:00:00", "email": "a@example.com"}
_MAX_DEPTH = 8  # recursive schemas (a tree of nodes) stop here with an empty value


@dataclass(frozen=True)
class ToolCall:
    """The one function call a reply makes; its arguments stream as the reply's pieces."""

    id: str
    name: str
    arguments: str


def tool_call_for(body: JSONObject, generation_id: str) -> ToolCall | None:
    """The call to make for this request, or None when it should be answered with text."""
    tools = [
        tool for tool in body.get("tools") or [] if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
    ]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or _answers_a_tool_result(body.get("messages")):
        return None
    chosen = tools[0]["function"]
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        named = choice["function"].get("name")
        chosen = next((tool["function"] for tool in tools if tool["function"].get("name") == named), chosen)
    schema = chosen.get("parameters") if isinstance(chosen.get("parameters"), dict) else {"type": "object"}
    call_id = "call_" + hashlib.sha256(generation_id.encode()).hexdigest()[:24]
    return ToolCall(id=call_id, name=str(chosen.get("name") or "tool"), arguments=_compact(example_of(schema)))


def structured_reply(body: JSONObject) -> str | None:
    """JSON text fitting the request's `response_format`, or None when it asks for free text."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return _compact(example_of(schema if isinstance(schema, dict) else {"type": "object"}))
    if response_format.get("type") == "json_object":
        return _compact({"answer": EXAMPLE_TEXT})
    return None


def example_of(schema: JSONObject, root: JSONObject | None = None, depth: int = 0) -> Any:
    """A value that validates against ``schema`` (the subset of JSON Schema client libraries emit)."""
    root = root if root is not None else schema
    if depth > _MAX_DEPTH:
        return None
    if isinstance(schema.get("$ref"), str):
        return example_of(_resolve(schema["$ref"], root), root, depth + 1)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [option for option in schema.get(key) or [] if isinstance(option, dict)]
        if options:
            not_null = [option for option in options if option.get("type") != "null"]
            return example_of((not_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((item for item in kind if item != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: example_of(sub, root, depth + 1) for name, sub in properties.items() if isinstance(sub, dict)}
    if kind == "array":
        items = schema.get("items")
        items = items if isinstance(items, dict) else {}
        return [example_of(items, root, depth + 1) for _ in range(max(1, int(schema.get("minItems") or 1)))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _FORMATS.get(str(schema.get("format")), EXAMPLE_TEXT)


def tool_call_delta(call: ToolCall, arguments: str, *, opening: bool) -> JSONObject:
    """A streamed chunk's delta: the opening one names the call, the others carry argument pieces."""
    function: JSONObject = {"arguments": arguments}
    entry: JSONObject = {"index": 0, "function": function}
    if opening:
        function["name"] = call.name
        entry.update(id=call.id, type="function")
        return {"role": "assistant", "content": None, "tool_calls": [entry]}
    return {"tool_calls": [entry]}


def tool_call_message(call: ToolCall, arguments: str) -> JSONObject:
    """The assistant message of a non-streamed reply that calls ``call``."""
    return {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning": None,
        "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}],
    }


def _answers_a_tool_result(messages: object) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and isinstance(messages[-1], dict)
        and (messages[-1].get("role") == "tool")
    )


def _resolve(reference: str, root: JSONObject) -> JSONObject:
    node: Any = root
    for part in reference.removeprefix("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
