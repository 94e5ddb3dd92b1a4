//! Unit tests of URLs: document paths, invite links and the node list.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isValidDocId } from './protocol';
import { docHref, docIdFromPath, nodeUrls } from './route';

describe('routes', () => {
  it('reads document ids from /d/ paths', () => {
    assert.equal(docIdFromPath('/d/src/main.rs'), 'src/main.rs');
    assert.equal(docIdFromPath('/'), null);
    assert.equal(docIdFromPath('/d/bad%20name'), 'bad name');
  });

  it('checks document ids like the server', () => {
    for (const ok of ['a', 'src/main.rs', 'a.b_c-d/e', 'x'.repeat(256)]) assert.ok(isValidDocId(ok), ok);
    for (const bad of ['', '/a', 'a/', 'a//b', 'a/./b', '../a', 'a b', 'x'.repeat(257), 'é']) assert.ok(!isValidDocId(bad), bad);
  });

  it('keeps the node list and token in invite links', () => {
    assert.equal(docHref('notes/a.md', '?nodes=ws://a/ws,ws://b/ws&other=1'), '/d/notes/a.md?nodes=ws://a/ws,ws://b/ws');
    assert.equal(docHref('notes/a.md', ''), '/d/notes/a.md');
  });

  it('connects to this host by default, or to the listed nodes, with the token', () => {
    assert.deepEqual(nodeUrls({ protocol: 'https:', host: 'ed.example:8443', search: '' }), ['wss://ed.example:8443/ws']);
    assert.deepEqual(nodeUrls({ protocol: 'http:', host: 'h', search: '?nodes=ws://a/ws,wss://b/ws,junk&token=t%26k' }), [
      'ws://a/ws?token=t%26k',
      'wss://b/ws?token=t%26k',
    ]);
  });
});
