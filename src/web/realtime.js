// The one WebSocket to /ws: authenticates with the first frame (tokens never go in URLs),
// matches `ack`/`error` answers to requests by id, keeps its own heartbeat, and reconnects with
// exponential backoff and jitter after any drop until stopped.

export class WsError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Close code the broker sends when the token is invalid or was revoked (logout elsewhere). */
const CLOSE_UNAUTHORIZED = 4003;
const REQUEST_TIMEOUT_MS = 10_000;
/** A socket that hasn't opened by then is given up on: the network may drop packets silently. */
const CONNECT_TIMEOUT_MS = 10_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export class Realtime {
  /**
   * @param {object} options
   * @param {string} options.token
   * @param {(frame: object) => void} options.onFrame every pushed frame, `welcome` included
   * @param {(state: {state: string, attempt?: number, retryAt?: number, unreachable?: boolean}) => void} options.onState
   *   `unreachable`: the last attempt never reached the broker (it is down, or this device is
   *   offline), as opposed to an open socket that dropped
   * @param {() => void} options.onUnauthorized the token no longer opens a socket
   */
  constructor({ token, onFrame, onState, onUnauthorized }) {
    const url = new URL('/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.url = url.href;
    this.token = token;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.ws = null;
    this.state = 'idle';
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.stopped = false;
    this.lastHeard = 0;
    this.heartbeatTimer = null;
    this.reconnectTimer = null;
    this.connectTimer = null;
    this.onOnline = () => this.reconnectNow();
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    this.#connect();
  }

  /** Closes the socket for good (logout). */
  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    if (ws) {
      this.#detach(ws);
      ws.close(1000, 'bye');
    }
    this.#failPending('disconnected', 'the connection was closed');
    this.#setState({ state: 'stopped' });
  }

  get connected() {
    return this.state === 'online';
  }

  /** Sends a frame and resolves with its `ack`, or rejects with a WsError carrying the code. */
  request(frame, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.connected) {
      return Promise.reject(new WsError('not_connected', 'not connected to Switchboard'));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new WsError('timeout', 'Switchboard did not answer in time'));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** Sends a frame without waiting for an answer; false when not connected. */
  send(frame) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Gives up on the current socket at once, as a network drop would, and reconnects. */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    this.#detach(ws);
    try {
      ws.close(3000, 'dropped');
    } catch {
      // Already closing.
    }
    this.#lost();
  }

  reconnectNow() {
    if (this.stopped || this.state === 'online' || this.state === 'connecting') return;
    clearTimeout(this.reconnectTimer);
    this.#connect();
  }

  #connect() {
    this.#setState({ state: 'connecting', attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.#lost({ unreachable: true });
      return;
    }
    this.ws = ws;
    let opened = false;
    this.connectTimer = setTimeout(() => {
      this.#detach(ws);
      ws.close();
      this.#lost({ unreachable: true });
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      opened = true;
      clearTimeout(this.connectTimer);
      ws.send(JSON.stringify({ type: 'auth', token: this.token }));
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onclose = (event) => {
      this.#detach(ws);
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.stop();
        this.onUnauthorized();
        return;
      }
      this.#lost({ unreachable: !opened });
    };
  }

  #receive(data) {
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if ((frame.type === 'ack' || frame.type === 'error') && this.pending.has(frame.ref)) {
      const { resolve, reject, timer } = this.pending.get(frame.ref);
      this.pending.delete(frame.ref);
      clearTimeout(timer);
      if (frame.type === 'ack') resolve(frame);
      else reject(new WsError(frame.error, frame.message));
      return;
    }
    if (frame.type === 'pong') return;
    if (frame.type === 'welcome') {
      this.attempt = 0;
      this.#startHeartbeat(frame.heartbeat);
      this.#setState({ state: 'online' });
    }
    this.onFrame(frame);
  }

  /** Pings at the broker's interval and drops a socket silent past its timeout: a dead network
   * path can leave a socket looking open for minutes. */
  #startHeartbeat(heartbeat) {
    clearInterval(this.heartbeatTimer);
    const interval = Math.max(1000, heartbeat?.interval_ms ?? 15_000);
    const timeout = Math.max(interval * 2, heartbeat?.timeout_ms ?? 40_000);
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > timeout) this.drop();
      else this.send({ type: 'ping' });
    }, interval);
  }

  #detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (this.ws === ws) this.ws = null;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.connectTimer);
  }

  #lost({ unreachable = false } = {}) {
    this.#failPending('disconnected', 'the connection dropped');
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.#setState({ state: 'reconnecting', attempt: this.attempt, retryAt: Date.now() + delay, unreachable });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.#connect(), delay);
  }

  #failPending(code, message) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new WsError(code, message));
    }
    this.pending.clear();
  }

  #setState(state) {
    this.state = state.state;
    this.onState(state);
  }
}
