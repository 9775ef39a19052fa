/**
 * State behind the E-Code sidebar: my projects, the templates, prices and my credits, the
 * open projects (sessions) and which one is active — and what is loading or failed.
 *
 * Kept apart from the React views so commands can drive it without touching the DOM.
 */
import { ISignal, Signal } from '@lumino/signaling';

import {
  createProject,
  getAccount,
  getAgentModels,
  getPrices,
  getProject,
  IAccount,
  IAgentModels,
  ICreateProjectRequest,
  IModelPrice,
  IProject,
  ITemplate,
  listProjects,
  listTemplates,
  projectBySlug
} from './api';
import { adviceFor } from './format';
import { messageOf } from './handler';
import { ProjectSession } from './session';

/** User settings of the `ecode-jupyter:plugin` plugin (see schema/plugin.json). */
export interface IEcodeSettings {
  /** Model for new runs; empty means the server's default. */
  defaultModel: string;
  /** Ask before starting a run that may spend credits. */
  confirmCostlyRuns: boolean;
  /** Open the project view when a project is created. */
  openProjectOnCreate: boolean;
  /** Mark files the agent changed in Lab's file browser. */
  markChangedFiles: boolean;
  /** Folder under the server root that holds the workspaces (the server's default layout). */
  workspaceFolder: string;
}

export const DEFAULT_SETTINGS: IEcodeSettings = {
  defaultModel: '',
  confirmCostlyRuns: true,
  openProjectOnCreate: true,
  markChangedFiles: true,
  workspaceFolder: 'ecode-projects'
};

/** A name for a project made from a prompt alone: its first words. */
export function nameFromPrompt(prompt: string): string {
  const words = prompt
    .replace(/[^\p{L}\p{N}\s-]/gu, ' ')
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 6)
    .join(' ');
  const name = words.slice(0, 60).trim();
  return name ? name[0].toUpperCase() + name.slice(1) : 'New app';
}

/** What the sidebar shows, and the actions it offers. */
export class ProjectsModel {
  /** Emitted whenever anything the views read has changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The active project changed (opened, focused or closed). */
  get activeChanged(): ISignal<this, ProjectSession | null> {
    return this._activeChanged;
  }

  get projects(): readonly IProject[] {
    return this._projects;
  }

  get templates(): readonly ITemplate[] {
    return this._templates;
  }

  /** Prices by model (empty until loaded or when billing is off). */
  get prices(): readonly IModelPrice[] {
    return this._prices;
  }

  get account(): IAccount | null {
    return this._account;
  }

  /** What the server would run a prompt with, when it says (null: unknown). */
  get agentModels(): IAgentModels | null {
    return this._agentModels;
  }

  /** True while a refresh is under way. */
  get loading(): boolean {
    return this._loading;
  }

  /** Whether projects have been loaded at least once (to tell "none yet" from "not loaded"). */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Why the last refresh failed, for the user; null when it worked. */
  get error(): string | null {
    return this._error;
  }

  get settings(): IEcodeSettings {
    return this._settings;
  }

  set settings(value: IEcodeSettings) {
    this._settings = value;
    this._changed.emit();
  }

  /** The project whose feed the sidebar shows. */
  get active(): ProjectSession | null {
    return this._active;
  }

  get sessions(): readonly ProjectSession[] {
    return [...this._sessions.values()];
  }

  /**
   * Reload projects, templates, prices and credits.
   *
   * Overlapping calls are allowed (a command, a tab switch and a create can all ask); only the
   * newest call's answer is kept, so an older, slower reply never overwrites a newer list.
   */
  async refresh(): Promise<void> {
    const generation = ++this._generation;
    this._loading = true;
    this._changed.emit();
    const [projects, templates, account, prices, agent] =
      await Promise.allSettled([
        listProjects(),
        listTemplates(),
        getAccount(),
        this._prices.length ? Promise.resolve(null) : getPrices(),
        this._agentModels || this._agentModelsMissing
          ? Promise.resolve(null)
          : getAgentModels()
      ]);
    if (generation !== this._generation) {
      return;
    }
    const problems: string[] = [];
    if (projects.status === 'fulfilled') {
      this._projects = projects.value;
      this._loaded = true;
    } else {
      problems.push(
        `Could not load your projects: ${adviceFor(projects.reason)}`
      );
    }
    if (templates.status === 'fulfilled') {
      this._templates = templates.value;
    } else {
      problems.push(
        `Could not load the templates: ${messageOf(templates.reason)}`
      );
    }
    // Billing and the agent's model list are extras: without them the sidebar still works.
    if (account.status === 'fulfilled') {
      this._account = account.value;
    }
    if (prices.status === 'fulfilled' && prices.value) {
      this._prices = prices.value.models;
    }
    if (agent.status === 'fulfilled' && agent.value) {
      this._agentModels = agent.value;
    } else if (agent.status === 'rejected') {
      this._agentModelsMissing = true;
    }
    this._error = problems.length ? problems.join(' ') : null;
    this._loading = false;
    this._changed.emit();
  }

  /** Reload only my credits (after a run spent some). */
  async refreshAccount(): Promise<void> {
    try {
      this._account = await getAccount();
      this._changed.emit();
    } catch (error) {
      console.warn('ecode: could not load credits', error);
    }
  }

  /**
   * Create a project and refresh the list.
   *
   * A prompt with no name names the project after the prompt. The default model from the
   * settings goes along only with a prompt, since only a prompt starts a run. Errors are
   * thrown (as `EcodeApiError`) for the form to show beside its fields.
   */
  async create(
    request: Omit<ICreateProjectRequest, 'name'> & { name?: string }
  ): Promise<IProject> {
    const prompt = request.prompt?.trim();
    const body: ICreateProjectRequest = {
      name: request.name?.trim() || nameFromPrompt(prompt ?? '')
    };
    if (request.template) {
      body.template = request.template;
    }
    if (prompt) {
      body.prompt = prompt;
      const model = request.model ?? this._settings.defaultModel;
      if (model) {
        body.model = model;
      }
      if (request.mode && request.mode !== 'build') {
        body.mode = request.mode;
      }
    }
    const project = await createProject(body);
    // Show the new project at once, even if the refresh below is slow or fails.
    this._projects = [
      project,
      ...this._projects.filter(p => p.id !== project.id)
    ];
    this._changed.emit();
    void this.refresh();
    return project;
  }

  /** The price row of a model ('' = the server's default, when known). */
  priceOf(model: string): IModelPrice | undefined {
    const name = model || this._agentModels?.default.model || '';
    return this._prices.find(p => p.model === name);
  }

  /**
   * The session of a project (made and loaded on first use). `project` may be a full
   * project, an id, or `@owner/slug`.
   */
  async open(project: IProject | string): Promise<ProjectSession> {
    const key = typeof project === 'string' ? project : project.id;
    const known = this._sessions.get(key);
    if (known) {
      return known;
    }
    // The layout restorer, a URL and a click may all open one project at once.
    let opening = this._opening.get(key);
    if (!opening) {
      opening = this._open(project).finally(() => this._opening.delete(key));
      this._opening.set(key, opening);
    }
    return opening;
  }

  private async _open(project: IProject | string): Promise<ProjectSession> {
    let info: IProject;
    if (typeof project === 'string') {
      const slug = /^@([^/]+)\/([^/]+)\/?$/.exec(project);
      if (slug) {
        info = await projectBySlug(slug[1], slug[2]);
      } else {
        info =
          this._projects.find(p => p.id === project) ??
          (await getProject(project));
      }
    } else {
      info = project;
    }
    let session = this._sessions.get(info.id);
    if (!session) {
      session = new ProjectSession(info);
      this._sessions.set(info.id, session);
      if (info.run) {
        session.follow(info.run);
      }
      session.runFinished.connect(() => void this.refreshAccount());
      void session.load();
    }
    return session;
  }

  /** Make a session the one the sidebar follows. */
  setActive(session: ProjectSession | null): void {
    if (session === this._active) {
      return;
    }
    this._active = session;
    this._activeChanged.emit(session);
    this._changed.emit();
  }

  /** Forget a session (its view closed); the sidebar falls back to another open one. */
  close(session: ProjectSession): void {
    this._sessions.delete(session.id);
    if (this._active === session) {
      const next = [...this._sessions.values()].pop() ?? null;
      this.setActive(next);
    }
    session.dispose();
  }

  private _changed = new Signal<this, void>(this);
  private _activeChanged = new Signal<this, ProjectSession | null>(this);
  private _projects: IProject[] = [];
  private _templates: ITemplate[] = [];
  private _prices: IModelPrice[] = [];
  private _account: IAccount | null = null;
  private _agentModels: IAgentModels | null = null;
  private _agentModelsMissing = false;
  private _sessions = new Map<string, ProjectSession>();
  private _opening = new Map<string, Promise<ProjectSession>>();
  private _active: ProjectSession | null = null;
  private _loading = false;
  private _loaded = false;
  private _error: string | null = null;
  private _generation = 0;
  private _settings: IEcodeSettings = { ...DEFAULT_SETTINGS };
}
