// Browser notifications for incoming calls while the tab is in the background, and asking for
// the permission only when the person chooses to turn them on.

import { $ } from './ui.js';

const DECLINED_KEY = 'switchboard.notify-offer-dismissed';

const supported = () => typeof window.Notification === 'function';

/** A notification for a ringing call when nobody is looking at the page; null otherwise. */
export function notifyIncoming(call, { onClick }) {
  if (!supported() || Notification.permission !== 'granted' || document.visibilityState === 'visible') return null;
  try {
    const notification = new Notification(`${call.peerName} is calling`, {
      body: `Incoming ${call.kind === 'video' ? 'video' : 'audio'} call on Switchboard`,
      tag: `call-${call.id}`,
      requireInteraction: true,
      icon: '/web/favicon.svg',
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

/** The "turn on alerts" offer on the home screen: shown until answered either way. */
export function renderNotifyOffer() {
  $('#notify-offer').hidden = !supported() || Notification.permission !== 'default' || localStorage.getItem(DECLINED_KEY) === '1';
}

/** The person pressed "Turn on alerts": the one moment the page asks for the permission. */
export async function enableNotifications() {
  if (!supported()) return;
  try {
    const answer = await Notification.requestPermission();
    if (answer === 'denied') localStorage.setItem(DECLINED_KEY, '1');
  } catch {
    localStorage.setItem(DECLINED_KEY, '1');
  }
  renderNotifyOffer();
}
