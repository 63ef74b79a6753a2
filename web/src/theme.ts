// Light and dark terminal themes that follow the system's preference (prefers-color-scheme),
// switching live when it changes. The page's own colors follow it in page.css.

import type { ITheme } from "@xterm/xterm";

export type Scheme = "dark" | "light";

/** The 16 ANSI colors in order: black, red, green, yellow, blue, magenta, cyan, white, then bright. */
type Palette = readonly [
  string, string, string, string, string, string, string, string,
  string, string, string, string, string, string, string, string,
];

export interface TerminalTheme extends ITheme {
  background: string;
  foreground: string;
  /** Search highlights (the search add-on wants #RRGGBB). */
  match: string;
  activeMatch: string;
}

const ANSI_NAMES = [
  "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
  "brightBlack", "brightRed", "brightGreen", "brightYellow",
  "brightBlue", "brightMagenta", "brightCyan", "brightWhite",
] as const;

function withPalette(base: Omit<TerminalTheme, (typeof ANSI_NAMES)[number]>, palette: Palette): TerminalTheme {
  const theme: TerminalTheme = { ...base };
  ANSI_NAMES.forEach((name, i) => {
    theme[name] = palette[i];
  });
  return theme;
}

// Dark: One Dark's hues on the page's blue-black; "black" stays visible on the background.
export const DARK: TerminalTheme = withPalette(
  {
    background: "#101418",
    foreground: "#d8dee9",
    cursor: "#d8dee9",
    cursorAccent: "#101418",
    selectionBackground: "#3e4a5b",
    match: "#5c4a1f",
    activeMatch: "#b8860b",
  },
  [
    "#3b4252", "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#d8dee9",
    "#636d83", "#ff7b86", "#b5e890", "#ffd68a", "#8cc8ff", "#de9bf0", "#7fd4dd", "#ffffff",
  ],
);

// Light: GitHub's light terminal colors; yellow and white are dark enough to read on white.
export const LIGHT: TerminalTheme = withPalette(
  {
    background: "#ffffff",
    foreground: "#24292f",
    cursor: "#24292f",
    cursorAccent: "#ffffff",
    selectionBackground: "#b6d7ff",
    match: "#fff2a8",
    activeMatch: "#ffb340",
  },
  [
    "#24292f", "#cf222e", "#116329", "#7d4e00", "#0969da", "#8250df", "#1b7c83", "#6e7781",
    "#57606a", "#a40e26", "#1a7f37", "#633c01", "#218bff", "#a475f9", "#3192aa", "#8c959f",
  ],
);

export function themeFor(scheme: Scheme): TerminalTheme {
  return scheme === "light" ? LIGHT : DARK;
}

/** The 16 ANSI colors of a theme, in order. */
export function paletteOf(theme: TerminalTheme): string[] {
  return ANSI_NAMES.map((name) => theme[name] ?? "");
}

export const LIGHT_QUERY = "(prefers-color-scheme: light)";

/** The subset of a MediaQueryList this module uses. */
export interface SchemeQuery {
  readonly matches: boolean;
  addEventListener(type: "change", listener: () => void): void;
  removeEventListener(type: "change", listener: () => void): void;
}

/** Calls `apply` with the system's scheme now and whenever it changes; returns a stop function. */
export function followSystemScheme(query: SchemeQuery, apply: (scheme: Scheme) => void): () => void {
  const update = (): void => apply(query.matches ? "light" : "dark");
  query.addEventListener("change", update);
  update();
  return () => query.removeEventListener("change", update);
}
