// What the server lets the page do (`GET config`); anything unreadable means off.

export interface PageConfig {
  /** Programs on the target may set the clipboard with OSC 52 (--clipboard-osc52). */
  clipboardOsc52: boolean;
  /** The server records sessions (--recordings-dir): the page links to recordings/. */
  recordings: boolean;
}

export const DEFAULT_CONFIG: PageConfig = { clipboardOsc52: false, recordings: false };

export function parseConfig(body: unknown): PageConfig {
  if (!body || typeof body !== "object") return DEFAULT_CONFIG;
  const b = body as Record<string, unknown>;
  return { clipboardOsc52: b.clipboard_osc52 === true, recordings: b.recordings === true };
}

export async function fetchConfig(
  fetchFn: (url: string, init: RequestInit) => Promise<Response>,
  base: string,
): Promise<PageConfig> {
  try {
    const response = await fetchFn(new URL("config", base).href, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "same-origin",
    });
    return response.ok ? parseConfig(await response.json()) : DEFAULT_CONFIG;
  } catch {
    return DEFAULT_CONFIG;
  }
}
