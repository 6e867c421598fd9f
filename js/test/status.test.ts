import assert from "node:assert/strict";
import { test } from "node:test";

import { formatUsd, readStatus } from "../src/client.js";

const base = {
  connected: true,
  status: "active",
  appUserId: "ada",
  periodStart: "2026-12-01T00:00:00Z",
  periodEnd: "2027-01-01T00:00:00Z",
  authority: "dev",
};

test("with heldUsd from the server, remaining is the cap less spent and available less held too", () => {
  const status = readStatus({ ...base, monthlyUsd: 10, spentUsd: 3.5, heldUsd: 2, remainingUsd: 6.5, availableUsd: 4.5 });
  assert.ok(status);
  assert.equal(status.remainingUsd, 6.5);
  assert.equal(status.heldUsd, 2);
  assert.equal(status.availableUsd, 4.5);
});

test("an older server's remainingUsd (which subtracted what is held) never makes the bar dip", () => {
  // While a reply streams, the old server says remaining = 10 - 3.5 - 2 (held) = 4.5.
  const status = readStatus({ ...base, monthlyUsd: 10, spentUsd: 3.5, remainingUsd: 4.5 });
  assert.ok(status);
  assert.equal(status.remainingUsd, 6.5, "cap less spent, not less held");
  assert.equal(status.heldUsd, 2);
  assert.equal(status.availableUsd, 4.5);
});

test("not connected shows nothing left; malformed answers are not statuses", () => {
  const status = readStatus({ ...base, connected: false, status: "revoked", monthlyUsd: 5, spentUsd: 1, remainingUsd: 0 });
  assert.ok(status);
  assert.equal(status.remainingUsd, 0);
  assert.equal(status.heldUsd, 0);
  assert.equal(readStatus({ connected: true }), null);
  assert.equal(readStatus("active"), null);
  assert.equal(readStatus({ ...base, monthlyUsd: "10", spentUsd: 0, remainingUsd: 10 }), null);
});

test("dollars are shown rounded down to the cent", () => {
  assert.equal(formatUsd(6.409), "$6.40");
  assert.equal(formatUsd(0.999999), "$0.99");
  assert.equal(formatUsd(10), "$10.00");
  assert.equal(formatUsd(0.1 + 0.2), "$0.30");
});
