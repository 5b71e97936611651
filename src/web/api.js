// The REST API under /api/v1. Every failure becomes an ApiError carrying the broker's stable
// error code, so the page can put each message next to the field it concerns.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {() => string | null} getToken the current session token, if any
 * @param {() => void} onUnauthorized called when a request with a token gets 401 (revoked or expired)
 */
export function createApi(getToken, onUnauthorized) {
  async function request(method, path, body) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const token = getToken();
    if (token) headers.authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'network', 'Switchboard cannot be reached. Check your connection.');
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      // A body that isn't JSON (a proxy's error page, say) is reported by status below.
    }
    if (!response.ok) {
      if (response.status === 401 && token) onUnauthorized();
      throw new ApiError(
        response.status,
        data?.error ?? `http_${response.status}`,
        data?.message ?? `The server answered ${response.status}.`,
      );
    }
    return data;
  }

  const enc = encodeURIComponent;
  return {
    register: (username, password, displayName) =>
      request('POST', '/auth/register', {
        username,
        password,
        ...(displayName ? { display_name: displayName } : {}),
      }),
    login: (username, password) => request('POST', '/auth/login', { username, password }),
    logout: () => request('POST', '/auth/logout'),
    me: () => request('GET', '/me'),
    updateMe: (displayName) => request('PATCH', '/me', { display_name: displayName }),
    changePassword: (oldPassword, newPassword) =>
      request('PUT', '/me/password', { old_password: oldPassword, new_password: newPassword }),
    deleteMe: (password) => request('DELETE', '/me', { password }),
    unfriend: (username) => request('DELETE', `/friends/${enc(username)}`),
    blocks: () => request('GET', '/blocks'),
    block: (username) => request('PUT', `/blocks/${enc(username)}`),
    unblock: (username) => request('DELETE', `/blocks/${enc(username)}`),
    searchUsers: (q) => request('GET', `/users?q=${enc(q)}&limit=20`),
    friends: () => request('GET', '/friends'),
    requests: () => request('GET', '/friends/requests'),
    sendRequest: (username) => request('POST', '/friends/requests', { username }),
    acceptRequest: (username) => request('POST', `/friends/requests/${enc(username)}/accept`),
    deleteRequest: (username) => request('DELETE', `/friends/requests/${enc(username)}`),
    calls: (limit = 30) => request('GET', `/calls?limit=${limit}`),
    call: (id) => request('GET', `/calls/${enc(id)}`),
    markCallsSeen: () => request('POST', '/calls/seen'),
    iceServers: () => request('GET', '/ice-servers'),
    vapidPublicKey: () => request('GET', '/push/vapid-public-key'),
    addPushSubscription: (subscription) => request('POST', '/push/subscriptions', subscription),
    removePushSubscription: () => request('DELETE', '/push/subscriptions/current'),
  };
}
