import { useChat } from "@ai-sdk/react";
import { useEffect, useState } from "react";
import { budgetOf, formatUsd, isBudgetExceeded, isNotConnected, useWattfare } from "wattfare-embed/react";

/** useChat against the FastAPI route /api/chat, with the budget's two actionable errors handled. */
export function Chat() {
  const wattfare = useWattfare();
  const { messages, sendMessage, status, error, clearError } = useChat({
    onError: wattfare.handleError, // not connected or over the cap: the header follows at once
    onFinish: () => void wattfare.refresh(), // the bar falls by what the reply cost
  });
  const [draft, setDraft] = useState("");
  const typed = error ? wattfare.handleError(error) : null;

  // Connected again (or a higher cap approved): the old "Connect" or "Raise" prompt goes away.
  useEffect(() => {
    if (wattfare.connected && isNotConnected(error)) clearError();
  }, [wattfare.connected, error, clearError]);
  useEffect(() => {
    if (isBudgetExceeded(error)) clearError();
  }, [wattfare.monthlyUsd]); // eslint-disable-line react-hooks/exhaustive-deps

  function send(event: React.FormEvent<HTMLFormElement>) {
    event.preventDefault();
    if (!draft.trim()) return;
    void sendMessage({ text: draft });
    setDraft("");
  }

  const raiseTo = Math.max(5, Math.ceil((wattfare.monthlyUsd ?? 5) * 2));
  return (
    <section className="card">
      <div id="log" aria-live="polite">
        {messages.map((message) => {
          const text = message.parts.map((part) => (part.type === "text" ? part.text : "")).join("");
          const budget = budgetOf(message.metadata);
          return (
            <div key={message.id} className={`msg ${message.role}`}>
              {text}
              {budget?.costUsd != null && <small className="cost">cost ${budget.costUsd.toFixed(4)}</small>}
            </div>
          );
        })}
        {error && (
          <div className="msg error" role="alert">
            {typed ? typed.userMessage : "Something went wrong. Please try again."}{" "}
            {isNotConnected(error) && (
              <button className="plain" type="button" onClick={() => void wattfare.connect()}>
                Connect AI budget
              </button>
            )}
            {isBudgetExceeded(error) && wattfare.spentUsd !== null && (
              <>
                {`You have spent ${formatUsd(wattfare.spentUsd)} of ${formatUsd(wattfare.monthlyUsd ?? 0)} this month. `}
                <button className="plain" type="button" onClick={() => void wattfare.connect({ monthlyUsd: raiseTo })}>
                  Raise my cap to {formatUsd(raiseTo)}
                </button>
              </>
            )}
          </div>
        )}
      </div>
      <form onSubmit={send}>
        <input value={draft} onChange={(event) => setDraft(event.target.value)} aria-label="Message"
          placeholder="Ask anything" autoComplete="off" />
        <button type="submit" disabled={status === "submitted" || status === "streaming"}>
          Send
        </button>
      </form>
      <p className="muted">Every reply is charged to your own AI budget, up to the monthly cap you approve.</p>
    </section>
  );
}
