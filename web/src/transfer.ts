// File transfer in the page: upload (drop files on the terminal, or Upload) and download (by
// path) through `files` beside the page, with progress. The server moves the bytes over SFTP
// on the session's own SSH connection; only the session's owner may (docs/architecture.md).

import "./panels.css";

/** The header that names the session (never the URL: proxies log URLs). */
export const SESSION_HEADER = "EC2-Terminal-Session";

/** Where an upload of `name` goes: into `directory` (empty: the SSH user's home directory). */
export function remotePath(directory: string, name: string): string {
  const dir = directory.trim();
  if (!dir) return name;
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The file name a download is saved as: the server's Content-Disposition, else the path's. */
export function savedName(disposition: string | null, path: string): string {
  const encoded = disposition?.match(/filename\*=UTF-8''([^;]+)/i)?.[1];
  if (encoded) {
    try {
      return decodeURIComponent(encoded);
    } catch {
      // Malformed: fall back to the path's last part.
    }
  }
  return path.replace(/\/+$/, "").split("/").pop() || "download";
}

/** The `files` endpoint beside the page, for `path`. */
export function filesUrl(base: string, path: string, overwrite = false): string {
  const url = new URL("files", base);
  url.searchParams.set("path", path);
  if (overwrite) url.searchParams.set("overwrite", "1");
  return url.toString();
}

/** An error answer's message, or a generic one for what is not JSON. */
export function errorMessage(status: number, body: string): { code: string; message: string } {
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed && typeof parsed === "object") {
      const { code, error } = parsed as Record<string, unknown>;
      if (typeof error === "string") return { code: typeof code === "string" ? code : "", message: error };
    }
  } catch {
    // Not JSON: a proxy's page, say.
  }
  return { code: "", message: `the server answered HTTP ${status}` };
}

/** Where an upload landed, from the server's answer `{"path": ...}`. */
export function landedPath(body: string, fallback: string): string {
  try {
    const where = (JSON.parse(body) as { path?: unknown }).path;
    if (typeof where === "string" && where) return where;
  } catch {
    // Not JSON: say what was asked.
  }
  return fallback;
}

export type TransferState = "running" | "done" | "failed";

/** One upload or download, as the panel shows it (and tests read it). */
export interface TransferItem {
  kind: "upload" | "download";
  name: string;
  state: TransferState;
  loaded: number;
  total: number;
  /** Where it landed, or why it failed. */
  message: string;
  code: string;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function element<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
): HTMLElementTagNameMap[K] {
  return Object.assign(doc.createElement(tag), props);
}

/**
 * The Upload and Download buttons in the bar, the Files panel with its list of transfers, and
 * dropping files on the terminal. Shown only to the owner of a connected session.
 */
export class Transfers {
  readonly items: TransferItem[] = [];
  readonly panel: HTMLElement;
  private readonly buttons: HTMLButtonElement[];
  private readonly picker: HTMLInputElement;
  private readonly directory: HTMLInputElement;
  private readonly downloadPath: HTMLInputElement;
  private readonly list: HTMLElement;
  private enabled = false;
  private readonly rows = new Map<TransferItem, HTMLElement>();

  constructor(
    private readonly doc: Document,
    /** The session's id while its owner is connected; null otherwise (no transfers then). */
    private readonly sessionId: () => string | null,
    dropTarget: HTMLElement,
  ) {
    const upload = element(doc, "button", { id: "upload", type: "button", textContent: "Upload" });
    upload.title = "Upload files to the target (or drop them on the terminal)";
    const download = element(doc, "button", { id: "download", type: "button", textContent: "Download" });
    download.title = "Download a file of the target";
    this.buttons = [upload, download];
    for (const button of this.buttons) button.hidden = true;
    doc.getElementById("status-bar")?.append(upload, download);

    this.picker = element(doc, "input", { id: "upload-input", type: "file", multiple: true, hidden: true });
    this.panel = element(doc, "div", { id: "transfer-panel", className: "panel", hidden: true });
    this.panel.setAttribute("role", "dialog");
    this.panel.setAttribute("aria-label", "File transfer");
    this.directory = element(doc, "input", { id: "upload-dir", placeholder: "home directory", spellcheck: false });
    this.downloadPath = element(doc, "input", {
      id: "download-path",
      placeholder: "path on the target, e.g. /var/log/syslog",
      spellcheck: false,
    });
    const choose = element(doc, "button", { id: "upload-choose", type: "button", textContent: "Choose files…" });
    const fetchButton = element(doc, "button", { id: "download-go", type: "button", textContent: "Download" });
    const close = element(doc, "button", { id: "transfer-close", type: "button", textContent: "Close" });
    this.list = element(doc, "ul", { id: "transfers" });
    this.panel.append(
      element(doc, "h2", { textContent: "Files on the target" }),
      element(doc, "label", { htmlFor: "upload-dir", textContent: "Upload into (drop files on the terminal)" }),
      this.row(this.directory, choose),
      element(doc, "label", { htmlFor: "download-path", textContent: "Download" }),
      this.row(this.downloadPath, fetchButton),
      this.list,
      close,
    );
    doc.body.append(this.picker, this.panel);

    upload.addEventListener("click", () => {
      this.panel.hidden = false;
      choose.focus(); // the destination is in view before files are chosen
    });
    download.addEventListener("click", () => {
      this.panel.hidden = false;
      this.downloadPath.focus();
    });
    choose.addEventListener("click", () => this.picker.click());
    close.addEventListener("click", () => (this.panel.hidden = true));
    this.picker.addEventListener("change", () => {
      this.uploadAll(this.picker.files);
      this.picker.value = "";
    });
    const go = (): void => {
      const path = this.downloadPath.value.trim();
      if (path) void this.download(path);
    };
    fetchButton.addEventListener("click", go);
    this.downloadPath.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") go();
    });
    dropTarget.addEventListener("dragover", (ev) => {
      if (!this.enabled || !ev.dataTransfer?.types.includes("Files")) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "copy";
      dropTarget.classList.add("drop-target");
    });
    dropTarget.addEventListener("dragleave", () => dropTarget.classList.remove("drop-target"));
    dropTarget.addEventListener("drop", (ev) => {
      dropTarget.classList.remove("drop-target");
      if (!this.enabled || !ev.dataTransfer?.files.length) return;
      ev.preventDefault();
      this.panel.hidden = false;
      this.uploadAll(ev.dataTransfer.files);
    });
  }

  /** Shows or hides the buttons: transfers belong to the owner of a connected session. */
  enable(on: boolean): void {
    this.enabled = on && this.sessionId() !== null;
    for (const button of this.buttons) button.hidden = !this.enabled;
    if (!this.enabled) this.panel.hidden = true;
  }

  uploadAll(files: FileList | null): void {
    for (const file of Array.from(files ?? [])) this.upload(file, remotePath(this.directory.value, file.name));
  }

  /** PUTs `file` to `path`, with progress; offers Replace when the file exists. */
  upload(file: File, path: string, overwrite = false): void {
    const item = this.add("upload", path, file.size);
    const id = this.sessionId();
    if (id === null) return this.fail(item, "", "the session is not connected");
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", filesUrl(this.doc.baseURI, path, overwrite));
    xhr.setRequestHeader(SESSION_HEADER, id);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (ev) => {
      item.loaded = ev.loaded;
      this.render(item);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) {
        item.loaded = item.total;
        this.finish(item, `uploaded to ${landedPath(xhr.responseText, path)}`);
        return;
      }
      const { code, message } = errorMessage(xhr.status, xhr.responseText);
      this.fail(item, code, message);
      if (code === "file_exists") this.offerReplace(item, () => this.upload(file, path, true));
    });
    xhr.addEventListener("error", () => this.fail(item, "", "the upload was cut off (network)"));
    xhr.send(file);
  }

  /** GETs `path` with progress, then hands it to the browser as a download. */
  async download(path: string): Promise<void> {
    const item = this.add("download", path, 0);
    const id = this.sessionId();
    if (id === null) return this.fail(item, "", "the session is not connected");
    try {
      const response = await fetch(filesUrl(this.doc.baseURI, path), {
        headers: { [SESSION_HEADER]: id },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!response.ok || !response.body) {
        const { code, message } = errorMessage(response.status, await response.text());
        return this.fail(item, code, message);
      }
      item.total = Number(response.headers.get("Content-Length") ?? 0);
      const reader = response.body.getReader();
      const parts: Uint8Array<ArrayBuffer>[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value as Uint8Array<ArrayBuffer>);
        item.loaded += value.length;
        this.render(item);
      }
      if (item.loaded !== item.total) return this.fail(item, "", "the download was cut short");
      const name = savedName(response.headers.get("Content-Disposition"), path);
      const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
      const link = element(this.doc, "a", { href: url, download: name });
      this.doc.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      this.finish(item, `saved as ${name}`);
    } catch {
      this.fail(item, "", "the download was cut off (network)");
    }
  }

  private row(...children: HTMLElement[]): HTMLElement {
    const row = element(this.doc, "div", { className: "panel-row" });
    row.append(...children);
    return row;
  }

  private add(kind: TransferItem["kind"], name: string, total: number): TransferItem {
    const item: TransferItem = { kind, name, state: "running", loaded: 0, total, message: "", code: "" };
    this.items.push(item);
    this.panel.hidden = false;
    this.render(item);
    return item;
  }

  private finish(item: TransferItem, message: string): void {
    item.state = "done";
    item.message = message;
    this.render(item);
  }

  private fail(item: TransferItem, code: string, message: string): void {
    item.state = "failed";
    item.code = code;
    item.message = message;
    this.render(item);
  }

  private offerReplace(item: TransferItem, retry: () => void): void {
    const row = this.rowOf(item);
    const replace = element(this.doc, "button", { type: "button", className: "replace", textContent: "Replace" });
    replace.addEventListener("click", () => {
      replace.remove();
      retry();
    });
    row.append(replace);
  }

  private rowOf(item: TransferItem): HTMLElement {
    let row = this.rows.get(item);
    if (!row) {
      row = element(this.doc, "li", { className: "transfer" });
      row.append(
        element(this.doc, "span", { className: "transfer-name" }),
        element(this.doc, "progress", { max: 1, value: 0 }),
        element(this.doc, "span", { className: "transfer-message" }),
      );
      this.rows.set(item, row);
      this.list.append(row);
    }
    return row;
  }

  private render(item: TransferItem): void {
    const row = this.rowOf(item);
    row.dataset.state = item.state;
    const [name, progress, message] = Array.from(row.children) as [HTMLElement, HTMLProgressElement, HTMLElement];
    name.textContent = `${item.kind === "upload" ? "↑" : "↓"} ${item.name}`;
    progress.max = Math.max(1, item.total);
    progress.value = item.state === "done" ? progress.max : Math.min(item.loaded, progress.max);
    const amount = item.total ? `${formatBytes(item.loaded)} of ${formatBytes(item.total)}` : formatBytes(item.loaded);
    message.textContent = item.state === "running" ? amount : item.message;
  }
}
