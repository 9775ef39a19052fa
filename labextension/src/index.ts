/**
 * The ecode-jupyter JupyterLab plugin: the E-Code sidebar, its commands and its settings.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { ecodeIcon } from './icons';
import { DEFAULT_SETTINGS, IEcodeSettings, ProjectsModel } from './model';
import { ProjectsPanel } from './panel';

const PLUGIN_ID = 'ecode-jupyter:plugin';

/** Command ids; the palette shows them under the "E-Code" category. */
export namespace CommandIDs {
  export const newProject = 'ecode:new-project';
  export const refreshProjects = 'ecode:refresh-projects';
  export const openPanel = 'ecode:open-panel';
}

/** Read the user's settings, falling back to the schema defaults for missing values. */
function readSettings(settings: ISettingRegistry.ISettings): IEcodeSettings {
  const defaultModel = settings.get('defaultModel').composite;
  const confirmCostlyRuns = settings.get('confirmCostlyRuns').composite;
  return {
    defaultModel:
      typeof defaultModel === 'string'
        ? defaultModel.trim()
        : DEFAULT_SETTINGS.defaultModel,
    confirmCostlyRuns:
      typeof confirmCostlyRuns === 'boolean'
        ? confirmCostlyRuns
        : DEFAULT_SETTINGS.confirmCostlyRuns
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'E-Code sidebar: list and create projects.',
  autoStart: true,
  optional: [ILabShell, ILayoutRestorer, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const model = new ProjectsModel();
    const panel = new ProjectsPanel(model);
    app.shell.add(panel, 'left', { rank: 150 });
    // Remember whether the sidebar was open across reloads.
    restorer?.add(panel, panel.id);

    const { commands } = app;
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
      caption: 'Open the E-Code sidebar and start a new project',
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
    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: 'E-Code' });
      }
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          model.settings = readSettings(settings);
          settings.changed.connect(() => {
            model.settings = readSettings(settings);
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
