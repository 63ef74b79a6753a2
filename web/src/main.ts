// The page: an xterm.js terminal wired to the session server, and a status bar.

import "@xterm/xterm/css/xterm.css";
import "./page.css";

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { SearchAddon } from "@xterm/addon-search";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { WebglAddon } from "@xterm/addon-webgl";

import { chooseRenderer, savedRenderer, type RendererKind } from "./renderer.js";
import { Connection, socketUrl, type SessionMemory, type UiState } from "./connection.js";
import { osc52Handler } from "./clipboard.js";
import { divertStyleElements, mirrorStyleElements } from "./cspstyles.js";
import { FontControls } from "./fontcontrols.js";
import { fontStepForKey } from "./fontsize.js";
import { loggedIn, logIn, tokenIn } from "./login.js";
import { LoginForm } from "./loginform.js";
import { DisconnectOverlay } from "./overlay.js";
import { fetchConfig } from "./pageconfig.js";
import { binaryStringToBytes } from "./protocol.js";
import { SearchBar } from "./searchbar.js";
import { StatusBar } from "./statusbar.js";
import { Transfers } from "./transfer.js";
import { Sharing, ownPage, shareLink, viewIdIn } from "./viewer.js";
import { followSystemScheme, LIGHT_QUERY, themeFor } from "./theme.js";

/** Server messages shown inside the terminal, without control characters of their own. */
function plain(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, " ");
}

/** Renders with WebGL when the browser can, else with the DOM renderer (also after context loss). */
function loadWebgl(term: Terminal, onFallback: () => void): boolean {
  try {
    const webgl = new WebglAddon();
    webgl.onContextLoss(() => {
      webgl.dispose();
      onFallback();
    });
    term.loadAddon(webgl);
    return true;
  } catch {
    return false;
  }
}

/** The WebGL 2 driver's name (unmasked where the browser allows), or null without WebGL 2. */
function webglDriver(doc: Document): string | null {
  const gl = doc.createElement("canvas").getContext("webgl2");
  if (!gl) return null;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return name;
}

/** Copies `text` to the clipboard; false when the browser refused. */
async function copyText(text: string): Promise<boolean> {
  try {
    // Needs a secure context (https:, or http: on localhost).
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // The older way works over plain http: too, within a key press or click.
    const buffer = document.createElement("textarea");
    buffer.className = "copy-buffer";
    buffer.value = text;
    document.body.append(buffer);
    buffer.select();
    const copied = document.execCommand("copy");
    buffer.remove();
    return copied;
  }
}

async function copySelection(term: Terminal): Promise<void> {
  const text = term.getSelection();
  if (!text) return;
  await copyText(text);
  term.focus(); // the fallback's text area may have taken it
}

/**
 * The session this tab had, kept in sessionStorage so that reloading the page resumes it. That
 * storage belongs to this tab alone: another tab on the same link starts its own session.
 */
function tabMemory(path: string): SessionMemory {
  const key = `ec2-terminal:${path}`;
  const storage = ((): Storage | null => {
    try {
      return window.sessionStorage;
    } catch {
      return null; // storage disabled: reloads start new sessions
    }
  })();
  return {
    load: () => {
      try {
        const saved: unknown = JSON.parse(storage?.getItem(key) ?? "null");
        if (saved && typeof saved === "object") {
          const { id, offset } = saved as Record<string, unknown>;
          if (typeof id === "string" && id && Number.isSafeInteger(offset) && (offset as number) >= 0) {
            return { id, offset: offset as number };
          }
        }
      } catch {
        // Unreadable: start a new session.
      }
      return null;
    },
    save: (session) => {
      try {
        storage?.setItem(key, JSON.stringify(session));
      } catch {
        // Quota or privacy mode: a reload then starts a new session.
      }
    },
    clear: () => storage?.removeItem(key),
  };
}

/** localStorage, or null where storage is disabled. */
function localStore(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

function main(): void {
  const container = document.getElementById("terminal");
  if (!container) throw new Error("page is missing #terminal");
  const bar = new StatusBar(document);

  divertStyleElements(document);
  mirrorStyleElements(container);
  const fonts = new FontControls(document, localStore(), (size) => {
    term.options.fontSize = size;
    refit();
  });
  const term = new Terminal({
    allowProposedApi: true,
    cursorBlink: true,
    fontFamily: '"DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace',
    fontSize: fonts.size,
    scrollback: 5000,
    rightClickSelectsWord: true,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.loadAddon(new WebLinksAddon());
  term.loadAddon(new Unicode11Addon());
  const searchAddon = new SearchAddon();
  term.loadAddon(searchAddon);
  const search = new SearchBar(document, term, searchAddon);
  followSystemScheme(window.matchMedia(LIGHT_QUERY), (scheme) => {
    const theme = themeFor(scheme);
    term.options.theme = theme;
    search.setTheme(theme);
  });
  // Off until the server's config says otherwise (--clipboard-osc52); never answers a query.
  let clipboardOsc52 = false;
  term.parser.registerOscHandler(
    52,
    osc52Handler(
      () => clipboardOsc52,
      (text) => void navigator.clipboard.writeText(text).catch(() => undefined),
    ),
  );
  term.unicode.activeVersion = "11";
  term.open(container);
  let renderer: RendererKind = "dom";
  const saved = savedRenderer(localStore());
  if (chooseRenderer(saved, saved === null ? webglDriver(document) : null) === "webgl") {
    if (loadWebgl(term, () => (renderer = "dom"))) renderer = "webgl";
  }

  const encoder = new TextEncoder();
  const taps = new Set<(data: Uint8Array) => void>();
  // A share link (#view=) watches someone else's session, read-only, at the owner's size.
  const viewId = viewIdIn(window.location.href);
  const sharing = new Sharing(document, term, viewId !== null, copyText);
  const connection = new Connection(
    socketUrl(document.baseURI),
    {
      write: (data, done) => term.write(data, done),
      size: () => ({ cols: term.cols, rows: term.rows }),
    },
    {
      state: (state: UiState, detail: string) => {
        bar.state(state, detail);
        transfers.enable(state === "connected");
        overlay.state(state, detail);
        // Retrying (a detail says when): the login may be what is missing.
        if (state === "reconnecting" || (state === "connecting" && detail)) checkLogin();
      },
      status: (status) => {
        if (status.host_key_sha256) bar.hostKey(status.host_key_sha256);
        sharing.status(status);
      },
      exit: (exit) => {
        const code = exit.exit_status === null ? "" : ` with status ${exit.exit_status}`;
        const text = `Session ended${code}: ${exit.reason}`;
        bar.ended(text);
        sharing.ended();
        overlay.sessionExited(exit.exit_status);
        term.write(`\r\n\x1b[1m[${plain(text)}]\x1b[0m\r\n`);
      },
      error: (error) => {
        bar.ended(error.message);
        sharing.ended();
        term.write(`\r\n\x1b[1;31m[${plain(error.message)}]\x1b[0m\r\n`);
        // A login that ended (logout, expiry, a new access token) or never was: offer the form.
        void loggedIn(fetchFn, document.baseURI).then((yes) => {
          if (yes === false) form.show(error.message);
        });
      },
      rtt: (ms) => bar.rtt(ms),
      output: (data) => {
        for (const tap of taps) tap(data);
      },
      notice: (error) => sharing.notice(error.message),
      reset: () => term.reset(),
    },
    (url, protocol) => new WebSocket(url, protocol),
    {
      now: () => performance.now(),
      setTimeout: (fn, ms) => window.setTimeout(fn, ms),
      clearTimeout: (h) => window.clearTimeout(h as number),
      random: () => Math.random(),
    },
    {},
    tabMemory(window.location.pathname),
  );

  // Files move only for the owner of a connected session; a viewer never knows the session id.
  const transfers = new Transfers(document, () => (connection.viewing ? null : connection.sessionId), container);
  if (viewId !== null) {
    connection.watch(viewId);
    term.options.disableStdin = true;
  }
  term.onData((data) => connection.sendInput(encoder.encode(data)));
  term.onBinary((data) => connection.sendInput(binaryStringToBytes(data)));
  term.onResize(({ cols, rows }) => connection.resize(cols, rows));
  term.onTitleChange((title) => {
    document.title = title ? `${title} · ec2-terminal` : "ec2-terminal";
  });

  // Ctrl+Shift+C (or Ctrl+Insert) copies the selection; Ctrl+Shift+V pastes through the
  // browser's paste event, which xterm.js handles. Plain Ctrl+C and Ctrl+V reach the remote side.
  // Ctrl+Shift+F finds in scrollback; Ctrl+= / Ctrl+- / Ctrl+0 change the text size.
  term.attachCustomKeyEventHandler((ev) => {
    if (ev.type !== "keydown" || !ev.ctrlKey || ev.altKey || ev.metaKey) return true;
    const key = ev.key.toLowerCase();
    const fontStep = fontStepForKey(ev.key, ev.ctrlKey, ev.altKey, ev.metaKey);
    if (ev.shiftKey && key === "f") {
      ev.preventDefault();
      search.open();
      return false;
    }
    if (fontStep) {
      ev.preventDefault();
      fonts.step(fontStep);
      return false;
    }
    const copyKey = ev.shiftKey && key === "c";
    if (copyKey || (!ev.shiftKey && key === "insert" && term.hasSelection())) {
      ev.preventDefault();
      void copySelection(term);
      return false;
    }
    return !(ev.shiftKey && key === "v");
  });

  const refit = (): void => {
    if (connection.viewing) return; // a viewer shows the owner's size
    try {
      fit.fit();
    } catch {
      // Not laid out yet (hidden or zero-sized): the next resize fits it.
    }
  };
  new ResizeObserver(refit).observe(container);
  window.addEventListener("resize", refit);
  window.addEventListener("online", () => connection.reconnectNow());
  window.addEventListener("pagehide", () => connection.remember());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") connection.reconnectNow();
  });
  // A server that restarted knows neither the session nor the login: its WebSocket refuses
  // every retry. Once the server answers that the login is gone, offer the sign-in form.
  let checkingLogin = false;
  const checkLogin = (): void => {
    // Once the form shows, leave it alone: what the user types and its messages stay.
    if (checkingLogin || form.visible) return;
    checkingLogin = true;
    void loggedIn(fetchFn, document.baseURI).then((yes) => {
      checkingLogin = false;
      if (yes === false && !form.visible) {
        form.show("The login ended (the server may have restarted): sign in again.");
      }
    });
  };
  const newSession = (): void => {
    if (connection.viewing) {
      window.location.assign(ownPage(window.location.href)); // a session of one's own
      return;
    }
    term.reset();
    connection.restart();
    term.focus();
  };
  bar.onNewSession(newSession);
  const overlay = new DisconnectOverlay(document, {
    now: () => connection.reconnectNow(),
    fresh: newSession,
  });

  // For tests and debugging from the console; holds nothing secret (auth is an HttpOnly cookie).
  Object.assign(window, {
    __ec2terminal: {
      term,
      connection,
      fit,
      search: searchAddon,
      taps,
      sharing,
      transfers,
      states: bar.history,
      get renderer() {
        return renderer;
      },
      dropSocket: () => connection.dropSocket(),
    },
  });

  let started = false;
  const begin = (): void => {
    if (started) {
      term.reset();
      connection.restart();
    } else {
      started = true;
      connection.start();
    }
    term.focus();
  };
  const form = new LoginForm(document, async (token) => {
    const result = await logIn(fetchFn, document.baseURI, token);
    if (!result.ok) return result.message;
    begin();
    return null;
  });

  refit();
  void fetchConfig(fetchFn, document.baseURI).then((config) => {
    clipboardOsc52 = config.clipboardOsc52;
    const link = document.getElementById("recordings-link");
    if (link) link.hidden = !config.recordings;
  });
  void signIn(form, begin);
}

/**
 * Logs in with the link's token if the address holds one (and takes it out of the address and
 * the history entry first), then connects; without a login, shows the form.
 */
async function signIn(form: LoginForm, begin: () => void): Promise<void> {
  const found = tokenIn(window.location.href);
  if (found) {
    // A share link may carry a link token too: keep the view, drop the token.
    const viewId = viewIdIn(window.location.href);
    window.history.replaceState(null, "", viewId ? shareLink(found.cleanUrl, viewId) : found.cleanUrl);
    const result = await logIn(fetchFn, document.baseURI, found.token);
    if (result.ok) {
      begin();
    } else {
      form.show(result.message);
    }
    return;
  }
  // Unknown (the server cannot be asked): connect anyway, the connection says what is wrong.
  if ((await loggedIn(fetchFn, document.baseURI)) === false) {
    form.show("");
  } else {
    begin();
  }
}

const fetchFn = (url: string, init: RequestInit): Promise<Response> => window.fetch(url, init);

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", main);
} else {
  main();
}
