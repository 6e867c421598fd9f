"""``to_openai_messages``: useChat's UIMessage parts as the OpenAI chat messages a model reads."""

from __future__ import annotations

import pytest

from wattfare_embed import InvalidRequestError
from wattfare_embed.ai_sdk import to_openai_messages


def test_text_parts_become_plain_content_and_the_system_prompt_goes_first() -> None:
    messages = [
        {"id": "1", "role": "user", "parts": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
        {
            "id": "2",
            "role": "assistant",
            "metadata": {"wattfare": {"costUsd": 0.001}},
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "thinking", "state": "done"},
                {"type": "text", "text": "Hi!", "state": "done"},
            ],
        },
    ]
    assert to_openai_messages(messages, system="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello\nthere"},
        {"role": "assistant", "content": "Hi!"},
    ]


def test_images_become_image_url_parts_and_other_files_file_parts() -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"},
        {"type": "file", "mediaType": "application/pdf", "filename": "a.pdf", "url": "data:application/pdf;base64,BB"},
    ]
    assert to_openai_messages([{"id": "1", "role": "user", "parts": parts}]) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,BB"}},
            ],
        }
    ]


def test_answered_tool_calls_become_tool_calls_and_tool_messages_split_at_steps() -> None:
    assistant = {
        "id": "2",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "text", "text": "Looking it up."},
            {
                "type": "tool-get_weather",
                "toolCallId": "call_1",
                "state": "output-available",
                "input": {"city": "Paris"},
                "output": {"celsius": 21},
            },
            {"type": "step-start"},
            {"type": "text", "text": "It is 21 °C."},
            # Still waiting for its answer: OpenAI refuses a call with no tool message after it.
            {"type": "dynamic-tool", "toolName": "ask", "toolCallId": "c2", "state": "input-available", "input": {}},
        ],
    }
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert to_openai_messages([assistant]) == [
        {"role": "assistant", "content": "Looking it up.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'},
        {"role": "assistant", "content": "It is 21 °C."},
    ]


def test_a_plain_content_message_is_taken_as_it_is() -> None:
    assert to_openai_messages([{"role": "user", "content": "Hi"}]) == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ({"role": "user"}, "messages must be a list"),
        ([{"role": "robot", "parts": []}], "messages[0] needs a role"),
        (["hello"], "messages[0] needs a role"),
        ([{"role": "user", "parts": "hello"}], "messages[0].parts must be a list"),
        ([{"role": "user", "parts": [{"type": "file", "mediaType": "image/png"}]}], "a file part needs a url"),
    ],
)
def test_anything_else_is_a_typed_invalid_request(messages: object, says: str) -> None:
    with pytest.raises(InvalidRequestError, match=says.replace("[", r"\[").replace("]", r"\]")):
        to_openai_messages(messages)
