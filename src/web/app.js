// Switchboard's web client: sign-up and sign-in, friends with live presence, friend requests,
// search, call history, and 1:1 audio/video calls over WebRTC with the broker as the signaling
// channel. No build step: plain ES modules served by the broker itself.
//
// This file wires the page: it creates the REST client, the socket and the parts below, routes
// the broker's frames to them, connects the page's controls, switches tabs, and boots (with the
// service worker, and accepting the call named by `?accept=<call id>` when a notification's
// Accept opened the page).
// session.js, contacts.js, history.js and calls.js each own their state; they reach each other
// only through the callbacks given here.

import { createApi } from './api.js';
import { Realtime } from './realtime.js';
import { Ringtone } from './ringtone.js';
import { $, icon } from './ui.js';
import { show } from './screens.js';
import { createSession, savedSession, AUTH_INPUTS, clearFieldError } from './session.js';
import { createContacts } from './contacts.js';
import { createHistory } from './history.js';
import { createCalls } from './calls.js';
import { playRemoteAudio, hideBanner, toggleFullscreen, togglePictureInPicture } from './call-screen.js';
import { createDevices, applySpeaker } from './devices.js';
import { createAccount } from './account.js';
import { enableNotifications, resumeNotifications, stopNotifications } from './notify.js';
import { registerServiceWorker, wireInstall } from './install.js';
import { toast } from './screens.js';

const WIDE = window.matchMedia('(min-width: 900px)');
const CALL_ID = /^[0-9a-f]{32}$/;

let realtime = null;
let tab = 'friends';
/** The person picked a section themselves since signing in (the page then leaves it be). */
let tabChosen = false;

const ringtone = new Ringtone();
const api = createApi(
  () => session.token(),
  () => session.signedOut('Your session ended. Please sign in again.'),
);
const currentRealtime = () => realtime;

const session = createSession({
  api,
  unlockSound: () => ringtone.unlock(),
  onSignedIn: () => {
    tabChosen = false;
    selectTab(WIDE.matches ? 'history' : 'friends');
    resumeNotifications(api);
    connect();
  },
  onSignedOut: () => {
    for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
    calls.teardown();
    realtime?.stop();
    realtime = null;
    contacts.reset();
    callHistory.reset();
    hideBanner();
    stopNotifications(api, { tellBroker: false });
  },
  disconnect: () => realtime?.stop(),
  beforeLogout: () => stopNotifications(api, { tellBroker: true }),
});
const contacts = createContacts({
  api,
  realtime: currentRealtime,
  me: () => session.user()?.username,
  onCall: (username, media) => calls.start(username, media),
  onLeftDnd: () => callHistory.load(),
  onUnfriend: (friend) => account.unfriend(friend),
  onBlock: (person) => account.block(person),
});
const callHistory = createHistory({
  api,
  friend: (username) => contacts.friend(username),
  onCall: (username, media) => calls.start(username, media),
});
const calls = createCalls({
  api,
  realtime: currentRealtime,
  ringtone,
  displayName: (username) => contacts.displayName(username),
  friendStatus: (username) => contacts.friend(username)?.status,
  onEnded: () => callHistory.refreshSoon(),
});
const devices = createDevices({
  callStream: () => calls.localStream(),
  onChange: (kind, deviceId) => {
    if (kind === 'speaker') applySpeaker($('#remote-audio'));
    else calls.switchDevice(kind, deviceId).then(() => devices.refreshPreview());
  },
});
const account = createAccount({
  api,
  session,
  onRelationsChanged: () => refreshFriends(),
  pauseRealtime: () => {
    calls.teardown();
    realtime?.stop();
  },
  resumeRealtime: () => connect(),
});

/** The friends list again from the API (after an unfriend or a block, the pushes aside). */
async function refreshFriends() {
  try {
    const answer = await api.friends();
    contacts.setFriends(answer.friends ?? []);
  } catch {
    // The pushed friend.removed does the same.
  }
  contacts.loadRequests();
}

// ---------------------------------------------------------------- the socket and its frames

function connect() {
  realtime?.stop();
  realtime = new Realtime({
    token: session.token(),
    onFrame,
    onState: (info) => calls.connectionChanged(info),
    onUnauthorized: () => session.signedOut('Your session ended. Please sign in again.'),
  });
  realtime.start();
}

function onFrame(frame) {
  switch (frame.type) {
    case 'welcome':
      return onWelcome(frame);
    case 'presence':
    case 'friend.request':
    case 'friend.accepted':
    case 'friend.removed':
      return contacts.onFrame(frame);
    case 'call.incoming':
    case 'call.ringing':
    case 'call.accepted':
    case 'call.answered_elsewhere':
    case 'call.resumed':
    case 'call.ended':
    case 'signal':
      return calls.onFrame(frame);
    case 'error':
      console.warn('broker error', frame.error, frame.message);
      return undefined;
    default:
      return undefined;
  }
}

function onWelcome(frame) {
  session.updateUser(frame.user);
  contacts.setFriends(frame.friends);
  // Someone with no friends yet starts where they can find some, not on an empty history.
  if (!frame.friends?.length && !tabChosen) selectTab('search');
  callHistory.setMissed(frame.missed_calls ?? 0);
  calls.cacheIceServers(frame.ice_servers);
  contacts.resendStatus();
  contacts.loadRequests();
  callHistory.load();
  calls.reconcile(frame.calls ?? []);
}

// ---------------------------------------------------------------- a call accepted from its notification

/** The URL without `?accept=`: a reload must not try to accept the call again. */
function forgetAcceptQuery() {
  const url = new URL(location.href);
  if (!url.searchParams.has('accept')) return;
  url.searchParams.delete('accept');
  history.replaceState(history.state, '', `${url.pathname}${url.search}${url.hash}`);
}

/** Accept on a call's notification: the call is accepted once it rings on this page (the
 * socket may still be connecting), or the page says it is over. */
function acceptFromNotification(callId) {
  if (typeof callId !== 'string' || !CALL_ID.test(callId)) {
    forgetAcceptQuery();
    return;
  }
  calls.acceptWhenRinging(callId, (accepted) => {
    forgetAcceptQuery();
    if (!accepted) toast('That call has already ended.', { kind: 'warn', reason: 'accept_gone' });
  });
}

function onWorkerMessage(message) {
  if (message.type === 'accept') acceptFromNotification(message.call_id);
}

// ---------------------------------------------------------------- tabs

/** Shows a section. Missed calls count as seen only when the person opens History themselves.
 * `focus`: the section was picked with the pointer, so its first field may take the focus (from
 * the keyboard the focus stays on the tabs, so arrowing across them doesn't jump away). */
function selectTab(next, { byUser = false, focus = false } = {}) {
  if (WIDE.matches && next === 'friends') next = tab !== 'friends' ? tab : 'history';
  tab = next;
  if (byUser) tabChosen = true;
  for (const button of document.querySelectorAll('.tab')) {
    const selected = button.dataset.tab === tab;
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
  }
  for (const panel of document.querySelectorAll('.panel')) {
    panel.classList.toggle('active', panel.id === `panel-${tab}`);
  }
  if (tab === 'history') callHistory.opened({ byUser, stillShown: () => tab === 'history' });
  if (tab === 'requests') contacts.loadRequests();
  if (tab === 'search' && focus) setTimeout(() => $('#search-input').focus(), 0);
}

/** The tabs the layout shows (on wide screens Friends is always beside the others). */
function shownTabs() {
  return [...document.querySelectorAll('.tab')].filter((button) => button.offsetParent !== null);
}

/** A roving tabindex over the tabs: arrows, Home and End move between sections. */
function onTabKey(event) {
  const tabs = shownTabs();
  const at = tabs.indexOf(event.currentTarget);
  if (at < 0) return;
  const next = {
    ArrowRight: tabs[(at + 1) % tabs.length],
    ArrowDown: tabs[(at + 1) % tabs.length],
    ArrowLeft: tabs[(at - 1 + tabs.length) % tabs.length],
    ArrowUp: tabs[(at - 1 + tabs.length) % tabs.length],
    Home: tabs[0],
    End: tabs[tabs.length - 1],
  }[event.key];
  if (!next) return;
  event.preventDefault();
  selectTab(next.dataset.tab, { byUser: true });
  next.focus();
}

/** Keeps Tab and Shift+Tab inside `container` (an open dialog). */
function trapFocus(event, container) {
  if (event.key !== 'Tab') return;
  const focusable = [...container.querySelectorAll('button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])')].filter(
    (el) => !el.disabled && el.offsetParent !== null,
  );
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (!container.contains(document.activeElement)) {
    event.preventDefault();
    first.focus();
  } else if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
}

/** The incoming-call alert and the call screen cover the page: the keyboard stays in them. */
function onDocumentKey(event) {
  if (document.querySelector('dialog[open]')) return; // A modal dialog keeps the focus itself.
  const incoming = $('#incoming');
  if (!incoming.hidden) {
    if (event.key === 'Escape') {
      event.preventDefault();
      calls.decline();
      return;
    }
    trapFocus(event, incoming);
    return;
  }
  const screen = $('#call-screen');
  if (!screen.hidden) trapFocus(event, screen);
}

// ---------------------------------------------------------------- start-up

function wire() {
  $('#auth-tab-login').addEventListener('click', () => session.setAuthMode('login'));
  $('#auth-tab-register').addEventListener('click', () => session.setAuthMode('register'));
  $('#auth-form').addEventListener('submit', session.submitAuth);
  for (const [field, selector] of Object.entries(AUTH_INPUTS)) {
    $(selector).addEventListener('input', () => clearFieldError(field));
  }
  $('#logout').append(icon('logout'));
  $('#logout').addEventListener('click', session.logout);
  $('#status-form').addEventListener('submit', contacts.saveStatus);
  $('#status-select').addEventListener('change', () => contacts.saveStatus());
  const tabIcons = { friends: 'users', requests: 'inbox', search: 'search', history: 'clock' };
  for (const button of document.querySelectorAll('.tab')) {
    button.prepend(icon(tabIcons[button.dataset.tab]));
    button.addEventListener('click', (event) => selectTab(button.dataset.tab, { byUser: true, focus: event.detail > 0 }));
    button.addEventListener('keydown', onTabKey);
  }
  // Only a signed-in page has sections to re-lay out (and a history to load).
  WIDE.addEventListener('change', () => session.isSignedIn() && selectTab(tab));
  document.addEventListener('keydown', onDocumentKey);
  $('#search-form').addEventListener('submit', contacts.submitSearch);
  $('#search-input').addEventListener('input', contacts.searchSoon);
  $('#incoming-accept').append(icon('phone'));
  $('#incoming-decline').append(icon('hangup'));
  $('#incoming-accept').addEventListener('click', calls.accept);
  $('#incoming-decline').addEventListener('click', calls.decline);
  $('#call-hangup').append(icon('hangup'));
  $('#peer-muted-icon').append(icon('micOff'));
  $('#peer-camera-icon').append(icon('cameraOff'));
  $('#call-hangup').addEventListener('click', calls.hangUp);
  $('#call-mute').addEventListener('click', calls.toggleMute);
  $('#call-camera').addEventListener('click', calls.toggleCamera);
  $('#conn-retry').addEventListener('click', () => realtime?.reconnectNow());
  $('#call-share').addEventListener('click', calls.toggleShare);
  $('#call-chat').addEventListener('click', () => {
    calls.toggleChat();
    if (!$('#chat-panel').hidden && !$('#chat-input').disabled) $('#chat-input').focus();
  });
  $('#chat-close').append(icon('close'));
  $('#chat-close').addEventListener('click', () => {
    calls.toggleChat(false);
    $('#call-chat').focus();
  });
  $('#chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (calls.sendChat($('#chat-input').value)) $('#chat-input').value = '';
  });
  $('#call-devices').append(icon('settings'));
  $('#call-devices').addEventListener('click', () => devices.open());
  $('#devices-open').append(icon('settings'));
  $('#devices-open').addEventListener('click', () => devices.open());
  $('#call-fullscreen').append(icon('fullscreen'));
  $('#call-fullscreen').addEventListener('click', toggleFullscreen);
  $('#call-pip').append(icon('pip'));
  $('#call-pip').addEventListener('click', togglePictureInPicture);
  $('#account-open').append(icon('user'));
  $('#account-open').addEventListener('click', () => account.open());
  $('#notify-enable').addEventListener('click', () => enableNotifications(api));
  wireInstall();
  $('#find-friends').addEventListener('click', () => selectTab('search', { byUser: true, focus: true }));
  devices.wire();
  account.wire();
  $('#sound-unlock').addEventListener('click', playRemoteAudio);
  // Any click may be the gesture that lets the ringtone play later.
  document.addEventListener('pointerdown', () => ringtone.unlock(), { once: true });
  // Signing in or out in another tab applies here too.
  window.addEventListener('storage', session.syncWithOtherTabs);
  // Back to a tab left in the background: the history may have grown meanwhile.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && session.isSignedIn()) callHistory.load();
  });
  // Refresh "last seen 3 min ago" now and then.
  setInterval(() => session.isSignedIn() && contacts.renderFriends(), 30_000);
}

// A handle for people and tests poking at the page from the console.
window.switchboard = {
  get pc() {
    return calls.peerConnection();
  },
  get call() {
    return calls.summary();
  },
  get ringtone() {
    return { kind: ringtone.kind, context: ringtone.contextState };
  },
  get connection() {
    return realtime?.state ?? 'none';
  },
  /** Drops the WebSocket as a network failure would; it reconnects by itself. */
  dropConnection() {
    realtime?.drop();
  },
};

wire();
registerServiceWorker(onWorkerMessage);
session.setAuthMode('login');
const acceptQuery = new URLSearchParams(location.search).get('accept');
if (acceptQuery !== null) acceptFromNotification(acceptQuery);
const saved = savedSession();
if (saved) session.signedIn(saved);
else show('auth-screen');
