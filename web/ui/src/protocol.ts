//! Wire protocol v1 (PROTOCOL.md) as TypeScript types: every message a client sends or receives.

import type { Op, Range } from './ot';

/** A message this client sends. */
export type ClientMsg =
  | { type: 'hello'; client: string | null; name: string; color: string }
  | { type: 'open'; doc: string; rev: number | null }
  | { type: 'close'; doc: string }
  | { type: 'op'; doc: string; rev: number; seq: number; op: Op }
  | { type: 'cursor'; doc: string; rev: number; ranges: Range[] }
  | { type: 'ping' };

/** One op in the `ops` of an `opened` message. */
export interface RevOp {
  rev: number;
  client: string;
  op: Op;
}

/** Error codes (PROTOCOL.md, "Errors"). */
export type ErrorCode =
  | 'bad_message'
  | 'invalid_op'
  | 'stale_rev'
  | 'not_open'
  | 'forbidden'
  | 'too_large'
  | 'rate_limited'
  | 'unavailable';

/** A message the server sends. */
export type ServerMsg =
  | { type: 'welcome'; client: string; node: string; protocol: number }
  | { type: 'opened'; doc: string; rev: number; text: string; lang?: string }
  | { type: 'opened'; doc: string; rev: number; ops: RevOp[]; lang?: string }
  | { type: 'ack'; doc: string; seq: number; rev: number }
  | { type: 'op'; doc: string; rev: number; client: string; op: Op }
  | { type: 'cursor'; doc: string; client: string; name: string; color: string; ranges: Range[] }
  | { type: 'left'; doc: string; client: string }
  | { type: 'pong' }
  | { type: 'error'; code: ErrorCode; message: string; doc?: string; seq?: number };

/** Document ids: 1–256 characters of `A-Za-z0-9._-/`, `/`-separated non-empty segments, none
 * of them `.` or `..`. */
export function isValidDocId(id: string): boolean {
  if (id.length < 1 || id.length > 256 || !/^[A-Za-z0-9._\-/]+$/.test(id)) return false;
  return id.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}
