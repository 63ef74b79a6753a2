import { test } from "node:test";
import assert from "node:assert/strict";

import { formatBytes, parseListing, playerThemeCss, selectedName, startedAt } from "../src/recordinglist.js";

const entry = { name: "20250102T030405Z-abcdefghijklmnop.cast", bytes: 2048, modified: 1735787045 };

test("the list keeps only well-formed entries", () => {
  const listing = parseListing(200, {
    enabled: true,
    recordings: [entry, { name: "../token", bytes: 1, modified: 1 }, { name: "x.cast" }, "junk"],
  });
  assert.deepEqual(listing, { kind: "list", enabled: true, recordings: [entry] });
  assert.deepEqual(parseListing(200, { enabled: false, recordings: [] }), { kind: "list", enabled: false, recordings: [] });
});

test("a refusal asks to sign in; other failures say what happened", () => {
  const unauthorized = parseListing(401, null);
  assert.equal(unauthorized.kind, "problem");
  assert.ok(unauthorized.kind === "problem" && unauthorized.signIn);
  const broken = parseListing(500, null);
  assert.ok(broken.kind === "problem" && !broken.signIn && broken.message.includes("HTTP 500"));
});

test("start times come from the names", () => {
  assert.equal(startedAt(entry.name)?.toISOString(), "2025-01-02T03:04:05.000Z");
  assert.equal(startedAt("other.cast"), null);
});

test("sizes read like sizes", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(2048), "2.0 KiB");
  assert.equal(formatBytes(64 * 1024 * 1024), "64 MiB");
  assert.equal(formatBytes(3 * 1024 ** 4), "3072 GiB");
});

test("only a recording's name in the address is played", () => {
  assert.equal(selectedName(`#${entry.name}`), entry.name);
  assert.equal(selectedName("#..%2Ftoken"), null);
  assert.equal(selectedName("#%E0%A4%A"), null);
  assert.equal(selectedName(""), null);
});

test("the player theme lists the colors as custom properties", () => {
  const css = playerThemeCss(".t", "#fff", "#000", ["#111", "#222"]);
  assert.equal(css, ".t { --term-color-foreground: #fff; --term-color-background: #000; --term-color-0: #111; --term-color-1: #222; }");
});
