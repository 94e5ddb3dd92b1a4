// End-to-end harness: starts the real `chorus` binary on a free port with a temporary data
// directory (and restarts or kills it), launches Debian's headless Chromium through
// playwright-core, opens editor pages, and saves screenshots under <repo>/test-artifacts/e2e.
//
// Environment: CHORUS_BIN (default <repo>/$CARGO_TARGET_DIR|target/debug/chorus),
// CHROMIUM (default /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
export const artifactsDir = join(repoRoot, 'test-artifacts', 'e2e');
mkdirSync(artifactsDir, { recursive: true });

/** Longest wait for a node to answer /readyz. */
const READY_TIMEOUT_MS = 20_000;
/** Default wait for a page condition. */
export const WAIT_MS = 20_000;

/** Console messages that are expected while a node is down (the browser logs failed sockets). */
export const NODE_DOWN_NOISE = [/WebSocket connection to .* failed/, /ERR_CONNECTION_REFUSED/];

export function chorusBinary() {
  const bin =
    process.env.CHORUS_BIN ?? join(resolve(repoRoot, process.env.CARGO_TARGET_DIR ?? 'target'), 'debug', 'chorus');
  if (!existsSync(bin)) {
    throw new Error(`chorus binary not found at ${bin}: build it first (cargo build --bin chorus) or set CHORUS_BIN`);
  }
  return bin;
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * A chorus node process. `start()` waits for /readyz; `kill()` sends SIGKILL (no graceful
 * shutdown); `restart()` starts it again on the same port and data directory.
 */
export class ChorusNode {
  constructor(name) {
    this.name = name;
    this.dataDir = mkdtempSync(join(tmpdir(), 'chorus-e2e-'));
    this.port = 0;
    this.proc = null;
    this.starts = 0;
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    this.starts++;
    const log = createWriteStream(join(artifactsDir, `${this.name}-node-${this.starts}.log`));
    const proc = spawn(
      chorusBinary(),
      ['--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir, '--node-name', `e2e-${this.name}`],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' } },
    );
    proc.stdout.pipe(log);
    proc.stderr.pipe(log);
    this.proc = proc;
    const exited = new Promise((_, reject) =>
      proc.once('exit', (code, signal) => reject(new Error(`chorus exited early (code ${code}, signal ${signal})`))),
    );
    exited.catch(() => {});
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) await exited;
      try {
        const res = await fetch(`${this.baseUrl}/readyz`);
        if (res.ok) return this;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`chorus did not become ready on port ${this.port}`);
      await sleep(50);
    }
  }

  /** SIGKILL: the process dies at once, as in a crash. */
  async kill() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await gone;
  }

  async restart() {
    await this.kill();
    return this.start();
  }

  /** Graceful stop (SIGTERM), then removes the data directory. */
  async stop() {
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Headless Chromium (Debian's), fresh profile. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A page in its own browser context (own localStorage), with the person's identity stored
 * (unless `identity` is null) and every console error and page error recorded in `errors`.
 */
export async function newPage(browser, identity = { name: 'Ada', color: '#e06c75' }) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  if (identity) {
    await context.addInitScript((id) => {
      if (!localStorage.getItem('chorus.identity')) localStorage.setItem('chorus.identity', JSON.stringify(id));
    }, identity);
  }
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  return { context, page, errors };
}

/** Opens `/d/<doc>` and waits until the editor accepts typing. */
export async function openDoc(page, baseUrl, doc, query = '') {
  await page.goto(`${baseUrl}/d/${doc}${query}`);
  await page.waitForFunction(() => window.chorus?.readyAt != null, null, { timeout: WAIT_MS });
}

/** The text in the page's Monaco editor. */
export function textOf(page) {
  return page.evaluate(() => window.chorus.text());
}

/** Sync state of the page: mode, rev, unacknowledged edits, live. */
export function syncOf(page) {
  return page.evaluate(() => window.chorus.sync());
}

/** Puts the caret at a 1-based line/column and focuses the editor (typing then goes there). */
export async function placeCaret(page, lineNumber, column) {
  await page.evaluate(
    ([lineNumber, column]) => {
      const editor = window.chorus.editor;
      editor.setPosition({ lineNumber, column });
      editor.focus();
    },
    [lineNumber, column],
  );
}

/** Puts the caret at the end of the document. */
export async function caretToEnd(page) {
  await page.evaluate(() => {
    const editor = window.chorus.editor;
    const model = editor.getModel();
    editor.setPosition(model.getPositionAt(model.getValueLength()));
    editor.focus();
  });
}

/** Waits until `predicate()` (async) is truthy; fails with `message` and the last value. */
export async function waitUntil(predicate, message, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await predicate();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out: ${message}`);
    await sleep(50);
  }
}

/** Waits until every page shows `expected` (or the same text, if `expected` is null), has no
 * unacknowledged edit, and Monaco agrees with the sync state. Returns the text. */
export async function waitConverged(pages, expected = null, timeoutMs = WAIT_MS) {
  let texts = [];
  try {
    await waitUntil(async () => {
      texts = await Promise.all(pages.map(textOf));
      const states = await Promise.all(pages.map(syncOf));
      const consistent = await Promise.all(pages.map((p) => p.evaluate(() => window.chorus.consistent())));
      const same = texts.every((t) => t === texts[0]) && (expected === null || texts[0] === expected);
      return same && states.every((s) => s.unacknowledged === 0 && s.live) && consistent.every(Boolean);
    }, 'pages converge', timeoutMs);
  } catch (e) {
    throw new Error(`${e.message}; texts: ${JSON.stringify(texts)}; expected: ${JSON.stringify(expected)}`);
  }
  return texts[0];
}

/** Saves a screenshot as test-artifacts/e2e/<name>.png. */
export async function screenshot(page, name) {
  await page.screenshot({ path: join(artifactsDir, `${name}.png`) });
}

/** Console errors other than the allowed patterns. */
export function unexpectedErrors(errors, allowed = []) {
  return errors.filter((e) => !allowed.some((re) => re.test(e)));
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
