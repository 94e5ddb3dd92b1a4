//! The home page (`/`): create a document or open one by name; recent documents.

import { askIdentity } from './dialog';
import { forgetRecent, recentDocs, storedIdentity } from './identity';
import { isValidDocId } from './protocol';
import { docHref } from './route';
import { el } from './ui';

/** Suggested name for a new document: readable, unlikely to collide. */
function newDocName(): string {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  const id = Array.from(bytes, (b) => b.toString(36).padStart(2, '0')).join('').slice(0, 6);
  return `scratch/${id}.md`;
}

/** Explains what is wrong with a document id, or null if it is fine. */
export function docIdProblem(id: string): string | null {
  if (id === '') return 'Type a document name, e.g. notes/todo.md';
  if (id.length > 256) return 'At most 256 characters.';
  if (/[^A-Za-z0-9._\-/]/.test(id)) return 'Use only letters, digits, ".", "_", "-" and "/".';
  if (!isValidDocId(id)) return 'No empty, "." or ".." parts between slashes (and no leading or trailing "/").';
  return null;
}

/** Renders the home page into `root`. */
export function renderHome(root: HTMLElement): void {
  document.title = 'Chorus';
  const input = el('input', {
    id: 'doc-name',
    type: 'text',
    placeholder: 'src/main.rs',
    spellcheck: 'false',
    autocomplete: 'off',
    'aria-label': 'Document name',
  }) as HTMLInputElement;
  const problem = el('p', { class: 'problem', id: 'doc-problem', role: 'alert' });
  const open = el('button', { type: 'submit', class: 'primary', id: 'open-doc' }, 'Open');
  const create = el('button', { type: 'button', id: 'new-doc' }, 'New document');
  const form = el('form', { class: 'open-form' }, input, open, create) as HTMLFormElement;
  const go = (id: string) => {
    const why = docIdProblem(id);
    if (why) {
      problem.textContent = why;
      input.focus();
      return;
    }
    location.assign(docHref(id));
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go(input.value.trim());
  });
  create.addEventListener('click', () => go(newDocName()));

  const me = storedIdentity();
  const who = el('p', { class: 'who' });
  const renderWho = (name: string | null, color: string | null) => {
    who.replaceChildren(
      name ? el('span', {}, 'You are ', el('span', { class: 'dot', style: `background:${color}` }), ` ${name} · `) : '',
      (() => {
        const b = el('button', { type: 'button', class: 'link', id: 'change-identity' }, name ? 'change' : 'Choose your name');
        b.addEventListener('click', () => {
          void askIdentity(storedIdentity()).then((chosen) => renderWho(chosen.name, chosen.color));
        });
        return b;
      })(),
    );
  };
  renderWho(me?.name ?? null, me?.color ?? null);

  const recent = recentDocs();
  const list = el('ul', { class: 'recent', id: 'recent' });
  for (const r of recent) {
    const forget = el('button', { type: 'button', class: 'link forget', title: 'Remove from this list' }, '×');
    const item = el(
      'li',
      {},
      el('a', { href: docHref(r.doc) }, r.doc),
      el('span', { class: 'when' }, new Date(r.openedAt).toLocaleString()),
      forget,
    );
    forget.addEventListener('click', () => {
      forgetRecent(r.doc);
      item.remove();
    });
    list.append(item);
  }

  root.replaceChildren(
    el(
      'section',
      { class: 'home' },
      el('h1', {}, 'Chorus'),
      el('p', { class: 'lead' }, 'Edit code together in real time. Open a document by name, then copy its link to invite someone.'),
      form,
      problem,
      who,
      el('h2', {}, 'Recent documents'),
      recent.length > 0 ? list : el('p', { class: 'empty' }, 'None yet: documents you open show up here.'),
    ),
  );
  input.focus();
}
