//! The person's name and color (chosen once, kept in localStorage) and their recent documents.

/** Colors offered for a person (readable on the dark theme). */
export const COLORS = ['#e06c75', '#98c379', '#e5c07b', '#61afef', '#c678dd', '#56b6c2', '#d19a66', '#ff79c6'];
/** Recent documents kept on the home page. */
export const MAX_RECENT = 20;
/** Longest name kept (the server keeps 64 characters). */
export const MAX_NAME_CHARS = 64;

const IDENTITY_KEY = 'chorus.identity';
const RECENT_KEY = 'chorus.recent';

/** A person as collaborators see them. */
export interface Identity {
  name: string;
  color: string;
}

/** A document opened recently. */
export interface Recent {
  doc: string;
  openedAt: number;
}

function read<T>(key: string): T | null {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? null : (JSON.parse(raw) as T);
  } catch {
    return null;
  }
}

function write(key: string, value: unknown): void {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the page still works, it just forgets.
  }
}

/** Whether `color` is `#rgb` or `#rrggbb` (what the server accepts). */
export function isColor(color: unknown): color is string {
  return typeof color === 'string' && /^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/.test(color);
}

/** The stored identity, or null if the person has not chosen one yet. */
export function storedIdentity(): Identity | null {
  const v = read<Identity>(IDENTITY_KEY);
  if (!v || typeof v.name !== 'string' || v.name.trim() === '' || !isColor(v.color)) return null;
  return { name: v.name.slice(0, MAX_NAME_CHARS), color: v.color };
}

/** Remembers the person's identity. */
export function saveIdentity(identity: Identity): void {
  write(IDENTITY_KEY, { name: identity.name.trim().slice(0, MAX_NAME_CHARS), color: identity.color });
}

/** A suggestion for someone who has not chosen yet. */
export function suggestedIdentity(): Identity {
  const animals = ['Otter', 'Heron', 'Lynx', 'Marten', 'Puffin', 'Ibex', 'Gecko', 'Wren', 'Koala', 'Bison'];
  const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
  return { name: `${pick(['Quiet', 'Swift', 'Bright', 'Calm', 'Keen', 'Bold'])} ${pick(animals)}`, color: pick(COLORS) };
}

/** Recent documents, newest first. */
export function recentDocs(): Recent[] {
  const v = read<Recent[]>(RECENT_KEY);
  if (!Array.isArray(v)) return [];
  return v.filter((r) => r && typeof r.doc === 'string' && typeof r.openedAt === 'number').slice(0, MAX_RECENT);
}

/** Records that `doc` was opened now. */
export function touchRecent(doc: string): void {
  const list = recentDocs().filter((r) => r.doc !== doc);
  list.unshift({ doc, openedAt: Date.now() });
  write(RECENT_KEY, list.slice(0, MAX_RECENT));
}

/** Forgets `doc` in the recent list. */
export function forgetRecent(doc: string): void {
  write(RECENT_KEY, recentDocs().filter((r) => r.doc !== doc));
}

/** The language chosen for `doc` in this browser, if the person changed it. */
export function storedLanguage(doc: string): string | null {
  const v = read<string>(`chorus.lang.${doc}`);
  return typeof v === 'string' ? v : null;
}

/** Remembers the language chosen for `doc` (null: back to the extension's). */
export function saveLanguage(doc: string, lang: string | null): void {
  try {
    if (lang === null) localStorage.removeItem(`chorus.lang.${doc}`);
    else write(`chorus.lang.${doc}`, lang);
  } catch {
    // ignore, as in write()
  }
}
