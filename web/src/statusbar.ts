// The line under the terminal: connection state, host key fingerprint, RTT, why it ended.

import type { UiState } from "./connection.js";

function element<T extends HTMLElement>(doc: Document, id: string): T {
  const el = doc.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
}

export class StatusBar {
  /** The last states shown, newest last (for tests and debugging). */
  readonly history: string[] = [];
  private readonly stateEl: HTMLElement;
  private readonly hostKeyEl: HTMLElement;
  private readonly rttEl: HTMLElement;
  private readonly messageEl: HTMLElement;
  private readonly newSessionButton: HTMLButtonElement;
  /** Why the session ended (EXIT or ERROR), shown while closed. */
  private ending = "";

  constructor(private readonly doc: Document) {
    this.stateEl = element(doc, "state");
    this.hostKeyEl = element(doc, "host-key");
    this.rttEl = element(doc, "rtt");
    this.messageEl = element(doc, "message");
    this.newSessionButton = element<HTMLButtonElement>(doc, "new-session");
  }

  state(state: UiState, detail: string): void {
    this.history.push(detail ? `${state}: ${detail}` : state);
    if (this.history.length > 100) this.history.shift();
    this.doc.body.dataset.state = state;
    this.stateEl.textContent = state === "reconnecting" ? "reconnecting…" : state;
    this.stateEl.className = `state-${state}`;
    this.messageEl.textContent = state === "closed" && this.ending ? this.ending : detail;
    this.newSessionButton.hidden = state !== "closed";
    if (state !== "connected") this.rttEl.textContent = "";
  }

  hostKey(fingerprint: string): void {
    this.hostKeyEl.textContent = fingerprint;
    this.hostKeyEl.title = fingerprint ? "SSH host key fingerprint of the target" : "";
  }

  rtt(ms: number): void {
    this.rttEl.textContent = `${Math.round(ms)} ms`;
  }

  /** Why the session ended; stays shown until a new session starts. */
  ended(message: string): void {
    this.ending = message;
  }

  onNewSession(start: () => void): void {
    this.newSessionButton.addEventListener("click", () => {
      this.ending = "";
      this.hostKey("");
      start();
    });
  }
}
