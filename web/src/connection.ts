// The WebSocket to the session server: HELLO, resume after a drop, ACKs, keepalive. No DOM:
// the socket, the clock and the terminal are passed in, so node's test runner can drive it.

import {
  CloseCode,
  ErrorCode,
  SUBPROTOCOL,
  decodeServerFrame,
  encodeAck,
  encodeHello,
  encodeInput,
  encodePing,
  encodePong,
  encodeResize,
  ProtocolError,
  type Exit,
  type Frame,
  type ServerError,
  type Status,
} from "./protocol.js";
import { OutputStream } from "./output.js";

/** The WebSocket URL beside the page: P + "ws", with ws: or wss: as the page uses http: or https:. */
export function socketUrl(base: string): string {
  const url = new URL("ws", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.search = "";
  return url.toString();
}

/** What the status bar shows. */
export type UiState = "connecting" | "connected" | "reconnecting" | "closed";

/** The subset of the browser's WebSocket this module uses. */
export type SocketLike = Pick<
  WebSocket,
  | "binaryType"
  | "protocol"
  | "readyState"
  | "onopen"
  | "onmessage"
  | "onclose"
  | "onerror"
  | "send"
  | "close"
>;

/** WebSocket.OPEN, spelled out: the constant is not on every runtime's global (node's tests). */
const SOCKET_OPEN = 1;

export type SocketFactory = (url: string, protocol: string) => SocketLike;

/** The terminal: renders bytes and calls `done` once they are on screen. */
export interface Renderer {
  write(data: Uint8Array, done: () => void): void;
  size(): { cols: number; rows: number };
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
}

export interface ConnectionEvents {
  state(state: UiState, detail: string): void;
  status?(status: Status): void;
  exit?(exit: Exit): void;
  error?(error: ServerError): void;
  rtt?(ms: number): void;
  /** Every new output byte, in order, as handed to the renderer (for tests and recordings). */
  output?(data: Uint8Array): void;
  /** A refusal the connection outlives (a viewer's keys, `read_only`): show it, nothing ends. */
  notice?(error: ServerError): void;
  /** The screen must be cleared: a viewer that fell behind joins again with a fresh replay. */
  reset?(): void;
}

export interface ConnectionOptions {
  /** First reconnect delay; it doubles per failed attempt up to `maxBackoffMs`, with ±20% jitter. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** ACK rendered output at most this long after it rendered (sooner after ACK_EVERY_BYTES). */
  ackDelayMs: number;
  pingIntervalMs: number;
  /**
   * A socket is dead, dropped and reconnected, once a PING has waited this long for its PONG
   * and this long has passed since anything else arrived (see `watchPong`).
   */
  pongTimeoutMs: number;
  /** Without a session to resume, give up after this many attempts in a row that never opened. */
  maxFailedOpens: number;
  /** Typed while reconnecting, sent once the session is back; beyond this it is dropped. */
  maxPendingInput: number;
}

export const DEFAULT_OPTIONS: ConnectionOptions = {
  initialBackoffMs: 500,
  maxBackoffMs: 10_000,
  ackDelayMs: 50,
  pingIntervalMs: 15_000,
  pongTimeoutMs: 20_000,
  maxFailedOpens: 5,
  maxPendingInput: 4096,
};

/** Where the page keeps its session across a reload: this tab's sessionStorage in the browser. */
export interface SessionMemory {
  load(): SavedSession | null;
  save(session: SavedSession): void;
  clear(): void;
}

export interface SavedSession {
  id: string;
  /** Output bytes the page had received. */
  offset: number;
}

export const NO_MEMORY: SessionMemory = { load: () => null, save: () => {}, clear: () => {} };

/** Output a reloaded page asks the server to replay: the screen and some scrollback. */
export const RELOAD_REPLAY_BYTES = 256 * 1024;

/** Close codes after which reconnecting cannot help (RFC 6455 7.4.1). */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.NORMAL,
  CloseCode.PROTOCOL_ERROR,
  CloseCode.INVALID_PAYLOAD,
  CloseCode.POLICY_VIOLATION,
  CloseCode.MESSAGE_TOO_BIG,
]);
/** Close codes this client sends: browsers allow only 1000 and the 3000-4999 range. */
export const CLOSE_DROPPED = 4000;
export const CLOSE_PROTOCOL_ERROR = 4002;

export class Connection {
  readonly stream = new OutputStream();
  sessionId: string | null = null;
  hostKey: string | null = null;
  uiState: UiState = "connecting";

  private socket: SocketLike | null = null;
  private opened = false;
  /** EXIT or ERROR arrived, or the close was fatal: no reconnect until `restart()`. */
  private final = false;
  private attempt = 0;
  private failedOpens = 0;
  private reconnectTimer: unknown = null;
  private ackTimer: unknown = null;
  private pingTimer: unknown = null;
  private pongTimer: unknown = null;
  private pingSeq = 0;
  private pingSent: { seq: number; at: number } | null = null;
  /** When the current socket last received a frame, any frame. */
  private heardAt = 0;
  private pending: Frame[] = [];
  private pendingBytes = 0;
  private lastSize: { cols: number; rows: number } | null = null;
  /**
   * While resuming, unconfirmed, the session a previous load of this page left behind: where its
   * output had got to, the fallback when the replay before it is gone. Null otherwise.
   */
  private restoredOffset: number | null = null;
  /** The view id of the shared session this page watches read-only; null for its owner. */
  private viewId: string | null = null;
  /** Whether this viewer has joined: joining again continues from the output it received. */
  private viewJoined = false;
  private readonly options: ConnectionOptions;

  constructor(
    private readonly url: string,
    private readonly renderer: Renderer,
    private readonly events: ConnectionEvents,
    private readonly openSocket: SocketFactory,
    private readonly clock: Clock,
    options: Partial<ConnectionOptions> = {},
    private readonly memory: SessionMemory = NO_MEMORY,
  ) {
    this.options = { ...DEFAULT_OPTIONS, ...options };
  }

  /** Watches the session shared as `viewId`, read-only, instead of starting one (before `start`). */
  watch(viewId: string): void {
    this.viewId = viewId;
    this.viewJoined = false;
  }

  /** Whether this page watches someone else's session, read-only. */
  get viewing(): boolean {
    return this.viewId !== null;
  }

  /** Connects: resumes the session this tab had before a reload, else starts a new one. */
  start(): void {
    const saved = this.viewId === null ? this.memory.load() : null;
    if (saved) {
      this.sessionId = saved.id;
      this.stream.reset(Math.max(0, saved.offset - RELOAD_REPLAY_BYTES));
      this.restoredOffset = saved.offset;
    }
    this.open();
  }

  /** Notes the session and how far its output got, for a reload of the page to resume. */
  remember(): void {
    if (this.sessionId && !this.final && this.restoredOffset === null && this.viewId === null) {
      this.memory.save({ id: this.sessionId, offset: this.stream.received });
    }
  }

  /** Starts a fresh session after the last one ended. */
  restart(): void {
    this.memory.clear();
    this.restoredOffset = null;
    this.teardown();
    this.final = false;
    this.sessionId = null;
    this.viewJoined = false;
    this.hostKey = null;
    this.attempt = 0;
    this.failedOpens = 0;
    this.stream.reset();
    this.open();
  }

  /** Drops the socket as a network failure would, and lets reconnect-and-resume take over. */
  dropSocket(): void {
    if (this.socket && !this.final) this.abandon("connection dropped");
  }

  /** Reconnects now instead of waiting for the backoff (e.g. when the browser is back online). */
  reconnectNow(): void {
    if (this.reconnectTimer !== null && !this.final) {
      this.clock.clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      this.open();
    }
  }

  sendInput(data: string | Uint8Array): void {
    if (this.final || this.viewId !== null) return;
    const frames = encodeInput(data);
    if (this.opened) {
      for (const f of frames) this.send(f);
      return;
    }
    for (const f of frames) {
      if (this.pendingBytes + f.length > this.options.maxPendingInput) return;
      this.pending.push(f);
      this.pendingBytes += f.length;
    }
  }

  resize(cols: number, rows: number): void {
    if (this.viewId !== null) return; // a viewer takes the owner's size
    if (this.lastSize && this.lastSize.cols === cols && this.lastSize.rows === rows) return;
    this.lastSize = { cols, rows };
    // Before HELLO the size travels in HELLO itself.
    if (this.opened) this.send(encodeResize(cols, rows));
  }

  private open(): void {
    this.reconnectTimer = null;
    this.setState(this.joined() ? "reconnecting" : "connecting", "");
    let socket: SocketLike;
    try {
      socket = this.openSocket(this.url, SUBPROTOCOL);
    } catch (err) {
      this.finish(`cannot open the connection: ${String(err)}`);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.opened = false;
    socket.onopen = () => this.onOpen(socket);
    socket.onmessage = (ev) => this.onMessage(socket, ev.data);
    socket.onclose = (ev) => this.onClose(socket, ev.code, ev.reason);
    socket.onerror = () => {
      // The close event that follows carries what there is to know.
    };
  }

  private onOpen(socket: SocketLike): void {
    if (socket !== this.socket) return;
    if (socket.protocol !== SUBPROTOCOL) {
      this.finish(`the server does not speak ${SUBPROTOCOL}`, CLOSE_PROTOCOL_ERROR);
      return;
    }
    this.opened = true;
    this.failedOpens = 0;
    const size = this.renderer.size();
    this.lastSize = size;
    if (!this.joined()) this.stream.reset();
    const resume = this.sessionId ? { id: this.sessionId, offset: this.stream.received } : undefined;
    this.send(encodeHello(size.cols, size.rows, resume, this.viewRequest()));
    const ack = this.stream.newSocket();
    if (ack !== null) this.send(encodeAck(ack));
    for (const f of this.pending) this.send(f);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private onMessage(socket: SocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    this.heardAt = this.clock.now();
    if (!(data instanceof ArrayBuffer)) {
      this.protocolFailure(new ProtocolError("text frames are not part of the protocol"));
      return;
    }
    let frame;
    try {
      frame = decodeServerFrame(data);
    } catch (err) {
      this.protocolFailure(err instanceof ProtocolError ? err : new ProtocolError(String(err)));
      return;
    }
    switch (frame.type) {
      case "output": {
        let fresh: Uint8Array | null;
        try {
          fresh = this.stream.accept(frame.offset, frame.data);
        } catch (err) {
          this.protocolFailure(err as ProtocolError);
          return;
        }
        if (fresh === null || fresh.length === 0) return;
        const length = fresh.length;
        this.events.output?.(fresh);
        this.renderer.write(fresh, () => this.onRendered(length));
        return;
      }
      case "status": {
        const st = frame.status;
        if (typeof st.session_id === "string" && st.session_id) this.sessionId = st.session_id;
        if (typeof st.host_key_sha256 === "string" && st.host_key_sha256) {
          this.hostKey = st.host_key_sha256;
        }
        if (st.state === "connected" || st.state === "resumed") {
          this.attempt = 0;
          this.restoredOffset = null;
          this.remember();
          // Keepalive starts once the server is past the SSH connect, which may hold PONGs back.
          if (this.pingTimer === null && this.pongTimer === null) this.ping();
          this.setState("connected", st.state === "resumed" ? "resumed" : "");
        } else if (st.state === "viewing") {
          if (!this.viewJoined) this.stream.reset(st.offset ?? 0);
          this.viewJoined = true;
          this.attempt = 0;
          if (this.pingTimer === null && this.pongTimer === null) this.ping();
          this.setState("connected", "watching read-only");
        } else if (st.state === "connecting") {
          this.setState(this.uiState === "reconnecting" ? "reconnecting" : "connecting", "");
        }
        this.events.status?.(st);
        return;
      }
      case "exit":
        this.markFinal();
        this.flushAck();
        this.events.exit?.(frame.exit);
        this.setState("closed", frame.exit.reason);
        return;
      case "error":
        if (frame.error.code === ErrorCode.READ_ONLY) {
          this.events.notice?.(frame.error);
          return;
        }
        if (this.viewId !== null && this.rejoinAfter(frame.error.code)) return;
        if (this.restoredOffset !== null) {
          if (frame.error.code === ErrorCode.OUTPUT_LOST && this.stream.received < this.restoredOffset) {
            // The replay is gone but the session is not: resume from where the page was.
            this.stream.reset(this.restoredOffset);
            this.teardown();
            this.open();
            return;
          }
          // The session this tab had is gone (ended or expired): start a new one.
          this.restart();
          return;
        }
        this.markFinal();
        this.events.error?.(frame.error);
        this.setState("closed", frame.error.message);
        return;
      case "ping":
        this.send(encodePong(frame.data));
        return;
      case "pong":
        this.onPong(frame.data);
        return;
    }
  }

  private onClose(socket: SocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return;
    const wasOpened = this.opened;
    this.clearSocketTimers();
    this.socket = null;
    this.opened = false;
    if (this.final) {
      if (this.uiState !== "closed") this.setState("closed", reason || "connection closed");
      return;
    }
    if (FATAL_CLOSE_CODES.has(code)) {
      this.finish(reason ? `connection closed: ${reason} (${code})` : `connection closed (${code})`);
      return;
    }
    if (!wasOpened) this.failedOpens += 1;
    this.scheduleReconnect();
  }

  /** Forgets a socket at once (a dead network may take minutes to report the close). */
  private abandon(why: string): void {
    const socket = this.socket;
    if (!socket) return;
    this.clearSocketTimers();
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(CLOSE_DROPPED, why);
    } catch {
      // Already closing: nothing more to do.
    }
    this.socket = null;
    this.opened = false;
    this.scheduleReconnect();
  }

  /** Whether there is a session to come back to: this page's own, or one it watches. */
  private joined(): boolean {
    return this.sessionId !== null || this.viewJoined;
  }

  /** HELLO's `view` for a viewer: where to continue, once it has joined. */
  private viewRequest(): { id: string; offset?: number } | undefined {
    if (this.viewId === null) return undefined;
    return this.viewJoined ? { id: this.viewId, offset: this.stream.received } : { id: this.viewId };
  }

  /** A viewer that fell behind (or lost its place) joins again with a fresh replay. */
  private rejoinAfter(code: string): boolean {
    if (code !== ErrorCode.VIEWER_TOO_SLOW && !(code === ErrorCode.OUTPUT_LOST && this.viewJoined)) {
      return false;
    }
    this.teardown();
    this.viewJoined = false;
    this.stream.reset();
    this.events.reset?.();
    this.scheduleReconnect();
    return true;
  }

  private scheduleReconnect(): void {
    if (!this.joined() && this.failedOpens >= this.options.maxFailedOpens) {
      this.finish("cannot reach the server");
      return;
    }
    const base = Math.min(
      this.options.maxBackoffMs,
      this.options.initialBackoffMs * 2 ** Math.min(this.attempt, 30),
    );
    const delay = Math.round(base * (0.8 + 0.4 * this.clock.random()));
    this.attempt += 1;
    this.setState(this.joined() ? "reconnecting" : "connecting", `retrying in ${(delay / 1000).toFixed(1)} s`);
    this.reconnectTimer = this.clock.setTimeout(() => this.open(), delay);
  }

  private onRendered(bytes: number): void {
    this.stream.markRendered(bytes);
    if (!this.opened) return;
    if (this.stream.ackUrgent()) {
      this.flushAck();
    } else if (this.ackTimer === null) {
      this.ackTimer = this.clock.setTimeout(() => {
        this.ackTimer = null;
        this.flushAck();
      }, this.options.ackDelayMs);
    }
  }

  private flushAck(): void {
    if (this.ackTimer !== null) {
      this.clock.clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
    if (!this.opened) return;
    const ack = this.stream.takeAck();
    if (ack !== null) this.send(encodeAck(ack));
  }

  private ping(): void {
    this.pingTimer = null;
    if (!this.opened) return;
    this.pingSeq = (this.pingSeq + 1) >>> 0;
    const payload = new Uint8Array(4);
    new DataView(payload.buffer).setUint32(0, this.pingSeq);
    this.pingSent = { seq: this.pingSeq, at: this.clock.now() };
    this.send(encodePing(payload));
    if (this.pongTimer === null) this.watchPong(this.options.pongTimeoutMs);
    this.pingTimer = this.clock.setTimeout(() => this.ping(), this.options.pingIntervalMs);
  }

  /**
   * Drops the socket if, `delay` from now, the PING is still unanswered and nothing else has
   * arrived for `pongTimeoutMs` either. Any frame is a sign of life: behind a large paste
   * into a target that reads nothing, the server stops reading this socket (its input backlog
   * is full), so the PING waits unread behind the INPUT; the server PINGs the page meanwhile
   * instead. Cutting such a socket would lose the paste still queued in it.
   */
  private watchPong(delay: number): void {
    this.pongTimer = this.clock.setTimeout(() => {
      this.pongTimer = null;
      const quiet = this.clock.now() - this.heardAt;
      if (quiet < this.options.pongTimeoutMs) this.watchPong(this.options.pongTimeoutMs - quiet);
      else this.abandon("no answer to keepalive");
    }, delay);
  }

  private onPong(data: Uint8Array): void {
    if (data.length !== 4 || !this.pingSent) return;
    const seq = new DataView(data.buffer, data.byteOffset, 4).getUint32(0);
    if (seq !== this.pingSent.seq) return;
    if (this.pongTimer !== null) {
      this.clock.clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }
    this.events.rtt?.(this.clock.now() - this.pingSent.at);
    this.pingSent = null;
  }

  private protocolFailure(err: ProtocolError): void {
    this.finish(`protocol error: ${err.message}`, CLOSE_PROTOCOL_ERROR);
  }

  private finish(message: string, closeCode = 1000): void {
    this.markFinal();
    this.teardown(closeCode);
    this.events.error?.({ code: "client_error", message });
    this.setState("closed", message);
  }

  /** No reconnect from here on, and nothing for a reload to resume. */
  private markFinal(): void {
    this.final = true;
    this.memory.clear();
  }

  private send(data: Frame): void {
    // A socket the server is closing still takes send(), but the browser logs an error for
    // each call (a timer's ACK or PING racing the close): what it would send is moot anyway.
    if (this.socket?.readyState === SOCKET_OPEN) this.socket.send(data);
  }

  private clearSocketTimers(): void {
    for (const t of [this.ackTimer, this.pingTimer, this.pongTimer]) {
      if (t !== null) this.clock.clearTimeout(t);
    }
    this.ackTimer = this.pingTimer = this.pongTimer = null;
    this.pingSent = null;
  }

  private teardown(closeCode = 1000): void {
    this.clearSocketTimers();
    if (this.reconnectTimer !== null) this.clock.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const socket = this.socket;
    this.socket = null;
    this.opened = false;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(closeCode, closeCode === 1000 ? "client closed" : "protocol error");
      } catch {
        // Already closed.
      }
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  private setState(state: UiState, detail: string): void {
    this.uiState = state;
    this.events.state(state, detail);
  }
}
