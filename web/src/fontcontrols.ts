// The A− / A+ buttons in the status bar and Ctrl+= / Ctrl+- / Ctrl+0 on the terminal.

import { loadFontSize, saveFontSize, stepFontSize, type FontStep, type SizeStore } from "./fontsize.js";

export class FontControls {
  size: number;
  private readonly label: HTMLElement;

  constructor(
    doc: Document,
    private readonly store: SizeStore | null,
    private readonly apply: (size: number) => void,
  ) {
    this.size = loadFontSize(store);
    this.label = doc.getElementById("font-size") as HTMLElement;
    doc.getElementById("font-smaller")?.addEventListener("click", () => this.step("smaller"));
    doc.getElementById("font-larger")?.addEventListener("click", () => this.step("larger"));
    this.label.addEventListener("click", () => this.step("default"));
    this.show();
  }

  step(step: FontStep): void {
    const size = stepFontSize(this.size, step);
    if (size === this.size) return;
    this.size = size;
    saveFontSize(this.store, size);
    this.apply(size);
    this.show();
  }

  private show(): void {
    this.label.textContent = `${this.size}px`;
  }
}
