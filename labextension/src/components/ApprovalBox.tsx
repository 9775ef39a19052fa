/**
 * What a run waits for a person to answer: the exact tool call (its arguments) or the plan,
 * with Approve / Deny / Always allow. "Always allow" adds an allow rule for this call to the
 * project's policy, so it is not offered for a plan.
 */
import * as React from 'react';

import { ApprovalDecision } from '../api';
import { IApproval } from '../feedState';

export interface IApprovalBoxProps {
  approval: IApproval;
  /** Sends the answer; the box stays until the feed says it was resolved. */
  onDecide: (approvalId: string, decision: ApprovalDecision) => Promise<void>;
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
  const decide = async (decision: ApprovalDecision) => {
    setSending(decision);
    try {
      await onDecide(approval.id, decision);
    } finally {
      setSending(null);
    }
  };
  const plan = isPlan ? String(approval.arguments.plan ?? '') : '';
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
      <pre className="jp-EcodeApproval-call" tabIndex={0}>
        {isPlan ? plan : formatArguments(approval.arguments)}
      </pre>
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
