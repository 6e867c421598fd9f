// One consent round trip in a popup, with a full-page redirect when popups are blocked.
// `connect()` runs one; a one-time grant would run another with its own `begin` and message type.

import { WattfareError, errorFromCode, isWattfareErrorCode } from "./errors.js";

export const POPUP_NAME = "wattfare-consent";
const WIDTH = 520;
const HEIGHT = 700;
const CLOSED_POLL_MS = 250;
const LATE_MESSAGE_MS = 150; // a message posted just before the popup closed lands within this

export interface ConsentRound<T> {
  /** Ask the server for the one-time consent URL. `returnTo` is set for a redirect round trip. */
  begin(mode: "popup" | "redirect", returnTo?: string): Promise<string>;
  /** The `type` of the message the callback page posts to its opener. */
  messageType: string;
  /** The only origin whose messages are believed (where the callback page is served). */
  origin: string;
  /** The result carried by a message of the right type, or undefined to ignore a malformed one. */
  accept(data: Record<string, unknown>): T | undefined;
  /** What the round resolves with when the popup closed without a message: the server knows. */
  closedWithoutAnswer(): Promise<T>;
  /** After an error message: read the server's state again before the error is thrown. */
  afterError?(): Promise<unknown>;
}

export interface OpenRound<T> {
  promise: Promise<T>;
  /** The popup, or null when the page is going to the consent screen itself. */
  popup: Window | null;
}

/** Open a popup now (inside the click: one opened after an await counts as unwanted). */
function openPopup(): Window | null {
  try {
    const left = Math.max(0, window.screenX + (window.outerWidth - WIDTH) / 2);
    const top = Math.max(0, window.screenY + (window.outerHeight - HEIGHT) / 2);
    const popup = window.open("about:blank", POPUP_NAME, `popup,width=${WIDTH},height=${HEIGHT},left=${left},top=${top}`);
    return popup && !popup.closed ? popup : null; // some blockers hand back a window already closed
  } catch {
    return null; // treated as blocked
  }
}

function errorOf(data: Record<string, unknown>): WattfareError | null {
  const error = data.error;
  if (typeof error !== "object" || error === null) return null;
  const { code, message } = error as Record<string, unknown>;
  return errorFromCode(isWattfareErrorCode(code) ? code : "unknown", typeof message === "string" ? message : "", 400);
}

export function runConsentRound<T>(round: ConsentRound<T>): OpenRound<T> {
  const popup = openPopup();
  if (!popup) {
    // Blocked: the whole tab goes to the consent page and comes back with ?wattfare=… added.
    const returnTo = location.pathname + location.search;
    const promise = round.begin("redirect", returnTo).then((url) => {
      location.assign(url);
      return new Promise<T>(() => {}); // this page is going away
    });
    return { promise, popup: null };
  }
  const promise = new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (settle: () => void): void => {
      if (done) return;
      done = true;
      clearInterval(timer);
      removeEventListener("message", onMessage);
      settle();
    };
    function onMessage(event: MessageEvent): void {
      if (event.origin !== round.origin || event.source !== popup) return;
      const data: unknown = event.data;
      if (typeof data !== "object" || data === null) return;
      const message = data as Record<string, unknown>;
      if (message.type !== round.messageType) return;
      const error = errorOf(message);
      if (error) {
        const after = round.afterError?.() ?? Promise.resolve();
        after.catch(() => {}).finally(() => finish(() => reject(error)));
        return;
      }
      const result = round.accept(message);
      if (result !== undefined) finish(() => resolve(result));
    }
    addEventListener("message", onMessage);
    const timer = setInterval(() => {
      if (!popup.closed) return;
      clearInterval(timer);
      setTimeout(() => {
        if (done) return;
        round.closedWithoutAnswer().then(
          (result) => finish(() => resolve(result)),
          (err: unknown) => finish(() => reject(err)),
        );
      }, LATE_MESSAGE_MS);
    }, CLOSED_POLL_MS);
    round.begin("popup").then(
      (url) => {
        if (!done && !popup.closed) popup.location.replace(url);
      },
      (err: unknown) => {
        popup.close();
        finish(() => reject(err));
      },
    );
  });
  return { promise, popup };
}
