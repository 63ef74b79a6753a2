import { test } from "node:test";
import assert from "node:assert/strict";

import { RENDERER_KEY, chooseRenderer, savedRenderer } from "../src/renderer.js";

const store = (value: string | null) => ({ getItem: (key: string) => (key === RENDERER_KEY ? value : null) });

test("WebGL on a GPU's driver", () => {
  assert.equal(chooseRenderer(null, "ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11 vs_5_0 ps_5_0, D3D11)"), "webgl");
  assert.equal(chooseRenderer(null, "Apple M2"), "webgl");
  assert.equal(chooseRenderer(null, "WebKit WebGL"), "webgl"); // masked: assume a GPU
});

test("the DOM renderer on a driver that draws on the CPU, or without WebGL 2", () => {
  for (const name of [
    "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)",
    "llvmpipe (LLVM 15.0.6, 256 bits)",
    "softpipe",
    "ANGLE (Microsoft, Microsoft Basic Render Driver Direct3D11 vs_5_0 ps_5_0, D3D11)",
  ]) {
    assert.equal(chooseRenderer(null, name), "dom", name);
  }
  assert.equal(chooseRenderer(null, null), "dom");
});

test("a saved choice wins either way", () => {
  assert.equal(chooseRenderer("webgl", "SwiftShader"), "webgl");
  assert.equal(chooseRenderer("dom", "Apple M2"), "dom");
});

test("only webgl or dom is a saved choice; unreadable storage is none", () => {
  assert.equal(savedRenderer(store("webgl")), "webgl");
  assert.equal(savedRenderer(store("dom")), "dom");
  assert.equal(savedRenderer(store("canvas")), null);
  assert.equal(savedRenderer(store(null)), null);
  assert.equal(savedRenderer(null), null);
  const throwing = {
    getItem: (): string | null => {
      throw new Error("SecurityError");
    },
  };
  assert.equal(savedRenderer(throwing), null);
});
