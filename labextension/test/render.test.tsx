import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ApprovalBox } from '../src/components/ApprovalBox';
import { FeedList } from '../src/components/FeedView';
import { FeedRowView } from '../src/components/FeedRows';
import { PlanChecklist } from '../src/components/Plan';
import {
  howToRunFor,
  PREVIEW_SANDBOX,
  PreviewTab,
  previewSandbox
} from '../src/components/tabs/PreviewTab';
import { prefixOffsets, visibleRange } from '../src/components/VirtualList';
import {
  applyEvents,
  ICallRow,
  IFeedEvent,
  initialFeedState
} from '../src/feedState';
import { ProjectSession } from '../src/session';
import recorded from './fixtures/offline-run.json';

// React warns unless told it runs under a test harness that flushes with act().
(
  globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }
).IS_REACT_ACT_ENVIRONMENT = true;

let container: HTMLDivElement;
let root: Root;

beforeEach(() => {
  container = document.createElement('div');
  document.body.appendChild(container);
  root = createRoot(container);
});

afterEach(() => {
  act(() => root.unmount());
  container.remove();
});

function render(element: React.ReactElement): void {
  act(() => root.render(element));
}

const ev = (
  seq: number,
  type: string,
  data: Record<string, unknown>
): IFeedEvent => ({
  seq,
  run_id: 'r1',
  ts: '',
  type,
  data
});

/** A long run: `calls` tool calls, each with output and a changed file. */
function bigRun(calls: number): IFeedEvent[] {
  const events: IFeedEvent[] = [
    ev(1, 'run.started', { provider: 'openai', model: 'gpt-4.1' })
  ];
  let seq = 2;
  for (let i = 0; i < calls; i++) {
    const id = `c${i}`;
    events.push(
      ev(seq++, 'tool.call', {
        call_id: id,
        name: 'write_file',
        arguments: { path: `f${i}.py` }
      })
    );
    events.push(
      ev(seq++, 'file.changed', {
        call_id: id,
        path: `f${i}.py`,
        action: 'created',
        added: 2,
        diff: '+a\n+b'
      })
    );
    events.push(
      ev(seq++, 'command.output', { call_id: id, text: `wrote f${i}\n` })
    );
    events.push(
      ev(seq++, 'tool.result', { call_id: id, name: 'write_file', ok: true })
    );
    events.push(ev(seq++, 'usage', { total: { cost_micros: i * 10 } }));
  }
  return events;
}

describe('the feed list', () => {
  it('renders thousands of events as a window of rows', () => {
    const events = bigRun(1000); // 5,001 events
    const state = applyEvents(initialFeedState('r1'), events);
    expect(state.eventCount).toBe(5001);
    render(<FeedList state={state} fallbackViewport={600} />);
    const feed = container.querySelector('[role="feed"]')!;
    expect(feed.getAttribute('data-last-seq')).toBe('5001');
    expect(feed.getAttribute('aria-label')).toBe('Agent activity');
    const articles = feed.querySelectorAll('article');
    // 600 px viewport + 600 px overscan each way at ~36 px per row: a few dozen, not 1,000.
    expect(articles.length).toBeGreaterThan(10);
    expect(articles.length).toBeLessThan(100);
    expect(articles[0].getAttribute('aria-setsize')).toBe(
      String(state.rows.length)
    );
    // A live feed follows its newest rows: the window is at the bottom...
    const last = articles[articles.length - 1];
    expect(last.getAttribute('aria-posinset')).toBe(String(state.rows.length));
    expect(last.textContent).toContain('f999.py');
    // ...and the spacer above stands in for the rows not drawn.
    const spacer = feed.firstElementChild as HTMLElement;
    expect(parseFloat(spacer.style.height)).toBeGreaterThan(30_000);
  });

  it('draws the recorded offline run: steps, calls, the end', () => {
    const state = applyEvents(
      initialFeedState(recorded.events[0].run_id),
      recorded.events as IFeedEvent[]
    );
    render(<FeedList state={state} fallbackViewport={5000} />);
    const text = container.textContent ?? '';
    expect(text).toContain('Step 1');
    expect(text).toContain('Checking the project: python -m pytest -q');
    expect(text).toContain('Completed — the project is built; tests pass');
    const calls = container.querySelectorAll('.jp-EcodeCall');
    expect(calls).toHaveLength(10);
    expect(
      container.querySelectorAll('.jp-EcodeCall [aria-label="done"]')
    ).toHaveLength(10);
  });

  it('keeps following unless the reader scrolls away', () => {
    const scrolled = (feed: HTMLElement, top: number) => {
      // jsdom has no layout: give the list a size, then scroll it.
      Object.defineProperty(feed, 'clientHeight', {
        value: 600,
        configurable: true
      });
      Object.defineProperty(feed, 'scrollHeight', {
        value: 40_000,
        configurable: true
      });
      feed.scrollTop = top;
      act(() => {
        feed.dispatchEvent(new Event('scroll'));
      });
    };
    const lastShown = (feed: Element) => {
      const articles = feed.querySelectorAll('article');
      return articles[articles.length - 1].getAttribute('aria-posinset');
    };
    const first = applyEvents(initialFeedState('r1'), bigRun(300));
    render(<FeedList state={first} fallbackViewport={600} />);
    const feed = container.querySelector('[role="feed"]') as HTMLElement;
    // A scroll the reader did not make (the list hidden and shown, a re-layout): still live.
    scrolled(feed, 0);
    const more = applyEvents(first, bigRun(310).slice(first.eventCount));
    render(<FeedList state={more} fallbackViewport={600} />);
    expect(lastShown(feed)).toBe(String(more.rows.length));
    // The reader scrolls up with the wheel: the list stays where they are.
    act(() => {
      feed.dispatchEvent(
        new WheelEvent('wheel', { bubbles: true, deltaY: -500 })
      );
    });
    scrolled(feed, 0);
    const evenMore = applyEvents(more, bigRun(320).slice(more.eventCount));
    render(<FeedList state={evenMore} fallbackViewport={600} />);
    expect(lastShown(feed)).not.toBe(String(evenMore.rows.length));
  });

  it('says it is waiting before the first event', () => {
    render(<FeedList state={initialFeedState('r1')} />);
    expect(container.textContent).toBe('Waiting for the agent to start…');
  });
});

describe('a tool call row', () => {
  const state = applyEvents(initialFeedState('r1'), [
    ev(1, 'tool.call', {
      call_id: 'c',
      name: 'run_command',
      arguments: { command: 'pytest -q' }
    }),
    ev(2, 'command.output', { call_id: 'c', text: '..F\n' }),
    ev(3, 'file.changed', {
      call_id: 'c',
      path: 'app.py',
      action: 'modified',
      added: 1,
      removed: 1,
      diff: '--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-old\n+new'
    })
  ]);
  const row = state.rows[0] as ICallRow;

  function Harness(): JSX.Element {
    const [expanded, setExpanded] = React.useState<
      ReadonlyMap<string, boolean>
    >(new Map());
    const openFiles = new Set(
      [...expanded].filter(([k, v]) => v && k.includes('|')).map(([k]) => k)
    );
    return (
      <FeedRowView
        row={row}
        expanded={expanded}
        openFiles={openFiles}
        onToggle={(key, open) =>
          setExpanded(old => new Map(old).set(key, open))
        }
      />
    );
  }

  it('shows streaming output while it runs, and hides it on request', () => {
    render(<Harness />);
    const toggle = container.querySelector(
      'button[aria-controls]'
    ) as HTMLButtonElement;
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    expect(
      container.querySelector('pre.jp-EcodeCall-output')?.textContent
    ).toBe('..F\n');
    act(() => toggle.click());
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    expect(container.querySelector('pre.jp-EcodeCall-output')).toBeNull();
  });

  it('unfolds a file diff with added and removed lines marked', () => {
    render(<Harness />);
    const chip = container.querySelector(
      '.jp-EcodeFileChip'
    ) as HTMLButtonElement;
    expect(chip.textContent).toBe('app.py+1−1');
    expect(chip.getAttribute('aria-expanded')).toBe('false');
    act(() => chip.click());
    expect(chip.getAttribute('aria-expanded')).toBe('true');
    const diff = container.querySelector('.jp-EcodeDiff')!;
    expect(diff.getAttribute('aria-label')).toBe('Diff of app.py');
    expect(diff.querySelector('.jp-EcodeDiff-add')?.textContent).toBe('+new\n');
    expect(diff.querySelector('.jp-EcodeDiff-del')?.textContent).toBe('-old\n');
    expect(diff.querySelector('.jp-EcodeDiff-hunk')).not.toBeNull();
  });
});

describe('the end of a run', () => {
  it('says what to do next when credits ran out', () => {
    const state = applyEvents(initialFeedState('r1'), [
      ev(1, 'run.failed', {
        reason: 'insufficient_credits',
        message: 'not enough credits for this call'
      })
    ]);
    render(
      <FeedRowView
        row={state.rows[0]}
        expanded={new Map()}
        openFiles={new Set()}
        onToggle={() => undefined}
      />
    );
    expect(container.textContent).toContain(
      'Failed — not enough credits for this call'
    );
    expect(container.textContent).toContain('Out of credits — ask your admin');
  });
});

describe('an approval request', () => {
  it('shows the exact call and sends the chosen answer', async () => {
    const state = applyEvents(initialFeedState('r1'), [
      ev(1, 'approval.requested', {
        approval_id: 'a1',
        kind: 'tool',
        tool: 'run_command',
        arguments: { command: 'curl https://example.com', timeout_s: 30 },
        message: 'run_command `curl https://example.com`'
      })
    ]);
    const answers: string[] = [];
    render(
      <ApprovalBox
        approval={state.approval!}
        onDecide={async (id, decision) => {
          answers.push(`${id}:${decision}`);
        }}
      />
    );
    const call = container.querySelector('.jp-EcodeApproval-call');
    expect(call?.textContent).toBe(
      'command: curl https://example.com\ntimeout_s: 30'
    );
    const buttons = [...container.querySelectorAll('button')];
    expect(buttons.map(b => b.textContent)).toEqual([
      'Approve',
      'Deny',
      'Always allow'
    ]);
    await act(async () => buttons[2].click());
    await act(async () => buttons[1].click());
    expect(answers).toEqual(['a1:always', 'a1:deny']);
  });

  it('offers no "always" for a plan, and sends the plan as edited', async () => {
    const state = applyEvents(initialFeedState('r1'), [
      ev(1, 'approval.requested', {
        approval_id: 'p1',
        kind: 'plan',
        arguments: { plan: '1. Write app.py\n2. Test it' },
        message: 'the plan'
      })
    ]);
    const answers: (string | undefined)[][] = [];
    render(
      <ApprovalBox
        approval={state.approval!}
        onDecide={async (id, decision, plan) => {
          answers.push([id, decision, plan]);
        }}
      />
    );
    expect(container.textContent).toContain('Approve the plan');
    const box = container.querySelector('textarea') as HTMLTextAreaElement;
    expect(box.value).toBe('1. Write app.py\n2. Test it');
    const labels = [...container.querySelectorAll('button')].map(
      b => b.textContent
    );
    expect(labels).toEqual(['Approve', 'Deny']);
    const approve = container.querySelector('button') as HTMLButtonElement;
    // Unchanged: approved as written.
    await act(async () => approve.click());
    // Edited, the way React sees typing: the native setter, then an input event.
    const setValue = Object.getOwnPropertyDescriptor(
      HTMLTextAreaElement.prototype,
      'value'
    )!.set!;
    act(() => {
      setValue.call(box, '1. Write app.py only');
      box.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await act(async () => approve.click());
    expect(answers).toEqual([
      ['p1', 'allow', undefined],
      ['p1', 'allow', '1. Write app.py only']
    ]);
  });
});

describe('the plan checklist', () => {
  it('labels progress for screen readers', () => {
    render(
      <PlanChecklist
        showTested
        items={[
          { text: 'Write files', status: 'done', tested: true },
          { text: 'Install', status: 'done', tested: false },
          { text: 'Run tests', status: 'active', tested: false }
        ]}
      />
    );
    const list = container.querySelector('ol')!;
    expect(list.getAttribute('aria-label')).toBe('Plan: 2 of 3 done');
    const items = [...list.querySelectorAll('li')].map(li => li.textContent);
    expect(items).toEqual([
      '☑Write files (done)tested',
      '☑Install (done)not tested yet',
      '◐Run tests (in progress)'
    ]);
  });
});

describe('the virtual list window', () => {
  it('covers the viewport plus overscan, by measured heights', () => {
    const offsets = prefixOffsets(100, i => (i < 50 ? 10 : 100));
    expect(offsets[100]).toBe(500 + 5000);
    expect(visibleRange(offsets, 0, 100, 0)).toEqual([0, 11]);
    expect(visibleRange(offsets, 480, 100, 0)).toEqual([48, 51]);
    expect(visibleRange(offsets, 5400, 100, 0)).toEqual([99, 100]);
    expect(visibleRange(offsets, 1000, 100, 200)).toEqual([53, 59]);
    expect(
      visibleRange(
        prefixOffsets(0, () => 10),
        0,
        100,
        0
      )
    ).toEqual([0, 0]);
  });
});

describe('the preview tab', () => {
  const project = {
    id: 'p1',
    name: 'Todo',
    slug: 'todo',
    owner: 'ann',
    template: null,
    prompt: null,
    role: 'owner' as const,
    created_at: '',
    updated_at: ''
  };

  /** A session whose preview runs at `url`. */
  function previewing(url: string, ownOrigin?: boolean): ProjectSession {
    const session = new ProjectSession(project);
    Object.defineProperty(session, 'preview', {
      value: {
        id: 'd1',
        project_id: 'p1',
        kind: 'preview',
        status: 'running',
        reason: null,
        running: true,
        live: true,
        url,
        entry_url: '/ecode/apps/@ann/todo/',
        own_origin: ownOrigin,
        release: null
      }
    });
    return session;
  }

  it('sandboxes the app without allow-same-origin', () => {
    const session = previewing('/ecode/apps/@ann/todo/~key/');
    render(<PreviewTab session={session} />);
    const frame = container.querySelector('iframe')!;
    expect(frame.getAttribute('sandbox')).toBe(PREVIEW_SANDBOX);
    expect(PREVIEW_SANDBOX).not.toContain('allow-same-origin');
    expect(frame.getAttribute('src')).toBe('/ecode/apps/@ann/todo/~key/');
    expect(frame.getAttribute('title')).toBe('Preview of Todo');
    session.dispose();
  });

  it('navigates the frame from the address bar, back through its history', () => {
    const session = previewing('/ecode/apps/@ann/todo/~key/');
    const opened: unknown[][] = [];
    const open = window.open;
    window.open = ((...args: unknown[]) => {
      opened.push(args);
      return null;
    }) as typeof window.open;
    render(<PreviewTab session={session} />);
    const frame = () => container.querySelector('iframe')!;
    const path = container.querySelector<HTMLInputElement>(
      'input[aria-label="Path in the app"]'
    )!;
    const back = container.querySelector<HTMLButtonElement>(
      'button[aria-label="Back"]'
    )!;
    expect(path.value).toBe('/');
    expect(back.disabled).toBe(true);

    // React tracks the input's value: set it through the native setter, then fire input.
    const setValue = Object.getOwnPropertyDescriptor(
      HTMLInputElement.prototype,
      'value'
    )!.set!;
    act(() => {
      setValue.call(path, '/items?page=2');
      path.dispatchEvent(new Event('input', { bubbles: true }));
    });
    act(() => {
      path.form!.requestSubmit();
    });
    expect(frame().getAttribute('src')).toBe(
      '/ecode/apps/@ann/todo/~key/items?page=2'
    );
    expect(back.disabled).toBe(false);

    act(() => {
      container
        .querySelector<HTMLButtonElement>(
          'button[aria-label="Open in a new tab"]'
        )!
        .click();
    });
    expect(opened).toEqual([
      ['/ecode/apps/@ann/todo/~key/items?page=2', '_blank', 'noopener']
    ]);

    act(() => back.click());
    expect(frame().getAttribute('src')).toBe('/ecode/apps/@ann/todo/~key/');
    expect(path.value).toBe('/');
    expect(back.disabled).toBe(true);
    window.open = open;
    session.dispose();
  });

  it('lets the app keep its own origin only on another host', () => {
    const lab = 'http://127.0.0.1:8888/lab';
    const own = `${PREVIEW_SANDBOX} allow-same-origin`;
    const there = 'http://apps.localhost:8890/ecode/apps/@ann/todo/~key/';
    expect(previewSandbox(there, true, lab)).toBe(own);
    expect(previewSandbox(there, false, lab)).toBe(PREVIEW_SANDBOX);
    expect(previewSandbox(there, undefined, lab)).toBe(PREVIEW_SANDBOX);
    // The lab's host (another port shares its cookies) or a relative URL: never.
    const sameHost = 'http://127.0.0.1:8890/ecode/apps/@ann/todo/~key/';
    expect(previewSandbox(sameHost, true, lab)).toBe(PREVIEW_SANDBOX);
    expect(previewSandbox('/ecode/apps/@ann/todo/~key/', true, lab)).toBe(
      PREVIEW_SANDBOX
    );
    expect(previewSandbox('http://[bad', true, lab)).toBe(PREVIEW_SANDBOX);

    const session = previewing(there, true);
    render(<PreviewTab session={session} />);
    expect(container.querySelector('iframe')!.getAttribute('sandbox')).toBe(
      own
    );
    session.dispose();
  });

  it('offers to start the preview when none runs', () => {
    const session = new ProjectSession(project);
    render(<PreviewTab session={session} />);
    expect(container.querySelector('iframe')).toBeNull();
    expect(container.textContent).toContain('Start preview');
    expect(container.textContent).toContain('No preview is running.');
    session.dispose();
  });

  const templates = [
    {
      id: 'flask-api',
      title: 'Flask',
      description: '',
      serves: true,
      entry: 'app.py'
    },
    {
      id: 'python-script',
      title: 'Script',
      description: '',
      serves: false,
      entry: 'main.py'
    },
    {
      id: 'data-notebook',
      title: 'Notebook',
      description: '',
      serves: false,
      entry: 'analysis.ipynb'
    },
    { id: 'old-server', title: 'Old', description: '' }
  ];

  it('knows a script or notebook project from its template', () => {
    const of = (template: string | null) =>
      howToRunFor({ ...project, template }, templates);
    expect(of('python-script')).toEqual({
      kind: 'script',
      path: 'main.py',
      command: 'python main.py'
    });
    expect(of('data-notebook')).toEqual({
      kind: 'notebook',
      path: 'analysis.ipynb',
      command: null
    });
    // A web app, no template, or a server that does not say: the preview as before.
    expect(of('flask-api')).toBeNull();
    expect(of(null)).toBeNull();
    expect(of('old-server')).toBeNull();
  });

  it('says how to run a script instead of offering a preview that fails', () => {
    const session = new ProjectSession(project);
    const opened: string[] = [];
    render(
      <PreviewTab
        session={session}
        howToRun={{
          kind: 'script',
          path: 'main.py',
          command: 'python main.py'
        }}
        workspace="ecode-projects/p1"
        openFile={path => opened.push(path)}
      />
    );
    expect(container.textContent).not.toContain('Start preview');
    expect(container.textContent).toContain('not a web app');
    expect(container.textContent).toContain('python main.py');
    expect(container.textContent).toContain('ecode-projects/p1');
    const open = Array.from(container.querySelectorAll('button')).find(b =>
      b.textContent?.includes('Open main.py')
    )!;
    act(() => open.click());
    expect(opened).toEqual(['ecode-projects/p1/main.py']);
    session.dispose();
  });
});
