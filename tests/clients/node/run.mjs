// One call of the Vercel AI SDK against the proxy, as a Node server would make it; prints what
// the caller's code saw as one JSON line. Driven by tests/clients/test_node_clients.py:
//   node run.mjs '{"provider":"openai-chat","scenario":"stream","baseURL":…,"apiKey":…,"user":…,"model":…}'
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const spec = JSON.parse(process.argv[2]);

function model() {
  const headers = { "X-Wattfare-User": spec.user };
  if (spec.provider === "openai-chat") {
    return createOpenAI({ baseURL: spec.baseURL, apiKey: spec.apiKey, headers }).chat(spec.model);
  }
  if (spec.provider === "openai-responses") {
    // The provider's default since v5: the Responses API.
    return createOpenAI({ baseURL: spec.baseURL, apiKey: spec.apiKey, headers })(spec.model);
  }
  if (spec.provider === "openai-compatible") {
    const provider = createOpenAICompatible({
      name: "wattfare",
      baseURL: spec.baseURL,
      apiKey: spec.apiKey,
      headers,
      includeUsage: true,
    });
    return provider.chatModel(spec.model);
  }
  throw new Error(`unknown provider ${spec.provider}`);
}

// What a caller can read off an error: the AI SDK's APICallError for a refused call, or the
// provider's error object for an error part in a stream.
function describe(error) {
  const data = error?.data?.error ?? error;
  return {
    name: error?.name ?? null,
    statusCode: error?.statusCode ?? null,
    isRetryable: error?.isRetryable ?? null,
    code: data?.code ?? null,
    message: data?.message ?? error?.message ?? String(error),
  };
}

// maxRetries: 0, as the README says: the AI SDK ignores `x-should-retry: false`, and a retried call
// that was sent may be charged twice. On the Responses API, store: false, as the README says: the
// API is stateless, and without it later turns refer to earlier ones by stored ids.
const common = { model: model(), maxRetries: 0 };
if (spec.provider === "openai-responses") common.providerOptions = { openai: { store: false } };

async function plain() {
  const { text } = await generateText({ ...common, prompt: "Say hello" });
  return { text };
}

async function stream() {
  const result = streamText({ ...common, prompt: "Say hello", onError: () => {} });
  const pieces = [];
  const errors = [];
  let finishReason = null;
  for await (const part of result.fullStream) {
    if (part.type === "text-delta") pieces.push(part.text);
    if (part.type === "error") errors.push(describe(part.error));
    if (part.type === "finish") finishReason = part.finishReason;
  }
  return { text: pieces.join(""), pieces, errors, finishReason };
}

async function tools() {
  const calls = [];
  const result = await generateText({
    ...common,
    prompt: "What is the weather in Paris?",
    tools: {
      get_weather: tool({
        description: "The weather in a city",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          calls.push({ city });
          return `sunny in ${city}`;
        },
      }),
    },
    stopWhen: stepCountIs(2),
  });
  const [call] = result.steps[0].toolCalls;
  return { toolName: call.toolName, input: call.input, executed: calls, text: result.text };
}

const scenarios = { plain, stream, tools };
try {
  const outcome = await scenarios[spec.scenario]();
  console.log(JSON.stringify({ ok: true, ...outcome }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, thrown: describe(error) }));
}
