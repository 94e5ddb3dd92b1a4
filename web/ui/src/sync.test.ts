//! Unit tests of the document state machine against a simulated server that follows
//! PROTOCOL.md (transform over history, dedup by seq, snapshots when history is gone, acks and
//! broadcasts in revision order), with random edits containing astral characters, dropped
//! connections, lost messages, forgotten history, server-initiated resyncs and rate limiting.
//! Seeded: `SEED=<n>` replays a failure.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { apply, cpLength, isValidOp, type Op, type Range, transform, transformRanges } from './ot';
import type { ClientMsg, RevOp, ServerMsg } from './protocol';
import { DocSync } from './sync';
import { ALPHABET, randomOp, Rng, seeds } from './testing';
import { UndoStack } from './undo';

const DOC = 'notes/a.md';

/** One connection: queues in both directions, lost when it drops. */
interface Conn {
  client: SimClient;
  clientId: string | null;
  toServer: ClientMsg[];
  toClient: ServerMsg[];
  subscribed: boolean;
  alive: boolean;
}

/** The server side of the protocol for one document, in memory. */
class SimServer {
  text = '';
  rev = 0;
  history: RevOp[] = [];
  /** Ops after this revision are kept; older ones are forgotten (snapshots, stale_rev). */
  keepFrom = 0;
  conns: Conn[] = [];
  private seqs = new Map<string, { last: number; revs: Map<number, number> }>();
  private cursors = new Map<string, { name: string; color: string; ranges: Range[] }>();
  private nextClient = 1;

  constructor(private readonly rng: Rng, private readonly faultRate: number) {}

  handle(conn: Conn, msg: ClientMsg): void {
    const send = (m: ServerMsg): void => {
      conn.toClient.push(m);
    };
    switch (msg.type) {
      case 'hello':
        conn.clientId = msg.client ?? `c${this.nextClient++}`;
        send({ type: 'welcome', client: conn.clientId, node: 'sim', protocol: 1 });
        return;
      case 'open': {
        conn.subscribed = true;
        if (msg.rev !== null && msg.rev >= this.keepFrom && msg.rev <= this.rev) {
          const ops = this.history.filter((h) => h.rev > msg.rev!);
          send({ type: 'opened', doc: DOC, rev: this.rev, ops, lang: 'markdown' });
        } else {
          send({ type: 'opened', doc: DOC, rev: this.rev, text: this.text, lang: 'markdown' });
        }
        for (const [client, c] of this.cursors) {
          if (client !== conn.clientId && this.conns.some((o) => o.alive && o.clientId === client)) {
            send({ type: 'cursor', doc: DOC, client, ...c });
          }
        }
        return;
      }
      case 'op':
        this.handleOp(conn, msg);
        return;
      case 'cursor': {
        if (!conn.subscribed || msg.rev < this.keepFrom || msg.rev > this.rev) return;
        let ranges = msg.ranges;
        for (const h of this.history) if (h.rev > msg.rev) ranges = transformRanges(ranges, h.op);
        const entry = { name: conn.client.name, color: '#123456', ranges };
        this.cursors.set(conn.clientId!, entry);
        for (const other of this.others(conn)) {
          other.toClient.push({ type: 'cursor', doc: DOC, client: conn.clientId!, ...entry });
        }
        return;
      }
      default:
        return;
    }
  }

  private handleOp(conn: Conn, msg: Extract<ClientMsg, { type: 'op' }>): void {
    const send = (m: ServerMsg): void => {
      conn.toClient.push(m);
    };
    const error = (code: Extract<ServerMsg, { type: 'error' }>['code']) =>
      send({ type: 'error', code, message: code, doc: DOC, seq: msg.seq });
    if (!conn.subscribed) return error('not_open');
    const client = conn.clientId!;
    const seqs = this.seqs.get(client) ?? { last: 0, revs: new Map() };
    this.seqs.set(client, seqs);
    if (msg.seq <= seqs.last) {
      send({ type: 'ack', doc: DOC, seq: msg.seq, rev: seqs.revs.get(msg.seq)! });
      return;
    }
    assert.equal(msg.seq, seqs.last + 1, 'a seq must not skip numbers');
    if (this.rng.chance(this.faultRate)) return error(this.rng.chance(0.5) ? 'rate_limited' : 'unavailable');
    if (msg.rev > this.rev || !isValidOp(msg.op)) return error('invalid_op');
    if (msg.rev < this.keepFrom) return error('stale_rev');
    let op: Op = msg.op;
    for (const h of this.history) if (h.rev > msg.rev) [op] = transform(op, h.op);
    let text: string;
    try {
      text = apply(this.text, op);
    } catch {
      return error('invalid_op');
    }
    if (op.length === 0) op = [cpLength(this.text) || 1].filter((n) => n > 0);
    this.text = text;
    this.rev++;
    this.history.push({ rev: this.rev, client, op });
    seqs.last = msg.seq;
    seqs.revs.set(msg.seq, this.rev);
    for (const c of this.cursors.values()) c.ranges = transformRanges(c.ranges, op);
    send({ type: 'ack', doc: DOC, seq: msg.seq, rev: this.rev });
    for (const other of this.others(conn)) {
      other.toClient.push({ type: 'op', doc: DOC, rev: this.rev, client, op });
    }
  }

  /** A document restart: a fresh snapshot to `conn`, subscription kept. */
  resyncOne(conn: Conn): void {
    conn.toClient.push({ type: 'opened', doc: DOC, rev: this.rev, text: this.text, lang: 'markdown' });
  }

  drop(conn: Conn): void {
    conn.alive = false;
    this.conns = this.conns.filter((c) => c !== conn);
    if (conn.clientId) {
      this.cursors.delete(conn.clientId);
      for (const other of this.others(conn)) other.toClient.push({ type: 'left', doc: DOC, client: conn.clientId });
    }
  }

  private others(conn: Conn): Conn[] {
    return this.conns.filter((c) => c !== conn && c.alive && c.subscribed);
  }
}

/** A client: its DocSync, a mirror of what the editor would show, and its connection. */
class SimClient {
  readonly sync = new DocSync(DOC);
  editor = '';
  conn: Conn | null = null;
  clientId: string | null = null;
  retries = 0;
  readonly undo = new UndoStack();

  constructor(readonly name: string, private readonly server: SimServer) {}

  connect(): void {
    const conn: Conn = { client: this, clientId: null, toServer: [], toClient: [], subscribed: false, alive: true };
    this.conn = conn;
    this.server.conns.push(conn);
    conn.toServer.push({ type: 'hello', client: this.clientId, name: this.name, color: '#123456' });
  }

  disconnect(): void {
    if (!this.conn) return;
    this.server.drop(this.conn);
    this.conn = null;
    this.retries = 0;
    this.sync.onDisconnected();
    this.pump();
  }

  receive(msg: ServerMsg): void {
    if (msg.type === 'welcome') {
      this.clientId = msg.client;
      this.sync.onConnected(msg.client);
    } else {
      this.sync.receive(msg);
    }
    this.pump();
  }

  edit(op: Op): void {
    const before = this.sync.text;
    this.editor = apply(this.editor, op);
    this.undo.record(before, op, 0);
    this.sync.localEdit(op);
    this.pump();
  }

  pump(): void {
    for (const msg of this.sync.takeOutbox()) {
      if (this.conn) this.conn.toServer.push(msg);
    }
    for (const e of this.sync.takeEvents()) {
      if (e.kind === 'reset') this.editor = e.text;
      if (e.kind === 'remote') {
        this.editor = apply(this.editor, e.op);
        this.undo.transform(e.op);
      }
      if (e.kind === 'retry') this.retries++;
    }
    assert.equal(this.editor, this.sync.text, `${this.name}: the editor mirrors the state machine`);
    const s = this.sync;
    if (s.mode !== 'opening') {
      const withInflight = s.inflight ? apply(s.confirmed, s.inflight.op) : s.confirmed;
      assert.equal(s.pending ? apply(withInflight, s.pending) : withInflight, s.text, `${this.name}: text = confirmed + in flight + pending`);
    }
  }
}

interface World {
  rng: Rng;
  server: SimServer;
  clients: SimClient[];
}

function world(seed: number, clients: number, faultRate: number): World {
  const rng = new Rng(seed);
  const server = new SimServer(rng, faultRate);
  const list = Array.from({ length: clients }, (_, i) => new SimClient(`c${i}`, server));
  for (const c of list) c.connect();
  return { rng, server, clients: list };
}

/** Delivers one queued message (random connection, random direction); false if none. */
function deliverOne(w: World): boolean {
  const busy = w.server.conns.filter((c) => c.toServer.length > 0 || c.toClient.length > 0);
  if (busy.length === 0) return false;
  const conn = w.rng.pick(busy);
  if (conn.toServer.length > 0 && (conn.toClient.length === 0 || w.rng.chance(0.5))) {
    w.server.handle(conn, conn.toServer.shift()!);
  } else {
    conn.client.receive(conn.toClient.shift()!);
  }
  return true;
}

/** Reconnects everyone and delivers until nothing moves, then checks convergence. */
function settle(w: World, context: string): void {
  for (const c of w.clients) if (!c.conn) c.connect();
  for (let steps = 0; steps < 100_000; steps++) {
    if (deliverOne(w)) continue;
    const retrying = w.clients.find((c) => c.retries > 0);
    if (!retrying) break;
    retrying.retries--;
    retrying.sync.retry();
    retrying.pump();
  }
  for (const c of w.clients) {
    assert.equal(c.sync.mode, 'ready', `${context}: ${c.name} is in sync`);
    assert.equal(c.sync.unacknowledged(), 0, `${context}: ${c.name} has nothing unacknowledged`);
    assert.equal(c.sync.text, w.server.text, `${context}: ${c.name} converged`);
    assert.equal(c.sync.rev, w.server.rev, `${context}: ${c.name} is at the server's revision`);
  }
}

function run(seed: number, opts: { steps: number; insertOnly: boolean; faults: boolean }): { server: SimServer; inserted: string[] } {
  const w = world(seed, 3, opts.faults ? 0.05 : 0);
  const inserted: string[] = [];
  for (let step = 0; step < opts.steps; step++) {
    const roll = w.rng.next();
    const client = w.rng.pick(w.clients);
    if (roll < 0.35) {
      if (client.sync.mode === 'opening') continue;
      let op: Op;
      if (opts.insertOnly) {
        const at = w.rng.int(cpLength(client.sync.text) + 1);
        const s = w.rng.pick(ALPHABET) + w.rng.pick(ALPHABET);
        inserted.push(...Array.from(s));
        op = at > 0 ? [at, s] : [s];
      } else {
        op = randomOp(w.rng, client.sync.text);
      }
      client.edit(op);
    } else if (roll < 0.75) {
      deliverOne(w);
    } else if (roll < 0.8) {
      if (client.sync.mode === 'opening') continue;
      const len = cpLength(client.sync.text);
      client.sync.setSelection([[w.rng.int(len + 1), w.rng.int(len + 1)]]);
      client.pump();
    } else if (roll < 0.84) {
      if (opts.faults) client.disconnect();
    } else if (roll < 0.92) {
      if (!client.conn) client.connect();
    } else if (roll < 0.94) {
      if (client.retries > 0) {
        client.retries--;
        client.sync.retry();
        client.pump();
      }
    } else if (roll < 0.95) {
      if (opts.faults) w.server.keepFrom = w.server.rev;
    } else if (roll < 0.96) {
      if (opts.faults && client.conn?.subscribed) w.server.resyncOne(client.conn);
    }
  }
  settle(w, `seed ${seed}`);
  return { server: w.server, inserted };
}

describe('document sync against a simulated server', () => {
  for (const seed of seeds(4)) {
    it(`converges on random concurrent edits (seed ${seed})`, () => {
      run(seed, { steps: 3000, insertOnly: false, faults: false });
    });

    it(`converges through drops, lost messages, snapshots, resyncs and rate limits (seed ${seed})`, () => {
      run(seed, { steps: 3000, insertOnly: false, faults: true });
    });

    it(`loses and duplicates nothing anyone typed, whatever fails (seed ${seed})`, () => {
      const { server, inserted } = run(seed, { steps: 3000, insertOnly: true, faults: true });
      assert.deepEqual(Array.from(server.text).sort(), inserted.sort(), `seed ${seed}`);
    });
  }

  it('takes its own op in the ops of `opened` as the ack of the op in flight', () => {
    const w = world(1, 1, 0);
    const [a] = w.clients as [SimClient];
    while (deliverOne(w));
    a.edit(['hi']);
    deliverOne(w); // the op reaches the server
    a.disconnect(); // ... but the ack is lost
    assert.equal(a.sync.inflight?.seq, 1);
    a.connect();
    while (deliverOne(w));
    assert.equal(w.server.text, 'hi', 'applied once');
    assert.equal(a.sync.inflight, null);
    assert.equal(a.sync.rev, 1);
    assert.equal(a.sync.nextSeq, 2);
  });

  it('resubmits the op in flight with its original seq and rev after a snapshot, keeping later typing', () => {
    const w = world(2, 2, 0);
    const [a, b] = w.clients as [SimClient, SimClient];
    while (deliverOne(w));
    a.edit(['one ']);
    const sent = a.conn!.toServer.at(-1) as Extract<ClientMsg, { type: 'op' }>;
    a.disconnect();
    b.edit(['two ']);
    while (deliverOne(w));
    w.server.keepFrom = w.server.rev; // history gone: a gets a snapshot
    a.edit([4, 'three']);
    a.connect();
    const seen: ClientMsg[] = [];
    for (let i = 0; i < 100 && deliverOne(w); i++) {
      for (const m of a.conn!.toServer) if (m.type === 'op') seen.push(m);
    }
    settle(w, 'snapshot');
    const resent = seen.find((m) => m.type === 'op') as Extract<ClientMsg, { type: 'op' }>;
    assert.deepEqual([resent.seq, resent.rev, resent.op], [sent.seq, sent.rev, sent.op]);
    assert.equal(w.server.text, 'two one three');
  });

  it('rebases local edits after stale_rev without losing typing', () => {
    const w = world(3, 2, 0);
    const [a, b] = w.clients as [SimClient, SimClient];
    while (deliverOne(w));
    b.edit(['hello']);
    while (deliverOne(w));
    a.disconnect();
    b.edit([5, ' world']);
    while (deliverOne(w));
    w.server.keepFrom = w.server.rev;
    a.edit(['> ']);
    a.connect();
    settle(w, 'stale');
    assert.equal(w.server.text, '> hello world');
  });

  it('retries a rate-limited op with the same seq', () => {
    const w = world(4, 1, 0);
    const [a] = w.clients as [SimClient];
    while (deliverOne(w));
    a.edit(['x']);
    a.sync.receive({ type: 'error', code: 'rate_limited', message: 'slow down', doc: DOC, seq: 1 });
    a.pump();
    assert.equal(a.retries, 1);
    a.conn!.toServer.length = 0; // the first copy was refused
    a.retries = 0;
    a.sync.retry();
    a.pump();
    assert.deepEqual(a.conn!.toServer, [{ type: 'op', doc: DOC, rev: 0, seq: 1, op: ['x'] }]);
  });

  it('sends its cursor only when no op is unacknowledged, at its revision', () => {
    const w = world(5, 1, 0);
    const [a] = w.clients as [SimClient];
    while (deliverOne(w));
    a.edit(['abc']);
    a.sync.setSelection([[3, 3]]);
    a.pump();
    assert.ok(!a.conn!.toServer.some((m) => m.type === 'cursor'), 'not while the op is in flight');
    while (deliverOne(w));
    a.sync.setSelection([[1, 2]]);
    a.pump();
    assert.deepEqual(a.conn!.toServer.at(-1), { type: 'cursor', doc: DOC, rev: 1, ranges: [[1, 2]] });
  });

  it('reverts an edit the server refuses as too large, and carries on', () => {
    const w = world(7, 1, 0);
    const [a] = w.clients as [SimClient];
    while (deliverOne(w));
    a.edit(['kept']);
    while (deliverOne(w));
    a.edit([4, ' huge']);
    a.conn!.toServer.length = 0;
    a.sync.receive({ type: 'error', code: 'too_large', message: 'document too large', doc: DOC, seq: 2 });
    a.pump();
    assert.equal(a.sync.text, 'kept');
    assert.equal(a.sync.unacknowledged(), 0);
    a.edit([4, '!']);
    settle(w, 'after too_large');
    assert.equal(w.server.text, 'kept!');
  });

  it('rebases a refused op that collaborators emptied, without sending an empty op', () => {
    const w = world(8, 2, 0);
    const [a, b] = w.clients as [SimClient, SimClient];
    while (deliverOne(w));
    a.edit(['abc']);
    while (deliverOne(w));
    a.edit([1, -1]); // deletes "b"...
    const sent = a.conn!.toServer.at(-1) as Extract<ClientMsg, { type: 'op' }>;
    b.edit([-3]); // ...which b deletes too, first
    while (b.conn!.toServer.length > 0) w.server.handle(b.conn!, b.conn!.toServer.shift()!);
    // The server refuses a's op (as if its history were gone) before a hears of b's edit.
    a.conn!.toServer = a.conn!.toServer.filter((m) => m !== sent);
    a.sync.receive({ type: 'error', code: 'stale_rev', message: 'stale', doc: DOC, seq: sent.seq });
    a.pump();
    settle(w, 'emptied op');
    assert.equal(w.server.text, '');
  });

  it('rebases the op in flight as a local edit when the server issues a new identity', () => {
    const w = world(9, 1, 0);
    const [a] = w.clients as [SimClient];
    while (deliverOne(w));
    a.edit(['mine']);
    a.disconnect();
    a.clientId = null; // the server would not take the old id back
    a.connect();
    settle(w, 'new identity');
    assert.equal(w.server.text, 'mine');
    assert.equal(a.sync.nextSeq, 2);
  });

  it("undoes only the person's own edits, through others' edits since", () => {
    const w = world(6, 2, 0);
    const [a, b] = w.clients as [SimClient, SimClient];
    while (deliverOne(w));
    a.edit(['alpha\n']);
    while (deliverOne(w));
    b.edit([6, 'beta']);
    while (deliverOne(w));
    a.edit([5, ' more']);
    while (deliverOne(w));
    assert.equal(b.sync.text, 'alpha more\nbeta');
    const undo = b.undo.popUndo()!;
    const before = b.sync.text;
    b.edit(undo);
    b.undo.pushRedo(before, undo);
    settle(w, 'undo');
    assert.equal(w.server.text, 'alpha more\n');
    const redo = b.undo.popRedo()!;
    b.edit(redo);
    settle(w, 'redo');
    assert.equal(w.server.text, 'alpha more\nbeta');
  });
});
