// The web client as an installed app: registers the service worker (sw.js: the app shell
// offline, call notifications by push), shows "Install app" while the browser offers installing,
// and hands the page what the worker tells it (accept the call from a notification).

import { toast } from './screens.js';

let offer = null; // The browser's beforeinstallprompt event, while it offers installing.

function renderInstall() {
  for (const button of document.querySelectorAll('.install-app')) button.hidden = !offer;
}

/** @param {(message: object) => void} onMessage a message from the service worker */
export function registerServiceWorker(onMessage) {
  if (!('serviceWorker' in navigator)) return; // Not a secure context, or an old browser.
  navigator.serviceWorker.addEventListener('message', (event) => {
    if (event.data && typeof event.data === 'object') onMessage(event.data);
  });
  navigator.serviceWorker.startMessages();
  // A worker of a newer build took over (the broker was upgraded): this page still runs the
  // older code until it is reloaded. The first worker taking over a fresh page is no news.
  let controlled = Boolean(navigator.serviceWorker.controller);
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    const first = !controlled;
    controlled = true;
    if (first) return;
    toast('Switchboard was updated.', { reason: 'updated', timeout: 60_000, action: { label: 'Reload', run: () => location.reload() } });
  });
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch((error) => {
    console.warn('the service worker did not register', error?.message);
  });
}

export function wireInstall() {
  window.addEventListener('beforeinstallprompt', (event) => {
    event.preventDefault(); // Ours is the button, not the browser's mini-infobar.
    offer = event;
    renderInstall();
  });
  window.addEventListener('appinstalled', () => {
    offer = null;
    renderInstall();
  });
  for (const button of document.querySelectorAll('.install-app')) {
    button.addEventListener('click', async () => {
      const event = offer;
      if (!event) return;
      offer = null; // A prompt can be shown once.
      renderInstall();
      try {
        await event.prompt();
      } catch {
        // Dismissed or no longer allowed; the browser offers again later.
      }
    });
  }
  renderInstall();
}
