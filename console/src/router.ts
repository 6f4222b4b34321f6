/**
 * A tiny router over the History API: the page lives under /console/, and every view has its
 * own address (the node answers index.html for any of them), so reloads and links work.
 */
import { useEffect, useState } from "preact/hooks";

export const BASE = "/console";

export interface Location {
  /** The path below /console, starting with "/" ("/" is the overview). */
  readonly path: string;
  readonly query: URLSearchParams;
}

function current(): Location {
  const p = window.location.pathname;
  const path = p.startsWith(`${BASE}/`) ? p.slice(BASE.length) : "/";
  return { path: path === "" ? "/" : path, query: new URLSearchParams(window.location.search) };
}

const listeners = new Set<() => void>();
window.addEventListener("popstate", () => {
  for (const l of listeners) l();
});

export function navigate(to: string, replace = false): void {
  const url = `${BASE}${to.startsWith("/") ? to : `/${to}`}`;
  if (replace) window.history.replaceState(null, "", url);
  else window.history.pushState(null, "", url);
  window.scrollTo(0, 0);
  for (const l of listeners) l();
}

export function useLocation(): Location {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const l = () => setLoc(current());
    listeners.add(l);
    return () => {
      listeners.delete(l);
    };
  }, []);
  return loc;
}

/** Props for an <a> that navigates inside the page (modified clicks open a new tab as usual). */
export function link(to: string): { href: string; onClick: (e: MouseEvent) => void } {
  return {
    href: `${BASE}${to}`,
    onClick: (e: MouseEvent) => {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey)
        return;
      e.preventDefault();
      navigate(to);
    },
  };
}
