//! Entry point: `/` is the home page; `/d/<doc id>` loads the editor (a separate chunk, so the
//! home page stays light).

import './style.css';

import { renderHome } from './home';
import { docIdProblem } from './home';
import { docIdFromPath } from './route';
import { el } from './ui';

const root = document.getElementById('app')!;
const doc = docIdFromPath(location.pathname);

if (doc === null) {
  renderHome(root);
} else {
  const problem = docIdProblem(doc);
  if (problem) {
    root.replaceChildren(
      el(
        'section',
        { class: 'home' },
        el('h1', {}, 'Not a document name'),
        el('p', {}, `“${doc}”: ${problem}`),
        el('p', {}, el('a', { href: '/' }, 'Back to Chorus')),
      ),
    );
  } else {
    root.replaceChildren(el('p', { class: 'loading' }, 'Loading the editor…'));
    import('./editor')
      .then((m) => m.startEditor(root, doc))
      .catch((e: unknown) => {
        root.replaceChildren(el('p', { class: 'loading' }, `The editor failed to load: ${String(e)}. Reload the page to try again.`));
      });
  }
}
