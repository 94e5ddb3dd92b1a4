//! URLs: which page a path is, where a document lives, and which nodes to connect to.

import { isValidDocId } from './protocol';

/** Query parameters carried from page to page (the cluster's node list and a token). */
const CARRIED_PARAMS = ['nodes', 'token'];

/** The document id in a `/d/<doc id>` path, or null for another page. */
export function docIdFromPath(pathname: string): string | null {
  if (!pathname.startsWith('/d/')) return null;
  let id: string;
  try {
    id = decodeURIComponent(pathname.slice(3));
  } catch {
    return '';
  }
  return id;
}

/** The page URL (path and carried query) of a document: what to share to invite someone. */
export function docHref(doc: string, search: string = location.search): string {
  const params = new URLSearchParams(search);
  const kept = new URLSearchParams();
  for (const key of CARRIED_PARAMS) {
    const v = params.get(key);
    if (v !== null) kept.set(key, v);
  }
  const query = kept.toString();
  return `/d/${doc}${query ? `?${query.replace(/%2C/gi, ',').replace(/%2F/gi, '/').replace(/%3A/gi, ':')}` : ''}`;
}

/** The home page URL, keeping the carried query. */
export function homeHref(search: string = location.search): string {
  return docHref('', search).replace(/^\/d\//, '/');
}

/** WebSocket URLs to try, in order: `?nodes=ws://a/ws,ws://b/ws`, else this host's `/ws`. A
 * `?token=` is added to each. */
export function nodeUrls(loc: Pick<Location, 'protocol' | 'host' | 'search'> = location): string[] {
  const params = new URLSearchParams(loc.search);
  const listed = (params.get('nodes') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => /^wss?:\/\//.test(s));
  const urls = listed.length > 0 ? listed : [`${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`];
  const token = params.get('token');
  if (!token) return urls;
  return urls.map((u) => `${u}${u.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`);
}

export { isValidDocId };
