/**
 * One open project: its details, its latest run with a live feed, and its previews and
 * releases. The sidebar's feed and the four-tab project view both read from here, so a
 * project has one feed socket however many views show it.
 */
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import * as api from './api';
import { FeedClient } from './feed';
import {
  applyEvents,
  FINAL_STATUSES,
  feedDone,
  IFeedEvent,
  IFeedState,
  initialFeedState,
  withRunStatus
} from './feedState';
import { adviceFor } from './format';
import { requestAPI, websocketURL } from './handler';

/** Most events one REST replay returns (the server's batch). */
const REPLAY_BATCH = 500;

export type RunFeedClient = FeedClient<IFeedEvent, IFeedState>;

/** The live feed of one run: replays from the start, then follows it. */
export function openRunFeed(run: api.IRun): RunFeedClient {
  const endpoint = `runs/${encodeURIComponent(run.id)}/events`;
  const client = new FeedClient<IFeedEvent, IFeedState>({
    url: after => websocketURL(endpoint, { after }),
    reduce: applyEvents,
    seqOf: state => state.lastSeq,
    isDone: feedDone,
    initial: initialFeedState(run.id, run),
    catchUp: async state => {
      let next = state;
      for (;;) {
        const reply = await requestAPI<{ events: IFeedEvent[] }>(
          `${endpoint}?after=${next.lastSeq}`
        );
        next = applyEvents(next, reply.events);
        if (reply.events.length < REPLAY_BATCH) {
          break;
        }
      }
      if (!feedDone(next)) {
        next = withRunStatus(next, await api.getRun(run.id));
      }
      return next;
    }
  });
  client.start();
  return client;
}

/** The path of a project's workspace in Lab's file browser. */
export function workspacePath(
  project: api.IProject,
  folder = 'ecode-projects'
): string {
  if (typeof project.workspace_path === 'string') {
    return project.workspace_path;
  }
  return folder ? `${folder}/${project.id}` : project.id;
}

/** What failed last in one area of the view, said as what to do next. */
export interface ISessionErrors {
  project?: string;
  run?: string;
  deploy?: string;
}

export class ProjectSession implements IDisposable {
  constructor(project: api.IProject) {
    this._project = project;
  }

  /** Anything the views read changed (not the feed itself: see `feedChanged`). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The latest run's feed state changed (at most once per frame). */
  get feedChanged(): ISignal<this, IFeedState | null> {
    return this._feedChanged;
  }

  /** The latest run ended (its final event arrived). */
  get runFinished(): ISignal<this, IFeedState> {
    return this._runFinished;
  }

  get id(): string {
    return this._project.id;
  }

  get project(): api.IProject {
    return this._project;
  }

  get runs(): readonly api.IRun[] {
    return this._runs;
  }

  get feed(): RunFeedClient | null {
    return this._feed;
  }

  get feedState(): IFeedState | null {
    return this._feed?.state ?? null;
  }

  get deployments(): readonly api.IDeployment[] {
    return this._deployments;
  }

  get releases(): readonly api.IRelease[] {
    return this._releases;
  }

  /** The running preview, if any. */
  get preview(): api.IDeployment | null {
    return this._deployments.find(d => d.kind === 'preview' && d.live) ?? null;
  }

  /** The live release's deployment, if any. */
  get liveRelease(): api.IDeployment | null {
    return this._deployments.find(d => d.kind === 'release' && d.live) ?? null;
  }

  get exportBundle(): api.IExportBundle | null {
    return this._export;
  }

  get errors(): Readonly<ISessionErrors> {
    return this._errors;
  }

  /** What is in flight, e.g. "preview" or "release", for busy buttons. */
  get busy(): ReadonlySet<string> {
    return this._busy;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  /**
   * Which action the server could not start for want of a command ('preview' or
   * 'release'), so the view can ask for one; null otherwise.
   */
  get commandNeeded(): 'preview' | 'release' | null {
    return this._commandNeeded;
  }

  /**
   * How to run the project instead, once the server refused a preview because it is not a
   * web app (a script, a notebook); null otherwise.
   */
  get howToRun(): api.IHowToRun | null {
    return this._howToRun;
  }

  /** The command the project's app last ran with (a starting point for the user). */
  get lastCommand(): string {
    return this._deployments.find(d => d.command)?.command ?? '';
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Load the project, its runs (following the latest) and its deployments. */
  async load(): Promise<void> {
    await Promise.all([
      this.refreshProject(),
      this.refreshRuns(),
      this.refreshDeploy()
    ]);
    this._loaded = true;
    this._emit();
  }

  async refreshProject(): Promise<void> {
    await this._guard('project', async () => {
      this._project = await api.getProject(this._project.id);
    });
  }

  /** Reload the run list; follow the newest run if it is not the one followed now. */
  async refreshRuns(): Promise<void> {
    await this._guard('run', async () => {
      this._runs = await api.listRuns(this._project.id);
      const latest = this._runs[0];
      if (latest && latest.id !== this._feed?.state.runId) {
        this.follow(latest);
      }
    });
  }

  /** Follow a run's feed (replacing the one followed before). */
  follow(run: api.IRun): void {
    if (this._disposed) {
      return;
    }
    if (!this._runs.some(r => r.id === run.id)) {
      this._runs = [run, ...this._runs];
    }
    this._feed?.dispose();
    const feed = openRunFeed(run);
    this._feed = feed;
    // A run already over when followed is only replayed: nothing new has finished.
    let finished = FINAL_STATUSES.has(run.status);
    feed.changed.connect((_, state) => {
      this._feedChanged.emit(state);
      if (!finished && feedDone(state)) {
        finished = true;
        this._runFinished.emit(state);
        // The run may have started a preview; the list of runs has its new status.
        void this.refreshDeploy();
        void this.refreshRuns();
      }
    });
    feed.connectionChanged.connect(() => this._emit());
    this._feedChanged.emit(feed.state);
    this._emit();
  }

  /** Start a new run on this project with a prompt (mode: build, plan or ask). */
  async startRun(
    prompt: string,
    model?: string,
    mode?: api.RunMode
  ): Promise<api.IRun | null> {
    return this._guard('run', async () => {
      const run = await api.startRun(this._project.id, prompt, model, mode);
      this.follow(run);
      return run;
    });
  }

  async cancelRun(): Promise<void> {
    const runId = this._feed?.state.runId;
    if (runId) {
      await this._guard('run', async () => {
        await api.cancelRun(runId);
      });
    }
  }

  /**
   * Answer the followed run's approval request (a plan may go with its edited text); the
   * feed shows the outcome.
   */
  async decideApproval(
    approvalId: string,
    decision: api.ApprovalDecision,
    plan?: string
  ): Promise<void> {
    const runId = this._feed?.state.runId;
    if (runId) {
      await this._guard('run', async () => {
        await api.decideApproval(runId, approvalId, decision, plan);
      });
    }
  }

  /** A new run that picks up the followed (failed, cancelled or interrupted) one. */
  async continueRun(): Promise<void> {
    const runId = this._feed?.state.runId;
    if (runId) {
      await this._guard('run', async () => {
        this.follow(await api.continueRun(runId));
      });
    }
  }

  async refreshDeploy(): Promise<void> {
    await this._guard('deploy', async () => {
      const [deployments, releases] = await Promise.all([
        api.listDeployments(this._project.id),
        api.listReleases(this._project.id)
      ]);
      this._deployments = deployments;
      this._releases = releases;
    });
  }

  /** Start the preview (or restart it); resolves once it answers or failed. */
  async startPreview(restart = false, command?: string): Promise<void> {
    await this._busyWith('preview', () =>
      this._guard(
        'deploy',
        async () => {
          await api.startPreview(this._project.id, restart, command);
          this._commandNeeded = null;
          this._howToRun = null;
          await this.refreshDeploy();
        },
        error => this._noteCommand(error, 'preview')
      )
    );
  }

  async stopPreview(): Promise<void> {
    await this._busyWith('preview', () =>
      this._guard('deploy', async () => {
        await api.stopDeployments(this._project.id, 'preview');
        await this.refreshDeploy();
      })
    );
  }

  /** Snapshot the workspace as a release and make it live once healthy. */
  async deployRelease(command?: string): Promise<void> {
    await this._busyWith('release', () =>
      this._guard(
        'deploy',
        async () => {
          await api.deployRelease(this._project.id, command);
          this._commandNeeded = null;
          await this.refreshDeploy();
        },
        error => this._noteCommand(error, 'release')
      )
    );
  }

  async rollback(releaseId: string): Promise<void> {
    await this._busyWith(`rollback:${releaseId}`, () =>
      this._guard('deploy', async () => {
        await api.rollback(this._project.id, releaseId);
        await this.refreshDeploy();
      })
    );
  }

  async loadExport(): Promise<void> {
    await this._busyWith('export', () =>
      this._guard('deploy', async () => {
        this._export = await api.getExport(this._project.id);
      })
    );
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._feed?.dispose();
    this._feed = null;
    Signal.clearData(this);
  }

  /** The server could not tell how to run the app: ask the user for the command. */
  private _noteCommand(error: unknown, action: 'preview' | 'release'): void {
    if ((error as { field?: unknown }).field === 'command') {
      this._commandNeeded = action;
    }
    const details = (error as { details?: { not_a_web_app?: unknown } })
      .details;
    if (details?.not_a_web_app === true) {
      this._howToRun = api.howToRunOf(details);
    }
  }

  /** Run `fn`; a failure is kept (as advice) under `area` instead of thrown. */
  private async _guard<R>(
    area: keyof ISessionErrors,
    fn: () => Promise<R>,
    onError?: (error: unknown) => void
  ): Promise<R | null> {
    try {
      const result = await fn();
      if (this._errors[area]) {
        this._errors = { ...this._errors, [area]: undefined };
      }
      this._emit();
      return result;
    } catch (error) {
      onError?.(error);
      this._errors = { ...this._errors, [area]: adviceFor(error) };
      this._emit();
      return null;
    }
  }

  private async _busyWith(
    what: string,
    fn: () => Promise<unknown>
  ): Promise<void> {
    this._busy = new Set(this._busy).add(what);
    this._emit();
    try {
      await fn();
    } finally {
      const next = new Set(this._busy);
      next.delete(what);
      this._busy = next;
      this._emit();
    }
  }

  private _emit(): void {
    if (!this._disposed) {
      this._changed.emit();
    }
  }

  private _project: api.IProject;
  private _runs: api.IRun[] = [];
  private _feed: RunFeedClient | null = null;
  private _deployments: api.IDeployment[] = [];
  private _releases: api.IRelease[] = [];
  private _export: api.IExportBundle | null = null;
  private _errors: ISessionErrors = {};
  private _busy: ReadonlySet<string> = new Set();
  private _loaded = false;
  private _commandNeeded: 'preview' | 'release' | null = null;
  private _howToRun: api.IHowToRun | null = null;
  private _disposed = false;
  private _changed = new Signal<this, void>(this);
  private _feedChanged = new Signal<this, IFeedState | null>(this);
  private _runFinished = new Signal<this, IFeedState>(this);
}
