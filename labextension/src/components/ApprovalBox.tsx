/**
 * What a run waits for a person to answer: the exact tool call (its arguments) or the plan,
 * with Approve / Deny / Always allow. "Always allow" adds an allow rule for this call to the
 * project's policy, so it is not offered for a plan; a plan can be edited before it is
 * approved, and the run then carries out the edited one.
 */
import * as React from 'react';

import { ApprovalDecision } from '../api';
import { IApproval } from '../feedState';

export interface IApprovalBoxProps {
  approval: IApproval;
  /**
   * Sends the answer (with the plan as edited, when it was); the box stays until the feed
   * says it was resolved.
   */
  onDecide: (
    approvalId: string,
    decision: ApprovalDecision,
    plan?: string
  ) => Promise<void>;
}

/** The call's arguments as a person reads them: strings as they are, the rest as JSON. */
export function formatArguments(args: Record<string, unknown>): string {
  return Object.entries(args)
    .map(([key, value]) => {
      const text =
        typeof value === 'string' ? value : JSON.stringify(value, null, 1);
      return `${key}: ${text}`;
    })
    .join('\n');
}

export function ApprovalBox(props: IApprovalBoxProps): JSX.Element {
  const { approval, onDecide } = props;
  const [sending, setSending] = React.useState<ApprovalDecision | null>(null);
  const isPlan = approval.kind === 'plan';
  const plan = isPlan ? String(approval.arguments.plan ?? '') : '';
  const [edited, setEdited] = React.useState(plan);
  const decide = async (decision: ApprovalDecision) => {
    setSending(decision);
    // Only an approval carries an edit, and only when there is one.
    const changed =
      isPlan && decision !== 'deny' && edited.trim() && edited !== plan
        ? edited
        : undefined;
    try {
      await onDecide(approval.id, decision, changed);
    } finally {
      setSending(null);
    }
  };
  return (
    <section
      className="jp-EcodeApproval"
      role="alert"
      aria-label="The agent is waiting for your approval"
      data-approval-id={approval.id}
      data-kind={approval.kind}
    >
      <p className="jp-EcodeApproval-title">
        {isPlan ? (
          <strong>Approve the plan before anything is changed?</strong>
        ) : (
          <>
            <strong>The agent wants to run </strong>
            <code>{approval.tool}</code>
          </>
        )}
      </p>
      {isPlan ? (
        <textarea
          className="jp-mod-styled jp-EcodeApproval-call jp-EcodeApproval-plan"
          aria-label="The plan (edit it before approving, if you like)"
          rows={Math.min(12, Math.max(4, plan.split('\n').length + 1))}
          value={edited}
          disabled={sending !== null}
          onChange={event => setEdited(event.target.value)}
        />
      ) : (
        <pre className="jp-EcodeApproval-call" tabIndex={0}>
          {formatArguments(approval.arguments)}
        </pre>
      )}
      <div className="jp-EcodeApproval-actions">
        <button
          type="button"
          className="jp-mod-styled jp-mod-accept jp-EcodeButton jp-EcodeButton-small"
          disabled={sending !== null}
          onClick={() => void decide('allow')}
        >
          Approve
        </button>
        <button
          type="button"
          className="jp-mod-styled jp-mod-warn jp-EcodeButton jp-EcodeButton-small"
          disabled={sending !== null}
          onClick={() => void decide('deny')}
        >
          Deny
        </button>
        {!isPlan && (
          <button
            type="button"
            className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
            disabled={sending !== null}
            title="Approve, and allow this exact call in this project from now on"
            onClick={() => void decide('always')}
          >
            Always allow
          </button>
        )}
      </div>
    </section>
  );
}
