import assert from "node:assert/strict";
import { test } from "node:test";

import {
  WattfareBudgetExceededError,
  WattfareError,
  WattfareNotConnectedError,
  errorFromCode,
  isBudgetExceeded,
  isNotConnected,
  toWattfareError,
} from "../src/client.js";

const body = (code: string, message = "the developer's message") => JSON.stringify({ error: { code, message } });

test("an Error whose message is our JSON (how useChat reports a non-2xx answer or an error chunk) is typed", () => {
  const fromUseChat = new Error(body("not_connected"));
  const typed = toWattfareError(fromUseChat);
  assert.ok(typed instanceof WattfareNotConnectedError);
  assert.equal(typed.code, "not_connected");
  assert.equal(typed.status, 402);
  assert.equal(typed.message, "the developer's message");
  assert.equal(isNotConnected(fromUseChat), true);
  assert.equal(isBudgetExceeded(new Error(body("budget_exceeded"))), true);
});

test("an AI SDK APICallError wrapper, also as the cause of another error, is seen through", () => {
  const apiCallError = Object.assign(new Error("Payment Required"), {
    name: "AI_APICallError",
    statusCode: 402,
    responseBody: body("budget_exceeded", "the cap of $5 is reached"),
  });
  assert.ok(toWattfareError(apiCallError) instanceof WattfareBudgetExceededError);
  const wrapped = new Error("stream failed", { cause: apiCallError });
  assert.equal(isBudgetExceeded(wrapped), true);
  assert.equal(isNotConnected(wrapped), false);
});

test("funding_invalid counts as not connected; other codes and foreign errors do not", () => {
  assert.equal(isNotConnected(new Error(body("funding_invalid"))), true);
  assert.equal(isNotConnected(new Error(body("rate_limited"))), false);
  assert.equal(toWattfareError(new Error("fetch failed")), null);
  assert.equal(toWattfareError(new Error('{"error": {"code": "invalid_request_error"}}')), null, "OpenAI's own code");
  assert.equal(toWattfareError(null), null);
  assert.equal(toWattfareError(42), null);
});

test("typed errors carry a sentence for the user apart from the developer's message, and serialise back", () => {
  const error = toWattfareError({ error: { code: "budget_exceeded", message: "the cap of $0.05 is reached: $0.0188 left" } });
  assert.ok(error instanceof WattfareError);
  assert.doesNotMatch(error.userMessage, /\$0\.0188|cap of/);
  assert.match(error.userMessage, /budget/);
  assert.deepEqual(error.toJSON(), { error: { code: "budget_exceeded", message: "the cap of $0.05 is reached: $0.0188 left" } });
  assert.equal(new WattfareNotConnectedError().userMessage, "Connect your AI budget to continue.");
});

test("unavailable (the embed's database is down) is a typed 503 that says when to try again", () => {
  const error = errorFromCode("unavailable", "the budget store is unavailable", undefined, 5);
  assert.equal(error.code, "unavailable");
  assert.equal(error.status, 503);
  assert.equal(error.retryAfter, 5);
  assert.match(error.userMessage, /Nothing was charged/);
  assert.equal(toWattfareError(new Error(body("unavailable")))?.status, 503);
});
