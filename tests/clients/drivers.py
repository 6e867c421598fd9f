"""How each real client makes the calls of the matrix: plain, streamed, a tool call, structured output.

A driver is built the way that client's users write it, pointed either at the proxy over HTTP
(secret key + ``X-Wattfare-User``) or at the in-process handles (``wf.user(id).openai()`` and
friends). Imports are inside the methods, so a missing package skips only its own rows.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .calls import ASK_CITY, ASK_WEATHER, HELLO, WEATHER_TOOL, Cities, City, Conn, Driver, ToolSeen, WeatherTool
from .endpoint_drivers import ENDPOINT_DRIVERS


class OpenAIAsync(Driver):
    name, package, module = "openai-async", "openai", "openai"

    async def plain(self, conn: Conn) -> str:
        reply = await conn.async_openai().chat.completions.create(
            model=conn.model, messages=[{"role": "user", "content": HELLO}]
        )
        return str(reply.choices[0].message.content)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        stream = await conn.async_openai().chat.completions.create(
            model=conn.model, messages=[{"role": "user", "content": HELLO}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)

    async def tools(self, conn: Conn) -> ToolSeen:
        reply = await conn.async_openai().chat.completions.create(
            model=conn.model, messages=[{"role": "user", "content": ASK_WEATHER}], tools=[WEATHER_TOOL]
        )
        call = reply.choices[0].message.tool_calls[0]
        return ToolSeen(call.function.name, json.loads(call.function.arguments))

    async def structured(self, conn: Conn) -> Any:
        reply = await conn.async_openai().chat.completions.parse(
            model=conn.model, messages=[{"role": "user", "content": ASK_CITY}], response_format=City
        )
        return reply.choices[0].message.parsed


class OpenAISync(Driver):
    """The sync client, called from worker threads (the proxy and the embed run on the test's loop)."""

    name, package, module = "openai-sync", "openai", "openai"

    async def plain(self, conn: Conn) -> str:
        def call() -> str:
            reply = conn.sync_openai().chat.completions.create(
                model=conn.model, messages=[{"role": "user", "content": HELLO}]
            )
            return str(reply.choices[0].message.content)

        return await asyncio.to_thread(call)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        def call() -> None:
            stream = conn.sync_openai().chat.completions.create(
                model=conn.model, messages=[{"role": "user", "content": HELLO}], stream=True
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)

        await asyncio.to_thread(call)

    async def tools(self, conn: Conn) -> ToolSeen:
        def call() -> ToolSeen:
            reply = conn.sync_openai().chat.completions.create(
                model=conn.model, messages=[{"role": "user", "content": ASK_WEATHER}], tools=[WEATHER_TOOL]
            )
            tool_call = reply.choices[0].message.tool_calls[0]
            return ToolSeen(tool_call.function.name, json.loads(tool_call.function.arguments))

        return await asyncio.to_thread(call)

    async def structured(self, conn: Conn) -> Any:
        def call() -> Any:
            reply = conn.sync_openai().chat.completions.parse(
                model=conn.model, messages=[{"role": "user", "content": ASK_CITY}], response_format=City
            )
            return reply.choices[0].message.parsed

        return await asyncio.to_thread(call)


class LangChain(Driver):
    name, package, module = "langchain", "langchain-openai", "langchain_openai"

    def llm(self, conn: Conn) -> Any:
        from langchain_openai import ChatOpenAI

        if conn.mode == "http":
            return ChatOpenAI(
                model=conn.model,
                base_url=conn.api_url,
                api_key=conn.secret_key,
                default_headers=conn.headers,
                max_retries=0,
            )
        ai = conn.user
        # As in the README: both clients, so sync and async calls and structured output all go in process.
        client, aclient = ai.openai_sync(), ai.openai()
        return ChatOpenAI(
            model=conn.model,
            root_client=client,
            client=client.chat.completions,
            root_async_client=aclient,
            async_client=aclient.chat.completions,
        )

    async def plain(self, conn: Conn) -> str:
        return str((await self.llm(conn).ainvoke(HELLO)).content)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        async for chunk in self.llm(conn).astream(HELLO):
            if chunk.content:
                pieces.append(str(chunk.content))

    async def tools(self, conn: Conn) -> ToolSeen:
        message = await self.llm(conn).bind_tools([WEATHER_TOOL]).ainvoke(ASK_WEATHER)
        call = message.tool_calls[0]
        return ToolSeen(call["name"], call["args"])

    async def structured(self, conn: Conn) -> Any:
        return await self.llm(conn).with_structured_output(City).ainvoke(ASK_CITY)


class LlamaIndex(Driver):
    name, package, module = "llamaindex", "llama-index-llms-openai-like", "llama_index.llms.openai_like"

    def llm(self, conn: Conn) -> Any:
        from llama_index.llms.openai_like import OpenAILike

        common: dict[str, Any] = {"model": conn.model, "is_chat_model": True, "is_function_calling_model": True}
        if conn.mode == "http":
            return OpenAILike(
                **common, api_base=conn.api_url, api_key=conn.secret_key, default_headers=conn.headers, max_retries=0
            )
        ai = conn.user
        return OpenAILike(**common, openai_client=ai.openai_sync(), async_openai_client=ai.openai())

    async def plain(self, conn: Conn) -> str:
        from llama_index.core.llms import ChatMessage

        response = await self.llm(conn).achat([ChatMessage(role="user", content=HELLO)])
        return str(response.message.content)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        from llama_index.core.llms import ChatMessage

        async for part in await self.llm(conn).astream_chat([ChatMessage(role="user", content=HELLO)]):
            if part.delta:
                pieces.append(part.delta)

    async def tools(self, conn: Conn) -> ToolSeen:
        from llama_index.core.tools import FunctionTool

        llm = self.llm(conn)
        tool = FunctionTool.from_defaults(fn=WeatherTool().function)
        response = await llm.achat_with_tools([tool], user_msg=ASK_WEATHER)
        [selection] = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
        return ToolSeen(selection.tool_name, selection.tool_kwargs)

    async def structured(self, conn: Conn) -> Any:
        from llama_index.core.prompts import PromptTemplate

        return await self.llm(conn).astructured_predict(City, PromptTemplate(ASK_CITY))


class OpenAIAgents(Driver):
    name, package, module = "openai-agents", "openai-agents", "agents"

    def run_config(self, conn: Conn) -> Any:
        from agents import OpenAIProvider, RunConfig

        # Chat Completions by choice (the SDK's default API is the Responses API: endpoint_drivers.py).
        provider = OpenAIProvider(openai_client=conn.async_openai(), use_responses=False)
        return RunConfig(model_provider=provider, tracing_disabled=True)

    async def plain(self, conn: Conn) -> str:
        from agents import Agent, Runner

        result = await Runner.run(Agent(name="assistant", model=conn.model), HELLO, run_config=self.run_config(conn))
        return str(result.final_output)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        from agents import Agent, Runner

        agent = Agent(name="assistant", model=conn.model)
        result = Runner.run_streamed(agent, HELLO, run_config=self.run_config(conn))
        async for event in result.stream_events():
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                pieces.append(event.data.delta)

    async def tools(self, conn: Conn) -> ToolSeen:
        from agents import Agent, Runner, function_tool

        weather = WeatherTool()
        tool = function_tool(weather.function)
        agent = Agent(name="assistant", model=conn.model, tools=[tool])
        result = await Runner.run(agent, ASK_WEATHER, run_config=self.run_config(conn))
        [arguments] = weather.calls
        return ToolSeen("get_weather", arguments, answer=str(result.final_output))

    async def structured(self, conn: Conn) -> Any:
        from agents import Agent, Runner

        agent = Agent(name="assistant", model=conn.model, output_type=City)
        return (await Runner.run(agent, ASK_CITY, run_config=self.run_config(conn))).final_output


class Instructor(Driver):
    """Structured output only (its tool calls are how it gets structured output)."""

    name, package, module = "instructor", "instructor", "instructor"
    calls = frozenset({"stream", "structured"})
    first_call = "structured"
    raises = ("InstructorRetryException",)

    def client(self, conn: Conn) -> Any:
        import instructor

        return instructor.from_openai(conn.async_openai())

    async def structured(self, conn: Conn) -> Any:
        return await self.client(conn).chat.completions.create(
            model=conn.model, response_model=City, messages=[{"role": "user", "content": ASK_CITY}]
        )

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        # Partial objects as the arguments stream; a piece is each new state of the list.
        partials = self.client(conn).chat.completions.create_partial(
            model=conn.model, response_model=Cities, messages=[{"role": "user", "content": ASK_CITY}]
        )
        async for partial in partials:
            names = partial.names or []
            if names and (not pieces or pieces[-1] != ",".join(names)):
                pieces.append(",".join(names))


class LiteLLM(Driver):
    name, package, module = "litellm", "litellm", "litellm"
    raises, raises_mid_stream = ("APIError",), ("MidStreamFallbackError",)  # LiteLLM's own, over the openai SDK's

    def options(self, conn: Conn) -> dict[str, Any]:
        if conn.mode == "http":
            return {
                "model": "openai/" + conn.model,
                "api_base": conn.api_url,
                "api_key": conn.secret_key,
                "extra_headers": conn.headers,
                "max_retries": 0,
            }
        return {"model": "openai/" + conn.model, "client": conn.user.openai()}

    async def plain(self, conn: Conn) -> str:
        import litellm

        reply = await litellm.acompletion(messages=[{"role": "user", "content": HELLO}], **self.options(conn))
        return str(reply.choices[0].message.content)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        import litellm

        stream = await litellm.acompletion(
            messages=[{"role": "user", "content": HELLO}], stream=True, **self.options(conn)
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)

    async def tools(self, conn: Conn) -> ToolSeen:
        import litellm

        reply = await litellm.acompletion(
            messages=[{"role": "user", "content": ASK_WEATHER}], tools=[WEATHER_TOOL], **self.options(conn)
        )
        call = reply.choices[0].message.tool_calls[0]
        return ToolSeen(call.function.name, json.loads(call.function.arguments))

    async def structured(self, conn: Conn) -> Any:
        import litellm

        reply = await litellm.acompletion(
            messages=[{"role": "user", "content": ASK_CITY}], response_format=City, **self.options(conn)
        )
        return City.model_validate_json(reply.choices[0].message.content)


class PydanticAI(Driver):
    name, package, module = "pydantic-ai", "pydantic-ai-slim[openai]", "pydantic_ai"
    # ModelHTTPError (2.3x) or ModelQuotaExceededError (2.6x); a cut stream is wrapped from 2.6x on.
    raises, raises_mid_stream = ("ModelAPIError",), ("APIError", "ModelAPIError")

    def model(self, conn: Conn) -> Any:
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        if conn.mode == "inprocess":
            return conn.user.model(conn.model)
        return OpenAIChatModel(conn.model, provider=OpenAIProvider(openai_client=conn.async_openai()))

    async def plain(self, conn: Conn) -> str:
        from pydantic_ai import Agent

        return str((await Agent(self.model(conn)).run(HELLO)).output)

    async def stream(self, conn: Conn, pieces: list[str]) -> None:
        from pydantic_ai import Agent

        async with Agent(self.model(conn)).run_stream(HELLO) as result:
            # debounce_by=None: each delta as it arrives (the default groups 0.1 s of them).
            async for delta in result.stream_text(delta=True, debounce_by=None):
                if delta:
                    pieces.append(delta)

    async def tools(self, conn: Conn) -> ToolSeen:
        from pydantic_ai import Agent, Tool

        weather = WeatherTool()
        agent = Agent(self.model(conn), tools=[Tool(weather.function, takes_ctx=False)])
        result = await agent.run(ASK_WEATHER)
        [arguments] = weather.calls
        return ToolSeen("get_weather", arguments, answer=str(result.output))

    async def structured(self, conn: Conn) -> Any:
        from pydantic_ai import Agent

        return (await Agent(self.model(conn), output_type=City).run(ASK_CITY)).output


CHAT_DRIVERS: tuple[Driver, ...] = (
    OpenAIAsync(),
    OpenAISync(),
    LangChain(),
    LlamaIndex(),
    OpenAIAgents(),
    Instructor(),
    LiteLLM(),
    PydanticAI(),
)
# By (client, endpoint): a client on another endpoint is a driver of its own (endpoint_drivers.py).
DRIVERS: dict[tuple[str, str], Driver] = {
    (driver.name, endpoint): driver for driver in (*CHAT_DRIVERS, *ENDPOINT_DRIVERS) for endpoint in driver.endpoints
}
