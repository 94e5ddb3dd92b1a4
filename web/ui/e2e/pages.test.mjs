// The pages and how the node serves them, in real headless Chromium against the real chorus
// binary: the home page creates and opens documents and lists recent ones, the name and color
// are asked once and remembered, the language follows the extension and can be changed, the
// bundle is served with the right types and caching, and how fast the editor is ready.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  ChorusNode,
  launchBrowser,
  newPage,
  openDoc,
  screenshot,
  textOf,
  unexpectedErrors,
  waitConverged,
  waitUntil,
  WAIT_MS,
} from './harness.mjs';

describe('pages', { timeout: 120_000 }, () => {
  let browser;
  let node;
  const open = [];

  before(async () => {
    browser = await launchBrowser();
    node = await new ChorusNode('pages').start();
  });

  after(async () => {
    await browser?.close();
    await node?.stop();
  });

  afterEach(async () => {
    for (const p of open.splice(0)) await p.context.close();
  });

  async function person(identity) {
    const p = await newPage(browser, identity);
    open.push(p);
    return p;
  }

  it('creates a document from the home page, asking for a name once, and lists it as recent', async () => {
    const a = await person(null);
    await a.page.goto(`${node.baseUrl}/`);
    await a.page.locator('#new-doc').click();
    await a.page.waitForURL(/\/d\/scratch\/[a-z0-9]+\.md$/);
    // First visit: who are you?
    const dialog = a.page.locator('#identity-dialog');
    await dialog.waitFor();
    await screenshot(a.page, 'identity-dialog');
    await a.page.locator('#identity-name').fill('Grace');
    await a.page.locator('.swatch[data-color="#c678dd"]').click();
    await a.page.locator('#identity-ok').click();
    await a.page.waitForFunction(() => window.chorus?.readyAt != null, null, { timeout: WAIT_MS });
    await a.page.keyboard.type('# Hello');
    await waitConverged([a.page], '# Hello');
    const docUrl = a.page.url();
    const doc = new URL(docUrl).pathname.slice(3);
    // Remembered: a reload asks nothing and shows the same person.
    await a.page.reload();
    await a.page.waitForFunction(() => window.chorus?.readyAt != null, null, { timeout: WAIT_MS });
    assert.equal(await a.page.locator('#identity-dialog').count(), 0);
    assert.match(await a.page.locator('#people .person').first().textContent(), /Grace/);
    assert.equal(await textOf(a.page), '# Hello');
    // Home lists it; opening by name works too.
    await a.page.goto(`${node.baseUrl}/`);
    await a.page.locator('#recent a', { hasText: doc }).waitFor();
    await screenshot(a.page, 'home');
    await a.page.locator('#doc-name').fill('bad//name');
    await a.page.locator('#open-doc').click();
    assert.match(await a.page.locator('#doc-problem').textContent(), /empty/);
    await a.page.locator('#doc-name').fill('src/lib.rs');
    await a.page.locator('#open-doc').click();
    await a.page.waitForURL(/\/d\/src\/lib\.rs$/);
    await a.page.waitForFunction(() => window.chorus?.readyAt != null, null, { timeout: WAIT_MS });
    assert.deepEqual(unexpectedErrors(a.errors), []);
  });

  it('highlights by extension and lets the person change the language', async () => {
    const a = await person({ name: 'Ada', color: '#e06c75' });
    await openDoc(a.page, node.baseUrl, 'src/main.rs');
    await a.page.keyboard.type('fn main() {\nlet answer = 42;');
    const lang = () => a.page.evaluate(() => window.chorus.editor.getModel().getLanguageId());
    assert.equal(await lang(), 'rust');
    assert.equal(await a.page.locator('#lang').inputValue(), 'rust');
    // Monaco's Rust grammar colors `fn` and `let` as keywords and 42 as a number.
    const tokenClasses = async () =>
      a.page.evaluate(() => {
        const spans = [...document.querySelectorAll('.view-lines span span')];
        const keyword = spans.find((s) => s.textContent === 'fn');
        const number = spans.find((s) => s.textContent === '42');
        const token = (s) => s?.className.split(' ').find((c) => c.startsWith('mtk'));
        return { keyword: token(keyword), number: token(number), kinds: new Set(spans.map(token)).size };
      });
    await waitUntil(async () => {
      const c = await tokenClasses();
      return c.keyword && c.number && c.keyword !== c.number;
    }, 'Rust is highlighted');
    await screenshot(a.page, 'rust-highlighting');
    await a.page.locator('#lang').selectOption('plaintext');
    assert.equal(await lang(), 'plaintext');
    await waitUntil(async () => (await tokenClasses()).kinds === 1, 'plain text has one token color');
    // The choice is remembered for this document in this browser.
    await a.page.reload();
    await a.page.waitForFunction(() => window.chorus?.readyAt != null, null, { timeout: WAIT_MS });
    assert.equal(await lang(), 'plaintext');
    await a.page.locator('#lang').selectOption('rust');
    // JSON and TOML have grammars too (the server names them; Monaco's basic set has neither).
    await openDoc(a.page, node.baseUrl, 'Cargo.toml');
    assert.equal(await lang(), 'toml');
    await a.page.keyboard.type('[package]\nname = "x"');
    await waitUntil(async () => {
      const kinds = await a.page.evaluate(
        () => new Set([...document.querySelectorAll('.view-lines span span')].map((s) => s.className.split(' ')[0])).size,
      );
      return kinds >= 3;
    }, 'TOML is highlighted');
    assert.deepEqual(unexpectedErrors(a.errors), []);
  });

  it('serves the bundle with content types, caching and gzip', async () => {
    const page = await fetch(`${node.baseUrl}/d/any/doc.txt`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    const html = await page.text();
    const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    assert.ok(script, 'the page loads a hashed script');
    const js = await fetch(`${node.baseUrl}${script}`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    const etag = page.headers.get('etag');
    const again = await fetch(`${node.baseUrl}/`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.equal((await fetch(`${node.baseUrl}/assets/missing-123.js`)).status, 404);
    assert.equal((await fetch(`${node.baseUrl}/nope`)).status, 404);
    assert.equal((await fetch(`${node.baseUrl}/readyz`)).status, 200);
  });

  it('explains a bad document id instead of opening it', async () => {
    const a = await person({ name: 'Ada', color: '#e06c75' });
    await a.page.goto(`${node.baseUrl}/d/bad%20name`);
    await a.page.locator('text=Not a document name').waitFor();
    assert.deepEqual(unexpectedErrors(a.errors), []);
  });

  it('becomes editable quickly', async (t) => {
    const a = await person({ name: 'Ada', color: '#e06c75' });
    const started = Date.now();
    await a.page.goto(`${node.baseUrl}/d/e2e/speed.txt`);
    await a.page.waitForFunction(() => window.chorus?.readyAt != null, null, { timeout: WAIT_MS });
    await a.page.keyboard.type('x');
    await waitUntil(async () => (await textOf(a.page)) === 'x', 'the first keystroke lands');
    const typed = Date.now() - started;
    const readyAt = await a.page.evaluate(() => window.chorus.readyAt);
    t.diagnostic(`editable ${readyAt.toFixed(0)} ms after navigation start; first keystroke visible ${typed} ms after goto`);
    assert.ok(readyAt < 5_000, `ready in ${readyAt} ms`);
    assert.deepEqual(unexpectedErrors(a.errors), []);
  });
});
