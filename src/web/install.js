// The web client as an installed app: registers the service worker (sw.js: the app shell
// offline, call notifications by push), shows "Install app" while the browser offers installing,
// and hands the page what the worker tells it (accept the call from a notification).

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
