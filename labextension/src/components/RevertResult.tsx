/**
 * What an undo or a restore did: a sentence, and for each conflict the reason with the merge
 * (conflict markers) to finish by hand, so a person sees nothing was lost.
 */
import * as React from 'react';

import { IRevertResult, revertSummary } from '../checkpoints';

export function RevertResultView(props: {
  result: IRevertResult;
}): JSX.Element {
  const { result } = props;
  return (
    <div className="jp-EcodeRevertResult" role="status">
      <p>{revertSummary(result)}</p>
      {result.conflicts.map(conflict => (
        <details
          key={conflict.path}
          className="jp-EcodeRevertResult-conflict"
          data-path={conflict.path}
        >
          <summary>
            <code>{conflict.path}</code>: {conflict.reason}
          </summary>
          {(conflict.merge ?? conflict.wanted) && (
            <pre tabIndex={0}>{conflict.merge ?? conflict.wanted}</pre>
          )}
        </details>
      ))}
    </div>
  );
}
