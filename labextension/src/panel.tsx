/**
 * The E-Code sidebar: the prompt box, my projects, and the live feed of the open project.
 *
 * A ReactWidget over a `ProjectsModel`; it reloads when it is shown, so switching to the tab
 * always shows current projects without a timer polling the server.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { IProject } from './api';
import { FeedView } from './components/FeedView';
import { ProjectList } from './components/ProjectList';
import { PromptForm } from './components/PromptForm';
import { formatCredits } from './format';
import { ecodeIcon } from './icons';
import { ProjectsModel } from './model';
import { ProjectSession } from './session';

let panelCount = 0;

export interface IPanelActions {
  /** Ask before a run with `model` that may cost credits. */
  confirmRun: (model: string) => Promise<boolean>;
  /** Open a project: its feed here and its view in the main area. */
  openProject: (project: IProject | string) => void;
  /** Show the project view (tabs) of a session. */
  showView: (session: ProjectSession) => void;
  /** A project was created from the form. */
  created: (project: IProject) => void;
  /** Ask before an action such as "Undo this run"; resolves to go / no go. */
  confirm?: (title: string, body: string) => Promise<boolean>;
}

export class ProjectsPanel extends ReactWidget {
  constructor(
    readonly model: ProjectsModel,
    private readonly _actions: IPanelActions
  ) {
    super();
    this._idPrefix = `jp-ecode-${++panelCount}`;
    this.id = 'ecode-projects-panel';
    this.addClass('jp-EcodePanel');
    this.title.icon = ecodeIcon;
    this.title.caption = 'E-Code';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'E-Code projects');
  }

  /** Put the keyboard in the prompt box, for "E-Code: New project". */
  focusNewProject(): void {
    this._formOpen = true;
    this.update();
    // React renders on the next animation frame after the panel is shown.
    requestAnimationFrame(() => {
      this.node
        .querySelector<HTMLTextAreaElement>('textarea[name="prompt"]')
        ?.focus();
    });
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.model.refresh();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    // A sidebar restored open at page load is attached visible and gets no after-show.
    if (this.isVisible) {
      void this.model.refresh();
    }
  }

  render(): JSX.Element {
    const model = this.model;
    const actions = this._actions;
    return (
      <UseSignal signal={model.changed}>
        {() => {
          const active = model.active;
          return (
            <div
              className={`jp-EcodePanel-content${active ? ' jp-mod-hasFeed' : ''}`}
            >
              <div className="jp-EcodePanel-top">
                <header className="jp-EcodePanel-header">
                  <ecodeIcon.react
                    tag="span"
                    elementSize="large"
                    className="jp-EcodePanel-logo"
                  />
                  <h2 className="jp-EcodePanel-title">E-Code</h2>
                  {model.account && (
                    <span
                      className="jp-EcodeBadge jp-EcodeCredits"
                      title="Credits you can spend now"
                    >
                      {formatCredits(model.account.available_micros)}
                    </span>
                  )}
                </header>
                <details
                  className="jp-EcodeNewApp"
                  // Collapsed while a project's feed is open (it needs the height),
                  // until the user opens it.
                  open={this._formOpen ?? !active}
                  onToggle={event => {
                    const open = (event.target as HTMLDetailsElement).open;
                    if (open !== (this._formOpen ?? !active)) {
                      this._formOpen = open;
                      this.update();
                    }
                  }}
                >
                  <summary className="jp-EcodePanel-sectionTitle">
                    New app
                  </summary>
                  <PromptForm
                    model={model}
                    templates={model.templates}
                    prices={model.prices}
                    account={model.account}
                    agent={model.agentModels}
                    settings={model.settings}
                    idPrefix={this._idPrefix}
                    confirmRun={actions.confirmRun}
                    onCreated={actions.created}
                  />
                </details>
                <ProjectList
                  projects={model.projects}
                  loading={model.loading}
                  loaded={model.loaded}
                  error={model.error}
                  idPrefix={this._idPrefix}
                  activeId={active?.id ?? null}
                  onRefresh={() => void model.refresh()}
                  onOpen={project => actions.openProject(project)}
                />
              </div>
              {active && (
                <FeedView
                  key={active.id}
                  session={active}
                  model={model.settings.defaultModel}
                  confirmRun={actions.confirmRun}
                  confirm={actions.confirm}
                  onOpenView={() => actions.showView(active)}
                  idPrefix={this._idPrefix}
                />
              )}
            </div>
          );
        }}
      </UseSignal>
    );
  }

  private readonly _idPrefix: string;
  /** The user's choice for the new-app form; null follows whether a feed is open. */
  private _formOpen: boolean | null = null;
}
