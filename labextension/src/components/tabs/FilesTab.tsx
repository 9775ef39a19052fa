/**
 * Files: the workspace in Lab's file browser, and the files the agent changed in the latest
 * run — each opens in an editor, and its diff unfolds here.
 */
import * as React from 'react';

import { IFeedState, IFileStat } from '../../feedState';
import { DiffView } from '../FeedRows';

export interface IFilesTabProps {
  workspace: string;
  state: IFeedState | null;
  /** Navigate Lab's file browser to a folder; `reveal` also brings the browser forward. */
  showInBrowser: (path: string, reveal: boolean) => void;
  openFile: (path: string) => void;
}

const ACTION_WORDS: Record<string, string> = {
  created: 'new',
  modified: 'changed',
  deleted: 'deleted'
};

export function FilesTab(props: IFilesTabProps): JSX.Element {
  const { workspace, state, showInBrowser } = props;
  const [open, setOpen] = React.useState<ReadonlySet<string>>(new Set());
  // Opening the tab takes the file browser to the workspace, without taking the sidebar
  // away from the feed; the button below brings the browser forward.
  React.useEffect(() => {
    showInBrowser(workspace, false);
  }, [workspace, showInBrowser]);
  const files = state?.files ?? [];
  const toggle = React.useCallback(
    (path: string) =>
      setOpen(old => {
        const next = new Set(old);
        if (!next.delete(path)) {
          next.add(path);
        }
        return next;
      }),
    []
  );
  return (
    <div className="jp-EcodeFilesTab">
      <p className="jp-EcodeTab-intro">
        Workspace: <code className="jp-EcodeCode">{workspace}</code>{' '}
        <button
          type="button"
          className="jp-mod-styled jp-EcodeButton jp-EcodeButton-small"
          onClick={() => showInBrowser(workspace, true)}
        >
          Show in file browser
        </button>
      </p>
      <h3 className="jp-EcodePanel-sectionTitle">
        Changed by the agent{files.length ? ` (${files.length})` : ''}
      </h3>
      {files.length === 0 ? (
        <p className="jp-EcodeField-help">
          {state
            ? 'The latest run has not changed any files yet.'
            : 'No runs yet.'}
        </p>
      ) : (
        <ul
          className="jp-EcodeChangedFiles"
          aria-label="Files changed by the agent"
        >
          {files.map(file => (
            <ChangedFile
              key={file.path}
              file={file}
              workspace={workspace}
              open={open.has(file.path)}
              onToggle={toggle}
              openFile={props.openFile}
            />
          ))}
        </ul>
      )}
    </div>
  );
}

/** One changed file; memoized, since a run's file entries keep their identity until they change. */
function ChangedFileBody(props: {
  file: IFileStat;
  workspace: string;
  open: boolean;
  onToggle: (path: string) => void;
  openFile: (path: string) => void;
}): JSX.Element {
  const { file, open } = props;
  return (
    <li
      className={`jp-EcodeChangedFile jp-mod-${file.action}`}
      data-path={file.path}
    >
      <span className={`jp-EcodeBadge jp-mod-${file.action}`}>
        {ACTION_WORDS[file.action] ?? file.action}
      </span>
      {file.action === 'deleted' ? (
        <span className="jp-EcodeChangedFile-path">{file.path}</span>
      ) : (
        <button
          type="button"
          className="jp-EcodeLinkButton jp-EcodeChangedFile-path"
          onClick={() => props.openFile(`${props.workspace}/${file.path}`)}
          title={`Open ${file.path}`}
        >
          {file.path}
        </button>
      )}
      <span className="jp-EcodeFileChip-add">+{file.added}</span>
      <span className="jp-EcodeFileChip-del">−{file.removed}</span>
      {file.diff && (
        <button
          type="button"
          className="jp-EcodeLinkButton"
          aria-expanded={open}
          onClick={() => props.onToggle(file.path)}
        >
          {open ? 'Hide diff' : 'Diff'}
        </button>
      )}
      {open && <DiffView diff={file.diff} label={`Diff of ${file.path}`} />}
    </li>
  );
}

const ChangedFile = React.memo(ChangedFileBody);
