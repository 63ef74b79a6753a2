import { test } from "node:test";
import assert from "node:assert/strict";

import { ACK_EVERY_BYTES, OutputStream } from "../src/output.js";
import { ProtocolError } from "../src/protocol.js";

const bytes = (...b: number[]) => Uint8Array.from(b);

test("new output is passed through and counted", () => {
  const s = new OutputStream();
  assert.deepEqual(s.accept(0, bytes(1, 2, 3)), bytes(1, 2, 3));
  assert.deepEqual(s.accept(3, bytes(4)), bytes(4));
  assert.equal(s.received, 4);
});

test("a replay of what was received is dropped, an overlap trimmed", () => {
  const s = new OutputStream();
  s.accept(0, bytes(1, 2, 3, 4));
  assert.equal(s.accept(0, bytes(1, 2)), null);
  assert.equal(s.accept(2, bytes(3, 4)), null);
  assert.deepEqual(s.accept(2, bytes(3, 4, 5, 6)), bytes(5, 6));
  assert.equal(s.received, 6);
  assert.equal(s.accept(6, bytes()), null);
});

test("a gap in the offsets is a protocol error and changes nothing", () => {
  const s = new OutputStream();
  s.accept(0, bytes(1));
  assert.throws(() => s.accept(5, bytes(9)), ProtocolError);
  assert.equal(s.received, 1);
});

test("ACKs report rendered bytes, once each, urgent past the threshold", () => {
  const s = new OutputStream();
  assert.equal(s.takeAck(), null);
  s.accept(0, new Uint8Array(ACK_EVERY_BYTES + 110));
  s.markRendered(100);
  assert.equal(s.ackUrgent(), false);
  assert.equal(s.takeAck(), 100);
  assert.equal(s.takeAck(), null);
  s.markRendered(ACK_EVERY_BYTES - 1);
  assert.equal(s.ackUrgent(), false);
  s.markRendered(1);
  assert.equal(s.ackUrgent(), true);
  s.markRendered(1000);
  assert.equal(s.takeAck(), ACK_EVERY_BYTES + 110, "rendered never exceeds received");
});

test("a new socket re-sends the rendered total; reset starts at zero", () => {
  const s = new OutputStream();
  assert.equal(s.newSocket(), null);
  s.accept(0, bytes(1, 2, 3));
  s.markRendered(3);
  assert.equal(s.takeAck(), 3);
  assert.equal(s.newSocket(), 3);
  s.reset();
  assert.equal(s.received, 0);
  assert.equal(s.rendered, 0);
  assert.deepEqual(s.accept(0, bytes(7)), bytes(7));
});
