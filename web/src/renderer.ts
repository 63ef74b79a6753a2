// Which of xterm.js's renderers draws the terminal: WebGL on a GPU, else the DOM. No DOM here.

export type RendererKind = "webgl" | "dom";

/** localStorage key of a user's choice ("webgl" or "dom"); absent, the page decides. */
export const RENDERER_KEY = "ec2-terminal:renderer";

/**
 * WebGL drivers that draw on the CPU (Chromium's SwiftShader, Mesa's llvmpipe and softpipe,
 * Windows' Basic Render Driver): there a frame of the WebGL renderer costs several times the
 * DOM renderer's, and a flood of output then spends its CPU drawing frames.
 */
const SOFTWARE_GL = /swiftshader|llvmpipe|softpipe|basic render driver|software/i;

/** The subset of Storage this module reads. */
export type RendererStore = Pick<Storage, "getItem">;

/** A choice saved in `store`, or null when there is none (or it is unreadable). */
export function savedRenderer(store: RendererStore | null): RendererKind | null {
  try {
    const saved = store?.getItem(RENDERER_KEY);
    return saved === "webgl" || saved === "dom" ? saved : null;
  } catch {
    return null;
  }
}

/**
 * The renderer to use: the saved choice, else WebGL when its driver (`glRenderer`, the
 * unmasked renderer string; null without WebGL 2) runs on a GPU.
 */
export function chooseRenderer(saved: RendererKind | null, glRenderer: string | null): RendererKind {
  if (saved !== null) return saved;
  return glRenderer !== null && !SOFTWARE_GL.test(glRenderer) ? "webgl" : "dom";
}
