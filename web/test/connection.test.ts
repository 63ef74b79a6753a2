import { test } from "node:test";
import assert from "node:assert/strict";

import { RELOAD_REPLAY_BYTES, socketUrl } from "../src/connection.js";
import { ACK_EVERY_BYTES } from "../src/output.js";
import { SUBPROTOCOL } from "../src/protocol.js";
import { MemoryStub, encoder, json, output, setup, text } from "./harness.js";

test("the socket URL is beside the page, with ws: or wss:", () => {
  assert.equal(socketUrl("http://h:8080/t/demo/"), "ws://h:8080/t/demo/ws");
  assert.equal(socketUrl("https://h/t/demo/?x=1#y"), "wss://h/t/demo/ws");
  assert.equal(socketUrl("http://127.0.0.1:9/"), "ws://127.0.0.1:9/ws");
});

test("opens with the subprotocol and sends HELLO with the terminal size first", () => {
  const t = setup();
  t.conn.start();
  assert.equal(t.last().requested, SUBPROTOCOL);
  assert.equal(t.last().binaryType, "arraybuffer");
  t.connect();
  assert.equal(t.last().sent[0]![0], 0x05);
  assert.deepEqual(t.last().hello(), { cols: 120, rows: 40 });
  assert.equal(t.conn.sessionId, "sess-1");
  assert.equal(t.conn.hostKey, "SHA256:abc");
  assert.deepEqual(t.states, ["connecting", "connected"]);
});

test("input and resize go out as INPUT and RESIZE; an unchanged size is not re-sent", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.conn.sendInput("ls\r");
  t.conn.resize(100, 30);
  t.conn.resize(100, 30);
  assert.deepEqual(t.last().frames(0x00).map((p) => text.decode(p)), ["ls\r"]);
  assert.deepEqual(t.last().frames(0x01).map((p) => [...p]), [[0, 100, 0, 30]]);
});

test("output is rendered once and ACKed on a short timer, or at once past 64 KiB", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().push(output(0, "hello"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "hello");
  assert.deepEqual(t.last().acks(), []);
  t.last().push(output(5, " world"));
  t.clock.advance(49);
  assert.deepEqual(t.last().acks(), []);
  t.clock.advance(1);
  assert.deepEqual(t.last().acks(), [11]);
  t.last().push(output(11, new Uint8Array(ACK_EVERY_BYTES)));
  assert.deepEqual(t.last().acks(), [11, 11 + ACK_EVERY_BYTES]);
});

test("nothing is sent on a socket the server is closing (no console error for a late ACK)", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().push(output(0, "bye"));
  t.last().readyState = 2; // the server's close frame arrived; onclose is yet to come
  t.clock.advance(1000);
  assert.deepEqual(t.last().acks(), []);
  t.conn.sendInput("x");
  assert.deepEqual(t.last().frames(0x00), []);
});

test("ACKs follow rendering, not receipt", () => {
  const t = setup({ renderLater: true });
  t.conn.start();
  t.connect();
  t.last().push(output(0, new Uint8Array(ACK_EVERY_BYTES * 3)));
  t.clock.advance(1000);
  assert.deepEqual(t.last().acks(), []);
  t.pendingRenders.shift()!();
  assert.deepEqual(t.last().acks(), [ACK_EVERY_BYTES * 3]);
});

test("a dropped socket reconnects with backoff and resumes from the bytes received", () => {
  const t = setup({ renderLater: true });
  t.conn.start();
  t.connect();
  t.last().push(output(0, "abcdef"));
  t.last().drop(1006);
  assert.equal(t.states.at(-1), "reconnecting: retrying in 0.5 s");
  t.clock.advance(499);
  assert.equal(t.sockets.length, 1);
  t.clock.advance(1);
  assert.equal(t.sockets.length, 2);
  t.last().accept();
  assert.deepEqual(t.last().hello(), { cols: 120, rows: 40, resume: { id: "sess-1", offset: 6 } });
  // The server replays an overlap: only the new part reaches the screen.
  t.last().push(json(0x81, { state: "resumed", session_id: "sess-1" }));
  t.last().push(output(4, "efgh"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "abcdefgh");
  // Rendering the old socket's bytes is ACKed on the new socket.
  t.pendingRenders.forEach((done) => done());
  t.clock.advance(50);
  assert.deepEqual(t.last().acks(), [8]);
  assert.equal(t.states.at(-1), "connected: resumed");
});

test("a new socket re-sends the rendered total right after HELLO", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().push(output(0, "abc"));
  t.last().drop();
  t.clock.advance(600);
  t.last().accept();
  assert.deepEqual(
    t.last().sent.map((f) => f[0]),
    [0x05, 0x02],
  );
  assert.deepEqual(t.last().acks(), [3]);
});

test("backoff doubles up to 10 s and resets once connected", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    const before = t.sockets.length;
    t.last().drop();
    const start = t.clock.time;
    while (t.sockets.length === before) t.clock.advance(10);
    delays.push(t.clock.time - start);
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
  t.connect();
  t.last().drop();
  assert.match(t.states.at(-1)!, /retrying in 0.5 s/);
});

test("typing while reconnecting is sent after the resume HELLO", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().drop();
  t.conn.sendInput("pwd\r");
  t.clock.advance(500);
  t.last().accept();
  assert.deepEqual(t.last().sent.map((f) => f[0]).slice(0, 2), [0x05, 0x00]);
});

test("EXIT ends the session without reconnecting", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().push(json(0x82, { exit_status: 3, reason: "the remote shell exited" }));
  t.last().drop(1000);
  t.clock.advance(60_000);
  assert.equal(t.sockets.length, 1);
  assert.deepEqual(t.exits, [{ exit_status: 3, reason: "the remote shell exited" }]);
  assert.equal(t.states.at(-1), "closed: the remote shell exited");
});

test("ERROR is final and shown", () => {
  const t = setup();
  t.conn.start();
  t.last().accept();
  t.last().push(json(0x83, { code: "host_key_mismatch", message: "host key changed" }));
  t.last().drop(1000);
  t.clock.advance(60_000);
  assert.equal(t.sockets.length, 1);
  assert.deepEqual(t.errors, ["host_key_mismatch: host key changed"]);
  assert.equal(t.states.at(-1), "closed: host key changed");
});

test("1000, 1002, 1007, 1008 and 1009 closes are fatal", () => {
  for (const code of [1000, 1002, 1007, 1008, 1009]) {
    const t = setup();
    t.conn.start();
    t.connect();
    t.last().drop(code, "bad frame");
    t.clock.advance(60_000);
    assert.equal(t.sockets.length, 1);
    assert.equal(t.states.at(-1), `closed: connection closed: bad frame (${code})`);
  }
});

test("1011, 1012 and 1013 closes without an ERROR are retried", () => {
  for (const code of [1011, 1012, 1013]) {
    const t = setup();
    t.conn.start();
    t.connect();
    t.last().drop(code, "restarting");
    t.clock.advance(60_000);
    assert.equal(t.sockets.length, 2, `close ${code}`);
  }
});

test("a server that never opens is given up after a few attempts", () => {
  const t = setup();
  t.conn.start();
  for (let i = 0; i < 10; i++) {
    t.last().drop(1006);
    t.clock.advance(20_000);
  }
  assert.equal(t.sockets.length, 5);
  assert.match(t.states.at(-1)!, /^closed: cannot reach the server/);
});

test("restart after EXIT starts a new session from offset 0", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().push(output(0, "abc"));
  t.last().push(json(0x82, { exit_status: 0, reason: "done" }));
  t.conn.restart();
  assert.equal(t.sockets.length, 2);
  t.last().accept();
  assert.deepEqual(t.last().hello(), { cols: 120, rows: 40 });
  t.last().push(output(0, "xyz"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "abcxyz");
});

test("server PINGs are answered with the same bytes; own PINGs measure RTT", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().push(Uint8Array.of(0x03, 1, 2, 3));
  assert.deepEqual(t.last().frames(0x04).map((p) => [...p]), [[1, 2, 3]]);
  const ping = t.last().frames(0x03)[0]!;
  t.clock.advance(12);
  t.last().push(Uint8Array.of(0x04, ...ping));
  assert.deepEqual(t.rtts, [12]);
});

test("a socket without PONG is dropped and resumed", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.clock.advance(20_000);
  assert.equal(t.sockets[0]!.closedWith, 4000);
  t.clock.advance(600);
  assert.equal(t.sockets.length, 2);
  t.last().accept();
  assert.equal(t.last().hello().resume?.id, "sess-1");
});

test("a server that PINGs while its socket is unread keeps it; silence after that drops it", () => {
  // A paste the target does not read: the server stops reading the socket, so the page's PING
  // waits unread behind the INPUT, and the server PINGs every 5 s instead.
  const t = setup();
  t.conn.start();
  t.connect();
  t.conn.sendInput(new Uint8Array(300_000));
  for (let s = 0; s < 120; s += 5) {
    t.clock.advance(5_000);
    t.last().push(Uint8Array.of(0x03, ...encoder.encode("stalled")));
  }
  assert.equal(t.sockets.length, 1);
  assert.equal(t.sockets[0]!.closedWith, null, "a server that says it is alive is not cut");
  assert.ok(t.last().frames(0x03).length >= 8, "the page kept pinging");
  t.clock.advance(19_999);
  assert.equal(t.sockets[0]!.closedWith, null);
  t.clock.advance(1);
  assert.equal(t.sockets[0]!.closedWith, 4000, "20 s of silence with a PING unanswered");
});

test("the PONG still decides when nothing else arrives; output is a sign of life too", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.clock.advance(15_000);
  t.last().push(output(0, "busy"));
  t.clock.advance(5_000); // 20 s after the first PING, 5 s after the output
  assert.equal(t.sockets[0]!.closedWith, null);
  t.clock.advance(14_999);
  assert.equal(t.sockets[0]!.closedWith, null);
  t.clock.advance(1);
  assert.equal(t.sockets[0]!.closedWith, 4000);
});

test("a late PONG, an earlier PING's, is a sign of life too", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  const ping = t.last().frames(0x03)[0]!;
  t.clock.advance(19_000);
  t.last().push(Uint8Array.of(0x04, ...ping));
  t.clock.advance(14_000); // before the next PING's own 20 s
  assert.equal(t.sockets[0]!.closedWith, null);
});

test("the test hook drops the socket and the session resumes", () => {
  const t = setup();
  t.conn.start();
  t.connect();
  t.last().push(output(0, "12345"));
  t.conn.dropSocket();
  assert.equal(t.sockets[0]!.closedWith, 4000);
  t.clock.advance(600);
  t.last().accept();
  assert.deepEqual(t.last().hello().resume, { id: "sess-1", offset: 5 });
});

test("a malformed frame or an output gap closes the socket for good", () => {
  for (const bad of [Uint8Array.of(0x7e), output(10, "x")]) {
    const t = setup();
    t.conn.start();
    t.connect();
    t.last().push(bad);
    assert.equal(t.sockets[0]!.closedWith, 4002);
    t.clock.advance(60_000);
    assert.equal(t.sockets.length, 1);
    assert.match(t.states.at(-1)!, /^closed: protocol error/);
  }
});

test("a server without the subprotocol is refused", () => {
  const t = setup();
  t.conn.start();
  t.last().onopen?.({});
  assert.equal(t.sockets[0]!.closedWith, 4002);
  assert.match(t.states.at(-1)!, /does not speak ec2-terminal.v1/);
});

test("keepalive waits until the server is past the SSH connect", () => {
  const t = setup();
  t.conn.start();
  t.last().accept();
  t.last().push(json(0x81, { state: "connecting", session_id: "s" }));
  t.clock.advance(60_000);
  assert.deepEqual(t.last().frames(0x03), []);
  assert.equal(t.sockets.length, 1, "a slow SSH connect is not a dead socket");
  t.last().push(json(0x81, { state: "connected", session_id: "s" }));
  assert.equal(t.last().frames(0x03).length, 1);
});

test("a reloaded page resumes its tab's session, replaying the screen and some scrollback", () => {
  const memory = new MemoryStub({ id: "sess-7", offset: RELOAD_REPLAY_BYTES + 1000 });
  const t = setup({ memory });
  t.conn.start();
  assert.deepEqual(t.states, ["reconnecting"]);
  t.last().accept();
  assert.deepEqual(t.last().hello().resume, { id: "sess-7", offset: 1000 });
  t.last().push(json(0x81, { state: "resumed", session_id: "sess-7", offset: 1000 }));
  t.last().push(output(1000, "replayed"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "replayed");
  assert.deepEqual(t.states.at(-1), "connected: resumed");
  t.conn.remember();
  assert.deepEqual(memory.saved, { id: "sess-7", offset: 1008 });
  assert.deepEqual(t.errors, []);
});

test("a session noted on connect is forgotten once it ends", () => {
  const memory = new MemoryStub();
  const t = setup({ memory });
  t.conn.start();
  t.connect("sess-2");
  assert.deepEqual(memory.saved, { id: "sess-2", offset: 0 });
  t.last().push(json(0x82, { exit_status: 0, reason: "the remote shell exited" }));
  assert.equal(memory.saved, null);
  t.conn.remember();
  assert.equal(memory.saved, null, "an ended session is not resumed by a reload");
});

test("when the reloaded page's session is gone, a new one starts without an error", () => {
  const memory = new MemoryStub({ id: "expired", offset: 50 });
  const t = setup({ memory });
  t.conn.start();
  t.last().accept();
  t.conn.remember();
  assert.deepEqual(memory.saved, { id: "expired", offset: 50 }, "unconfirmed: kept as it was");
  t.last().push(json(0x83, { code: "session_not_found", message: "no such session" }));
  assert.equal(t.sockets.length, 2);
  assert.deepEqual(t.errors, []);
  t.connect("fresh");
  assert.deepEqual(t.last().hello(), { cols: 120, rows: 40 });
  assert.deepEqual(memory.saved, { id: "fresh", offset: 0 });
  t.last().push(output(0, "$ "));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "$ ");
});

test("a reloaded page whose replay is gone resumes from where it was, without the replay", () => {
  const memory = new MemoryStub({ id: "busy", offset: RELOAD_REPLAY_BYTES + 5 });
  const t = setup({ memory });
  t.conn.start();
  t.last().accept();
  assert.equal(t.last().hello().resume?.offset, 5);
  t.last().push(json(0x83, { code: "output_lost", message: "cannot resume from byte 5" }));
  assert.equal(t.sockets.length, 2);
  t.last().accept();
  assert.deepEqual(t.last().hello().resume, { id: "busy", offset: RELOAD_REPLAY_BYTES + 5 });
  t.last().push(json(0x81, { state: "resumed", session_id: "busy" }));
  t.last().push(output(RELOAD_REPLAY_BYTES + 5, "on"));
  assert.equal(text.decode(Uint8Array.from(t.screen)), "on");
  assert.deepEqual(t.errors, []);
  assert.equal(t.states.at(-1), "connected: resumed");
});
