import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { IGpuLease } from '../src/api';
import { GpuBadge } from '../src/components/GpuBadge';

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

function lease(device: string, cost: number): IGpuLease {
  return {
    id: device,
    device,
    name: 'NVIDIA H200',
    kernel_id: '0123456789abcdef',
    project_id: 'p1',
    user: 'alice',
    started_at: '2026-12-03T16:00:00+00:00',
    ended_at: null,
    end_reason: null,
    seconds: 90,
    billed_seconds: 60,
    cost_micros: cost
  };
}

describe('GpuBadge', () => {
  it('names the held GPUs and what they cost so far', () => {
    act(() =>
      root.render(
        <GpuBadge
          leases={[lease('GPU-a', 1_500_000), lease('GPU-b', 500_000)]}
        />
      )
    );
    const badge = container.querySelector('.jp-EcodeGpuBadge') as HTMLElement;
    expect(badge.textContent).toContain('GPU ×2');
    expect(badge.textContent).toContain('NVIDIA H200');
    expect(badge.dataset.gpus).toBe('2');
    expect(badge.title).toContain('GPU-a');
    expect(badge.title).toContain('kernel 01234567');
  });

  it('shows nothing when no kernel holds a GPU', () => {
    act(() => root.render(<GpuBadge leases={[]} />));
    expect(container.querySelector('.jp-EcodeGpuBadge')).toBeNull();
    act(() => root.render(<GpuBadge />));
    expect(container.innerHTML).toBe('');
  });
});
