import * as React from 'react';
import { act } from 'react';
import { createRoot } from 'react-dom/client';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { DeployTab } from '../src/components/tabs/DeployTab';
import { ProjectsModel } from '../src/model';
import { ProjectSession } from '../src/session';

(
  globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }
).IS_REACT_ACT_ENVIRONMENT = true;

const PROJECT = {
  id: 'p1',
  name: 'Todo',
  slug: 'todo',
  owner: 'ann',
  template: null,
  prompt: 'a todo API',
  role: 'owner' as const,
  created_at: '',
  updated_at: ''
};

const NO_COMMAND = {
  error: {
    code: 'invalid_input',
    message: 'cannot tell how to run this project: … or give a command',
    details: { field: 'command' }
  }
};

type Call = { url: string; method: string; body: unknown };

/** A server that answers each request by its method and path. */
function stubServer(answer: (call: Call) => [number, unknown]): Call[] {
  const calls: Call[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const request =
        input instanceof Request ? input : new Request(String(input), init);
      const text = await request.text();
      const call = {
        url: new URL(request.url).pathname,
        method: request.method,
        body: text ? JSON.parse(text) : null
      };
      calls.push(call);
      const [status, body] = answer(call);
      return new Response(JSON.stringify(body), { status });
    })
  );
  return calls;
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('a release the server cannot tell how to run', () => {
  it('asks for the command, then deploys with it', async () => {
    const calls = stubServer(call => {
      if (call.method === 'POST' && call.url.endsWith('/releases')) {
        return call.body && (call.body as { command?: string }).command
          ? [201, { id: 'd1', kind: 'release' }]
          : [400, NO_COMMAND];
      }
      if (call.url.endsWith('/deployments')) {
        return [
          200,
          {
            deployments: [
              {
                id: 'd0',
                kind: 'preview',
                command: 'python -m flask --app app run --port {port}'
              }
            ]
          }
        ];
      }
      return [200, { releases: [] }];
    });
    const session = new ProjectSession(PROJECT);
    await session.refreshDeploy();
    await session.deployRelease();
    expect(session.commandNeeded).toBe('release');
    expect(session.errors.deploy).toMatch(/cannot tell how to run/);

    const container = document.createElement('div');
    document.body.appendChild(container);
    const root = createRoot(container);
    act(() =>
      root.render(<DeployTab session={session} confirm={async () => true} />)
    );
    const input = container.querySelector('input') as HTMLInputElement;
    expect(input.labels?.[0].textContent).toContain(
      'Command that starts the app'
    );
    // A starting point: the command the app last ran with.
    expect(input.value).toBe('python -m flask --app app run --port {port}');
    const button = [...container.querySelectorAll('button')].find(
      b => b.textContent === 'Deploy with this command'
    ) as HTMLButtonElement;
    await act(async () => {
      button.click();
      await new Promise(resolve => setTimeout(resolve, 0));
    });
    const posted = calls.filter(c => c.method === 'POST');
    expect(posted.map(c => c.body)).toEqual([
      {},
      { command: 'python -m flask --app app run --port {port}' }
    ]);
    expect(session.commandNeeded).toBeNull();
    expect(session.errors.deploy).toBeUndefined();
    act(() => root.unmount());
    container.remove();
    session.dispose();
  });
});

describe('a new project with "plan first"', () => {
  it('asks the server for a plan-mode run, and only with a prompt', async () => {
    const lists: Record<string, unknown> = {
      projects: { projects: [], next_cursor: null },
      templates: { templates: [] },
      prices: { models: [] }
    };
    const calls = stubServer(call =>
      call.method === 'POST'
        ? [201, { ...PROJECT, id: 'p2' }]
        : [200, lists[call.url.split('/').pop() ?? ''] ?? {}]
    );
    const model = new ProjectsModel();
    await model.create({ prompt: 'a todo API', mode: 'plan' });
    await model.create({ name: 'Empty', mode: 'plan' });
    const posted = calls.filter(c => c.method === 'POST').map(c => c.body);
    expect(posted[0]).toMatchObject({ prompt: 'a todo API', mode: 'plan' });
    // No prompt, no run: no mode either.
    expect(posted[1]).toEqual({ name: 'Empty' });
  });
});

describe('a follow-up run in a mode', () => {
  it('sends the mode, and none for a plain build', async () => {
    const calls = stubServer(call =>
      call.method === 'POST'
        ? [201, { id: 'r1', project_id: 'p1', status: 'queued' }]
        : [200, { events: [] }]
    );
    const session = new ProjectSession(PROJECT);
    await session.startRun('what does app.py do?', undefined, 'ask');
    await session.startRun('add a test');
    const posted = calls.filter(c => c.method === 'POST').map(c => c.body);
    expect(posted).toEqual([
      { prompt: 'what does app.py do?', mode: 'ask' },
      { prompt: 'add a test' }
    ]);
    session.dispose();
  });
});

describe('a preview of a project that is not a web app', () => {
  it('keeps how to run it instead of only an error', async () => {
    stubServer(call => {
      if (call.method === 'POST' && call.url.endsWith('/deployments')) {
        return [
          400,
          {
            error: {
              code: 'invalid_input',
              message:
                'this project is not a web app, so there is no preview: it is a script: ' +
                'run `python report.py` in a terminal in its folder',
              details: {
                field: 'command',
                not_a_web_app: true,
                how_to_run: {
                  kind: 'script',
                  path: 'report.py',
                  command: 'python report.py'
                }
              }
            }
          }
        ];
      }
      return [200, { deployments: [], releases: [] }];
    });
    const session = new ProjectSession(PROJECT);
    expect(session.howToRun).toBeNull();
    await session.startPreview();
    expect(session.howToRun).toEqual({
      kind: 'script',
      path: 'report.py',
      command: 'python report.py'
    });
    expect(session.errors.deploy).toMatch(/not a web app/);
    session.dispose();
  });
});
