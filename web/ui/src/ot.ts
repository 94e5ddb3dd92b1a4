//! Operational transform on code points, exactly as PROTOCOL.md defines an op: a list of
//! components applied left to right from position 0 — a positive integer retains that many code
//! points, a negative integer deletes that many, a non-empty string inserts itself; a trailing
//! retain may be omitted. Positions and lengths count Unicode code points, never UTF-16 units.
//! Pure functions, no DOM, no Monaco: unit-tested in `ot.test.ts`.

/** One component of an op: retain (`n > 0`), delete (`-n`) or insert (non-empty string). */
export type Component = number | string;

/** An operation: components applied left to right from position 0. */
export type Op = Component[];

/** A cursor or selection as `[anchor, head]` code-point positions. */
export type Range = [number, number];

/** Thrown when an op does not fit the text it is applied to (a bug or a desync). */
export class OpError extends Error {
  override name = 'OpError';
}

// ---------------------------------------------------------------------------------------------
// Code points and UTF-16.

/** Length of `s` in code points (a lone surrogate counts as one, like `Array.from`). */
export function cpLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** UTF-16 index reached by advancing `count` code points from UTF-16 index `from` in `s`. */
export function advanceCp(s: string, from: number, count: number): number {
  let i = from;
  for (let k = 0; k < count; k++) {
    if (i >= s.length) throw new OpError(`position past the end of the text (${count} code points from ${from})`);
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      i += d >= 0xdc00 && d <= 0xdfff ? 2 : 1;
    } else {
      i++;
    }
  }
  return i;
}

/** Code-point offset of UTF-16 offset `utf16` in `s` (an offset inside a pair rounds down). */
export function utf16ToCp(s: string, utf16: number): number {
  const end = Math.min(utf16, s.length);
  let n = 0;
  let i = 0;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        if (i + 2 > end) break;
        i++;
      }
    }
    i++;
    n++;
  }
  return n;
}

/** UTF-16 offset of code-point offset `cp` in `s` (clamped to the end of `s`). */
export function cpToUtf16(s: string, cp: number): number {
  let i = 0;
  for (let k = 0; k < cp && i < s.length; k++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      i += d >= 0xdc00 && d <= 0xdfff ? 2 : 1;
    } else {
      i++;
    }
  }
  return i;
}

/** Splits `s` after `count` code points. */
function splitCp(s: string, count: number): [string, string] {
  const at = advanceCp(s, 0, count);
  return [s.slice(0, at), s.slice(at)];
}

// ---------------------------------------------------------------------------------------------
// Building ops.

/** Builds a normalized op: merges neighbours, puts an insert before an adjacent delete, drops
 * the trailing retain. */
export class OpBuilder {
  private readonly parts: Op = [];

  /** Retains `n` code points. */
  retain(n: number): this {
    if (n <= 0) return this;
    const last = this.parts.length - 1;
    if (last >= 0 && typeof this.parts[last] === 'number' && (this.parts[last] as number) > 0) {
      (this.parts[last] as number) += n;
    } else {
      this.parts.push(n);
    }
    return this;
  }

  /** Deletes `n` code points. */
  delete(n: number): this {
    if (n <= 0) return this;
    const last = this.parts.length - 1;
    if (last >= 0 && typeof this.parts[last] === 'number' && (this.parts[last] as number) < 0) {
      (this.parts[last] as number) -= n;
    } else {
      this.parts.push(-n);
    }
    return this;
  }

  /** Inserts `s`. */
  insert(s: string): this {
    if (s === '') return this;
    const parts = this.parts;
    let last = parts.length - 1;
    // Keep inserts before deletes so that equal edits have one spelling.
    if (last >= 0 && typeof parts[last] === 'number' && (parts[last] as number) < 0) {
      if (last >= 1 && typeof parts[last - 1] === 'string') {
        parts[last - 1] = (parts[last - 1] as string) + s;
      } else {
        parts.splice(last, 0, s);
      }
      return this;
    }
    if (last >= 0 && typeof parts[last] === 'string') {
      parts[last] = (parts[last] as string) + s;
    } else {
      parts.push(s);
    }
    last = parts.length - 1;
    return this;
  }

  /** The op; `[]` when it changes nothing. */
  build(): Op {
    const parts = this.parts.slice();
    while (parts.length > 0 && typeof parts[parts.length - 1] === 'number' && (parts[parts.length - 1] as number) > 0) {
      parts.pop();
    }
    return parts;
  }
}

/** Whether `op` changes nothing (empty or only retains). */
export function isNoop(op: Op): boolean {
  return op.every((c) => typeof c === 'number' && c > 0);
}

/** Whether `value` is a well-formed op per PROTOCOL.md (non-empty, integer components, no 0 or ""). */
export function isValidOp(value: unknown): value is Op {
  if (!Array.isArray(value) || value.length === 0) return false;
  return value.every((c) => (typeof c === 'string' ? c.length > 0 : Number.isSafeInteger(c) && c !== 0));
}

/** Code points the op reads from: the length of the text it applies to, at least. */
export function baseLength(op: Op): number {
  let n = 0;
  for (const c of op) if (typeof c === 'number') n += Math.abs(c);
  return n;
}

/** The op's simple form of a single replacement: retain `at`, delete `deleted`, insert `inserted`. */
export function replaceOp(at: number, deleted: number, inserted: string): Op {
  return new OpBuilder().retain(at).insert(inserted).delete(deleted).build();
}

// ---------------------------------------------------------------------------------------------
// Apply, invert.

/** Applies `op` to `text`; throws `OpError` if it reaches past the end. */
export function apply(text: string, op: Op): string {
  const out: string[] = [];
  let i = 0; // UTF-16 index in text
  for (const c of op) {
    if (typeof c === 'string') {
      out.push(c);
    } else if (c > 0) {
      const j = advanceCp(text, i, c);
      out.push(text.slice(i, j));
      i = j;
    } else {
      i = advanceCp(text, i, -c);
    }
  }
  out.push(text.slice(i));
  return out.join('');
}

/** The op that undoes `op`, which applies to `text`. */
export function invert(text: string, op: Op): Op {
  const b = new OpBuilder();
  let i = 0;
  for (const c of op) {
    if (typeof c === 'string') {
      b.delete(cpLength(c));
    } else if (c > 0) {
      b.retain(c);
      i = advanceCp(text, i, c);
    } else {
      const j = advanceCp(text, i, -c);
      b.insert(text.slice(i, j));
      i = j;
    }
  }
  return b.build();
}

// ---------------------------------------------------------------------------------------------
// Compose, transform. Both walk two ops with cursors that split components as needed; an op
// that has run out behaves as an endless retain (its omitted trailing retain).

const END = Infinity;

class Cursor {
  private index = 0;
  /** What is left of the current component (a string, or a signed count). */
  private head: Component | null;

  constructor(private readonly op: Op) {
    this.head = op.length > 0 ? op[0]! : null;
  }

  /** Kind of the current component; `retain` forever once the op is exhausted. */
  kind(): 'insert' | 'delete' | 'retain' {
    const h = this.head;
    if (h === null) return 'retain';
    if (typeof h === 'string') return 'insert';
    return h < 0 ? 'delete' : 'retain';
  }

  /** Whether the op has no components left. */
  done(): boolean {
    return this.head === null;
  }

  /** Length (code points) of the current component; `END` once exhausted. */
  length(): number {
    const h = this.head;
    if (h === null) return END;
    return typeof h === 'string' ? cpLength(h) : Math.abs(h);
  }

  /** Takes `n` code points of the current component; returns the taken insert text, if any. */
  take(n: number): string {
    const h = this.head;
    if (h === null) return '';
    if (typeof h === 'string') {
      const [taken, rest] = splitCp(h, n);
      if (rest === '') this.next();
      else this.head = rest;
      return taken;
    }
    const left = Math.abs(h) - n;
    if (left === 0) this.next();
    else this.head = h < 0 ? -left : left;
    return '';
  }

  private next(): void {
    this.index++;
    this.head = this.index < this.op.length ? this.op[this.index]! : null;
  }
}

/** `a` then `b` as one op (`b` applies to the result of `a`). */
export function compose(a: Op, b: Op): Op {
  const out = new OpBuilder();
  const ca = new Cursor(a);
  const cb = new Cursor(b);
  for (;;) {
    if (cb.kind() === 'insert') {
      out.insert(cb.take(cb.length()));
      continue;
    }
    if (ca.kind() === 'delete') {
      out.delete(ca.length());
      ca.take(ca.length());
      continue;
    }
    if (ca.done() && cb.done()) break;
    const n = Math.min(ca.length(), cb.length());
    if (n === END) break;
    const ka = ca.kind(); // retain or insert
    const kb = cb.kind(); // retain or delete
    if (ka === 'retain' && kb === 'retain') {
      out.retain(n);
      ca.take(n);
      cb.take(n);
    } else if (ka === 'retain' && kb === 'delete') {
      out.delete(n);
      ca.take(n);
      cb.take(n);
    } else if (ka === 'insert' && kb === 'retain') {
      out.insert(ca.take(n));
      cb.take(n);
    } else {
      // insert then delete: they cancel.
      ca.take(n);
      cb.take(n);
    }
  }
  return out.build();
}

/**
 * Transforms two concurrent ops on the same text: returns `[a2, b2]` with
 * `apply(apply(t, a), b2) === apply(apply(t, b), a2)`. On a tie (both insert at one position)
 * `b`'s insert ends up left: pass as `b` the op the server applied first.
 */
export function transform(a: Op, b: Op): [Op, Op] {
  const a2 = new OpBuilder();
  const b2 = new OpBuilder();
  const ca = new Cursor(a);
  const cb = new Cursor(b);
  for (;;) {
    if (cb.kind() === 'insert') {
      const s = cb.take(cb.length());
      b2.insert(s);
      a2.retain(cpLength(s));
      continue;
    }
    if (ca.kind() === 'insert') {
      const s = ca.take(ca.length());
      a2.insert(s);
      b2.retain(cpLength(s));
      continue;
    }
    if (ca.done() && cb.done()) break;
    const n = Math.min(ca.length(), cb.length());
    if (n === END) break;
    const ka = ca.kind();
    const kb = cb.kind();
    if (ka === 'retain' && kb === 'retain') {
      a2.retain(n);
      b2.retain(n);
    } else if (ka === 'delete' && kb === 'retain') {
      a2.delete(n);
    } else if (ka === 'retain' && kb === 'delete') {
      b2.delete(n);
    }
    // delete/delete: both removed the same text; nothing left to do.
    ca.take(n);
    cb.take(n);
  }
  return [a2.build(), b2.build()];
}

/**
 * Where code-point position `pos` ends up after `op`. An insert exactly at `pos` moves it right
 * (after the inserted text), like the server does for cursors; a delete around it pulls it to
 * the start of the deletion.
 */
export function transformPosition(pos: number, op: Op): number {
  let at = 0; // position in the old text
  let moved = pos;
  for (const c of op) {
    if (at > pos) break;
    if (typeof c === 'string') {
      moved += cpLength(c);
    } else if (c > 0) {
      at += c;
    } else {
      const n = -c;
      moved -= Math.min(n, pos - at);
      at += n;
    }
  }
  return moved;
}

/** `transformPosition` for each end of each range. */
export function transformRanges(ranges: Range[], op: Op): Range[] {
  return ranges.map(([a, h]) => [transformPosition(a, op), transformPosition(h, op)]);
}

// ---------------------------------------------------------------------------------------------
// Diff.

/** Most edits the character diff explores before falling back to one replacement (the rebase
 * after a resync is rare; this keeps a pathological case from freezing the tab). */
export const MAX_DIFF_EDITS = 2_000;

/**
 * An op turning `from` into `to`: common prefix and suffix kept, the middle diffed by code point
 * (Myers), or replaced whole when the two differ by more than `MAX_DIFF_EDITS` edits.
 */
export function diff(from: string, to: string): Op {
  if (from === to) return [];
  const a = Array.from(from);
  const b = Array.from(to);
  let prefix = 0;
  while (prefix < a.length && prefix < b.length && a[prefix] === b[prefix]) prefix++;
  let suffix = 0;
  while (
    suffix < a.length - prefix &&
    suffix < b.length - prefix &&
    a[a.length - 1 - suffix] === b[b.length - 1 - suffix]
  ) {
    suffix++;
  }
  const am = a.slice(prefix, a.length - suffix);
  const bm = b.slice(prefix, b.length - suffix);
  const out = new OpBuilder().retain(prefix);
  const script = myers(am, bm, MAX_DIFF_EDITS);
  if (script === null) {
    out.insert(bm.join('')).delete(am.length);
  } else {
    for (const [kind, value] of script) {
      if (kind === 'keep') out.retain(value as number);
      else if (kind === 'del') out.delete(value as number);
      else out.insert(value as string);
    }
  }
  return out.retain(suffix).build();
}

type Edit = ['keep', number] | ['del', number] | ['ins', string];

/** Myers' O(ND) shortest edit script, or null if it needs more than `maxEdits` edits. */
function myers(a: string[], b: string[], maxEdits: number): Edit[] | null {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, maxEdits);
  // v[k] = furthest x on diagonal k; trace[d] keeps the diagonals -(d+1)..d+1 of v as it was
  // before step d, which is all the walk back needs.
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= max && found < 0; d++) {
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!)) x = v[offset + k + 1]!;
      else x = v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
  }
  if (found < 0) return null;
  const edits: Edit[] = [];
  let x = n;
  let y = m;
  for (let d = found; d > 0; d--) {
    const before = trace[d]!;
    const at = (k: number) => before[k + d + 1]!;
    const k = x - y;
    const down = k === -d || (k !== d && at(k - 1) < at(k + 1));
    const prevK = down ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    const startX = down ? prevX : prevX + 1;
    if (x - startX > 0) edits.push(['keep', x - startX]);
    if (down) edits.push(['ins', b[prevY]!]);
    else edits.push(['del', 1]);
    x = prevX;
    y = prevY;
  }
  if (x > 0) edits.push(['keep', x]);
  edits.reverse();
  return edits;
}
