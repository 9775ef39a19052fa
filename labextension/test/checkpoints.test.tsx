import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ICheckpoint, IRevertResult, revertSummary } from '../src/checkpoints';
import { CheckpointList } from '../src/components/CheckpointList';
import { UndoRun } from '../src/components/UndoRun';

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

const UNDONE: IRevertResult = {
  restored: ['app.py', 'notes.md', 'made.txt'],
  merged: ['README.md'],
  conflicts: [
    {
      path: 'main.py',
      reason:
        'changed since the checkpoint where the restore changes it; left as it is',
      wanted: 'print("before")\n',
      merge:
        '<<<<<<< now\nprint("person")\n=======\nprint("before")\n>>>>>>> restored\n'
    }
  ]
};

function checkpoint(
  id: number,
  kind: string,
  step: number | null
): ICheckpoint {
  return {
    id,
    kind,
    run_id: 'abcdef0123456789',
    step,
    created_at: 0,
    files: 5,
    new_bytes: 10,
    changed: kind === 'start' ? [] : ['app.py', 'notes.md'],
    actor: 'alice'
  };
}

async function click(button: HTMLButtonElement): Promise<void> {
  await act(async () => {
    button.click();
  });
}

describe('revertSummary', () => {
  it('says what was put back, merged and left as it is', () => {
    expect(revertSummary(UNDONE)).toBe(
      'Put back 3 files; kept your edits in 1 file (merged): README.md; ' +
        '1 left as you have it (conflict): main.py.'
    );
    expect(
      revertSummary({ restored: [], merged: [], conflicts: [] })
    ).toContain('Nothing to put back');
  });
});

describe('UndoRun', () => {
  it('undoes the run after asking, and shows the conflict with its merge', async () => {
    const undo = vi.fn(async () => UNDONE);
    const confirm = vi.fn(async () => true);
    act(() =>
      root.render(<UndoRun runId="run-1" confirm={confirm} undo={undo} />)
    );
    const button = container.querySelector('button') as HTMLButtonElement;
    expect(button.textContent).toBe('Undo this run');
    await click(button);
    expect(confirm).toHaveBeenCalledOnce();
    expect(undo).toHaveBeenCalledWith('run-1');
    const result = container.querySelector(
      '.jp-EcodeRevertResult'
    ) as HTMLElement;
    expect(result.textContent).toContain('Put back 3 files');
    const conflict = container.querySelector(
      '[data-path="main.py"]'
    ) as HTMLElement;
    expect(conflict.textContent).toContain('left as it is');
    expect(conflict.querySelector('pre')?.textContent).toContain('<<<<<<< now');
  });

  it('does nothing when the person says no', async () => {
    const undo = vi.fn(async () => UNDONE);
    act(() =>
      root.render(
        <UndoRun runId="run-1" confirm={async () => false} undo={undo} />
      )
    );
    await click(container.querySelector('button') as HTMLButtonElement);
    expect(undo).not.toHaveBeenCalled();
    expect(container.querySelector('.jp-EcodeRevertResult')).toBeNull();
  });
});

describe('CheckpointList', () => {
  it('lists checkpoints newest first and restores the one asked for', async () => {
    const items = [
      checkpoint(3, 'step', 2),
      checkpoint(2, 'step', 1),
      checkpoint(1, 'start', 0)
    ];
    const api = {
      list: vi.fn(async () => items),
      restore: vi.fn(async () => UNDONE)
    };
    await act(async () => {
      root.render(
        <CheckpointList projectId="p1" confirm={async () => true} api={api} />
      );
    });
    const rows = [...container.querySelectorAll('li')];
    expect(rows.map(r => r.textContent)).toEqual([
      'Step 2 of run abcdef01 · 2 files changed ',
      'Step 1 of run abcdef01 · 2 files changed Restore',
      'Before run abcdef01 Restore'
    ]);
    // The newest is where the files are already: no Restore there.
    expect(rows[0].querySelector('button')).toBeNull();
    await click(rows[1].querySelector('button') as HTMLButtonElement);
    expect(api.restore).toHaveBeenCalledWith('p1', 2);
    expect(api.list).toHaveBeenCalledTimes(2);
    expect(container.textContent).toContain('Put back 3 files');
  });
});
