import { test } from "node:test";
import assert from "node:assert/strict";

import {
  FrameType,
  MAX_CLIENT_FRAME,
  ProtocolError,
  binaryStringToBytes,
  decodeServerFrame,
  encodeAck,
  encodeHello,
  encodeInput,
  encodePing,
  encodePong,
  encodeResize,
} from "../src/protocol.js";

const text = new TextDecoder();

function output(offset: bigint, data: number[]): Uint8Array {
  const out = new Uint8Array(9 + data.length);
  out[0] = 0x80;
  new DataView(out.buffer).setBigUint64(1, offset);
  out.set(data, 9);
  return out;
}

function json(type: number, body: unknown): Uint8Array {
  const payload = new TextEncoder().encode(JSON.stringify(body));
  return Uint8Array.of(type, ...payload);
}

test("HELLO carries the size and an optional resume", () => {
  const hello = encodeHello(100, 30);
  assert.equal(hello[0], 0x05);
  assert.deepEqual(JSON.parse(text.decode(hello.subarray(1))), { cols: 100, rows: 30 });
  const resume = encodeHello(80, 24, { id: "abc", offset: 1234 });
  assert.deepEqual(JSON.parse(text.decode(resume.subarray(1))), {
    cols: 80,
    rows: 24,
    resume: { id: "abc", offset: 1234 },
  });
});

test("sizes are clamped to the protocol's 1..1000", () => {
  assert.deepEqual(JSON.parse(text.decode(encodeHello(0, 5000).subarray(1))), { cols: 1, rows: 1000 });
  assert.deepEqual([...encodeResize(2000, 0)], [0x01, 0x03, 0xe8, 0x00, 0x01]);
});

test("RESIZE is cols then rows, u16 big-endian", () => {
  assert.deepEqual([...encodeResize(100, 30)], [0x01, 0x00, 100, 0x00, 30]);
  assert.deepEqual([...encodeResize(300, 258)], [0x01, 0x01, 0x2c, 0x01, 0x02]);
});

test("ACK is a u64 big-endian", () => {
  assert.deepEqual([...encodeAck(0x0102030405)], [0x02, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05]);
  assert.deepEqual([...encodeAck(2 ** 53 - 1)], [0x02, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
});

test("INPUT is UTF-8 and split below the server's frame limit", () => {
  assert.deepEqual([...encodeInput("é\r")[0]!], [0x00, 0xc3, 0xa9, 0x0d]);
  const big = new Uint8Array(MAX_CLIENT_FRAME * 2 + 10).fill(0x61);
  const frames = encodeInput(big);
  assert.equal(frames.length, 3);
  for (const f of frames) {
    assert.equal(f[0], FrameType.INPUT);
    assert.ok(f.length <= MAX_CLIENT_FRAME);
  }
  assert.equal(frames.reduce((n, f) => n + f.length - 1, 0), big.length);
  assert.deepEqual(encodeInput(""), []);
});

test("onBinary strings become the bytes they stand for", () => {
  assert.deepEqual([...binaryStringToBytes("\x1b[M \xff!")], [0x1b, 0x5b, 0x4d, 0x20, 0xff, 0x21]);
});

test("PING and PONG carry opaque bytes", () => {
  assert.deepEqual([...encodePing(Uint8Array.of(1, 2))], [0x03, 1, 2]);
  assert.deepEqual([...encodePong(Uint8Array.of(9))], [0x04, 9]);
});

test("OUTPUT decodes its offset and bytes", () => {
  const f = decodeServerFrame(output(5000n, [0x68, 0x69]));
  assert.equal(f.type, "output");
  if (f.type !== "output") return;
  assert.equal(f.offset, 5000);
  assert.deepEqual([...f.data], [0x68, 0x69]);
  const empty = decodeServerFrame(output(0n, []));
  assert.ok(empty.type === "output" && empty.data.length === 0);
});

test("decoding accepts an ArrayBuffer and a view into a larger buffer", () => {
  const framed = output(7n, [1, 2, 3]);
  const f = decodeServerFrame(framed.slice().buffer);
  assert.ok(f.type === "output" && f.offset === 7);
  const outer = new Uint8Array(framed.length + 4);
  outer.set(framed, 4);
  const g = decodeServerFrame(outer.subarray(4));
  assert.ok(g.type === "output" && g.offset === 7 && g.data.length === 3);
});

test("STATUS, EXIT and ERROR decode their JSON", () => {
  const status = decodeServerFrame(
    json(0x81, { state: "connected", host_key_sha256: "SHA256:x", session_id: "s1", extra: 1 }),
  );
  assert.ok(status.type === "status");
  assert.equal(status.status.session_id, "s1");
  assert.deepEqual(decodeServerFrame(json(0x82, { exit_status: 3, reason: "the shell exited" })), {
    type: "exit",
    exit: { exit_status: 3, reason: "the shell exited" },
  });
  assert.deepEqual(decodeServerFrame(json(0x82, { exit_status: null, reason: "idle" })), {
    type: "exit",
    exit: { exit_status: null, reason: "idle" },
  });
  assert.deepEqual(decodeServerFrame(json(0x83, { code: "auth_failed", message: "no" })), {
    type: "error",
    error: { code: "auth_failed", message: "no" },
  });
});

test("PING from the server decodes, to be answered with the same bytes", () => {
  assert.deepEqual(decodeServerFrame(Uint8Array.of(0x03, 7, 8)), { type: "ping", data: Uint8Array.of(7, 8) });
});

test("malformed server frames are protocol errors", () => {
  const bad = [
    new Uint8Array(0),
    Uint8Array.of(0x80, 0, 0, 0),
    Uint8Array.of(0x7f),
    Uint8Array.of(0x00, 1),
    Uint8Array.of(0x81, 0x7b),
    json(0x81, ["connected"]),
    json(0x81, { state: "sleeping" }),
    Uint8Array.of(0x82, 0xff, 0xfe),
    output(2n ** 60n, [1]),
  ];
  for (const frame of bad) assert.throws(() => decodeServerFrame(frame), ProtocolError, `frame ${[...frame]}`);
});
