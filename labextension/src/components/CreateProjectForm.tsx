/**
 * The "New project" form: a name, an optional template and an optional prompt.
 */
import * as React from 'react';

import { ITemplate } from '../api';
import { EcodeApiError, messageOf } from '../handler';
import { IEcodeSettings, ProjectsModel } from '../model';

export interface ICreateProjectFormProps {
  model: ProjectsModel;
  templates: readonly ITemplate[];
  settings: IEcodeSettings;
  /** Prefix for element ids, so labels stay tied to their fields if two panels exist. */
  idPrefix: string;
}

/** The project form; Enter in the name field or the button submits it. */
export function CreateProjectForm(props: ICreateProjectFormProps): JSX.Element {
  const { model, templates, settings, idPrefix } = props;
  const [name, setName] = React.useState('');
  const [template, setTemplate] = React.useState('');
  const [prompt, setPrompt] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  // The field an error is about, so that field (and only it) is marked invalid.
  const [invalidField, setInvalidField] = React.useState<string | null>(null);
  const [status, setStatus] = React.useState('');
  const nameRef = React.useRef<HTMLInputElement>(null);
  // Bumped to move focus to the name field once it is enabled again (focus() on a disabled
  // input does nothing, and the field is disabled while a request is in flight).
  const [focusName, setFocusName] = React.useState(0);
  React.useEffect(() => {
    if (focusName) {
      nameRef.current?.focus();
    }
  }, [focusName]);

  const selected = templates.find(t => t.id === template);

  const onSubmit = async (event: React.FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    if (busy) {
      return;
    }
    const trimmed = name.trim();
    if (!trimmed) {
      setError('Give the project a name.');
      setInvalidField('name');
      setStatus('');
      nameRef.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    setInvalidField(null);
    setStatus('Creating…');
    try {
      const project = await model.create({
        name: trimmed,
        template: template || undefined,
        prompt: prompt.trim() || undefined
      });
      setName('');
      setPrompt('');
      const started = project.run
        ? ' The agent has started on your prompt.'
        : '';
      setStatus(
        `Created “${project.name}” (@${project.owner}/${project.slug}).${started}`
      );
      // Ready for the next one; the fields were disabled while busy, which drops focus.
      setFocusName(n => n + 1);
    } catch (reason) {
      const field = reason instanceof EcodeApiError ? reason.field : undefined;
      setError(messageOf(reason));
      setInvalidField(field ?? null);
      setStatus('');
      // Leave the fields as typed so the user can fix the one the server complained about.
      if (!field || field === 'name') {
        setFocusName(n => n + 1);
      }
    } finally {
      setBusy(false);
    }
  };

  const errorId = `${idPrefix}-create-error`;
  return (
    <form
      className="jp-EcodeCreateForm"
      aria-labelledby={`${idPrefix}-create-heading`}
      onSubmit={onSubmit}
      noValidate
    >
      <h3
        id={`${idPrefix}-create-heading`}
        className="jp-EcodePanel-sectionTitle"
      >
        New project
      </h3>
      <label className="jp-EcodeField" htmlFor={`${idPrefix}-name`}>
        <span className="jp-EcodeField-label">Name</span>
        <input
          id={`${idPrefix}-name`}
          ref={nameRef}
          name="name"
          className="jp-mod-styled jp-EcodeField-input"
          type="text"
          autoComplete="off"
          placeholder="my-app"
          value={name}
          required
          aria-required="true"
          aria-invalid={invalidField === 'name'}
          aria-describedby={invalidField === 'name' ? errorId : undefined}
          onChange={event => setName(event.target.value)}
          disabled={busy}
        />
      </label>
      <label className="jp-EcodeField" htmlFor={`${idPrefix}-template`}>
        <span className="jp-EcodeField-label">Template</span>
        <select
          id={`${idPrefix}-template`}
          name="template"
          className="jp-mod-styled jp-EcodeField-input"
          value={template}
          onChange={event => setTemplate(event.target.value)}
          disabled={busy}
          aria-invalid={invalidField === 'template'}
          aria-describedby={
            invalidField === 'template'
              ? errorId
              : selected
                ? `${idPrefix}-template-help`
                : undefined
          }
        >
          <option value="">Empty project</option>
          {templates.map(t => (
            <option key={t.id} value={t.id}>
              {t.title}
            </option>
          ))}
        </select>
      </label>
      {selected && (
        <p id={`${idPrefix}-template-help`} className="jp-EcodeField-help">
          {selected.description}
        </p>
      )}
      <label className="jp-EcodeField" htmlFor={`${idPrefix}-prompt`}>
        <span className="jp-EcodeField-label">Prompt (optional)</span>
        <textarea
          id={`${idPrefix}-prompt`}
          name="prompt"
          className="jp-mod-styled jp-EcodeField-input jp-EcodeField-prompt"
          placeholder="Describe the app you want…"
          rows={4}
          value={prompt}
          onChange={event => setPrompt(event.target.value)}
          onKeyDown={event => {
            // Ctrl/Cmd+Enter submits from the multi-line prompt, as in chat boxes.
            if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
              event.preventDefault();
              event.currentTarget.form?.requestSubmit();
            }
          }}
          disabled={busy}
          aria-invalid={invalidField === 'prompt'}
          aria-describedby={
            invalidField === 'prompt'
              ? `${idPrefix}-prompt-help ${errorId}`
              : `${idPrefix}-prompt-help`
          }
        />
      </label>
      <p id={`${idPrefix}-prompt-help`} className="jp-EcodeField-help">
        A prompt starts the agent as soon as the project exists
        {settings.defaultModel ? ` (model: ${settings.defaultModel})` : ''}.
        Ctrl+Enter creates.
      </p>
      <div className="jp-EcodeCreateForm-actions">
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept jp-EcodeButton"
          disabled={busy}
          aria-busy={busy}
        >
          {busy ? 'Creating…' : 'Create project'}
        </button>
      </div>
      {error && (
        <p
          id={errorId}
          className="jp-EcodeMessage jp-EcodeMessage-error"
          role="alert"
        >
          {error}
        </p>
      )}
      <p
        className="jp-EcodeMessage jp-EcodeMessage-status"
        role="status"
        aria-live="polite"
      >
        {status}
      </p>
    </form>
  );
}
