//! The editor page (`/d/<doc id>`): Monaco bound to the document's `DocSync`, presence
//! (collaborators' cursors, selections and names; the people list), local undo/redo, the
//! connection status, the language select and the invite link.

import * as monaco from 'monaco-editor/editor/editor.api';
import 'monaco-editor/languages/definitions/register.all';
import EditorWorker from 'monaco-editor/editor/editor.worker?worker';

import './monaco-features';
import { Connection, type ConnState } from './connection';
import { askIdentity } from './dialog';
import { type Identity, saveLanguage, storedIdentity, storedLanguage, touchRecent } from './identity';
import { languageForPath, registerExtraLanguages } from './languages';
import {
  apply,
  advanceCp,
  compose,
  cpLength,
  cpToUtf16,
  diff,
  isNoop,
  type Op,
  type Range,
  replaceOp,
  utf16ToCp,
} from './ot';
import { homeHref, nodeUrls } from './route';
import { DocSync, type SyncEvent } from './sync';
import { UndoStack } from './undo';
import { el, toast } from './ui';

self.MonacoEnvironment = {
  // Only the base editor worker is used (no language-service workers).
  getWorker: () => new EditorWorker(),
};

/** How often the status line refreshes its countdown. */
const STATUS_TICK_MS = 500;

/** What the page exposes as `window.chorus` (status checks and the end-to-end tests). */
export interface ChorusHandle {
  doc: string;
  editor: monaco.editor.IStandaloneCodeEditor;
  /** Text in Monaco. */
  text(): string;
  /** Whether Monaco, the binding's copy and the state machine agree. */
  consistent(): boolean;
  /** Sync mode, revision, unacknowledged edits. */
  sync(): { mode: string; rev: number; unacknowledged: number; live: boolean };
  /** Collaborators with cursor ranges in code points. */
  peers(): { client: string; name: string; color: string; ranges: Range[] }[];
  connection(): ConnState;
  clientId(): string | null;
  undoDepth(): { undo: number; redo: number };
  /** `performance.now()` when the editor first accepted typing. */
  readyAt: number | null;
}

declare global {
  interface Window {
    chorus?: ChorusHandle;
  }
}

/** Builds the editor page for `doc` inside `root`. */
export async function startEditor(root: HTMLElement, doc: string): Promise<void> {
  document.title = `${doc} · Chorus`;
  touchRecent(doc);
  registerExtraLanguages(monaco);

  let me: Identity = storedIdentity() ?? (await askIdentity(null));

  const status = el('span', { class: 'status connecting', id: 'status', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const people = el('div', { class: 'people', id: 'people' });
  const langSelect = el('select', { id: 'lang', title: 'Language (highlighting)' }) as HTMLSelectElement;
  const copyButton = el('button', { id: 'copy-link', type: 'button', title: 'Copy the link to this document' }, 'Copy link');
  const header = el(
    'header',
    { class: 'bar' },
    el('a', { class: 'brand', href: homeHref() }, 'Chorus'),
    el('span', { class: 'doc-id', id: 'doc-id', title: doc }, doc),
    langSelect,
    copyButton,
    people,
    status,
  );
  const container = el('main', { class: 'editor', id: 'editor' });
  root.replaceChildren(header, container);

  const initialLang = storedLanguage(doc) ?? languageForPath(doc);
  const model = monaco.editor.createModel('', knownLanguage(initialLang), monaco.Uri.parse(`chorus:/${doc}`));
  model.setEOL(monaco.editor.EndOfLineSequence.LF);
  const editor = monaco.editor.create(container, {
    model,
    theme: 'vs-dark',
    automaticLayout: true,
    readOnly: true,
    readOnlyMessage: { value: 'Opening the document…' },
    minimap: { enabled: false },
    fontSize: 14,
    scrollBeyondLastLine: false,
    renderWhitespace: 'selection',
    unicodeHighlight: { ambiguousCharacters: false },
    // Word completions on demand (Ctrl+Space), not while typing: a popup that Enter accepts
    // would fight with fast typing next to collaborators.
    quickSuggestions: false,
    suggestOnTriggerCharacters: false,
  });

  fillLanguages(langSelect, initialLang);
  const sync = new DocSync(doc);
  const undo = new UndoStack();
  const conn = new Connection(nodeUrls(), () => me, () => renderStatus());
  const binding = new Binding(editor, model, sync, undo, () => conn.pump(sync));
  let serverLang: string | null = null;
  let notice: string | null = null;

  const handle: ChorusHandle = {
    doc,
    editor,
    text: () => model.getValue(),
    consistent: () => binding.consistent(),
    sync: () => ({ mode: sync.mode, rev: sync.rev, unacknowledged: sync.unacknowledged(), live: sync.isLive() }),
    peers: () => [...sync.peers.values()].map((p) => ({ ...p, ranges: p.ranges.map((r) => [...r] as Range) })),
    connection: () => conn.state,
    clientId: () => conn.clientId,
    undoDepth: () => undo.depth(),
    readyAt: null,
  };
  window.chorus = handle;

  binding.onEvent = (e: SyncEvent) => {
    switch (e.kind) {
      case 'reset':
        if (!sync.readOnly) editor.updateOptions({ readOnly: false });
        if (handle.readyAt === null) {
          handle.readyAt = performance.now();
          document.body.dataset['ready'] = 'true';
          editor.focus();
        }
        break;
      case 'lang':
        serverLang = e.lang;
        if (storedLanguage(doc) === null) setLanguage(e.lang);
        break;
      case 'notice':
        notice = e.message;
        toast(e.message);
        if (sync.readOnly) editor.updateOptions({ readOnly: true, readOnlyMessage: { value: 'This document is read-only for you.' } });
        break;
      case 'peers':
        renderPeople();
        break;
      case 'state':
        renderStatus();
        break;
      default:
        break;
    }
  };

  function knownLanguage(id: string): string {
    return monaco.languages.getLanguages().some((l) => l.id === id) ? id : 'plaintext';
  }

  function setLanguage(id: string): void {
    const known = knownLanguage(id);
    monaco.editor.setModelLanguage(model, known);
    langSelect.value = known;
  }

  langSelect.addEventListener('change', () => {
    const id = langSelect.value;
    monaco.editor.setModelLanguage(model, id);
    saveLanguage(doc, id === (serverLang ?? languageForPath(doc)) ? null : id);
    editor.focus();
  });

  copyButton.addEventListener('click', () => {
    void copyText(location.href).then((ok) => toast(ok ? 'Link copied: send it to invite someone.' : location.href));
  });

  function renderPeople(): void {
    const chips: HTMLElement[] = [chip(me.name, me.color, 'you', conn.clientId ?? 'me')];
    const onlyOnce = new Set<string>();
    for (const p of sync.peers.values()) {
      if (onlyOnce.has(p.client)) continue;
      onlyOnce.add(p.client);
      chips.push(chip(p.name, p.color, null, p.client));
    }
    chips[0]!.addEventListener('click', () => {
      void askIdentity(me).then((chosen) => {
        me = chosen;
        renderPeople();
        conn.reconnectNow(); // `hello` carries the new name; same client id, same revision
      });
    });
    chips[0]!.title = 'You: click to change your name or color';
    people.replaceChildren(...chips);
  }

  function renderStatus(): void {
    const s = conn.state;
    const pendingEdits = sync.unacknowledged();
    let text: string;
    let cls: string;
    if (s.state === 'online' && sync.isLive()) {
      cls = pendingEdits > 0 ? 'online saving' : 'online';
      text = `Online · ${s.node} · ${pendingEdits > 0 ? 'Saving…' : 'Saved'}`;
    } else if (s.state === 'online') {
      cls = 'connecting';
      text = `Syncing with ${s.node}…`;
    } else if (s.state === 'connecting') {
      cls = 'connecting';
      text = s.attempt > 0 ? `Reconnecting (attempt ${s.attempt + 1})…` : 'Connecting…';
    } else {
      cls = 'offline';
      const seconds = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
      const kept = pendingEdits > 0 ? ' · your edits are kept and will be sent' : '';
      text = `Offline (${s.reason}) · retrying${seconds > 0 ? ` in ${seconds}s` : '…'}${kept}`;
    }
    if (sync.readOnly) text += ' · read-only';
    status.textContent = text;
    status.className = `status ${cls}`;
    status.title = notice ?? `Node: ${s.url}`;
  }

  setInterval(() => {
    if (conn.state.state === 'offline') renderStatus();
  }, STATUS_TICK_MS);

  addEventListener('beforeunload', (event) => {
    if (sync.unacknowledged() > 0) event.preventDefault();
  });

  renderPeople();
  conn.add(sync, () => binding.drain());
  conn.start();
}

/** One person in the people list. */
function chip(name: string, color: string, suffix: string | null, client: string): HTMLElement {
  const node = el(
    'span',
    { class: 'person', 'data-client': client },
    el('span', { class: 'dot', style: `background:${safeColor(color)}` }),
    el('span', { class: 'name' }, name),
  );
  if (suffix) node.append(el('span', { class: 'suffix' }, ` (${suffix})`));
  return node;
}

function fillLanguages(select: HTMLSelectElement, current: string): void {
  const langs = monaco.languages
    .getLanguages()
    .map((l) => ({ id: l.id, label: l.aliases?.[0] ?? l.id }))
    .sort((a, b) => a.label.localeCompare(b.label));
  select.replaceChildren(...langs.map((l) => el('option', { value: l.id }, l.label)));
  select.value = langs.some((l) => l.id === current) ? current : 'plaintext';
}

async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el('textarea', {}, text) as HTMLTextAreaElement;
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

/** A color safe to put in CSS: `#rgb`/`#rrggbb`, else a neutral gray. */
function safeColor(color: string): string {
  return /^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/.test(color) ? color : '#888888';
}

// -----------------------------------------------------------------------------------------------

/**
 * Binds a Monaco model to a `DocSync`: the person's edits become ops (UTF-16 → code points),
 * incoming ops become Monaco edits (code points → UTF-16), collaborators' cursors become
 * decorations and name labels, and undo/redo go through the `UndoStack`.
 */
class Binding {
  /** Called for each sync event after the binding handled it. */
  onEvent: (e: SyncEvent) => void = () => {};

  /** The model's text as this binding last saw it (equals `sync.text` between events). */
  private shadow = '';
  private applying = false;
  private draining = false;
  private readonly decorations: monaco.editor.IEditorDecorationsCollection;
  private readonly labels = new Map<string, PeerLabel>();
  private readonly styled = new Set<string>();
  private readonly styleSheet: HTMLStyleElement;
  private renderQueued = false;
  /** The last change was the person's edit (its caret move does not end the undo step). */
  private typed = false;

  constructor(
    private readonly editor: monaco.editor.IStandaloneCodeEditor,
    private readonly model: monaco.editor.ITextModel,
    private readonly sync: DocSync,
    private readonly undo: UndoStack,
    private readonly pump: () => void,
  ) {
    this.decorations = editor.createDecorationsCollection();
    this.styleSheet = el('style', { id: 'chorus-peer-styles' }) as HTMLStyleElement;
    document.head.append(this.styleSheet);
    model.onDidChangeContent((e) => this.localChange(e));
    editor.onDidChangeCursorSelection(() => {
      // The caret moved by itself (click, arrows, a collaborator's edit), not by typing: the
      // next edit starts a new undo step.
      if (!this.typed) this.undo.seal();
      this.typed = false;
      queueMicrotask(() => this.selectionChanged());
    });
    // Monaco's own undo (keyboard, menus, native input events) all end in model.undo/redo:
    // route them to the local undo stack, which only holds this person's edits.
    model.undo = () => this.step('undo');
    model.redo = () => this.step('redo');
    editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyZ, () => this.step('undo'));
    editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyMod.Shift | monaco.KeyCode.KeyZ, () => this.step('redo'));
    editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyY, () => this.step('redo'));
  }

  /** Whether Monaco, the shadow copy and the state machine hold the same text. */
  consistent(): boolean {
    return this.model.getValue() === this.shadow && this.shadow === this.sync.text;
  }

  /** Handles every queued sync event (re-entrant calls fold into the running loop). */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      for (;;) {
        const events = this.sync.takeEvents();
        if (events.length === 0) break;
        for (const e of events) {
          this.handle(e);
          this.onEvent(e);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private handle(e: SyncEvent): void {
    switch (e.kind) {
      case 'reset':
        this.applying = true;
        try {
          this.model.setValue(e.text);
          this.model.setEOL(monaco.editor.EndOfLineSequence.LF);
        } finally {
          this.applying = false;
        }
        this.shadow = e.text;
        this.undo.clear();
        this.fixLineEndings();
        this.queueRender();
        break;
      case 'remote':
        this.applyOp(e.op, false);
        this.undo.transform(e.op);
        if (e.op.some((c) => typeof c === 'string' && c.includes('\r'))) this.fixLineEndings();
        break;
      case 'peers':
        this.queueRender();
        break;
      case 'retry':
        setTimeout(() => {
          this.sync.retry();
          this.pump();
        }, e.delayMs);
        break;
      default:
        break;
    }
  }

  /** The person typed (or pasted, or cut...): turn Monaco's changes into one op. */
  private localChange(e: monaco.editor.IModelContentChangedEvent): void {
    if (this.applying) return;
    if (this.sync.mode === 'opening') return; // read-only until the first snapshot
    const before = this.shadow;
    // Each change's offsets refer to the text before the event; applied from the end
    // backwards, earlier changes never move later offsets.
    const changes = [...e.changes].sort((a, b) => b.rangeOffset - a.rangeOffset);
    let text = before;
    let op: Op = [];
    let sawCr = false;
    for (const c of changes) {
      const start = utf16ToCp(text, c.rangeOffset);
      const deleted = cpLength(text.slice(c.rangeOffset, c.rangeOffset + c.rangeLength));
      const one = replaceOp(start, deleted, c.text);
      text = text.slice(0, c.rangeOffset) + c.text + text.slice(c.rangeOffset + c.rangeLength);
      op = op.length === 0 ? one : compose(op, one);
      if (c.text.includes('\r')) sawCr = true;
    }
    if (isNoop(op)) return;
    this.shadow = text;
    this.undo.record(before, op, performance.now());
    this.typed = true;
    queueMicrotask(() => (this.typed = false));
    // A new line ends an undo step, like a pause does.
    if (changes.some((c) => c.text.includes('\n'))) this.undo.seal();
    this.sync.localEdit(op);
    if (sawCr) this.fixLineEndings();
    this.pump();
  }

  /** Undo or redo one of the person's own steps. */
  private step(kind: 'undo' | 'redo'): void {
    if (this.sync.mode === 'opening' || this.sync.readOnly) return;
    const op = kind === 'undo' ? this.undo.popUndo() : this.undo.popRedo();
    if (!op) return;
    const before = this.shadow;
    this.applyOp(op, true);
    this.sync.localEdit(op);
    if (kind === 'undo') this.undo.pushRedo(before, op);
    else this.undo.pushUndo(before, op);
    this.pump();
  }

  /** Applies `op` (code points, on `shadow`) to Monaco as one batch of edits. */
  private applyOp(op: Op, moveCursor: boolean): void {
    const text = this.shadow;
    const edits: { start: number; end: number; text: string }[] = [];
    let at = 0; // UTF-16 offset in `text`
    for (const c of op) {
      if (typeof c === 'string') {
        edits.push({ start: at, end: at, text: c });
      } else if (c > 0) {
        at = advanceCp(text, at, c);
      } else {
        const end = advanceCp(text, at, -c);
        edits.push({ start: at, end, text: '' });
        at = end;
      }
    }
    // An insert next to a delete is one replacement (Monaco refuses touching edits otherwise).
    const merged: typeof edits = [];
    for (const e of edits) {
      const last = merged[merged.length - 1];
      if (last && last.end === e.start) {
        last.end = e.end;
        last.text += e.text;
      } else {
        merged.push({ ...e });
      }
    }
    const monacoEdits = merged.map((e) => ({
      range: monaco.Range.fromPositions(this.model.getPositionAt(e.start), this.model.getPositionAt(e.end)),
      text: e.text,
      forceMoveMarkers: false,
    }));
    this.applying = true;
    try {
      this.model.applyEdits(monacoEdits);
    } finally {
      this.applying = false;
    }
    this.shadow = apply(text, op);
    if (moveCursor && merged.length > 0) {
      // Put the caret at the end of the last undone/redone change (in the new text).
      let shift = 0;
      for (const e of merged.slice(0, -1)) shift += e.text.length - (e.end - e.start);
      const last = merged[merged.length - 1]!;
      const pos = this.model.getPositionAt(last.start + shift + last.text.length);
      this.editor.setSelection(monaco.Selection.fromPositions(pos, pos));
      this.editor.revealPositionInCenterIfOutsideViewport(pos);
    }
  }

  /** Monaco keeps LF line endings: if text with CR arrived, send the normalized text back. */
  private fixLineEndings(): void {
    const actual = this.model.getValue();
    if (actual === this.shadow) return;
    const fix = diff(this.shadow, actual);
    this.shadow = actual;
    if (this.sync.mode === 'opening') return;
    this.sync.localEdit(fix);
  }

  private selectionChanged(): void {
    if (this.sync.mode === 'opening') return;
    if (this.model.getValueLength() !== this.shadow.length) return; // mid-change; the next event sends it
    const ranges: Range[] = (this.editor.getSelections() ?? []).map((s) => [
      utf16ToCp(this.shadow, this.model.getOffsetAt({ lineNumber: s.selectionStartLineNumber, column: s.selectionStartColumn })),
      utf16ToCp(this.shadow, this.model.getOffsetAt({ lineNumber: s.positionLineNumber, column: s.positionColumn })),
    ]);
    this.sync.setSelection(ranges);
    this.pump();
  }

  private queueRender(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    setTimeout(() => {
      this.renderQueued = false;
      this.renderPeers();
    }, 0);
  }

  /** Draws every collaborator's selections, carets and name labels. */
  private renderPeers(): void {
    const text = this.shadow;
    const length = cpLength(text);
    const decorations: monaco.editor.IModelDeltaDecoration[] = [];
    const seen = new Set<string>();
    const toPosition = (cp: number) => this.model.getPositionAt(cpToUtf16(text, Math.min(Math.max(cp, 0), length)));
    for (const peer of this.sync.peers.values()) {
      const cls = this.peerClass(peer.color);
      for (const [anchor, head] of peer.ranges) {
        const a = toPosition(anchor);
        const h = toPosition(head);
        if (anchor !== head) {
          decorations.push({
            range: monaco.Range.fromPositions(a, h),
            options: {
              className: `chorus-selection ${cls}-bg`,
              stickiness: monaco.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges,
              hoverMessage: { value: peer.name },
            },
          });
        }
        decorations.push({
          range: monaco.Range.fromPositions(h, h),
          options: {
            beforeContentClassName: `chorus-caret ${cls}-caret`,
            stickiness: monaco.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges,
          },
        });
      }
      const first = peer.ranges[0];
      if (!first) continue;
      seen.add(peer.client);
      let label = this.labels.get(peer.client);
      if (!label) {
        label = new PeerLabel(peer.client);
        this.labels.set(peer.client, label);
        label.update(peer.name, safeColor(peer.color), toPosition(first[1]));
        this.editor.addContentWidget(label);
      } else {
        label.update(peer.name, safeColor(peer.color), toPosition(first[1]));
        this.editor.layoutContentWidget(label);
      }
    }
    for (const [client, label] of this.labels) {
      if (!seen.has(client)) {
        this.editor.removeContentWidget(label);
        this.labels.delete(client);
      }
    }
    this.decorations.set(decorations);
  }

  /** A CSS class for a collaborator's color, creating its rules once. */
  private peerClass(color: string): string {
    let hex = safeColor(color).slice(1).toLowerCase();
    if (hex.length === 3) hex = hex.replace(/./g, (c) => c + c);
    const cls = `chorus-peer-${hex}`;
    if (!this.styled.has(cls)) {
      this.styled.add(cls);
      this.styleSheet.append(
        `.${cls}-bg{background-color:#${hex}40}` + `.${cls}-caret::before{background-color:#${hex}}`,
      );
    }
    return cls;
  }
}

/** A collaborator's name tag, floating at their caret. */
class PeerLabel implements monaco.editor.IContentWidget {
  readonly allowEditorOverflow = false;
  private readonly node: HTMLElement;
  private position: monaco.IPosition = { lineNumber: 1, column: 1 };

  constructor(private readonly client: string) {
    this.node = el('div', { class: 'chorus-peer-label', 'data-client': client });
  }

  update(name: string, color: string, position: monaco.IPosition): void {
    this.node.textContent = name;
    this.node.style.backgroundColor = color;
    this.position = position;
  }

  getId(): string {
    return `chorus.peer.${this.client}`;
  }

  getDomNode(): HTMLElement {
    return this.node;
  }

  getPosition(): monaco.editor.IContentWidgetPosition {
    return {
      position: this.position,
      preference: [
        monaco.editor.ContentWidgetPositionPreference.ABOVE,
        monaco.editor.ContentWidgetPositionPreference.BELOW,
      ],
    };
  }
}
