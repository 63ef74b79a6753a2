// The terminal's font size: larger, smaller, back to the default, kept for the next visit. No DOM.

export const DEFAULT_FONT_SIZE = 14;
export const MIN_FONT_SIZE = 8;
export const MAX_FONT_SIZE = 32;
export const FONT_SIZE_KEY = "ec2-terminal:font-size";

export type FontStep = "larger" | "smaller" | "default";

export function clampFontSize(size: number): number {
  if (!Number.isFinite(size)) return DEFAULT_FONT_SIZE;
  return Math.min(MAX_FONT_SIZE, Math.max(MIN_FONT_SIZE, Math.round(size)));
}

export function stepFontSize(size: number, step: FontStep): number {
  if (step === "default") return DEFAULT_FONT_SIZE;
  return clampFontSize(size + (step === "larger" ? 1 : -1));
}

/** The subset of Storage this module uses (localStorage in the browser; absent when disabled). */
export type SizeStore = Pick<Storage, "getItem" | "setItem">;

/** The size saved by an earlier visit, or the default when there is none or it is unreadable. */
export function loadFontSize(store: SizeStore | null): number {
  try {
    const saved = store?.getItem(FONT_SIZE_KEY);
    return saved ? clampFontSize(Number(saved)) : DEFAULT_FONT_SIZE;
  } catch {
    return DEFAULT_FONT_SIZE;
  }
}

export function saveFontSize(store: SizeStore | null, size: number): void {
  try {
    store?.setItem(FONT_SIZE_KEY, String(size));
  } catch {
    // Quota or privacy mode: the size lasts as long as the page.
  }
}

/** Which step a key press asks for (Ctrl with =/+, -, 0), or null. */
export function fontStepForKey(key: string, ctrl: boolean, alt: boolean, meta: boolean): FontStep | null {
  if (!ctrl || alt || meta) return null;
  if (key === "=" || key === "+") return "larger";
  if (key === "-") return "smaller";
  if (key === "0") return "default";
  return null;
}
