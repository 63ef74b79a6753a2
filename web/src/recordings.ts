// The recordings page (P + recordings/ in a browser): the list of this server's recordings and
// asciinema-player to play them, bundled here like xterm.js. The list and the files come with
// the terminal's login cookie.

import "asciinema-player/dist/bundle/asciinema-player.css";
import "./recordings.css";

import * as AsciinemaPlayer from "asciinema-player";

import {
  formatBytes,
  parseListing,
  playerThemeCss,
  selectedName,
  startedAt,
  type RecordingEntry,
} from "./recordinglist.js";
import { element } from "./dom.js";
import { DARK, LIGHT, LIGHT_QUERY, paletteOf } from "./theme.js";

const THEME = "ec2-terminal";

/** The terminal's own palettes for the player, light or dark as the system prefers (CSSOM). */
function adoptPlayerTheme(): void {
  const selector = `.asciinema-player-theme-${THEME}`;
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(
    `${playerThemeCss(selector, DARK.foreground, DARK.background, paletteOf(DARK))}\n` +
      `@media ${LIGHT_QUERY} { ${playerThemeCss(selector, LIGHT.foreground, LIGHT.background, paletteOf(LIGHT))} }`,
  );
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
}

function when(date: Date | null): string {
  return date ? date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "—";
}

class RecordingsPage {
  player: AsciinemaPlayer.Player | null = null;
  playing: string | null = null;
  entries: RecordingEntry[] = [];
  private readonly message = element(document, "recordings-message");
  private readonly table = element(document, "recordings-table");
  private readonly list = element(document, "recordings-list");
  private readonly section = element(document, "player-section");
  private readonly title = element(document, "player-title");
  private readonly box = element(document, "player");

  async load(): Promise<void> {
    let status = 0;
    let body: unknown = null;
    try {
      const response = await fetch("./?format=json", {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      status = response.status;
      body = response.ok ? await response.json() : null;
    } catch {
      this.say("Cannot reach the server.");
      return;
    }
    const listing = parseListing(status, body);
    if (listing.kind === "problem") {
      this.say(listing.message, listing.signIn);
      return;
    }
    this.entries = listing.recordings;
    if (!listing.enabled) {
      this.say("This server does not record sessions (it runs without --recordings-dir).");
    } else if (this.entries.length === 0) {
      this.say("No recordings yet.");
    } else {
      this.say(`${this.entries.length} recording${this.entries.length === 1 ? "" : "s"}, newest first.`);
    }
    this.table.hidden = this.entries.length === 0;
    this.list.replaceChildren(...this.entries.map((entry) => this.row(entry)));
    this.follow();
  }

  /** Plays the recording the address names (`#name`). */
  follow(): void {
    const name = selectedName(window.location.hash);
    if (name && this.entries.some((e) => e.name === name)) this.play(name);
  }

  private say(text: string, signIn = false): void {
    this.message.replaceChildren(text);
    if (signIn) {
      const link = document.createElement("a");
      link.href = "../";
      link.textContent = "Open the terminal";
      this.message.append(" ", link);
    }
  }

  private row(entry: RecordingEntry): HTMLTableRowElement {
    const tr = document.createElement("tr");
    tr.dataset.name = entry.name;
    const cell = (text: string): HTMLTableCellElement => {
      const td = document.createElement("td");
      td.textContent = text;
      return td;
    };
    const actions = document.createElement("td");
    const play = document.createElement("a");
    play.href = `#${entry.name}`;
    play.textContent = "Play";
    play.className = "play";
    const download = document.createElement("a");
    download.href = entry.name;
    download.download = entry.name;
    download.textContent = "Download";
    actions.append(play, " ", download);
    tr.append(
      cell(when(startedAt(entry.name))),
      cell(when(new Date(entry.modified * 1000))),
      cell(formatBytes(entry.bytes)),
      actions,
    );
    return tr;
  }

  private play(name: string): void {
    if (this.playing === name) return;
    this.player?.dispose();
    this.box.replaceChildren();
    this.playing = name;
    this.section.hidden = false;
    this.title.textContent = `Started ${when(startedAt(name))}`;
    for (const tr of this.list.querySelectorAll("tr")) {
      tr.classList.toggle("selected", tr.dataset.name === name);
    }
    this.player = AsciinemaPlayer.create(
      { url: name, fetchOpts: { credentials: "same-origin", cache: "no-store" } },
      this.box,
      {
        theme: THEME,
        fit: "width",
        autoPlay: true,
        preload: true,
        idleTimeLimit: 2,
        terminalFontFamily: '"DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace',
      },
    );
    this.section.scrollIntoView({ block: "nearest" });
  }
}

function main(): void {
  adoptPlayerTheme();
  const page = new RecordingsPage();
  window.addEventListener("hashchange", () => page.follow());
  // For tests and debugging from the console; holds nothing secret.
  Object.assign(window, { __ec2recordings: page });
  void page.load();
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", main);
} else {
  main();
}
