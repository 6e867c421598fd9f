// The session token: minted by the app's own backend for its signed-in user, cached until shortly
// before it expires. The browser never holds more than this short-lived token.

import { WattfareAuthError, WattfareError } from "./errors.js";
import { send, type Fetch } from "./http.js";

/** A route the SDK POSTs to (answering `{token}` or the raw token), or a function returning a token. */
export type SessionSource =
  | string
  | (() => string | { token: string; expiresAt?: number } | Promise<string | { token: string; expiresAt?: number }>);

const EARLY_SECONDS = 30; // a cached token is renewed this long before it expires

interface Cached {
  token: string;
  expiresAt: number;
}

function jwtClaims(token: string): Record<string, unknown> {
  try {
    const payload = token.split(".")[1] ?? "";
    const parsed: unknown = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {}; // not a JWT: the server is the judge
  }
}

export class SessionTokens {
  #cached: Cached | null = null;
  #minting: Promise<string> | null = null;

  constructor(
    private readonly source: SessionSource,
    private readonly appId: string,
    private readonly fetcher: Fetch,
  ) {}

  /** A token valid for at least another 30 seconds. */
  token(): Promise<string> {
    const cached = this.#cached;
    if (cached && cached.expiresAt - EARLY_SECONDS > Date.now() / 1000) return Promise.resolve(cached.token);
    this.#minting ??= this.#mint()
      .then((fresh) => {
        this.#cached = fresh;
        return fresh.token;
      })
      .finally(() => {
        this.#minting = null;
      });
    return this.#minting;
  }

  /** Forget the cached token (the server refused it: expired or revoked early). */
  forget(): void {
    this.#cached = null;
  }

  async #mint(): Promise<Cached> {
    let value: unknown;
    if (typeof this.source === "string") {
      const response = await send(this.fetcher, this.source, { method: "POST", headers: { accept: "application/json" } });
      const text = (await response.text()).trim();
      try {
        value = JSON.parse(text);
      } catch {
        value = text; // a raw token
      }
    } else {
      value = await this.source();
    }
    const { token, expiresAt } =
      typeof value === "object" && value !== null
        ? (value as { token?: unknown; expiresAt?: unknown })
        : { token: value, expiresAt: undefined };
    if (typeof token !== "string" || !token) throw new WattfareAuthError("the session source gave no token");
    const claims = jwtClaims(token);
    if (typeof claims.app === "string" && claims.app !== this.appId) {
      throw new WattfareAuthError("the session token is for another app than the publishable key");
    }
    const expires = Number(expiresAt) || Number(claims.exp) || Date.now() / 1000 + EARLY_SECONDS + 60;
    return { token, expiresAt: expires };
  }
}

export function checkSessionSource(source: unknown): asserts source is SessionSource {
  if (!(typeof source === "string" && source) && typeof source !== "function") {
    throw new WattfareError("invalid_request", "session must be a route path or a function returning a token");
  }
}
