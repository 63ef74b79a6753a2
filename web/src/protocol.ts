// Frames of the ec2-terminal.v1 WebSocket protocol: encoding and decoding, no DOM.
// The contract is docs/architecture.md; the server's side is app/terminal/protocol.py,
// app/terminal/closecodes.py and the TerminalError classes under app/. tests/test_contracts.py
// compares the three through web/contract.mjs.

export const SUBPROTOCOL = "ec2-terminal.v1";

export const FrameType = {
  INPUT: 0x00,
  RESIZE: 0x01,
  ACK: 0x02,
  PING: 0x03,
  PONG: 0x04,
  HELLO: 0x05,
  OUTPUT: 0x80,
  STATUS: 0x81,
  EXIT: 0x82,
  ERROR: 0x83,
} as const;

/** The server refuses client frames larger than this (app/terminal/protocol.py MAX_CLIENT_FRAME). */
export const MAX_CLIENT_FRAME = 64 * 1024;
export const MAX_TERMINAL_SIDE = 1000;

/** Close codes the server (or the WebSocket layer under it) sends, named as app/terminal/closecodes.py
 * names them. */
export const CloseCode = {
  NORMAL: 1000,
  PROTOCOL_ERROR: 1002,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
} as const;

/** The ERROR codes this page acts on (every code is shown to the user with its message). */
export const ErrorCode = {
  OUTPUT_LOST: "output_lost",
} as const;

/** The states a STATUS frame reports. */
export const STATUS_STATES = ["connecting", "connected", "resumed", "closed"] as const;

export type ConnectionState = (typeof STATUS_STATES)[number];

export interface Status {
  state: ConnectionState;
  host_key_sha256?: string;
  session_id?: string;
  [key: string]: unknown;
}

export interface Exit {
  exit_status: number | null;
  reason: string;
}

export interface ServerError {
  code: string;
  message: string;
}

export interface Resume {
  id: string;
  offset: number;
}

export type ServerFrame =
  | { type: "output"; offset: number; data: Uint8Array }
  | { type: "status"; status: Status }
  | { type: "exit"; exit: Exit }
  | { type: "error"; error: ServerError }
  | { type: "ping"; data: Uint8Array }
  | { type: "pong"; data: Uint8Array };

/** A server frame that breaks the protocol: the client closes its socket. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** An encoded client frame, ready for WebSocket.send. */
export type Frame = Uint8Array<ArrayBuffer>;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function frame(type: number, payload: Uint8Array = new Uint8Array(0)): Frame {
  const out = new Uint8Array(1 + payload.length);
  out[0] = type;
  out.set(payload, 1);
  return out;
}

function clampSide(n: number): number {
  return Math.min(MAX_TERMINAL_SIDE, Math.max(1, Math.floor(n)));
}

export function encodeHello(cols: number, rows: number, resume?: Resume): Frame {
  const body: { cols: number; rows: number; resume?: Resume } = {
    cols: clampSide(cols),
    rows: clampSide(rows),
  };
  if (resume) body.resume = { id: resume.id, offset: resume.offset };
  return frame(FrameType.HELLO, encoder.encode(JSON.stringify(body)));
}

/** INPUT frames for `data`, split so that no frame exceeds the server's limit. */
export function encodeInput(data: string | Uint8Array): Frame[] {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const chunk = MAX_CLIENT_FRAME - 1;
  const frames: Frame[] = [];
  for (let i = 0; i < bytes.length; i += chunk) {
    frames.push(frame(FrameType.INPUT, bytes.subarray(i, i + chunk)));
  }
  return frames;
}

/** Bytes from xterm's onBinary: a string whose char codes are bytes 0..255. */
export function binaryStringToBytes(data: string): Uint8Array {
  const bytes = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 0xff;
  return bytes;
}

export function encodeResize(cols: number, rows: number): Frame {
  const out = new Uint8Array(5);
  const view = new DataView(out.buffer);
  out[0] = FrameType.RESIZE;
  view.setUint16(1, clampSide(cols));
  view.setUint16(3, clampSide(rows));
  return out;
}

export function encodeAck(total: number): Frame {
  const out = new Uint8Array(9);
  out[0] = FrameType.ACK;
  new DataView(out.buffer).setBigUint64(1, BigInt(total));
  return out;
}

export function encodePing(data: Uint8Array): Frame {
  return frame(FrameType.PING, data);
}

export function encodePong(data: Uint8Array): Frame {
  return frame(FrameType.PONG, data);
}

function parseJson(payload: Uint8Array, what: string): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(payload));
  } catch {
    throw new ProtocolError(`${what} payload is not valid JSON`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ProtocolError(`${what} payload must be a JSON object`);
  }
  return body as Record<string, unknown>;
}

export function decodeServerFrame(buffer: ArrayBuffer | Uint8Array): ServerFrame {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  if (bytes.length === 0) throw new ProtocolError("empty frame");
  const payload = bytes.subarray(1);
  switch (bytes[0]) {
    case FrameType.OUTPUT: {
      if (payload.length < 8) throw new ProtocolError("OUTPUT payload must start with an 8-byte offset");
      const view = new DataView(payload.buffer, payload.byteOffset, 8);
      const offset = view.getBigUint64(0);
      if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError("OUTPUT offset too large");
      return { type: "output", offset: Number(offset), data: payload.subarray(8) };
    }
    case FrameType.STATUS: {
      const body = parseJson(payload, "STATUS");
      if (typeof body.state !== "string" || !(STATUS_STATES as readonly string[]).includes(body.state)) {
        throw new ProtocolError("STATUS has no valid state");
      }
      return { type: "status", status: body as Status };
    }
    case FrameType.EXIT: {
      const body = parseJson(payload, "EXIT");
      const status = typeof body.exit_status === "number" ? body.exit_status : null;
      const reason = typeof body.reason === "string" ? body.reason : "";
      return { type: "exit", exit: { exit_status: status, reason } };
    }
    case FrameType.ERROR: {
      const body = parseJson(payload, "ERROR");
      const code = typeof body.code === "string" ? body.code : "unknown";
      const message = typeof body.message === "string" ? body.message : "unknown error";
      return { type: "error", error: { code, message } };
    }
    case FrameType.PING:
      return { type: "ping", data: payload };
    case FrameType.PONG:
      return { type: "pong", data: payload };
    default:
      throw new ProtocolError(`unknown frame type 0x${bytes[0]!.toString(16).padStart(2, "0")}`);
  }
}
