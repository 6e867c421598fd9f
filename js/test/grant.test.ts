import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { createWattfare, type GrantResult, type WattfareClient } from "../src/client.js";
import { FakeBrowser, ORIGIN, PUBLISHABLE_KEY, tick, until } from "./fake-browser.js";

let browser: FakeBrowser;
let client: WattfareClient;

beforeEach(() => {
  browser = new FakeBrowser();
  client = createWattfare({ publishableKey: PUBLISHABLE_KEY, fetch: browser.fetch }); // no session: no accounts
});

const grant = { grantToken: `wfg_${"a".repeat(43)}`, expiresAt: 1_900_000_000, requests: 3, maxUsd: 0.5 };

test("requestGrant opens the popup inside the call, needs only the publishable key, and believes only its message", async () => {
  const result = client.requestGrant({ requests: 3, maxUsd: 0.5 });
  assert.equal(browser.popups.length, 1, "opened synchronously, before any await");
  const popup = browser.popups[0]!;
  await until(() => popup.url !== null, "the popup to get its consent URL");
  const ask = browser.calls.find((call) => call.url === "/wattfare/api/v1/grants/consent");
  assert.deepEqual(ask?.body, { publishableKey: PUBLISHABLE_KEY, requests: 3, mode: "popup", maxUsd: 0.5 });
  assert.equal(ask?.authorization, null, "no session token, no key: the visitor's approval is what counts");
  assert.equal(browser.mints, 0);

  browser.post(popup, { type: "wattfare:grant", grant }, "http://evil.test");
  browser.post(popup, { type: "wattfare:connect", status: browser.status() });
  await tick(20);
  browser.post(popup, { type: "wattfare:grant", grant, error: null });
  const answer: GrantResult = await result;
  assert.deepEqual(answer, { granted: true, ...grant });
});

test("a denial or a closed window resolves as not granted", async () => {
  const denied = client.requestGrant({ requests: 1 });
  const popup = browser.popups[0]!;
  await until(() => popup.url !== null, "the consent URL");
  browser.post(popup, { type: "wattfare:grant", grant: null, error: null });
  assert.deepEqual(await denied, { granted: false, reason: "denied" });

  const closed = client.requestGrant({ requests: 1 });
  const second = browser.popups[1]!;
  await until(() => second.url !== null, "the second consent URL");
  second.close();
  assert.deepEqual(await closed, { granted: false, reason: "closed" });
});

test("an error posted by the callback page rejects typed", async () => {
  const result = client.requestGrant({ requests: 2 });
  const popup = browser.popups[0]!;
  await until(() => popup.url !== null, "the consent URL");
  browser.post(popup, { type: "wattfare:grant", grant: null, error: { code: "grant_invalid", message: "used link" } });
  await assert.rejects(result, { code: "grant_invalid" });
});

test("with popups blocked the tab goes to consent, and the grant comes back in the fragment", async () => {
  browser.blockPopups = true;
  void client.requestGrant({ requests: 3 });
  await until(() => browser.assigned.length === 1, "the tab to go to consent");
  const ask = browser.calls.find((call) => call.url === "/wattfare/api/v1/grants/consent");
  assert.deepEqual(ask?.body, { publishableKey: PUBLISHABLE_KEY, requests: 3, mode: "redirect", returnTo: "/chat?tab=1" });

  const replaced: string[] = [];
  Object.assign(globalThis.location, {
    href: `${ORIGIN}/chat?tab=1&wattfare=granted#wattfare_grant=${grant.grantToken}&expires_at=${grant.expiresAt}&requests=3&max_usd=0.5`,
  });
  Object.assign(globalThis.history, { replaceState: (_: unknown, __: string, url: string) => replaced.push(url) });
  const back = createWattfare({ publishableKey: PUBLISHABLE_KEY, fetch: browser.fetch });
  assert.equal(back.redirectResult, "granted");
  assert.deepEqual(back.redirectGrant, { granted: true, ...grant });
  assert.deepEqual(replaced, ["/chat?tab=1"], "the token is taken out of the address");
});

test("bad asks throw at once, and a client without a session cannot read a connection", async () => {
  assert.throws(() => client.requestGrant({ requests: 0 }), { code: "invalid_request" });
  assert.throws(() => client.requestGrant({ requests: 2, maxUsd: -1 }), { code: "invalid_request" });
  assert.equal(browser.popups.length, 0);
  await assert.rejects(client.refresh(), { code: "invalid_request" });
});
