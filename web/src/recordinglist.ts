// The recordings page's pure part: the JSON list, names, dates and sizes. No DOM.

/** One entry of `GET recordings/?format=json`. */
export interface RecordingEntry {
  name: string;
  bytes: number;
  /** Unix time of the last write. */
  modified: number;
}

export type Listing =
  | { kind: "list"; enabled: boolean; recordings: RecordingEntry[] }
  | { kind: "problem"; message: string; signIn: boolean };

/** A recording's name as the server makes them (and the only names the page will load). */
export const RECORDING_NAME = /^[A-Za-z0-9_-]{1,128}\.cast$/;

function isEntry(value: unknown): value is RecordingEntry {
  if (!value || typeof value !== "object") return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.name === "string" &&
    RECORDING_NAME.test(v.name) &&
    Number.isSafeInteger(v.bytes) &&
    Number.isFinite(v.modified)
  );
}

/** What the server answered, as the page shows it. */
export function parseListing(status: number, body: unknown): Listing {
  if (status === 401) {
    return { kind: "problem", message: "Sign in to the terminal first, then come back here.", signIn: true };
  }
  if (status !== 200 || !body || typeof body !== "object") {
    return { kind: "problem", message: `The server could not list the recordings (HTTP ${status}).`, signIn: false };
  }
  const b = body as Record<string, unknown>;
  const list = Array.isArray(b.recordings) ? b.recordings.filter(isEntry) : [];
  return { kind: "list", enabled: b.enabled === true, recordings: list };
}

/** When a recording started, from its name (`20250101T120000Z-….cast`), or null. */
export function startedAt(name: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-/.exec(name);
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return Number.isNaN(date.getTime()) ? null : date;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** The recording the address asks to play (`#<name>`), if it names one. */
export function selectedName(hash: string): string | null {
  let name: string;
  try {
    name = decodeURIComponent(hash.replace(/^#/, ""));
  } catch {
    return null;
  }
  return RECORDING_NAME.test(name) ? name : null;
}

/** A player theme (CSS custom properties) for the given 16 colors, foreground and background. */
export function playerThemeCss(selector: string, fg: string, bg: string, palette: readonly string[]): string {
  const vars = [`--term-color-foreground: ${fg};`, `--term-color-background: ${bg};`];
  palette.forEach((color, i) => vars.push(`--term-color-${i}: ${color};`));
  return `${selector} { ${vars.join(" ")} }`;
}
