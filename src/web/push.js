// Web Push for calls that ring while the app is closed: this browser's push subscription,
// registered with the broker for the signed-in session (POST /api/v1/push/subscriptions) and
// dropped on sign-out. The service worker (sw.js) shows what the pushes say.

/** How long subscribing waits for the service worker (it never comes if registering failed). */
const READY_TIMEOUT_MS = 10_000;

/** The browser can be rung by push: a service worker, the Push API and notifications. */
export const pushSupported = () =>
  'serviceWorker' in navigator && 'PushManager' in window && typeof window.Notification === 'function';

/** The VAPID public key (base64url, unpadded) as the bytes pushManager.subscribe wants. */
function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function sameBytes(buffer, bytes) {
  if (!buffer) return false;
  const other = new Uint8Array(buffer);
  return other.length === bytes.length && other.every((b, i) => b === bytes[i]);
}

/** This browser's current subscription, or null. */
async function currentSubscription() {
  const registration = await navigator.serviceWorker.getRegistration('/');
  return (await registration?.pushManager.getSubscription()) ?? null;
}

/**
 * Subscribes this browser with the broker's key (one made with another key is replaced) and
 * registers the subscription for the session. The notification permission must be granted.
 */
export async function subscribe(api) {
  const { public_key: publicKey } = await api.vapidPublicKey();
  const key = keyBytes(publicKey);
  const registration = await Promise.race([
    navigator.serviceWorker.ready,
    new Promise((_, reject) => {
      setTimeout(() => reject(new Error('the service worker is not running')), READY_TIMEOUT_MS);
    }),
  ]);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameBytes(subscription.options?.applicationServerKey, key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const { endpoint, keys } = subscription.toJSON();
  await api.addPushSubscription({ endpoint, keys: { p256dh: keys?.p256dh, auth: keys?.auth } });
}

/**
 * Signing out: the broker forgets the session's subscription (`tellBroker`, while the token is
 * still good; it also drops it with the session) and the browser drops the subscription.
 */
export async function unsubscribe(api, { tellBroker }) {
  if (tellBroker) {
    try {
      await api.removePushSubscription();
    } catch {
      // The broker deletes it with the session anyway.
    }
  }
  if (!pushSupported()) return;
  try {
    await (await currentSubscription())?.unsubscribe();
  } catch {
    // Nothing to drop.
  }
}
