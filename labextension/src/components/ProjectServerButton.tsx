/**
 * "Open in its server": on a JupyterHub whose ecode service gives each project a server of
 * its own (`/user/{owner}/ecode-{slug}/`, shared with the project's members), a button in
 * the project view's header that starts it when stopped and opens its Lab in a new tab.
 * Elsewhere (one server, or a hub without project servers) the server answers no
 * `projects/{id}/server` and the button is not shown.
 */
import * as React from 'react';

import { IProjectServer } from '../api';

export interface IProjectServerApi {
  get: (projectId: string) => Promise<IProjectServer>;
  open: (projectId: string) => Promise<IProjectServer>;
  /** Where the opened Lab goes (a new tab by default). */
  visit: (url: string) => void;
}

export function ProjectServerButton(props: {
  projectId: string;
  api: IProjectServerApi;
}): JSX.Element | null {
  const { projectId, api } = props;
  const [server, setServer] = React.useState<IProjectServer | null>(null);
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState('');
  React.useEffect(() => {
    let live = true;
    api.get(projectId).then(
      found => live && setServer(found),
      () => live && setServer(null)
    );
    return () => {
      live = false;
    };
  }, [projectId, api]);
  if (server === null) {
    return null;
  }
  const onClick = async (): Promise<void> => {
    setBusy(true);
    setError('');
    try {
      // Starting a stopped server takes as long as the hub's spawn: say so meanwhile.
      const opened = await api.open(projectId);
      setServer(opened);
      api.visit(opened.url);
    } catch (reason) {
      setError(reason instanceof Error ? reason.message : String(reason));
    } finally {
      setBusy(false);
    }
  };
  const state = server.ready ? 'running' : (server.pending ?? 'stopped');
  return (
    <span className="jp-EcodeProjectServer">
      <button
        type="button"
        className="jp-Button jp-mod-styled jp-mod-reject"
        onClick={() => void onClick()}
        disabled={busy}
        title={`The project's own Lab, shared with its members (${state})`}
        data-state={state}
      >
        {busy ? 'Starting its server…' : 'Open in its server'}
      </button>
      {error && (
        <span className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {error}
        </span>
      )}
    </span>
  );
}
