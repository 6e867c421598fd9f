"""The clients of the matrix on the endpoints beyond chat: the Responses API (the default of the Agents SDK
and the AI SDK, opt-in elsewhere), Anthropic Messages (the anthropic SDK) and legacy completions
(LlamaIndex's ``OpenAILike`` with its defaults). Built the way those clients' users write them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .calls import ASK_CITY, ASK_WEATHER, HELLO, WEATHER_TOOL, City, Conn, Driver, ToolSeen, WeatherTool

# The Responses API's function tool is flat: no `function` object around its name and schema.
RESPONSES_WEATHER_TOOL = {"type": "function", **WEATHER_TOOL["function"]}
MESSAGES_WEATHER_TOOL = {
    "name": WEATHER_TOOL["function"]["name"],
    "description": WEATHER_TOOL["function"]["description"],
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}
MAX_TOKENS = 1024  # the anthropic SDK requires one


def _function_call(output: list[Any]) -> ToolSeen:
    [call] = [item for item in output if item.type == "function_call"]
    return ToolSeen(call.name, json.loads(call.arguments))


class OpenAIAsyncResponses(Driver):
    name, package, module = "openai-async", "openai", "openai"
    endpoints = ("responses",)

    async def plain(self, conn: Conn) -> str:
        return str((await conn.async_openai().responses.create(model=conn.model, input=HELLO)).output_text)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        async for event in await conn.async_openai().responses.create(model=conn.model, input=HELLO, stream=True):
            if event.type == "response.output_text.delta":
                pieces.append(event.delta)

    async def tools(self, conn: Conn) -> ToolSeen:
        reply = await conn.async_openai().responses.create(
            model=conn.model, input=ASK_WEATHER, tools=[RESPONSES_WEATHER_TOOL]
        )
        return _function_call(reply.output)

    async def structured(self, conn: Conn) -> Any:
        return (
            await conn.async_openai().responses.parse(model=conn.model, input=ASK_CITY, text_format=City)
        ).output_parsed


class OpenAISyncResponses(Driver):
    """The sync client, from worker threads."""

    name, package, module = "openai-sync", "openai", "openai"
    endpoints = ("responses",)

    async def plain(self, conn: Conn) -> str:
        return await asyncio.to_thread(
            lambda: str(conn.sync_openai().responses.create(model=conn.model, input=HELLO).output_text)
        )

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        def call() -> None:
            for event in conn.sync_openai().responses.create(model=conn.model, input=HELLO, stream=True):
                if event.type == "response.output_text.delta":
                    pieces.append(event.delta)

        await asyncio.to_thread(call)

    async def tools(self, conn: Conn) -> ToolSeen:
        def call() -> ToolSeen:
            reply = conn.sync_openai().responses.create(
                model=conn.model, input=ASK_WEATHER, tools=[RESPONSES_WEATHER_TOOL]
            )
            return _function_call(reply.output)

        return await asyncio.to_thread(call)

    async def structured(self, conn: Conn) -> Any:
        def call() -> Any:
            return conn.sync_openai().responses.parse(model=conn.model, input=ASK_CITY, text_format=City).output_parsed

        return await asyncio.to_thread(call)


class LangChainResponses(Driver):
    name, package, module = "langchain", "langchain-openai", "langchain_openai"
    endpoints = ("responses",)

    def llm(self, conn: Conn) -> Any:
        from langchain_openai import ChatOpenAI

        if conn.mode == "http":
            return ChatOpenAI(
                model=conn.model,
                base_url=conn.api_url,
                api_key=conn.secret_key,
                default_headers=conn.headers,
                max_retries=0,
                use_responses_api=True,
            )
        client, aclient = conn.user.openai_sync(), conn.user.openai()
        return ChatOpenAI(
            model=conn.model,
            root_client=client,
            client=client.chat.completions,
            root_async_client=aclient,
            async_client=aclient.chat.completions,
            use_responses_api=True,
        )

    async def plain(self, conn: Conn) -> str:
        return str((await self.llm(conn).ainvoke(HELLO)).text)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        async for chunk in self.llm(conn).astream(HELLO):
            if chunk.text:
                pieces.append(str(chunk.text))

    async def tools(self, conn: Conn) -> ToolSeen:
        message = await self.llm(conn).bind_tools([WEATHER_TOOL]).ainvoke(ASK_WEATHER)
        call = message.tool_calls[0]
        return ToolSeen(call["name"], call["args"])

    async def structured(self, conn: Conn) -> Any:
        return await self.llm(conn).with_structured_output(City).ainvoke(ASK_CITY)


class OpenAIAgentsResponses(Driver):
    """The Agents SDK as it comes: its OpenAI provider's default API is the Responses API."""

    name, package, module = "openai-agents", "openai-agents", "agents"
    endpoints = ("responses",)

    def run_config(self, conn: Conn) -> Any:
        from agents import OpenAIProvider, RunConfig

        return RunConfig(model_provider=OpenAIProvider(openai_client=conn.async_openai()), tracing_disabled=True)

    async def plain(self, conn: Conn) -> str:
        from agents import Agent, Runner

        result = await Runner.run(Agent(name="assistant", model=conn.model), HELLO, run_config=self.run_config(conn))
        return str(result.final_output)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        from agents import Agent, Runner

        result = Runner.run_streamed(Agent(name="assistant", model=conn.model), HELLO, run_config=self.run_config(conn))
        async for event in result.stream_events():
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                pieces.append(event.data.delta)

    async def tools(self, conn: Conn) -> ToolSeen:
        from agents import Agent, Runner, function_tool

        weather = WeatherTool()
        agent = Agent(name="assistant", model=conn.model, tools=[function_tool(weather.function)])
        result = await Runner.run(agent, ASK_WEATHER, run_config=self.run_config(conn))
        [arguments] = weather.calls
        return ToolSeen("get_weather", arguments, answer=str(result.final_output))

    async def structured(self, conn: Conn) -> Any:
        from agents import Agent, Runner

        agent = Agent(name="assistant", model=conn.model, output_type=City)
        return (await Runner.run(agent, ASK_CITY, run_config=self.run_config(conn))).final_output


class LiteLLMResponses(Driver):
    """``litellm.aresponses`` over HTTP (its Responses path runs on LiteLLM's own HTTP client, which
    an in-process handle cannot stand in for)."""

    name, package, module = "litellm", "litellm", "litellm"
    endpoints = ("responses",)
    modes = ("http",)
    raises = raises_mid_stream = ("APIError",)

    def options(self, conn: Conn) -> dict[str, Any]:
        return {
            "model": "openai/" + conn.model,
            "api_base": conn.api_url,
            "api_key": conn.secret_key,
            "extra_headers": conn.headers,
            "max_retries": 0,
        }

    async def plain(self, conn: Conn) -> str:
        import litellm

        reply = await litellm.aresponses(input=HELLO, **self.options(conn))
        return "".join(part.text for item in reply.output if item.type == "message" for part in item.content)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        import litellm

        async for event in await litellm.aresponses(input=HELLO, stream=True, **self.options(conn)):
            if event.type == "response.output_text.delta":
                pieces.append(event.delta)

    async def tools(self, conn: Conn) -> ToolSeen:
        import litellm

        reply = await litellm.aresponses(input=ASK_WEATHER, tools=[RESPONSES_WEATHER_TOOL], **self.options(conn))
        return _function_call(reply.output)

    async def structured(self, conn: Conn) -> Any:
        import litellm

        reply = await litellm.aresponses(input=ASK_CITY, text_format=City, **self.options(conn))
        text = "".join(part.text for item in reply.output if item.type == "message" for part in item.content)
        return City.model_validate_json(text)


class PydanticAIResponses(Driver):
    name, package, module = "pydantic-ai", "pydantic-ai-slim[openai]", "pydantic_ai"
    endpoints = ("responses",)
    raises, raises_mid_stream = ("ModelAPIError",), ("APIError", "ModelAPIError")

    def model(self, conn: Conn) -> Any:
        from pydantic_ai.models.openai import OpenAIResponsesModel
        from pydantic_ai.providers.openai import OpenAIProvider

        return OpenAIResponsesModel(conn.model, provider=OpenAIProvider(openai_client=conn.async_openai()))

    async def plain(self, conn: Conn) -> str:
        from pydantic_ai import Agent

        return str((await Agent(self.model(conn)).run(HELLO)).output)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        from pydantic_ai import Agent

        async with Agent(self.model(conn)).run_stream(HELLO) as result:
            async for delta in result.stream_text(delta=True, debounce_by=None):
                if delta:
                    pieces.append(delta)

    async def tools(self, conn: Conn) -> ToolSeen:
        from pydantic_ai import Agent, Tool

        weather = WeatherTool()
        result = await Agent(self.model(conn), tools=[Tool(weather.function, takes_ctx=False)]).run(ASK_WEATHER)
        [arguments] = weather.calls
        return ToolSeen("get_weather", arguments, answer=str(result.output))

    async def structured(self, conn: Conn) -> Any:
        from pydantic_ai import Agent

        return (await Agent(self.model(conn), output_type=City).run(ASK_CITY)).output


class Anthropic(Driver):
    """The anthropic SDK on Anthropic Messages: ``wf.user(id).anthropic()``, or the proxy's ``/api`` root."""

    name, package, module = "anthropic", "anthropic", "anthropic"
    endpoints = ("messages",)
    raises = raises_mid_stream = ("APIStatusError",)

    def client(self, conn: Conn) -> Any:
        import anthropic

        if conn.mode == "inprocess":
            return conn.user.anthropic()
        return anthropic.AsyncAnthropic(
            base_url=conn.api_url.removesuffix("/v1"),
            api_key=conn.secret_key,
            default_headers=conn.headers,
            max_retries=0,
        )

    def ask(self, conn: Conn, text: str) -> dict[str, Any]:
        return {"model": conn.model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": text}]}

    async def plain(self, conn: Conn) -> str:
        message = await self.client(conn).messages.create(**self.ask(conn, HELLO))
        return "".join(block.text for block in message.content if block.type == "text")

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        async with self.client(conn).messages.stream(**self.ask(conn, HELLO)) as stream:
            async for text in stream.text_stream:
                pieces.append(text)

    async def tools(self, conn: Conn) -> ToolSeen:
        message = await self.client(conn).messages.create(**self.ask(conn, ASK_WEATHER), tools=[MESSAGES_WEATHER_TOOL])
        [use] = [block for block in message.content if block.type == "tool_use"]
        return ToolSeen(use.name, dict(use.input))

    async def structured(self, conn: Conn) -> Any:
        return (await self.client(conn).messages.parse(**self.ask(conn, ASK_CITY), output_format=City)).parsed_output


class LlamaIndexCompletions(Driver):
    """``OpenAILike`` with its defaults: not a chat model, so it calls the legacy completions endpoint."""

    name, package, module = "llamaindex", "llama-index-llms-openai-like", "llama_index.llms.openai_like"
    endpoints = ("completions",)
    calls = frozenset({"plain", "stream"})

    def llm(self, conn: Conn) -> Any:
        from llama_index.llms.openai_like import OpenAILike

        if conn.mode == "http":
            return OpenAILike(
                model=conn.model,
                api_base=conn.api_url,
                api_key=conn.secret_key,
                default_headers=conn.headers,
                max_retries=0,
            )
        return OpenAILike(
            model=conn.model, openai_client=conn.user.openai_sync(), async_openai_client=conn.user.openai()
        )

    async def plain(self, conn: Conn) -> str:
        return str((await self.llm(conn).acomplete(HELLO)).text)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        async for part in await self.llm(conn).astream_complete(HELLO):
            if part.delta:
                pieces.append(part.delta)


ENDPOINT_DRIVERS: tuple[Driver, ...] = (
    OpenAIAsyncResponses(),
    OpenAISyncResponses(),
    LangChainResponses(),
    OpenAIAgentsResponses(),
    LiteLLMResponses(),
    PydanticAIResponses(),
    Anthropic(),
    LlamaIndexCompletions(),
)
