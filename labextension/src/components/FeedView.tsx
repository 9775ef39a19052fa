/**
 * The live feed of the open project's latest run: status and cost so far, the plan as a
 * checklist, the steps with their tool calls, diffs and streaming output (a windowed list),
 * and a box to ask for a change.
 */
import * as React from 'react';

import { FeedRow, IFeedState, isFinished, planChecklist } from '../feedState';
import { formatCredits, formatTokens, OFFLINE_NOTICE } from '../format';
import { RunMode } from '../api';
import { ProjectSession } from '../session';
import { ApprovalBox } from './ApprovalBox';
import { FeedRowView, openFileKeys } from './FeedRows';
import { useSignalTick, useSignalValue } from './hooks';
import { PlanChecklist } from './Plan';
import { UndoRun } from './UndoRun';
import { VirtualList } from './VirtualList';

const STATUS_WORDS: Record<string, string> = {
  queued: 'Queued',
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
  interrupted: 'Interrupted'
};

const rowKey = (row: FeedRow) => row.key;

/** What a screen reader hears as the run moves: the step and the ending, not every event. */
export function announcement(state: IFeedState | null): string {
  if (!state) {
    return '';
  }
  if (isFinished(state)) {
    return `Run ${STATUS_WORDS[state.status].toLowerCase()}.`;
  }
  if (state.stepKind === 'verify') {
    return 'Checking the project.';
  }
  return state.step ? `Step ${state.step}.` : 'Starting.';
}

export interface IFeedBodyProps {
  state: IFeedState;
  /** Pixels of the viewport before layout (tests, first render). */
  fallbackViewport?: number;
}

/** The rows of a run as a windowed list (used alone by tests and the benchmark). */
export function FeedList(props: IFeedBodyProps): JSX.Element {
  const { state } = props;
  const [expanded, setExpanded] = React.useState<ReadonlyMap<string, boolean>>(
    () => new Map()
  );
  const onToggle = React.useCallback((key: string, open: boolean) => {
    setExpanded(old => new Map(old).set(key, open));
  }, []);
  const openFiles = React.useMemo(() => openFileKeys(expanded), [expanded]);
  const renderRow = React.useCallback(
    (row: FeedRow) => (
      <FeedRowView
        row={row}
        expanded={expanded}
        openFiles={openFiles}
        onToggle={onToggle}
      />
    ),
    [expanded, openFiles, onToggle]
  );
  if (state.rows.length === 0) {
    return (
      <p className="jp-EcodeFeed-empty" data-last-seq={state.lastSeq}>
        {state.status === 'queued'
          ? 'Waiting for the agent to start…'
          : 'No events yet.'}
      </p>
    );
  }
  return (
    <VirtualList
      items={state.rows}
      itemKey={rowKey}
      renderItem={renderRow}
      estimateHeight={36}
      className="jp-EcodeFeed-list"
      label="Agent activity"
      busy={!isFinished(state)}
      fallbackViewport={props.fallbackViewport}
      attributes={{
        'data-last-seq': state.lastSeq,
        'data-status': state.status
      }}
    />
  );
}

export interface IFeedViewProps {
  session: ProjectSession;
  /** The model for follow-up runs ('' = the server's default). */
  model: string;
  /** Ask the user before a run that may cost credits; resolves to go / no go. */
  confirmRun: (model: string) => Promise<boolean>;
  onOpenView: () => void;
  idPrefix: string;
  /** Ask before an undo; without it the feed offers no "Undo this run". */
  confirm?: (title: string, body: string) => Promise<boolean>;
}

export function FeedView(props: IFeedViewProps): JSX.Element {
  const { session, idPrefix } = props;
  useSignalTick(session.changed);
  const state = useSignalValue(session.feedChanged, session.feedState, {
    sync: true
  });
  const [prompt, setPrompt] = React.useState('');
  const [sending, setSending] = React.useState(false);
  // build: make the change; plan: the plan waits for approval; ask: only look and answer
  const [mode, setMode] = React.useState<RunMode>('build');
  const project = session.project;
  const feed = session.feed;
  const running = state !== null && !isFinished(state);
  const plan = state ? planChecklist(state) : [];

  const send = async (event: React.FormEvent) => {
    event.preventDefault();
    const text = prompt.trim();
    if (!text || sending || running) {
      return;
    }
    if (!(await props.confirmRun(props.model))) {
      return;
    }
    setSending(true);
    const run = await session.startRun(text, props.model || undefined, mode);
    setSending(false);
    if (run) {
      setPrompt('');
    }
  };

  const connection = feed?.connection;
  return (
    <section
      className="jp-EcodeFeed"
      aria-labelledby={`${idPrefix}-feed-heading`}
      data-project-id={project.id}
      data-run-id={state?.runId ?? ''}
    >
      <header className="jp-EcodeFeed-header">
        <h3 id={`${idPrefix}-feed-heading`} className="jp-EcodeFeed-title">
          {project.name}
        </h3>
        <button
          type="button"
          className="jp-EcodeLinkButton"
          onClick={props.onOpenView}
          title="Open the project's Files, Preview, Features and Deploy tabs"
        >
          Open project
        </button>
      </header>
      {state && (
        <div className="jp-EcodeFeed-status">
          <span
            className={`jp-EcodeBadge jp-EcodeRunStatus jp-mod-${state.status}`}
            data-status={state.status}
          >
            {STATUS_WORDS[state.status] ?? state.status}
          </span>
          <span
            className="jp-EcodeFeed-cost"
            title="What this run has cost so far"
          >
            Cost so far: {formatCredits(state.costMicros)}
            {state.usage.inputTokens + state.usage.outputTokens > 0 &&
              ` · ${formatTokens(state.usage.inputTokens + state.usage.cacheReadTokens)} in / ${formatTokens(state.usage.outputTokens)} out`}
          </span>
          {running && (
            <button
              type="button"
              className="jp-mod-styled jp-mod-warn jp-EcodeButton jp-EcodeButton-small"
              onClick={() => void session.cancelRun()}
            >
              Cancel run
            </button>
          )}
          {state.status !== 'completed' && isFinished(state) && (
            <button
              type="button"
              className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
              onClick={() => void session.continueRun()}
            >
              Continue run
            </button>
          )}
          {isFinished(state) && state.runId && props.confirm && (
            <UndoRun runId={state.runId} confirm={props.confirm} />
          )}
        </div>
      )}
      <p className="jp-EcodeVisuallyHidden" role="status" aria-live="polite">
        {announcement(state)}
      </p>
      {state?.ai === false && (
        <p className="jp-EcodeNotice jp-mod-info jp-EcodeFeed-offline">
          {OFFLINE_NOTICE}
        </p>
      )}
      {connection === 'reconnecting' && (
        <p className="jp-EcodeNotice jp-mod-warning">
          Connection lost — reconnecting…
        </p>
      )}
      {connection === 'error' && feed?.error && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {feed.error}
        </p>
      )}
      {session.errors.run && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {session.errors.run}
        </p>
      )}
      {running && state?.approval && (
        <ApprovalBox
          approval={state.approval}
          onDecide={(id, decision, plan) =>
            session.decideApproval(id, decision, plan)
          }
        />
      )}
      {plan.length > 0 && (
        <details className="jp-EcodeFeed-plan" open>
          <summary>Plan</summary>
          <PlanChecklist items={plan} />
        </details>
      )}
      {state ? (
        <FeedList state={state} />
      ) : (
        <p className="jp-EcodeFeed-empty">
          {session.loaded
            ? 'No runs yet. Ask for something below.'
            : 'Loading…'}
        </p>
      )}
      <form className="jp-EcodeFeed-ask" onSubmit={send}>
        <label htmlFor={`${idPrefix}-ask`} className="jp-EcodeVisuallyHidden">
          Ask the agent for a change to {project.name}
        </label>
        <textarea
          id={`${idPrefix}-ask`}
          className="jp-mod-styled jp-EcodeField-input"
          rows={2}
          placeholder={
            running ? 'Wait for this run to finish…' : 'Ask for a change…'
          }
          value={prompt}
          disabled={sending || running}
          onChange={event => setPrompt(event.target.value)}
          onKeyDown={event => {
            if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
              event.preventDefault();
              event.currentTarget.form?.requestSubmit();
            }
          }}
        />
        <label htmlFor={`${idPrefix}-mode`} className="jp-EcodeVisuallyHidden">
          How the agent should go about it
        </label>
        <select
          id={`${idPrefix}-mode`}
          className="jp-mod-styled jp-EcodeFeed-mode"
          value={mode}
          disabled={sending || running}
          onChange={event => setMode(event.target.value as RunMode)}
        >
          <option value="build">Build</option>
          <option value="plan">Plan first</option>
          <option value="ask">Only answer</option>
        </select>
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept jp-EcodeButton jp-EcodeButton-small"
          disabled={sending || running || !prompt.trim()}
        >
          Send
        </button>
      </form>
    </section>
  );
}
