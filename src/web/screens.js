// The page's top-level screens (boot, sign-in, home: one shows at a time) and its toasts, the
// short messages in the corner that every part of the page uses.

import { h, $ } from './ui.js';

export function show(screen) {
  for (const id of ['boot-screen', 'auth-screen', 'home-screen']) {
    $(`#${id}`).hidden = id !== screen;
  }
}

/** A short message. `action`: {label, run} adds a button (such as "Call again") that closes it. */
export function toast(message, { kind = 'info', reason, timeout = kind === 'info' ? 5000 : 8000, action = null } = {}) {
  const el = h(
    'div',
    { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: reason ? { reason } : {} },
    h('span', { class: 'toast-text' }, message),
    action
      ? h(
          'button',
          {
            type: 'button',
            class: 'toast-action',
            onclick: () => {
              el.remove();
              action.run();
            },
          },
          action.label,
        )
      : null,
    h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'),
  );
  $('#toasts').append(el);
  while ($('#toasts').children.length > 3) $('#toasts').firstElementChild.remove();
  setTimeout(() => el.remove(), timeout);
}
