/**
 * State behind the E-Code sidebar: my projects, the templates, and what is loading or failed.
 *
 * Kept apart from the React views so commands (and, later, the feed and project view of issue 7)
 * can drive it without touching the DOM.
 */
import { ISignal, Signal } from '@lumino/signaling';

import {
  createProject,
  ICreateProjectRequest,
  IProject,
  ITemplate,
  listProjects,
  listTemplates
} from './api';
import { messageOf } from './handler';

/** User settings of the `ecode-jupyter:plugin` plugin (see schema/plugin.json). */
export interface IEcodeSettings {
  /** Model for new runs; empty means the server's default. */
  defaultModel: string;
  /** Ask before starting a run that may spend credits. */
  confirmCostlyRuns: boolean;
}

export const DEFAULT_SETTINGS: IEcodeSettings = {
  defaultModel: '',
  confirmCostlyRuns: true
};

/** What the projects panel shows, and the actions it offers. */
export class ProjectsModel {
  /** Emitted whenever anything the views read has changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get projects(): readonly IProject[] {
    return this._projects;
  }

  get templates(): readonly ITemplate[] {
    return this._templates;
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

  /**
   * Reload projects and templates.
   *
   * Overlapping calls are allowed (a command, a tab switch and a create can all ask); only the
   * newest call's answer is kept, so an older, slower reply never overwrites a newer list.
   */
  async refresh(): Promise<void> {
    const generation = ++this._generation;
    this._loading = true;
    this._changed.emit();
    const [projects, templates] = await Promise.allSettled([
      listProjects(),
      listTemplates()
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
        `Could not load your projects: ${messageOf(projects.reason)}`
      );
    }
    if (templates.status === 'fulfilled') {
      this._templates = templates.value;
    } else {
      problems.push(
        `Could not load the templates: ${messageOf(templates.reason)}`
      );
    }
    this._error = problems.length ? problems.join(' ') : null;
    this._loading = false;
    this._changed.emit();
  }

  /**
   * Create a project and refresh the list.
   *
   * The default model from the settings goes along only with a prompt, since only a prompt
   * starts a run. Errors are thrown (as `EcodeApiError`) for the form to show beside its fields.
   */
  async create(request: ICreateProjectRequest): Promise<IProject> {
    const body: ICreateProjectRequest = { name: request.name };
    if (request.template) {
      body.template = request.template;
    }
    if (request.prompt) {
      body.prompt = request.prompt;
      const model = request.model ?? this._settings.defaultModel;
      if (model) {
        body.model = model;
      }
    }
    const project = await createProject(body);
    // Show the new project at once, even if the refresh below is slow or fails.
    this._projects = [
      project,
      ...this._projects.filter(p => p.id !== project.id)
    ];
    this._changed.emit();
    await this.refresh();
    return project;
  }

  private _changed = new Signal<this, void>(this);
  private _projects: IProject[] = [];
  private _templates: ITemplate[] = [];
  private _loading = false;
  private _loaded = false;
  private _error: string | null = null;
  private _generation = 0;
  private _settings: IEcodeSettings = { ...DEFAULT_SETTINGS };
}
