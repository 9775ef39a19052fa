/**
 * Preview: the running app in a sandboxed frame (scripts and forms, never the Jupyter
 * origin's cookies or DOM: no allow-same-origin, but on a preview origin of its own), with
 * an address bar (back, reload, path, open in a new tab), restart and stop.
 */
import * as React from 'react';

import { IHowToRun, IProject, ITemplate } from '../../api';
import {
  addressFor,
  appRoot,
  canGoBack,
  current,
  goBack,
  IPreviewHistory,
  navigate,
  pathInApp,
  startHistory
} from '../../previewAddress';
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

/**
 * Back, reload, the path within the app (type one and press Enter) and open in a new tab.
 * The frame's own navigation is invisible to the lab (opaque origin), so the bar shows and
 * walks back through the addresses it sent the frame to.
 */
function AddressBar(props: {
  history: IPreviewHistory;
  root: string;
  onNavigate: (url: string) => void;
  onBack: () => void;
  onReload: () => void;
}): JSX.Element {
  const { history, root } = props;
  const url = current(history);
  const shown = pathInApp(url, root);
  const [typed, setTyped] = React.useState(shown);
  // A back or a new preview changes the address: the box follows it.
  React.useEffect(() => setTyped(shown), [shown]);
  return (
    <form
      className="jp-EcodePreview-address"
      role="search"
      aria-label="Preview address"
      onSubmit={event => {
        event.preventDefault();
        const target = addressFor(root, typed);
        setTyped(pathInApp(target, root));
        props.onNavigate(target);
      }}
    >
      <button
        type="button"
        className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
        aria-label="Back"
        title="Back"
        disabled={!canGoBack(history)}
        onClick={props.onBack}
      >
        ←
      </button>
      <button
        type="button"
        className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
        aria-label="Reload"
        title="Reload"
        onClick={props.onReload}
      >
        ⟳
      </button>
      <input
        className="jp-EcodePreview-path"
        type="text"
        aria-label="Path in the app"
        spellCheck={false}
        value={typed}
        onChange={event => setTyped(event.target.value)}
      />
      <button
        type="button"
        className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
        aria-label="Open in a new tab"
        title="Open in a new tab"
        onClick={() => window.open(url, '_blank', 'noopener')}
      >
        ↗
      </button>
    </form>
  );
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
  const previewUrl = preview?.url ?? null;
  const [history, setHistory] = React.useState<IPreviewHistory | null>(
    previewUrl ? startHistory(previewUrl) : null
  );
  // A new or restarted preview (another URL) starts the bar's history afresh.
  React.useEffect(
    () => setHistory(previewUrl ? startHistory(previewUrl) : null),
    [previewUrl]
  );
  const shownUrl =
    history && previewUrl && history.entries[0] === previewUrl
      ? current(history)
      : previewUrl;
  return (
    <div className="jp-EcodePreviewTab">
      <div className="jp-EcodeToolbar" role="toolbar" aria-label="Preview">
        <span
          className={`jp-EcodeBadge jp-mod-${preview ? preview.status : 'stopped'}`}
          data-status={preview?.status ?? 'none'}
        >
          {starting ? 'starting…' : preview ? preview.status : 'not running'}
        </span>
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
      {preview && previewUrl && history && (
        <AddressBar
          history={history}
          root={appRoot(previewUrl)}
          onNavigate={url => {
            setHistory(h => (h ? navigate(h, url) : startHistory(url)));
            // The same address again: the app may have moved on inside the frame.
            setReloads(n => n + 1);
          }}
          onBack={() => setHistory(h => (h ? goBack(h) : h))}
          onReload={() => setReloads(n => n + 1)}
        />
      )}
      {preview && previewUrl && shownUrl ? (
        <iframe
          key={`${preview.id}:${reloads}`}
          className="jp-EcodePreview-frame"
          title={`Preview of ${name}`}
          src={shownUrl}
          sandbox={previewSandbox(previewUrl, preview.own_origin)}
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
