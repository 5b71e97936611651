// The session token mirrored into IndexedDB (database "switchboard", store "session", key
// "token"), where the service worker (sw.js) reads it: it has no localStorage, and declining a
// call from its notification needs the token. session.js keeps this copy in step with its own.

const DB = 'switchboard';
const STORE = 'session';
const KEY = 'token';

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function write(token) {
  let db;
  try {
    db = await open();
  } catch {
    return; // No IndexedDB (a private window in some browsers): the worker can't decline.
  }
  await new Promise((resolve) => {
    const tx = db.transaction(STORE, 'readwrite');
    if (token) tx.objectStore(STORE).put(token, KEY);
    else tx.objectStore(STORE).delete(KEY);
    tx.oncomplete = tx.onerror = tx.onabort = () => resolve();
  });
  db.close();
}

let queue = Promise.resolve();

/** Stores `token` (null: removes it), after any earlier write, so the last one wins. */
export function mirrorToken(token) {
  queue = queue.then(() => write(token));
  return queue;
}
