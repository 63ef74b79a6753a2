// Shared viewing in the page: the owner's Share button and viewer count, and a viewer's
// read-only terminal, which takes the owner's size. The protocol side is Connection.watch().

import "./panels.css";

import type { Status } from "./protocol.js";

/** The longest view id the server hands out or accepts (MAX_SESSION_ID). */
const MAX_VIEW_ID = 128;

/** The view id in a share link's fragment (`#view=<id>`), if any. */
export function viewIdIn(href: string): string | null {
  const fragment = new URLSearchParams(new URL(href).hash.replace(/^#/, ""));
  const id = fragment.get("view");
  return id && id.length <= MAX_VIEW_ID ? id : null;
}

/** The page's address with `#view=<id>`: what the owner shares, and what a viewer keeps. */
export function shareLink(page: string, viewId: string): string {
  const url = new URL(page);
  url.search = "";
  url.hash = `view=${encodeURIComponent(viewId)}`;
  return url.toString();
}

/** The page's address without query or fragment: a viewer's way back to a session of its own. */
export function ownPage(page: string): string {
  const url = new URL(page);
  return url.origin + url.pathname;
}

/** What the sharing items need of the terminal. */
export interface Screen {
  resize(cols: number, rows: number): void;
}

/** Copies text to the clipboard; false when the browser refused. */
export type Copy = (text: string) => Promise<boolean>;

function make<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  id: string,
  text = "",
): HTMLElementTagNameMap[K] {
  const el = doc.createElement(tag);
  el.id = id;
  el.textContent = text;
  return el;
}

/**
 * The status bar's sharing items: for the owner, how many watch and a Share button that copies
 * the view link; for a viewer, a read-only badge, and the owner's size applied to the terminal.
 */
export class Sharing {
  /** The view id the owner may share, once the session has one. */
  viewId: string | null = null;
  readonly count: HTMLElement;
  readonly badge: HTMLElement;
  readonly button: HTMLButtonElement;
  readonly panel: HTMLElement;
  readonly link: HTMLInputElement;
  private readonly note: HTMLElement;

  constructor(
    private readonly doc: Document,
    private readonly screen: Screen,
    readonly readOnly: boolean,
    private readonly copy: Copy,
  ) {
    this.count = make(doc, "span", "viewers");
    this.count.title = "People watching this session, read-only";
    this.badge = make(doc, "span", "read-only", "read-only");
    this.badge.title = "You are watching someone else's session: your keys are not sent";
    this.badge.hidden = !readOnly;
    doc.body.classList.toggle("read-only", readOnly);
    this.button = make(doc, "button", "share", "Share");
    this.button.type = "button";
    this.button.title = "Copy a link that lets someone signed in to this terminal watch, read-only";
    this.button.hidden = true;
    const bar = doc.getElementById("status-bar");
    const message = doc.getElementById("message");
    bar?.insertBefore(this.badge, message);
    bar?.insertBefore(this.count, message);
    bar?.append(this.button);

    this.panel = make(doc, "div", "share-panel");
    this.panel.className = "panel";
    this.panel.setAttribute("role", "dialog");
    this.panel.setAttribute("aria-label", "Share this session read-only");
    this.panel.hidden = true;
    const heading = make(doc, "h2", "share-heading", "Watch this session, read-only");
    this.note = make(doc, "p", "share-note");
    this.link = make(doc, "input", "share-link");
    this.link.readOnly = true;
    this.link.spellcheck = false;
    const close = make(doc, "button", "share-close", "Close");
    close.type = "button";
    this.panel.append(heading, this.note, this.link, close);
    doc.body.append(this.panel);

    this.button.addEventListener("click", () => void this.share());
    close.addEventListener("click", () => (this.panel.hidden = true));
  }

  /** Follows the session's STATUS: the viewer count, the view id, and for a viewer the size. */
  status(status: Status): void {
    if (typeof status.viewers === "number") {
      this.count.textContent = status.viewers > 0 ? `${status.viewers} watching` : "";
    }
    if (this.readOnly) {
      const { cols, rows } = status;
      if (typeof cols === "number" && typeof rows === "number" && cols > 0 && rows > 0) {
        this.screen.resize(cols, rows);
      }
    } else if (status.state === "connected" || status.state === "resumed") {
      this.viewId = typeof status.view_id === "string" && status.view_id ? status.view_id : null;
      this.button.hidden = this.viewId === null;
    }
  }

  /** A refusal the viewer should see (its keys went nowhere), without ending anything. */
  notice(message: string): void {
    this.badge.textContent = "read-only";
    this.badge.title = message;
  }

  /** The session ended: nothing left to share or to count. */
  ended(): void {
    this.viewId = null;
    this.button.hidden = true;
    this.panel.hidden = true;
    this.count.textContent = "";
  }

  /** Shows the share link and copies it. */
  async share(): Promise<void> {
    if (this.viewId === null) return;
    this.link.value = shareLink(this.doc.baseURI, this.viewId);
    this.note.textContent = "Copying the link…";
    this.panel.hidden = false;
    this.link.focus();
    this.link.select();
    const copied = await this.copy(this.link.value);
    this.note.textContent =
      (copied ? "Link copied. " : "Copy this link. ") +
      "Anyone who can sign in to this terminal can watch with it, read-only, until the session ends.";
  }
}
