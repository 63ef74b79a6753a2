// Over the terminal while it is cut off from its session: why, and a button to reconnect now.
// Also when the server ended the session (shutdown, idle or duration limit), with a button for a
// new one; not after the remote shell exited (its last output stays readable; the bar offers a
// new session).

import type { UiState } from "./connection.js";
import { element } from "./dom.js";

export interface Reconnect {
  /** Retry at once instead of waiting for the backoff; the session resumes. */
  now(): void;
  /** The session is gone: start a new one. */
  fresh(): void;
}

export class DisconnectOverlay {
  private readonly box: HTMLElement;
  private readonly title: HTMLElement;
  private readonly detail: HTMLElement;
  private readonly button: HTMLButtonElement;
  /** Who ended the session with an EXIT, until the next connection. */
  private exited: "shell" | "server" | null = null;
  private action: (() => void) | null = null;

  constructor(
    doc: Document,
    private readonly reconnect: Reconnect,
  ) {
    this.box = element(doc, "disconnected");
    this.title = element(doc, "disconnected-title");
    this.detail = element(doc, "disconnected-detail");
    this.button = element<HTMLButtonElement>(doc, "reconnect");
    this.button.addEventListener("click", () => this.action?.());
  }

  /** An EXIT came: with an exit status the shell ended (no overlay), else the server did. */
  sessionExited(exitStatus: number | null): void {
    this.exited = exitStatus === null ? "server" : "shell";
  }

  state(state: UiState, detail: string): void {
    if (state === "reconnecting") {
      this.show("Connection lost", detail ? `Reconnecting: ${detail}.` : "Reconnecting…", "Reconnect now", () =>
        this.reconnect.now(),
      );
    } else if (state === "closed" && this.exited === "server") {
      this.show("Session ended", detail, "New session", () => this.reconnect.fresh());
    } else if (state === "closed" && this.exited === null) {
      this.show("Disconnected", detail, "Reconnect", () => this.reconnect.fresh());
    } else {
      if (state !== "closed") this.exited = null;
      this.hide();
    }
  }

  // Focus stays in the terminal: keys typed while reconnecting are sent once it is back.
  private show(title: string, detail: string, label: string, action: () => void): void {
    this.title.textContent = title;
    this.detail.textContent = detail;
    this.button.textContent = label;
    this.action = action;
    this.box.hidden = false;
  }

  private hide(): void {
    this.box.hidden = true;
    this.action = null;
  }
}
