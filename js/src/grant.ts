// requestGrant(): a one-time grant for apps without accounts. The visitor approves a few requests
// under a dollar cap on the consent page; the page hands back a grant token for the app's server
// to spend (`wf.grant(token)` in Python, or `X-Wattfare-Grant` with the secret key). Only the
// publishable key is needed: there is no user, so there is no session.

import { runConsentRound, type ConsentRound, type OpenRound } from "./consent-window.js";
import { WattfareError } from "./errors.js";
import { send, type Fetch } from "./http.js";

export interface GrantOptions {
  /** How many model requests the visitor is asked to approve (1 to 1000). */
  requests: number;
  /** The most all of them may cost together, in US dollars (default: the app's `default_grant_usd`). */
  maxUsd?: number;
}

/** An approved grant: hand `grantToken` to your server with the request it should spend it on. */
export interface Grant {
  granted: true;
  grantToken: string;
  /** Unix seconds. */
  expiresAt: number;
  requests: number;
  maxUsd: number;
}

/** The visitor denied, or closed the window without deciding. */
export interface NotGranted {
  granted: false;
  reason: "denied" | "closed";
}

export type GrantResult = Grant | NotGranted;

export const GRANT_MESSAGE = "wattfare:grant";
const REDIRECT_KEYS = ["wattfare_grant", "expires_at", "requests", "max_usd"];

export function readGrant(value: unknown): Grant | null {
  if (typeof value !== "object" || value === null) return null;
  const { grantToken, expiresAt, requests, maxUsd } = value as Record<string, unknown>;
  if (typeof grantToken !== "string" || !grantToken.startsWith("wfg_")) return null;
  if (typeof expiresAt !== "number" || typeof requests !== "number" || typeof maxUsd !== "number") return null;
  return { granted: true, grantToken, expiresAt, requests, maxUsd };
}

export function checkGrantOptions(options: GrantOptions): void {
  const { requests, maxUsd } = options ?? ({} as Partial<GrantOptions>);
  if (typeof requests !== "number" || !Number.isInteger(requests) || requests < 1 || requests > 1000) {
    throw new WattfareError("invalid_request", "requests must be a whole number from 1 to 1000");
  }
  if (maxUsd !== undefined && (typeof maxUsd !== "number" || !Number.isFinite(maxUsd) || maxUsd <= 0)) {
    throw new WattfareError("invalid_request", "maxUsd must be a positive number of US dollars");
  }
}

export interface GrantDeps {
  publishableKey: string;
  base(): string;
  origin(): string;
  fetcher: Fetch;
}

export function startGrantRound(deps: GrantDeps, options: GrantOptions): OpenRound<GrantResult> {
  const round: ConsentRound<GrantResult> = {
    messageType: GRANT_MESSAGE,
    origin: deps.origin(),
    async begin(mode, returnTo) {
      const body: Record<string, unknown> = { publishableKey: deps.publishableKey, requests: options.requests, mode };
      if (options.maxUsd !== undefined) body.maxUsd = options.maxUsd;
      if (returnTo !== undefined) body.returnTo = returnTo;
      const response = await send(deps.fetcher, deps.base() + "/api/v1/grants/consent", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(body),
      });
      const answer = (await response.json()) as { url?: unknown };
      if (typeof answer?.url !== "string") throw new WattfareError("unknown", "the server gave no consent URL");
      return answer.url;
    },
    accept(data) {
      if (data.grant === null || data.grant === undefined) return { granted: false, reason: "denied" };
      return readGrant(data.grant) ?? undefined;
    },
    closedWithoutAnswer: async () => ({ granted: false, reason: "closed" }),
  };
  return runConsentRound(round);
}

/** The grant a redirect round trip brought back in the address's #fragment (taken out of it). */
export function takeRedirectGrant(here: URL): Grant | null {
  const fragment = new URLSearchParams(here.hash.replace(/^#/, ""));
  const token = fragment.get("wattfare_grant");
  if (!token) return null;
  const grant = readGrant({
    grantToken: token,
    expiresAt: Number(fragment.get("expires_at")),
    requests: Number(fragment.get("requests")),
    maxUsd: Number(fragment.get("max_usd")),
  });
  for (const key of REDIRECT_KEYS) fragment.delete(key);
  const rest = fragment.toString();
  here.hash = rest ? `#${rest}` : "";
  return grant;
}
