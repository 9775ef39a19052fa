/**
 * The one client for ecode's replaying WebSocket streams: a run's progress feed
 * (`WS runs/{id}/events?after=N`) and an app's log (`WS deployments/{id}/logs?after=N`).
 *
 * Both streams number their items (`seq`) and replay everything after `after=N` before going
 * live, so a client that reconnects with the last seq it applied misses nothing and sees
 * nothing twice. This client:
 *
 * - folds items into a state with a pure reducer (for runs, `applyEvents` in feedState.ts),
 *   which also drops anything at or below the state's seq;
 * - applies what arrived once per animation frame (a timer stands in when the page is hidden
 *   and frames stop), so thousands of events cost a few renders, not thousands;
 * - reconnects with exponential backoff and jitter, asking for `after=<last seq>`; after a
 *   second failure in a row it asks `catchUp` (a REST replay) first, which both fills the gap
 *   and turns a 403/404 into a final error instead of endless retries;
 * - stops when the state says the stream is over (`isDone`: a run's final event).
 */
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

/** The part of the WebSocket API this client uses (so tests can pass a fake). */
export interface IWebSocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string) => IWebSocketLike;

/** Runs `callback` soon (once); returns a function that cancels it. */
export type Scheduler = (callback: () => void) => () => void;

export type ConnectionState =
  'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed' | 'error';

export interface IFeedClientOptions<T, S> {
  /** The socket URL that replays everything after `after`. */
  url: (after: number) => string;
  /** Pure: fold received items into the state (dropping ones already applied). */
  reduce: (state: S, items: readonly T[]) => S;
  /** The last seq the state has applied (what a reconnect asks `after=` for). */
  seqOf: (state: S) => number;
  /** The stream is over: do not reconnect. */
  isDone: (state: S) => boolean;
  initial: S;
  /**
   * Replay over REST: the state with everything recorded after it applied. Throws an
   * `EcodeApiError` (status 401/403/404) when the stream can never be read.
   */
  catchUp?: (state: S) => Promise<S>;
  /** A clean close (1000) by the server ends the stream (an app's log when it stops). */
  stopOnCleanClose?: boolean;
  /** Give up after this many failed connections in a row (default: never). */
  maxAttempts?: number;
  retry?: { initialMs: number; maxMs: number };
  createSocket?: WebSocketFactory;
  schedule?: Scheduler;
}

/** Once per animation frame; a 250 ms timer covers a hidden page, where frames stop. */
export const frameScheduler: Scheduler = callback => {
  let done = false;
  const run = () => {
    if (!done) {
      done = true;
      callback();
    }
  };
  const frame =
    typeof requestAnimationFrame === 'function'
      ? requestAnimationFrame(run)
      : null;
  const timer = setTimeout(run, 250);
  return () => {
    done = true;
    if (frame !== null) {
      cancelAnimationFrame(frame);
    }
    clearTimeout(timer);
  };
};

const browserSocket: WebSocketFactory = url =>
  new WebSocket(url) as unknown as IWebSocketLike;

/** Statuses that mean "this stream is not for you / not there": retrying will not help. */
const PERMANENT = new Set([400, 401, 403, 404]);

export class FeedClient<T, S> implements IDisposable {
  constructor(options: IFeedClientOptions<T, S>) {
    this._options = options;
    this._state = options.initial;
    this._createSocket = options.createSocket ?? browserSocket;
    this._schedule = options.schedule ?? frameScheduler;
  }

  /** Emitted (at most once per frame) with the new state after items were applied. */
  get changed(): ISignal<this, S> {
    return this._changed;
  }

  /** Emitted when the connection state or error changes. */
  get connectionChanged(): ISignal<this, ConnectionState> {
    return this._connectionChanged;
  }

  get state(): S {
    return this._state;
  }

  get connection(): ConnectionState {
    return this._connection;
  }

  /** Why the stream stopped for good, for the user; null otherwise. */
  get error(): string | null {
    return this._error;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Connect (or, for a stream already over, do nothing). */
  start(): void {
    if (this._disposed || this._socket || this._retryTimer !== null) {
      return;
    }
    if (this._options.isDone(this._state)) {
      this._setConnection('closed');
      return;
    }
    this._connect();
  }

  /** Apply whatever has arrived now instead of on the next frame. */
  flush(): void {
    this._cancelFlush?.();
    this._cancelFlush = null;
    if (this._pending.length === 0) {
      return;
    }
    const items = this._pending;
    this._pending = [];
    this._setState(this._options.reduce(this._state, items));
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._cancelFlush?.();
    if (this._retryTimer !== null) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onclose = socket.onmessage = socket.onerror = socket.onopen = null;
      socket.close(1000, 'closed by the page');
    }
    Signal.clearData(this);
  }

  private _connect(): void {
    this._setConnection(this._attempts ? 'reconnecting' : 'connecting');
    let socket: IWebSocketLike;
    try {
      socket = this._createSocket(
        this._options.url(this._options.seqOf(this._state))
      );
    } catch (error) {
      console.warn('ecode: cannot open a feed socket', error);
      this._retry(false);
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      this._attempts = 0;
      this._setConnection('open');
    };
    socket.onmessage = event => {
      if (typeof event.data !== 'string') {
        return;
      }
      try {
        this._pending.push(JSON.parse(event.data) as T);
      } catch {
        console.warn('ecode: ignoring a feed message that is not JSON');
        return;
      }
      if (!this._cancelFlush) {
        this._cancelFlush = this._schedule(() => {
          this._cancelFlush = null;
          this.flush();
        });
      }
    };
    socket.onerror = () => {
      // A close event follows; reconnecting is decided there.
    };
    socket.onclose = event => {
      this._socket = null;
      this.flush();
      if (this._disposed) {
        return;
      }
      if (this._options.isDone(this._state)) {
        this._setConnection('closed');
        return;
      }
      const clean = event.code === 1000 || event.code === 1001;
      if (clean && this._options.stopOnCleanClose) {
        this._setConnection('closed');
        return;
      }
      this._retry(clean);
    };
  }

  /** Schedule the next connection; a clean close or a repeated failure catches up first. */
  private _retry(clean: boolean): void {
    this._attempts += 1;
    const max = this._options.maxAttempts;
    if (max !== undefined && this._attempts > max) {
      this._fail(
        'The connection to the server keeps dropping. Reload to try again.'
      );
      return;
    }
    this._setConnection('reconnecting');
    const { initialMs, maxMs } = this._options.retry ?? {
      initialMs: 250,
      maxMs: 10_000
    };
    const base = clean
      ? 0
      : Math.min(maxMs, initialMs * 2 ** (this._attempts - 1));
    // Jitter spreads the reconnects of many tabs after a server restart.
    const delay = base * (0.75 + Math.random() * 0.5);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      void this._reconnect(clean || this._attempts > 1);
    }, delay);
  }

  private async _reconnect(catchUpFirst: boolean): Promise<void> {
    if (this._disposed) {
      return;
    }
    const catchUp = this._options.catchUp;
    if (catchUpFirst && catchUp) {
      try {
        this._setState(await catchUp(this._state));
      } catch (error) {
        if (this._disposed) {
          return;
        }
        const status = (error as { status?: unknown }).status;
        if (typeof status === 'number' && PERMANENT.has(status)) {
          this._fail((error as Error).message || String(error));
          return;
        }
        // The server is unreachable (restarting?): back off and try again.
        this._retry(false);
        return;
      }
      if (this._disposed) {
        return;
      }
      if (this._options.isDone(this._state)) {
        this._setConnection('closed');
        return;
      }
    }
    this._connect();
  }

  private _fail(message: string): void {
    this._error = message;
    this._setConnection('error');
  }

  private _setState(state: S): void {
    if (state !== this._state && !this._disposed) {
      this._state = state;
      this._changed.emit(state);
    }
  }

  private _setConnection(connection: ConnectionState): void {
    if (connection !== this._connection && !this._disposed) {
      this._connection = connection;
      this._connectionChanged.emit(connection);
    }
  }

  private readonly _options: IFeedClientOptions<T, S>;
  private readonly _createSocket: WebSocketFactory;
  private readonly _schedule: Scheduler;
  private _state: S;
  private _pending: T[] = [];
  private _socket: IWebSocketLike | null = null;
  private _cancelFlush: (() => void) | null = null;
  private _retryTimer: ReturnType<typeof setTimeout> | null = null;
  private _attempts = 0;
  private _connection: ConnectionState = 'idle';
  private _error: string | null = null;
  private _disposed = false;
  private _changed = new Signal<this, S>(this);
  private _connectionChanged = new Signal<this, ConnectionState>(this);
}

// -- app logs: the same client, a ring of lines ---------------------------------------------

export interface ILogState {
  lastSeq: number;
  lines: readonly { seq: number; ts: string; stream: string; text: string }[];
  /** Lines dropped from the front to stay under the cap. */
  dropped: number;
}

export const LOG_LINES_CAP = 1000;

export function emptyLog(): ILogState {
  return { lastSeq: 0, lines: [], dropped: 0 };
}

/** Pure: append new log lines (by seq), keeping the last `cap`. */
export function appendLogLines(
  state: ILogState,
  lines: readonly { seq: number; ts: string; stream: string; text: string }[],
  cap = LOG_LINES_CAP
): ILogState {
  const fresh = lines.filter(line => line.seq > state.lastSeq);
  if (fresh.length === 0) {
    return state;
  }
  const all = state.lines.concat(fresh);
  const drop = Math.max(0, all.length - cap);
  return {
    lastSeq: fresh[fresh.length - 1].seq,
    lines: drop ? all.slice(drop) : all,
    dropped: state.dropped + drop
  };
}
