// wattfare-embed/react: <WattfareProvider> owns one client; useWattfare() reads its state through
// useSyncExternalStore and offers connect / disconnect / refresh.
//
//   <WattfareProvider publishableKey="pk_test_…" session="/wattfare/session"><App /></WattfareProvider>
//   const { connected, connect, remainingUsd, loading } = useWattfare();
//
// An app without accounts leaves `session` out and asks for one-time grants:
//   <WattfareProvider publishableKey="pk_test_…"><Tool /></WattfareProvider>
//   const { requestGrant, grant, pending } = useWattfareGrant();

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
} from "react";
import type { ReactNode } from "react";

import { createWattfare } from "./client.js";
import type { ConnectOptions, WattfareClient, WattfareConfig, WattfareState } from "./create-client.js";
import { toWattfareError, type WattfareError } from "./errors.js";
import type { Grant, GrantOptions, GrantResult } from "./grant.js";
import type { SessionSource } from "./session.js";
import type { ConnectionStatus } from "./status.js";
import type { UsageOptions, UsagePage } from "./usage.js";

export * from "./client.js";

export interface WattfareProviderProps {
  /** `pk_live_…` or `pk_test_…`. */
  publishableKey: string;
  /** Your route that mints a session token (POSTed), or a function returning one. Leave it out in
   * an app without accounts that only asks for one-time grants (`useWattfareGrant`). */
  session?: SessionSource;
  /** Where the embed is mounted (default `/wattfare`). */
  baseURL?: string;
  /** The origin the consent result is posted from (default: the origin of `baseURL`). */
  consentURL?: string;
  /** Read the status once on mount (default true when there is a session). */
  loadOnMount?: boolean;
  /** Use this client instead of making one (tests, or a client shared with non-React code). */
  client?: WattfareClient;
  children?: ReactNode;
}

export interface UseWattfare {
  /** Whether the user has an active budget connection. */
  connected: boolean;
  /** The last status read, or null before the first one. */
  status: ConnectionStatus | null;
  /** The cap less what was charged (null while not connected). Spent, never held. */
  remainingUsd: number | null;
  spentUsd: number | null;
  monthlyUsd: number | null;
  /** True until the first status read settles. */
  loading: boolean;
  /** The last error of a read or an action (cleared by the next successful read). */
  error: WattfareError | null;
  /** Open the consent popup (call it from a click; `onClick={connect}` works). Resolves with the
   * new status, or null when it failed (then `error` says why). */
  connect: (options?: ConnectOptions | object) => Promise<ConnectionStatus | null>;
  disconnect: () => Promise<ConnectionStatus | null>;
  refresh: () => Promise<ConnectionStatus | null>;
  /** The user's receipts this month, newest first (null when the read failed; then `error` says why). */
  usage: (options?: UsageOptions) => Promise<UsagePage | null>;
  /** Pass an error from `useChat`'s `onError` (or any call): returns our typed error, and re-reads the
   * status when it says not connected or over budget, so the UI follows without a reload. */
  handleError: (error: unknown) => WattfareError | null;
  client: WattfareClient;
}

const WattfareContext = createContext<{ client: WattfareClient; loadOnMount: boolean } | null>(null);

export function WattfareProvider(props: WattfareProviderProps): ReactNode {
  const { publishableKey, session, baseURL, consentURL, client: given, children } = props;
  const loadOnMount = props.loadOnMount ?? session !== undefined;
  // A session function written inline is new on every render: the client calls the latest one.
  const latestSession = useRef(session);
  latestSession.current = session;
  const sessionRoute = typeof session === "string" ? session : null;
  const client = useMemo(() => {
    if (given) return given;
    const config: WattfareConfig = { publishableKey };
    if (session !== undefined) {
      config.session =
        sessionRoute ??
        (() => {
          const current = latestSession.current;
          return typeof current === "function" ? current() : (current as string);
        });
    }
    if (baseURL) config.baseURL = baseURL;
    if (consentURL) config.consentURL = consentURL;
    return createWattfare(config);
    // Only whether there is a session matters here: a route or function is read through the ref.
  }, [given, publishableKey, sessionRoute, session === undefined, baseURL, consentURL]);
  useEffect(() => {
    if (loadOnMount && !client.current) client.refresh().catch(() => {}); // shown through `error`
  }, [client, loadOnMount]);
  const value = useMemo(() => ({ client, loadOnMount }), [client, loadOnMount]);
  return createElement(WattfareContext.Provider, { value }, children);
}

const quietly =
  <A extends unknown[]>(action: (...args: A) => Promise<ConnectionStatus>) =>
  (...args: A): Promise<ConnectionStatus | null> =>
    action(...args).catch(() => null); // the error is in state

export function useWattfare(): UseWattfare {
  const context = useContext(WattfareContext);
  if (!context) throw new Error("useWattfare() must be called inside a <WattfareProvider>");
  const { client, loadOnMount } = context;
  const state: WattfareState = useSyncExternalStore(client.subscribeState, client.getState, client.getState);
  const actions = useMemo(
    () => ({
      connect: quietly((options?: ConnectOptions | object) => {
        // onClick={connect} passes the click event: only a real `monthlyUsd` is an option.
        const monthlyUsd = (options as ConnectOptions | undefined)?.monthlyUsd;
        return client.connect(typeof monthlyUsd === "number" ? { monthlyUsd } : {});
      }),
      disconnect: quietly(() => client.disconnect()),
      refresh: quietly(() => client.refresh()),
      usage: (options?: UsageOptions) => client.usage(options).catch(() => null),
      handleError: (error: unknown) => client.handleError(error),
    }),
    [client],
  );
  const { status, error } = state;
  const connected = status?.connected === true;
  return {
    connected,
    status,
    remainingUsd: connected ? status.remainingUsd : null,
    spentUsd: connected ? status.spentUsd : null,
    monthlyUsd: connected ? status.monthlyUsd : null,
    // Before the first read settles (also on the server, so hydration matches).
    loading: state.loading || (loadOnMount && status === null && error === null),
    error,
    ...actions,
    client,
  };
}

export interface UseWattfareGrant {
  /** Ask for a one-time grant (call it from a click). Resolves with the result, or null when it
   * failed (then `error` says why). */
  requestGrant: (options: GrantOptions) => Promise<GrantResult | null>;
  /** The last approved grant (also one brought back by a redirect round trip), or null. */
  grant: Grant | null;
  /** The last result: the grant, or why there is none (denied, closed). */
  result: GrantResult | null;
  /** True while the consent window is open. */
  pending: boolean;
  error: WattfareError | null;
  /** Forget the grant (its requests are used up, or the server said grant_invalid). */
  clear: () => void;
  client: WattfareClient;
}

export function useWattfareGrant(): UseWattfareGrant {
  const context = useContext(WattfareContext);
  if (!context) throw new Error("useWattfareGrant() must be called inside a <WattfareProvider>");
  const { client } = context;
  const [result, setResult] = useState<GrantResult | null>(() => client.redirectGrant);
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<WattfareError | null>(null);
  const requestGrant = useCallback(
    async (options: GrantOptions): Promise<GrantResult | null> => {
      setPending(true);
      setError(null);
      try {
        const answer = await client.requestGrant(options);
        setResult(answer);
        return answer;
      } catch (err) {
        setError(toWattfareError(err));
        return null;
      } finally {
        setPending(false);
      }
    },
    [client],
  );
  const clear = useCallback(() => setResult(null), []);
  return { requestGrant, grant: result?.granted ? result : null, result, pending, error, clear, client };
}
