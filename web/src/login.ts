// Signing in: the token of a link (`#token=`, or `?token=` from older links) or of the form is
// POSTed to `login`, and the server answers with an HttpOnly cookie. A GET never consumes a
// token, so the page does it: a link preview that fetches the URL cannot use up the link.
// No DOM here except what is passed in, so node's test runner drives it.

/** A token found in the page's address, and the address without it. */
export interface FoundToken {
  token: string;
  /** The page's own address without query or fragment: what the address bar should show. */
  cleanUrl: string;
}

/** The token in `href`'s fragment (`#token=`) or query (`?token=`), if any. */
export function tokenIn(href: string): FoundToken | null {
  const url = new URL(href);
  const fragment = new URLSearchParams(url.hash.replace(/^#/, ""));
  const token = fragment.get("token") || url.searchParams.get("token");
  if (!token) return null;
  return { token, cleanUrl: url.origin + url.pathname };
}

export type LoginResult = { ok: true } | { ok: false; message: string };

/** The subset of `fetch` this module uses. */
export type Fetch = (url: string, init: RequestInit) => Promise<Pick<Response, "ok" | "status" | "json">>;

async function errorOf(response: Pick<Response, "status" | "json">): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object" && typeof (body as { error?: unknown }).error === "string") {
      return (body as { error: string }).error;
    }
  } catch {
    // Not JSON: say what there is to say.
  }
  return `the server refused the login (HTTP ${response.status})`;
}

/** Trades `token` for a login cookie at `base` + "login". */
export async function logIn(fetchFn: Fetch, base: string, token: string): Promise<LoginResult> {
  try {
    const response = await fetchFn(new URL("login", base).toString(), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.ok) return { ok: true };
    return { ok: false, message: await errorOf(response) };
  } catch {
    return { ok: false, message: "cannot reach the server" };
  }
}

/** Whether this browser has a login; null when the server cannot be asked. */
export async function loggedIn(fetchFn: Fetch, base: string): Promise<boolean | null> {
  try {
    const response = await fetchFn(new URL("login", base).toString(), {
      method: "GET",
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!response.ok) return null;
    const body: unknown = await response.json();
    return Boolean(body && typeof body === "object" && (body as { authenticated?: unknown }).authenticated === true);
  } catch {
    return null;
  }
}
