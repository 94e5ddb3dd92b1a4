//! The "who are you" dialog: a name and a color, chosen once and remembered.

import { COLORS, type Identity, MAX_NAME_CHARS, saveIdentity, suggestedIdentity } from './identity';
import { el } from './ui';

/** Asks for a name and color (prefilled with `current` or a suggestion), saves and returns them. */
export function askIdentity(current: Identity | null): Promise<Identity> {
  const start = current ?? suggestedIdentity();
  return new Promise((resolve) => {
    let color = start.color;
    const input = el('input', {
      id: 'identity-name',
      type: 'text',
      maxlength: String(MAX_NAME_CHARS),
      value: start.name,
      autocomplete: 'nickname',
      'aria-label': 'Your name',
    }) as HTMLInputElement;
    const swatches = el('div', { class: 'swatches', role: 'radiogroup', 'aria-label': 'Your color' });
    const renderSwatches = () => {
      swatches.replaceChildren(
        ...COLORS.map((c) => {
          const b = el('button', {
            type: 'button',
            class: `swatch${c === color ? ' chosen' : ''}`,
            style: `background:${c}`,
            'data-color': c,
            role: 'radio',
            'aria-checked': String(c === color),
            'aria-label': c,
          });
          b.addEventListener('click', () => {
            color = c;
            renderSwatches();
          });
          return b;
        }),
      );
    };
    renderSwatches();
    const ok = el('button', { type: 'submit', id: 'identity-ok', class: 'primary' }, 'Start editing');
    const form = el(
      'form',
      { class: 'dialog' },
      el('h2', {}, current ? 'Your name and color' : 'Who are you?'),
      el('p', {}, 'Collaborators see your cursor with this name and color.'),
      input,
      swatches,
      ok,
    ) as HTMLFormElement;
    const overlay = el('div', { class: 'overlay', id: 'identity-dialog' }, form);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (name === '') {
        input.focus();
        return;
      }
      const chosen = { name, color };
      saveIdentity(chosen);
      overlay.remove();
      resolve(chosen);
    });
    document.body.append(overlay);
    input.focus();
    input.select();
  });
}
