/**
 * An app's log, streamed over `WS deployments/{id}/logs` through the same feed client as
 * run feeds (replay after the last line seen, reconnect), keeping the last lines.
 */
import * as React from 'react';

import { appendLogLines, emptyLog, FeedClient, ILogState } from '../feed';
import { websocketURL } from '../handler';
import { ILogLine } from '../api';

// Terminal colours mean nothing in a <pre>; drop them.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

export function LogView(props: {
  deploymentId: string;
  label: string;
}): JSX.Element {
  const { deploymentId } = props;
  const [log, setLog] = React.useState<ILogState>(emptyLog);
  const [connection, setConnection] = React.useState('connecting');
  const pre = React.useRef<HTMLPreElement>(null);
  const following = React.useRef(true);

  React.useEffect(() => {
    setLog(emptyLog());
    const client = new FeedClient<ILogLine, ILogState>({
      url: after =>
        websocketURL(`deployments/${encodeURIComponent(deploymentId)}/logs`, {
          after
        }),
      reduce: appendLogLines,
      seqOf: state => state.lastSeq,
      isDone: () => false,
      initial: emptyLog(),
      stopOnCleanClose: true,
      maxAttempts: 5
    });
    client.changed.connect((_, state) => setLog(state));
    client.connectionChanged.connect((_, state) => setConnection(state));
    client.start();
    return () => client.dispose();
  }, [deploymentId]);

  React.useLayoutEffect(() => {
    const node = pre.current;
    if (node && following.current) {
      node.scrollTop = node.scrollHeight;
    }
  }, [log]);

  return (
    <div className="jp-EcodeLog">
      <pre
        ref={pre}
        className="jp-EcodeLog-lines"
        role="log"
        aria-label={props.label}
        tabIndex={0}
        onScroll={() => {
          const node = pre.current;
          if (node) {
            following.current =
              node.scrollTop + node.clientHeight >= node.scrollHeight - 16;
          }
        }}
      >
        {log.dropped > 0 && `… ${log.dropped} earlier lines\n`}
        {log.lines.map(line => (
          <span
            key={line.seq}
            className={`jp-EcodeLog-line jp-mod-${line.stream}`}
          >
            {line.text.replace(ANSI, '')}
            {'\n'}
          </span>
        ))}
      </pre>
      <p className="jp-EcodeField-help">
        {connection === 'open'
          ? 'Live.'
          : connection === 'closed'
            ? 'The app stopped; this is its last output.'
            : connection === 'error'
              ? 'The log is not available.'
              : 'Connecting…'}
      </p>
    </div>
  );
}
