// Read UI message streams from live routes with the AI SDK's own client code: the transport
// `useChat` uses (DefaultChatTransport: fetch, SSE parsing, chunk schema validation) and
// readUIMessageStream (the ordering rules). The Python tests run it:
//
//   node --import tsx test/read-ui-message-stream.ts < requests.json > results.json
//
// Each request is {name, url, messages}; each result has the parsed chunks, the final UIMessage,
// the errors the stream raised (with our typed error decoded from each), and the response headers.

import { DefaultChatTransport, readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";

import { toWattfareError } from "../src/errors.js";

interface StreamRequest {
  name: string;
  url: string;
  messages: UIMessage[];
}

interface StreamResult {
  chunks: UIMessageChunk[];
  message: UIMessage | null;
  errors: { message: string; code: string | null }[];
  headers: Record<string, string>;
  failure: string | null;
}

async function readOne(request: StreamRequest): Promise<StreamResult> {
  const headers: Record<string, string> = {};
  const errors: StreamResult["errors"] = [];
  const recordingFetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const response = await fetch(input, init);
    response.headers.forEach((value, name) => {
      headers[name] = value;
    });
    return response;
  };
  const transport = new DefaultChatTransport<UIMessage>({ api: request.url, fetch: recordingFetch });
  const chunks: UIMessageChunk[] = [];
  let message: UIMessage | null = null;
  try {
    const stream = await transport.sendMessages({
      chatId: "chat-1",
      messages: request.messages,
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    });
    const [forChunks, forMessages] = stream.tee();
    const collecting = (async () => {
      for await (const chunk of forChunks) chunks.push(chunk);
    })();
    const onError = (error: unknown): void => {
      const text = error instanceof Error ? error.message : String(error);
      errors.push({ message: text, code: toWattfareError(error)?.code ?? null });
    };
    // terminateOnError: false, like useChat's reader keeps the partial message after an error.
    for await (const snapshot of readUIMessageStream<UIMessage>({ stream: forMessages, onError })) {
      message = snapshot;
    }
    await collecting;
  } catch (error) {
    const typed = toWattfareError(error);
    return {
      chunks,
      message,
      errors: [{ message: error instanceof Error ? error.message : String(error), code: typed?.code ?? null }],
      headers,
      failure: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    };
  }
  return { chunks, message, errors, headers, failure: null };
}

const input = await new Promise<string>((resolve) => {
  let text = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (piece: string) => (text += piece));
  process.stdin.on("end", () => resolve(text));
});
const results: Record<string, StreamResult> = {};
for (const request of JSON.parse(input) as StreamRequest[]) results[request.name] = await readOne(request);
process.stdout.write(JSON.stringify(results));
