// OSC 52: a program on the target sets the browser's clipboard (`ESC ] 52 ; c ; <base64> BEL`).
// Off unless the server enables it (--clipboard-osc52); even then only writes: a query (`?`)
// is never answered, so nothing on the target can read what the user copied.

/** The longest text a program may put on the clipboard, in bytes (decoded). */
export const MAX_OSC52_BYTES = 1024 * 1024;

export type Osc52 =
  | { kind: "write"; text: string }
  | { kind: "query" }
  | { kind: "invalid"; why: string };

const TARGETS = /^[cpqs0-7]*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function parseOsc52(data: string): Osc52 {
  const semi = data.indexOf(";");
  if (semi < 0) return { kind: "invalid", why: "no selection parameter" };
  const targets = data.slice(0, semi);
  const payload = data.slice(semi + 1);
  if (!TARGETS.test(targets)) return { kind: "invalid", why: "unknown selection" };
  if (payload === "?") return { kind: "query" };
  if (payload.length > Math.ceil(MAX_OSC52_BYTES / 3) * 4) return { kind: "invalid", why: "too long" };
  if (payload.length % 4 !== 0 || !BASE64.test(payload)) return { kind: "invalid", why: "not base64" };
  const binary = atob(payload);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return { kind: "write", text: new TextDecoder().decode(bytes) };
}

/**
 * The OSC 52 handler for xterm.js's parser: while `enabled()`, hands each write to `write`; always
 * returns true, so the sequence is consumed and never reaches the screen either way.
 */
export function osc52Handler(enabled: () => boolean, write: (text: string) => void): (data: string) => boolean {
  return (data) => {
    if (!enabled()) return true;
    const parsed = parseOsc52(data);
    if (parsed.kind === "write") write(parsed.text);
    return true;
  };
}
