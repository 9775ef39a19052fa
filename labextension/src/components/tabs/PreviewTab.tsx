/**
 * Preview: the running app in a sandboxed frame (scripts and forms, never the Jupyter
 * origin's cookies or DOM: no allow-same-origin, but on a preview origin of its own), with
 * reload, open-in-new-tab, restart and stop.
 */
import * as React from 'react';

import { IHowToRun, IProject, ITemplate } from '../../api';
import { ProjectSession } from '../../session';
import { CommandForm } from '../CommandForm';

const KINDS: Record<IHowToRun['kind'], string> = {
  script: 'a script',
  notebook: 'a notebook',
  node: 'a Node program'
};

/**
 * How to run a project whose template serves nothing (the server's `serves: false`), or
 * null: a web app, no template, or a server that does not say.
 */
export function howToRunFor(
  project: IProject,
  templates: readonly ITemplate[]
): IHowToRun | null {
  const template = templates.find(t => t.id === project.template);
  if (!template || template.serves !== false || !template.entry) {
    return null;
  }
  const path = template.entry;
  return path.endsWith('.ipynb')
    ? { kind: 'notebook', path, command: null }
    : { kind: 'script', path, command: `python ${path}` };
}

/** Instead of a preview that can only fail: what to open or run. */
function HowToRun(props: {
  how: IHowToRun;
  workspace: string;
  openFile?: (path: string) => void;
}): JSX.Element {
  const { how, workspace, openFile } = props;
  const full = workspace ? `${workspace}/${how.path}` : how.path;
  return (
    <div className="jp-EcodePreview-howto" role="note">
      <p>
        This project is {KINDS[how.kind]}, not a web app: there is nothing to
        preview.
      </p>
      {how.command ? (
        <p>
          Run it in a terminal in its folder (<code>{workspace || '.'}</code>):{' '}
          <code>{how.command}</code>
        </p>
      ) : (
        <p>Open the notebook and run all its cells.</p>
      )}
      {openFile && (
        <button
          type="button"
          className="jp-mod-styled jp-mod-accept jp-EcodeButton jp-EcodeButton-small"
          onClick={() => openFile(full)}
        >
          Open {how.path}
        </button>
      )}
    </div>
  );
}

/** The frame's sandbox: the app may script itself and post forms, not reach Jupyter. */
export const PREVIEW_SANDBOX = 'allow-scripts allow-forms allow-popups';

/**
 * The sandbox for an app at `url`: with its own origin (cookies, storage) only where the
 * server says its pages keep one (`own_origin`: a preview origin whose host name is not
 * Jupyter's) and the URL is indeed on another host than this page; never on the lab's host,
 * where allow-same-origin with allow-scripts would undo the sandbox.
 */
export function previewSandbox(
  url: string,
  ownOrigin: boolean | undefined,
  here: string = window.location.href
): string {
  if (!ownOrigin) {
    return PREVIEW_SANDBOX;
  }
  let host: string;
  try {
    host = new URL(url, here).hostname;
  } catch {
    return PREVIEW_SANDBOX;
  }
  return host !== new URL(here).hostname
    ? `${PREVIEW_SANDBOX} allow-same-origin`
    : PREVIEW_SANDBOX;
}

export function PreviewTab(props: {
  session: ProjectSession;
  /** Set for a project that is not a web app: shown instead of "Start preview". */
  howToRun?: IHowToRun | null;
  /** The project's folder under the server root (for "how to run it"). */
  workspace?: string;
  openFile?: (path: string) => void;
}): JSX.Element {
  const { session, howToRun } = props;
  const [reloads, setReloads] = React.useState(0);
  const preview = session.preview;
  const starting = session.busy.has('preview');
  const canEdit = session.project.role !== 'viewer';
  const name = session.project.name;
  return (
    <div className="jp-EcodePreviewTab">
      <div className="jp-EcodeToolbar" role="toolbar" aria-label="Preview">
        <span
          className={`jp-EcodeBadge jp-mod-${preview ? preview.status : 'stopped'}`}
          data-status={preview?.status ?? 'none'}
        >
          {starting ? 'starting…' : preview ? preview.status : 'not running'}
        </span>
        {preview?.url && (
          <>
            <button
              type="button"
              className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
              onClick={() => setReloads(n => n + 1)}
            >
              Reload
            </button>
            <a
              className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small jp-EcodeLink"
              href={preview.entry_url ?? preview.url}
              target="_blank"
              rel="noopener noreferrer"
            >
              Open in new tab
            </a>
          </>
        )}
        {canEdit && (preview || !howToRun) && (
          <button
            type="button"
            className="jp-mod-styled jp-mod-accept jp-EcodeButton jp-EcodeButton-small"
            disabled={starting}
            onClick={() => void session.startPreview(preview !== null)}
          >
            {preview ? 'Restart' : 'Start preview'}
          </button>
        )}
        {canEdit && preview && (
          <button
            type="button"
            className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
            disabled={starting}
            onClick={() => void session.stopPreview()}
          >
            Stop
          </button>
        )}
      </div>
      {session.errors.deploy && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {session.errors.deploy}
        </p>
      )}
      {canEdit && session.commandNeeded === 'preview' && (
        <CommandForm
          initial={session.lastCommand}
          action="Start with this command"
          idPrefix={`jp-ecode-preview-${session.id}`}
          busy={starting}
          onSubmit={command => void session.startPreview(true, command)}
        />
      )}
      {preview?.url ? (
        <iframe
          key={`${preview.id}:${reloads}`}
          className="jp-EcodePreview-frame"
          title={`Preview of ${name}`}
          src={preview.url}
          sandbox={previewSandbox(preview.url, preview.own_origin)}
          referrerPolicy="no-referrer"
        />
      ) : howToRun && !preview ? (
        <HowToRun
          how={howToRun}
          workspace={props.workspace ?? ''}
          openFile={props.openFile}
        />
      ) : (
        <p className="jp-EcodeField-help jp-EcodePreview-empty">
          {starting
            ? 'Starting the app and waiting for it to answer…'
            : preview
              ? `The preview is ${preview.status}${preview.reason ? `: ${preview.reason}` : ''}.`
              : canEdit
                ? 'No preview is running. Start it to see the app here.'
                : 'No preview is running.'}
        </p>
      )}
    </div>
  );
}
