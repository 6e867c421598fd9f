// wattfare-embed/client: the framework-free browser client and the typed errors.
//
//   import { createWattfare, isNotConnected } from "wattfare-embed/client";
//   const wattfare = createWattfare({ publishableKey: "pk_test_…", session: "/wattfare/session" });
//   button.onclick = () => wattfare.connect({ monthlyUsd: 10 });
//
// An app without accounts leaves `session` out and asks for one-time grants:
//   const grant = await createWattfare({ publishableKey: "pk_test_…" }).requestGrant({ requests: 3, maxUsd: 0.5 });

import { createClient, type WattfareClient, type WattfareConfig } from "./create-client.js";

export type {
  ConnectOptions,
  RedirectResult,
  WattfareClient,
  WattfareConfig,
  WattfareState,
} from "./create-client.js";
export type { Grant, GrantOptions, GrantResult, NotGranted } from "./grant.js";
export type { SessionSource } from "./session.js";
export type { ConnectionState, ConnectionStatus } from "./status.js";
export { formatUsd, readStatus } from "./status.js";
export type { UsageOptions, UsagePage, UsageReceipt } from "./usage.js";
export { formatReceiptUsd, readUsagePage } from "./usage.js";
export type { WattfareErrorBody, WattfareErrorCode } from "./errors.js";
export {
  WattfareAuthError,
  WattfareBudgetExceededError,
  WattfareError,
  WattfareFundingError,
  WattfareGrantError,
  WattfareNetworkError,
  WattfareNotConnectedError,
  WattfareRateLimitError,
  errorFromCode,
  isBudgetExceeded,
  isNotConnected,
  toWattfareError,
} from "./errors.js";
export { budgetOf, type ReplyBudget } from "./metadata.js";

/** A browser client for the embed mounted at `baseURL` (default `/wattfare`). Throws at once on a
 * missing or malformed publishable key. Safe to call during server-side rendering. */
export function createWattfare(config: WattfareConfig): WattfareClient {
  return createClient(config, "/wattfare");
}
