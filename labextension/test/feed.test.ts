import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import {
  appendLogLines,
  ConnectionState,
  emptyLog,
  FeedClient,
  IWebSocketLike
} from '../src/feed';
import {
  applyEvents,
  feedDone,
  IFeedEvent,
  IFeedState,
  initialFeedState
} from '../src/feedState';
import { EcodeApiError } from '../src/handler';

/** A socket the test drives: open it, send it messages, close it. */
class FakeSocket implements IWebSocketLike {
  constructor(readonly url: string) {}
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  closed = false;

  open(): void {
    this.onopen?.({});
  }
  send(...events: IFeedEvent[]): void {
    for (const event of events) {
      this.onmessage?.({ data: JSON.stringify(event) });
    }
  }
  drop(code = 1006): void {
    this.onclose?.({ code, reason: '' });
  }
  close(): void {
    this.closed = true;
  }
}

const ev = (seq: number, type = 'message.delta', data = {}): IFeedEvent => ({
  seq,
  run_id: 'r1',
  ts: '',
  type,
  data: { step: 1, text: `e${seq} `, ...data }
});

let sockets: FakeSocket[];
let frames: (() => void)[];

function runFrame(): void {
  const pending = frames;
  frames = [];
  pending.forEach(fn => fn());
}

function makeClient(
  extra: Partial<
    ConstructorParameters<typeof FeedClient<IFeedEvent, IFeedState>>[0]
  > = {}
) {
  const client = new FeedClient<IFeedEvent, IFeedState>({
    url: after => `ws://test/api/ecode/runs/r1/events?after=${after}`,
    reduce: applyEvents,
    seqOf: s => s.lastSeq,
    isDone: feedDone,
    initial: initialFeedState('r1'),
    createSocket: url => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    schedule: fn => {
      frames.push(fn);
      return () => {
        frames = frames.filter(f => f !== fn);
      };
    },
    retry: { initialMs: 100, maxMs: 1000 },
    ...extra
  });
  const states: IFeedState[] = [];
  const connections: ConnectionState[] = [];
  client.changed.connect((_, s) => states.push(s));
  client.connectionChanged.connect((_, c) => connections.push(c));
  return { client, states, connections };
}

beforeEach(() => {
  sockets = [];
  frames = [];
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('FeedClient', () => {
  it('applies what arrived in one frame as one change', () => {
    const { client, states } = makeClient();
    client.start();
    expect(sockets[0].url).toMatch(/after=0$/);
    sockets[0].open();
    sockets[0].send(ev(1), ev(2), ev(3));
    expect(states).toHaveLength(0);
    runFrame();
    expect(states).toHaveLength(1);
    expect(client.state.lastSeq).toBe(3);
    expect(client.connection).toBe('open');
  });

  it('reconnects after a drop asking for after=<last seq>, and counts overlap once', () => {
    const { client, connections } = makeClient();
    client.start();
    sockets[0].open();
    sockets[0].send(ev(1), ev(2));
    sockets[0].drop();
    expect(client.state.lastSeq).toBe(2); // flushed on close, not lost
    expect(connections).toContain('reconnecting');
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(2);
    expect(sockets[1].url).toMatch(/after=2$/);
    sockets[1].open();
    // A server may resend what it is unsure we saw; it counts once.
    sockets[1].send(ev(2), ev(3));
    runFrame();
    expect(client.state.eventCount).toBe(3);
    expect(client.connection).toBe('open');
  });

  it('stops after the final event and does not reconnect', () => {
    const { client } = makeClient();
    client.start();
    sockets[0].open();
    sockets[0].send(
      ev(1, 'run.started'),
      ev(2, 'run.completed', { message: 'ok' })
    );
    sockets[0].drop(1000);
    expect(client.connection).toBe('closed');
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
    expect(client.state.status).toBe('completed');
  });

  it('catches up over REST after repeated failures, then reconnects from there', async () => {
    const catchUp = vi.fn(async (state: IFeedState) =>
      applyEvents(state, [ev(1), ev(2)])
    );
    const { client } = makeClient({ catchUp });
    client.start();
    sockets[0].drop(); // first failure: plain retry
    await vi.advanceTimersByTimeAsync(100);
    expect(catchUp).not.toHaveBeenCalled();
    sockets[1].drop(); // second in a row: ask REST first
    await vi.advanceTimersByTimeAsync(200);
    expect(catchUp).toHaveBeenCalledTimes(1);
    expect(sockets[2].url).toMatch(/after=2$/);
  });

  it('backs off exponentially, up to the cap', async () => {
    const { client } = makeClient({ catchUp: async s => s });
    client.start();
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = sockets.length;
      sockets[sockets.length - 1].drop();
      let waited = 0;
      while (sockets.length === before) {
        await vi.advanceTimersByTimeAsync(50);
        waited += 50;
      }
      waits.push(waited);
    }
    expect(waits).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('gives up with a message the user can act on when the feed is not theirs', async () => {
    const catchUp = vi.fn(async () => {
      throw new EcodeApiError('no such run', 404, 'not_found');
    });
    const { client } = makeClient({ catchUp });
    client.start();
    sockets[0].drop();
    await vi.advanceTimersByTimeAsync(100);
    sockets[1].drop();
    await vi.advanceTimersByTimeAsync(200);
    expect(client.connection).toBe('error');
    expect(client.error).toBe('no such run');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sockets).toHaveLength(2);
  });

  it('keeps retrying while the server is unreachable', async () => {
    const catchUp = vi.fn(async () => {
      throw new EcodeApiError(
        'Cannot reach the Jupyter server.',
        0,
        'network_error'
      );
    });
    const { client } = makeClient({ catchUp });
    client.start();
    sockets[0].drop();
    await vi.advanceTimersByTimeAsync(100);
    sockets[1].drop();
    await vi.advanceTimersByTimeAsync(5000);
    expect(client.connection).toBe('reconnecting');
    expect(catchUp.mock.calls.length).toBeGreaterThan(1);
  });

  it('ends a log stream when the server closes it cleanly', () => {
    const { client } = makeClient({ stopOnCleanClose: true });
    client.start();
    sockets[0].open();
    sockets[0].drop(1000);
    expect(client.connection).toBe('closed');
  });

  it('gives up after maxAttempts', async () => {
    const { client } = makeClient({ maxAttempts: 2 });
    client.start();
    sockets[0].drop();
    await vi.advanceTimersByTimeAsync(100);
    sockets[1].drop();
    await vi.advanceTimersByTimeAsync(200);
    sockets[2].drop();
    expect(client.connection).toBe('error');
    expect(client.error).toMatch(/Reload/);
  });

  it('closes its socket and ignores late messages once disposed', () => {
    const { client, states } = makeClient();
    client.start();
    const socket = sockets[0];
    socket.open();
    client.dispose();
    expect(socket.closed).toBe(true);
    socket.onmessage?.({ data: JSON.stringify(ev(1)) });
    runFrame();
    expect(states).toHaveLength(0);
  });

  it('does not connect for a feed that is already complete', () => {
    const done = applyEvents(initialFeedState('r1'), [ev(1, 'run.completed')]);
    const { client } = makeClient({ initial: done });
    client.start();
    expect(sockets).toHaveLength(0);
    expect(client.connection).toBe('closed');
  });
});

describe('app log lines', () => {
  const line = (seq: number) => ({
    seq,
    ts: '',
    stream: 'stdout',
    text: `line ${seq}`
  });

  it('appends new lines by seq and keeps the last ones', () => {
    let log = appendLogLines(emptyLog(), [line(1), line(2), line(3)], 2);
    expect(log.lines.map(l => l.seq)).toEqual([2, 3]);
    expect(log.dropped).toBe(1);
    const same = appendLogLines(log, [line(2), line(3)], 2);
    expect(same).toBe(log);
    log = appendLogLines(log, [line(3), line(4)], 2);
    expect(log.lines.map(l => l.seq)).toEqual([3, 4]);
    expect(log.lastSeq).toBe(4);
  });
});
