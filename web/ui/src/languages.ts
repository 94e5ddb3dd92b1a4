//! Languages: the server's extension → language mapping mirrored for a first guess before the
//! document opens, and Monarch grammars for the two languages the server names that Monaco's
//! basic languages lack (JSON and TOML need no worker this way).

import type * as Monaco from 'monaco-editor/editor/editor.api';

/** Monaco language id for a document id, from its extension (same table as the server). */
export function languageForPath(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  if (dot < 0) return 'plaintext';
  const ext = name.slice(dot + 1).toLowerCase();
  const table: Record<string, string> = {
    rs: 'rust', ts: 'typescript', tsx: 'typescript', js: 'javascript', jsx: 'javascript', mjs: 'javascript',
    cjs: 'javascript', py: 'python', go: 'go', c: 'c', h: 'c', cc: 'cpp', cpp: 'cpp', cxx: 'cpp', hpp: 'cpp',
    hh: 'cpp', java: 'java', json: 'json', md: 'markdown', markdown: 'markdown', html: 'html', htm: 'html',
    css: 'css', toml: 'toml', yaml: 'yaml', yml: 'yaml', sh: 'shell', bash: 'shell', sql: 'sql', rb: 'ruby',
    kt: 'kotlin', kts: 'kotlin', swift: 'swift', cs: 'csharp', php: 'php', lua: 'lua', xml: 'xml',
  };
  return table[ext] ?? 'plaintext';
}

const json: Monaco.languages.IMonarchLanguage = {
  defaultToken: '',
  tokenPostfix: '.json',
  tokenizer: {
    root: [
      [/\s+/, ''],
      [/\/\/.*$/, 'comment'],
      [/\/\*/, 'comment', '@comment'],
      [/"(?:[^"\\]|\\.)*"(?=\s*:)/, 'type'],
      [/"(?:[^"\\]|\\.)*"?/, 'string'],
      [/-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/, 'number'],
      [/\b(?:true|false|null)\b/, 'keyword'],
      [/[{}[\]]/, '@brackets'],
      [/[,:]/, 'delimiter'],
    ],
    comment: [
      [/[^*]+/, 'comment'],
      [/\*\//, 'comment', '@pop'],
      [/\*/, 'comment'],
    ],
  },
};

const toml: Monaco.languages.IMonarchLanguage = {
  defaultToken: '',
  tokenPostfix: '.toml',
  tokenizer: {
    root: [
      [/\s+/, ''],
      [/#.*$/, 'comment'],
      [/^\s*\[\[?[^\]\n]*\]\]?/, 'type'],
      [/"""/, 'string', '@basicMultiline'],
      [/'''/, 'string', '@literalMultiline'],
      [/(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?=\s*(?:\.|=))/, 'variable'],
      [/"(?:[^"\\]|\\.)*"?/, 'string'],
      [/'[^']*'?/, 'string'],
      [/\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:\d{2})?/, 'number'],
      [/[+-]?(?:0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+|inf|nan|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)/, 'number'],
      [/\b(?:true|false)\b/, 'keyword'],
      [/[{}[\]]/, '@brackets'],
      [/[=,.]/, 'delimiter'],
    ],
    basicMultiline: [
      [/[^"\\]+/, 'string'],
      [/\\./, 'string.escape'],
      [/"""/, 'string', '@pop'],
      [/"/, 'string'],
    ],
    literalMultiline: [
      [/[^']+/, 'string'],
      [/'''/, 'string', '@pop'],
      [/'/, 'string'],
    ],
  },
};

/** Registers JSON and TOML (Monarch, main thread) unless something already did. */
export function registerExtraLanguages(monaco: typeof Monaco): void {
  const known = new Set(monaco.languages.getLanguages().map((l) => l.id));
  if (!known.has('json')) {
    monaco.languages.register({ id: 'json', extensions: ['.json'], aliases: ['JSON', 'json'] });
    monaco.languages.setMonarchTokensProvider('json', json);
    monaco.languages.setLanguageConfiguration('json', {
      comments: { lineComment: '//', blockComment: ['/*', '*/'] },
      brackets: [['{', '}'], ['[', ']']],
      autoClosingPairs: [{ open: '{', close: '}' }, { open: '[', close: ']' }, { open: '"', close: '"', notIn: ['string'] }],
    });
  }
  if (!known.has('toml')) {
    monaco.languages.register({ id: 'toml', extensions: ['.toml'], aliases: ['TOML', 'toml'] });
    monaco.languages.setMonarchTokensProvider('toml', toml);
    monaco.languages.setLanguageConfiguration('toml', {
      comments: { lineComment: '#' },
      brackets: [['{', '}'], ['[', ']']],
      autoClosingPairs: [{ open: '{', close: '}' }, { open: '[', close: ']' }, { open: '"', close: '"', notIn: ['string'] }],
    });
  }
}
