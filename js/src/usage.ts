// Receipts: what GET {mount}/api/v1/usage answers, read defensively. Amounts stay exact: the
// micro-dollar integer and the server's decimal string, never a sum of floats.

export interface UsageReceipt {
  id: string;
  /** Unix seconds when the request was admitted. */
  createdAt: number;
  settledAt: number | null;
  kind: string;
  model: string;
  /** Null when the upstream told no token counts (or they are still being written). */
  tokensIn: number | null;
  tokensOut: number | null;
  /** The charge in micro-dollars (millionths of a dollar), exact. */
  costMicros: number;
  /** The charge in dollars as a decimal string, exact ("0.000123"). */
  costUsd: string;
  /** "reported": the upstream's own figure; "estimated": priced by the embed (the upstream told none yet). */
  costSource: "reported" | "estimated" | string;
}

export interface UsagePage {
  /** The month the receipts are of, `YYYY-MM` (UTC). */
  period: string;
  /** Newest first. */
  data: UsageReceipt[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
  hasMore: boolean;
}

export interface UsageOptions {
  /** A `nextCursor` from an earlier page. */
  cursor?: string;
  /** Rows per page, 1–200 (default 50). */
  limit?: number;
}

const int = (value: unknown): number | null => (typeof value === "number" && Number.isInteger(value) ? value : null);
const text = (value: unknown): string | null => (typeof value === "string" ? value : null);

function readReceipt(value: unknown): UsageReceipt | null {
  if (typeof value !== "object" || value === null) return null;
  const raw = value as Record<string, unknown>;
  const id = text(raw.id);
  const createdAt = int(raw.createdAt);
  const costMicros = int(raw.costMicros);
  const costUsd = text(raw.costUsd);
  if (id === null || createdAt === null || costMicros === null || costUsd === null) return null;
  return {
    id,
    createdAt,
    settledAt: int(raw.settledAt),
    kind: text(raw.kind) ?? "",
    model: text(raw.model) ?? "",
    tokensIn: int(raw.tokensIn),
    tokensOut: int(raw.tokensOut),
    costMicros,
    costUsd,
    costSource: text(raw.costSource) ?? "estimated",
  };
}

/** A UsagePage from the server's JSON, or null when it is not one. */
export function readUsagePage(value: unknown): UsagePage | null {
  if (typeof value !== "object" || value === null) return null;
  const raw = value as Record<string, unknown>;
  if (!Array.isArray(raw.data) || typeof raw.period !== "string") return null;
  const data: UsageReceipt[] = [];
  for (const row of raw.data) {
    const receipt = readReceipt(row);
    if (!receipt) return null;
    data.push(receipt);
  }
  const nextCursor = text(raw.nextCursor);
  return { period: raw.period, data, nextCursor, hasMore: nextCursor !== null };
}

/** A receipt's cost for display: the exact decimal string, as dollars ("$0.000123"). */
export function formatReceiptUsd(receipt: UsageReceipt): string {
  return `$${receipt.costUsd}`;
}
