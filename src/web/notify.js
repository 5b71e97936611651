// Notifications for incoming calls, and asking for the permission only when the person chooses
// to turn them on. Where the browser has Web Push, the offer is "Enable call notifications": calls
// ring through the service worker even when Switchboard is closed (push.js, sw.js). Elsewhere it
// is "Turn on alerts": a notification from the page while its tab is in the background.

import { $ } from './ui.js';
import { toast } from './screens.js';
import { pushSupported, subscribe, unsubscribe } from './push.js';

const DECLINED_KEY = 'switchboard.notify-offer-dismissed';
/** Set while this browser's push subscription is registered for the signed-in session. */
const PUSH_KEY = 'switchboard.push';

const supported = () => typeof window.Notification === 'function';
const pushOn = () => localStorage.getItem(PUSH_KEY) === '1';
/** Subscribing failed on this page (no push service reachable, say): not offered again here. */
let pushFailed = false;

/** A notification for a ringing call when nobody is looking at the page; null otherwise. */
export function notifyIncoming(call, { onClick }) {
  if (!supported() || Notification.permission !== 'granted' || document.visibilityState === 'visible') return null;
  try {
    const notification = new Notification(`${call.peerName} is calling`, {
      body: `Incoming ${call.kind === 'video' ? 'video' : 'audio'} call on Switchboard`,
      tag: `call-${call.id}`,
      requireInteraction: true,
      icon: '/web/icon-192.png',
    });
    notification.onclick = () => {
      onClick();
      notification.close();
    };
    return notification;
  } catch {
    // Some browsers (Chrome on Android) only notify through a service worker.
    return null;
  }
}

/** The service worker's notification of call `id` goes: the call stopped ringing on this page
 * (answered, declined or over), so a notification pushed for it has nothing left to offer. */
export async function closeCallNotification(id) {
  if (!id || !('serviceWorker' in navigator)) return;
  try {
    const registration = await navigator.serviceWorker.getRegistration('/');
    for (const notification of (await registration?.getNotifications({ tag: id })) ?? []) notification.close();
  } catch {
    // Nothing to close.
  }
}

/** The offer on the home screen: call notifications until they are on, else tab alerts until
 * answered either way; never after a "no". */
function renderNotifyOffer() {
  const push = pushSupported() && !pushFailed;
  const permission = supported() ? Notification.permission : 'denied';
  const offered =
    permission !== 'denied' &&
    localStorage.getItem(DECLINED_KEY) !== '1' &&
    (push ? !pushOn() : permission === 'default');
  $('#notify-offer').hidden = !offered;
  $('#notify-offer-text').textContent = push
    ? 'Get a notification for incoming calls, even when Switchboard is closed.'
    : 'Get an alert for incoming calls while this tab is in the background.';
  $('#notify-enable').textContent = push ? 'Enable call notifications' : 'Turn on alerts';
}

async function subscribeForCalls(api) {
  try {
    await subscribe(api);
    localStorage.setItem(PUSH_KEY, '1');
    return true;
  } catch (error) {
    console.warn('push subscription', error?.name, error?.message);
    // Offline: the broker still has the subscription it had, and the next sign-in tries again.
    if (error?.code === 'network') return false;
    pushFailed = true;
    localStorage.removeItem(PUSH_KEY);
    return false;
  }
}

/** The person pressed the offer's button: the one moment the page asks for the permission. */
export async function enableNotifications(api) {
  if (!supported()) return;
  let answer = Notification.permission;
  if (answer === 'default') {
    try {
      answer = await Notification.requestPermission();
    } catch {
      answer = 'denied';
    }
  }
  if (answer === 'denied') localStorage.setItem(DECLINED_KEY, '1');
  if (answer === 'granted' && pushSupported()) {
    if (await subscribeForCalls(api)) {
      toast('Call notifications are on: calls ring here even when Switchboard is closed.', { reason: 'push_on' });
    } else {
      toast('Call notifications could not be turned on in this browser; calls still ring while Switchboard is open.', {
        kind: 'warn',
        reason: 'push_failed',
      });
    }
  }
  renderNotifyOffer();
}

/** Signed in: a browser whose call notifications are on registers its subscription for this
 * session again (it may be a new session, or the broker may have dropped it). */
export async function resumeNotifications(api) {
  if (pushOn() && pushSupported() && Notification.permission === 'granted') await subscribeForCalls(api);
  renderNotifyOffer();
}

/** Signing out (`tellBroker` while the token still works): calls stop ringing this browser. */
export async function stopNotifications(api, { tellBroker }) {
  const wasOn = pushOn();
  localStorage.removeItem(PUSH_KEY);
  await unsubscribe(api, { tellBroker: tellBroker && wasOn });
}
