// A fake socket, clock and session memory around a real Connection, for the unit tests.

import {
  Connection,
  type Clock,
  type SavedSession,
  type SessionMemory,
  type SocketLike,
} from "../src/connection.js";

export const text = new TextDecoder();
export const encoder = new TextEncoder();

/** A WebSocket whose server side is the test. */
export class FakeSocket {
  binaryType = "blob";
  protocol = "";
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: Uint8Array[] = [];
  closedWith: number | null = null;
  /** CONNECTING until accepted, OPEN, then CLOSING once either side closes, CLOSED once dropped. */
  readyState = 0;

  constructor(
    readonly url: string,
    readonly requested: string,
  ) {}

  send(data: Uint8Array): void {
    this.sent.push(data.slice());
  }

  close(code?: number): void {
    this.closedWith = code ?? 1005;
    this.readyState = 2;
  }

  accept(): void {
    this.protocol = this.requested;
    this.readyState = 1;
    this.onopen?.({});
  }

  push(frame: Uint8Array): void {
    this.onmessage?.({ data: frame.slice().buffer });
  }

  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  frames(type: number): Uint8Array[] {
    return this.sent.filter((f) => f[0] === type).map((f) => f.subarray(1));
  }

  hello(): { cols: number; rows: number; resume?: { id: string; offset: number } } {
    return JSON.parse(text.decode(this.frames(0x05)[0]));
  }

  acks(): number[] {
    return this.frames(0x02).map((p) => Number(new DataView(p.buffer, p.byteOffset).getBigUint64(0)));
  }
}

export class FakeClock implements Clock {
  time = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  random(): number {
    return 0.5;
  }
  /** Runs timers in time order up to now + ms. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= end && (!first || entry[1].at < first[1].at)) first = entry;
      if (!first) break;
      this.timers.delete(first[0]);
      this.time = first[1].at;
      first[1].fn();
    }
    this.time = end;
  }
  pending(): number {
    return this.timers.size;
  }
}

export function output(offset: number, data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const out = new Uint8Array(9 + bytes.length);
  out[0] = 0x80;
  new DataView(out.buffer).setBigUint64(1, BigInt(offset));
  out.set(bytes, 9);
  return out;
}

export function json(type: number, body: unknown): Uint8Array {
  return Uint8Array.of(type, ...encoder.encode(JSON.stringify(body)));
}

/** sessionStorage as the page uses it, in memory. */
export class MemoryStub implements SessionMemory {
  constructor(public saved: SavedSession | null = null) {}
  load(): SavedSession | null {
    return this.saved;
  }
  save(session: SavedSession): void {
    this.saved = { ...session };
  }
  clear(): void {
    this.saved = null;
  }
}

export function setup(options: { renderLater?: boolean; memory?: MemoryStub } = {}) {
  const clock = new FakeClock();
  const sockets: FakeSocket[] = [];
  const screen: number[] = [];
  const pendingRenders: (() => void)[] = [];
  const states: string[] = [];
  const errors: string[] = [];
  const exits: unknown[] = [];
  const rtts: number[] = [];
  const notices: string[] = [];
  let resets = 0;
  const conn = new Connection(
    "ws://127.0.0.1/t/ws",
    {
      write: (data, done) => {
        for (const b of data) screen.push(b);
        if (options.renderLater) pendingRenders.push(done);
        else done();
      },
      size: () => ({ cols: 120, rows: 40 }),
    },
    {
      state: (s, detail) => states.push(detail ? `${s}: ${detail}` : s),
      error: (e) => errors.push(`${e.code}: ${e.message}`),
      exit: (e) => exits.push(e),
      rtt: (ms) => rtts.push(ms),
      notice: (e) => notices.push(`${e.code}: ${e.message}`),
      reset: () => {
        resets += 1;
        screen.length = 0;
      },
    },
    (url, protocol) => {
      const s = new FakeSocket(url, protocol);
      sockets.push(s);
      return s as unknown as SocketLike;
    },
    clock,
    {},
    options.memory,
  );
  const last = () => sockets[sockets.length - 1]!;
  const connect = (id = "sess-1") => {
    last().accept();
    last().push(json(0x81, { state: "connected", session_id: id, host_key_sha256: "SHA256:abc" }));
  };
  return {
    clock,
    sockets,
    screen,
    pendingRenders,
    states,
    errors,
    exits,
    rtts,
    notices,
    resets: () => resets,
    conn,
    last,
    connect,
  };
}
