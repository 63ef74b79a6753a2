import { test } from "node:test";
import assert from "node:assert/strict";

import { MAX_OSC52_BYTES, osc52Handler, parseOsc52 } from "../src/clipboard.js";
import {
  DEFAULT_FONT_SIZE,
  FONT_SIZE_KEY,
  MAX_FONT_SIZE,
  MIN_FONT_SIZE,
  clampFontSize,
  fontStepForKey,
  loadFontSize,
  saveFontSize,
  stepFontSize,
} from "../src/fontsize.js";
import { DEFAULT_CONFIG, parseConfig } from "../src/pageconfig.js";
import { DARK, LIGHT, followSystemScheme, paletteOf, themeFor, type SchemeQuery } from "../src/theme.js";

const b64 = (text: string): string => Buffer.from(text, "utf8").toString("base64");

test("OSC 52 writes decode as UTF-8; queries and junk are told apart", () => {
  assert.deepEqual(parseOsc52(`c;${b64("héllo ✓")}`), { kind: "write", text: "héllo ✓" });
  assert.deepEqual(parseOsc52(`;${b64("x")}`), { kind: "write", text: "x" });
  assert.deepEqual(parseOsc52("c;"), { kind: "write", text: "" });
  assert.deepEqual(parseOsc52("c;?"), { kind: "query" });
  for (const bad of ["no-semicolon", "z;aGk=", "c;a$b=", "c;abc", `c;${"A".repeat(Math.ceil(MAX_OSC52_BYTES / 3) * 4 + 4)}`]) {
    assert.equal(parseOsc52(bad).kind, "invalid", bad.slice(0, 20));
  }
});

test("the OSC 52 handler writes only while enabled and always consumes the sequence", () => {
  const written: string[] = [];
  let enabled = false;
  const handle = osc52Handler(() => enabled, (t) => written.push(t));
  assert.equal(handle(`c;${b64("one")}`), true);
  assert.deepEqual(written, []);
  enabled = true;
  assert.equal(handle(`c;${b64("two")}`), true);
  assert.equal(handle("c;?"), true);
  assert.equal(handle("junk"), true);
  assert.deepEqual(written, ["two"]);
});

test("font sizes step within bounds and survive only when readable", () => {
  assert.equal(stepFontSize(14, "larger"), 15);
  assert.equal(stepFontSize(14, "smaller"), 13);
  assert.equal(stepFontSize(20, "default"), DEFAULT_FONT_SIZE);
  assert.equal(stepFontSize(MAX_FONT_SIZE, "larger"), MAX_FONT_SIZE);
  assert.equal(stepFontSize(MIN_FONT_SIZE, "smaller"), MIN_FONT_SIZE);
  assert.equal(clampFontSize(Number.NaN), DEFAULT_FONT_SIZE);
  const saved = new Map<string, string>();
  const store = { getItem: (k: string) => saved.get(k) ?? null, setItem: (k: string, v: string) => void saved.set(k, v) };
  assert.equal(loadFontSize(store), DEFAULT_FONT_SIZE);
  saveFontSize(store, 18);
  assert.equal(saved.get(FONT_SIZE_KEY), "18");
  assert.equal(loadFontSize(store), 18);
  saved.set(FONT_SIZE_KEY, "999");
  assert.equal(loadFontSize(store), MAX_FONT_SIZE);
  saved.set(FONT_SIZE_KEY, "big");
  assert.equal(loadFontSize(store), DEFAULT_FONT_SIZE);
  const broken = { getItem: () => { throw new Error("denied"); }, setItem: () => { throw new Error("denied"); } };
  assert.equal(loadFontSize(broken), DEFAULT_FONT_SIZE);
  saveFontSize(broken, 12);
  assert.equal(loadFontSize(null), DEFAULT_FONT_SIZE);
});

test("only Ctrl with =, +, - or 0 changes the font size", () => {
  assert.equal(fontStepForKey("=", true, false, false), "larger");
  assert.equal(fontStepForKey("+", true, false, false), "larger");
  assert.equal(fontStepForKey("-", true, false, false), "smaller");
  assert.equal(fontStepForKey("0", true, false, false), "default");
  assert.equal(fontStepForKey("-", false, false, false), null);
  assert.equal(fontStepForKey("_", true, false, false), null, "Ctrl+_ stays the remote's undo");
  assert.equal(fontStepForKey("=", true, true, false), null);
  assert.equal(fontStepForKey("=", true, false, true), null);
});

test("the page config is off unless the server says on", () => {
  assert.deepEqual(parseConfig({ clipboard_osc52: true, recordings: true }), { clipboardOsc52: true, recordings: true });
  assert.deepEqual(parseConfig({ clipboard_osc52: "yes" }), DEFAULT_CONFIG);
  assert.deepEqual(parseConfig(null), DEFAULT_CONFIG);
});

test("the theme follows the system and stops following when asked", () => {
  let listener: (() => void) | null = null;
  const query: SchemeQuery & { matches: boolean } = {
    matches: false,
    addEventListener: (_t, l) => (listener = l),
    removeEventListener: (_t, l) => {
      if (listener === l) listener = null;
    },
  };
  const seen: string[] = [];
  const stop = followSystemScheme(query, (s) => seen.push(s));
  query.matches = true;
  listener!();
  stop();
  assert.equal(listener, null);
  assert.deepEqual(seen, ["dark", "light"]);
  assert.equal(themeFor("light"), LIGHT);
  assert.equal(themeFor("dark"), DARK);
  assert.equal(paletteOf(DARK).length, 16);
  assert.ok(paletteOf(LIGHT).every((c) => /^#[0-9a-f]{6}$/.test(c)));
});
