/** The shell: sign-in, the header with its navigation, and the page for the address. */
import { useEffect, useState } from "preact/hooks";
import { setToken, token, whenUnauthorized } from "./api";
import { Icon, Logo, Toasts } from "./components";
import { BucketsPage } from "./pages/buckets";
import { KeyspacesPage } from "./pages/keyspaces";
import { KvPage } from "./pages/kv";
import { LoginPage } from "./pages/login";
import { OverviewPage } from "./pages/overview";
import { RingPage } from "./pages/ring";
import { TrafficPage } from "./pages/traffic";
import { link, navigate, useLocation } from "./router";
import { cluster, useCluster } from "./store";

const NAV = [
  { to: "/", label: "Overview", icon: "overview" },
  { to: "/keyspaces", label: "Keyspaces", icon: "keyspaces" },
  { to: "/ring", label: "Chunk ring", icon: "ring" },
  { to: "/traffic", label: "Traffic", icon: "traffic" },
  { to: "/buckets", label: "Buckets", icon: "buckets" },
  { to: "/kv", label: "KV browser", icon: "kv" },
] as const;

function section(path: string): string {
  const first = `/${path.split("/")[1] ?? ""}`;
  return first === "/" || first === "/login" ? "/" : first;
}

function Health() {
  const c = useCluster();
  const v = c.view;
  if (!v) return <span class="health health-unknown">connecting…</span>;
  const s = v.summary;
  const tone =
    s.dead > 0 || s.leaderless > 0 ? "bad" : s.suspect > 0 || s.degraded > 0 ? "warn" : "good";
  return (
    <span class={`health health-${tone}`} title={`as node ${v.self} sees it`}>
      <span class="dot" />
      {s.alive}/{s.nodes} nodes alive
      {c.error && (
        <span class="health-err">
          {" "}
          · {c.error.code === "NETWORK" ? "node unreachable" : c.error.code}
        </span>
      )}
    </span>
  );
}

export function App() {
  const loc = useLocation();
  const [signedIn, setSignedIn] = useState(token() !== null);

  useEffect(() => {
    whenUnauthorized(() => {
      setToken(null);
      cluster.stop();
      setSignedIn(false);
    });
  }, []);

  useEffect(() => {
    if (signedIn) cluster.start();
    else cluster.stop();
  }, [signedIn]);

  useEffect(() => {
    if (!signedIn && loc.path !== "/login") {
      const back = loc.path + (loc.query.toString() ? `?${loc.query}` : "");
      navigate(`/login${back !== "/" ? `?next=${encodeURIComponent(back)}` : ""}`, true);
    }
  }, [signedIn, loc.path]);

  if (!signedIn || loc.path === "/login") {
    return (
      <>
        <LoginPage
          onSignedIn={() => {
            setSignedIn(true);
            const next = loc.query.get("next");
            navigate(next?.startsWith("/") ? next : "/", true);
          }}
        />
        <Toasts />
      </>
    );
  }

  const here = section(loc.path);
  const parts = loc.path
    .split("/")
    .filter((x) => x !== "")
    .map(decodeURIComponent);
  let page = <OverviewPage />;
  if (here === "/keyspaces") page = <KeyspacesPage name={parts[1]} />;
  else if (here === "/ring") page = <RingPage />;
  else if (here === "/traffic") page = <TrafficPage />;
  else if (here === "/buckets")
    page = <BucketsPage bucket={parts[1]} prefix={loc.query.get("prefix") ?? ""} />;
  else if (here === "/kv")
    page = <KvPage keyspace={parts[1]} prefix={loc.query.get("prefix") ?? ""} />;

  return (
    <div class="shell">
      <header class="topbar">
        <div class="topbar-inner">
          <a class="brand" {...link("/")}>
            <Logo />
            <span class="brand-name">Kumo</span>
            <span class="brand-sub">console</span>
          </a>
          <nav class="nav" aria-label="Pages">
            {NAV.map((n) => (
              <a key={n.to} class={`nav-link${here === n.to ? " active" : ""}`} {...link(n.to)}>
                <Icon name={n.icon} size={16} />
                {n.label}
              </a>
            ))}
          </nav>
          <div class="topbar-right">
            <Health />
            <button
              type="button"
              class="btn btn-dark btn-sm"
              onClick={() => {
                setToken(null);
                setSignedIn(false);
                navigate("/login", true);
              }}
            >
              <Icon name="logout" size={15} />
              Sign out
            </button>
          </div>
        </div>
      </header>
      <main class="main">{page}</main>
      <Toasts />
    </div>
  );
}
