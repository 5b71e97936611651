// The service worker (served at /sw.js, scope /): keeps the app shell for opening at once and
// without the broker, and shows call notifications from Web Push while no page is open.
//
// The broker serves this file with two constants put in front of it (src/http/web_client.rs):
//   VERSION  a digest of every file of the shell, so a new build means a new worker and cache
//   SHELL    {path: ETag digest} for each file of the shell
// It is a classic script (not a module), so it runs in every browser that has service workers.
// The API, the WebSocket and everything else the broker serves always go to the network.
/* global VERSION, SHELL */

const CACHE_PREFIX = 'switchboard-shell-';
const CACHE = `${CACHE_PREFIX}${VERSION}`;
const CALL_ID = /^[0-9a-f]{32}$/;
const ICON = '/web/icon-192.png';

// ---------------------------------------------------------------- the app shell

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // One build's files or none: a file whose ETag is not this build's (the broker was
      // upgraded mid-install) fails the install, and the browser tries again later.
      await Promise.all(
        Object.entries(SHELL).map(async ([path, etag]) => {
          const response = await fetch(new Request(path, { cache: 'no-cache' }));
          if (!response.ok || response.headers.get('etag')?.replaceAll('"', '') !== etag) {
            throw new Error(`${path} is not from this build`);
          }
          await cache.put(path, response);
        }),
      );
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(CACHE_PREFIX) && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

/** The shell file a request is for: the page itself for a navigation to `/` (whatever its
 * query), a file of the shell by its path; null for anything else. */
function shellKey(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return null;
  if (request.mode === 'navigate') return url.pathname === '/' ? '/' : null;
  return !url.search && Object.hasOwn(SHELL, url.pathname) ? url.pathname : null;
}

self.addEventListener('fetch', (event) => {
  const key = shellKey(event.request);
  if (!key) return; // The network, as if there were no worker.
  event.respondWith(
    (async () => {
      const hit = await caches.match(key, { cacheName: CACHE });
      return hit ?? fetch(event.request);
    })(),
  );
});

// ---------------------------------------------------------------- the session token

/** The session token the page mirrors into IndexedDB (src/web/session-db.js), or null. */
function readToken() {
  return new Promise((resolve) => {
    let open;
    try {
      open = indexedDB.open('switchboard', 1);
    } catch {
      resolve(null);
      return;
    }
    open.onupgradeneeded = () => open.result.createObjectStore('session');
    open.onerror = () => resolve(null);
    open.onsuccess = () => {
      const db = open.result;
      const done = (value) => {
        db.close();
        resolve(typeof value === 'string' && value ? value : null);
      };
      try {
        const get = db.transaction('session', 'readonly').objectStore('session').get('token');
        get.onsuccess = () => done(get.result);
        get.onerror = () => done(null);
      } catch {
        done(null);
      }
    };
  });
}

async function apiRequest(method, path, body) {
  const token = await readToken();
  if (!token) return null;
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    return await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return null; // Offline: nothing more to do.
  }
}

// ---------------------------------------------------------------- pushes (docs/protocol.md)

/** A name for a notification: the display name, else the username, never very long. */
function nameOf(displayName, username) {
  const name = typeof displayName === 'string' && displayName.trim() ? displayName : username;
  return typeof name === 'string' && name.trim() ? name.trim().slice(0, 64) : 'Someone';
}

function showIncoming(message) {
  const media = message.media === 'audio' ? 'audio' : 'video';
  return self.registration.showNotification(`${nameOf(message.display_name, message.from)} is calling`, {
    body: `Incoming ${media} call on Switchboard`,
    tag: message.call_id,
    renotify: true,
    requireInteraction: true,
    icon: ICON,
    vibrate: [300, 200, 300, 200, 300],
    actions: [
      { action: 'accept', title: 'Accept' },
      { action: 'decline', title: 'Decline' },
    ],
    data: { kind: 'incoming', call_id: message.call_id, url: `/?accept=${message.call_id}` },
  });
}

function showMissed(message) {
  const media = message.media === 'audio' ? 'audio' : message.media === 'video' ? 'video' : null;
  return self.registration.showNotification(`Missed call from ${nameOf(message.display_name, message.from)}`, {
    body: media ? `You missed a ${media} call on Switchboard.` : 'You missed a call on Switchboard.',
    tag: message.call_id,
    icon: ICON,
    data: { kind: 'missed', call_id: message.call_id, url: '/' },
  });
}

async function closeCall(callId) {
  for (const notification of await self.registration.getNotifications({ tag: callId })) notification.close();
}

function showFriendRequest(message) {
  const from = message.from ?? {};
  const name = nameOf(from.display_name, from.username);
  return self.registration.showNotification(`${name} wants to be your friend`, {
    body: 'Open Switchboard to accept or decline.',
    tag: `friend-${typeof from.username === 'string' ? from.username.slice(0, 32) : 'request'}`,
    icon: ICON,
    data: { kind: 'friend', url: '/' },
  });
}

/** What a push shows. Every push shows something (the subscription is userVisibleOnly), except
 * the follow-up of a call answered or declined, which only takes its notification away. */
function onPush(message) {
  const call = typeof message?.call_id === 'string' && CALL_ID.test(message.call_id);
  switch (message?.type) {
    case 'call.incoming':
      if (call) return showIncoming(message);
      break;
    case 'call.ended':
      if (call) return message.missed ? showMissed(message) : closeCall(message.call_id);
      break;
    case 'call.missed':
      if (call) return showMissed(message);
      break;
    case 'friend.request':
      return showFriendRequest(message);
    default:
      break;
  }
  return self.registration.showNotification('Switchboard', {
    body: 'Something new on Switchboard.',
    tag: 'switchboard',
    icon: ICON,
    data: { kind: 'other', url: '/' },
  });
}

self.addEventListener('push', (event) => {
  let message = null;
  try {
    message = event.data ? event.data.json() : null;
  } catch {
    message = null;
  }
  event.waitUntil(
    Promise.resolve(onPush(message)).catch((error) => console.warn('push not shown', error)),
  );
});

// ---------------------------------------------------------------- notification clicks

/** Brings the app forward: an open window of it is focused (and told `message`), else `url`
 * opens. */
async function openApp(url, message) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).pathname === '/');
  if (!open) return self.clients.openWindow(url);
  if (message) open.postMessage(message);
  try {
    return await open.focus();
  } catch {
    return open; // Focusing needs the click's user activation; the message went anyway.
  }
}

/** Accept (or a plain click on the call) opens the app, which connects and accepts the call;
 * Decline ends it over REST with the session's token. */
async function handleNotificationClick(notification, action) {
  const data = notification.data ?? {};
  notification.close();
  if (data.kind === 'incoming' && CALL_ID.test(data.call_id ?? '')) {
    if (action === 'decline') {
      await apiRequest('POST', `/calls/${data.call_id}/end`);
      return null;
    }
    return openApp(`/?accept=${data.call_id}`, { type: 'accept', call_id: data.call_id });
  }
  return openApp('/', null);
}

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(handleNotificationClick(event.notification, event.action));
});

// ---------------------------------------------------------------- a renewed subscription

/** The browser replaced the subscription: the broker gets the new one for this session. */
async function renewSubscription(event) {
  let subscription = event.newSubscription ?? null;
  const key = event.oldSubscription?.options?.applicationServerKey;
  if (!subscription && key) {
    subscription = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }
  if (!subscription) return;
  const { endpoint, keys } = subscription.toJSON();
  await apiRequest('POST', '/push/subscriptions', { endpoint, keys: { p256dh: keys?.p256dh, auth: keys?.auth } });
}

self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil(renewSubscription(event).catch(() => {}));
});
