import { useEffect, useState } from "react";

import { BudgetBar } from "./BudgetBar";
import { Chat } from "./Chat";

/** The demo's stand-in login (a name in a cookie); your app has its own. */
export function App() {
  const [user, setUser] = useState<string | null | undefined>(undefined);
  useEffect(() => {
    fetch("/api/me")
      .then((response) => response.json())
      .then((body: { user: string | null }) => setUser(body.user));
  }, []);

  async function signIn(event: React.FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const name = new FormData(event.currentTarget).get("name");
    await fetch("/api/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    location.reload(); // the provider reads the new user's status
  }

  async function signOut() {
    await fetch("/api/logout", { method: "POST" });
    location.reload();
  }

  return (
    <>
      <header>
        <h1>Acme Chat</h1>
        {user && <span className="muted">Signed in as {user}</span>}
        {user && <BudgetBar />}
        {user && (
          <button className="plain" type="button" onClick={signOut}>
            Sign out
          </button>
        )}
      </header>
      <main>
        {user === null && (
          <section className="card">
            <h2>Sign in (demo)</h2>
            <p className="muted">A stand-in for your app's own login. Each name is a user with their own budget.</p>
            <form onSubmit={signIn}>
              <input name="name" type="text" placeholder="alice" aria-label="Your name" required />
              <button type="submit">Sign in</button>
            </form>
          </section>
        )}
        {user && <Chat />}
      </main>
    </>
  );
}
