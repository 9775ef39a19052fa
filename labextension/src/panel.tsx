/**
 * The E-Code sidebar: the new-project form above the list of my projects.
 *
 * A ReactWidget over a `ProjectsModel`; it reloads when it is shown, so switching to the tab
 * always shows current projects without a timer polling the server.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { CreateProjectForm } from './components/CreateProjectForm';
import { ProjectList } from './components/ProjectList';
import { ecodeIcon } from './icons';
import { ProjectsModel } from './model';

let panelCount = 0;

export class ProjectsPanel extends ReactWidget {
  constructor(readonly model: ProjectsModel) {
    super();
    this._idPrefix = `jp-ecode-${++panelCount}`;
    this.id = 'ecode-projects-panel';
    this.addClass('jp-EcodePanel');
    this.title.icon = ecodeIcon;
    this.title.caption = 'E-Code';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'E-Code projects');
  }

  /** Put the keyboard in the name field, for "E-Code: New project". */
  focusNewProject(): void {
    // React renders on the next animation frame after the panel is shown.
    requestAnimationFrame(() => {
      this.node.querySelector<HTMLInputElement>('input[name="name"]')?.focus();
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
    return (
      <UseSignal signal={model.changed}>
        {() => (
          <div className="jp-EcodePanel-content">
            <header className="jp-EcodePanel-header">
              <ecodeIcon.react
                tag="span"
                elementSize="large"
                className="jp-EcodePanel-logo"
              />
              <h2 className="jp-EcodePanel-title">E-Code</h2>
            </header>
            <CreateProjectForm
              model={model}
              templates={model.templates}
              settings={model.settings}
              idPrefix={this._idPrefix}
            />
            <ProjectList
              projects={model.projects}
              loading={model.loading}
              loaded={model.loaded}
              error={model.error}
              idPrefix={this._idPrefix}
              onRefresh={() => void model.refresh()}
            />
          </div>
        )}
      </UseSignal>
    );
  }

  private readonly _idPrefix: string;
}
