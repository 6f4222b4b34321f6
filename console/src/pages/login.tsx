/** Sign in with an admin token (checked against the node before it is kept). */
import { useState } from "preact/hooks";
import { API, type ApiError, request, setToken } from "../api";
import { Logo } from "../components";

export function LoginPage({ onSignedIn }: { onSignedIn: () => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const t = value.trim();
    if (t === "") {
      setError("Enter the admin token.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await request(`${API}/node`, { tokenOverride: t });
      setToken(t);
      onSignedIn();
    } catch (err) {
      const e2 = err as ApiError;
      setError(
        e2.status === 401
          ? "This token was refused. Use an admin token of this cluster."
          : `The node could not check the token: ${e2.message}`,
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="login">
      <div class="login-glow" />
      <form class="login-card" onSubmit={submit}>
        <div class="login-brand">
          <Logo size={44} />
          <div>
            <div class="login-title">Kumo</div>
            <div class="login-sub">雲 · cluster console</div>
          </div>
        </div>
        <label class="field">
          <span>Admin token</span>
          <input
            type="password"
            name="token"
            autocomplete="current-password"
            placeholder="Paste the cluster's admin token"
            value={value}
            onInput={(e) => setValue((e.target as HTMLInputElement).value)}
            autofocus
          />
        </label>
        {error && (
          <div class="note note-bad" role="alert">
            {error}
          </div>
        )}
        <button type="submit" class="btn btn-primary btn-block" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p class="muted small">
          The token is the node's <code>--admin-tokens</code> (or its API token when none is set);{" "}
          <code>kumo dev</code> prints it and writes it to <code>.kumo/cluster.json</code>. It is
          kept in this tab only.
        </p>
      </form>
    </div>
  );
}
