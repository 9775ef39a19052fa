/**
 * The prompt box: "Describe the app you want…", a model picker with what a run may cost,
 * and (under "More options") a name and a template. A prompt starts the agent at once.
 */
import * as React from 'react';

import {
  IAccount,
  IAgentModels,
  IModelPrice,
  IProject,
  ITemplate,
  pickableModels
} from '../api';
import { adviceFor, estimateRunMicros, formatCredits } from '../format';
import { EcodeApiError } from '../handler';
import { IEcodeSettings, ProjectsModel } from '../model';

/** The line under the model picker: what a run may cost, and what the user has. */
export function costHint(
  model: string,
  prices: readonly IModelPrice[],
  account: IAccount | null,
  agent: IAgentModels | null
): string {
  const name = model || agent?.default.model || '';
  const price = prices.find(p => p.model === name);
  const have = account
    ? ` · you have ${formatCredits(account.available_micros)}`
    : '';
  if (name === 'offline' || (price && price.free)) {
    return name === 'offline'
      ? 'Free — offline templates, no AI.'
      : `Free — ${name} costs no credits.`;
  }
  if (!price) {
    return model
      ? `No price is known for ${model}; the server may refuse it${have}.`
      : `The server picks the model; the feed shows the cost as it runs${have}.`;
  }
  return `≈ ${formatCredits(estimateRunMicros(price))} for a typical run with ${name}${have}.`;
}

export interface IPromptFormProps {
  model: ProjectsModel;
  templates: readonly ITemplate[];
  prices: readonly IModelPrice[];
  account: IAccount | null;
  agent: IAgentModels | null;
  settings: IEcodeSettings;
  /** Prefix for element ids, so labels stay tied to their fields if two panels exist. */
  idPrefix: string;
  /** Ask before a run that may cost credits; resolves to go / no go. */
  confirmRun: (model: string) => Promise<boolean>;
  onCreated: (project: IProject) => void;
}

export function PromptForm(props: IPromptFormProps): JSX.Element {
  const { model, templates, prices, settings, idPrefix } = props;
  const [prompt, setPrompt] = React.useState('');
  const [modelName, setModelName] = React.useState<string | null>(null);
  const [name, setName] = React.useState('');
  const [template, setTemplate] = React.useState('');
  // Plan first: the agent's plan waits in the feed for approval before anything is written.
  const [planFirst, setPlanFirst] = React.useState(false);
  const [busy, setBusy] = React.useState(false);
  const [error, setError] = React.useState<string | null>(null);
  const [invalidField, setInvalidField] = React.useState<string | null>(null);
  const [status, setStatus] = React.useState('');
  const [moreOpen, setMoreOpen] = React.useState(false);
  const promptRef = React.useRef<HTMLTextAreaElement>(null);
  const nameRef = React.useRef<HTMLInputElement>(null);
  // Bumped to move focus once the fields are enabled again (focus() on a disabled field
  // does nothing, and the fields are disabled while a request is in flight).
  const [focus, setFocus] = React.useState<{ field: string; n: number } | null>(
    null
  );
  React.useEffect(() => {
    if (focus) {
      (focus.field === 'name' ? nameRef : promptRef).current?.focus();
    }
  }, [focus]);

  // The picker follows the setting until the user picks something themselves.
  const chosen = modelName ?? settings.defaultModel;
  const selected = templates.find(t => t.id === template);
  // Only what this user may pick (the admin's allow-list); the server enforces it too.
  const pickable = pickableModels(prices, props.agent);
  const known = new Set(pickable.map(p => p.model));
  const defaultLabel = props.agent
    ? `Server default (${props.agent.default.model})`
    : 'Server default';

  const onSubmit = async (event: React.FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    if (busy) {
      return;
    }
    const text = prompt.trim();
    if (!text && !name.trim()) {
      setError('Describe the app you want (or give an empty project a name).');
      setInvalidField('prompt');
      setStatus('');
      promptRef.current?.focus();
      return;
    }
    if (text && !(await props.confirmRun(chosen))) {
      return;
    }
    setBusy(true);
    setError(null);
    setInvalidField(null);
    setStatus('Creating…');
    try {
      const project = await model.create({
        name: name.trim() || undefined,
        template: template || undefined,
        prompt: text || undefined,
        model: text ? chosen : undefined,
        mode: planFirst ? 'plan' : undefined
      });
      setPrompt('');
      setName('');
      const started = project.run ? ' The agent has started.' : '';
      setStatus(
        `Created “${project.name}” (@${project.owner}/${project.slug}).${started}`
      );
      setFocus(f => ({ field: 'prompt', n: (f?.n ?? 0) + 1 }));
      props.onCreated(project);
    } catch (reason) {
      const field = reason instanceof EcodeApiError ? reason.field : undefined;
      setError(adviceFor(reason));
      setInvalidField(field ?? null);
      setStatus('');
      // Leave the fields as typed so the user can fix the one the server complained about.
      if (field === 'name' || field === 'template') {
        setMoreOpen(true);
      }
      setFocus(f => ({
        field: field === 'name' ? 'name' : 'prompt',
        n: (f?.n ?? 0) + 1
      }));
    } finally {
      setBusy(false);
    }
  };

  const errorId = `${idPrefix}-create-error`;
  const describedBy = (field: string, help?: string) =>
    [help, invalidField === field ? errorId : undefined]
      .filter(Boolean)
      .join(' ') || undefined;
  return (
    <form
      className="jp-EcodeCreateForm"
      aria-label="New app"
      onSubmit={onSubmit}
      noValidate
    >
      <label className="jp-EcodeField" htmlFor={`${idPrefix}-prompt`}>
        <span className="jp-EcodeVisuallyHidden">
          Describe the app you want
        </span>
        <textarea
          id={`${idPrefix}-prompt`}
          ref={promptRef}
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
          aria-describedby={describedBy('prompt', `${idPrefix}-prompt-help`)}
        />
      </label>
      <p id={`${idPrefix}-prompt-help`} className="jp-EcodeField-help">
        The agent plans, writes, tests and previews it. Ctrl+Enter creates.
      </p>
      <label className="jp-EcodeField" htmlFor={`${idPrefix}-model`}>
        <span className="jp-EcodeField-label">Model</span>
        <select
          id={`${idPrefix}-model`}
          name="model"
          className="jp-mod-styled jp-EcodeField-input"
          value={chosen}
          onChange={event => setModelName(event.target.value)}
          disabled={busy}
          aria-invalid={invalidField === 'model'}
          aria-describedby={describedBy('model', `${idPrefix}-cost`)}
        >
          <option value="">{defaultLabel}</option>
          {chosen && !known.has(chosen) && (
            <option value={chosen}>{chosen}</option>
          )}
          {pickable.map(p => (
            <option key={p.model} value={p.model}>
              {p.model}
              {p.free ? ' (free)' : ''}
            </option>
          ))}
        </select>
      </label>
      <p id={`${idPrefix}-cost`} className="jp-EcodeField-help jp-EcodeCost">
        {costHint(chosen, prices, props.account, props.agent)}
      </p>
      <details
        className="jp-EcodeCreateForm-more"
        open={moreOpen}
        onToggle={event =>
          setMoreOpen((event.target as HTMLDetailsElement).open)
        }
      >
        <summary>More options</summary>
        <label className="jp-EcodeField" htmlFor={`${idPrefix}-name`}>
          <span className="jp-EcodeField-label">Name</span>
          <input
            id={`${idPrefix}-name`}
            ref={nameRef}
            name="name"
            className="jp-mod-styled jp-EcodeField-input"
            type="text"
            autoComplete="off"
            placeholder="From the prompt"
            value={name}
            onChange={event => setName(event.target.value)}
            disabled={busy}
            aria-invalid={invalidField === 'name'}
            aria-describedby={describedBy('name')}
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
            aria-describedby={describedBy(
              'template',
              selected ? `${idPrefix}-template-help` : undefined
            )}
          >
            <option value="">Chosen from the prompt</option>
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
        <label className="jp-EcodeField-check" htmlFor={`${idPrefix}-plan`}>
          <input
            id={`${idPrefix}-plan`}
            name="plan-first"
            type="checkbox"
            checked={planFirst}
            onChange={event => setPlanFirst(event.target.checked)}
            disabled={busy}
          />{' '}
          Plan first: approve the agent's plan before anything is written
        </label>
      </details>
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
