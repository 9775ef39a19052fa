import { describe, expect, it } from 'vitest';

import {
  applyEvents,
  callRows,
  feedDone,
  ICallRow,
  IFeedEvent,
  IFeedState,
  initialFeedState,
  planChecklist,
  TEXT_CAP,
  testSummary,
  withRunStatus
} from '../src/feedState';
import recorded from './fixtures/offline-run.json';

const RUN = recorded.events[0].run_id;
const EVENTS = recorded.events as IFeedEvent[];

/** A feed event of run RUN. */
function ev(
  seq: number,
  type: string,
  data: Record<string, unknown> = {}
): IFeedEvent {
  return { seq, run_id: RUN, ts: `2026-01-01T00:00:${seq % 60}Z`, type, data };
}

function replay(events: readonly IFeedEvent[], state?: IFeedState): IFeedState {
  return applyEvents(state ?? initialFeedState(RUN), events);
}

describe('a recorded offline run', () => {
  const state = replay(EVENTS);

  it('ends completed, with the offline provider marked as no AI', () => {
    expect(state.status).toBe('completed');
    expect(feedDone(state)).toBe(true);
    expect(state.lastSeq).toBe(EVENTS.length);
    expect(state.eventCount).toBe(EVENTS.length);
    expect(state.provider).toBe('offline');
    expect(state.ai).toBe(false);
    expect(state.costMicros).toBe(0);
    expect(state.end?.message).toBe('the project is built; tests pass');
  });

  it('has each tool call once, with its outcome', () => {
    const calls = callRows(state);
    expect(calls.map(c => c.name)).toEqual([
      'list_files',
      ...Array(7).fill('write_file'),
      'run_command',
      'run_command'
    ]);
    expect(calls.every(c => c.status === 'ok')).toBe(true);
    const writes = calls.filter(c => c.name === 'write_file');
    expect(writes.map(c => c.brief)).toContain('app.py');
    expect(writes.every(c => c.files.length === 1)).toBe(true);
    // The verify step's pytest output streamed into its call, dots and all.
    const verify = calls[calls.length - 1];
    expect(verify.callId).toBe('verify_4');
    expect(verify.output).toContain('17 passed');
  });

  it('lists the files the run created, in order', () => {
    expect(state.files.map(f => [f.path, f.action])).toEqual([
      ['README.md', 'created'],
      ['app.py', 'created'],
      ['pyproject.toml', 'created'],
      ['requirements.txt', 'created'],
      ['store.py', 'created'],
      ['tests/conftest.py', 'created'],
      ['tests/test_app.py', 'created']
    ]);
    expect(state.files[1].added).toBe(126);
    expect(state.files[1].diff).toMatch(/^--- a\/app.py/);
  });

  it('knows the tests passed and says how many', () => {
    expect(state.tests?.passed).toBe(true);
    expect(state.tests?.command).toBe('python -m pytest -q');
    expect(state.tests?.summary).toBe('17 passed');
  });

  it('ticks off every plan item, each tested', () => {
    const plan = planChecklist(state);
    expect(plan).toHaveLength(3);
    expect(plan.every(item => item.status === 'done' && item.tested)).toBe(
      true
    );
  });

  it('has rows of every kind in feed order', () => {
    const kinds = state.rows.map(r => r.kind);
    expect(kinds[0]).toBe('step');
    expect(kinds[kinds.length - 1]).toBe('end');
    expect(kinds.filter(k => k === 'step')).toHaveLength(5);
    expect(
      state.rows.filter(r => r.kind === 'step' && r.stepKind === 'verify')
    ).toHaveLength(1);
    // Keys are unique and the index points at each row.
    state.rows.forEach((row, i) => expect(state.index.get(row.key)).toBe(i));
  });
});

describe('replay and reconnects', () => {
  it('applies each event once, however replays overlap', () => {
    const once = replay(EVENTS);
    // Every split of the feed into overlapping windows, as reconnects with after=N make.
    for (const cut of [1, 7, 20, 33, 51]) {
      let state = replay(EVENTS.slice(0, cut));
      state = replay(EVENTS.slice(Math.max(0, cut - 5)), state);
      expect(state.rows).toEqual(once.rows);
      expect(state.files).toEqual(once.files);
      expect(state.eventCount).toBe(EVENTS.length);
    }
  });

  it('returns the same state when a batch holds nothing new', () => {
    const state = replay(EVENTS);
    expect(applyEvents(state, EVENTS.slice(10, 20))).toBe(state);
    expect(applyEvents(state, [])).toBe(state);
  });

  it('orders a batch whose live event overtook the replay', () => {
    const shuffled = [EVENTS[2], EVENTS[0], EVENTS[1]];
    expect(replay(shuffled).rows).toEqual(replay(EVENTS.slice(0, 3)).rows);
  });

  it("ignores another run's events", () => {
    const state = replay([{ ...ev(1, 'run.started'), run_id: 'someone-else' }]);
    expect(state.eventCount).toBe(0);
    expect(state.status).toBe('queued');
  });

  it('keeps rows that did not change identical, so views skip them', () => {
    const before = replay(EVENTS.slice(0, 30));
    const after = replay([EVENTS[30], EVENTS[31]], before);
    const changed = new Set(
      [EVENTS[30], EVENTS[31]].map(e => `call:${e.data.call_id}`)
    );
    before.rows.forEach((row, i) => {
      if (!changed.has(row.key)) {
        expect(after.rows[i]).toBe(row);
      }
    });
    // The input state is not touched.
    expect(before.lastSeq).toBe(30);
  });
});

describe('event handling', () => {
  it('streams command output into its call and keeps the tail of long output', () => {
    let state = replay([
      ev(1, 'tool.call', {
        call_id: 'c1',
        name: 'run_command',
        arguments: { command: 'yes' }
      })
    ]);
    const chunk = 'y\n'.repeat(4000);
    for (let seq = 2; seq < 8; seq++) {
      state = applyEvents(state, [
        ev(seq, 'command.output', { call_id: 'c1', text: chunk })
      ]);
    }
    const call = state.rows[0] as ICallRow;
    expect(call.status).toBe('running');
    expect(call.output.length).toBe(TEXT_CAP);
    expect(call.outputDropped).toBe(6 * chunk.length - TEXT_CAP);
    expect(call.brief).toBe('yes');
  });

  it('joins message deltas of one step and starts a new row for the next step', () => {
    const state = replay([
      ev(1, 'step.started', { step: 1, kind: 'model' }),
      ev(2, 'message.delta', { step: 1, text: 'Hello ' }),
      ev(3, 'message.delta', { step: 1, text: 'world' }),
      ev(4, 'step.started', { step: 2, kind: 'model' }),
      ev(5, 'message.delta', { step: 2, text: 'Again' })
    ]);
    const messages = state.rows.filter(r => r.kind === 'message');
    expect(messages.map(m => (m.kind === 'message' ? m.text : ''))).toEqual([
      'Hello world',
      'Again'
    ]);
  });

  it('takes cost and tokens from the running total', () => {
    const total = (cost: number, out: number) => ({
      total: {
        input_tokens: 100,
        output_tokens: out,
        cache_read_tokens: 5,
        cost_micros: cost
      }
    });
    const state = replay([
      ev(1, 'usage', total(1500, 10)),
      ev(2, 'usage', total(4200, 30))
    ]);
    expect(state.costMicros).toBe(4200);
    expect(state.usage).toEqual({
      inputTokens: 100,
      outputTokens: 30,
      cacheReadTokens: 5,
      cacheWriteTokens: 0
    });
  });

  it('adds usage up when events carry no total', () => {
    const state = replay([
      ev(1, 'usage', { output_tokens: 7, cost_micros: 10 }),
      ev(2, 'usage', { output_tokens: 3, cost_micros: 5 })
    ]);
    expect(state.usage.outputTokens).toBe(10);
    expect(state.costMicros).toBe(15);
  });

  it('keeps a file created then edited as created, and a deleted one as deleted', () => {
    const state = replay([
      ev(1, 'file.changed', {
        call_id: 'a',
        path: 'x.py',
        action: 'created',
        added: 3
      }),
      ev(2, 'file.changed', {
        call_id: 'b',
        path: 'x.py',
        action: 'modified',
        added: 1,
        removed: 1
      }),
      ev(3, 'file.changed', {
        call_id: 'b',
        path: 'y.py',
        action: 'modified',
        added: 2
      }),
      ev(4, 'file.changed', {
        call_id: 'c',
        path: 'y.py',
        action: 'deleted',
        removed: 9
      })
    ]);
    expect(
      state.files.map(f => [f.path, f.action, f.added, f.removed])
    ).toEqual([
      ['x.py', 'created', 4, 1],
      ['y.py', 'deleted', 2, 9]
    ]);
    // Output for a call whose tool.call never came still shows, under its call id.
    expect(
      (state.rows.find(r => r.key === 'call:b') as ICallRow).files
    ).toHaveLength(2);
  });

  it('ends a failed run: running calls fail, the end row has the reason', () => {
    const state = replay([
      ev(1, 'run.started', {
        provider: 'anthropic',
        model: 'claude-sonnet-4-5'
      }),
      ev(2, 'tool.call', {
        call_id: 'c',
        name: 'run_command',
        arguments: { command: 'sleep 99' }
      }),
      ev(3, 'run.failed', {
        reason: 'insufficient_credits',
        message: 'out of credits'
      })
    ]);
    expect(state.status).toBe('failed');
    expect(state.ai).toBe(true);
    expect((state.rows[0] as ICallRow).status).toBe('error');
    expect(state.rows[1]).toMatchObject({
      kind: 'end',
      status: 'failed',
      reason: 'insufficient_credits',
      message: 'out of credits'
    });
  });

  it('shows an approval request as a notice until the run ends', () => {
    let state = replay([
      ev(1, 'approval.requested', { message: 'Install numpy?' })
    ]);
    expect(state.approval?.message).toBe('Install numpy?');
    expect(state.rows[0]).toMatchObject({
      kind: 'notice',
      text: 'Waiting for approval: Install numpy?'
    });
    state = applyEvents(state, [
      ev(2, 'run.cancelled', { reason: 'cancelled' })
    ]);
    expect(state.approval).toBeNull();
  });

  it('keeps the exact call of an approval request until it is resolved', () => {
    let state = replay([
      ev(1, 'approval.requested', {
        approval_id: 'a1',
        kind: 'tool',
        tool: 'run_command',
        arguments: { command: 'curl https://example.com' },
        message: 'run_command `curl https://example.com`'
      })
    ]);
    expect(state.approval).toMatchObject({
      id: 'a1',
      kind: 'tool',
      tool: 'run_command',
      arguments: { command: 'curl https://example.com' },
      seq: 1
    });
    state = applyEvents(state, [
      ev(2, 'approval.resolved', {
        approval_id: 'a1',
        decision: 'deny',
        by: 'alice'
      })
    ]);
    expect(state.approval).toBeNull();
    expect(state.rows[1]).toMatchObject({
      kind: 'notice',
      level: 'warning',
      text: 'Denied by alice'
    });
  });

  it('counts event types it does not know without drawing them', () => {
    const state = replay([ev(1, 'something.new', { x: 1 })]);
    expect(state.eventCount).toBe(1);
    expect(state.rows).toHaveLength(0);
  });

  it("ends the feed on the server's word when the final event never comes", () => {
    const state = replay([ev(1, 'run.started')]);
    const ended = withRunStatus(state, {
      status: 'failed',
      reason: 'internal'
    });
    expect(feedDone(ended)).toBe(true);
    expect(ended.end).toMatchObject({ status: 'failed', reason: 'internal' });
    expect(withRunStatus(ended, { status: 'failed', reason: 'internal' })).toBe(
      ended
    );
  });
});

describe('the plan as a checklist', () => {
  const plan = ev(2, 'plan', {
    step: 1,
    steps: ['Write files', 'Install', 'Run tests']
  });
  const start = [ev(1, 'step.started', { step: 1, kind: 'model' }), plan];

  it('moves to the next item with each model turn after the plan', () => {
    let state = replay(start);
    expect(planChecklist(state).map(i => i.status)).toEqual([
      'active',
      'pending',
      'pending'
    ]);
    state = applyEvents(state, [
      ev(3, 'step.started', { step: 2, kind: 'model' })
    ]);
    expect(planChecklist(state).map(i => i.status)).toEqual([
      'active',
      'pending',
      'pending'
    ]);
    state = applyEvents(state, [
      ev(4, 'step.started', { step: 3, kind: 'model' })
    ]);
    expect(planChecklist(state).map(i => i.status)).toEqual([
      'done',
      'active',
      'pending'
    ]);
  });

  it('follows plan_item when the server sends it', () => {
    const state = replay([
      ...start,
      ev(3, 'step.started', { step: 2, plan_item: 2 })
    ]);
    expect(planChecklist(state).map(i => i.status)).toEqual([
      'done',
      'done',
      'active'
    ]);
  });

  it('marks where a failed run stopped, and nothing as tested without passing tests', () => {
    const state = replay([
      ...start,
      ev(3, 'step.started', { step: 2, kind: 'model' }),
      ev(4, 'step.started', { step: 3, kind: 'model' }),
      ev(5, 'run.failed', {
        reason: 'tests_failing',
        summary: {
          tests: {
            command: 'pytest',
            passed: false,
            exit_code: 1,
            output_tail: '1 failed, 2 passed'
          }
        }
      })
    ]);
    const items = planChecklist(state);
    expect(items.map(i => i.status)).toEqual(['done', 'stopped', 'pending']);
    expect(items.some(i => i.tested)).toBe(false);
    expect(state.tests).toMatchObject({
      passed: false,
      summary: '1 failed, 2 passed'
    });
  });
});

describe('testSummary', () => {
  it("finds pytest's last summary", () => {
    expect(
      testSummary(
        '..\n3 passed in 0.1s\n....\n2 failed, 5 passed in 1.2s',
        false
      )
    ).toBe('2 failed, 5 passed');
    expect(testSummary('no summary here', true)).toBe('passed');
  });
});

describe('a screenshot in a tool result', () => {
  it('becomes a data URL on the call; anything but PNG or JPEG base64 is dropped', () => {
    const png = { mime_type: 'image/png', data: 'iVBORw0KGgo=' };
    const state = replay([
      ev(1, 'tool.call', { call_id: 'c1', name: 'check_app', arguments: {} }),
      ev(2, 'tool.result', {
        call_id: 'c1',
        name: 'check_app',
        ok: true,
        image: png
      }),
      ev(3, 'tool.call', { call_id: 'c2', name: 'check_app', arguments: {} }),
      ev(4, 'tool.result', {
        call_id: 'c2',
        name: 'check_app',
        ok: true,
        image: { mime_type: 'image/svg+xml', data: 'PHN2Zz4=' }
      })
    ]);
    const [first, second] = callRows(state);
    expect(first.image).toBe('data:image/png;base64,iVBORw0KGgo=');
    expect(second.image).toBe('');
  });
});
