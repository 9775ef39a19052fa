/**
 * Deploy: releases (immutable snapshots) with the live one marked and rollback to any
 * other, the apps' logs, and the export (Dockerfile, Cloud Run service) to run it elsewhere.
 */
import * as React from 'react';

import { formatBytes, formatDate } from '../../format';
import { serverURL } from '../../handler';
import { ProjectSession } from '../../session';
import { CommandForm } from '../CommandForm';
import { LogView } from '../LogView';

export function DeployTab(props: {
  session: ProjectSession;
  confirm: (title: string, body: string) => Promise<boolean>;
}): JSX.Element {
  const { session } = props;
  const releases = session.releases;
  const live = session.liveRelease;
  const canEdit = session.project.role !== 'viewer';
  const deploying = session.busy.has('release');
  const apps = session.deployments.filter(d => d.live);
  const [logOf, setLogOf] = React.useState<string>('');
  const logTarget = apps.find(d => d.id === logOf) ?? live ?? apps[0] ?? null;
  const bundle = session.exportBundle;
  const download = serverURL(
    `api/ecode/projects/${encodeURIComponent(session.id)}/export?format=tar.gz`
  );

  const onRollback = async (id: string, number: number) => {
    if (
      await props.confirm(
        `Roll back to release #${number}?`,
        'It goes live once its health check passes; the current release stays available.'
      )
    ) {
      await session.rollback(id);
    }
  };

  return (
    <div className="jp-EcodeDeployTab">
      <div className="jp-EcodeToolbar" role="toolbar" aria-label="Releases">
        {canEdit && (
          <button
            type="button"
            className="jp-mod-styled jp-mod-accept jp-EcodeButton jp-EcodeButton-small"
            disabled={deploying}
            aria-busy={deploying}
            onClick={() => void session.deployRelease()}
          >
            {deploying ? 'Deploying…' : 'Deploy a release'}
          </button>
        )}
        {live?.entry_url && (
          <a
            className="jp-EcodeLink"
            href={live.entry_url}
            target="_blank"
            rel="noopener noreferrer"
          >
            Open the live app
          </a>
        )}
      </div>
      {session.errors.deploy && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {session.errors.deploy}
        </p>
      )}
      {canEdit && session.commandNeeded === 'release' && (
        <CommandForm
          initial={session.lastCommand}
          action="Deploy with this command"
          idPrefix={`jp-ecode-release-${session.id}`}
          busy={deploying}
          onSubmit={command => void session.deployRelease(command)}
        />
      )}
      <h3 className="jp-EcodePanel-sectionTitle">Releases</h3>
      {releases.length === 0 ? (
        <p className="jp-EcodeField-help">
          No releases yet. A release is a snapshot of the workspace that goes
          live once it answers its health check.
        </p>
      ) : (
        <table className="jp-EcodeReleases">
          <thead>
            <tr>
              <th scope="col">Release</th>
              <th scope="col">Made</th>
              <th scope="col">Files</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span className="jp-EcodeVisuallyHidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {releases.map(release => (
              <tr
                key={release.id}
                className={release.live ? 'jp-mod-live' : ''}
                data-release={release.number}
              >
                <th scope="row">#{release.number}</th>
                <td>
                  {formatDate(release.created_at)}
                  <span className="jp-EcodeField-help">
                    {' '}
                    by {release.created_by}
                  </span>
                </td>
                <td>
                  {release.file_count} · {formatBytes(release.total_bytes)}
                </td>
                <td>
                  {release.live ? (
                    <span className="jp-EcodeBadge jp-mod-ok">live</span>
                  ) : (
                    <span className="jp-EcodeBadge">{release.status}</span>
                  )}
                  {release.reason && (
                    <span className="jp-EcodeField-help">
                      {' '}
                      {release.reason}
                    </span>
                  )}
                </td>
                <td>
                  {canEdit && !release.live && release.status === 'ready' && (
                    <button
                      type="button"
                      className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
                      disabled={session.busy.has(`rollback:${release.id}`)}
                      onClick={() =>
                        void onRollback(release.id, release.number)
                      }
                      aria-label={`Roll back to release ${release.number}`}
                    >
                      Roll back
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3 className="jp-EcodePanel-sectionTitle">Logs</h3>
      {logTarget ? (
        <>
          {apps.length > 1 && (
            <label className="jp-EcodeField jp-EcodeField-inline">
              <span className="jp-EcodeField-label">App</span>
              <select
                className="jp-mod-styled jp-EcodeField-input"
                value={logTarget.id}
                onChange={event => setLogOf(event.target.value)}
              >
                {apps.map(app => (
                  <option key={app.id} value={app.id}>
                    {app.kind === 'preview'
                      ? 'Preview'
                      : `Live release #${app.release?.number ?? '?'}`}
                  </option>
                ))}
              </select>
            </label>
          )}
          <LogView
            deploymentId={logTarget.id}
            label={`Log of the ${logTarget.kind === 'preview' ? 'preview' : 'live release'}`}
          />
        </>
      ) : (
        <p className="jp-EcodeField-help">
          No app is running, so there is no log to show.
        </p>
      )}
      <h3 className="jp-EcodePanel-sectionTitle">Export</h3>
      <p className="jp-EcodeField-help">
        A Dockerfile and a Cloud Run service to run the app elsewhere.
      </p>
      <div className="jp-EcodeToolbar">
        <button
          type="button"
          className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
          disabled={session.busy.has('export')}
          onClick={() => void session.loadExport()}
        >
          {bundle ? 'Refresh export' : 'Show export files'}
        </button>
        <a className="jp-EcodeLink" href={download} download>
          Download the build context (.tar.gz)
        </a>
      </div>
      {bundle && (
        <div className="jp-EcodeExport">
          <p className="jp-EcodeField-help">
            Runs: <code className="jp-EcodeCode">{bundle.command}</code> ·{' '}
            {bundle.context.length} files in the build context
          </p>
          {bundle.notes.map((note, i) => (
            <p key={i} className="jp-EcodeNotice jp-mod-info">
              {note}
            </p>
          ))}
          {Object.entries(bundle.files).map(([name, text]) => (
            <details key={name} className="jp-EcodeExport-file">
              <summary>{name}</summary>
              <pre className="jp-EcodeCall-output" tabIndex={0}>
                {text}
              </pre>
            </details>
          ))}
        </div>
      )}
    </div>
  );
}
