import { formatUsd, useWattfare } from "wattfare-embed/react";

/** "Connect AI budget" until the user connects, then what is left of the cap and Disconnect. */
export function BudgetBar() {
  const { connected, connect, disconnect, remainingUsd, monthlyUsd, spentUsd, loading } = useWattfare();
  if (loading) return <span className="muted">…</span>;
  if (!connected || remainingUsd === null || monthlyUsd === null) {
    return (
      <button type="button" onClick={connect}>
        Connect AI budget
      </button>
    );
  }
  const label = `${formatUsd(remainingUsd)} left of ${formatUsd(monthlyUsd)}`;
  return (
    <span className="budget">
      <span aria-live="polite">{label}</span>
      {/* Spent, never held: a reply in flight does not move the bar until it is charged. */}
      <progress aria-label="AI budget left" aria-valuetext={label} max={monthlyUsd} value={remainingUsd}
        title={`${formatUsd(spentUsd ?? 0)} spent`} />
      <button className="plain" type="button" onClick={disconnect}>
        Disconnect
      </button>
    </span>
  );
}
