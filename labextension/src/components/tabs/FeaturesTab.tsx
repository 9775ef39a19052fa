/**
 * Features: what was asked, the agent's plan with which parts are done and tested, the
 * project's test result, and the earlier runs.
 */
import * as React from 'react';

import { IRun } from '../../api';
import { IFeedState, planChecklist } from '../../feedState';
import {
  formatCredits,
  formatDate,
  OFFLINE_NOTICE,
  runEndAdvice
} from '../../format';
import { PlanChecklist } from '../Plan';

export function FeaturesTab(props: {
  state: IFeedState | null;
  runs: readonly IRun[];
}): JSX.Element {
  const { state, runs } = props;
  if (!state) {
    return (
      <p className="jp-EcodeField-help">
        No runs yet. Describe what you want in the E-Code sidebar.
      </p>
    );
  }
  const items = planChecklist(state);
  const tests = state.tests;
  const advice = state.end
    ? runEndAdvice(state.end.status, state.end.reason)
    : null;
  const message = state.end?.summary?.message;
  return (
    <div className="jp-EcodeFeaturesTab">
      <section aria-labelledby="ecode-features-asked">
        <h3 id="ecode-features-asked" className="jp-EcodePanel-sectionTitle">
          What was asked
        </h3>
        <blockquote className="jp-EcodeQuote">{state.prompt ?? ''}</blockquote>
        <p className="jp-EcodeField-help">
          {state.provider ?? 'unknown provider'}
          {state.model && state.model !== state.provider
            ? ` · ${state.model}`
            : ''}{' '}
          · {formatCredits(state.costMicros)}
        </p>
        {state.ai === false && (
          <p className="jp-EcodeNotice jp-mod-info">{OFFLINE_NOTICE}</p>
        )}
      </section>
      <section aria-labelledby="ecode-features-plan">
        <h3 id="ecode-features-plan" className="jp-EcodePanel-sectionTitle">
          Plan
        </h3>
        {items.length ? (
          <PlanChecklist items={items} showTested label="Features" />
        ) : (
          <p className="jp-EcodeField-help">
            The agent has not made a plan yet.
          </p>
        )}
      </section>
      <section aria-labelledby="ecode-features-tests">
        <h3 id="ecode-features-tests" className="jp-EcodePanel-sectionTitle">
          Tests
        </h3>
        {tests ? (
          <div
            className={`jp-EcodeTests jp-mod-${tests.passed ? 'ok' : 'error'}`}
          >
            <p>
              <span
                className={`jp-EcodeBadge jp-mod-${tests.passed ? 'ok' : 'error'}`}
              >
                {tests.passed ? 'passing' : 'failing'}
              </span>{' '}
              <code className="jp-EcodeCode">{tests.command}</code> —{' '}
              {tests.summary}
            </p>
            {tests.outputTail && (
              <details>
                <summary>Test output</summary>
                <pre className="jp-EcodeCall-output" tabIndex={0}>
                  {tests.outputTail}
                </pre>
              </details>
            )}
          </div>
        ) : (
          <p className="jp-EcodeField-help">The tests have not run yet.</p>
        )}
      </section>
      {state.end && (
        <section aria-labelledby="ecode-features-result">
          <h3 id="ecode-features-result" className="jp-EcodePanel-sectionTitle">
            Result
          </h3>
          <p>
            <strong>{state.end.status}</strong> — {state.end.message}
          </p>
          {typeof message === 'string' && message && (
            <p className="jp-EcodeMessageRow">{message}</p>
          )}
          {advice && <p className="jp-EcodeEnd-advice">{advice}</p>}
        </section>
      )}
      {runs.length > 1 && (
        <section aria-labelledby="ecode-features-runs">
          <h3 id="ecode-features-runs" className="jp-EcodePanel-sectionTitle">
            Runs
          </h3>
          <ul className="jp-EcodeRuns">
            {runs.map(run => (
              <li key={run.id}>
                <span className={`jp-EcodeBadge jp-mod-${run.status}`}>
                  {run.status}
                </span>{' '}
                {run.prompt.length > 80
                  ? `${run.prompt.slice(0, 77)}…`
                  : run.prompt}{' '}
                <span className="jp-EcodeField-help">
                  {formatDate(run.created_at)} ·{' '}
                  {formatCredits(run.cost_micros)}
                </span>
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}
