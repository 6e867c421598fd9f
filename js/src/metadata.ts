// What the Python `wattfare_embed.ai_sdk` stream puts in a reply's `messageMetadata`.

export interface ReplyBudget {
  /** What this reply cost, as the upstream charged it (null when not reported). */
  costUsd: number | null;
  /** The user's budget right after the reply: charged so far, cap, and cap less charged. */
  spentUsd: number;
  monthlyUsd: number;
  remainingUsd: number;
}

const num = (value: unknown): number | null => (typeof value === "number" && Number.isFinite(value) ? value : null);

/** The budget facts of a `useChat` message (`message.metadata`), or null when it has none. */
export function budgetOf(metadata: unknown): ReplyBudget | null {
  if (typeof metadata !== "object" || metadata === null) return null;
  const wattfare = (metadata as { wattfare?: unknown }).wattfare;
  if (typeof wattfare !== "object" || wattfare === null) return null;
  const raw = wattfare as Record<string, unknown>;
  const spentUsd = num(raw.spentUsd);
  const monthlyUsd = num(raw.monthlyUsd);
  const remainingUsd = num(raw.remainingUsd);
  if (spentUsd === null || monthlyUsd === null || remainingUsd === null) return null;
  return { costUsd: num(raw.costUsd), spentUsd, monthlyUsd, remainingUsd };
}
