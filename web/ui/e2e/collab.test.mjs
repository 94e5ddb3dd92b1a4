// Two people in one document, in real headless Chromium against the real chorus binary:
// concurrent typing converges, A's cursor shows in B with A's name at the right place, emoji
// land right, and undo in B leaves A's text alone.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  caretToEnd,
  ChorusNode,
  launchBrowser,
  newPage,
  openDoc,
  placeCaret,
  screenshot,
  sleep,
  textOf,
  unexpectedErrors,
  waitConverged,
  waitUntil,
} from './harness.mjs';

const ADA = { name: 'Ada', color: '#e06c75' };
const BOB = { name: 'Bob', color: '#61afef' };

describe('collaboration', { timeout: 120_000 }, () => {
  let browser;
  let node;
  const open = [];

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
  });

  afterEach(async () => {
    for (const p of open.splice(0)) await p.context.close();
    await node?.stop();
    node = null;
  });

  /** A started node and two people (A: Ada, B: Bob) with `doc` open. */
  async function twoPeople(name, doc) {
    node = await new ChorusNode(name).start();
    const a = await newPage(browser, ADA);
    const b = await newPage(browser, BOB);
    open.push(a, b);
    await openDoc(a.page, node.baseUrl, doc);
    await openDoc(b.page, node.baseUrl, doc);
    return { a, b };
  }

  it('converges when two pages type at the same time', async (t) => {
    const { a, b } = await twoPeople('converge', 'e2e/converge.txt');
    await a.page.keyboard.type('first line\nsecond line\n');
    await waitConverged([a.page, b.page], 'first line\nsecond line\n');
    await placeCaret(a.page, 1, 11);
    await placeCaret(b.page, 2, 12);
    const fromA = ' and Ada typed this while Bob typed';
    const fromB = ' while Bob typed this and Ada typed';
    await Promise.all([a.page.keyboard.type(fromA, { delay: 15 }), b.page.keyboard.type(fromB, { delay: 15 })]);
    // Both type on their own line; nothing typed may be lost, duplicated or interleaved.
    const expected = `first line${fromA}\nsecond line${fromB}\n`;
    await waitConverged([a.page, b.page], expected);
    // Now both at the very same spot (the end of the document): whatever the order, they agree.
    await caretToEnd(a.page);
    await caretToEnd(b.page);
    await Promise.all([a.page.keyboard.type('AAAA', { delay: 10 }), b.page.keyboard.type('BBBB', { delay: 10 })]);
    const final = await waitConverged([a.page, b.page]);
    assert.equal(final.slice(0, expected.length), expected);
    assert.equal([...final.slice(expected.length)].sort().join(''), 'AAAABBBB');
    t.diagnostic(`converged on ${JSON.stringify(final.slice(expected.length))} at the shared spot`);
    await screenshot(a.page, 'converge-a');
    await screenshot(b.page, 'converge-b');
    assert.deepEqual(unexpectedErrors(a.errors), []);
    assert.deepEqual(unexpectedErrors(b.errors), []);
  });

  it("shows A's cursor in B at the right place with A's name", async () => {
    const { a, b } = await twoPeople('cursor', 'e2e/cursor.md');
    await a.page.keyboard.type('hello world\nsecond line here');
    await waitConverged([a.page, b.page]);
    // A's caret right after "second" (line 2, column 7), by keyboard.
    await a.page.keyboard.press('Home');
    for (let i = 0; i < 6; i++) await a.page.keyboard.press('ArrowRight');
    const expectedCp = 'hello world\nsecond'.length;
    await waitUntil(async () => {
      const peers = await b.page.evaluate(() => window.chorus.peers());
      return peers.some((p) => p.name === 'Ada' && p.ranges.some(([, h]) => h === expectedCp));
    }, 'B knows where A is');
    const label = b.page.locator('.chorus-peer-label', { hasText: 'Ada' });
    await label.waitFor({ state: 'visible' });
    // The label sits just above A's caret position as B's editor draws it.
    const where = await b.page.evaluate(() => {
      const editor = window.chorus.editor;
      const pos = editor.getScrolledVisiblePosition({ lineNumber: 2, column: 7 });
      const box = editor.getDomNode().getBoundingClientRect();
      return { left: box.left + pos.left, top: box.top + pos.top, height: pos.height };
    });
    const labelBox = await label.boundingBox();
    assert.ok(labelBox, 'the label has a box');
    assert.ok(Math.abs(labelBox.x - where.left) <= 4, `label x ${labelBox.x} near caret x ${where.left}`);
    assert.ok(Math.abs(labelBox.y + labelBox.height - where.top) <= 4, `label bottom ${labelBox.y + labelBox.height} at caret top ${where.top}`);
    // The caret itself, in A's color.
    const caretColor = await b.page.evaluate(() => {
      const caret = document.querySelector('.chorus-caret');
      return caret ? getComputedStyle(caret, '::before').backgroundColor : null;
    });
    assert.equal(caretColor, 'rgb(224, 108, 117)');
    // B's people list shows Ada; A's shows Bob.
    await b.page.locator('#people .person', { hasText: 'Ada' }).waitFor();
    await a.page.locator('#people .person', { hasText: 'Bob' }).waitFor();
    // A selection is drawn too.
    await a.page.keyboard.press('Shift+End');
    await waitUntil(() => b.page.locator('.chorus-selection').count(), 'A selection shows in B');
    await screenshot(b.page, 'cursor-in-b');
    assert.deepEqual(unexpectedErrors(a.errors), []);
    assert.deepEqual(unexpectedErrors(b.errors), []);
  });

  it('shows emoji typed in one page correctly in the other', async () => {
    const { a, b } = await twoPeople('emoji', 'e2e/emoji.txt');
    const line = 'hi 😀 there 👍🏽 ok 𝄞 and 👩‍💻';
    await a.page.keyboard.type(line);
    await waitConverged([a.page, b.page], line);
    // B types right after the 😀 (UTF-16 column 6 = after "hi " and the two-unit emoji).
    await placeCaret(b.page, 1, 6);
    await b.page.keyboard.type('X');
    await waitConverged([a.page, b.page], 'hi 😀X there 👍🏽 ok 𝄞 and 👩‍💻');
    // A appends emoji at the end; B's view matches.
    await caretToEnd(a.page);
    await a.page.keyboard.type(' 🎉🎉');
    const expected = 'hi 😀X there 👍🏽 ok 𝄞 and 👩‍💻 🎉🎉';
    await waitConverged([a.page, b.page], expected);
    // A's caret position reaches B in code points and lands after the emoji.
    await placeCaret(a.page, 1, 6);
    await waitUntil(async () => {
      const peers = await b.page.evaluate(() => window.chorus.peers());
      return peers.some((p) => p.name === 'Ada' && p.ranges.some(([, h]) => h === 4));
    }, "A's caret after 😀 is code point 4 in B");
    // A deletes the emoji with one Backspace: the whole character goes, in both pages.
    await a.page.keyboard.press('Backspace');
    await waitConverged([a.page, b.page], 'hi X there 👍🏽 ok 𝄞 and 👩‍💻 🎉🎉');
    await screenshot(b.page, 'emoji-b');
    assert.deepEqual(unexpectedErrors(a.errors), []);
    assert.deepEqual(unexpectedErrors(b.errors), []);
  });

  it("undo in B takes back only B's edits and leaves A's text alone", async () => {
    const { a, b } = await twoPeople('undo', 'e2e/undo.txt');
    await a.page.keyboard.type('alpha\n');
    await waitConverged([a.page, b.page], 'alpha\n');
    await caretToEnd(b.page);
    await b.page.keyboard.type('beta');
    await waitConverged([a.page, b.page], 'alpha\nbeta');
    await placeCaret(a.page, 1, 6);
    await a.page.keyboard.type(' more');
    await waitConverged([a.page, b.page], 'alpha more\nbeta');
    await sleep(800); // a new undo step
    await caretToEnd(b.page);
    await b.page.keyboard.type(' gamma');
    await waitConverged([a.page, b.page], 'alpha more\nbeta gamma');
    // B undoes twice: " gamma", then "beta". A's " more" and "alpha" stay.
    await b.page.keyboard.press('Control+z');
    await waitConverged([a.page, b.page], 'alpha more\nbeta');
    await b.page.keyboard.press('Control+z');
    await waitConverged([a.page, b.page], 'alpha more\n');
    await b.page.keyboard.press('Control+z'); // nothing more of B's: no change
    await sleep(300);
    assert.equal(await textOf(a.page), 'alpha more\n');
    // Redo with Ctrl+Shift+Z, then Ctrl+Y.
    await b.page.keyboard.press('Control+Shift+z');
    await waitConverged([a.page, b.page], 'alpha more\nbeta');
    await b.page.keyboard.press('Control+y');
    await waitConverged([a.page, b.page], 'alpha more\nbeta gamma');
    // A's own undo takes back only A's " more" (transformed through B's edits since).
    await a.page.keyboard.press('Control+z');
    await waitConverged([a.page, b.page], 'alpha\nbeta gamma');
    await screenshot(b.page, 'undo-b');
    assert.deepEqual(unexpectedErrors(a.errors), []);
    assert.deepEqual(unexpectedErrors(b.errors), []);
  });
});
