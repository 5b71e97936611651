// Switchboard's web client: sign-up and sign-in, friends with live presence, friend requests,
// search, call history, and 1:1 audio/video calls over WebRTC with the broker as the signaling
// channel. No build step: plain ES modules served by the broker itself.
//
// The session token lives in localStorage, so every tab of a signed-in user shares it: each
// tab opens its own WebSocket (a device), so an incoming call rings in all of them, and signing
// out in one signs out all. It is never put in a URL.

import { createApi } from './api.js';
import { Realtime } from './realtime.js';
import { MediaCall, getLocalMedia } from './media-call.js';
import { Ringtone } from './ringtone.js';
import { h, $, fill, icon, avatar, relativeTime, formatClock, formatWhen } from './ui.js';

const TOKEN_KEY = 'switchboard.session';
const ICE_CACHE_MS = 10 * 60 * 1000;
/** How long the page waits for the socket to come back before giving up on a live call; the
 * broker's own reconnect grace (10 s by default) ends it on its side. */
const CALL_OFFLINE_LIMIT_MS = 20_000;
/** How long an ended call's message stays on the call screen. */
const ENDED_SCREEN_MS = 2500;
const WIDE = window.matchMedia('(min-width: 900px)');

const STATUS_LABEL = {
  online: 'Online',
  away: 'Away',
  dnd: 'Do not disturb',
  busy: 'In a call',
  offline: 'Offline',
};
const STATUS_ORDER = { online: 0, away: 1, busy: 2, dnd: 3, offline: 4 };

const state = {
  session: null, // {token, user}
  realtime: null,
  friends: new Map(), // username -> {username, display_name, status, message?, last_seen?}
  requests: { incoming: [], outgoing: [] },
  history: [],
  missed: 0,
  tab: 'friends',
  myStatus: { status: 'online', message: '' },
  ice: null, // {servers, expires}
  call: null,
  searchResults: [],
};

const ringtone = new Ringtone();
const api = createApi(
  () => state.session?.token ?? null,
  () => signedOut('Your session ended. Please sign in again.'),
);

// ---------------------------------------------------------------- session storage

function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(TOKEN_KEY) ?? 'null');
    return saved?.token ? saved : null;
  } catch {
    return null;
  }
}

function saveSession(session) {
  localStorage.setItem(TOKEN_KEY, JSON.stringify(session));
}

function forgetSession() {
  localStorage.removeItem(TOKEN_KEY);
}

// ---------------------------------------------------------------- screens

function show(screen) {
  for (const id of ['boot-screen', 'auth-screen', 'home-screen']) {
    $(`#${id}`).hidden = id !== screen;
  }
}

function toast(message, { kind = 'info', reason, timeout = kind === 'info' ? 5000 : 8000 } = {}) {
  const el = h(
    'div',
    { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: reason ? { reason } : {} },
    h('span', { class: 'toast-text' }, message),
    h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'),
  );
  $('#toasts').append(el);
  while ($('#toasts').children.length > 3) $('#toasts').firstElementChild.remove();
  setTimeout(() => el.remove(), timeout);
}

// ---------------------------------------------------------------- sign-in and registration

let authMode = 'login';

function setAuthMode(mode) {
  authMode = mode;
  $('#auth-tab-login').setAttribute('aria-selected', String(mode === 'login'));
  $('#auth-tab-register').setAttribute('aria-selected', String(mode === 'register'));
  $('#field-display-name').hidden = mode !== 'register';
  $('#auth-password').autocomplete = mode === 'register' ? 'new-password' : 'current-password';
  $('#auth-submit').textContent = mode === 'register' ? 'Create account' : 'Sign in';
  clearAuthErrors();
}

const FIELD_ERROR = {
  username: '#auth-username-error',
  password: '#auth-password-error',
  display_name: '#auth-display-name-error',
  form: '#auth-form-error',
};
const FIELD_INPUT = {
  username: '#auth-username',
  password: '#auth-password',
  display_name: '#auth-display-name',
};

function clearAuthErrors() {
  for (const [field, selector] of Object.entries(FIELD_ERROR)) {
    $(selector).textContent = '';
    if (FIELD_INPUT[field]) $(FIELD_INPUT[field]).removeAttribute('aria-invalid');
  }
}

function authError(field, message) {
  $(FIELD_ERROR[field]).textContent = message;
  if (FIELD_INPUT[field]) {
    $(FIELD_INPUT[field]).setAttribute('aria-invalid', 'true');
    $(FIELD_INPUT[field]).focus();
  }
}

/** The broker's rules, checked first so most mistakes are explained without a round trip. */
function checkAuthForm(username, password, displayName) {
  if (!/^[a-z0-9_.-]{3,32}$/.test(username)) {
    return ['username', 'Use 3–32 characters: letters a–z, digits, “_”, “.” or “-”.'];
  }
  if (authMode === 'register') {
    const bytes = new TextEncoder().encode(password).length;
    if (bytes < 8) return ['password', 'Use at least 8 characters.'];
    if (bytes > 72) return ['password', 'Use at most 72 bytes.'];
    if (displayName.length > 64) return ['display_name', 'Use at most 64 characters.'];
  } else if (!password) {
    return ['password', 'Enter your password.'];
  }
  return null;
}

const SERVER_FIELD = {
  invalid_username: 'username',
  username_taken: 'username',
  invalid_password: 'password',
  invalid_credentials: 'password',
  invalid_display_name: 'display_name',
};

async function submitAuth(event) {
  event.preventDefault();
  ringtone.unlock();
  clearAuthErrors();
  const username = $('#auth-username').value.trim().toLowerCase();
  const password = $('#auth-password').value;
  const displayName = $('#auth-display-name').value.trim();
  const problem = checkAuthForm(username, password, displayName);
  if (problem) {
    authError(...problem);
    return;
  }
  const button = $('#auth-submit');
  button.disabled = true;
  try {
    const result =
      authMode === 'register'
        ? await api.register(username, password, displayName)
        : await api.login(username, password);
    $('#auth-password').value = '';
    signedIn({ token: result.token, user: result.user });
  } catch (error) {
    const field = SERVER_FIELD[error.code] ?? 'form';
    const message =
      error.code === 'username_taken'
        ? 'That username is taken. Try another one.'
        : error.code === 'invalid_credentials'
          ? 'Wrong username or password.'
          : error.message;
    authError(field, message);
  } finally {
    button.disabled = false;
  }
}

function signedIn(session) {
  state.session = session;
  saveSession(session);
  renderMe();
  show('home-screen');
  selectTab(WIDE.matches ? 'history' : 'friends');
  connect();
}

function connect() {
  state.realtime?.stop();
  state.realtime = new Realtime({
    token: state.session.token,
    onFrame,
    onState: renderConnection,
    onUnauthorized: () => signedOut('Your session ended. Please sign in again.'),
  });
  state.realtime.start();
}

/** Back to the sign-in screen: after logout here, in another tab, or a revoked token. */
function signedOut(message) {
  if (!state.session) return;
  if (state.call) teardownCall();
  state.realtime?.stop();
  state.realtime = null;
  state.session = null;
  state.friends.clear();
  state.requests = { incoming: [], outgoing: [] };
  state.history = [];
  state.missed = 0;
  forgetSession();
  $('#conn-banner').hidden = true;
  setAuthMode('login');
  show('auth-screen');
  if (message) $('#auth-form-error').textContent = message;
}

async function logout() {
  // Closed first, so the broker closing it for the revoked token isn't taken for an expiry.
  state.realtime?.stop();
  try {
    await api.logout();
  } catch {
    // The token is forgotten locally whatever the server said.
  }
  signedOut();
}

// ---------------------------------------------------------------- realtime frames

function onFrame(frame) {
  switch (frame.type) {
    case 'welcome':
      return onWelcome(frame);
    case 'presence':
      return onPresence(frame);
    case 'friend.request':
      toast(`${frame.from.display_name} (@${frame.from.username}) wants to be your friend.`);
      return loadRequests();
    case 'friend.accepted':
      state.friends.set(frame.friend.username, { ...frame.friend });
      renderFriends();
      toast(`You and ${frame.friend.display_name} are now friends.`);
      return loadRequests();
    case 'friend.removed':
      state.friends.delete(frame.username);
      renderFriends();
      return loadRequests();
    case 'call.incoming':
      return onIncoming(frame);
    case 'call.ringing':
    case 'call.accepted':
    case 'call.answered_elsewhere':
    case 'call.ended':
    case 'signal':
      return onCallFrame(frame);
    case 'error':
      console.warn('broker error', frame.error, frame.message);
      return undefined;
    default:
      return undefined;
  }
}

function onWelcome(frame) {
  state.session.user = frame.user;
  saveSession(state.session);
  renderMe();
  state.friends = new Map(frame.friends.map((f) => [f.username, { ...f }]));
  renderFriends();
  setMissed(frame.missed_calls ?? 0);
  if (Array.isArray(frame.ice_servers)) {
    state.ice = { servers: normalizeIce(frame.ice_servers), expires: Date.now() + ICE_CACHE_MS };
  }
  // A chosen status outlives a reconnect, even one long enough for the broker to forget it.
  if (state.myStatus.status !== 'online' || state.myStatus.message) {
    state.realtime.send({ type: 'presence.set', ...statusFrame() });
  }
  loadRequests();
  loadHistory();
  reconcileCalls(frame.calls ?? []);
}

function onPresence(frame) {
  const friend = state.friends.get(frame.username);
  if (!friend) return;
  friend.status = frame.status;
  friend.message = frame.message;
  friend.last_seen = frame.last_seen ?? friend.last_seen;
  renderFriends();
}

// ---------------------------------------------------------------- friends, requests, search

function renderMe() {
  const user = state.session?.user;
  if (!user) return;
  fill($('#me-avatar'), [avatar(user.display_name, user.username, 'sm')]);
  $('#me-name').textContent = user.display_name;
  $('#me-username').textContent = `@${user.username}`;
}

function statusLine(friend) {
  if (friend.status === 'offline') {
    return friend.last_seen ? `Last seen ${relativeTime(friend.last_seen)}` : 'Offline';
  }
  return STATUS_LABEL[friend.status] ?? friend.status;
}

function renderFriends() {
  const friends = [...state.friends.values()].sort(
    (a, b) =>
      (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9) ||
      a.display_name.localeCompare(b.display_name),
  );
  const rows = friends.map((friend) => {
    const reachable = friend.status !== 'offline';
    const callButton = (media) =>
      h(
        'button',
        {
          type: 'button',
          class: `icon-button call-${media}`,
          title: `${media === 'video' ? 'Video' : 'Audio'} call ${friend.display_name}`,
          'aria-label': `${media === 'video' ? 'Video' : 'Audio'} call ${friend.display_name}`,
          onclick: () => startCall(friend.username, media),
          icon: media === 'video' ? 'video' : 'phone',
        },
      );
    return h(
      'li',
      { class: 'row friend', dataset: { user: friend.username, status: friend.status } },
      h(
        'span',
        { class: 'avatar-wrap' },
        avatar(friend.display_name, friend.username),
        h('span', { class: 'dot presence', dataset: { status: friend.status }, title: STATUS_LABEL[friend.status] }),
      ),
      h(
        'span',
        { class: 'row-text' },
        h('span', { class: 'row-title' }, friend.display_name, ' ', h('span', { class: 'muted handle' }, `@${friend.username}`)),
        h('span', { class: 'row-sub status-line' }, statusLine(friend)),
        friend.message ? h('span', { class: 'row-sub status-message' }, `“${friend.message}”`) : null,
      ),
      reachable ? h('span', { class: 'row-actions' }, callButton('audio'), callButton('video')) : null,
    );
  });
  fill($('#friend-list'), rows);
  $('#friends-empty').hidden = friends.length > 0;
  const online = friends.filter((f) => f.status !== 'offline').length;
  $('#friends-online').textContent = friends.length ? `${online} of ${friends.length} online` : '';
}

async function loadRequests() {
  try {
    state.requests = await api.requests();
  } catch (error) {
    if (error.status !== 401) console.warn('requests', error);
    return;
  }
  renderRequests();
  renderSearch();
}

function personRow(person, ...actions) {
  return h(
    'li',
    { class: 'row', dataset: { user: person.username } },
    avatar(person.display_name, person.username),
    h(
      'span',
      { class: 'row-text' },
      h('span', { class: 'row-title' }, person.display_name),
      h('span', { class: 'row-sub muted' }, `@${person.username}`),
    ),
    h('span', { class: 'row-actions' }, ...actions),
  );
}

function renderRequests() {
  const { incoming, outgoing } = state.requests;
  fill(
    $('#incoming-requests'),
    incoming.map((p) =>
      personRow(
        p,
        h('button', { type: 'button', class: 'button subtle', onclick: () => answerRequest(p.username, false) }, 'Decline'),
        h('button', { type: 'button', class: 'button primary accept-request', onclick: () => answerRequest(p.username, true) }, 'Accept'),
      ),
    ),
  );
  fill(
    $('#outgoing-requests'),
    outgoing.map((p) =>
      personRow(
        p,
        h('button', { type: 'button', class: 'button subtle', onclick: () => answerRequest(p.username, false) }, 'Cancel request'),
      ),
    ),
  );
  $('#incoming-empty').hidden = incoming.length > 0;
  $('#outgoing-empty').hidden = outgoing.length > 0;
  const badge = $('#requests-badge');
  badge.hidden = incoming.length === 0;
  badge.textContent = String(incoming.length);
}

async function answerRequest(username, accept) {
  try {
    if (accept) await api.acceptRequest(username);
    else await api.deleteRequest(username);
  } catch (error) {
    toast(error.message, { kind: 'error' });
  }
  loadRequests();
}

let searchSeq = 0;
let searchTimer = null;

async function runSearch() {
  const q = $('#search-input').value.trim().toLowerCase();
  const seq = ++searchSeq;
  $('#search-error').textContent = '';
  if (!q) {
    state.searchResults = [];
    renderSearch();
    $('#search-empty').hidden = true;
    return;
  }
  try {
    const page = await api.searchUsers(q);
    if (seq !== searchSeq) return;
    state.searchResults = page.users.filter((u) => u.username !== state.session?.user.username);
    renderSearch();
    $('#search-empty').hidden = state.searchResults.length > 0;
  } catch (error) {
    if (seq === searchSeq) $('#search-error').textContent = error.message;
  }
}

function renderSearch() {
  const outgoing = new Set(state.requests.outgoing.map((p) => p.username));
  const incoming = new Set(state.requests.incoming.map((p) => p.username));
  fill(
    $('#search-results'),
    state.searchResults.map((person) => {
      let action;
      if (state.friends.has(person.username)) {
        action = h('span', { class: 'pill' }, 'Friends');
      } else if (outgoing.has(person.username)) {
        action = h('span', { class: 'pill' }, 'Request sent');
      } else if (incoming.has(person.username)) {
        action = h('button', { type: 'button', class: 'button primary', onclick: () => answerRequest(person.username, true) }, 'Accept request');
      } else {
        action = h('button', { type: 'button', class: 'button primary add-friend', onclick: () => addFriend(person.username) }, 'Add friend');
      }
      return personRow(person, action);
    }),
  );
}

async function addFriend(username) {
  try {
    const outcome = await api.sendRequest(username);
    toast(
      outcome.status === 'accepted'
        ? `You and ${outcome.user.display_name} are now friends.`
        : `Friend request sent to ${outcome.user.display_name}.`,
    );
  } catch (error) {
    $('#search-error').textContent = error.message;
  }
  await loadRequests();
}

// ---------------------------------------------------------------- my status

function statusFrame() {
  const message = state.myStatus.message.trim();
  return { status: state.myStatus.status, ...(message ? { message } : {}) };
}

async function saveStatus(event) {
  event?.preventDefault();
  const wasDnd = state.myStatus.status === 'dnd';
  state.myStatus = { status: $('#status-select').value, message: $('#status-message').value };
  $('#status-dot').dataset.status = state.myStatus.status;
  try {
    await state.realtime.request({ type: 'presence.set', ...statusFrame() });
    toast(`Status set to ${STATUS_LABEL[state.myStatus.status]}.`, { timeout: 2500 });
    // Calls that came in during do-not-disturb never rang here: show them now.
    if (wasDnd && state.myStatus.status !== 'dnd') loadHistory();
  } catch (error) {
    toast(`Could not set your status: ${error.message}`, { kind: 'error' });
  }
}

// ---------------------------------------------------------------- history

let historyTimers = [];

async function loadHistory() {
  let page;
  try {
    page = await api.calls(30);
  } catch (error) {
    if (error.status !== 401) console.warn('history', error);
    return;
  }
  state.history = page.calls;
  setMissed(page.missed_count ?? 0);
  renderHistory();
}

/** Call records are written just after the call ends, so look again shortly after. */
function refreshHistorySoon() {
  for (const t of historyTimers) clearTimeout(t);
  historyTimers = [400, 1500].map((ms) => setTimeout(loadHistory, ms));
}

function setMissed(count) {
  state.missed = count;
  const badge = $('#missed-badge');
  badge.hidden = count === 0;
  badge.textContent = String(count);
  $('#tab-history').setAttribute('aria-label', count ? `History, ${count} missed` : 'History');
}

const OUTCOME_LABEL = {
  completed: 'Answered',
  declined: 'Declined',
  cancelled: 'Cancelled',
  no_answer: 'No answer',
  unavailable: 'Unavailable',
  busy: 'Busy',
  connection_lost: 'Connection lost',
  failed: 'Failed',
  server_shutdown: 'Server restarted',
  ringing: 'Ringing',
  active: 'In progress',
};

function renderHistory() {
  const rows = state.history.map((call) => {
    const friend = state.friends.get(call.peer);
    const name = friend?.display_name ?? call.peer;
    let outcome = call.missed ? 'Missed' : (OUTCOME_LABEL[call.outcome] ?? call.outcome);
    if (call.outcome === 'completed') outcome = formatClock(call.duration_seconds);
    return h(
      'li',
      {
        class: `row call-record${call.missed ? ' missed' : ''}`,
        dataset: { peer: call.peer, outcome: call.outcome, direction: call.direction, media: call.media },
      },
      h('span', { class: `direction ${call.direction}`, title: call.direction, icon: call.direction }),
      h(
        'span',
        { class: 'row-text' },
        h('span', { class: 'row-title' }, name),
        h(
          'span',
          { class: 'row-sub' },
          h('span', { class: 'visually-hidden' }, `${call.direction} `),
          `${call.media === 'video' ? 'Video' : 'Audio'} · `,
          h('span', { class: 'outcome' }, outcome),
        ),
      ),
      h('span', { class: 'row-when muted' }, formatWhen(call.started_at)),
      friend && friend.status !== 'offline'
        ? h('button', {
            type: 'button',
            class: 'icon-button',
            title: `Call ${name} back`,
            'aria-label': `Call ${name} back`,
            onclick: () => startCall(call.peer, call.media),
            icon: call.media === 'video' ? 'video' : 'phone',
          })
        : null,
    );
  });
  fill($('#history-list'), rows);
  $('#history-empty').hidden = rows.length > 0;
}

// ---------------------------------------------------------------- tabs

/** Shows a section. Missed calls count as seen only when the person opens History themselves. */
function selectTab(tab, { byUser = false } = {}) {
  if (WIDE.matches && tab === 'friends') tab = state.tab !== 'friends' ? state.tab : 'history';
  state.tab = tab;
  for (const button of document.querySelectorAll('.tab')) {
    const selected = button.dataset.tab === tab;
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
  }
  for (const panel of document.querySelectorAll('.panel')) {
    panel.classList.toggle('active', panel.id === `panel-${tab}`);
  }
  if (tab === 'history') {
    loadHistory().then(async () => {
      if (byUser && state.missed > 0 && state.tab === 'history') {
        try {
          await api.markCallsSeen();
          setMissed(0);
        } catch {
          // The badge stays; nothing else depends on it.
        }
      }
    });
  }
  if (tab === 'requests') loadRequests();
  if (tab === 'search') setTimeout(() => $('#search-input').focus(), 0);
}

// ---------------------------------------------------------------- calls

function normalizeIce(list) {
  return (list ?? [])
    .filter((s) => s && s.urls)
    .map((s) => ({
      urls: s.urls,
      ...(s.username ? { username: s.username } : {}),
      ...(s.credential ? { credential: s.credential } : {}),
    }));
}

/** ICE servers from the broker: those on the frame when present, else cached, else asked for. */
async function iceServers(fromFrame) {
  if (Array.isArray(fromFrame)) return normalizeIce(fromFrame);
  if (state.ice && state.ice.expires > Date.now()) return state.ice.servers;
  let servers = [];
  try {
    const answer = await api.iceServers();
    servers = normalizeIce(answer?.ice_servers);
    const ttl = Number(answer?.ttl) > 0 ? Number(answer.ttl) * 1000 * 0.8 : ICE_CACHE_MS;
    state.ice = { servers, expires: Date.now() + Math.min(ttl, ICE_CACHE_MS) };
  } catch {
    // An older broker has no ICE endpoint: host candidates still work on one network.
    state.ice = { servers, expires: Date.now() + ICE_CACHE_MS };
  }
  return servers;
}

function peerName(username) {
  return state.friends.get(username)?.display_name ?? username;
}

function newCall(fields) {
  return {
    id: null,
    phase: 'dialing', // dialing | ringing | incoming | connecting | active | ended
    offerer: false,
    answeredAt: null,
    localStream: null,
    media: null, // MediaCall
    early: [], // frames for our call that arrived before the invite's ack named it
    signals: [], // signal frames that arrived before the peer connection existed
    adopting: false, // a call this page took back after a reload, until its media is rebuilt
    iceServers: null, // from call.accepted, when it came while adopting
    cancelled: false,
    muted: false,
    cameraOff: false,
    connection: 'new',
    offlineTimer: null,
    failTimer: null,
    ...fields,
  };
}

async function startCall(username, media) {
  ringtone.unlock();
  if (state.call) {
    // Calling back the person whose call is ringing here is simply answering it.
    if (state.call.phase === 'incoming' && state.call.peer === username) return acceptCall();
    toast('Finish the current call first.', { kind: 'warn' });
    return undefined;
  }
  if (!state.realtime?.connected) {
    toast('Not connected to Switchboard yet; try again in a moment.', { kind: 'warn' });
    return undefined;
  }
  const call = newCall({ direction: 'outgoing', peer: username, peerName: peerName(username), kind: media });
  state.call = call;
  renderCall();
  const local = await getLocalMedia(media);
  if (state.call !== call || call.cancelled) {
    for (const track of local.stream.getTracks()) track.stop();
    return undefined;
  }
  call.localStream = local.stream;
  if (local.error) toast(mediaErrorMessage(local.error, media), { kind: 'warn' });
  renderCall();
  try {
    const ack = await state.realtime.request({ type: 'call.invite', to: username, media });
    if (state.call !== call) return undefined;
    call.id = ack.call_id;
    if (call.cancelled) {
      state.realtime.send({ type: 'call.cancel', call_id: call.id });
      return undefined;
    }
    for (const frame of call.early.splice(0)) onCallFrame(frame);
  } catch (error) {
    if (state.call !== call) return undefined;
    const message =
      error.code === 'not_friends'
        ? `You can only call friends.`
        : error.code === 'already_in_call'
          ? 'You are already in a call on another device.'
          : `The call could not start: ${error.message}`;
    finishCall(call, null, message);
  }
  return undefined;
}

function mediaErrorMessage(error, media) {
  if (error?.name === 'NotAllowedError') {
    return 'Camera and microphone are blocked for this page; the other side will not see or hear you.';
  }
  return media === 'video'
    ? 'No camera or microphone could be opened; the call continues without them.'
    : 'No microphone could be opened; the call continues without it.';
}

function onIncoming(frame) {
  if (state.call) return; // The broker rings us only when free; a stale frame otherwise.
  const call = newCall({
    id: frame.call_id,
    direction: 'incoming',
    phase: 'incoming',
    peer: frame.from,
    peerName: frame.display_name ?? peerName(frame.from),
    kind: frame.media,
  });
  state.call = call;
  ringtone.start('incoming');
  renderCall();
}

function onCallFrame(frame) {
  const call = state.call;
  if (!call) return;
  if (call.id === null) {
    // The invite's ack has not named our call yet; keep its frames until it does. In glare the
    // broker names the merged call in call.accepted itself.
    if (frame.type === 'call.accepted' && call.direction === 'outgoing') call.id = frame.call_id;
    else {
      call.early.push(frame);
      return;
    }
  }
  if (frame.call_id !== call.id) return;
  switch (frame.type) {
    case 'call.ringing':
      if (call.phase === 'dialing') {
        call.phase = 'ringing';
        ringtone.start('ringback');
        renderCall();
      }
      break;
    case 'call.accepted':
      onAccepted(call, frame);
      break;
    case 'call.answered_elsewhere':
      if (call.phase === 'incoming') {
        finishCall(call, null, 'Answered on another device.', { reason: 'answered_elsewhere', quiet: true });
      } else {
        finishCall(call, null, 'The call moved to another device.', { reason: 'answered_elsewhere' });
      }
      break;
    case 'call.ended':
      finishCall(call, frame.reason);
      break;
    case 'signal':
      if (call.media) call.media.handleSignal(frame);
      else call.signals.push(frame);
      break;
    default:
      break;
  }
}

async function onAccepted(call, frame) {
  ringtone.stop();
  // The broker repeats call.accepted to a device that resumes an answered call. A page that
  // kept its peer connection carries on (reconcileCalls restarts ICE if media broke); a
  // reloaded page builds a new one in reconcileCalls, whatever its role.
  if (call.media || call.adopting) {
    call.offerer = Boolean(frame.offerer);
    if (Array.isArray(frame.ice_servers)) call.iceServers = frame.ice_servers;
    return;
  }
  call.phase = 'connecting';
  call.offerer = Boolean(frame.offerer);
  call.answeredAt ??= Date.now();
  if (call.direction === 'incoming' && !call.localStream) {
    // Glare merged our invite into this call: this side had not opened its camera yet.
    call.localStream = (await getLocalMedia(call.kind)).stream;
  }
  renderCall();
  await ensureMedia(call, frame.ice_servers);
  if (state.call === call && call.offerer && call.media) call.media.offer();
}

async function ensureMedia(call, iceFromFrame) {
  if (call.media) return;
  const servers = await iceServers(iceFromFrame);
  if (state.call !== call || call.media) return;
  call.media = new MediaCall({
    media: call.kind,
    localStream: call.localStream ?? new MediaStream(),
    iceServers: servers,
    sendSignal: (signal) => sendSignal(call, signal),
    onRemoteStream: (stream) => attachRemote(call, stream),
    onConnectionState: (connection) => onConnection(call, connection),
  });
  call.media.setMuted(call.muted);
  call.media.setCameraOff(call.cameraOff);
  for (const signal of call.signals.splice(0)) call.media.handleSignal(signal);
}

function sendSignal(call, signal) {
  if (state.call !== call || !call.id) return;
  state.realtime
    ?.request({ type: 'signal', call_id: call.id, ...signal })
    .catch((error) => console.warn('signal not relayed', error.code, error.message));
}

function attachRemote(call, stream) {
  if (state.call !== call) return;
  const video = $('#remote-video');
  const audio = $('#remote-audio');
  if (video.srcObject !== stream) video.srcObject = stream;
  if (audio.srcObject !== stream) audio.srcObject = stream;
  video.play().catch(() => {});
  audio.play().then(
    () => ($('#sound-unlock').hidden = true),
    () => ($('#sound-unlock').hidden = false),
  );
  renderCall();
}

function onConnection(call, connection) {
  if (state.call !== call) return;
  call.connection = connection;
  if (connection === 'connected') {
    clearTimeout(call.failTimer);
    call.failTimer = null;
    if (call.phase === 'connecting') call.phase = 'active';
  } else if (connection === 'failed' && !call.failTimer) {
    // One ICE restart; if media is still down after that, the call is over.
    if (state.realtime?.connected) call.media.offer({ iceRestart: true });
    call.failTimer = setTimeout(() => {
      if (state.call === call && call.connection !== 'connected') {
        state.realtime?.send({ type: 'call.hangup', call_id: call.id, reason: 'media_failed' });
        finishCall(call, 'connection_lost');
      }
    }, 15_000);
  }
  renderCall();
}

async function acceptCall() {
  const call = state.call;
  if (!call || call.phase !== 'incoming') return;
  ringtone.stop();
  ringtone.unlock();
  call.phase = 'connecting';
  renderCall();
  const local = await getLocalMedia(call.kind);
  if (state.call !== call) {
    for (const track of local.stream.getTracks()) track.stop();
    return;
  }
  call.localStream = local.stream;
  if (local.error) toast(mediaErrorMessage(local.error, call.kind), { kind: 'warn' });
  renderCall();
  try {
    // The ack carries ICE servers with a credential for this call; an offer arriving before
    // the peer connection exists waits in call.signals.
    const ack = await state.realtime.request({ type: 'call.accept', call_id: call.id });
    if (state.call !== call) return;
    call.answeredAt = Date.now();
    await ensureMedia(call, ack.ice_servers);
    renderCall();
  } catch (error) {
    if (state.call !== call) return;
    finishCall(
      call,
      null,
      error.code === 'invalid_transition' || error.code === 'call_not_found'
        ? 'The call was already over.'
        : `Could not answer: ${error.message}`,
    );
  }
}

function declineCall() {
  const call = state.call;
  if (!call || call.phase !== 'incoming') return;
  state.realtime?.send({ type: 'call.reject', call_id: call.id });
  finishCall(call, null, `You declined the call from ${call.peerName}.`, { reason: 'declined', quiet: true });
}

function hangUp() {
  const call = state.call;
  if (!call) return;
  if (call.phase === 'incoming') return declineCall();
  if (call.phase === 'dialing' || call.phase === 'ringing') {
    call.cancelled = true;
    if (call.id) state.realtime?.send({ type: 'call.cancel', call_id: call.id });
    finishCall(call, null, 'Call cancelled.', { reason: 'cancelled' });
    return undefined;
  }
  if (call.id) state.realtime?.send({ type: 'call.hangup', call_id: call.id });
  finishCall(call, 'completed');
  return undefined;
}

/** The message for a call that ended, from this side's point of view. */
function endMessage(call, reason) {
  const name = call.peerName;
  const outgoing = call.direction === 'outgoing';
  switch (reason) {
    case 'completed':
      return call.answeredAt
        ? `Call with ${name} ended · ${formatClock((Date.now() - call.answeredAt) / 1000)}`
        : 'Call ended.';
    case 'declined':
      return outgoing ? `${name} declined the call.` : `You declined the call from ${name}.`;
    case 'cancelled':
      return outgoing ? 'Call cancelled.' : `Missed call from ${name}.`;
    case 'no_answer':
      return outgoing ? `No answer from ${name}.` : `Missed call from ${name}.`;
    case 'unavailable':
      return outgoing ? `${name} is unavailable right now. They will see a missed call.` : `Missed call from ${name}.`;
    case 'busy':
      return outgoing ? `${name} is busy. They will see a missed call.` : `Missed call from ${name}.`;
    case 'connection_lost':
      return `Connection lost. The call with ${name} ended.`;
    case 'server_shutdown':
      return 'Switchboard restarted and the call ended. Please call again.';
    default:
      return 'The call failed. Please try again.';
  }
}

/**
 * Ends the call on this page: media off, tones off, the reason shown briefly on the call screen
 * and as a toast. `reason` is the broker's end reason; `message` overrides the text.
 */
function finishCall(call, reason, message, { reason: tag, quiet = false } = {}) {
  if (state.call !== call) return;
  const text = message ?? endMessage(call, reason);
  const missed = call.direction === 'incoming' && ['cancelled', 'no_answer', 'unavailable', 'busy'].includes(reason);
  const serious = ['declined', 'no_answer', 'unavailable', 'busy', 'connection_lost', 'failed', 'server_shutdown'];
  const kind = missed || serious.includes(reason) ? 'warn' : 'info';
  const wasOnScreen = !$('#call-screen').hidden;
  teardownCall();
  if (wasOnScreen && !quiet) {
    const screen = $('#call-screen');
    screen.hidden = false;
    screen.dataset.phase = 'ended';
    $('#call-status').textContent = text;
    $('#call-timer').textContent = '';
    const dismiss = () => {
      if (!state.call && screen.dataset.phase === 'ended') {
        screen.hidden = true;
        screen.dataset.phase = 'idle';
      }
    };
    setTimeout(dismiss, ENDED_SCREEN_MS);
  }
  toast(text, { kind, reason: tag ?? reason ?? 'ended' });
  refreshHistorySoon();
}

/** Releases everything a call holds on this page, without messages. */
function teardownCall() {
  const call = state.call;
  if (!call) return;
  state.call = null;
  ringtone.stop();
  clearTimeout(call.offlineTimer);
  clearTimeout(call.failTimer);
  call.media?.close();
  if (!call.media) for (const track of call.localStream?.getTracks() ?? []) track.stop();
  for (const id of ['#remote-video', '#remote-audio', '#local-video']) $(id).srcObject = null;
  $('#incoming').hidden = true;
  $('#call-screen').hidden = true;
  $('#call-screen').dataset.phase = 'idle';
  $('#sound-unlock').hidden = true;
  document.title = 'Switchboard';
}

/** After (re)connecting: pick up, resume or close whatever call the broker still has for us. */
async function reconcileCalls(calls) {
  const call = state.call;
  if (call && call.id) {
    const mine = calls.find((c) => c.call_id === call.id);
    if (!mine) return endedWhileAway(call);
    if (call.phase === 'incoming') return undefined; // Still ringing here.
    clearTimeout(call.offlineTimer);
    call.offlineTimer = null;
    try {
      await state.realtime.request({ type: 'call.resume', call_id: call.id });
    } catch {
      return endedWhileAway(call);
    }
    if (call.media && ['failed', 'disconnected'].includes(call.connection)) {
      call.media.offer({ iceRestart: true });
    }
    renderCall();
    return undefined;
  }
  if (call) return undefined;
  const summary = calls[0];
  if (!summary) return undefined;
  if (summary.state === 'ringing') {
    return onIncoming({ call_id: summary.call_id, from: summary.peer, media: summary.media });
  }
  // This page was reloaded during a call of ours: take it back.
  const adopted = newCall({
    id: summary.call_id,
    direction: summary.direction,
    peer: summary.peer,
    peerName: peerName(summary.peer),
    kind: summary.media,
    phase: summary.state === 'active' ? 'connecting' : 'ringing',
    adopting: summary.state === 'active',
  });
  state.call = adopted;
  renderCall();
  try {
    await state.realtime.request({ type: 'call.resume', call_id: adopted.id });
  } catch {
    state.call = null;
    teardownCall();
    return undefined;
  }
  adopted.localStream = (await getLocalMedia(adopted.kind)).stream;
  if (state.call !== adopted) return undefined;
  if (summary.state === 'active') {
    adopted.answeredAt = Date.now();
    // The timer goes on from the real answer time (to the accuracy of the two clocks).
    api.call(adopted.id).then(
      (record) => {
        const at = Date.parse(record?.answered_at ?? '');
        if (!Number.isNaN(at) && at <= Date.now()) adopted.answeredAt = at;
      },
      () => {},
    );
    await ensureMedia(adopted, adopted.iceServers);
    adopted.adopting = false;
    // A new peer connection: this side offers, whichever it was before.
    if (state.call === adopted && adopted.media) adopted.media.offer();
  } else {
    ringtone.start('ringback');
  }
  renderCall();
  return undefined;
}

async function endedWhileAway(call) {
  let reason = 'connection_lost';
  try {
    const record = await api.call(call.id);
    if (record?.outcome && !['ringing', 'active'].includes(record.outcome)) reason = record.outcome;
  } catch {
    // The record may be gone; the call is over either way.
  }
  finishCall(call, reason);
}

function onConnectionLost() {
  const call = state.call;
  if (!call || !call.id || call.offlineTimer) return;
  if (call.phase === 'incoming') return; // It rings again (or not) after the reconnect.
  call.offlineTimer = setTimeout(() => {
    call.offlineTimer = null;
    if (state.call === call && !state.realtime?.connected) finishCall(call, 'connection_lost');
  }, CALL_OFFLINE_LIMIT_MS);
}

// ---------------------------------------------------------------- call screen

let timerInterval = null;

function renderCall() {
  const call = state.call;
  clearInterval(timerInterval);
  timerInterval = null;
  const incoming = $('#incoming');
  const screen = $('#call-screen');
  if (!call) return;
  const mediaLabel = call.kind === 'video' ? 'video call' : 'audio call';
  if (call.phase === 'incoming') {
    incoming.hidden = false;
    screen.hidden = true;
    fill($('#incoming-avatar'), [avatar(call.peerName, call.peer, 'lg')]);
    $('#incoming-name').textContent = call.peerName;
    $('#incoming-kind').textContent = `Incoming ${mediaLabel}`;
    document.title = `📞 ${call.peerName} is calling`;
    return;
  }
  incoming.hidden = true;
  screen.hidden = false;
  screen.dataset.phase = call.phase;
  screen.dataset.media = call.kind;
  screen.dataset.remoteVideo = String(Boolean(call.media?.remoteStream.getVideoTracks().length));
  screen.dataset.localVideo = String(Boolean(call.localStream?.getVideoTracks().length) && !call.cameraOff);
  fill($('#call-avatar'), [avatar(call.peerName, call.peer, 'xl')]);
  $('#call-name').textContent = call.peerName;
  const local = $('#local-video');
  if (call.localStream && local.srcObject !== call.localStream) {
    local.srcObject = call.localStream;
    local.play().catch(() => {});
  }
  const status = {
    dialing: 'Calling…',
    ringing: 'Ringing…',
    connecting: 'Connecting…',
    active: '',
  }[call.phase];
  let line = status ?? '';
  if (state.realtime && !state.realtime.connected) line = 'Reconnecting…';
  else if (call.phase === 'active' && call.connection === 'disconnected') line = 'Poor connection, reconnecting media…';
  $('#call-status').textContent = line;
  document.title = call.phase === 'active' ? `In a call with ${call.peerName}` : `Calling ${call.peerName}…`;
  setToggle($('#call-mute'), call.muted, call.muted ? 'micOff' : 'mic', call.muted ? 'Unmute microphone' : 'Mute microphone');
  setToggle(
    $('#call-camera'),
    call.cameraOff,
    call.cameraOff ? 'cameraOff' : 'camera',
    call.cameraOff ? 'Turn camera on' : 'Turn camera off',
  );
  $('#call-camera').hidden = !call.localStream?.getVideoTracks().length;
  const hangup = $('#call-hangup');
  const ringingOut = call.phase === 'dialing' || call.phase === 'ringing';
  hangup.setAttribute('aria-label', ringingOut ? 'Cancel call' : 'Hang up');
  hangup.title = ringingOut ? 'Cancel call' : 'Hang up';
  const tick = () => {
    $('#call-timer').textContent = call.answeredAt ? formatClock((Date.now() - call.answeredAt) / 1000) : '';
  };
  tick();
  if (call.answeredAt) timerInterval = setInterval(tick, 1000);
}

function setToggle(button, pressed, iconName, label) {
  button.setAttribute('aria-pressed', String(pressed));
  button.setAttribute('aria-label', label);
  button.title = label;
  fill(button, [icon(iconName)]);
}

function toggleMute() {
  const call = state.call;
  if (!call) return;
  call.muted = !call.muted;
  call.media?.setMuted(call.muted);
  for (const track of call.localStream?.getAudioTracks() ?? []) track.enabled = !call.muted;
  renderCall();
}

function toggleCamera() {
  const call = state.call;
  if (!call) return;
  call.cameraOff = !call.cameraOff;
  call.media?.setCameraOff(call.cameraOff);
  for (const track of call.localStream?.getVideoTracks() ?? []) track.enabled = !call.cameraOff;
  renderCall();
}

// ---------------------------------------------------------------- connection banner

let bannerTimer = null;

function renderConnection(info) {
  clearInterval(bannerTimer);
  const banner = $('#conn-banner');
  document.documentElement.dataset.connection = info.state;
  if (info.state === 'online' || info.state === 'stopped') {
    banner.hidden = true;
    if (state.call) renderCall();
    return;
  }
  if (info.state === 'connecting' && !info.attempt) {
    banner.hidden = true; // The first connection: nothing to report yet.
    return;
  }
  onConnectionLost();
  banner.hidden = false;
  const text = $('#conn-text');
  if (info.state === 'connecting') {
    text.textContent = 'Connection lost. Reconnecting…';
  } else {
    const update = () => {
      const seconds = Math.max(0, Math.ceil((info.retryAt - Date.now()) / 1000));
      text.textContent = `Connection lost. Reconnecting in ${seconds} s…`;
    };
    update();
    bannerTimer = setInterval(update, 500);
  }
  if (state.call) renderCall();
}

// ---------------------------------------------------------------- start-up

function wire() {
  $('#auth-tab-login').addEventListener('click', () => setAuthMode('login'));
  $('#auth-tab-register').addEventListener('click', () => setAuthMode('register'));
  $('#auth-form').addEventListener('submit', submitAuth);
  for (const [field, selector] of Object.entries(FIELD_INPUT)) {
    $(selector).addEventListener('input', () => {
      $(FIELD_ERROR[field]).textContent = '';
      $(selector).removeAttribute('aria-invalid');
    });
  }
  $('#logout').append(icon('logout'));
  $('#logout').addEventListener('click', logout);
  $('#status-form').addEventListener('submit', saveStatus);
  $('#status-select').addEventListener('change', () => saveStatus());
  const tabIcons = { friends: 'users', requests: 'inbox', search: 'search', history: 'clock' };
  for (const button of document.querySelectorAll('.tab')) {
    button.prepend(icon(tabIcons[button.dataset.tab]));
    button.addEventListener('click', () => selectTab(button.dataset.tab, { byUser: true }));
  }
  WIDE.addEventListener('change', () => selectTab(state.tab));
  $('#search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    runSearch();
  });
  $('#search-input').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 250);
  });
  $('#incoming-accept').append(icon('phone'));
  $('#incoming-decline').append(icon('hangup'));
  $('#incoming-accept').addEventListener('click', acceptCall);
  $('#incoming-decline').addEventListener('click', declineCall);
  $('#call-hangup').append(icon('hangup'));
  $('#call-hangup').addEventListener('click', hangUp);
  $('#call-mute').addEventListener('click', toggleMute);
  $('#call-camera').addEventListener('click', toggleCamera);
  $('#conn-retry').addEventListener('click', () => state.realtime?.reconnectNow());
  $('#sound-unlock').addEventListener('click', () => {
    $('#remote-audio').play().then(() => ($('#sound-unlock').hidden = true), () => {});
  });
  // Any click may be the gesture that lets the ringtone play later.
  document.addEventListener('pointerdown', () => ringtone.unlock(), { once: true });
  // Signing in or out in another tab applies here too.
  window.addEventListener('storage', (event) => {
    if (event.key !== TOKEN_KEY) return;
    const saved = loadSession();
    if (!saved && state.session) signedOut('You signed out in another tab.');
    else if (saved && !state.session) signedIn(saved);
  });
  // Back to a tab left in the background: the history may have grown meanwhile.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.session) loadHistory();
  });
  // Refresh "last seen 3 min ago" now and then.
  setInterval(() => state.session && renderFriends(), 30_000);
}

// A handle for people and tests poking at the page from the console.
window.switchboard = {
  get pc() {
    return state.call?.media?.pc ?? null;
  },
  get call() {
    const call = state.call;
    return call && { id: call.id, phase: call.phase, direction: call.direction, peer: call.peer, media: call.kind };
  },
  get ringtone() {
    return { kind: ringtone.kind, context: ringtone.contextState };
  },
  get connection() {
    return state.realtime?.state ?? 'none';
  },
  /** Drops the WebSocket as a network failure would; it reconnects by itself. */
  dropConnection() {
    state.realtime?.drop();
  },
};

wire();
setAuthMode('login');
const saved = loadSession();
if (saved) signedIn(saved);
else show('auth-screen');
