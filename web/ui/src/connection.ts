//! The page's one WebSocket: `hello` with the same client id on every reconnect, routing of
//! server messages to each open document's `DocSync`, reconnect with backoff across the node
//! URLs the page was given, and an application-level ping to notice a dead link.

import type { ClientMsg, ServerMsg } from './protocol';
import type { DocSync } from './sync';

/** First reconnect delay after the list of nodes has been tried once; doubles per round. */
export const BACKOFF_BASE_MS = 250;
/** Longest wait between reconnect attempts. */
export const BACKOFF_MAX_MS = 8_000;
/** Delay before trying the next node in the list (a node down should not stall failover). */
export const NEXT_NODE_DELAY_MS = 100;
/** A socket that has not said `welcome` within this long is given up for the next node. */
export const CONNECT_TIMEOUT_MS = 6_000;
/** Send `ping` after this long without sending anything. */
export const PING_INTERVAL_MS = 10_000;
/** Nothing received for this long (pings included): the link is dead, reconnect. */
export const SILENCE_TIMEOUT_MS = 30_000;

/** Rounds of send-then-react in one `pump` (one is the norm; a fix-up edit adds one). */
const MAX_PUMP_ROUNDS = 8;

/** What the status bar shows. */
export type ConnState =
  | { state: 'connecting'; url: string; attempt: number }
  | { state: 'online'; url: string; node: string }
  | { state: 'offline'; url: string; retryAt: number; attempt: number; reason: string };

/** A document the connection serves: its state machine and what to run after feeding it. */
interface DocEntry {
  sync: DocSync;
  changed: () => void;
}

/** Who the person is, asked at every `hello`. */
export interface HelloInfo {
  name: string;
  color: string;
}

export class Connection {
  /** The id the server issued; sent back in every later `hello`. */
  clientId: string | null = null;
  state: ConnState;

  private ws: WebSocket | null = null;
  private welcomed = false;
  private urlIndex = 0;
  private failures = 0;
  private readonly docs = new Map<string, DocEntry>();
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private lastReceived = 0;
  private lastSent = 0;
  private stopped = false;

  constructor(
    private readonly urls: string[],
    private readonly hello: () => HelloInfo,
    private readonly onState: (state: ConnState) => void,
  ) {
    this.state = { state: 'connecting', url: urls[0]!, attempt: 0 };
  }

  /** Serves `sync` on this connection; `changed` runs after each message fed to it. */
  add(sync: DocSync, changed: () => void): void {
    this.docs.set(sync.doc, { sync, changed });
    if (this.welcomed && this.clientId) {
      sync.onConnected(this.clientId);
      this.pump(sync);
    }
  }

  /** Starts connecting. */
  start(): void {
    this.stopped = false;
    addEventListener('online', () => this.reconnectNow());
    this.heartbeat = setInterval(() => this.beat(), 1_000);
    this.connect();
  }

  /** Closes for good (page teardown, tests). */
  stop(): void {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.clearTimers();
    this.ws?.close(1000, 'bye');
    this.ws = null;
  }

  /** Drops the current socket (if any) and connects again right away (e.g. a new name). */
  reconnectNow(): void {
    if (this.stopped) return;
    if (this.state.state === 'offline') {
      this.clearTimers();
      this.connect();
    } else if (this.ws) {
      this.ws.close(1000, 'reconnect');
      this.dropped('reconnecting', 0);
    }
  }

  /** Sends what `sync` queued, then lets its page react to what it emitted. */
  pump(sync: DocSync): void {
    const entry = this.docs.get(sync.doc);
    // Reacting to events may queue more messages (e.g. a line-ending fix); bounded, since each
    // round only reacts to what the previous one emitted.
    for (let round = 0; round < MAX_PUMP_ROUNDS; round++) {
      for (const msg of sync.takeOutbox()) this.send(msg);
      entry?.changed();
      if (sync.outbox.length === 0) return;
    }
  }

  private connect(): void {
    const url = this.urls[this.urlIndex % this.urls.length]!;
    this.welcomed = false;
    this.setState({ state: 'connecting', url, attempt: this.failures });
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      this.dropped('bad node URL', null);
      return;
    }
    this.ws = ws;
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && !this.welcomed) {
        ws.close();
        this.dropped('timed out connecting', null);
      }
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      const me = this.hello();
      this.send({ type: 'hello', client: this.clientId, name: me.name, color: me.color });
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws || typeof event.data !== 'string') return;
      this.lastReceived = Date.now();
      let msg: ServerMsg;
      try {
        msg = JSON.parse(event.data) as ServerMsg;
      } catch {
        return;
      }
      this.receive(msg, url);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.dropped(event.code === 1000 || event.code === 1001 ? 'the node closed the connection' : 'connection lost', null);
    };
    // `onerror` is always followed by `onclose`, which does the work.
    ws.onerror = () => {};
  }

  private receive(msg: ServerMsg, url: string): void {
    if (msg.type === 'welcome') {
      if (this.connectTimer) clearTimeout(this.connectTimer);
      this.welcomed = true;
      this.clientId = msg.client;
      this.failures = 0;
      this.setState({ state: 'online', url, node: msg.node });
      for (const { sync } of this.docs.values()) {
        sync.onConnected(msg.client);
        this.pump(sync);
      }
      return;
    }
    if (msg.type === 'pong') return;
    if (msg.type === 'error' && !('doc' in msg && msg.doc)) {
      if (msg.code === 'forbidden' && !this.welcomed) {
        // The node does not know our id (PROTOCOL.md allows refusing it): start afresh.
        this.clientId = null;
      }
      return;
    }
    if (!('doc' in msg) || typeof msg.doc !== 'string') return;
    const entry = this.docs.get(msg.doc);
    if (!entry) return;
    entry.sync.receive(msg);
    this.pump(entry.sync);
  }

  /** The socket is gone: tell the documents, then retry (next node first). */
  private dropped(reason: string, delayOverrideMs: number | null): void {
    const wasWelcomed = this.welcomed;
    this.ws = null;
    this.welcomed = false;
    this.clearTimers();
    for (const { sync } of this.docs.values()) {
      sync.onDisconnected();
      this.pump(sync);
    }
    if (this.stopped) return;
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    if (!wasWelcomed) this.failures++;
    let delay: number;
    if (delayOverrideMs !== null) delay = delayOverrideMs;
    else if (wasWelcomed) delay = NEXT_NODE_DELAY_MS;
    else if (this.urls.length > 1 && this.failures % this.urls.length !== 0) delay = NEXT_NODE_DELAY_MS;
    else {
      const round = Math.floor(this.failures / this.urls.length);
      delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(round, 10)) * (0.8 + Math.random() * 0.4);
    }
    const url = this.urls[this.urlIndex]!;
    this.setState({ state: 'offline', url, retryAt: Date.now() + delay, attempt: this.failures, reason });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  private send(msg: ClientMsg): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return; // the documents resend after reconnect
    ws.send(JSON.stringify(msg));
    this.lastSent = Date.now();
  }

  private beat(): void {
    if (!this.ws || !this.welcomed) return;
    const now = Date.now();
    if (now - this.lastReceived > SILENCE_TIMEOUT_MS) {
      this.ws.close();
      this.dropped('no answer from the node', null);
      return;
    }
    if (now - this.lastSent > PING_INTERVAL_MS) this.send({ type: 'ping' });
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.reconnectTimer = null;
    this.connectTimer = null;
  }

  private setState(state: ConnState): void {
    this.state = state;
    this.onState(state);
  }
}
