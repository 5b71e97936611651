// The session: its token in localStorage, the sign-in and registration form, and signing in and
// out. Owns the signed-in user; everything loaded for a session is dropped by the page's
// onSignedOut.
//
// The session token lives in localStorage, so every tab of a signed-in user shares it: each
// tab opens its own WebSocket (a device), so an incoming call rings in all of them, and signing
// out in one signs out all. It is never put in a URL. A copy goes to IndexedDB for the service
// worker (session-db.js), kept in step with this one.

import { $, fill, avatar } from './ui.js';
import { show } from './screens.js';
import { mirrorToken } from './session-db.js';

const TOKEN_KEY = 'switchboard.session';

// ---------------------------------------------------------------- session storage

/** The session this browser saved, if any: {token, user}. */
export function savedSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(TOKEN_KEY) ?? 'null');
    return saved?.token ? saved : null;
  } catch {
    return null;
  }
}

function saveSession(session) {
  localStorage.setItem(TOKEN_KEY, JSON.stringify(session));
  mirrorToken(session.token);
}

function forgetSession() {
  localStorage.removeItem(TOKEN_KEY);
  mirrorToken(null);
}

// ---------------------------------------------------------------- the form's fields

const FIELD_ERROR = {
  username: '#auth-username-error',
  password: '#auth-password-error',
  display_name: '#auth-display-name-error',
  form: '#auth-form-error',
};

/** The form's inputs by field; each one's error goes as soon as it is edited (clearFieldError). */
export const AUTH_INPUTS = Object.freeze({
  username: '#auth-username',
  password: '#auth-password',
  display_name: '#auth-display-name',
});

const SERVER_FIELD = {
  invalid_username: 'username',
  username_taken: 'username',
  invalid_password: 'password',
  invalid_credentials: 'password',
  invalid_display_name: 'display_name',
};

function clearAuthErrors() {
  for (const [field, selector] of Object.entries(FIELD_ERROR)) {
    $(selector).textContent = '';
    if (AUTH_INPUTS[field]) $(AUTH_INPUTS[field]).removeAttribute('aria-invalid');
  }
}

/** Removes one field's error, when the person edits that field. */
export function clearFieldError(field) {
  $(FIELD_ERROR[field]).textContent = '';
  $(AUTH_INPUTS[field]).removeAttribute('aria-invalid');
}

function authError(field, message) {
  $(FIELD_ERROR[field]).textContent = message;
  if (AUTH_INPUTS[field]) {
    $(AUTH_INPUTS[field]).setAttribute('aria-invalid', 'true');
    $(AUTH_INPUTS[field]).focus();
  }
}

// ---------------------------------------------------------------- the session

/**
 * @param {object} options
 * @param {object} options.api the REST client (createApi)
 * @param {() => void} options.unlockSound called on submit: a gesture that lets the ringtone play later
 * @param {() => void} options.onSignedIn the home screen shows: pick a tab and connect
 * @param {() => void} options.onSignedOut before the session is forgotten: end the call, close
 *   the socket and drop what was loaded for this user
 * @param {() => void} options.disconnect closes the socket before a logout
 * @param {() => Promise<void>} options.beforeLogout what needs the token one last time (the
 *   push subscription's removal), awaited before the logout revokes it
 */
export function createSession({ api, unlockSound, onSignedIn, onSignedOut, disconnect, beforeLogout }) {
  let session = null; // {token, user}
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

  async function submitAuth(event) {
    event.preventDefault();
    unlockSound();
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

  function renderMe() {
    const user = session?.user;
    if (!user) return;
    fill($('#me-avatar'), [avatar(user.display_name, user.username, 'sm')]);
    $('#me-name').textContent = user.display_name;
    $('#me-username').textContent = `@${user.username}`;
  }

  function signedIn(next) {
    session = next;
    saveSession(session);
    renderMe();
    show('home-screen');
    onSignedIn();
  }

  /** Back to the sign-in screen: after logout here, in another tab, or a revoked token. */
  function signedOut(message) {
    if (!session) return;
    onSignedOut();
    session = null;
    forgetSession();
    setAuthMode('login');
    show('auth-screen');
    if (message) $('#auth-form-error').textContent = message;
  }

  async function logout() {
    // Closed first, so the broker closing it for the revoked token isn't taken for an expiry.
    disconnect();
    await beforeLogout();
    try {
      await api.logout();
    } catch {
      // The token is forgotten locally whatever the server said.
    }
    signedOut();
  }

  /** The broker's view of the user, from `welcome`: kept and shown in the header. */
  function updateUser(user) {
    session.user = user;
    saveSession(session);
    renderMe();
  }

  /** Signing in or out in another tab applies here too (the `storage` event). */
  function syncWithOtherTabs(event) {
    if (event.key !== TOKEN_KEY) return;
    const saved = savedSession();
    if (!saved && session) signedOut('You signed out in another tab.');
    else if (saved && !session) signedIn(saved);
  }

  return {
    token: () => session?.token ?? null,
    user: () => session?.user,
    isSignedIn: () => Boolean(session),
    setAuthMode,
    submitAuth,
    signedIn,
    signedOut,
    logout,
    updateUser,
    syncWithOtherTabs,
  };
}
