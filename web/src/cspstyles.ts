// xterm.js writes part of its CSS (theme colors, cell sizes) into <style> elements, which the
// server's CSP (style-src 'self') refuses to apply. Constructed stylesheets are CSSOM, which
// CSP allows, so the text of those elements is mirrored into sheets adopted by the document.

function isStyle(node: Node | null): boolean {
  return node?.nodeName === "STYLE";
}

function touchesStyle(record: MutationRecord): boolean {
  if (isStyle(record.target) || isStyle(record.target.parentNode)) return true;
  for (const n of record.addedNodes) if (isStyle(n)) return true;
  for (const n of record.removedNodes) if (isStyle(n)) return true;
  return false;
}

/** Mirrors the <style> elements under `root` into adopted sheets; returns a function that stops. */
export function mirrorStyleElements(root: Element): () => void {
  const doc = root.ownerDocument;
  const mirrors = new WeakSet<CSSStyleSheet>();
  const sheets = new Map<Element, { sheet: CSSStyleSheet; text: string }>();

  const sync = (): void => {
    const present = new Set<Element>(root.querySelectorAll("style"));
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
