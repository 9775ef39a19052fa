/**
 * The ecode-jupyter JupyterLab plugin: the E-Code sidebar (prompt box, projects, live feed),
 * the four-tab project view, palette commands, settings, changed-file marks in the file
 * browser, and `?ecode=@owner/slug` (where `/ecode/@owner/slug` sends the browser).
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  Notification,
  showDialog,
  showErrorMessage,
  WidgetTracker
} from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { IProject, warmKernels } from './api';
import { isFinished } from './feedState';
import { ChangedFileMarker } from './fileMarks';
import { estimateRunMicros, formatCredits, openFailure } from './format';
import { ecodeIcon } from './icons';
import { DEFAULT_SETTINGS, IEcodeSettings, ProjectsModel } from './model';
import { ProjectsPanel } from './panel';
import { IProjectViewActions, ProjectTabId, ProjectView } from './projectView';
import { ProjectSession, workspacePath } from './session';

const PLUGIN_ID = 'ecode-jupyter:plugin';

/** The query parameter `/ecode/@owner/slug` redirects to: `lab?ecode=@owner/slug`. */
export const OPEN_PARAM = 'ecode';

/** Command ids; the palette shows them under the "E-Code" category. */
export /** The server's project changes on Jupyter's event bus (ecode_jupyter/projects/events.py). */
const PROJECT_EVENT_SCHEMA =
  'https://events.jupyter.org/ecode_jupyter/project_event/v1';

namespace CommandIDs {
  export const newProject = 'ecode:new-project';
  export const refreshProjects = 'ecode:refresh-projects';
  export const openPanel = 'ecode:open-panel';
  export const openProject = 'ecode:open-project';
  export const cancelRun = 'ecode:cancel-run';
  export const startPreview = 'ecode:start-preview';
  export const deployRelease = 'ecode:deploy-release';
}

/** Read the user's settings, falling back to the defaults for missing values. */
function readSettings(settings: ISettingRegistry.ISettings): IEcodeSettings {
  const get = <K extends keyof IEcodeSettings>(key: K): IEcodeSettings[K] => {
    const value = settings.get(key).composite;
    return typeof value === typeof DEFAULT_SETTINGS[key]
      ? (value as IEcodeSettings[K])
      : DEFAULT_SETTINGS[key];
  };
  return {
    defaultModel: get('defaultModel').trim(),
    confirmCostlyRuns: get('confirmCostlyRuns'),
    openProjectOnCreate: get('openProjectOnCreate'),
    markChangedFiles: get('markChangedFiles'),
    workspaceFolder: get('workspaceFolder')
      .trim()
      .replace(/^\/+|\/+$/g, '')
  };
}

type ProjectWidget = MainAreaWidget<ProjectView>;

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'E-Code: a prompt becomes a running project, with a live feed.',
  autoStart: true,
  optional: [
    ILabShell,
    ILayoutRestorer,
    ICommandPalette,
    ISettingRegistry,
    IDefaultFileBrowser
  ],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    fileBrowser: IDefaultFileBrowser | null
  ) => {
    const { commands } = app;
    const model = new ProjectsModel();
    const tracker = new WidgetTracker<ProjectWidget>({
      namespace: 'ecode-project'
    });

    const confirm = async (title: string, body: string): Promise<boolean> => {
      const result = await showDialog({
        title,
        body,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Go ahead' })]
      });
      return result.button.accept;
    };

    /** Ask before a run that costs credits (when the setting says so and a price is known). */
    const confirmRun = async (modelName: string): Promise<boolean> => {
      const price = model.priceOf(modelName);
      if (!model.settings.confirmCostlyRuns || !price || price.free) {
        return true;
      }
      const have = model.account
        ? ` You have ${formatCredits(model.account.available_micros)}.`
        : '';
      return confirm(
        `Start a run with ${price.model}?`,
        `A typical run costs about ${formatCredits(estimateRunMicros(price))}.${have} ` +
          'The feed shows the cost as it goes, and you can cancel at any time.'
      );
    };

    const viewActions: IProjectViewActions = {
      showInBrowser: (path, reveal) => {
        void (async () => {
          try {
            if (reveal) {
              await commands.execute('filebrowser:activate');
            }
            await commands.execute('filebrowser:go-to-path', {
              path,
              dontShowBrowser: !reveal
            });
          } catch (error) {
            console.warn(
              'ecode: cannot show %s in the file browser',
              path,
              error
            );
          }
        })();
      },
      openFile: path => void commands.execute('docmanager:open', { path }),
      confirm,
      workspaceFolder: () => model.settings.workspaceFolder,
      templates: () => model.templates
    };

    // -- changed files in the file browser ---------------------------------------------
    const marker = fileBrowser ? new ChangedFileMarker(fileBrowser) : null;
    let lastFileCount = -1;
    let refreshTimer: ReturnType<typeof setTimeout> | null = null;
    const updateMarks = () => {
      const paths: string[] = [];
      let count = 0;
      for (const session of model.sessions) {
        const files = session.feedState?.files ?? [];
        count += files.length;
        const root = workspacePath(
          session.project,
          model.settings.workspaceFolder
        );
        for (const file of files) {
          if (file.action !== 'deleted') {
            paths.push(`${root}/${file.path}`);
          }
        }
      }
      marker?.setChanged(model.settings.markChangedFiles ? paths : []);
      // The agent writes on the server, which the browser hears of only when it polls:
      // refresh the listing (at most once a second) when the set of changed files grows.
      if (fileBrowser && count !== lastFileCount && refreshTimer === null) {
        refreshTimer = setTimeout(() => {
          refreshTimer = null;
          void fileBrowser.model.refresh().catch(() => undefined);
        }, 1000);
      }
      lastFileCount = count;
    };
    const activeRunning = () => {
      const state = model.active?.feedState;
      return !!state && !isFinished(state);
    };
    const watched = new WeakSet<ProjectSession>();
    // Whether the sidebar's project had a run going at the last look: the commands that
    // depend on it (cancel, continue) are re-checked when it changes, so an open command
    // palette offers them as they are now, not as they were when it was opened.
    let wasRunning = false;
    const runStateChanged = () => {
      const running = activeRunning();
      if (running !== wasRunning) {
        wasRunning = running;
        commands.notifyCommandChanged();
      }
    };
    const watch = (session: ProjectSession) => {
      if (!watched.has(session)) {
        watched.add(session);
        session.feedChanged.connect(updateMarks);
        session.feedChanged.connect(runStateChanged);
      }
      updateMarks();
    };

    // -- the project view --------------------------------------------------------------
    const viewOf = (session: ProjectSession) =>
      tracker.find(widget => widget.content.session === session) ?? null;

    const showView = (
      session: ProjectSession,
      options: { activate?: boolean; tab?: ProjectTabId } = {}
    ): ProjectWidget => {
      let widget = viewOf(session);
      if (!widget) {
        const content = new ProjectView(session, viewActions);
        widget = new MainAreaWidget({ content });
        widget.id = content.id;
        widget.addClass('jp-EcodeProjectView-area');
        // A closed view lets its project go, unless the sidebar still follows it.
        widget.disposed.connect(() => {
          if (model.active !== session) {
            model.close(session);
          }
        });
        void tracker.add(widget);
        app.shell.add(widget, 'main');
      }
      if (options.tab) {
        widget.content.selectTab(options.tab);
      }
      if (options.activate !== false) {
        app.shell.activateById(widget.id);
      }
      model.setActive(session);
      watch(session);
      return widget;
    };

    const openProject = async (
      project: IProject | string,
      options: {
        activate?: boolean;
        tab?: ProjectTabId;
        restoring?: boolean;
      } = {}
    ): Promise<ProjectSession | null> => {
      try {
        const session = await model.open(project);
        showView(session, options);
        // Kernels started ahead for the project: a viewer is refused and a server without
        // project kernels (the hub service) has no such route; either way nothing to do.
        void warmKernels(session.project.id).catch(() => undefined);
        return session;
      } catch (error) {
        const which = typeof project === 'string' ? project : project.name;
        const failure = openFailure(which, error, options.restoring === true);
        if (failure.quiet) {
          Notification.info(failure.body, { autoClose: 8000 });
        } else {
          void showErrorMessage(failure.title, failure.body);
        }
        return null;
      }
    };

    // -- the sidebar -------------------------------------------------------------------
    const panel = new ProjectsPanel(model, {
      confirmRun,
      confirm,
      openProject: project => void openProject(project),
      showView: session => showView(session),
      created: project => {
        if (model.settings.openProjectOnCreate) {
          void openProject(project);
        } else {
          void model.open(project).then(session => {
            model.setActive(session);
            watch(session);
          });
        }
      }
    });
    app.shell.add(panel, 'left', { rank: 150 });
    // Remember whether the sidebar was open across reloads.
    restorer?.add(panel, panel.id);

    // The project list follows changes made anywhere: the server puts every project change
    // (from this Lab, a notebook's %ecode, the REST API, an MCP client) on Jupyter's event
    // bus; a burst of them (a rename, then a run) refreshes once. The command line writes
    // the database directly, outside any server: coming back to the tab refreshes too.
    let listTimer: ReturnType<typeof setTimeout> | null = null;
    const refreshSoon = () => {
      if (listTimer === null) {
        listTimer = setTimeout(() => {
          listTimer = null;
          void model.refresh();
        }, 300);
      }
    };
    app.serviceManager.events.stream.connect((_, event) => {
      if (event.schema_id === PROJECT_EVENT_SCHEMA) {
        refreshSoon();
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && model.loaded) {
        refreshSoon();
      }
    });

    // The sidebar follows the project view in front.
    labShell?.currentChanged.connect((_, change) => {
      const widget = change.newValue;
      if (widget && tracker.has(widget)) {
        model.setActive((widget as ProjectWidget).content.session);
      }
    });

    // -- commands ----------------------------------------------------------------------
    const canEdit = () =>
      !!model.active && model.active.project.role !== 'viewer';
    model.activeChanged.connect(() => {
      wasRunning = activeRunning();
      commands.notifyCommandChanged();
    });

    commands.addCommand(CommandIDs.openPanel, {
      label: 'E-Code: Open sidebar',
      caption: 'Show the E-Code projects sidebar',
      icon: ecodeIcon,
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    commands.addCommand(CommandIDs.newProject, {
      label: 'E-Code: New project',
      caption: 'Open the E-Code sidebar and describe a new app',
      icon: ecodeIcon,
      execute: () => {
        app.shell.activateById(panel.id);
        panel.focusNewProject();
      }
    });
    commands.addCommand(CommandIDs.refreshProjects, {
      label: 'E-Code: Refresh projects',
      caption: 'Reload the list of E-Code projects',
      execute: () => model.refresh()
    });
    commands.addCommand(CommandIDs.openProject, {
      label: 'E-Code: Open project…',
      caption:
        'Open an E-Code project: its feed and its Files, Preview, Features, Deploy tabs',
      icon: ecodeIcon,
      execute: async args => {
        const id = typeof args.id === 'string' ? args.id : undefined;
        const slug = typeof args.slug === 'string' ? args.slug : undefined;
        const options = {
          activate: args.activate !== false,
          restoring: args.restoring === true,
          tab:
            typeof args.tab === 'string'
              ? (args.tab as ProjectTabId)
              : undefined
        };
        if (id || slug) {
          return openProject((id ?? slug)!, options);
        }
        if (!model.loaded) {
          await model.refresh();
        }
        const names = model.projects.map(
          p => `${p.name} (@${p.owner}/${p.slug})`
        );
        if (names.length === 0) {
          void showErrorMessage(
            'No projects',
            'Create one in the E-Code sidebar first.'
          );
          return null;
        }
        const choice = await InputDialog.getItem({
          title: 'Open an E-Code project',
          items: names
        });
        const index = choice.value ? names.indexOf(choice.value) : -1;
        return index >= 0 ? openProject(model.projects[index], options) : null;
      }
    });
    commands.addCommand(CommandIDs.cancelRun, {
      label: 'E-Code: Cancel the running agent',
      caption: "Stop the open project's run (its running command is killed)",
      isEnabled: () => activeRunning() && canEdit(),
      execute: () => model.active?.cancelRun()
    });
    commands.addCommand(CommandIDs.startPreview, {
      label: 'E-Code: Start preview',
      caption: "Run the open project's app and show it in the Preview tab",
      isEnabled: canEdit,
      execute: async () => {
        const session = model.active;
        if (session) {
          showView(session, { tab: 'preview' });
          await session.startPreview(session.preview !== null);
        }
      }
    });
    commands.addCommand(CommandIDs.deployRelease, {
      label: 'E-Code: Deploy a release',
      caption: 'Snapshot the open project and make it live once healthy',
      isEnabled: canEdit,
      execute: async () => {
        const session = model.active;
        if (session) {
          showView(session, { tab: 'deploy' });
          await session.deployRelease();
        }
      }
    });
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: 'E-Code' });
      }
    }

    // -- restoring and opening by URL --------------------------------------------------
    if (restorer) {
      void restorer.restore(tracker, {
        command: CommandIDs.openProject,
        args: widget => ({
          id: widget.content.session.id,
          activate: false,
          restoring: true,
          tab: widget.content.tab
        }),
        name: widget => widget.content.session.id
      });
    }

    void app.restored.then(() => {
      const url = new URL(window.location.href);
      const wanted = url.searchParams.get(OPEN_PARAM);
      if (!wanted) {
        return;
      }
      // Drop the parameter so a reload does not reopen it over what the user did since.
      url.searchParams.delete(OPEN_PARAM);
      window.history.replaceState(window.history.state, '', url.toString());
      app.shell.activateById(panel.id);
      // Opening the view can bring the file browser forward; the sidebar's feed is what the
      // address was for, so show it again once the project is open.
      void openProject(wanted.startsWith('@') ? wanted : `@${wanted}`).then(
        () => app.shell.activateById(panel.id)
      );
    });

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          model.settings = readSettings(settings);
          settings.changed.connect(() => {
            model.settings = readSettings(settings);
            updateMarks();
          });
        })
        .catch(reason => {
          console.error(
            'ecode: failed to load settings for %s',
            PLUGIN_ID,
            reason
          );
        });
    }

    // Out of the lab shell (e.g. Notebook 7's tree) nothing else shows the panel; load once.
    if (!labShell) {
      void model.refresh();
    }
  }
};

export default plugin;
