// <wattfare-connect>: "Connect AI budget" until the user connects, then "$6.40 left of $10.00" with a
// budget bar and Disconnect. The class is made when defined, never at import, so importing this
// module during server-side rendering touches no `HTMLElement`.

import type { WattfareClient, WattfareConfig } from "./create-client.js";
import { createWattfare } from "./client.js";
import { WattfareError, toWattfareError } from "./errors.js";
import { formatUsd, type ConnectionStatus } from "./status.js";
import { formatReceiptUsd, type UsagePage } from "./usage.js";

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

/** What `<wattfare-connect>` adds to `HTMLElement`. */
export interface WattfareConnectElement extends HTMLElement {
  /** The client (made from the attributes unless one is assigned). */
  wattfare: WattfareClient | null;
  readonly status: ConnectionStatus | null;
  /** Re-read the status; resolves with it, or with null after showing the error. */
  refresh(): Promise<ConnectionStatus | null>;
  disconnect(): Promise<ConnectionStatus | null>;
  /** Open the consent popup; call it from a click. */
  connect(): Promise<ConnectionStatus | null>;
  /** Read and show this month's receipts (the list the `receipts` attribute's button opens). */
  showReceipts(): Promise<UsagePage | null>;
}

type Create = (config: WattfareConfig) => WattfareClient;

/**
 * Define `<wattfare-connect>` (once; later calls return the same class). Attributes:
 * `publishable-key`, `session`, `base-url`, `monthly-usd`, `receipts` (a "Receipts" button that lists
 * this month's requests and what each cost). Events: `wattfare-change` (detail: the
 * status) and `wattfare-error` (detail: the typed error).
 */
export function defineWattfareConnect(
  tag = "wattfare-connect",
  create: Create = createWattfare,
): CustomElementConstructor {
  const existing = customElements.get(tag);
  if (existing) return existing;

  class Element extends HTMLElement implements WattfareConnectElement {
    static observedAttributes = ["publishable-key", "session", "base-url"];
    #client: WattfareClient | null = null;
    #unsubscribe: (() => void) | null = null;
    readonly #ui: {
      button: HTMLButtonElement;
      label: HTMLElement;
      bar: HTMLProgressElement;
      disconnect: HTMLButtonElement;
      receiptsToggle: HTMLButtonElement;
      receipts: HTMLTableElement;
    };

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = TEMPLATE;
      const part = <T extends globalThis.Element>(name: string): T => root.querySelector(`[part=${name}]`) as T;
      this.#ui = {
        button: part("button"),
        label: part("label"),
        bar: part("bar"),
        disconnect: part("disconnect"),
        receiptsToggle: part("receipts-toggle"),
        receipts: part("receipts"),
      };
      this.#ui.button.addEventListener("click", () => void this.connect());
      this.#ui.disconnect.addEventListener("click", () => void this.disconnect());
      this.#ui.receiptsToggle.addEventListener("click", () => {
        if (this.#ui.receipts.hidden) void this.showReceipts();
        else this.#hideReceipts();
      });
    }

    get wattfare(): WattfareClient | null {
      if (!this.#client) {
        const config: WattfareConfig = {
          publishableKey: this.getAttribute("publishable-key") ?? "",
          session: this.getAttribute("session") ?? "",
        };
        const baseURL = this.getAttribute("base-url");
        if (baseURL) config.baseURL = baseURL;
        this.#client = create(config);
      }
      return this.#client;
    }

    set wattfare(client: WattfareClient | null) {
      this.#detach();
      this.#client = client;
      if (this.isConnected) this.#attach();
    }

    get status(): ConnectionStatus | null {
      return this.#client?.current ?? null;
    }

    connectedCallback(): void {
      this.#attach();
    }

    disconnectedCallback(): void {
      this.#detach();
    }

    attributeChangedCallback(_name: string, old: string | null, value: string | null): void {
      if (old === value || !this.#client) return;
      this.wattfare = null; // rebuilt from the new attributes
    }

    refresh(): Promise<ConnectionStatus | null> {
      return this.#guard(() => this.#require().refresh());
    }

    disconnect(): Promise<ConnectionStatus | null> {
      return this.#guard(() => this.#require().disconnect());
    }

    connect(): Promise<ConnectionStatus | null> {
      const monthly = this.getAttribute("monthly-usd");
      // Synchronously, inside the click: connect() must open its popup before any await.
      return this.#guard(() => this.#require().connect(monthly ? { monthlyUsd: Number(monthly) } : {}));
    }

    async showReceipts(): Promise<UsagePage | null> {
      let page: UsagePage;
      try {
        page = await this.#require().usage({ limit: 50 });
      } catch (err) {
        return this.#fail(err);
      }
      const { receipts, receiptsToggle } = this.#ui;
      const body = receipts.tBodies[0]!;
      body.replaceChildren(
        ...page.data.map((receipt) => {
          const row = document.createElement("tr");
          const when = new Date(receipt.createdAt * 1000).toLocaleString(undefined, { timeZone: "UTC" });
          const tokens =
            receipt.tokensIn === null ? "–" : `${receipt.tokensIn} / ${receipt.tokensOut ?? 0}`;
          const cost = formatReceiptUsd(receipt) + (receipt.costSource === "estimated" ? " (est.)" : "");
          for (const [value, cls] of [[when, ""], [receipt.model, ""], [tokens, ""], [cost, "cost"]] as const) {
            const cell = document.createElement("td");
            cell.textContent = value; // text, never markup: model names come from the upstream
            if (cls) cell.className = cls;
            row.append(cell);
          }
          return row;
        }),
      );
      receipts.hidden = false;
      receiptsToggle.setAttribute("aria-expanded", "true");
      this.dispatchEvent(new CustomEvent("wattfare-receipts", { detail: page, bubbles: true, composed: true }));
      return page;
    }

    #hideReceipts(): void {
      this.#ui.receipts.hidden = true;
      this.#ui.receiptsToggle.setAttribute("aria-expanded", "false");
    }

    #require(): WattfareClient {
      const client = this.wattfare;
      if (!client) throw new WattfareError("invalid_request", "no client");
      return client;
    }

    #attach(): void {
      if (this.#unsubscribe) return;
      let client: WattfareClient;
      try {
        client = this.#require();
      } catch (err) {
        this.#fail(err);
        return;
      }
      this.#unsubscribe = client.subscribe((status) => this.#render(status));
      if (!client.current) void this.refresh();
    }

    #detach(): void {
      this.#unsubscribe?.();
      this.#unsubscribe = null;
    }

    #guard(action: () => Promise<ConnectionStatus>): Promise<ConnectionStatus | null> {
      try {
        return action().catch((err: unknown) => this.#fail(err));
      } catch (err) {
        return Promise.resolve(this.#fail(err));
      }
    }

    #fail(err: unknown): null {
      const error = toWattfareError(err) ?? new WattfareError("unknown", String(err));
      const { button, label } = this.#ui;
      if (!this.status?.connected) button.hidden = false;
      label.textContent = error.userMessage; // for the person; the developer's message goes to the console
      label.classList.add("error");
      console.warn(`wattfare: ${error.code}: ${error.message}`);
      this.dispatchEvent(new CustomEvent("wattfare-error", { detail: error, bubbles: true, composed: true }));
      return null;
    }

    #render(status: ConnectionStatus): void {
      const { button, label, bar, disconnect, receiptsToggle } = this.#ui;
      const connected = status.connected;
      receiptsToggle.hidden = !connected || !this.hasAttribute("receipts");
      if (!connected) this.#hideReceipts();
      const focused = this.shadowRoot?.activeElement;
      button.textContent = status.status === "funding_invalid" ? "Reconnect AI budget" : "Connect AI budget";
      button.hidden = connected;
      bar.hidden = disconnect.hidden = !connected;
      // Spent, never held: a reply in flight does not move the bar until it is charged.
      const text = connected ? `${formatUsd(status.remainingUsd)} left of ${formatUsd(status.monthlyUsd)}` : "";
      label.classList.remove("error");
      if (label.textContent !== text) label.textContent = text; // the live region speaks only on change
      if (connected) {
        bar.max = status.monthlyUsd || 1;
        bar.value = Math.min(Math.max(Number(formatUsd(status.remainingUsd).slice(1)), 0), bar.max);
        bar.setAttribute("aria-valuetext", text);
        const end = status.periodEnd && new Date(status.periodEnd).toLocaleDateString(undefined, { timeZone: "UTC" });
        bar.title = `${formatUsd(status.spentUsd)} spent` + (end ? ` · resets ${end}` : "");
      }
      // Keep keyboard focus inside when the focused button disappears.
      if (focused === button && connected) disconnect.focus();
      if (focused === disconnect && !connected) button.focus();
      this.toggleAttribute("connected", connected);
      this.dispatchEvent(new CustomEvent("wattfare-change", { detail: status, bubbles: true, composed: true }));
    }
  }

  customElements.define(tag, Element);
  return Element;
}
