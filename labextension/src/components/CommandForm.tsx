/**
 * Asks how to start the app, when the server could not tell (no template, no Procfile, no
 * framework it recognises): a command with `{port}` where the port goes, pre-filled with
 * the command the app last ran with.
 */
import * as React from 'react';

export function CommandForm(props: {
  initial: string;
  action: string;
  idPrefix: string;
  busy: boolean;
  onSubmit: (command: string) => void;
}): JSX.Element {
  const [command, setCommand] = React.useState(props.initial);
  const id = `${props.idPrefix}-command`;
  return (
    <form
      className="jp-EcodeCommandForm"
      onSubmit={event => {
        event.preventDefault();
        if (command.trim()) {
          props.onSubmit(command.trim());
        }
      }}
    >
      <label className="jp-EcodeField" htmlFor={id}>
        <span className="jp-EcodeField-label">Command that starts the app</span>
        <input
          id={id}
          className="jp-mod-styled jp-EcodeField-input jp-EcodeCode"
          value={command}
          placeholder="python -m flask --app app run --port {port}"
          onChange={event => setCommand(event.target.value)}
          aria-describedby={`${id}-help`}
        />
      </label>
      <p id={`${id}-help`} className="jp-EcodeField-help">
        Write <code>{'{port}'}</code> where the port to listen on goes.
      </p>
      <button
        type="submit"
        className="jp-mod-styled jp-mod-accept jp-EcodeButton jp-EcodeButton-small"
        disabled={props.busy || !command.trim()}
      >
        {props.action}
      </button>
    </form>
  );
}
