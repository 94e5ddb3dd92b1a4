//! Test helpers shared by the unit tests: a seeded PRNG and random texts and ops with astral
//! characters. Not part of the bundle.

import { cpLength, OpBuilder, type Op } from './ot';

/** A small seeded PRNG (mulberry32): the same seed replays the same run. */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** Characters that exercise UTF-16 handling: ASCII, newline, BMP, astral, ZWJ sequences. */
export const ALPHABET = ['a', 'b', 'c', ' ', '\n', 'é', '中', '😀', '👍🏽', '𝄞', '👩‍💻', 'z'];

/** A random string of up to `max` code points (alphabet entries may be several). */
export function randomText(rng: Rng, max: number): string {
  let s = '';
  const n = rng.int(max + 1);
  for (let i = 0; i < n; i++) s += rng.pick(ALPHABET);
  return s;
}

/** A random op that applies to `text`. */
export function randomOp(rng: Rng, text: string): Op {
  const len = cpLength(text);
  const b = new OpBuilder();
  let at = 0;
  const parts = 1 + rng.int(3);
  for (let i = 0; i < parts && at <= len; i++) {
    const skip = rng.int(len - at + 1);
    b.retain(skip);
    at += skip;
    if (rng.chance(0.5) && at < len) {
      const del = 1 + rng.int(Math.min(4, len - at));
      b.delete(del);
      at += del;
    }
    if (rng.chance(0.6)) {
      const ins = randomText(rng, 4);
      b.insert(ins === '' ? 'x' : ins);
    }
  }
  const op = b.build();
  return op.length > 0 ? op : ['x'];
}

/** The seed for a randomized test: `SEED=<n>` replays one run. */
export function seeds(count: number): number[] {
  const fixed = process.env['SEED'];
  if (fixed) return [Number(fixed)];
  const base = Date.now() % 1_000_000;
  return Array.from({ length: count }, (_, i) => base + i);
}
