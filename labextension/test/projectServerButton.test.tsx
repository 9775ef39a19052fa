import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { IProjectServer } from '../src/api';
import {
  IProjectServerApi,
  ProjectServerButton
} from '../src/components/ProjectServerButton';

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

const stopped: IProjectServer = {
  name: 'ecode-shop',
  owner: 'alice',
  url: '/user/alice/ecode-shop/lab',
  ready: false,
  pending: null
};

async function settle(): Promise<void> {
  await act(async () => {
    await Promise.resolve();
  });
}

describe('ProjectServerButton', () => {
  it('is absent where the server has no project servers', async () => {
    const api: IProjectServerApi = {
      get: vi.fn().mockRejectedValue(new Error('not found')),
      open: vi.fn(),
      visit: vi.fn()
    };
    act(() => root.render(<ProjectServerButton projectId="p1" api={api} />));
    await settle();
    expect(container.querySelector('button')).toBeNull();
    expect(api.open).not.toHaveBeenCalled();
  });

  it('starts a stopped server and opens its Lab', async () => {
    const api: IProjectServerApi = {
      get: vi.fn().mockResolvedValue(stopped),
      open: vi.fn().mockResolvedValue({ ...stopped, ready: true }),
      visit: vi.fn()
    };
    act(() => root.render(<ProjectServerButton projectId="p1" api={api} />));
    await settle();
    const button = container.querySelector('button')!;
    expect(button.textContent).toBe('Open in its server');
    expect(button.dataset.state).toBe('stopped');
    await act(async () => {
      button.click();
    });
    await settle();
    expect(api.open).toHaveBeenCalledWith('p1');
    expect(api.visit).toHaveBeenCalledWith('/user/alice/ecode-shop/lab');
    expect(container.querySelector('button')!.dataset.state).toBe('running');
  });

  it('says why when the server cannot be started', async () => {
    const api: IProjectServerApi = {
      get: vi.fn().mockResolvedValue(stopped),
      open: vi.fn().mockRejectedValue(new Error('the hub refused the spawn')),
      visit: vi.fn()
    };
    act(() => root.render(<ProjectServerButton projectId="p1" api={api} />));
    await settle();
    await act(async () => {
      container.querySelector('button')!.click();
    });
    await settle();
    expect(container.querySelector('[role="alert"]')!.textContent).toContain(
      'the hub refused the spawn'
    );
    expect(api.visit).not.toHaveBeenCalled();
  });
});
