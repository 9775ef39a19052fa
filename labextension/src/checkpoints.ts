/**
 * Checkpoints and undo over REST (issue 19): a project's checkpoints, restoring one, undoing a
 * run, and the sentence that tells a person what was put back.
 */
import { requestAPI } from './handler';

/** One checkpoint as `GET projects/{id}/checkpoints` lists it (newest first). */
export interface ICheckpoint {
  id: number;
  kind: 'start' | 'step' | 'restore' | 'undo' | string;
  run_id: string | null;
  step: number | null;
  created_at: number;
  files: number;
  new_bytes: number;
  /** Paths that differ from the checkpoint before it (at most 200). */
  changed: string[];
  actor: string | null;
}

/** A file the revert left as the person has it, and why. */
export interface IRevertConflict {
  path: string;
  reason: string;
  /** What the revert wanted the file to be. */
  wanted?: string | null;
  /** The merge with `<<<<<<< now` / `>>>>>>> restored` markers, to resolve by hand. */
  merge?: string | null;
}

/** What `POST runs/{id}/undo` and `POST …/checkpoints/{n}/restore` answer. */
export interface IRevertResult {
  restored: string[];
  merged: string[];
  conflicts: IRevertConflict[];
}

export async function listCheckpoints(
  projectId: string
): Promise<ICheckpoint[]> {
  const reply = await requestAPI<{ checkpoints: ICheckpoint[] }>(
    `projects/${encodeURIComponent(projectId)}/checkpoints`
  );
  return reply.checkpoints;
}

export async function restoreCheckpoint(
  projectId: string,
  checkpointId: number
): Promise<IRevertResult> {
  return requestAPI<IRevertResult>(
    `projects/${encodeURIComponent(projectId)}/checkpoints/${checkpointId}/restore`,
    { method: 'POST' }
  );
}

export async function undoRun(runId: string): Promise<IRevertResult> {
  return requestAPI<IRevertResult>(`runs/${encodeURIComponent(runId)}/undo`, {
    method: 'POST'
  });
}

function files(n: number): string {
  return n === 1 ? '1 file' : `${n} files`;
}

/** "Put back 4 files; kept your edits in 1 (merged); 1 left as you have it: main.py." */
export function revertSummary(result: IRevertResult): string {
  const parts: string[] = [];
  if (result.restored.length) {
    parts.push(`put back ${files(result.restored.length)}`);
  }
  if (result.merged.length) {
    parts.push(
      `kept your edits in ${files(result.merged.length)} (merged): ${result.merged.join(', ')}`
    );
  }
  if (result.conflicts.length) {
    const paths = result.conflicts.map(c => c.path).join(', ');
    parts.push(
      `${result.conflicts.length} left as you have ${result.conflicts.length === 1 ? 'it' : 'them'} (conflict): ${paths}`
    );
  }
  if (!parts.length) {
    return 'Nothing to put back: the files are already as they were.';
  }
  const text = parts.join('; ');
  return text.charAt(0).toUpperCase() + text.slice(1) + '.';
}

/** How a checkpoint reads in a list: "Step 3 of run 1a2b3c4d · 2 files changed". */
export function checkpointLabel(checkpoint: ICheckpoint): string {
  const run = checkpoint.run_id ? checkpoint.run_id.slice(0, 8) : '';
  let what: string;
  switch (checkpoint.kind) {
    case 'start':
      what = `Before run ${run}`;
      break;
    case 'step':
      what = `Step ${checkpoint.step ?? '?'} of run ${run}`;
      break;
    case 'undo':
      what = `After undoing run ${run}`;
      break;
    case 'restore':
      what = 'After a restore';
      break;
    default:
      what = checkpoint.kind;
  }
  const n = checkpoint.changed.length;
  return n ? `${what} · ${files(n)} changed` : what;
}
