// One fetch wrapper: answers that are not 2xx become typed errors, unreachable servers `network`.

import { WattfareError, WattfareNetworkError, errorFromCode, toWattfareError } from "./errors.js";
import type { WattfareErrorCode } from "./errors.js";

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

const CODES: Record<number, WattfareErrorCode> = {
  400: "invalid_request",
  401: "auth",
  402: "not_connected",
  413: "invalid_request",
  429: "rate_limited",
  502: "upstream",
  503: "unavailable",
};

export async function send(fetcher: Fetch, url: string, init: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetcher(url, { credentials: "same-origin", cache: "no-store", ...init });
  } catch (err) {
    throw new WattfareNetworkError(`could not reach ${url}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (response.ok) return response;
  const text = await response.text().catch(() => "");
  const typed = toWattfareError(text);
  const retryAfter = Number(response.headers.get("retry-after")) || null;
  if (typed) throw errorFromCode(typed.code, typed.message, response.status, retryAfter);
  const code = CODES[response.status] ?? "unknown";
  throw new WattfareError(code, `HTTP ${response.status} from ${url}`, response.status, retryAfter);
}
