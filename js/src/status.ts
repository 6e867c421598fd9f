// ConnectionStatus: what the embed answers at GET {mount}/api/v1/connections, read defensively.

export type ConnectionState = "active" | "not_connected" | "revoked" | "funding_invalid";

export interface ConnectionStatus {
  connected: boolean;
  status: ConnectionState | string;
  appUserId: string;
  /** The approved cap for this period. */
  monthlyUsd: number;
  /** Charged so far this period. */
  spentUsd: number;
  /** Reserved by requests still in flight (0 when the server does not say). */
  heldUsd: number;
  /** The cap less what was charged: what a user expects "left" to mean (never negative). */
  remainingUsd: number;
  /** What a new request could still reserve now: the cap less spent and held (never negative). */
  availableUsd: number;
  periodStart: string;
  periodEnd: string;
  authority: string | null;
}

const MICROS = 1_000_000;
const micros = (usd: number): number => Math.round(usd * MICROS);
const usd = (amount: number): number => Math.max(0, amount) / MICROS;
const num = (value: unknown): number | null => (typeof value === "number" && Number.isFinite(value) ? value : null);

/**
 * A ConnectionStatus from the server's JSON, or null when it is not one.
 *
 * Servers before `heldUsd` subtracted requests in flight from `remainingUsd`: then what is held
 * is recovered from the difference, and `remainingUsd` is recomputed from what was spent, so a
 * bar never dips while a reply streams.
 */
export function readStatus(value: unknown): ConnectionStatus | null {
  if (typeof value !== "object" || value === null) return null;
  const raw = value as Record<string, unknown>;
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
    // Older servers: remainingUsd was cap - spent - held.
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
    authority: typeof raw.authority === "string" ? raw.authority : null,
  };
}

/** The status a user has before (or after) connecting, keeping what else is known. */
export function notConnectedStatus(previous: ConnectionStatus | null): ConnectionStatus {
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
    authority: null,
  };
}

/** Dollars for display, rounded down to the cent so a label never shows more than is left. */
export function formatUsd(amount: number): string {
  const cents = Math.floor(Math.round(amount * MICROS) / 10_000);
  return `$${(cents / 100).toFixed(2)}`;
}
