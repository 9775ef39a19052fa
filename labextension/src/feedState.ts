/**
 * The state of one agent run as its progress feed describes it — a pure reducer.
 *
 * `applyEvents(state, events)` folds a batch of feed events (`{seq, run_id, ts, type, data}`,
 * see DESIGN.md "Progress events") into a new state and never mutates its input, so React
 * can compare by identity and a test can replay any sequence. Events at or below `lastSeq`
 * are skipped: a replay after a reconnect (`after=N`) may overlap what was already seen, and
 * each event must count once.
 *
 * The feed is kept as rows ready to draw: a step header, the agent's words, one row per tool
 * call (with its streamed output and the diffs of the files it changed), notices, and the end.
 * Rows that did not change keep their identity, so a virtualized list re-renders only the
 * rows on screen that changed. Text is capped per row (the tail is kept), so a command that
 * prints megabytes does not grow the page without bound.
 */

/** A run's status, as the feed (and `GET runs/{id}`) says it. */
export type RunStatus =
  'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'interrupted';

/** One recorded event of a run. */
export interface IFeedEvent {
  seq: number;
  run_id: string;
  ts: string;
  type: string;
  data: Record<string, unknown>;
}

/** Event types that end a run; nothing follows one. */
export const TERMINAL_STATUS: Readonly<Record<string, RunStatus>> = {
  'run.completed': 'completed',
  'run.failed': 'failed',
  'run.cancelled': 'cancelled',
  'run.interrupted': 'interrupted'
};

export const FINAL_STATUSES: ReadonlySet<string> = new Set(
  Object.values(TERMINAL_STATUS)
);

/** Most characters of streamed output, a message or a diff kept per row (the tail). */
export const TEXT_CAP = 20_000;

export interface IFileChange {
  path: string;
  action: string;
  added: number;
  removed: number;
  diff: string;
  seq: number;
}

/** What a run did to one file, over all its changes. */
export interface IFileStat {
  path: string;
  /** created, modified or deleted (a file created and then edited stays created). */
  action: string;
  added: number;
  removed: number;
  /** The latest diff of the file. */
  diff: string;
  seq: number;
}

export interface IStepRow {
  kind: 'step';
  key: string;
  seq: number;
  step: number;
  stepKind: string;
  command: string | null;
  /** Which plan item this step works on, when the server says so (0-based). */
  planItem: number | null;
  ts: string;
}

export interface IMessageRow {
  kind: 'message';
  key: string;
  seq: number;
  step: number;
  text: string;
}

export interface ICallRow {
  kind: 'call';
  key: string;
  seq: number;
  callId: string;
  step: number;
  name: string;
  /** The one argument that says what the call does (a path, a command, packages). */
  brief: string;
  arguments: Record<string, unknown>;
  status: 'running' | 'ok' | 'error';
  exitCode: number | null;
  durationS: number | null;
  /** What the tool answered (trimmed by the server). */
  result: string;
  /** Streamed command output, its tail when longer than TEXT_CAP. */
  output: string;
  /** Characters of output dropped from the front. */
  outputDropped: number;
  files: readonly IFileChange[];
  /** A screenshot the tool returned (check_app), as a data: URL; '' when none. */
  image: string;
}

export interface INoticeRow {
  kind: 'notice';
  key: string;
  seq: number;
  level: 'info' | 'warning';
  text: string;
}

export interface IEndRow {
  kind: 'end';
  key: string;
  seq: number;
  status: RunStatus;
  message: string;
  reason: string | null;
}

export type FeedRow = IStepRow | IMessageRow | ICallRow | INoticeRow | IEndRow;

export interface IPlan {
  step: number;
  seq: number;
  text: string;
  items: readonly string[];
}

export interface ITestResult {
  command: string;
  passed: boolean;
  exitCode: number | null;
  /** e.g. "17 passed" (pytest's summary line), or passed / failed. */
  summary: string;
  outputTail: string;
  seq: number;
}

/** What a run waits for a person to answer (`approval.requested`). */
export interface IApproval {
  /** The id to answer with (`POST runs/{id}/approvals/{approvalId}`). */
  id: string;
  /** `tool`: a call the project's policy asks about; `plan`: a plan-mode run's plan. */
  kind: string;
  tool: string | null;
  arguments: Record<string, unknown>;
  message: string;
  seq: number;
}

export interface IRunEnd {
  status: RunStatus;
  message: string;
  reason: string | null;
  summary: Record<string, unknown>;
}

export interface IUsageTotals {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

export interface IFeedState {
  readonly runId: string;
  /** The highest seq applied; a reconnect asks for `after=lastSeq`. */
  readonly lastSeq: number;
  /** Events applied (not counting skipped duplicates). */
  readonly eventCount: number;
  readonly status: RunStatus;
  readonly provider: string | null;
  readonly model: string | null;
  /** False when the offline provider (no AI) runs; null while unknown. */
  readonly ai: boolean | null;
  readonly prompt: string | null;
  readonly plan: IPlan | null;
  /** The agent's current step number and its kind (model or verify). */
  readonly step: number;
  readonly stepKind: string | null;
  readonly rows: readonly FeedRow[];
  /** Row key → index in `rows`. */
  readonly index: ReadonlyMap<string, number>;
  /** Files the run changed, in the order first touched. */
  readonly files: readonly IFileStat[];
  readonly usage: IUsageTotals;
  readonly costMicros: number;
  readonly tests: ITestResult | null;
  /** The question the run waits on, or null. */
  readonly approval: IApproval | null;
  readonly end: IRunEnd | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  /** seq of each `step.started` of a model step, in order (for plan progress). */
  readonly modelSteps: readonly { step: number; seq: number }[];
}

const ZERO_USAGE: IUsageTotals = {
  inputTokens: 0,
  outputTokens: 0,
  cacheReadTokens: 0,
  cacheWriteTokens: 0
};

/** The state before any event: what `GET runs/{id}` said, if anything. */
export function initialFeedState(
  runId: string,
  run?: {
    status?: string;
    provider?: string;
    model?: string;
    prompt?: string;
  }
): IFeedState {
  const status = isRunStatus(run?.status) ? run!.status : 'queued';
  return {
    runId,
    lastSeq: 0,
    eventCount: 0,
    status,
    provider: run?.provider ?? null,
    model: run?.model ?? null,
    ai: run?.provider ? run.provider !== 'offline' : null,
    prompt: run?.prompt ?? null,
    plan: null,
    step: 0,
    stepKind: null,
    rows: [],
    index: new Map(),
    files: [],
    usage: ZERO_USAGE,
    costMicros: 0,
    tests: null,
    approval: null,
    end: null,
    startedAt: null,
    finishedAt: null,
    modelSteps: []
  };
}

function isRunStatus(value: unknown): value is RunStatus {
  return (
    value === 'queued' ||
    value === 'running' ||
    value === 'completed' ||
    value === 'failed' ||
    value === 'cancelled' ||
    value === 'interrupted'
  );
}

/** Whether the run has ended (its final event was applied, or the server said so). */
export function isFinished(state: IFeedState): boolean {
  return FINAL_STATUSES.has(state.status);
}

/**
 * Whether the feed is complete: the run's final event has been applied. A run the server
 * reports finished still has its events to replay until then.
 */
export function feedDone(state: IFeedState): boolean {
  return state.end !== null;
}

// -- small readers of untyped event data --------------------------------------------------

function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : fallback;
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

/** Keep the last `cap` characters; returns the text and how many were dropped. */
function tail(text: string, cap = TEXT_CAP): [string, number] {
  return text.length > cap
    ? [text.slice(text.length - cap), text.length - cap]
    : [text, 0];
}

const BRIEF_KEYS = [
  'command',
  'path',
  'packages',
  'query',
  'code',
  'pattern',
  'cell'
];

/** The one argument that says what a tool call does, on one line. */
export function briefArguments(args: Record<string, unknown>): string {
  for (const key of BRIEF_KEYS) {
    const value = args[key];
    if (value === undefined || value === null || value === '') {
      continue;
    }
    const text = Array.isArray(value) ? value.join(' ') : String(value);
    const line = text.trim().split('\n')[0] ?? '';
    return line.length <= 120 ? line : `${line.slice(0, 117)}…`;
  }
  return '';
}

// pytest's summary, e.g. "17 passed in 4.63s" or "2 failed, 5 passed".
const PYTEST_SUMMARY =
  /(\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed)(?:, \d+ \w+)*)(?: in [\d.]+s)?/g;
const TEST_WORDS = [
  'pytest',
  'unittest',
  'npm test',
  'jest',
  'make test',
  'tox'
];

/** "17 passed" from a test run's output, else passed / failed. */
export function testSummary(output: string, passed: boolean): string {
  const found = output.match(PYTEST_SUMMARY);
  return found && found.length
    ? found[found.length - 1].replace(/ in [\d.]+s$/, '')
    : passed
      ? 'passed'
      : 'failed';
}

function looksLikeTests(row: ICallRow): boolean {
  if (row.callId.startsWith('verify_')) {
    return true;
  }
  if (row.name !== 'run_command') {
    return false;
  }
  const command = row.brief.toLowerCase();
  return TEST_WORDS.some(word => command.includes(word));
}

// -- the reducer ---------------------------------------------------------------------------

/** A batch in progress: copies of the containers, made once per batch. */
class Draft {
  constructor(readonly base: IFeedState) {
    this.s = { ...base };
    this.rows = base.rows.slice();
    this.index = new Map(base.index);
    this.files = base.files.slice();
    this.fileIndex = new Map(this.files.map((f, i) => [f.path, i]));
  }

  s: { -readonly [K in keyof IFeedState]: IFeedState[K] };
  rows: FeedRow[];
  index: Map<string, number>;
  files: IFileStat[];
  fileIndex: Map<string, number>;

  push(row: FeedRow): void {
    this.index.set(row.key, this.rows.length);
    this.rows.push(row);
  }

  replace(row: FeedRow): void {
    const at = this.index.get(row.key);
    if (at === undefined) {
      this.push(row);
    } else {
      this.rows[at] = row;
    }
  }

  get<T extends FeedRow>(key: string): T | undefined {
    const at = this.index.get(key);
    return at === undefined ? undefined : (this.rows[at] as T);
  }

  last(): FeedRow | undefined {
    return this.rows[this.rows.length - 1];
  }

  finish(): IFeedState {
    return { ...this.s, rows: this.rows, index: this.index, files: this.files };
  }
}

const callKey = (callId: string) => `call:${callId}`;

/** A PNG or JPEG screenshot from a tool.result event as a data: URL; '' for anything else. */
export function imageUrl(value: unknown): string {
  const image = record(value);
  const mime = str(image.mime_type);
  const data = str(image.data);
  if (
    !['image/png', 'image/jpeg'].includes(mime) ||
    !/^[A-Za-z0-9+/]+=*$/.test(data)
  ) {
    return '';
  }
  return `data:${mime};base64,${data}`;
}

function callRow(
  d: Draft,
  event: IFeedEvent,
  callId: string,
  name = 'tool'
): ICallRow {
  const existing = d.get<ICallRow>(callKey(callId));
  if (existing) {
    return existing;
  }
  // Output or a file change for a call whose tool.call was not seen: still show it.
  return {
    kind: 'call',
    key: callKey(callId),
    seq: event.seq,
    callId,
    step: d.s.step,
    name,
    brief: '',
    arguments: {},
    status: 'running',
    exitCode: null,
    durationS: null,
    result: '',
    output: '',
    outputDropped: 0,
    image: '',
    files: []
  };
}

function noteFile(d: Draft, change: IFileChange): void {
  const at = d.fileIndex.get(change.path);
  if (at === undefined) {
    d.fileIndex.set(change.path, d.files.length);
    d.files.push({ ...change });
    return;
  }
  const old = d.files[at];
  const action =
    change.action === 'deleted' || old.action !== 'created'
      ? change.action
      : old.action;
  d.files[at] = {
    path: change.path,
    action,
    added: old.added + change.added,
    removed: old.removed + change.removed,
    diff: change.diff || old.diff,
    seq: change.seq
  };
}

function applyTests(d: Draft, tests: Record<string, unknown>, seq: number) {
  const passed = tests.passed ?? tests.ok;
  if (typeof passed !== 'boolean') {
    return;
  }
  const outputTail = str(tests.output_tail);
  const note = str(tests.note);
  const old = d.s.tests;
  const found = outputTail.match(PYTEST_SUMMARY);
  // A tail without pytest's summary line keeps the summary the streamed output gave.
  const summary =
    note ||
    (found
      ? testSummary(outputTail, passed)
      : old && old.passed === passed
        ? old.summary
        : testSummary('', passed));
  d.s.tests = {
    command: str(tests.command, old?.command ?? ''),
    passed,
    exitCode: num(tests.exit_code),
    summary,
    outputTail: tail(outputTail, 4000)[0],
    seq: d.s.tests && d.s.tests.seq > seq ? d.s.tests.seq : seq
  };
}

function apply(d: Draft, event: IFeedEvent): void {
  const data = record(event.data);
  const s = d.s;
  switch (event.type) {
    case 'run.started': {
      s.status = 'running';
      s.startedAt = event.ts || s.startedAt;
      s.provider = str(data.provider) || s.provider;
      s.model = str(data.model) || s.model;
      s.prompt = str(data.prompt) || s.prompt;
      if (s.provider) {
        s.ai = s.provider !== 'offline';
      }
      break;
    }
    case 'plan': {
      const steps = Array.isArray(data.steps)
        ? data.steps.map(item =>
            typeof item === 'string' ? item : str(record(item).title)
          )
        : [];
      const text = str(data.text);
      s.plan = {
        step: num(data.step) ?? s.step,
        seq: event.seq,
        text,
        items: steps.filter(Boolean)
      };
      if (typeof data.ai === 'boolean') {
        s.ai = data.ai;
      }
      s.provider = str(data.provider) || s.provider;
      s.model = str(data.model) || s.model;
      break;
    }
    case 'step.started': {
      s.status = 'running';
      const step = num(data.step) ?? s.step + 1;
      const stepKind = str(data.kind, 'model');
      s.step = step;
      s.stepKind = stepKind;
      if (stepKind === 'model') {
        s.modelSteps = [...s.modelSteps, { step, seq: event.seq }];
      }
      d.push({
        kind: 'step',
        key: `step:${event.seq}`,
        seq: event.seq,
        step,
        stepKind,
        command: str(data.command) || null,
        planItem: num(data.plan_item),
        ts: event.ts
      });
      break;
    }
    case 'message.delta': {
      const text = str(data.text) || str(data.delta);
      if (!text) {
        break;
      }
      const step = num(data.step) ?? s.step;
      const last = d.last();
      if (last && last.kind === 'message' && last.step === step) {
        d.replace({ ...last, text: tail(last.text + text)[0] });
      } else {
        d.push({
          kind: 'message',
          key: `message:${event.seq}`,
          seq: event.seq,
          step,
          text: tail(text)[0]
        });
      }
      break;
    }
    case 'tool.call': {
      const callId = str(data.call_id) || `seq${event.seq}`;
      const args = record(data.arguments);
      const old = d.get<ICallRow>(callKey(callId));
      d.replace({
        ...callRow(d, event, callId),
        seq: old?.seq ?? event.seq,
        step: num(data.step) ?? s.step,
        name: str(data.name, 'tool'),
        brief: briefArguments(args),
        arguments: args,
        status: 'running'
      });
      break;
    }
    case 'tool.result': {
      const callId = str(data.call_id) || `seq${event.seq}`;
      const row = callRow(d, event, callId, str(data.name, 'tool'));
      const ok = data.ok !== false;
      const updated: ICallRow = {
        ...row,
        status: ok ? 'ok' : 'error',
        exitCode: num(data.exit_code),
        durationS: num(data.duration_s),
        result: tail(str(data.output))[0],
        image: imageUrl(data.image)
      };
      d.replace(updated);
      if (looksLikeTests(updated)) {
        const passed =
          ok && (updated.exitCode === null || updated.exitCode === 0);
        const output = updated.output || updated.result;
        s.tests = {
          command: str(updated.arguments.command) || updated.brief,
          passed,
          exitCode: updated.exitCode,
          summary: testSummary(output, passed),
          outputTail: tail(output, 4000)[0],
          seq: event.seq
        };
      }
      break;
    }
    case 'command.output': {
      const text = str(data.text) || str(data.output);
      if (!text) {
        break;
      }
      const callId = str(data.call_id) || 'output';
      const row = callRow(d, event, callId, 'run_command');
      const [output, dropped] = tail(row.output + text);
      d.replace({
        ...row,
        output,
        outputDropped: row.outputDropped + dropped
      });
      break;
    }
    case 'file.changed': {
      const path = str(data.path);
      if (!path) {
        break;
      }
      const change: IFileChange = {
        path,
        action: str(data.action, 'modified'),
        added: num(data.added) ?? 0,
        removed: num(data.removed) ?? 0,
        diff: tail(str(data.diff))[0],
        seq: event.seq
      };
      const callId = str(data.call_id);
      if (callId) {
        const row = callRow(d, event, callId, 'write_file');
        d.replace({ ...row, files: [...row.files, change] });
      }
      noteFile(d, change);
      break;
    }
    case 'usage': {
      // The run's running total, when the event carries it, is the truth; else add up.
      const total = record(data.total ?? data.totals);
      const hasTotal = Object.keys(total).length > 0;
      const source = hasTotal ? total : data;
      const add = (key: string, old: number) => {
        const value = num(source[key]);
        return value === null ? old : hasTotal ? value : old + value;
      };
      s.usage = {
        inputTokens: add('input_tokens', s.usage.inputTokens),
        outputTokens: add('output_tokens', s.usage.outputTokens),
        cacheReadTokens: add('cache_read_tokens', s.usage.cacheReadTokens),
        cacheWriteTokens: add('cache_write_tokens', s.usage.cacheWriteTokens)
      };
      s.costMicros = add('cost_micros', s.costMicros);
      break;
    }
    case 'approval.requested': {
      const text =
        str(data.message) ||
        str(data.reason) ||
        str(data.tool) ||
        'The agent is waiting for an approval.';
      const kind = str(data.kind) || 'tool';
      s.approval = {
        id: str(data.approval_id),
        kind,
        tool: str(data.tool) || null,
        arguments: record(data.arguments),
        message: text,
        seq: event.seq
      };
      d.push({
        kind: 'notice',
        key: `notice:${event.seq}`,
        seq: event.seq,
        level: 'warning',
        text:
          kind === 'plan'
            ? 'Waiting for approval of the plan'
            : `Waiting for approval: ${text}`
      });
      break;
    }
    case 'approval.resolved': {
      if (!s.approval || s.approval.id === str(data.approval_id)) {
        s.approval = null;
      }
      const decision = str(data.decision);
      const by = str(data.by);
      const words: Record<string, string> = {
        allow: 'Approved',
        always: 'Always allowed',
        deny: 'Denied',
        expired: 'Nobody answered in time'
      };
      d.push({
        kind: 'notice',
        key: `notice:${event.seq}`,
        seq: event.seq,
        level:
          decision === 'deny' || decision === 'expired' ? 'warning' : 'info',
        text: `${words[decision] ?? decision}${by ? ` by ${by}` : ''}`
      });
      break;
    }
    default: {
      const status = TERMINAL_STATUS[event.type];
      if (status === undefined) {
        break; // a type this frontend does not know yet: counted, not shown
      }
      const summary = record(data.summary);
      const message =
        str(data.message) || str(data.error) || str(data.reason) || status;
      const reason = str(data.reason) || null;
      s.status = status;
      s.finishedAt = event.ts || s.finishedAt;
      s.approval = null;
      s.end = { status, message, reason, summary };
      const tests = record(summary.tests);
      if (Object.keys(tests).length) {
        applyTests(d, tests, event.seq);
      }
      const files = Array.isArray(summary.files) ? summary.files : [];
      for (const path of files) {
        if (typeof path === 'string' && !d.fileIndex.has(path)) {
          noteFile(d, {
            path,
            action: 'modified',
            added: 0,
            removed: 0,
            diff: '',
            seq: event.seq
          });
        }
      }
      const cost = num(summary.cost_micros);
      if (cost !== null) {
        s.costMicros = cost;
      }
      // Calls the run was in when it ended will not report back.
      if (status !== 'completed') {
        d.rows.forEach((row, i) => {
          if (row.kind === 'call' && row.status === 'running') {
            d.rows[i] = { ...row, status: 'error' };
          }
        });
      }
      d.push({
        kind: 'end',
        key: `end:${event.seq}`,
        seq: event.seq,
        status,
        message,
        reason
      });
    }
  }
}

/**
 * Fold a batch of events into the state. Returns `state` itself when nothing applied (all
 * duplicates), so a caller can skip a re-render.
 */
export function applyEvents(
  state: IFeedState,
  events: readonly IFeedEvent[]
): IFeedState {
  let draft: Draft | null = null;
  let lastSeq = state.lastSeq;
  let count = state.eventCount;
  // Replays arrive in order, but a live event may race a replay batch: sort a copy.
  const ordered = isSorted(events)
    ? events
    : [...events].sort((a, b) => a.seq - b.seq);
  for (const event of ordered) {
    if (
      !(event.seq > lastSeq) ||
      (event.run_id && event.run_id !== state.runId)
    ) {
      continue;
    }
    draft = draft ?? new Draft(state);
    apply(draft, event);
    lastSeq = event.seq;
    count += 1;
  }
  if (draft === null) {
    return state;
  }
  draft.s.lastSeq = lastSeq;
  draft.s.eventCount = count;
  return draft.finish();
}

function isSorted(events: readonly IFeedEvent[]): boolean {
  for (let i = 1; i < events.length; i++) {
    if (events[i].seq < events[i - 1].seq) {
      return false;
    }
  }
  return true;
}

/**
 * Take the server's word on a run (`GET runs/{id}`, read after a REST replay). A run that is
 * final there but whose final event was not replayed (which the server should never allow)
 * ends here too, so a client does not wait for an event that will not come.
 */
export function withRunStatus(
  state: IFeedState,
  run: {
    status?: string;
    reason?: string | null;
    cost_micros?: number;
    summary?: Record<string, unknown>;
  }
): IFeedState {
  const status = isRunStatus(run.status) ? run.status : state.status;
  const cost =
    typeof run.cost_micros === 'number' ? run.cost_micros : state.costMicros;
  const end =
    state.end === null && FINAL_STATUSES.has(status)
      ? {
          status,
          message: run.reason || status,
          reason: run.reason ?? null,
          summary: run.summary ?? {}
        }
      : state.end;
  if (
    status === state.status &&
    cost === state.costMicros &&
    end === state.end
  ) {
    return state;
  }
  return { ...state, status, costMicros: cost, end };
}

// -- selectors -----------------------------------------------------------------------------

export type PlanItemStatus = 'done' | 'active' | 'pending' | 'stopped';

export interface IPlanItem {
  text: string;
  status: PlanItemStatus;
  /** Tests passed after this item was done. */
  tested: boolean;
}

/**
 * The plan as a checklist.
 *
 * The feed does not say which step carries out which plan item, so progress is read from
 * the agent's turns: each model turn after the one that made the plan moves to the next item
 * (a `plan_item` index on `step.started`, when a server sends one, wins). A completed run
 * has every item done; a run that stopped marks the item it was on. An item is "tested" when
 * the project's tests passed after it was done.
 */
export function planChecklist(state: IFeedState): IPlanItem[] {
  const plan = state.plan;
  if (!plan || plan.items.length === 0) {
    return [];
  }
  const n = plan.items.length;
  const later = state.modelSteps.filter(s => s.step > plan.step);
  let active = Math.min(Math.max(later.length - 1, 0), n - 1);
  const explicit = lastPlanItem(state);
  if (explicit !== null) {
    active = Math.min(Math.max(explicit, 0), n - 1);
  }
  const doneSeq = (i: number): number => {
    // The turn after item i's turn started once item i was done.
    const next = later[i + 1];
    return next ? next.seq : state.lastSeq;
  };
  const tests = state.tests;
  return plan.items.map((text, i) => {
    let status: PlanItemStatus;
    if (state.status === 'completed') {
      status = 'done';
    } else if (i < active) {
      status = 'done';
    } else if (i === active) {
      status = isFinished(state) ? 'stopped' : 'active';
    } else {
      status = 'pending';
    }
    const tested =
      status === 'done' && !!tests && tests.passed && tests.seq >= doneSeq(i);
    return { text, status, tested };
  });
}

function lastPlanItem(state: IFeedState): number | null {
  for (let i = state.rows.length - 1; i >= 0; i--) {
    const row = state.rows[i];
    if (row.kind === 'step' && row.planItem !== null) {
      return row.planItem;
    }
  }
  return null;
}

/** The rows of a run's feed that are tool calls, in order. */
export function callRows(state: IFeedState): ICallRow[] {
  return state.rows.filter((row): row is ICallRow => row.kind === 'call');
}
