import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { createWattfare, type ConnectionStatus, type WattfareClient } from "../src/client.js";
import { FakeBrowser, ORIGIN, PUBLISHABLE_KEY, tick, until } from "./fake-browser.js";

let browser: FakeBrowser;
let client: WattfareClient;

beforeEach(() => {
  browser = new FakeBrowser();
  client = createWattfare({ publishableKey: PUBLISHABLE_KEY, session: "/session", fetch: browser.fetch });
});

const connectedMessage = (monthlyUsd: number) => {
  browser.connected = true;
  browser.monthlyUsd = monthlyUsd;
  return { type: "wattfare:connect", status: browser.status(), error: null };
};

test("a malformed publishable key or a missing session source throws at once", () => {
  assert.throws(() => createWattfare({ publishableKey: "sk_test_abc_def", session: "/s" }), { code: "invalid_request" });
  assert.throws(() => createWattfare({ publishableKey: PUBLISHABLE_KEY, session: "" }), { code: "invalid_request" });
});

test("the session token is minted once and sent as a bearer token", async () => {
  await client.refresh();
  await client.refresh();
  assert.equal(browser.mints, 1);
  const reads = browser.calls.filter((call) => call.url === "/wattfare/api/v1/connections");
  assert.equal(reads.length, 2);
  assert.ok(reads.every((call) => call.authorization?.startsWith("Bearer x.")));
});

test("connect opens the popup inside the call, sends it to the consent URL and believes only its message", async () => {
  const result = client.connect({ monthlyUsd: 7 });
  assert.equal(browser.popups.length, 1, "opened synchronously, before any await");
  const popup = browser.popups[0]!;
  await until(() => popup.url !== null, "the popup to get its consent URL");
  const consent = browser.calls.find((call) => call.url === "/wattfare/api/v1/consent");
  assert.deepEqual(consent?.body, { mode: "popup", monthlyUsd: 7 });

  const message = connectedMessage(7);
  browser.post(popup, message, "http://evil.test"); // another origin
  browser.post({ ...popup }, message); // another window
  await tick(20);
  assert.equal(client.current, null, "forged messages are ignored");

  browser.post(popup, message);
  const status: ConnectionStatus = await result;
  assert.equal(status.connected, true);
  assert.equal(status.monthlyUsd, 7);
  assert.equal(status.remainingUsd, 7);
  assert.equal(client.current, status, "published to the client too");
});

test("a click on Connect right after closing the popup starts a new round instead of being lost", async () => {
  const first = client.connect();
  const popup = browser.popups[0]!;
  await until(() => popup.url !== null, "the first consent URL");
  popup.close();
  const second = client.connect(); // within the moment the client takes to notice the close
  assert.equal(browser.popups.length, 2, "a new popup was opened");
  assert.notEqual(second, first);
  const again = browser.popups[1]!;
  await until(() => again.url !== null, "the second consent URL");
  browser.post(again, connectedMessage(4));
  assert.equal((await second).monthlyUsd, 4);
  assert.equal((await first).connected, true, "the first round reads the outcome from the server");
});

test("a second click while the popup is open focuses it", async () => {
  const first = client.connect();
  const second = client.connect();
  assert.equal(second, first);
  assert.equal(browser.popups.length, 1);
  assert.equal(browser.popups[0]!.focused, 1);
  browser.popups[0]!.close();
  assert.equal((await first).connected, false, "closed without an answer: not connected");
});

test("with popups blocked, the whole tab goes to consent and comes back to the same page", async () => {
  browser.blockPopups = true;
  void client.connect({ monthlyUsd: 3 });
  await until(() => browser.assigned.length === 1, "the redirect");
  const consent = browser.calls.find((call) => call.url === "/wattfare/api/v1/consent");
  assert.deepEqual(consent?.body, { mode: "redirect", monthlyUsd: 3, returnTo: "/chat?tab=1" });
  assert.ok(browser.assigned[0]!.startsWith(`${ORIGIN}/wattfare/dev/consent?state=`));
});

test("an error posted by the callback page rejects with the typed error", async () => {
  const result = client.connect();
  const popup = browser.popups[0]!;
  await until(() => popup.url !== null, "the consent URL");
  browser.post(popup, {
    type: "wattfare:connect",
    status: browser.status(),
    error: { code: "grant_invalid", message: "this consent link was used" },
  });
  await assert.rejects(result, { code: "grant_invalid", message: "this consent link was used" });
});

test("returning to the tab re-reads the status, so a revoke elsewhere shows without a reload", async () => {
  browser.connected = true;
  const seen: boolean[] = [];
  const stop = client.subscribe((status) => seen.push(status.connected));
  await client.refresh();
  browser.connected = false; // revoked on the consent domain's dashboard
  browser.returnToTab();
  await until(() => seen.length === 2, "a second read");
  assert.deepEqual(seen, [true, false]);
  browser.returnToTab(); // again at once: one read per second at most
  await tick(20);
  assert.equal(seen.length, 2);
  stop();
});

test("handleError with a not-connected error re-reads the status; other errors do not", async () => {
  browser.connected = true;
  await client.refresh();
  const reads = () => browser.calls.filter((call) => call.method === "GET").length;
  const before = reads();
  browser.connected = false;
  const typed = client.handleError(new Error(JSON.stringify({ error: { code: "not_connected", message: "x" } })));
  assert.equal(typed?.code, "not_connected");
  await until(() => client.current?.connected === false, "the refreshed status");
  assert.equal(reads(), before + 1);
  assert.equal(client.handleError(new Error("fetch failed")), null);
  await tick(10);
  assert.equal(reads(), before + 1);
});

test("the state snapshot: loading during the first read, a new object only on change, errors typed", async () => {
  const snapshots = [client.getState()];
  const stop = client.subscribeState(() => snapshots.push(client.getState()));
  assert.deepEqual(snapshots[0], { status: null, loading: false, error: null });
  const reading = client.refresh();
  assert.equal(client.getState().loading, true);
  await reading;
  assert.equal(client.getState().loading, false);
  assert.equal(client.getState().status?.connected, false);
  const settled = client.getState();
  assert.equal(client.getState(), settled, "the same object while nothing changes");

  const failing = createWattfare({ publishableKey: PUBLISHABLE_KEY, session: () => "", fetch: browser.fetch });
  await assert.rejects(failing.refresh(), { code: "auth" });
  assert.equal(failing.getState().error?.code, "auth");
  stop();
  assert.ok(snapshots.length >= 3);
});

test("disconnect revokes and reads the status again", async () => {
  browser.connected = true;
  await client.refresh();
  const status = await client.disconnect();
  assert.equal(status.connected, false);
  assert.ok(browser.calls.some((call) => call.method === "DELETE"));
});

test("usage() reads the user's receipts page by page, amounts kept exact", async () => {
  const receipt = (id: string, costMicros: number, costUsd: string) => ({
    id,
    createdAt: 1_796_000_000,
    settledAt: 1_796_000_001,
    kind: "chat",
    model: "openai/gpt-4o-mini",
    tokensIn: 12,
    tokensOut: 30,
    costMicros,
    costUsd,
    costSource: "reported",
  });
  browser.usagePages = {
    "": { period: "2026-12", data: [receipt("req_b", 123, "0.000123")], nextCursor: "1796000000.req_b", hasMore: true },
    "1796000000.req_b": { period: "2026-12", data: [receipt("req_a", 100001, "0.100001")], nextCursor: null },
  };
  const first = await client.usage({ limit: 1 });
  assert.equal(first.period, "2026-12");
  assert.deepEqual(
    first.data.map((row) => [row.id, row.costMicros, row.costUsd, row.tokensIn, row.tokensOut]),
    [["req_b", 123, "0.000123", 12, 30]],
  );
  assert.equal(first.hasMore, true);
  const second = await client.usage({ cursor: first.nextCursor!, limit: 1 });
  assert.deepEqual(second.data.map((row) => row.id), ["req_a"]);
  assert.equal(second.nextCursor, null);
  assert.equal(second.hasMore, false);
  assert.deepEqual(browser.usageQueries, ["limit=1", "cursor=1796000000.req_b&limit=1"]);
  const reads = browser.calls.filter((call) => call.url === "/wattfare/api/v1/usage");
  assert.ok(reads.every((call) => call.authorization?.startsWith("Bearer x.")), "with the session token");
});

test("usage() refuses an answer that is not a usage page", async () => {
  browser.usagePages = { "": { period: "2026-12", data: [{ id: "req_x", costMicros: 1.5 }] } };
  await assert.rejects(client.usage(), { code: "unknown" });
});
