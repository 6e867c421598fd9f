import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { WattfareProvider } from "wattfare-embed/react";

import { App } from "./App";
import "./styles.css";

const meta = document.querySelector<HTMLMetaElement>('meta[name="wattfare-publishable-key"]')?.content ?? "";
const publishableKey = meta.startsWith("pk_") ? meta : import.meta.env.VITE_WATTFARE_PUBLISHABLE_KEY;

// Step 1 of 3: the provider, with the publishable key and the route that mints session tokens.
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <WattfareProvider publishableKey={publishableKey} session="/wattfare/session">
      <App />
    </WattfareProvider>
  </StrictMode>,
);
