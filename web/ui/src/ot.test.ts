//! Unit tests of the OT core: fixed cases from PROTOCOL.md and randomized properties with
//! astral characters (seeded; `SEED=<n>` replays a failure).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  apply,
  compose,
  cpLength,
  cpToUtf16,
  diff,
  invert,
  isValidOp,
  MAX_DIFF_EDITS,
  OpBuilder,
  OpError,
  transform,
  transformPosition,
  utf16ToCp,
} from './ot';
import { randomOp, randomText, Rng, seeds } from './testing';

describe('code points', () => {
  it('counts astral characters once', () => {
    assert.equal(cpLength('a😀b'), 3);
    assert.equal(cpLength('👍🏽'), 2);
    assert.equal(cpLength('\ud83d'), 1, 'a lone surrogate is one code point');
  });

  it('converts between UTF-16 and code-point offsets', () => {
    const s = 'x😀y𝄞z';
    assert.equal(utf16ToCp(s, 0), 0);
    assert.equal(utf16ToCp(s, 1), 1);
    assert.equal(utf16ToCp(s, 3), 2);
    assert.equal(utf16ToCp(s, 2), 1, 'inside a pair rounds down');
    assert.equal(cpToUtf16(s, 2), 3);
    assert.equal(cpToUtf16(s, 4), 6);
    assert.equal(cpToUtf16(s, 99), s.length);
  });
});

describe('ops', () => {
  it('applies retain, delete and insert in code points', () => {
    assert.equal(apply('hello', [5, ' world']), 'hello world');
    assert.equal(apply('a😀b', [1, -1, '🎉']), 'a🎉b');
    assert.equal(apply('a😀b', [2, 'x']), 'a😀xb');
    assert.throws(() => apply('ab', [3, 'x']), OpError);
    assert.throws(() => apply('ab', [-3]), OpError);
  });

  it('validates wire ops', () => {
    assert.ok(isValidOp([1, 'x', -2]));
    for (const bad of [[], [0], [''], [1.5], ['x', null], 'x', null]) assert.ok(!isValidOp(bad), JSON.stringify(bad));
  });

  it('builds normalized ops', () => {
    assert.deepEqual(new OpBuilder().retain(2).retain(3).insert('a').insert('b').retain(4).build(), [5, 'ab']);
    assert.deepEqual(new OpBuilder().delete(1).insert('x').build(), ['x', -1]);
    assert.deepEqual(new OpBuilder().retain(3).build(), []);
  });

  it('puts the op the server applied first on the left on a tie', () => {
    const [mine, theirs] = transform(['A'], ['B']);
    assert.equal(apply(apply('', ['B']), mine), 'BA');
    assert.equal(apply(apply('', ['A']), theirs), 'BA');
  });

  it('transforms an insert inside a deleted range', () => {
    const text = 'abcdef';
    const a = [2, 'X'];
    const b = [1, -4];
    const [a2, b2] = transform(a, b);
    assert.equal(apply(apply(text, a), b2), apply(apply(text, b), a2));
    assert.equal(apply(apply(text, b), a2), 'aXf');
  });

  it('moves positions like the server moves cursors', () => {
    assert.equal(transformPosition(3, [3, 'xy']), 5, 'an insert at the cursor moves it right');
    assert.equal(transformPosition(3, [4, 'xy']), 3);
    assert.equal(transformPosition(3, [1, -5]), 1);
    assert.equal(transformPosition(3, ['😀']), 4);
  });

  for (const seed of seeds(3)) {
    it(`keeps the OT properties on random ops (seed ${seed})`, () => {
      const rng = new Rng(seed);
      for (let round = 0; round < 2000; round++) {
        const text = randomText(rng, 12);
        const a = randomOp(rng, text);
        const b = randomOp(rng, text);
        const ctx = `seed ${seed} round ${round}: ${JSON.stringify({ text, a, b })}`;
        // invert
        assert.equal(apply(apply(text, a), invert(text, a)), text, ctx);
        // compose
        const after = apply(text, a);
        const c = randomOp(rng, after);
        assert.equal(apply(text, compose(a, c)), apply(after, c), ctx);
        // transform (TP1) and the tie rule
        const [a2, b2] = transform(a, b);
        assert.equal(apply(apply(text, a), b2), apply(apply(text, b), a2), ctx);
      }
    });

    it(`diffs any two texts (seed ${seed})`, () => {
      const rng = new Rng(seed);
      for (let round = 0; round < 500; round++) {
        const from = randomText(rng, 30);
        const to = rng.chance(0.5) ? apply(from, randomOp(rng, from)) : randomText(rng, 30);
        assert.equal(apply(from, diff(from, to)), to, `seed ${seed}: ${JSON.stringify({ from, to })}`);
      }
    });
  }

  it('diffs minimally around a small change and gives up on huge ones', () => {
    assert.deepEqual(diff('hello world', 'hello brave world'), [6, 'brave ']);
    assert.deepEqual(diff('a😀c', 'a🎉c'), [1, '🎉', -1]);
    assert.deepEqual(diff('same', 'same'), []);
    const from = 'ab'.repeat(MAX_DIFF_EDITS);
    const to = 'ba'.repeat(MAX_DIFF_EDITS) + 'x';
    assert.equal(apply(from, diff(from, to)), to);
  });
});
