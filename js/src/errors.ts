// Typed errors: one class per wire code, the same codes the Python package answers with
// ({"error": {"code", "message"}}), and helpers that recover them from whatever wrapped them on
// the way (a fetch answer, useChat's `new Error(responseText)`, an AI SDK APICallError, an
// `error` chunk of a UI message stream).

export type WattfareErrorCode =
  | "not_connected"
  | "budget_exceeded"
  | "funding_invalid"
  | "grant_invalid"
  | "rate_limited"
  | "auth"
  | "invalid_request"
  | "upstream"
  | "unavailable"
  | "network"
  | "unknown";

const STATUS: Record<WattfareErrorCode, number> = {
  not_connected: 402,
  budget_exceeded: 402,
  funding_invalid: 402,
  grant_invalid: 402,
  rate_limited: 429,
  auth: 401,
  invalid_request: 400,
  upstream: 502,
  unavailable: 503,
  network: 0,
  unknown: 0,
};

// What the person using the app reads; `message` stays the developer's text, for logs.
const USER_MESSAGES: Record<WattfareErrorCode, string> = {
  not_connected: "Connect your AI budget to continue.",
  funding_invalid: "Your AI budget needs to be connected again.",
  budget_exceeded: "You have used this month's AI budget. Raise your cap to keep going.",
  grant_invalid: "That approval is no longer valid. Please approve again.",
  rate_limited: "Too many requests at once. Wait a moment and try again.",
  auth: "Please sign in again, then try once more.",
  invalid_request: "Something went wrong on our side. Please try again.",
  upstream: "The AI service did not answer. Please try again.",
  unavailable: "The AI budget service is briefly unavailable. Nothing was charged; try again in a moment.",
  network: "Could not reach the server. Check your connection and try again.",
  unknown: "Something went wrong. Please try again.",
};

export const isWattfareErrorCode = (code: unknown): code is WattfareErrorCode =>
  typeof code === "string" && Object.prototype.hasOwnProperty.call(STATUS, code);

/** The JSON body of every error: `{"error": {"code": "...", "message": "..."}}`. */
export interface WattfareErrorBody {
  error: { code: WattfareErrorCode; message: string };
}

export class WattfareError extends Error {
  readonly code: WattfareErrorCode;
  /** The HTTP status this error travels with (0 when none: network, unknown). */
  readonly status: number;
  /** Extra fields of the error body, e.g. `retryAfter` seconds for `rate_limited` and `unavailable`. */
  readonly retryAfter: number | null;

  constructor(code: WattfareErrorCode, message?: string, status?: number, retryAfter: number | null = null) {
    super(message || code);
    this.name = "WattfareError";
    this.code = code;
    this.status = status ?? STATUS[code];
    this.retryAfter = retryAfter;
  }

  /** A sentence for the person using the app (never the developer's `message`). */
  get userMessage(): string {
    return USER_MESSAGES[this.code];
  }

  toJSON(): WattfareErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

export class WattfareNotConnectedError extends WattfareError {
  constructor(message?: string) {
    super("not_connected", message);
    this.name = "WattfareNotConnectedError";
  }
}

export class WattfareBudgetExceededError extends WattfareError {
  constructor(message?: string) {
    super("budget_exceeded", message);
    this.name = "WattfareBudgetExceededError";
  }
}

export class WattfareFundingError extends WattfareError {
  constructor(message?: string) {
    super("funding_invalid", message);
    this.name = "WattfareFundingError";
  }
}

export class WattfareGrantError extends WattfareError {
  constructor(message?: string) {
    super("grant_invalid", message);
    this.name = "WattfareGrantError";
  }
}

export class WattfareRateLimitError extends WattfareError {
  constructor(message?: string, retryAfter: number | null = null) {
    super("rate_limited", message, 429, retryAfter);
    this.name = "WattfareRateLimitError";
  }
}

export class WattfareAuthError extends WattfareError {
  constructor(message?: string) {
    super("auth", message);
    this.name = "WattfareAuthError";
  }
}

export class WattfareNetworkError extends WattfareError {
  constructor(message?: string) {
    super("network", message);
    this.name = "WattfareNetworkError";
  }
}

/** The typed error for a wire code (`status` overrides the code's usual HTTP status, e.g. 413). */
export function errorFromCode(
  code: WattfareErrorCode,
  message?: string,
  status?: number,
  retryAfter: number | null = null,
): WattfareError {
  let error: WattfareError;
  switch (code) {
    case "not_connected":
      error = new WattfareNotConnectedError(message);
      break;
    case "budget_exceeded":
      error = new WattfareBudgetExceededError(message);
      break;
    case "funding_invalid":
      error = new WattfareFundingError(message);
      break;
    case "grant_invalid":
      error = new WattfareGrantError(message);
      break;
    case "rate_limited":
      error = new WattfareRateLimitError(message, retryAfter);
      break;
    case "auth":
      error = new WattfareAuthError(message);
      break;
    case "network":
      error = new WattfareNetworkError(message);
      break;
    default:
      error = new WattfareError(code, message, status, retryAfter);
  }
  if (status !== undefined && status !== error.status) {
    return new WattfareError(code, message, status, retryAfter);
  }
  return error;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null;

/** `{"error": {"code", "message"}}` (or the inner `{"code", "message"}`) as a typed error. */
function fromBody(body: unknown, status?: number): WattfareError | null {
  if (!isObject(body)) return null;
  const inner = isObject(body.error) ? body.error : body;
  if (!isWattfareErrorCode(inner.code)) return null;
  const message = typeof inner.message === "string" ? inner.message : undefined;
  return errorFromCode(inner.code, message, status && status >= 400 ? status : undefined);
}

function fromText(text: unknown, status?: number): WattfareError | null {
  if (typeof text !== "string") return null;
  const start = text.indexOf("{");
  if (start < 0) return null;
  try {
    return fromBody(JSON.parse(text.slice(start)), status);
  } catch {
    return null; // not our JSON
  }
}

/**
 * Recover our typed error from anything: a `WattfareError`, an error body, an `Error` whose
 * message is our JSON (what `useChat` hands `onError` for a non-2xx answer or an `error` chunk),
 * or an AI SDK `APICallError` (`responseBody`, `statusCode`), also inside `cause` chains.
 * `null` when the error is not about Wattfare.
 */
export function toWattfareError(error: unknown): WattfareError | null {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current !== undefined && current !== null && !seen.has(current)) {
    seen.add(current);
    if (current instanceof WattfareError) return current;
    if (typeof current === "string") return fromText(current);
    if (!isObject(current)) return null;
    const status = typeof current.statusCode === "number" ? current.statusCode : undefined;
    const found =
      fromText(current.responseBody, status) ??
      fromBody(current.data, status) ??
      fromBody(current, typeof current.status === "number" ? current.status : undefined) ??
      fromText(current.message, status);
    if (found) return found;
    current = current.cause;
  }
  return null;
}

/** True when the user must connect (again): no budget yet, disconnected, revoked, or funding refused. */
export function isNotConnected(error: unknown): boolean {
  const code = toWattfareError(error)?.code;
  return code === "not_connected" || code === "funding_invalid";
}

/** True when the user's cap for this period is reached: show their usage and a raise-cap button. */
export function isBudgetExceeded(error: unknown): boolean {
  return toWattfareError(error)?.code === "budget_exceeded";
}
