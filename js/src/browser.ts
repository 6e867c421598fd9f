// The no-build ES module the Python package serves at {mount}/wattfare.js: the client, the typed
// errors and <wattfare-connect>, defined on import. Built from the same source as the npm package.

import { createClient, type WattfareClient, type WattfareConfig } from "./create-client.js";
import { defineWattfareConnect } from "./element.js";

export * from "./client.js";
export { defineWattfareConnect } from "./element.js";

// The embed serves this file from its mount, so the mount is where it was loaded from.
const MODULE_BASE = new URL(".", import.meta.url).href;

export function createWattfare(config: WattfareConfig): WattfareClient {
  return createClient(config, MODULE_BASE);
}

export const WattfareConnectElement: CustomElementConstructor | undefined =
  typeof customElements === "undefined" ? undefined : defineWattfareConnect("wattfare-connect", createWattfare);
