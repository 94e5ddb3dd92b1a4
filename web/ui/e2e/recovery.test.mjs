// Failures, in real headless Chromium against the real chorus binary: the node is killed
// (SIGKILL) and restarted in the middle of typing, and edits made while the node is down
// arrive once it is back. Nothing typed may be lost.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  caretToEnd,
  ChorusNode,
  freePort,
  launchBrowser,
  NODE_DOWN_NOISE,
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

describe('recovery', { timeout: 120_000 }, () => {
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

  async function person(identity) {
    const p = await newPage(browser, identity);
    open.push(p);
    return p;
  }

  const statusOf = (page) => page.locator('#status').textContent();

  it('recovers both pages when the node is killed and restarted in the middle of typing', async (t) => {
    node = await new ChorusNode('restart').start();
    const a = await person({ name: 'Ada', color: '#e06c75' });
    const b = await person({ name: 'Bob', color: '#61afef' });
    const doc = 'e2e/restart.rs';
    await openDoc(a.page, node.baseUrl, doc);
    await openDoc(b.page, node.baseUrl, doc);

    await a.page.keyboard.type('// Ada: before the crash\n');
    await waitConverged([a.page, b.page], '// Ada: before the crash\n');
    const acknowledged = await textOf(a.page);

    // A keeps typing; the node dies in the middle and comes back while A is still typing.
    await caretToEnd(a.page);
    const typedByA = '// Ada keeps typing through a crash and a restart of the node\n';
    const typing = a.page.keyboard.type(typedByA, { delay: 25 });
    await sleep(500);
    await node.kill();
    t.diagnostic('node killed (SIGKILL) mid-typing');
    await waitUntil(async () => (await statusOf(b.page)).startsWith('Offline'), 'B shows it is offline');
    await sleep(600);
    await node.start();
    t.diagnostic('node restarted on the same port and data directory');
    await typing;
    // Everything A typed, before, during and after the outage, reaches the node and B.
    await waitConverged([a.page, b.page], `${acknowledged}${typedByA}`, 30_000);

    // B adds a line after the restart.
    await caretToEnd(b.page);
    await b.page.keyboard.type('// Bob: after the restart\n');
    const expected = `${acknowledged}${typedByA}// Bob: after the restart\n`;
    await waitConverged([a.page, b.page], expected, 30_000);
    await waitUntil(async () => (await statusOf(a.page)).startsWith('Online'), 'A is online again');
    await waitUntil(async () => (await statusOf(b.page)).startsWith('Online'), 'B is online again');

    // A third person opening the document now gets all of it from the node's store.
    const c = await person({ name: 'Cy', color: '#98c379' });
    await openDoc(c.page, node.baseUrl, doc);
    assert.equal(await textOf(c.page), expected);
    await screenshot(a.page, 'restart-a');
    await screenshot(b.page, 'restart-b');
    assert.deepEqual(unexpectedErrors(a.errors, NODE_DOWN_NOISE), []);
    assert.deepEqual(unexpectedErrors(b.errors, NODE_DOWN_NOISE), []);
    assert.deepEqual(unexpectedErrors(c.errors), []);
  });

  it('sends edits made while the node is down once it is back', async () => {
    node = await new ChorusNode('offline').start();
    const a = await person({ name: 'Ada', color: '#e06c75' });
    const b = await person({ name: 'Bob', color: '#61afef' });
    const doc = 'notes/offline.md';
    await openDoc(a.page, node.baseUrl, doc);
    await openDoc(b.page, node.baseUrl, doc);
    await a.page.keyboard.type('# Notes\n');
    await waitConverged([a.page, b.page], '# Notes\n');

    await node.kill();
    await waitUntil(async () => (await statusOf(a.page)).startsWith('Offline'), 'A shows it is offline');
    // Both keep editing while the node is down; the edits stay in the editors.
    await caretToEnd(a.page);
    await a.page.keyboard.type('written by Ada while offline\n');
    await placeCaret(b.page, 1, 8);
    await b.page.keyboard.type(' (Bob offline too)');
    assert.equal(await textOf(a.page), '# Notes\nwritten by Ada while offline\n');
    assert.equal(await textOf(b.page), '# Notes (Bob offline too)\n');
    await waitUntil(async () => (await statusOf(a.page)).includes('your edits are kept'), 'A says its edits are kept');
    await screenshot(a.page, 'offline-a');

    await node.start();
    await waitConverged([a.page, b.page], '# Notes (Bob offline too)\nwritten by Ada while offline\n', 30_000);
    const c = await person({ name: 'Cy', color: '#98c379' });
    await openDoc(c.page, node.baseUrl, doc);
    assert.equal(await textOf(c.page), '# Notes (Bob offline too)\nwritten by Ada while offline\n');
    await screenshot(b.page, 'offline-back-b');
    assert.deepEqual(unexpectedErrors(a.errors, NODE_DOWN_NOISE), []);
    assert.deepEqual(unexpectedErrors(b.errors, NODE_DOWN_NOISE), []);
  });

  it('rotates through the node list it was given', async () => {
    node = await new ChorusNode('rotate').start();
    const a = await person({ name: 'Ada', color: '#e06c75' });
    // The first URL has nothing listening: the page moves on to the real node.
    const dead = `ws://127.0.0.1:${await freePort()}/ws`;
    const nodes = `?nodes=${dead},ws://127.0.0.1:${node.port}/ws`;
    await openDoc(a.page, node.baseUrl, 'e2e/rotate.txt', nodes);
    await a.page.keyboard.type('reached the second node');
    await waitConverged([a.page], 'reached the second node');
    const state = await a.page.evaluate(() => window.chorus.connection());
    assert.equal(state.state, 'online');
    assert.equal(state.url, `ws://127.0.0.1:${node.port}/ws`);
    // The invite link keeps the node list.
    assert.ok(a.page.url().includes('nodes='));
    assert.deepEqual(unexpectedErrors(a.errors, NODE_DOWN_NOISE), []);
  });
});
