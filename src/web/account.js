// Account controls: display name, password change, the blocked list with unblock, and deleting
// the account, in one dialog; and unfriend and block for a friend. All of it through the REST API.

import { h, $, fill, avatar } from './ui.js';
import { toast } from './screens.js';

/**
 * @param {object} options
 * @param {object} options.api the REST client (createApi)
 * @param {object} options.session the session (createSession): the user, updateUser, signedOut
 * @param {() => void} options.onRelationsChanged a friend was removed or blocked, or someone unblocked
 * @param {() => void} options.pauseRealtime closes the socket (before deleting the account, so
 *   its closing isn't taken for an expired session)
 * @param {() => void} options.resumeRealtime opens it again (the deletion failed)
 */
export function createAccount({ api, session, onRelationsChanged, pauseRealtime, resumeRealtime }) {
  const error = (text) => {
    $('#account-error').textContent = text;
  };

  async function open() {
    error('');
    $('#account-display-name').value = session.user()?.display_name ?? '';
    for (const id of ['#account-old-password', '#account-new-password', '#account-delete-password']) $(id).value = '';
    const dialog = $('#account-dialog');
    if (!dialog.open) dialog.showModal();
    await loadBlocks();
  }

  async function loadBlocks() {
    let blocks = [];
    try {
      blocks = (await api.blocks()).blocks ?? [];
    } catch (e) {
      error(e.message);
    }
    fill(
      $('#blocked-list'),
      blocks.map((person) =>
        h(
          'li',
          { class: 'row', dataset: { user: person.username } },
          avatar(person.display_name, person.username, 'sm'),
          h('span', { class: 'row-text' }, h('span', { class: 'row-title' }, person.display_name), h('span', { class: 'row-sub muted' }, `@${person.username}`)),
          h('button', { type: 'button', class: 'button subtle unblock', onclick: () => unblock(person) }, 'Unblock'),
        ),
      ),
    );
    $('#blocked-empty').hidden = blocks.length > 0;
  }

  async function unblock(person) {
    try {
      await api.unblock(person.username);
      toast(`${person.display_name} is unblocked. You can send them a friend request again.`);
    } catch (e) {
      error(e.message);
    }
    await loadBlocks();
    onRelationsChanged();
  }

  async function saveName(event) {
    event.preventDefault();
    error('');
    const name = $('#account-display-name').value.trim();
    if (!name || name.length > 64) {
      error('A display name has 1 to 64 characters.');
      return;
    }
    try {
      const user = await api.updateMe(name);
      session.updateUser(user?.user ?? user);
      toast('Display name saved.', { timeout: 2500 });
    } catch (e) {
      error(e.message);
    }
  }

  async function changePassword(event) {
    event.preventDefault();
    error('');
    const old = $('#account-old-password').value;
    const next = $('#account-new-password').value;
    if (next.length < 8) {
      error('The new password needs at least 8 characters.');
      return;
    }
    try {
      await api.changePassword(old, next);
      $('#account-old-password').value = '';
      $('#account-new-password').value = '';
      toast('Password changed. Your other devices were signed out.', { reason: 'password_changed' });
    } catch (e) {
      error(e.code === 'invalid_credentials' ? 'The current password is wrong.' : e.message);
    }
  }

  async function deleteAccount(event) {
    event.preventDefault();
    error('');
    const password = $('#account-delete-password').value;
    if (!password) {
      error('Enter your password to delete the account.');
      return;
    }
    if (!window.confirm('Delete your Switchboard account for good? This cannot be undone.')) return;
    pauseRealtime();
    try {
      await api.deleteMe(password);
    } catch (e) {
      error(e.code === 'invalid_credentials' ? 'The password is wrong.' : e.message);
      resumeRealtime();
      return;
    }
    $('#account-dialog').close();
    session.signedOut('Your account was deleted.');
  }

  /** Unfriend: they stop seeing your presence and can no longer call you. */
  async function unfriend(friend) {
    if (!window.confirm(`Remove ${friend.display_name} from your friends?`)) return;
    try {
      await api.unfriend(friend.username);
      toast(`${friend.display_name} is no longer your friend.`);
    } catch (e) {
      toast(e.message, { kind: 'error' });
    }
    onRelationsChanged();
  }

  /** Block: the friendship, requests and any call end, and they can't find or call you. */
  async function block(person) {
    if (!window.confirm(`Block ${person.display_name}? They won't see you online or be able to call you.`)) return;
    try {
      await api.block(person.username);
      toast(`${person.display_name} is blocked.`, { reason: 'blocked' });
    } catch (e) {
      toast(e.message, { kind: 'error' });
    }
    onRelationsChanged();
  }

  function wire() {
    $('#name-form').addEventListener('submit', saveName);
    $('#password-form').addEventListener('submit', changePassword);
    $('#delete-form').addEventListener('submit', deleteAccount);
    $('#account-close').addEventListener('click', () => $('#account-dialog').close());
  }

  return { open, wire, unfriend, block };
}
