/**
 * "Undo this run" on a finished run: puts back the files the run changed, keeping (merging)
 * what people edited since, and shows what it did.
 */
import * as React from 'react';

import { EcodeApiError } from '../handler';
import { IRevertResult, undoRun } from '../checkpoints';
import { RevertResultView } from './RevertResult';

export interface IUndoRunProps {
  runId: string;
  /** Ask before reverting; resolves to go / no go. */
  confirm: (title: string, body: string) => Promise<boolean>;
  /** The REST call (replaced in tests). */
  undo?: (runId: string) => Promise<IRevertResult>;
}

export function UndoRun(props: IUndoRunProps): JSX.Element {
  const { runId, confirm } = props;
  const undo = props.undo ?? undoRun;
  const [busy, setBusy] = React.useState(false);
  const [result, setResult] = React.useState<IRevertResult | null>(null);
  const [error, setError] = React.useState('');
  React.useEffect(() => {
    // Another run followed: what the last one's undo did no longer applies.
    setResult(null);
    setError('');
  }, [runId]);
  const onClick = async () => {
    const go = await confirm(
      'Undo this run?',
      'The files this run changed go back to how they were before it. Edits people made ' +
        'since are kept; where they overlap the run’s changes, the file is left as it is ' +
        'and you are told.'
    );
    if (!go) {
      return;
    }
    setBusy(true);
    setError('');
    try {
      setResult(await undo(runId));
    } catch (err) {
      setError(err instanceof EcodeApiError ? err.message : 'The undo failed.');
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="jp-EcodeUndoRun" data-run-id={runId}>
      <button
        type="button"
        className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
        disabled={busy}
        onClick={() => void onClick()}
        title="Put back the files this run changed, keeping edits people made since"
      >
        {busy ? 'Undoing…' : 'Undo this run'}
      </button>
      {error && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {error}
        </p>
      )}
      {result && <RevertResultView result={result} />}
    </div>
  );
}
