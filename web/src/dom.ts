// Small DOM helpers shared by the pages.

/** The element with `id`; the page's HTML is ours, so a missing one is a bug. */
export function element<T extends HTMLElement = HTMLElement>(doc: Document, id: string): T {
  const el = doc.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
}
