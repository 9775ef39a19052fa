/**
 * The project's checkpoints, newest first, each with "Restore": the files go back to how they
 * were at that point, keeping (merging) what people edited since the latest checkpoint.
 */
import * as React from 'react';

import {
  checkpointLabel,
  ICheckpoint,
  IRevertResult,
  listCheckpoints,
  restoreCheckpoint
} from '../checkpoints';
import { EcodeApiError } from '../handler';
import { RevertResultView } from './RevertResult';

export interface ICheckpointApi {
  list: (projectId: string) => Promise<ICheckpoint[]>;
  restore: (projectId: string, checkpointId: number) => Promise<IRevertResult>;
}

const DEFAULT_API: ICheckpointApi = {
  list: listCheckpoints,
  restore: restoreCheckpoint
};

export interface ICheckpointListProps {
  projectId: string;
  confirm: (title: string, body: string) => Promise<boolean>;
  /** Changes when a run ends, so the list is read again. */
  refreshKey?: string;
  api?: ICheckpointApi;
}

export function CheckpointList(props: ICheckpointListProps): JSX.Element {
  const { projectId, confirm, refreshKey } = props;
  const api = props.api ?? DEFAULT_API;
  const [items, setItems] = React.useState<ICheckpoint[] | null>(null);
  const [error, setError] = React.useState('');
  const [result, setResult] = React.useState<IRevertResult | null>(null);
  const [busy, setBusy] = React.useState<number | null>(null);

  const load = React.useCallback(async () => {
    try {
      setItems(await api.list(projectId));
      setError('');
    } catch (err) {
      setError(
        err instanceof EcodeApiError
          ? err.message
          : 'Could not list checkpoints.'
      );
    }
  }, [projectId, api]);

  React.useEffect(() => {
    void load();
  }, [load, refreshKey]);

  const restore = async (checkpoint: ICheckpoint) => {
    const go = await confirm(
      'Restore this checkpoint?',
      `The files go back to how they were: ${checkpointLabel(checkpoint)}. Edits people ` +
        'made since are kept where they do not overlap; you are told about the rest.'
    );
    if (!go) {
      return;
    }
    setBusy(checkpoint.id);
    try {
      setResult(await api.restore(projectId, checkpoint.id));
      setError('');
      await load();
    } catch (err) {
      setError(
        err instanceof EcodeApiError ? err.message : 'The restore failed.'
      );
    } finally {
      setBusy(null);
    }
  };

  return (
    <section className="jp-EcodeCheckpoints" aria-label="Checkpoints">
      <h3 className="jp-EcodeCheckpoints-title">Checkpoints</h3>
      {error && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {error}
        </p>
      )}
      {result && <RevertResultView result={result} />}
      {items !== null && items.length === 0 && (
        <p className="jp-EcodeField-help">
          None yet: the agent records one after every step that changes files.
        </p>
      )}
      <ul className="jp-EcodeCheckpoints-list">
        {(items ?? []).map((checkpoint, index) => (
          <li key={checkpoint.id} data-checkpoint-id={checkpoint.id}>
            <span title={checkpoint.changed.join('\n')}>
              {checkpointLabel(checkpoint)}
            </span>{' '}
            {index > 0 && (
              <button
                type="button"
                className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
                disabled={busy !== null}
                onClick={() => void restore(checkpoint)}
              >
                {busy === checkpoint.id ? 'Restoring…' : 'Restore'}
              </button>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}
