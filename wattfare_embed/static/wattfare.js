// wattfare.js: the browser client of wattfare_embed (an ES module, no build step): createWattfare()
// and <wattfare-connect>. The browser holds only a short-lived session token, never the secret key.

const MODULE_BASE = new URL(".", import.meta.url).href;
const EARLY = 30; // seconds before expiry at which a cached session token is renewed

export class WattfareError extends Error {
  constructor(code, message, status = 0) {
    super(message || code);
    this.name = "WattfareError";
    this.code = code;
    this.status = status;
  }
  toJSON() { return { error: { code: this.code, message: this.message } }; }
}

export const isNotConnected = (e) => e?.code === "not_connected" || e?.code === "funding_invalid";
export const isBudgetExceeded = (e) => e?.code === "budget_exceeded";

const CODES = { 400: "invalid_request", 401: "auth", 402: "not_connected", 429: "rate_limited", 502: "upstream" };

async function send(url, init) {
  let res;
  try {
    res = await fetch(url, { credentials: "same-origin", cache: "no-store", ...init });
  } catch (err) {
    throw new WattfareError("network", `could not reach ${url}: ${err?.message || err}`);
  }
  if (res.ok) return res;
  let error = {};
  try {
    error = (await res.json()).error || {};
  } catch {} // not the {"error": {…}} shape
  throw new WattfareError(error.code || CODES[res.status] || "unknown", error.message || `HTTP ${res.status}`, res.status);
}

function jwtClaims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))) || {};
  } catch {
    return {}; // not a JWT: the server is the judge
  }
}

const isStatus = (s) =>
  !!s && typeof s === "object" && typeof s.connected === "boolean" && typeof s.status === "string" &&
  typeof s.monthlyUsd === "number" && typeof s.remainingUsd === "number";

/** `session`: a route answering a POST with `{token}` or the raw token, or a function returning a token. */
export function createWattfare({ publishableKey, session, baseURL } = {}) {
  const key = typeof publishableKey === "string" && /^pk_(live|test)_([A-Za-z0-9]+)$/.exec(publishableKey);
  if (!key) throw new WattfareError("invalid_request", "publishableKey must look like pk_live_… or pk_test_…");
  if (typeof session !== "string" && typeof session !== "function") {
    throw new WattfareError("invalid_request", "session must be a route path or a function returning a token");
  }
  const base = new URL(baseURL || MODULE_BASE, location.href).href.replace(/\/+$/, "");
  const origin = new URL(base).origin; // the only origin whose messages are believed
  const listeners = new Set();
  let cached = null; // {token, expiresAt}
  let minting = null;
  let current = null;
  let reads = 0; // every status gets a number, so a slow old read never overwrites a newer one
  let shown = 0;
  let pending = null; // the connect() in progress

  async function mint() {
    let value = typeof session === "function" ? await session() : null;
    if (typeof session === "string") {
      value = (await (await send(session, { method: "POST", headers: { accept: "application/json" } })).text()).trim();
      try {
        value = JSON.parse(value);
      } catch {} // a raw token
    }
    const { token, expiresAt } = value && typeof value === "object" ? value : { token: value };
    if (typeof token !== "string" || !token) throw new WattfareError("auth", "the session source gave no token", 401);
    const claims = jwtClaims(token);
    if (typeof claims.app === "string" && claims.app !== key[2]) {
      throw new WattfareError("auth", "the session token is for another app than the publishable key", 401);
    }
    return { token, expiresAt: Number(expiresAt) || Number(claims.exp) || Date.now() / 1000 + EARLY + 60 };
  }

  function sessionToken() {
    if (cached && cached.expiresAt - EARLY > Date.now() / 1000) return Promise.resolve(cached.token);
    minting ||= mint()
      .then((fresh) => (cached = fresh).token)
      .finally(() => (minting = null));
    return minting;
  }

  async function api(method, path, body, retry = true) {
    const headers = { authorization: `Bearer ${await sessionToken()}`, accept: "application/json" };
    if (body) headers["content-type"] = "application/json";
    try {
      const res = await send(base + path, { method, headers, body: body && JSON.stringify(body) });
      return res.status === 204 ? null : res.json();
    } catch (err) {
      if (err.code !== "auth" || !retry) throw err;
      cached = null; // expired or revoked early: one fresh token, one more try
      return api(method, path, body, false);
    }
  }

  function publish(status, order) {
    if (order < shown) return status;
    shown = order;
    current = status;
    for (const listener of [...listeners]) {
      try {
        listener(status);
      } catch (err) {
        queueMicrotask(() => { throw err; });
      }
    }
    return status;
  }

  async function refresh() {
    const order = ++reads;
    return publish(await api("GET", "/api/v1/connections"), order);
  }

  const notConnected = () =>
    ({ ...current, connected: false, status: "not_connected", monthlyUsd: 0, spentUsd: 0, remainingUsd: 0, authority: null });

  function connect({ monthlyUsd } = {}) {
    if (pending) {
      pending.popup.focus();
      return pending.promise;
    }
    // Opened now, inside the click: a window opened after an await counts as an unwanted popup.
    let popup = null;
    try {
      const left = Math.max(0, screenX + (outerWidth - 520) / 2);
      const top = Math.max(0, screenY + (outerHeight - 700) / 2);
      popup = window.open("about:blank", "wattfare-consent", `popup,width=520,height=700,left=${left},top=${top}`);
    } catch {} // treated as blocked
    if (popup?.closed) popup = null; // some blockers hand back a window that is already closed
    const body = { mode: popup ? "popup" : "redirect" };
    if (monthlyUsd != null) body.monthlyUsd = monthlyUsd;
    if (!popup) {
      // Blocked: the whole tab goes to the consent page and comes back with ?wattfare=… added.
      body.returnTo = location.pathname + location.search;
      return api("POST", "/api/v1/consent", body).then(({ url }) => {
        location.assign(url);
        return new Promise(() => {}); // this page is going away
      });
    }
    const promise = new Promise((resolve, reject) => {
      let done = false;
      const finish = (settle, value) => {
        if (done) return;
        done = true;
        clearInterval(timer);
        removeEventListener("message", onMessage);
        pending = null;
        settle(value);
      };
      function onMessage({ origin: from, source, data }) {
        if (from !== origin || source !== popup) return;
        if (!data || typeof data !== "object" || data.type !== "wattfare:connect" || !isStatus(data.status)) return;
        if (data.error && typeof data.error === "object") {
          const error = new WattfareError(String(data.error.code || "unknown"), String(data.error.message || ""), 400);
          refresh().catch(() => {}).finally(() => finish(reject, error));
        } else {
          finish(resolve, publish(data.status, ++reads));
        }
      }
      addEventListener("message", onMessage);
      // Closed with no message (closed early, or the message was lost): the server knows the outcome.
      const timer = setInterval(() => {
        if (!popup.closed) return;
        clearInterval(timer);
        setTimeout(() => done || refresh().then(
          (status) => finish(resolve, status),
          () => finish(resolve, publish(notConnected(), ++reads)),
        ), 150); // a message posted just before closing lands first
      }, 250);
      api("POST", "/api/v1/consent", body).then(
        ({ url }) => done || popup.closed || popup.location.replace(url),
        (err) => {
          popup.close();
          finish(reject, err);
        },
      );
    });
    pending = { popup, promise };
    return promise;
  }

  const client = {
    publishableKey,
    baseURL: base,
    redirectResult: null, // "connected" | "denied" when this page load ends a redirect round trip
    get current() { return current; }, // the last status read, or null
    connect,
    refresh,
    status: refresh,
    async disconnect() {
      await api("DELETE", "/api/v1/connections");
      return refresh();
    },
    /** `listener(status)` on every status read (at once, too, when one is known); returns the unsubscribe. */
    subscribe(listener) {
      listeners.add(listener);
      if (current) listener(current);
      return () => listeners.delete(listener);
    },
    onChange: (listener) => client.subscribe(listener),
  };

  // Back from a redirect round trip: drop ?wattfare=… from the address bar and read the new status.
  const here = new URL(location.href);
  const result = here.searchParams.get("wattfare");
  if (result === "connected" || result === "denied") {
    client.redirectResult = result;
    here.searchParams.delete("wattfare");
    history.replaceState(history.state, "", here.pathname + here.search + here.hash);
    queueMicrotask(() => refresh().catch(() => {}));
  }
  return client;
}

// -- <wattfare-connect> ---------------------------------------------------------------------------

const TEMPLATE = `<style>
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
</style>
<div part="root">
  <button type="button" part="button" hidden>Connect AI budget</button>
  <span part="label" aria-live="polite"></span>
  <progress part="bar" aria-label="AI budget left" hidden></progress>
  <button type="button" part="disconnect" hidden>Disconnect</button>
</div>`;

const dollars = (usd) => `$${usd.toFixed(2)}`;
const floorCents = (usd) => Math.floor(Math.round(usd * 1e6) / 1e4) / 100; // never show more than is left

export class WattfareConnectElement extends HTMLElement {
  static observedAttributes = ["publishable-key", "session", "base-url"];
  #client = null;
  #unsubscribe = null;
  #ui = {};

  constructor() {
    super();
    this.attachShadow({ mode: "open" }).innerHTML = TEMPLATE;
    for (const part of ["button", "label", "bar", "disconnect"]) {
      this.#ui[part] = this.shadowRoot.querySelector(`[part=${part}]`);
    }
    this.#ui.button.addEventListener("click", () => this.connect());
    this.#ui.disconnect.addEventListener("click", () => this.disconnect());
  }

  /** The client (made from the attributes unless one is assigned). */
  get wattfare() {
    return (this.#client ||= createWattfare({
      publishableKey: this.getAttribute("publishable-key"),
      session: this.getAttribute("session") || undefined,
      baseURL: this.getAttribute("base-url") || undefined,
    }));
  }

  set wattfare(client) {
    this.#detach();
    this.#client = client;
    if (this.isConnected) this.#attach();
  }

  get status() { return this.#client?.current ?? null; }
  connectedCallback() { this.#attach(); }
  disconnectedCallback() { this.#detach(); }

  attributeChangedCallback(name, old, value) {
    if (old === value || !this.#client) return;
    this.wattfare = null; // rebuilt from the new attributes
  }

  /** Re-read the status (after each reply, say); resolves with it, or with null after showing the error. */
  refresh() { return this.#guard(() => this.wattfare.refresh()); }
  disconnect() { return this.#guard(() => this.wattfare.disconnect()); }

  /** Open the consent popup; call it from a click. */
  connect() {
    const monthly = this.getAttribute("monthly-usd");
    return this.#guard(() => this.wattfare.connect(monthly ? { monthlyUsd: Number(monthly) } : {}));
  }

  #attach() {
    if (this.#unsubscribe) return;
    const client = this.#guard(() => this.wattfare, true);
    if (!client) return;
    this.#unsubscribe = client.subscribe((status) => this.#render(status));
    if (!client.current) this.refresh();
  }

  #detach() {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  #guard(action, sync = false) {
    const fail = (err) => {
      const { button, label } = this.#ui;
      if (!this.status?.connected) button.hidden = false;
      label.textContent = err?.message || String(err);
      label.classList.add("error");
      this.dispatchEvent(new CustomEvent("wattfare-error", { detail: err, bubbles: true, composed: true }));
      return null;
    };
    try {
      const result = action(); // synchronously: connect() must open its popup inside the click
      return sync ? result : Promise.resolve(result).catch(fail);
    } catch (err) {
      return sync ? fail(err) : Promise.resolve(fail(err));
    }
  }

  #render(status) {
    const { button, label, bar, disconnect } = this.#ui;
    const connected = status.connected === true;
    const focused = this.shadowRoot.activeElement;
    button.textContent = status.status === "funding_invalid" ? "Reconnect AI budget" : "Connect AI budget";
    button.hidden = connected;
    bar.hidden = disconnect.hidden = !connected;
    const left = floorCents(status.remainingUsd);
    const text = connected ? `${dollars(left)} left of ${dollars(status.monthlyUsd)}` : "";
    label.classList.remove("error");
    if (label.textContent !== text) label.textContent = text; // the live region speaks only on change
    if (connected) {
      bar.max = status.monthlyUsd || 1;
      bar.value = Math.min(Math.max(left, 0), bar.max);
      bar.setAttribute("aria-valuetext", text);
      const end = status.periodEnd && new Date(status.periodEnd).toLocaleDateString(undefined, { timeZone: "UTC" });
      bar.title = end ? `Resets ${end}` : "";
    }
    // Keep keyboard focus inside when the focused button disappears.
    if (focused === button && connected) disconnect.focus();
    if (focused === disconnect && !connected) button.focus();
    this.toggleAttribute("connected", connected);
    this.dispatchEvent(new CustomEvent("wattfare-change", { detail: status, bubbles: true, composed: true }));
  }
}

if (globalThis.customElements && !customElements.get("wattfare-connect")) {
  customElements.define("wattfare-connect", WattfareConnectElement);
}
