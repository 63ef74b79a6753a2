import { test } from "node:test";
import assert from "node:assert/strict";

import { MemoryStub, json, output, setup, text } from "./harness.js";

const VIEWING = { state: "viewing", host_key_sha256: "SHA256:abc", offset: 500, viewers: 1, cols: 90, rows: 30 };

function watching(memory?: MemoryStub) {
  const t = setup({ memory });
  t.conn.watch("view-1");
  t.conn.start();
  t.last().accept();
  t.last().push(json(0x81, VIEWING));
  return t;
}

test("a viewer joins with its view id, takes the replay's offset and sends no keys or sizes", () => {
  const t = watching();
  assert.deepEqual(t.last().hello(), { cols: 120, rows: 40, view: { id: "view-1" } });
  assert.equal(t.conn.viewing, true);
  assert.equal(t.conn.sessionId, null);
  assert.deepEqual(t.states, ["connecting", "connected: watching read-only"]);
  t.last().push(output(500, "screen"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "screen");
  t.conn.sendInput("rm -rf /\r");
  t.conn.resize(10, 10);
  assert.deepEqual(t.last().frames(0x00), []);
  assert.deepEqual(t.last().frames(0x01), []);
});

test("a viewer that lost its socket continues from the output it received", () => {
  const t = watching();
  t.last().push(output(500, "abc"));
  t.last().drop();
  t.clock.advance(1000);
  t.last().accept();
  assert.deepEqual(t.last().hello(), { cols: 120, rows: 40, view: { id: "view-1", offset: 503 } });
  t.last().push(json(0x81, { ...VIEWING, offset: 503 }));
  t.last().push(output(503, "def"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "abcdef");
});

test("read_only is shown and ends nothing", () => {
  const t = watching();
  t.last().push(json(0x83, { code: "read_only", message: "read-only" }));
  assert.deepEqual(t.notices, ["read_only: read-only"]);
  assert.deepEqual(t.errors, []);
  t.last().push(output(500, "still"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "still");
});

test("a viewer that fell behind clears its screen and joins again afresh", () => {
  const t = watching();
  t.last().push(output(500, "old"));
  t.last().push(json(0x83, { code: "viewer_too_slow", message: "too slow" }));
  assert.equal(t.resets(), 1);
  assert.deepEqual(t.errors, []);
  t.clock.advance(1000);
  t.last().accept();
  assert.deepEqual(t.last().hello(), { cols: 120, rows: 40, view: { id: "view-1" } });
  t.last().push(json(0x81, { ...VIEWING, offset: 9000 }));
  t.last().push(output(9000, "new"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "new");
});

test("a viewer neither resumes nor writes the tab's own session", () => {
  const memory = new MemoryStub({ id: "own-session", offset: 10 });
  const t = watching(memory);
  assert.equal(t.last().hello().resume, undefined);
  t.conn.remember();
  assert.deepEqual(memory.saved, { id: "own-session", offset: 10 });
});
