// Just enough of a browser for the client's unit tests under Node: a page on http://app.test with
// window.open, message events, focus and visibility events, and a fetch that answers like the embed.

export const ORIGIN = "http://app.test";
export const PUBLISHABLE_KEY = "pk_test_acme";

export interface FakePopup {
  closed: boolean;
  url: string | null;
  focused: number;
  location: { replace(url: string): void };
  focus(): void;
  close(): void;
}

export interface Call {
  method: string;
  url: string;
  body: unknown;
  authorization: string | null;
}

const jwt = (claims: object): string => `x.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.y`;

export class FakeBrowser {
  readonly calls: Call[] = [];
  readonly popups: FakePopup[] = [];
  readonly assigned: string[] = [];
  blockPopups = false;
  connected = false;
  monthlyUsd = 10;
  spentUsd = 0;
  mints = 0;
  #targets = { window: new EventTarget(), document: new EventTarget() };
  visibilityState: "visible" | "hidden" = "visible";

  constructor() {
    const target = this.#targets.window;
    const doc = this.#targets.document;
    const self = this;
    Object.assign(globalThis, {
      window: globalThis,
      screenX: 0,
      screenY: 0,
      outerWidth: 1200,
      outerHeight: 900,
      location: {
        href: `${ORIGIN}/chat?tab=1`,
        pathname: "/chat",
        search: "?tab=1",
        hash: "",
        assign: (url: string) => self.assigned.push(url),
      },
      history: { state: null, replaceState: () => {} },
      addEventListener: target.addEventListener.bind(target),
      removeEventListener: target.removeEventListener.bind(target),
      dispatchEvent: target.dispatchEvent.bind(target),
      document: {
        get visibilityState() {
          return self.visibilityState;
        },
        addEventListener: doc.addEventListener.bind(doc),
        removeEventListener: doc.removeEventListener.bind(doc),
      },
      open: () => {
        if (this.blockPopups) return null;
        const popup: FakePopup = {
          closed: false,
          url: null,
          focused: 0,
          location: { replace: (url: string) => void (popup.url = url) },
          focus: () => void (popup.focused += 1),
          close: () => void (popup.closed = true),
        };
        this.popups.push(popup);
        return popup;
      },
    });
  }

  status(): object {
    return {
      connected: this.connected,
      status: this.connected ? "active" : "not_connected",
      appUserId: "ada",
      monthlyUsd: this.connected ? this.monthlyUsd : 0,
      spentUsd: this.connected ? this.spentUsd : 0,
      remainingUsd: this.connected ? this.monthlyUsd - this.spentUsd : 0,
      periodStart: "2026-12-01T00:00:00Z",
      periodEnd: "2027-01-01T00:00:00Z",
      authority: this.connected ? "dev" : null,
    };
  }

  /** GET /api/v1/usage answers, by the cursor asked for ("" for the first page). */
  usagePages: Record<string, unknown> = {};
  usageQueries: string[] = [];

  /** The embed's answers, as `fetch`. */
  fetch = async (input: string, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    const method = init?.method ?? "GET";
    const path = new URL(input, ORIGIN).pathname;
    this.calls.push({
      method,
      url: path,
      body: typeof init?.body === "string" ? JSON.parse(init.body) : null,
      authorization: headers.get("authorization"),
    });
    const json = (value: unknown, status = 200) =>
      new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
    if (path === "/session") {
      this.mints += 1;
      return json({ token: jwt({ app: "acme", exp: Date.now() / 1000 + 600 }), expiresAt: Date.now() / 1000 + 600 });
    }
    if (path === "/wattfare/api/v1/connections" && method === "GET") return json(this.status());
    if (path === "/wattfare/api/v1/connections" && method === "DELETE") {
      this.connected = false;
      return new Response(null, { status: 204 });
    }
    if (path === "/wattfare/api/v1/grants/consent") {
      return json({ url: `${ORIGIN}/wattfare/dev/consent?state=g${this.calls.length}` });
    }
    if (path === "/wattfare/api/v1/usage") {
      const query = new URL(input, ORIGIN).searchParams;
      this.usageQueries.push(query.toString());
      return json(this.usagePages[query.get("cursor") ?? ""] ?? { period: "2026-12", data: [], nextCursor: null });
    }
    if (path === "/wattfare/api/v1/consent") return json({ url: `${ORIGIN}/wattfare/dev/consent?state=s${this.calls.length}` });
    return json({ error: { code: "invalid_request", message: `no route ${path}` } }, 400);
  };

  /** The callback page in `popup` posting its result to the opener. */
  post(popup: FakePopup, data: unknown, origin = ORIGIN): void {
    this.#targets.window.dispatchEvent(Object.assign(new Event("message"), { origin, source: popup, data }));
  }

  returnToTab(): void {
    this.#targets.document.dispatchEvent(new Event("visibilitychange"));
  }
}

export const tick = (ms = 0): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick(5);
  }
}
