// createWattfare(): the browser client. It holds only a short-lived session token, never a key,
// and touches nothing browser-only until a method is called, so it can be created during
// server-side rendering.

import { runConsentRound, type ConsentRound } from "./consent-window.js";
import { WattfareError, isBudgetExceeded, isNotConnected, toWattfareError } from "./errors.js";
import {
  checkGrantOptions,
  startGrantRound,
  takeRedirectGrant,
  type Grant,
  type GrantOptions,
  type GrantResult,
} from "./grant.js";
import { send, type Fetch } from "./http.js";
import { SessionTokens, checkSessionSource, type SessionSource } from "./session.js";
import { notConnectedStatus, readStatus, type ConnectionStatus } from "./status.js";
import { readUsagePage, type UsageOptions, type UsagePage } from "./usage.js";

export interface WattfareConfig {
  /** `pk_live_…` or `pk_test_…`: names the app; safe in the browser. */
  publishableKey: string;
  /** Your route that mints a session token for the signed-in user (POSTed), or a function returning one.
   * Leave it out in an app without accounts that only asks for one-time grants (`requestGrant`). */
  session?: SessionSource;
  /** Where the embed is mounted, e.g. `/wattfare` (the default) or `https://app.example.com/wattfare`. */
  baseURL?: string;
  /** The origin the consent result is posted from: the embed's own (where `{mount}/callback` is served). */
  consentURL?: string;
  /** A fetch implementation (defaults to the global one). */
  fetch?: Fetch;
  /** Re-read the status when the tab is shown or focused again, while anyone listens (default true). */
  refreshOnFocus?: boolean;
}

export interface ConnectOptions {
  /** The monthly cap to ask for; a higher one than approved goes through consent again. */
  monthlyUsd?: number;
}

/** Everything a UI renders from: the last status read, whether the first read is running, the last error. */
export interface WattfareState {
  status: ConnectionStatus | null;
  loading: boolean;
  error: WattfareError | null;
}

export type RedirectResult = "connected" | "granted" | "denied" | "error";

export interface WattfareClient {
  readonly publishableKey: string;
  /** The embed's absolute base URL (resolved against the page on first use). */
  readonly baseURL: string;
  /** Set when this page load ends a redirect round trip (`?wattfare=…`, removed from the address). */
  readonly redirectResult: RedirectResult | null;
  /** The last status read, or null. */
  readonly current: ConnectionStatus | null;
  /** Open the consent popup (call it from a click); a full-page redirect when popups are blocked.
   * Resolves with the new status; a denial or a closed popup resolves as not connected. */
  connect(options?: ConnectOptions): Promise<ConnectionStatus>;
  /** Ask the visitor for a one-time grant of a few requests under a dollar cap (call it from a click):
   * a popup, or a full-page redirect when popups are blocked (then `redirectGrant` holds the result
   * on the page the visitor comes back to). Needs only the publishable key. Resolves with the grant,
   * or `{granted: false, reason}` when the visitor denied or closed the window. */
  requestGrant(options: GrantOptions): Promise<GrantResult>;
  /** Set when this page load ends a grant's redirect round trip (taken out of the address). */
  readonly redirectGrant: Grant | null;
  /** Read the status from the server (and tell every listener). */
  refresh(): Promise<ConnectionStatus>;
  status(): Promise<ConnectionStatus>;
  /** The user's receipts this month, newest first: each charged request's model, tokens and exact
   * cost ("what did this app spend of my money?"). Pass `nextCursor` as `cursor` for older ones. */
  usage(options?: UsageOptions): Promise<UsagePage>;
  /** Revoke the connection, here and at the consent authority. */
  disconnect(): Promise<ConnectionStatus>;
  /** `listener(status)` on every status read, at once too when one is known; returns the unsubscribe. */
  subscribe(listener: (status: ConnectionStatus) => void): () => void;
  onChange(listener: (status: ConnectionStatus) => void): () => void;
  /** The state as one immutable snapshot (a new object only when something changed). */
  getState(): WattfareState;
  /** `listener()` whenever `getState()` changes (the `useSyncExternalStore` contract). */
  subscribeState(listener: () => void): () => void;
  /** Our typed error behind `error` (or null); a not-connected or over-budget one re-reads the
   * status at once, so the Connect button or the raise-cap path shows without a reload. */
  handleError(error: unknown): WattfareError | null;
}

const PUBLISHABLE_KEY = /^pk_(live|test)_([A-Za-z0-9]+)$/;
const FOCUS_REFRESH_GAP_MS = 1000;
const hasWindow = (): boolean => typeof window !== "undefined" && typeof document !== "undefined";

export function createClient(config: WattfareConfig, defaultBaseURL: string): WattfareClient {
  const { publishableKey, session } = config ?? ({} as Partial<WattfareConfig>);
  const key = typeof publishableKey === "string" ? PUBLISHABLE_KEY.exec(publishableKey) : null;
  if (!key?.[2]) throw new WattfareError("invalid_request", "publishableKey must look like pk_live_… or pk_test_…");
  if (session !== undefined) checkSessionSource(session);
  const fetcher: Fetch = config.fetch ?? ((input, init) => fetch(input, init));
  const tokens = session === undefined ? null : new SessionTokens(session, key[2], fetcher);

  let resolvedBase: string | null = null;
  const base = (): string => {
    if (resolvedBase) return resolvedBase;
    const wanted = config.baseURL || defaultBaseURL;
    const absolute = typeof location === "undefined" ? wanted : new URL(wanted, location.href).href;
    return (resolvedBase = absolute.replace(/\/+$/, ""));
  };
  // The only origin whose consent messages are believed.
  const consentOrigin = (): string => new URL(config.consentURL || base(), location.href).origin;

  const statusListeners = new Set<(status: ConnectionStatus) => void>();
  const stateListeners = new Set<() => void>();
  let state: WattfareState = { status: null, loading: false, error: null };
  let reads = 0; // every status gets a number, so a slow old read never overwrites a newer one
  let shown = 0;
  let inFlight = 0;
  let pending: { popup: Window; promise: Promise<ConnectionStatus> } | null = null;
  let redirectResult: RedirectResult | null = null;
  let redirectGrant: Grant | null = null;
  let pendingGrant: { popup: Window; promise: Promise<GrantResult> } | null = null;

  function setState(change: Partial<WattfareState>): void {
    const next = { ...state, ...change };
    next.loading = inFlight > 0 && next.status === null;
    if (next.status === state.status && next.error === state.error && next.loading === state.loading) return;
    state = next;
    for (const listener of [...stateListeners]) listener();
  }

  function publish(status: ConnectionStatus, order: number): ConnectionStatus {
    if (order < shown) return status;
    shown = order;
    setState({ status, error: null });
    for (const listener of [...statusListeners]) {
      try {
        listener(status);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    return status;
  }

  async function track<T>(action: () => Promise<T>): Promise<T> {
    inFlight += 1;
    setState({});
    try {
      return await action();
    } catch (err) {
      setState({ error: toWattfareError(err) ?? new WattfareError("unknown", String(err)) });
      throw err;
    } finally {
      inFlight -= 1;
      setState({});
    }
  }

  async function api(method: string, path: string, body?: object, retry = true): Promise<unknown> {
    if (tokens === null) {
      throw new WattfareError("invalid_request", "this client was made without `session`: it can only requestGrant()");
    }
    const headers: Record<string, string> = { authorization: `Bearer ${await tokens.token()}`, accept: "application/json" };
    if (body) headers["content-type"] = "application/json";
    try {
      const init: RequestInit = { method, headers };
      if (body) init.body = JSON.stringify(body);
      const response = await send(fetcher, base() + path, init);
      return response.status === 204 ? null : await response.json();
    } catch (err) {
      if (!(err instanceof WattfareError) || err.code !== "auth" || !retry) throw err;
      tokens.forget(); // expired or revoked early: one fresh token, one more try
      return api(method, path, body, false);
    }
  }

  function statusFrom(value: unknown): ConnectionStatus {
    const status = readStatus(value);
    if (!status) throw new WattfareError("unknown", "the server answered something that is not a ConnectionStatus");
    return status;
  }

  function refresh(): Promise<ConnectionStatus> {
    const order = ++reads;
    return track(async () => publish(statusFrom(await api("GET", "/api/v1/connections")), order));
  }

  async function usage(options?: UsageOptions): Promise<UsagePage> {
    const query = new URLSearchParams();
    if (options?.cursor) query.set("cursor", options.cursor);
    if (options?.limit !== undefined) query.set("limit", String(options.limit));
    const suffix = query.toString() ? `?${query.toString()}` : "";
    const page = readUsagePage(await track(() => api("GET", `/api/v1/usage${suffix}`)));
    if (!page) throw new WattfareError("unknown", "the server answered something that is not a usage page");
    return page;
  }

  function connect(options?: ConnectOptions): Promise<ConnectionStatus> {
    if (pending && !pending.popup.closed) {
      pending.popup.focus();
      return pending.promise;
    }
    // A popup closed a moment ago is still being read back; a new click starts a new round.
    pending = null;
    const monthlyUsd = typeof options?.monthlyUsd === "number" ? options.monthlyUsd : undefined;
    const round: ConsentRound<ConnectionStatus> = {
      messageType: "wattfare:connect",
      origin: consentOrigin(),
      async begin(mode, returnTo) {
        const body: Record<string, unknown> = { mode };
        if (monthlyUsd !== undefined) body.monthlyUsd = monthlyUsd;
        if (returnTo !== undefined) body.returnTo = returnTo;
        const answer = (await track(() => api("POST", "/api/v1/consent", body))) as { url?: unknown };
        if (typeof answer?.url !== "string") throw new WattfareError("unknown", "the server gave no consent URL");
        return answer.url;
      },
      accept(data) {
        const status = readStatus(data.status);
        return status ? publish(status, ++reads) : undefined;
      },
      closedWithoutAnswer: () => refresh().catch(() => publish(notConnectedStatus(state.status), ++reads)),
      afterError: refresh,
    };
    const opened = runConsentRound(round);
    const promise = opened.promise.finally(() => {
      if (pending?.promise === promise) pending = null;
    });
    if (opened.popup) pending = { popup: opened.popup, promise };
    return promise;
  }

  function requestGrant(options: GrantOptions): Promise<GrantResult> {
    checkGrantOptions(options);
    if (pendingGrant && !pendingGrant.popup.closed) {
      pendingGrant.popup.focus();
      return pendingGrant.promise;
    }
    pendingGrant = null;
    const opened = startGrantRound({ publishableKey, base, origin: consentOrigin, fetcher }, options);
    const promise = opened.promise.finally(() => {
      if (pendingGrant?.promise === promise) pendingGrant = null;
    });
    if (opened.popup) pendingGrant = { popup: opened.popup, promise };
    return promise;
  }

  // Re-read on return to the tab: a revoke on the consent domain's dashboard shows without a reload.
  let lastFocusRefresh = 0;
  const onReturn = (): void => {
    if (document.visibilityState === "hidden" || pending || tokens === null) return;
    const now = Date.now();
    if (now - lastFocusRefresh < FOCUS_REFRESH_GAP_MS) return;
    lastFocusRefresh = now;
    refresh().catch(() => {}); // shown through state.error
  };
  let watching = false;
  function watchFocus(): void {
    const wanted = config.refreshOnFocus !== false && hasWindow() && statusListeners.size + stateListeners.size > 0;
    if (wanted === watching) return;
    watching = wanted;
    const method = wanted ? "addEventListener" : "removeEventListener";
    window[method]("focus", onReturn);
    document[method]("visibilitychange", onReturn);
  }

  const client: WattfareClient = {
    publishableKey,
    get baseURL() {
      return base();
    },
    get redirectResult() {
      return redirectResult;
    },
    get redirectGrant() {
      return redirectGrant;
    },
    requestGrant,
    get current() {
      return state.status;
    },
    connect,
    refresh,
    status: refresh,
    usage,
    disconnect: () => track(() => api("DELETE", "/api/v1/connections")).then(refresh),
    subscribe(listener) {
      statusListeners.add(listener);
      watchFocus();
      if (state.status) listener(state.status);
      return () => {
        statusListeners.delete(listener);
        watchFocus();
      };
    },
    onChange: (listener) => client.subscribe(listener),
    getState: () => state,
    subscribeState(listener) {
      stateListeners.add(listener);
      watchFocus();
      return () => {
        stateListeners.delete(listener);
        watchFocus();
      };
    },
    handleError(error) {
      const typed = toWattfareError(error);
      if (typed && (isNotConnected(typed) || isBudgetExceeded(typed))) refresh().catch(() => {});
      return typed;
    },
  };

  // Back from a redirect round trip: drop ?wattfare=… from the address bar and read the new status.
  if (hasWindow()) {
    const here = new URL(location.href);
    const result = here.searchParams.get("wattfare");
    if (result === "connected" || result === "granted" || result === "denied" || result === "error") {
      redirectResult = result;
      here.searchParams.delete("wattfare");
      redirectGrant = takeRedirectGrant(here);
      history.replaceState(history.state, "", here.pathname + here.search + here.hash);
      if (tokens !== null && result !== "granted") queueMicrotask(() => refresh().catch(() => {}));
    }
  }
  return client;
}
