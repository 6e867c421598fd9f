"""The README's client one-liners run as written: each block is read out of README.md and executed,
then every object it made is used for a real call through the embed."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from .calls import City
from .conftest import MINI, NODE_DEADLINE_SECONDS, NODE_DIR, REPLY, SONNET, Stack, require_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

README = Path(__file__).resolve().parents[2] / "README.md"
HI = [{"role": "user", "content": "Hi"}]


def readme_block(name: str) -> str:
    """The fenced code block right after ``<!-- clients:{name} -->`` in the README."""
    match = re.search(rf"<!-- clients:{name} -->\n```\w+\n(.*?)\n```", README.read_text(), re.S)
    assert match, f"README.md has no clients:{name} block"
    return match.group(1)


async def run_block(name: str, namespace: dict[str, Any]) -> dict[str, Any]:
    code = compile(readme_block(name), f"README.md:clients:{name}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # a block with a top-level await runs as a coroutine
    if asyncio.iscoroutine(result):
        await result
    return namespace


def _require_python_clients() -> None:
    for package, module in [
        ("anthropic", "anthropic"),
        ("instructor", "instructor"),
        ("litellm", "litellm"),
        ("openai-agents", "agents"),
        ("langchain-openai", "langchain_openai"),
        ("llama-index-llms-openai-like", "llama_index.llms.openai_like"),
        ("pydantic-ai-slim[openai]", "pydantic_ai"),
    ]:
        require_client(package, module, "README")


async def test_the_in_process_one_liners_run_as_written(stack: Stack) -> None:
    _require_python_clients()
    from agents import Agent, Runner
    from llama_index.core.llms import ChatMessage

    user = await stack.user("1")
    ns = await run_block("in-process", {"wf": stack.wf, "user_id": user.app_user_id})

    assert ns["reply"].choices[0].message.content == REPLY  # LiteLLM, run by the block itself
    reply = await ns["client"].chat.completions.create(model=MINI, messages=HI)
    assert reply.choices[0].message.content == REPLY
    reply = await asyncio.to_thread(ns["sync_client"].chat.completions.create, model=MINI, messages=HI)
    assert reply.choices[0].message.content == REPLY
    assert (await ns["llm"].ainvoke("Hi")).content == REPLY
    assert (await asyncio.to_thread(ns["llm"].invoke, "Hi")).content == REPLY  # LangChain's sync path
    assert (await ns["index_llm"].achat([ChatMessage(role="user", content="Hi")])).message.content == REPLY
    result = await Runner.run(Agent(name="assistant", model=MINI), "Hi", run_config=ns["run_config"])
    assert result.final_output == REPLY
    city = await ns["patched"].chat.completions.create(model=MINI, response_model=City, messages=HI)
    assert city.model_dump() == {"name": "example", "population": 1}
    assert (await ns["agent"].run("Hi")).output == REPLY
    assert (await ns["responses_agent"].run("Hi")).output == REPLY
    message = await ns["claude"].messages.create(model=SONNET, max_tokens=100, messages=HI)
    assert message.content[0].text == REPLY
    await stack.nothing_held(user)
    kinds = {row.kind for row in await stack.wf.store.ledger(stack.wf.keys.app_id, user.app_user_id, limit=100)}
    assert kinds == {"chat", "responses", "messages"}  # the Agents SDK's default is the Responses API
    assert (await user.status()).spent > 0


async def test_the_over_http_one_liners_run_as_written(stack: Stack) -> None:
    _require_python_clients()

    user = await stack.user("1")
    ns = await run_block(
        "over-http", {"api_url": stack.api_url, "secret_key": stack.secret_key, "user_id": user.app_user_id}
    )

    assert ns["reply"].choices[0].message.content == REPLY
    assert ns["response"].output[0].content[0].text == REPLY  # litellm.aresponses
    assert (await ns["client"].chat.completions.create(model=MINI, messages=HI)).choices[0].message.content == REPLY
    assert (await ns["client"].responses.create(model=MINI, input="Hi")).output_text == REPLY
    assert (await ns["claude"].messages.create(model=SONNET, max_tokens=100, messages=HI)).content[0].text == REPLY
    assert (await ns["llm"].ainvoke("Hi")).text == REPLY  # LangChain on the Responses API
    assert (await ns["index_llm"].acomplete("Hi")).text == REPLY  # LlamaIndex's default: legacy completions
    await stack.nothing_held(user)
    kinds = {row.kind for row in await stack.wf.store.ledger(stack.wf.keys.app_id, user.app_user_id, limit=100)}
    assert kinds == {"chat", "responses", "messages", "completions"}


async def test_the_ai_sdk_one_liner_runs_as_written(stack: Stack, node_clients: str) -> None:
    user = await stack.user("1")
    given = (
        f"const apiURL = {json.dumps(stack.api_url)}, secretKey = {json.dumps(stack.secret_key)}, "
        f"userId = {json.dumps(user.app_user_id)};\n"
    )
    script = given + readme_block("ai-sdk") + "\nconsole.log(JSON.stringify({ text }));\n"
    process = await asyncio.create_subprocess_exec(
        node_clients,
        "--input-type=module",
        "-e",
        script,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), NODE_DEADLINE_SECONDS)
    assert process.returncode == 0, err.decode()
    assert json.loads(out.decode().strip().splitlines()[-1]) == {"text": REPLY}
    [row] = await stack.wf.store.ledger(stack.wf.keys.app_id, user.app_user_id, limit=10)
    assert row.kind == "responses"  # openai(id): the AI SDK's default
    assert (await user.status()).spent > 0
