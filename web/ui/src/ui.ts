//! Tiny DOM helpers shared by the pages.

/** Creates an element with attributes and children (strings become text). */
export function el(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** How long a toast stays up. */
const TOAST_MS = 3_500;

/** Shows a short message at the bottom of the page. */
export function toast(message: string): void {
  let box = document.getElementById('toast');
  if (!box) {
    box = el('div', { id: 'toast', role: 'alert' });
    document.body.append(box);
  }
  const item = el('div', { class: 'toast' }, message);
  box.append(item);
  setTimeout(() => item.remove(), TOAST_MS);
}
