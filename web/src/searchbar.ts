// Find in scrollback: a bar over the terminal (Ctrl+Shift+F) driving xterm.js's search add-on.

import type { Terminal } from "@xterm/xterm";
import type { ISearchOptions, SearchAddon } from "@xterm/addon-search";

import type { TerminalTheme } from "./theme.js";
import { element } from "./dom.js";

export class SearchBar {
  private readonly form: HTMLFormElement;
  private readonly input: HTMLInputElement;
  private readonly caseBox: HTMLInputElement;
  private readonly count: HTMLElement;
  private theme: TerminalTheme | null = null;

  constructor(
    doc: Document,
    private readonly term: Terminal,
    private readonly addon: SearchAddon,
  ) {
    this.form = element<HTMLFormElement>(doc, "search");
    this.input = element<HTMLInputElement>(doc, "search-input");
    this.caseBox = element<HTMLInputElement>(doc, "search-case");
    this.count = element(doc, "search-count");
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.find("next");
    });
    this.input.addEventListener("input", () => this.find("next", true));
    this.caseBox.addEventListener("change", () => this.find("next", true));
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        ev.preventDefault();
        this.close();
      } else if (ev.key === "Enter" && ev.shiftKey) {
        ev.preventDefault();
        this.find("previous");
      }
    });
    element(doc, "search-previous").addEventListener("click", () => this.find("previous"));
    element(doc, "search-close").addEventListener("click", () => this.close());
    element(doc, "find").addEventListener("click", () => this.open());
    addon.onDidChangeResults(({ resultIndex, resultCount }) => {
      if (!this.input.value) this.count.textContent = "";
      else if (resultCount === 0) this.count.textContent = "no match";
      else if (resultIndex < 0) this.count.textContent = `${resultCount}+ matches`;
      else this.count.textContent = `${resultIndex + 1} of ${resultCount}`;
    });
  }

  get isOpen(): boolean {
    return !this.form.hidden;
  }

  /** The highlight colors follow the terminal's theme. */
  setTheme(theme: TerminalTheme): void {
    this.theme = theme;
    if (this.isOpen && this.input.value) this.find("next", true);
  }

  open(): void {
    this.form.hidden = false;
    const selected = this.term.getSelection();
    if (selected && !selected.includes("\n")) this.input.value = selected;
    this.input.focus();
    this.input.select();
    if (this.input.value) this.find("next", true);
  }

  close(): void {
    this.form.hidden = true;
    this.addon.clearDecorations();
    this.count.textContent = "";
    this.term.focus();
  }

  private find(direction: "next" | "previous", incremental = false): void {
    const text = this.input.value;
    if (!text) {
      this.addon.clearDecorations();
      this.count.textContent = "";
      return;
    }
    const options: ISearchOptions = { caseSensitive: this.caseBox.checked, incremental };
    if (this.theme) {
      options.decorations = {
        matchBackground: this.theme.match,
        activeMatchBackground: this.theme.activeMatch,
        matchOverviewRuler: this.theme.match,
        activeMatchColorOverviewRuler: this.theme.activeMatch,
      };
    }
    if (direction === "next") this.addon.findNext(text, options);
    else this.addon.findPrevious(text, options);
  }
}
