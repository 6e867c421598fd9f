// Server-side rendering: the published entry points import under Node with no DOM at all, define
// nothing browser-only, and <WattfareProvider> + useWattfare() render (loading, not yet read).

import assert from "node:assert/strict";
import { test } from "node:test";

import { createElement } from "react";
import { renderToString } from "react-dom/server";

type ReactEntry = typeof import("../src/react.js");
type ElementEntry = typeof import("../src/element.js");

// Through the package's own name: the "exports" map and the built files, as an app imports them.
const load = <T>(specifier: string): Promise<T> => import(specifier) as Promise<T>;

test("importing every entry point on a server touches no browser global", async () => {
  assert.equal(typeof (globalThis as { HTMLElement?: unknown }).HTMLElement, "undefined");
  assert.equal(typeof (globalThis as { window?: unknown }).window, "undefined");
  const client = await load<typeof import("../src/client.js")>("wattfare-embed/client");
  const root = await load<typeof import("../src/client.js")>("wattfare-embed");
  const element = await load<ElementEntry>("wattfare-embed/element");
  await load<ReactEntry>("wattfare-embed/react");
  assert.equal(typeof client.createWattfare, "function");
  assert.equal(root.createWattfare, client.createWattfare);
  assert.equal(typeof element.defineWattfareConnect, "function");
  // A client can be made during rendering; it reads nothing until used.
  const made = client.createWattfare({ publishableKey: "pk_test_acme", session: "/api/session" });
  assert.equal(made.current, null);
  assert.equal(made.baseURL, "/wattfare");
});

test("the provider and the hook render on the server as loading, with the actions in place", async () => {
  const { WattfareProvider, useWattfare } = await load<ReactEntry>("wattfare-embed/react");
  let seen: ReturnType<ReactEntry["useWattfare"]> | null = null;
  function Budget() {
    const wattfare = useWattfare();
    seen = wattfare;
    return createElement("span", null, wattfare.loading ? "loading" : wattfare.connected ? "connected" : "connect");
  }
  const html = renderToString(
    createElement(WattfareProvider, { publishableKey: "pk_test_acme", session: "/api/session" }, createElement(Budget)),
  );
  assert.equal(html, "<span>loading</span>");
  assert.ok(seen);
  const state = seen as ReturnType<ReactEntry["useWattfare"]>;
  assert.equal(state.connected, false);
  assert.equal(state.remainingUsd, null);
  assert.equal(typeof state.connect, "function");
  const idle = renderToString(
    createElement(
      WattfareProvider,
      { publishableKey: "pk_test_acme", session: "/api/session", loadOnMount: false },
      createElement(Budget),
    ),
  );
  assert.equal(idle, "<span>connect</span>");
});

test("useWattfare outside a provider says so", async () => {
  const { useWattfare } = await load<ReactEntry>("wattfare-embed/react");
  function Orphan() {
    useWattfare();
    return null;
  }
  assert.throws(() => renderToString(createElement(Orphan)), /inside a <WattfareProvider>/);
});
