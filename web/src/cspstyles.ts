// xterm.js writes part of its CSS (theme colors, cell sizes, the scrollbar) into <style>
// elements, which the server's CSP (style-src 'self', no inline <style>) refuses, and Chromium
// logs each refusal. So the document hands xterm.js an inert stand-in element when it asks for a
// <style> (CSP never looks at it, CSS hides it), and the stand-ins' text is mirrored into
// constructed stylesheets adopted by the document: CSSOM, which CSP allows.

/** The stand-in's tag: an unknown custom element, so the browser gives it no behaviour. */
export const STYLE_STAND_IN = "xterm-style";

/** Makes `doc.createElement("style")` (only on this document) return a stand-in; returns undo. */
export function divertStyleElements(doc: Document): () => void {
  const original = Object.getOwnPropertyDescriptor(doc, "createElement");
  const create = Document.prototype.createElement;
  const divert = function (this: Document, tag: string, options?: ElementCreationOptions): HTMLElement {
    const name = String(tag).toLowerCase() === "style" ? STYLE_STAND_IN : tag;
    return create.call(this, name, options);
  };
  Object.defineProperty(doc, "createElement", { value: divert, configurable: true, writable: true });
  return () => {
    if (original) Object.defineProperty(doc, "createElement", original);
    else delete (doc as { createElement?: unknown }).createElement;
  };
}

function isStyle(node: Node | null): boolean {
  return node?.nodeName === "STYLE" || node?.nodeName === STYLE_STAND_IN.toUpperCase();
}

function touchesStyle(record: MutationRecord): boolean {
  if (isStyle(record.target) || isStyle(record.target.parentNode)) return true;
  for (const n of record.addedNodes) if (isStyle(n)) return true;
  for (const n of record.removedNodes) if (isStyle(n)) return true;
  return false;
}

/** Mirrors the style elements (and stand-ins) under `root` into adopted sheets; returns stop. */
export function mirrorStyleElements(root: Element): () => void {
  const doc = root.ownerDocument;
  const mirrors = new WeakSet<CSSStyleSheet>();
  const sheets = new Map<Element, { sheet: CSSStyleSheet; text: string }>();

  const sync = (): void => {
    const present = new Set<Element>(root.querySelectorAll(`style, ${STYLE_STAND_IN}`));
    let changed = false;
    for (const el of sheets.keys()) {
      if (!present.has(el)) changed = sheets.delete(el);
    }
    for (const el of present) {
      const text = el.textContent ?? "";
      let entry = sheets.get(el);
      if (!entry) {
        entry = { sheet: new CSSStyleSheet(), text: "" };
        mirrors.add(entry.sheet);
        sheets.set(el, entry);
        changed = true;
      }
      if (entry.text !== text) {
        entry.sheet.replaceSync(text);
        entry.text = text;
      }
    }
    if (changed) {
      const others = doc.adoptedStyleSheets.filter((s) => !mirrors.has(s));
      doc.adoptedStyleSheets = [...others, ...[...sheets.values()].map((e) => e.sheet)];
    }
  };

  const observer = new MutationObserver((records) => {
    if (records.some(touchesStyle)) sync();
  });
  observer.observe(root, { childList: true, characterData: true, subtree: true });
  sync();
  return () => observer.disconnect();
}
