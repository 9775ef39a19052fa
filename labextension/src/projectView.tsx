/**
 * The project view in the main area: a header with the run's status and cost, and four
 * tabs — Files, Preview, Features, Deploy — over one `ProjectSession`.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import * as React from 'react';

import { getProjectServer, ITemplate, openProjectServer } from './api';
import { CheckpointList } from './components/CheckpointList';
import { GpuBadge } from './components/GpuBadge';
import {
  IProjectServerApi,
  ProjectServerButton
} from './components/ProjectServerButton';
import { useSignalTick, useSignalValue } from './components/hooks';
import { ITab, TabList, TabPanel } from './components/Tabs';
import { DeployTab } from './components/tabs/DeployTab';
import { FeaturesTab } from './components/tabs/FeaturesTab';
import { FilesTab } from './components/tabs/FilesTab';
import { howToRunFor, PreviewTab } from './components/tabs/PreviewTab';
import { isFinished } from './feedState';
import { formatCredits } from './format';
import { ecodeIcon } from './icons';
import { ProjectSession, workspacePath } from './session';

export type ProjectTabId = 'files' | 'preview' | 'features' | 'deploy';

export const PROJECT_TABS: readonly ITab[] = [
  { id: 'files', label: 'Files' },
  { id: 'preview', label: 'Preview' },
  { id: 'features', label: 'Features' },
  { id: 'deploy', label: 'Deploy' }
];

export interface IProjectViewActions {
  /** Take Lab's file browser to a folder; `reveal` also shows the browser. */
  showInBrowser: (path: string, reveal: boolean) => void;
  /** Open a file in Lab's editor. */
  openFile: (path: string) => void;
  confirm: (title: string, body: string) => Promise<boolean>;
  /** The folder under the server root holding workspaces (a setting). */
  workspaceFolder: () => string;
  /** The templates the server offers (to tell a script's project from a web app's). */
  templates?: () => readonly ITemplate[];
}

const PROJECT_SERVER_API: IProjectServerApi = {
  get: getProjectServer,
  open: openProjectServer,
  visit: url => window.open(url, '_blank', 'noopener')
};

let viewCount = 0;

function ProjectViewBody(props: {
  session: ProjectSession;
  view: ProjectView;
  actions: IProjectViewActions;
  idPrefix: string;
}): JSX.Element {
  const { session, view, actions, idPrefix } = props;
  useSignalTick(session.changed);
  const tab = useSignalValue(view.tabChanged, view.tab);
  const state = useSignalValue(session.feedChanged, session.feedState);
  const project = session.project;
  const workspace = workspacePath(project, actions.workspaceFolder());
  const showInBrowser = React.useCallback(
    (path: string, reveal: boolean) => actions.showInBrowser(path, reveal),
    [actions]
  );
  return (
    <div className="jp-EcodeProjectView-body" data-project-id={project.id}>
      <header className="jp-EcodeProjectView-header">
        <h2 className="jp-EcodeProjectView-title">{project.name}</h2>
        <span className="jp-EcodeProject-slug">
          @{project.owner}/{project.slug}
        </span>
        {state && (
          <span
            className={`jp-EcodeBadge jp-EcodeRunStatus jp-mod-${state.status}`}
            data-status={state.status}
          >
            {isFinished(state)
              ? state.status
              : `${state.status} · step ${state.step}`}
          </span>
        )}
        {state && (
          <span className="jp-EcodeField-help">
            {formatCredits(state.costMicros)}
          </span>
        )}
        <GpuBadge leases={project.gpu_leases} />
        <ProjectServerButton projectId={project.id} api={PROJECT_SERVER_API} />
      </header>
      {session.errors.project && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {session.errors.project}
        </p>
      )}
      <TabList
        tabs={PROJECT_TABS}
        selected={tab}
        onSelect={id => view.selectTab(id as ProjectTabId)}
        idPrefix={idPrefix}
        label={`${project.name} views`}
      />
      <TabPanel id={tab} idPrefix={idPrefix}>
        {tab === 'files' && (
          <>
            <FilesTab
              workspace={workspace}
              state={state}
              showInBrowser={showInBrowser}
              openFile={actions.openFile}
            />
            <CheckpointList
              projectId={project.id}
              confirm={actions.confirm}
              refreshKey={`${state?.runId ?? ''}:${state?.status ?? ''}`}
            />
          </>
        )}
        {tab === 'preview' && (
          <PreviewTab
            session={session}
            howToRun={
              howToRunFor(project, actions.templates?.() ?? []) ??
              session.howToRun
            }
            workspace={workspace}
            openFile={actions.openFile}
          />
        )}
        {tab === 'features' && (
          <FeaturesTab state={state} runs={session.runs} />
        )}
        {tab === 'deploy' && (
          <DeployTab session={session} confirm={actions.confirm} />
        )}
      </TabPanel>
    </div>
  );
}

export class ProjectView extends ReactWidget {
  constructor(
    readonly session: ProjectSession,
    private readonly _actions: IProjectViewActions
  ) {
    super();
    this._idPrefix = `jp-ecode-view-${++viewCount}`;
    this.id = `ecode-project-${session.id}`;
    this.addClass('jp-EcodeProjectView');
    this.title.icon = ecodeIcon;
    this.title.closable = true;
    this._syncTitle();
    session.changed.connect(this._syncTitle, this);
  }

  get tab(): ProjectTabId {
    return this._tab;
  }

  get tabChanged(): ISignal<this, ProjectTabId> {
    return this._tabChanged;
  }

  selectTab(tab: ProjectTabId): void {
    if (tab !== this._tab) {
      this._tab = tab;
      this._tabChanged.emit(tab);
    }
  }

  render(): JSX.Element {
    return (
      <ProjectViewBody
        session={this.session}
        view={this}
        actions={this._actions}
        idPrefix={this._idPrefix}
      />
    );
  }

  private _syncTitle(): void {
    const project = this.session.project;
    this.title.label = project.name;
    this.title.caption = `E-Code project @${project.owner}/${project.slug}`;
  }

  private readonly _idPrefix: string;
  private _tab: ProjectTabId = 'files';
  private _tabChanged = new Signal<this, ProjectTabId>(this);
}
