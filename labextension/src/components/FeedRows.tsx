/**
 * How each row of a run's feed looks: a step, the agent's words, a tool call (its output
 * streaming in, the diffs of the files it changed), a notice, the end of the run.
 *
 * Rows are memoized on their (immutable) row object, so a new event re-renders only the row
 * it changed.
 */
import * as React from 'react';

import {
  FeedRow,
  ICallRow,
  IEndRow,
  IFileChange,
  IMessageRow,
  INoticeRow,
  IStepRow
} from '../feedState';
import { formatDuration, runEndAdvice } from '../format';

/** Most diff lines drawn for one file; the rest is summarized. */
export const DIFF_LINES_CAP = 400;

export function DiffView(props: { diff: string; label: string }): JSX.Element {
  const lines = props.diff.split('\n');
  const shown = lines.slice(0, DIFF_LINES_CAP);
  return (
    <pre className="jp-EcodeDiff" aria-label={props.label} tabIndex={0}>
      {shown.map((line, i) => {
        let cls = 'jp-EcodeDiff-line';
        if (line.startsWith('+++') || line.startsWith('---')) {
          cls += ' jp-EcodeDiff-file';
        } else if (line.startsWith('@@')) {
          cls += ' jp-EcodeDiff-hunk';
        } else if (line.startsWith('+')) {
          cls += ' jp-EcodeDiff-add';
        } else if (line.startsWith('-')) {
          cls += ' jp-EcodeDiff-del';
        }
        return (
          <span key={i} className={cls}>
            {line}
            {'\n'}
          </span>
        );
      })}
      {lines.length > shown.length && (
        <span className="jp-EcodeDiff-more">
          … {lines.length - shown.length} more lines
        </span>
      )}
    </pre>
  );
}

const STATUS_TEXT: Record<ICallRow['status'], string> = {
  running: 'running',
  ok: 'done',
  error: 'failed'
};

const STATUS_MARK: Record<ICallRow['status'], string> = {
  running: '…',
  ok: '✓',
  error: '✗'
};

export interface IRowProps {
  /** Explicit expand choices by key; a missing key uses the row's default. */
  expanded: ReadonlyMap<string, boolean>;
  onToggle: (key: string, open: boolean) => void;
}

/** Whether a call's body shows: the user's choice, else open while it streams or if it failed. */
export function callOpen(
  row: ICallRow,
  expanded: ReadonlyMap<string, boolean>
): boolean {
  const choice = expanded.get(row.key);
  if (choice !== undefined) {
    return choice;
  }
  return (
    (row.status === 'running' && row.output.length > 0) ||
    row.status === 'error'
  );
}

function FileChip(props: {
  change: IFileChange;
  open: boolean;
  onToggle: () => void;
}): JSX.Element {
  const { change } = props;
  return (
    <button
      type="button"
      className={`jp-EcodeFileChip jp-mod-${change.action}`}
      aria-expanded={props.open}
      onClick={props.onToggle}
      title={`${change.action} ${change.path}: show the diff`}
    >
      <span className="jp-EcodeFileChip-path">{change.path}</span>
      <span
        className="jp-EcodeFileChip-add"
        aria-label={`${change.added} lines added`}
      >
        +{change.added}
      </span>
      <span
        className="jp-EcodeFileChip-del"
        aria-label={`${change.removed} lines removed`}
      >
        −{change.removed}
      </span>
    </button>
  );
}

function CallRowViewBody(props: {
  row: ICallRow;
  open: boolean;
  openFiles: ReadonlySet<string>;
  onToggle: IRowProps['onToggle'];
}): JSX.Element {
  const { row, open, openFiles, onToggle } = props;
  const bodyId = `jp-EcodeCall-${row.callId}`;
  const output = row.output || row.result;
  const hasBody = output.length > 0;
  return (
    <div
      className={`jp-EcodeCall jp-mod-${row.status}`}
      data-call-id={row.callId}
      data-tool={row.name}
    >
      <div className="jp-EcodeCall-header">
        <span
          className="jp-EcodeCall-mark"
          role="img"
          aria-label={STATUS_TEXT[row.status]}
        >
          {STATUS_MARK[row.status]}
        </span>
        <span className="jp-EcodeCall-name">{row.name}</span>
        {row.brief && (
          <code className="jp-EcodeCall-brief" title={row.brief}>
            {row.brief}
          </code>
        )}
        <span className="jp-EcodeCall-meta">
          {row.exitCode !== null &&
            row.exitCode !== 0 &&
            `exit ${row.exitCode} `}
          {formatDuration(row.durationS)}
        </span>
        {hasBody && (
          <button
            type="button"
            className="jp-EcodeLinkButton"
            aria-expanded={open}
            aria-controls={bodyId}
            onClick={() => onToggle(row.key, !open)}
          >
            {open ? 'Hide output' : 'Output'}
          </button>
        )}
      </div>
      {row.files.length > 0 && (
        <div className="jp-EcodeCall-files">
          {row.files.map(change => {
            const fileKey = `${row.key}|${change.path}|${change.seq}`;
            return (
              <FileChip
                key={fileKey}
                change={change}
                open={openFiles.has(fileKey)}
                onToggle={() => onToggle(fileKey, !openFiles.has(fileKey))}
              />
            );
          })}
        </div>
      )}
      {row.files.map(change => {
        const fileKey = `${row.key}|${change.path}|${change.seq}`;
        return openFiles.has(fileKey) && change.diff ? (
          <DiffView
            key={fileKey}
            diff={change.diff}
            label={`Diff of ${change.path}`}
          />
        ) : null;
      })}
      {row.image && (
        <img
          className="jp-EcodeCall-screenshot"
          src={row.image}
          alt={`Screenshot taken by ${row.name}`}
        />
      )}
      {hasBody && open && (
        <pre
          id={bodyId}
          className="jp-EcodeCall-output"
          aria-label={`Output of ${row.name}`}
          tabIndex={0}
        >
          {row.outputDropped > 0 && (
            <span className="jp-EcodeCall-dropped">
              … {row.outputDropped.toLocaleString()} earlier characters not
              shown
              {'\n'}
            </span>
          )}
          {output}
        </pre>
      )}
    </div>
  );
}
const CallRowView = React.memo(CallRowViewBody);

function StepRowViewBody(props: { row: IStepRow }): JSX.Element {
  const { row } = props;
  const title =
    row.stepKind === 'verify'
      ? `Checking the project${row.command ? `: ${row.command}` : ''}`
      : `Step ${row.step}`;
  return (
    <h4 className={`jp-EcodeStep jp-mod-${row.stepKind}`} data-step={row.step}>
      {title}
    </h4>
  );
}
const StepRowView = React.memo(StepRowViewBody);

function MessageRowViewBody(props: { row: IMessageRow }): JSX.Element {
  return <p className="jp-EcodeMessageRow">{props.row.text}</p>;
}
const MessageRowView = React.memo(MessageRowViewBody);

function NoticeRowViewBody(props: { row: INoticeRow }): JSX.Element {
  return (
    <p className={`jp-EcodeNotice jp-mod-${props.row.level}`}>
      {props.row.text}
    </p>
  );
}
const NoticeRowView = React.memo(NoticeRowViewBody);

const END_TITLES: Record<string, string> = {
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
  interrupted: 'Interrupted'
};

function EndRowViewBody(props: { row: IEndRow }): JSX.Element {
  const { row } = props;
  const advice = runEndAdvice(row.status, row.reason);
  return (
    <div
      className={`jp-EcodeEnd jp-mod-${row.status}`}
      data-status={row.status}
    >
      <strong className="jp-EcodeEnd-title">
        {END_TITLES[row.status] ?? row.status}
      </strong>
      <span className="jp-EcodeEnd-message"> — {row.message}</span>
      {advice && <p className="jp-EcodeEnd-advice">{advice}</p>}
    </div>
  );
}
const EndRowView = React.memo(EndRowViewBody);

/** Open file diffs (keys `callKey|path|seq`) among the explicit choices. */
export function openFileKeys(
  expanded: ReadonlyMap<string, boolean>
): Set<string> {
  const keys = new Set<string>();
  for (const [key, open] of expanded) {
    if (open && key.includes('|')) {
      keys.add(key);
    }
  }
  return keys;
}

/** Draw one feed row. */
export function FeedRowView(
  props: { row: FeedRow; openFiles: ReadonlySet<string> } & IRowProps
): JSX.Element {
  const { row } = props;
  switch (row.kind) {
    case 'step':
      return <StepRowView row={row} />;
    case 'message':
      return <MessageRowView row={row} />;
    case 'call':
      return (
        <CallRowView
          row={row}
          open={callOpen(row, props.expanded)}
          openFiles={props.openFiles}
          onToggle={props.onToggle}
        />
      );
    case 'notice':
      return <NoticeRowView row={row} />;
    case 'end':
      return <EndRowView row={row} />;
  }
}
