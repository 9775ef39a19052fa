/**
 * The agent's plan as a checklist: done, in progress, not started, stopped — and, in the
 * Features tab, whether the project's tests passed after an item was done.
 */
import * as React from 'react';

import { IPlanItem, PlanItemStatus } from '../feedState';

const MARKS: Record<PlanItemStatus, string> = {
  done: '☑',
  active: '◐',
  pending: '☐',
  stopped: '☒'
};

const SAY: Record<PlanItemStatus, string> = {
  done: 'done',
  active: 'in progress',
  pending: 'not started',
  stopped: 'stopped here'
};

export function PlanChecklist(props: {
  items: readonly IPlanItem[];
  label?: string;
  showTested?: boolean;
}): JSX.Element | null {
  const { items, showTested } = props;
  if (items.length === 0) {
    return null;
  }
  const done = items.filter(item => item.status === 'done').length;
  return (
    <ol
      className="jp-EcodePlan"
      aria-label={`${props.label ?? 'Plan'}: ${done} of ${items.length} done`}
    >
      {items.map((item, i) => (
        <li key={i} className={`jp-EcodePlan-item jp-mod-${item.status}`}>
          <span className="jp-EcodePlan-mark" aria-hidden="true">
            {MARKS[item.status]}
          </span>
          <span className="jp-EcodePlan-text">{item.text}</span>
          <span className="jp-EcodeVisuallyHidden"> ({SAY[item.status]})</span>
          {showTested && item.status === 'done' && (
            <span
              className={`jp-EcodeBadge ${item.tested ? 'jp-mod-ok' : 'jp-mod-muted'}`}
            >
              {item.tested ? 'tested' : 'not tested yet'}
            </span>
          )}
        </li>
      ))}
    </ol>
  );
}
