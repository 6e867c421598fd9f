// wattfare.js: the browser client of wattfare_embed (createWattfare, typed errors, <wattfare-connect>).
// Built from js/src by `npm run build` in the repository; do not edit by hand.

// src/errors.ts
var STATUS = {
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
  unknown: 0
};
var USER_MESSAGES = {
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
  unknown: "Something went wrong. Please try again."
};
var isWattfareErrorCode = (code) => typeof code === "string" && Object.prototype.hasOwnProperty.call(STATUS, code);
var WattfareError = class extends Error {
  code;
  /** The HTTP status this error travels with (0 when none: network, unknown). */
  status;
  /** Extra fields of the error body, e.g. `retryAfter` seconds for `rate_limited` and `unavailable`. */
  retryAfter;
  constructor(code, message, status, retryAfter = null) {
    super(message || code);
    this.name = "WattfareError";
    this.code = code;
    this.status = status ?? STATUS[code];
    this.retryAfter = retryAfter;
  }
  /** A sentence for the person using the app (never the developer's `message`). */
  get userMessage() {
    return USER_MESSAGES[this.code];
  }
  toJSON() {
    return { error: { code: this.code, message: this.message } };
  }
};
var WattfareNotConnectedError = class extends WattfareError {
  constructor(message) {
    super("not_connected", message);
    this.name = "WattfareNotConnectedError";
  }
};
var WattfareBudgetExceededError = class extends WattfareError {
  constructor(message) {
    super("budget_exceeded", message);
    this.name = "WattfareBudgetExceededError";
  }
};
var WattfareFundingError = class extends WattfareError {
  constructor(message) {
    super("funding_invalid", message);
    this.name = "WattfareFundingError";
  }
};
var WattfareGrantError = class extends WattfareError {
  constructor(message) {
    super("grant_invalid", message);
    this.name = "WattfareGrantError";
  }
};
var WattfareRateLimitError = class extends WattfareError {
  constructor(message, retryAfter = null) {
    super("rate_limited", message, 429, retryAfter);
    this.name = "WattfareRateLimitError";
  }
};
var WattfareAuthError = class extends WattfareError {
  constructor(message) {
    super("auth", message);
    this.name = "WattfareAuthError";
  }
};
var WattfareNetworkError = class extends WattfareError {
  constructor(message) {
    super("network", message);
    this.name = "WattfareNetworkError";
  }
};
function errorFromCode(code, message, status, retryAfter = null) {
  let error;
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
  if (status !== void 0 && status !== error.status) {
    return new WattfareError(code, message, status, retryAfter);
  }
  return error;
}
var isObject = (value) => typeof value === "object" && value !== null;
function fromBody(body, status) {
  if (!isObject(body)) return null;
  const inner = isObject(body.error) ? body.error : body;
  if (!isWattfareErrorCode(inner.code)) return null;
  const message = typeof inner.message === "string" ? inner.message : void 0;
  return errorFromCode(inner.code, message, status && status >= 400 ? status : void 0);
}
function fromText(text2, status) {
  if (typeof text2 !== "string") return null;
  const start = text2.indexOf("{");
  if (start < 0) return null;
  try {
    return fromBody(JSON.parse(text2.slice(start)), status);
  } catch {
    return null;
  }
}
function toWattfareError(error) {
  const seen = /* @__PURE__ */ new Set();
  let current = error;
  while (current !== void 0 && current !== null && !seen.has(current)) {
    seen.add(current);
    if (current instanceof WattfareError) return current;
    if (typeof current === "string") return fromText(current);
    if (!isObject(current)) return null;
    const status = typeof current.statusCode === "number" ? current.statusCode : void 0;
    const found = fromText(current.responseBody, status) ?? fromBody(current.data, status) ?? fromBody(current, typeof current.status === "number" ? current.status : void 0) ?? fromText(current.message, status);
    if (found) return found;
    current = current.cause;
  }
  return null;
}
function isNotConnected(error) {
  const code = toWattfareError(error)?.code;
  return code === "not_connected" || code === "funding_invalid";
}
function isBudgetExceeded(error) {
  return toWattfareError(error)?.code === "budget_exceeded";
}

// src/consent-window.ts
var POPUP_NAME = "wattfare-consent";
var WIDTH = 520;
var HEIGHT = 700;
var CLOSED_POLL_MS = 250;
var LATE_MESSAGE_MS = 150;
function openPopup() {
  try {
    const left = Math.max(0, window.screenX + (window.outerWidth - WIDTH) / 2);
    const top = Math.max(0, window.screenY + (window.outerHeight - HEIGHT) / 2);
    const popup = window.open("about:blank", POPUP_NAME, `popup,width=${WIDTH},height=${HEIGHT},left=${left},top=${top}`);
    return popup && !popup.closed ? popup : null;
  } catch {
    return null;
  }
}
function errorOf(data) {
  const error = data.error;
  if (typeof error !== "object" || error === null) return null;
  const { code, message } = error;
  return errorFromCode(isWattfareErrorCode(code) ? code : "unknown", typeof message === "string" ? message : "", 400);
}
function runConsentRound(round) {
  const popup = openPopup();
  if (!popup) {
    const returnTo = location.pathname + location.search;
    const promise2 = round.begin("redirect", returnTo).then((url) => {
      location.assign(url);
      return new Promise(() => {
      });
    });
    return { promise: promise2, popup: null };
  }
  const promise = new Promise((resolve, reject) => {
    let done = false;
    const finish = (settle) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      removeEventListener("message", onMessage);
      settle();
    };
    function onMessage(event) {
      if (event.origin !== round.origin || event.source !== popup) return;
      const data = event.data;
      if (typeof data !== "object" || data === null) return;
      const message = data;
      if (message.type !== round.messageType) return;
      const error = errorOf(message);
      if (error) {
        const after = round.afterError?.() ?? Promise.resolve();
        after.catch(() => {
        }).finally(() => finish(() => reject(error)));
        return;
      }
      const result = round.accept(message);
      if (result !== void 0) finish(() => resolve(result));
    }
    addEventListener("message", onMessage);
    const timer = setInterval(() => {
      if (!popup.closed) return;
      clearInterval(timer);
      setTimeout(() => {
        if (done) return;
        round.closedWithoutAnswer().then(
          (result) => finish(() => resolve(result)),
          (err) => finish(() => reject(err))
        );
      }, LATE_MESSAGE_MS);
    }, CLOSED_POLL_MS);
    round.begin("popup").then(
      (url) => {
        if (!done && !popup.closed) popup.location.replace(url);
      },
      (err) => {
        popup.close();
        finish(() => reject(err));
      }
    );
  });
  return { promise, popup };
}

// src/http.ts
var CODES = {
  400: "invalid_request",
  401: "auth",
  402: "not_connected",
  413: "invalid_request",
  429: "rate_limited",
  502: "upstream",
  503: "unavailable"
};
async function send(fetcher, url, init) {
  let response;
  try {
    response = await fetcher(url, { credentials: "same-origin", cache: "no-store", ...init });
  } catch (err) {
    throw new WattfareNetworkError(`could not reach ${url}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (response.ok) return response;
  const text2 = await response.text().catch(() => "");
  const typed = toWattfareError(text2);
  const retryAfter = Number(response.headers.get("retry-after")) || null;
  if (typed) throw errorFromCode(typed.code, typed.message, response.status, retryAfter);
  const code = CODES[response.status] ?? "unknown";
  throw new WattfareError(code, `HTTP ${response.status} from ${url}`, response.status, retryAfter);
}

// src/grant.ts
var GRANT_MESSAGE = "wattfare:grant";
var REDIRECT_KEYS = ["wattfare_grant", "expires_at", "requests", "max_usd"];
function readGrant(value) {
  if (typeof value !== "object" || value === null) return null;
  const { grantToken, expiresAt, requests, maxUsd } = value;
  if (typeof grantToken !== "string" || !grantToken.startsWith("wfg_")) return null;
  if (typeof expiresAt !== "number" || typeof requests !== "number" || typeof maxUsd !== "number") return null;
  return { granted: true, grantToken, expiresAt, requests, maxUsd };
}
function checkGrantOptions(options) {
  const { requests, maxUsd } = options ?? {};
  if (typeof requests !== "number" || !Number.isInteger(requests) || requests < 1 || requests > 1e3) {
    throw new WattfareError("invalid_request", "requests must be a whole number from 1 to 1000");
  }
  if (maxUsd !== void 0 && (typeof maxUsd !== "number" || !Number.isFinite(maxUsd) || maxUsd <= 0)) {
    throw new WattfareError("invalid_request", "maxUsd must be a positive number of US dollars");
  }
}
function startGrantRound(deps, options) {
  const round = {
    messageType: GRANT_MESSAGE,
    origin: deps.origin(),
    async begin(mode, returnTo) {
      const body = { publishableKey: deps.publishableKey, requests: options.requests, mode };
      if (options.maxUsd !== void 0) body.maxUsd = options.maxUsd;
      if (returnTo !== void 0) body.returnTo = returnTo;
      const response = await send(deps.fetcher, deps.base() + "/api/v1/grants/consent", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(body)
      });
      const answer = await response.json();
      if (typeof answer?.url !== "string") throw new WattfareError("unknown", "the server gave no consent URL");
      return answer.url;
    },
    accept(data) {
      if (data.grant === null || data.grant === void 0) return { granted: false, reason: "denied" };
      return readGrant(data.grant) ?? void 0;
    },
    closedWithoutAnswer: async () => ({ granted: false, reason: "closed" })
  };
  return runConsentRound(round);
}
function takeRedirectGrant(here) {
  const fragment = new URLSearchParams(here.hash.replace(/^#/, ""));
  const token = fragment.get("wattfare_grant");
  if (!token) return null;
  const grant = readGrant({
    grantToken: token,
    expiresAt: Number(fragment.get("expires_at")),
    requests: Number(fragment.get("requests")),
    maxUsd: Number(fragment.get("max_usd"))
  });
  for (const key of REDIRECT_KEYS) fragment.delete(key);
  const rest = fragment.toString();
  here.hash = rest ? `#${rest}` : "";
  return grant;
}

// src/session.ts
var EARLY_SECONDS = 30;
function jwtClaims(token) {
  try {
    const payload = token.split(".")[1] ?? "";
    const parsed = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
    return typeof parsed === "object" && parsed !== null ? parsed : {};
  } catch {
    return {};
  }
}
var SessionTokens = class {
  constructor(source, appId, fetcher) {
    this.source = source;
    this.appId = appId;
    this.fetcher = fetcher;
  }
  source;
  appId;
  fetcher;
  #cached = null;
  #minting = null;
  /** A token valid for at least another 30 seconds. */
  token() {
    const cached = this.#cached;
    if (cached && cached.expiresAt - EARLY_SECONDS > Date.now() / 1e3) return Promise.resolve(cached.token);
    this.#minting ??= this.#mint().then((fresh) => {
      this.#cached = fresh;
      return fresh.token;
    }).finally(() => {
      this.#minting = null;
    });
    return this.#minting;
  }
  /** Forget the cached token (the server refused it: expired or revoked early). */
  forget() {
    this.#cached = null;
  }
  async #mint() {
    let value;
    if (typeof this.source === "string") {
      const response = await send(this.fetcher, this.source, { method: "POST", headers: { accept: "application/json" } });
      const text2 = (await response.text()).trim();
      try {
        value = JSON.parse(text2);
      } catch {
        value = text2;
      }
    } else {
      value = await this.source();
    }
    const { token, expiresAt } = typeof value === "object" && value !== null ? value : { token: value, expiresAt: void 0 };
    if (typeof token !== "string" || !token) throw new WattfareAuthError("the session source gave no token");
    const claims = jwtClaims(token);
    if (typeof claims.app === "string" && claims.app !== this.appId) {
      throw new WattfareAuthError("the session token is for another app than the publishable key");
    }
    const expires = Number(expiresAt) || Number(claims.exp) || Date.now() / 1e3 + EARLY_SECONDS + 60;
    return { token, expiresAt: expires };
  }
};
function checkSessionSource(source) {
  if (!(typeof source === "string" && source) && typeof source !== "function") {
    throw new WattfareError("invalid_request", "session must be a route path or a function returning a token");
  }
}

// src/status.ts
var MICROS = 1e6;
var micros = (usd2) => Math.round(usd2 * MICROS);
var usd = (amount) => Math.max(0, amount) / MICROS;
var num = (value) => typeof value === "number" && Number.isFinite(value) ? value : null;
function readStatus(value) {
  if (typeof value !== "object" || value === null) return null;
  const raw = value;
  const monthly = num(raw.monthlyUsd);
  const spent = num(raw.spentUsd) ?? 0;
  const reportedRemaining = num(raw.remainingUsd);
  if (typeof raw.connected !== "boolean" || typeof raw.status !== "string" || monthly === null) return null;
  if (reportedRemaining === null) return null;
  const cap = micros(monthly);
  const charged = micros(spent);
  const connected = raw.connected;
  let held = num(raw.heldUsd);
  let available = num(raw.availableUsd);
  if (held === null) {
    held = connected ? usd(cap - charged - micros(reportedRemaining)) : 0;
    available ??= reportedRemaining;
  }
  const remaining = connected ? usd(cap - charged) : 0;
  return {
    connected,
    status: raw.status,
    appUserId: typeof raw.appUserId === "string" ? raw.appUserId : "",
    monthlyUsd: monthly,
    spentUsd: spent,
    heldUsd: held,
    remainingUsd: remaining,
    availableUsd: available ?? (connected ? usd(cap - charged - micros(held)) : 0),
    periodStart: typeof raw.periodStart === "string" ? raw.periodStart : "",
    periodEnd: typeof raw.periodEnd === "string" ? raw.periodEnd : "",
    authority: typeof raw.authority === "string" ? raw.authority : null
  };
}
function notConnectedStatus(previous) {
  return {
    appUserId: "",
    periodStart: "",
    periodEnd: "",
    ...previous,
    connected: false,
    status: "not_connected",
    monthlyUsd: 0,
    spentUsd: 0,
    heldUsd: 0,
    remainingUsd: 0,
    availableUsd: 0,
    authority: null
  };
}
function formatUsd(amount) {
  const cents = Math.floor(Math.round(amount * MICROS) / 1e4);
  return `$${(cents / 100).toFixed(2)}`;
}

// src/usage.ts
var int = (value) => typeof value === "number" && Number.isInteger(value) ? value : null;
var text = (value) => typeof value === "string" ? value : null;
function readReceipt(value) {
  if (typeof value !== "object" || value === null) return null;
  const raw = value;
  const id = text(raw.id);
  const createdAt = int(raw.createdAt);
  const costMicros = int(raw.costMicros);
  const costUsd = text(raw.costUsd);
  if (id === null || createdAt === null || costMicros === null || costUsd === null) return null;
  return {
    id,
    createdAt,
    settledAt: int(raw.settledAt),
    kind: text(raw.kind) ?? "",
    model: text(raw.model) ?? "",
    tokensIn: int(raw.tokensIn),
    tokensOut: int(raw.tokensOut),
    costMicros,
    costUsd,
    costSource: text(raw.costSource) ?? "estimated"
  };
}
function readUsagePage(value) {
  if (typeof value !== "object" || value === null) return null;
  const raw = value;
  if (!Array.isArray(raw.data) || typeof raw.period !== "string") return null;
  const data = [];
  for (const row of raw.data) {
    const receipt = readReceipt(row);
    if (!receipt) return null;
    data.push(receipt);
  }
  const nextCursor = text(raw.nextCursor);
  return { period: raw.period, data, nextCursor, hasMore: nextCursor !== null };
}
function formatReceiptUsd(receipt) {
  return `$${receipt.costUsd}`;
}

// src/create-client.ts
var PUBLISHABLE_KEY = /^pk_(live|test)_([A-Za-z0-9]+)$/;
var FOCUS_REFRESH_GAP_MS = 1e3;
var hasWindow = () => typeof window !== "undefined" && typeof document !== "undefined";
function createClient(config, defaultBaseURL) {
  const { publishableKey, session } = config ?? {};
  const key = typeof publishableKey === "string" ? PUBLISHABLE_KEY.exec(publishableKey) : null;
  if (!key?.[2]) throw new WattfareError("invalid_request", "publishableKey must look like pk_live_… or pk_test_…");
  if (session !== void 0) checkSessionSource(session);
  const fetcher = config.fetch ?? ((input, init) => fetch(input, init));
  const tokens = session === void 0 ? null : new SessionTokens(session, key[2], fetcher);
  let resolvedBase = null;
  const base = () => {
    if (resolvedBase) return resolvedBase;
    const wanted = config.baseURL || defaultBaseURL;
    const absolute = typeof location === "undefined" ? wanted : new URL(wanted, location.href).href;
    return resolvedBase = absolute.replace(/\/+$/, "");
  };
  const consentOrigin = () => new URL(config.consentURL || base(), location.href).origin;
  const statusListeners = /* @__PURE__ */ new Set();
  const stateListeners = /* @__PURE__ */ new Set();
  let state = { status: null, loading: false, error: null };
  let reads = 0;
  let shown = 0;
  let inFlight = 0;
  let pending = null;
  let redirectResult = null;
  let redirectGrant = null;
  let pendingGrant = null;
  function setState(change) {
    const next = { ...state, ...change };
    next.loading = inFlight > 0 && next.status === null;
    if (next.status === state.status && next.error === state.error && next.loading === state.loading) return;
    state = next;
    for (const listener of [...stateListeners]) listener();
  }
  function publish(status, order) {
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
  async function track(action) {
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
  async function api(method, path, body, retry = true) {
    if (tokens === null) {
      throw new WattfareError("invalid_request", "this client was made without `session`: it can only requestGrant()");
    }
    const headers = { authorization: `Bearer ${await tokens.token()}`, accept: "application/json" };
    if (body) headers["content-type"] = "application/json";
    try {
      const init = { method, headers };
      if (body) init.body = JSON.stringify(body);
      const response = await send(fetcher, base() + path, init);
      return response.status === 204 ? null : await response.json();
    } catch (err) {
      if (!(err instanceof WattfareError) || err.code !== "auth" || !retry) throw err;
      tokens.forget();
      return api(method, path, body, false);
    }
  }
  function statusFrom(value) {
    const status = readStatus(value);
    if (!status) throw new WattfareError("unknown", "the server answered something that is not a ConnectionStatus");
    return status;
  }
  function refresh() {
    const order = ++reads;
    return track(async () => publish(statusFrom(await api("GET", "/api/v1/connections")), order));
  }
  async function usage(options) {
    const query = new URLSearchParams();
    if (options?.cursor) query.set("cursor", options.cursor);
    if (options?.limit !== void 0) query.set("limit", String(options.limit));
    const suffix = query.toString() ? `?${query.toString()}` : "";
    const page = readUsagePage(await track(() => api("GET", `/api/v1/usage${suffix}`)));
    if (!page) throw new WattfareError("unknown", "the server answered something that is not a usage page");
    return page;
  }
  function connect(options) {
    if (pending && !pending.popup.closed) {
      pending.popup.focus();
      return pending.promise;
    }
    pending = null;
    const monthlyUsd = typeof options?.monthlyUsd === "number" ? options.monthlyUsd : void 0;
    const round = {
      messageType: "wattfare:connect",
      origin: consentOrigin(),
      async begin(mode, returnTo) {
        const body = { mode };
        if (monthlyUsd !== void 0) body.monthlyUsd = monthlyUsd;
        if (returnTo !== void 0) body.returnTo = returnTo;
        const answer = await track(() => api("POST", "/api/v1/consent", body));
        if (typeof answer?.url !== "string") throw new WattfareError("unknown", "the server gave no consent URL");
        return answer.url;
      },
      accept(data) {
        const status = readStatus(data.status);
        return status ? publish(status, ++reads) : void 0;
      },
      closedWithoutAnswer: () => refresh().catch(() => publish(notConnectedStatus(state.status), ++reads)),
      afterError: refresh
    };
    const opened = runConsentRound(round);
    const promise = opened.promise.finally(() => {
      if (pending?.promise === promise) pending = null;
    });
    if (opened.popup) pending = { popup: opened.popup, promise };
    return promise;
  }
  function requestGrant(options) {
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
  let lastFocusRefresh = 0;
  const onReturn = () => {
    if (document.visibilityState === "hidden" || pending || tokens === null) return;
    const now = Date.now();
    if (now - lastFocusRefresh < FOCUS_REFRESH_GAP_MS) return;
    lastFocusRefresh = now;
    refresh().catch(() => {
    });
  };
  let watching = false;
  function watchFocus() {
    const wanted = config.refreshOnFocus !== false && hasWindow() && statusListeners.size + stateListeners.size > 0;
    if (wanted === watching) return;
    watching = wanted;
    const method = wanted ? "addEventListener" : "removeEventListener";
    window[method]("focus", onReturn);
    document[method]("visibilitychange", onReturn);
  }
  const client = {
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
      if (typed && (isNotConnected(typed) || isBudgetExceeded(typed))) refresh().catch(() => {
      });
      return typed;
    }
  };
  if (hasWindow()) {
    const here = new URL(location.href);
    const result = here.searchParams.get("wattfare");
    if (result === "connected" || result === "granted" || result === "denied" || result === "error") {
      redirectResult = result;
      here.searchParams.delete("wattfare");
      redirectGrant = takeRedirectGrant(here);
      history.replaceState(history.state, "", here.pathname + here.search + here.hash);
      if (tokens !== null && result !== "granted") queueMicrotask(() => refresh().catch(() => {
      }));
    }
  }
  return client;
}

// src/metadata.ts
var num2 = (value) => typeof value === "number" && Number.isFinite(value) ? value : null;
function budgetOf(metadata) {
  if (typeof metadata !== "object" || metadata === null) return null;
  const wattfare = metadata.wattfare;
  if (typeof wattfare !== "object" || wattfare === null) return null;
  const raw = wattfare;
  const spentUsd = num2(raw.spentUsd);
  const monthlyUsd = num2(raw.monthlyUsd);
  const remainingUsd = num2(raw.remainingUsd);
  if (spentUsd === null || monthlyUsd === null || remainingUsd === null) return null;
  return { costUsd: num2(raw.costUsd), spentUsd, monthlyUsd, remainingUsd };
}

// src/client.ts
function createWattfare(config) {
  return createClient(config, "/wattfare");
}

// src/element.ts
var TEMPLATE = `<style>
:host { display: inline-block; --wattfare-accent: #2952cc; --wattfare-focus: #f0b400; }
:host([hidden]), [hidden] { display: none !important; }
div { display: inline-flex; align-items: center; gap: .6rem; flex-wrap: wrap; }
button { font: inherit; font-weight: 600; border-radius: 8px; padding: .5rem .95rem; cursor: pointer;
  border: 1px solid var(--wattfare-accent); background: var(--wattfare-accent); color: #fff; }
[part=disconnect] { background: transparent; color: var(--wattfare-accent); font-weight: 500; padding: .3rem .7rem; }
button:focus-visible { outline: 3px solid var(--wattfare-focus); outline-offset: 2px; }
[part=label] { font-variant-numeric: tabular-nums; }
.error { color: #b3261e; }
progress { width: 8rem; height: .6rem; appearance: none; border: 0; border-radius: 999px; overflow: hidden; background: #e3e7ef; }
::-webkit-progress-bar { background: #e3e7ef; }
::-webkit-progress-value { background: var(--wattfare-accent); }
::-moz-progress-bar { background: var(--wattfare-accent); }
[part=receipts] { border-collapse: collapse; font-size: .85em; font-variant-numeric: tabular-nums; margin-top: .4rem; }
[part=receipts] th, [part=receipts] td { text-align: left; padding: .15rem .6rem .15rem 0; }
[part=receipts] td.cost { text-align: right; }
</style>
<div part="root">
  <button type="button" part="button" hidden>Connect AI budget</button>
  <span part="label" aria-live="polite"></span>
  <progress part="bar" aria-label="AI budget left" hidden></progress>
  <button type="button" part="receipts-toggle" aria-expanded="false" hidden>Receipts</button>
  <button type="button" part="disconnect" hidden>Disconnect</button>
</div>
<table part="receipts" hidden>
  <caption>This month's requests</caption>
  <thead><tr><th scope="col">When</th><th scope="col">Model</th><th scope="col">Tokens in / out</th><th scope="col">Cost</th></tr></thead>
  <tbody></tbody>
</table>`;
function defineWattfareConnect(tag = "wattfare-connect", create = createWattfare) {
  const existing = customElements.get(tag);
  if (existing) return existing;
  class Element extends HTMLElement {
    static observedAttributes = ["publishable-key", "session", "base-url"];
    #client = null;
    #unsubscribe = null;
    #ui;
    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = TEMPLATE;
      const part = (name) => root.querySelector(`[part=${name}]`);
      this.#ui = {
        button: part("button"),
        label: part("label"),
        bar: part("bar"),
        disconnect: part("disconnect"),
        receiptsToggle: part("receipts-toggle"),
        receipts: part("receipts")
      };
      this.#ui.button.addEventListener("click", () => void this.connect());
      this.#ui.disconnect.addEventListener("click", () => void this.disconnect());
      this.#ui.receiptsToggle.addEventListener("click", () => {
        if (this.#ui.receipts.hidden) void this.showReceipts();
        else this.#hideReceipts();
      });
    }
    get wattfare() {
      if (!this.#client) {
        const config = {
          publishableKey: this.getAttribute("publishable-key") ?? "",
          session: this.getAttribute("session") ?? ""
        };
        const baseURL = this.getAttribute("base-url");
        if (baseURL) config.baseURL = baseURL;
        this.#client = create(config);
      }
      return this.#client;
    }
    set wattfare(client) {
      this.#detach();
      this.#client = client;
      if (this.isConnected) this.#attach();
    }
    get status() {
      return this.#client?.current ?? null;
    }
    connectedCallback() {
      this.#attach();
    }
    disconnectedCallback() {
      this.#detach();
    }
    attributeChangedCallback(_name, old, value) {
      if (old === value || !this.#client) return;
      this.wattfare = null;
    }
    refresh() {
      return this.#guard(() => this.#require().refresh());
    }
    disconnect() {
      return this.#guard(() => this.#require().disconnect());
    }
    connect() {
      const monthly = this.getAttribute("monthly-usd");
      return this.#guard(() => this.#require().connect(monthly ? { monthlyUsd: Number(monthly) } : {}));
    }
    async showReceipts() {
      let page;
      try {
        page = await this.#require().usage({ limit: 50 });
      } catch (err) {
        return this.#fail(err);
      }
      const { receipts, receiptsToggle } = this.#ui;
      const body = receipts.tBodies[0];
      body.replaceChildren(
        ...page.data.map((receipt) => {
          const row = document.createElement("tr");
          const when = new Date(receipt.createdAt * 1e3).toLocaleString(void 0, { timeZone: "UTC" });
          const tokens = receipt.tokensIn === null ? "–" : `${receipt.tokensIn} / ${receipt.tokensOut ?? 0}`;
          const cost = formatReceiptUsd(receipt) + (receipt.costSource === "estimated" ? " (est.)" : "");
          for (const [value, cls] of [[when, ""], [receipt.model, ""], [tokens, ""], [cost, "cost"]]) {
            const cell = document.createElement("td");
            cell.textContent = value;
            if (cls) cell.className = cls;
            row.append(cell);
          }
          return row;
        })
      );
      receipts.hidden = false;
      receiptsToggle.setAttribute("aria-expanded", "true");
      this.dispatchEvent(new CustomEvent("wattfare-receipts", { detail: page, bubbles: true, composed: true }));
      return page;
    }
    #hideReceipts() {
      this.#ui.receipts.hidden = true;
      this.#ui.receiptsToggle.setAttribute("aria-expanded", "false");
    }
    #require() {
      const client = this.wattfare;
      if (!client) throw new WattfareError("invalid_request", "no client");
      return client;
    }
    #attach() {
      if (this.#unsubscribe) return;
      let client;
      try {
        client = this.#require();
      } catch (err) {
        this.#fail(err);
        return;
      }
      this.#unsubscribe = client.subscribe((status) => this.#render(status));
      if (!client.current) void this.refresh();
    }
    #detach() {
      this.#unsubscribe?.();
      this.#unsubscribe = null;
    }
    #guard(action) {
      try {
        return action().catch((err) => this.#fail(err));
      } catch (err) {
        return Promise.resolve(this.#fail(err));
      }
    }
    #fail(err) {
      const error = toWattfareError(err) ?? new WattfareError("unknown", String(err));
      const { button, label } = this.#ui;
      if (!this.status?.connected) button.hidden = false;
      label.textContent = error.userMessage;
      label.classList.add("error");
      console.warn(`wattfare: ${error.code}: ${error.message}`);
      this.dispatchEvent(new CustomEvent("wattfare-error", { detail: error, bubbles: true, composed: true }));
      return null;
    }
    #render(status) {
      const { button, label, bar, disconnect, receiptsToggle } = this.#ui;
      const connected = status.connected;
      receiptsToggle.hidden = !connected || !this.hasAttribute("receipts");
      if (!connected) this.#hideReceipts();
      const focused = this.shadowRoot?.activeElement;
      button.textContent = status.status === "funding_invalid" ? "Reconnect AI budget" : "Connect AI budget";
      button.hidden = connected;
      bar.hidden = disconnect.hidden = !connected;
      const text2 = connected ? `${formatUsd(status.remainingUsd)} left of ${formatUsd(status.monthlyUsd)}` : "";
      label.classList.remove("error");
      if (label.textContent !== text2) label.textContent = text2;
      if (connected) {
        bar.max = status.monthlyUsd || 1;
        bar.value = Math.min(Math.max(Number(formatUsd(status.remainingUsd).slice(1)), 0), bar.max);
        bar.setAttribute("aria-valuetext", text2);
        const end = status.periodEnd && new Date(status.periodEnd).toLocaleDateString(void 0, { timeZone: "UTC" });
        bar.title = `${formatUsd(status.spentUsd)} spent` + (end ? ` · resets ${end}` : "");
      }
      if (focused === button && connected) disconnect.focus();
      if (focused === disconnect && !connected) button.focus();
      this.toggleAttribute("connected", connected);
      this.dispatchEvent(new CustomEvent("wattfare-change", { detail: status, bubbles: true, composed: true }));
    }
  }
  customElements.define(tag, Element);
  return Element;
}

// src/browser.ts
var MODULE_BASE = new URL(".", import.meta.url).href;
function createWattfare2(config) {
  return createClient(config, MODULE_BASE);
}
var WattfareConnectElement = typeof customElements === "undefined" ? void 0 : defineWattfareConnect("wattfare-connect", createWattfare2);
export {
  WattfareAuthError,
  WattfareBudgetExceededError,
  WattfareConnectElement,
  WattfareError,
  WattfareFundingError,
  WattfareGrantError,
  WattfareNetworkError,
  WattfareNotConnectedError,
  WattfareRateLimitError,
  budgetOf,
  createWattfare2 as createWattfare,
  defineWattfareConnect,
  errorFromCode,
  formatReceiptUsd,
  formatUsd,
  isBudgetExceeded,
  isNotConnected,
  readStatus,
  readUsagePage,
  toWattfareError
};
