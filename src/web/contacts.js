// Friends with live presence, friend requests, people search and this user's own status, and
// the lists that show them. Owns the friends map; others ask it for a friend's name or status.

import { h, $, fill, avatar, relativeTime } from './ui.js';
import { toast } from './screens.js';

const STATUS_LABEL = {
  online: 'Online',
  away: 'Away',
  dnd: 'Do not disturb',
  busy: 'In a call',
  offline: 'Offline',
};
const STATUS_ORDER = { online: 0, away: 1, busy: 2, dnd: 3, offline: 4 };

function statusLine(friend) {
  if (friend.status === 'offline') {
    return friend.last_seen ? `Last seen ${relativeTime(friend.last_seen)}` : 'Offline';
  }
  return STATUS_LABEL[friend.status] ?? friend.status;
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

/**
 * @param {object} options
 * @param {object} options.api the REST client (createApi)
 * @param {() => object | null} options.realtime the current Realtime, null when signed out
 * @param {() => string | undefined} options.me the signed-in username, left out of search results
 * @param {(username: string, media: string) => void} options.onCall a friend's call button
 * @param {() => void} options.onLeftDnd do-not-disturb was turned off
 * @param {(friend: object) => void} options.onUnfriend a friend's "Remove friend"
 * @param {(person: object) => void} options.onBlock a friend's "Block"
 */
/** The controls of a friend's row, by class, that can hold the focus across a redraw. */
const FRIEND_CONTROLS = ['call-audio', 'call-video', 'friend-more', 'unfriend', 'block'];

export function createContacts({ api, realtime, me, onCall, onLeftDnd, onUnfriend, onBlock }) {
  let friends = new Map(); // username -> {username, display_name, status, message?, last_seen?}
  let requests = { incoming: [], outgoing: [] };
  let searchResults = [];
  let searchSeq = 0;
  let searchTimer = null;
  let myStatus = { status: 'online', message: '' };
  // The friend whose "more" menu is open: the list is redrawn on every presence change, and an
  // open menu (and the focus in it) must survive that.
  let openMenu = null;

  // -------------------------------------------------------------- friends

  function renderFriends() {
    const sorted = [...friends.values()].sort(
      (a, b) =>
        (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9) ||
        a.display_name.localeCompare(b.display_name),
    );
    const rows = sorted.map((friend) => {
      // Offline friends can be called too: the broker records it as a missed call for them.
      const offline = friend.status === 'offline';
      const callButton = (media) =>
        h(
          'button',
          {
            type: 'button',
            class: `icon-button call-${media}`,
            title: `${media === 'video' ? 'Video' : 'Audio'} call ${friend.display_name}${offline ? ' (offline: they will see a missed call)' : ''}`,
            'aria-label': `${media === 'video' ? 'Video' : 'Audio'} call ${friend.display_name}`,
            onclick: () => onCall(friend.username, media),
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
        h('span', { class: 'row-actions' }, callButton('audio'), callButton('video'), friendMenu(friend)),
      );
    });
    const focus = focusedControl();
    fill($('#friend-list'), rows);
    if (focus) $('#friend-list').querySelector(`li.friend[data-user="${CSS.escape(focus.user)}"] .${focus.control}`)?.focus();
    $('#friends-empty').hidden = sorted.length > 0;
    const online = sorted.filter((f) => f.status !== 'offline').length;
    $('#friends-online').textContent = sorted.length ? `${online} of ${sorted.length} online` : '';
  }

  /** Which friend's control has the focus, to give it back after a redraw; null if none. */
  function focusedControl() {
    const active = document.activeElement;
    const row = active?.closest?.('#friend-list li.friend');
    const control = row && FRIEND_CONTROLS.find((name) => active.classList.contains(name));
    return control ? { user: row.dataset.user, control } : null;
  }

  /** "More" for a friend: remove or block, in a disclosure so the row stays calm. */
  function friendMenu(friend) {
    const open = openMenu === friend.username;
    const id = `friend-menu-${friend.username}`;
    const toggle = h('button', {
      type: 'button',
      class: 'icon-button subtle friend-more',
      'aria-expanded': String(open),
      'aria-controls': id,
      title: `More for ${friend.display_name}`,
      'aria-label': `More for ${friend.display_name}`,
      icon: 'more',
    });
    const menu = h(
      'span',
      { class: 'friend-menu', id, hidden: !open },
      h('button', { type: 'button', class: 'button subtle unfriend', onclick: () => { openMenu = null; onUnfriend({ ...friend }); } }, 'Remove friend'),
      h('button', { type: 'button', class: 'button subtle danger-text block', onclick: () => { openMenu = null; onBlock({ ...friend }); } }, 'Block'),
    );
    toggle.addEventListener('click', () => {
      const opening = menu.hidden;
      menu.hidden = !opening;
      toggle.setAttribute('aria-expanded', String(opening));
      openMenu = opening ? friend.username : null;
      // One menu open at a time.
      if (opening) {
        for (const other of document.querySelectorAll('#friend-list .friend-menu:not([hidden])')) {
          if (other !== menu) other.hidden = true;
        }
        for (const other of document.querySelectorAll('#friend-list .friend-more[aria-expanded="true"]')) {
          if (other !== toggle) other.setAttribute('aria-expanded', 'false');
        }
      }
    });
    return h('span', { class: 'friend-more-wrap' }, toggle, menu);
  }

  /** The friends list from `welcome`, replacing whatever was known. */
  function setFriends(list) {
    friends = new Map(list.map((f) => [f.username, { ...f }]));
    renderFriends();
  }

  function onPresence(frame) {
    const friend = friends.get(frame.username);
    if (!friend) return;
    friend.status = frame.status;
    friend.message = frame.message;
    friend.last_seen = frame.last_seen ?? friend.last_seen;
    renderFriends();
  }

  /** Pushed `presence` and `friend.*` frames. */
  function onFrame(frame) {
    switch (frame.type) {
      case 'presence':
        return onPresence(frame);
      case 'friend.request':
        toast(`${frame.from.display_name} (@${frame.from.username}) wants to be your friend.`);
        return loadRequests();
      case 'friend.accepted':
        friends.set(frame.friend.username, { ...frame.friend });
        renderFriends();
        toast(`You and ${frame.friend.display_name} are now friends.`);
        return loadRequests();
      case 'friend.removed':
        friends.delete(frame.username);
        renderFriends();
        return loadRequests();
      default:
        return undefined;
    }
  }

  /** A copy of what is known of a friend, or undefined for anyone else. */
  function friendCopy(username) {
    const known = friends.get(username);
    return known && { ...known };
  }

  function displayName(username) {
    return friends.get(username)?.display_name ?? username;
  }

  // -------------------------------------------------------------- requests

  async function loadRequests() {
    try {
      requests = await api.requests();
    } catch (error) {
      if (error.status !== 401) console.warn('requests', error);
      return;
    }
    renderRequests();
    renderSearch();
  }

  function renderRequests() {
    const { incoming, outgoing } = requests;
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

  // -------------------------------------------------------------- search

  async function runSearch() {
    const q = $('#search-input').value.trim().toLowerCase();
    const seq = ++searchSeq;
    $('#search-error').textContent = '';
    if (!q) {
      searchResults = [];
      renderSearch();
      $('#search-empty').hidden = true;
      return;
    }
    try {
      const page = await api.searchUsers(q);
      if (seq !== searchSeq) return;
      searchResults = page.users.filter((u) => u.username !== me());
      renderSearch();
      $('#search-empty').hidden = searchResults.length > 0;
    } catch (error) {
      if (seq === searchSeq) $('#search-error').textContent = error.message;
    }
  }

  /** The search form was submitted: search at once. */
  function submitSearch(event) {
    event.preventDefault();
    clearTimeout(searchTimer);
    runSearch();
  }

  /** The search field changed: search once typing pauses. */
  function searchSoon() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 250);
  }

  function renderSearch() {
    const outgoing = new Set(requests.outgoing.map((p) => p.username));
    const incoming = new Set(requests.incoming.map((p) => p.username));
    fill(
      $('#search-results'),
      searchResults.map((person) => {
        let action;
        if (friends.has(person.username)) {
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

  // -------------------------------------------------------------- my status

  function statusFrame() {
    const message = myStatus.message.trim();
    return { status: myStatus.status, ...(message ? { message } : {}) };
  }

  async function saveStatus(event) {
    event?.preventDefault();
    const wasDnd = myStatus.status === 'dnd';
    myStatus = { status: $('#status-select').value, message: $('#status-message').value };
    $('#status-dot').dataset.status = myStatus.status;
    try {
      await realtime().request({ type: 'presence.set', ...statusFrame() });
      toast(`Status set to ${STATUS_LABEL[myStatus.status]}.`, { timeout: 2500 });
      // Calls that came in during do-not-disturb never rang here: show them now.
      if (wasDnd && myStatus.status !== 'dnd') onLeftDnd();
    } catch (error) {
      toast(`Could not set your status: ${error.message}`, { kind: 'error' });
    }
  }

  /** A chosen status outlives a reconnect, even one long enough for the broker to forget it. */
  function resendStatus() {
    if (myStatus.status !== 'online' || myStatus.message) {
      realtime().send({ type: 'presence.set', ...statusFrame() });
    }
  }

  /** Signed out: friends and requests go (search results and the chosen status stay). */
  function reset() {
    friends.clear();
    requests = { incoming: [], outgoing: [] };
  }

  return {
    setFriends,
    onFrame,
    friend: friendCopy,
    displayName,
    renderFriends,
    loadRequests,
    submitSearch,
    searchSoon,
    saveStatus,
    resendStatus,
    reset,
  };
}
