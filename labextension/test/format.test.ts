import { describe, expect, it } from 'vitest';

import { costHint } from '../src/components/PromptForm';
import {
  adviceFor,
  estimateRunMicros,
  formatCredits,
  formatTokens,
  openFailure,
  runEndAdvice
} from '../src/format';
import { EcodeApiError, errorFromResponse, websocketURL } from '../src/handler';
import { nameFromPrompt } from '../src/model';

const SONNET = {
  model: 'claude-sonnet-4-5',
  free: false,
  input: 3_000_000,
  output: 15_000_000
};
const OFFLINE = { model: 'offline', free: true, input: 0, output: 0 };
const ACCOUNT = {
  user: 'ann',
  balance_micros: 5e6,
  reserved_micros: 0,
  available_micros: 5e6
};

describe('server errors as what to do next', () => {
  it('turns out-of-credits into asking the admin', () => {
    const error = errorFromResponse(402, 'Payment Required', {
      error: { code: 'insufficient_credits', message: 'balance 0 < 12000' }
    });
    expect(adviceFor(error)).toBe(
      'Out of credits — ask your admin for more, or pick the free offline model.'
    );
  });

  it('explains a busy project, a rate limit, a lost login and a dead server', () => {
    expect(
      adviceFor(
        new EcodeApiError(
          'the project already has an active run (r1); cancel it first',
          409,
          'conflict'
        )
      )
    ).toMatch(/already has a run going/);
    expect(
      adviceFor(new EcodeApiError('slow down', 429, 'rate_limited'))
    ).toMatch(/wait a minute/);
    expect(adviceFor(new EcodeApiError('x', 401, 'not_authenticated'))).toMatch(
      /reload the page/
    );
    expect(adviceFor(new EcodeApiError('x', 0, 'network_error'))).toMatch(
      /Cannot reach/
    );
  });

  it('points a refused model at the picker', () => {
    const error = errorFromResponse(400, 'Bad Request', {
      error: {
        code: 'invalid_input',
        message: 'no price for model foo',
        details: { field: 'model' }
      }
    });
    expect(adviceFor(error)).toBe(
      "no price for model foo — pick another model, or leave the model on the server's default."
    );
  });

  it('keeps a specific message as it is', () => {
    expect(
      adviceFor(new EcodeApiError('name is too long', 400, 'invalid_input'))
    ).toBe('name is too long');
  });

  it('has a next step for every way a run ends badly', () => {
    expect(runEndAdvice('completed', null)).toBeNull();
    for (const reason of [
      'insufficient_credits',
      'max_steps',
      'tests_failing',
      'provider_error',
      null
    ]) {
      expect(runEndAdvice('failed', reason)).toBeTruthy();
    }
    expect(runEndAdvice('interrupted', 'server_stop')).toMatch(/continue it/);
  });
});

describe('numbers for people', () => {
  it('writes credits', () => {
    expect(formatCredits(1_250_000)).toBe('1.25 credits');
    expect(formatCredits(1_000_000)).toBe('1 credit');
    expect(formatCredits(0)).toBe('0 credits');
    expect(formatCredits(1234)).toBe('0.0012 credits');
    expect(formatTokens(12_345)).toBe('12k');
    expect(formatTokens(2_500_000)).toBe('2.5M');
  });

  it('estimates a typical run, free for free models', () => {
    // 300k in × 3 credits/M + 30k out × 15 credits/M = 0.9 + 0.45 credits.
    expect(estimateRunMicros(SONNET)).toBe(1_350_000);
    expect(estimateRunMicros(OFFLINE)).toBe(0);
  });

  it('says what a model may cost beside the picker', () => {
    expect(
      costHint('claude-sonnet-4-5', [SONNET, OFFLINE], ACCOUNT, null)
    ).toBe(
      '≈ 1.35 credits for a typical run with claude-sonnet-4-5 · you have 5 credits.'
    );
    expect(costHint('offline', [SONNET, OFFLINE], ACCOUNT, null)).toBe(
      'Free — offline templates, no AI.'
    );
    expect(costHint('', [SONNET], null, null)).toMatch(
      /^The server picks the model/
    );
    expect(
      costHint('', [SONNET], null, {
        default: { provider: 'anthropic', model: 'claude-sonnet-4-5' },
        providers: []
      })
    ).toMatch(/^≈ 1.35 credits/);
  });
});

describe('small helpers', () => {
  it('names a project after its prompt', () => {
    expect(nameFromPrompt('a Flask todo API with tests, please!')).toBe(
      'A Flask todo API with tests'
    );
    expect(nameFromPrompt('  ')).toBe('New app');
  });

  it('builds feed socket URLs, with the token only when the page asks for it', () => {
    const settings = {
      baseUrl: 'http://h/user/ann/',
      wsUrl: 'ws://h/user/ann/',
      token: 'secret',
      appendToken: false
    } as never;
    expect(websocketURL('runs/r1/events', { after: 7 }, settings)).toBe(
      'ws://h/user/ann/api/ecode/runs/r1/events?after=7'
    );
    const withToken = { ...(settings as object), appendToken: true } as never;
    expect(websocketURL('runs/r1/events', { after: 0 }, withToken)).toBe(
      'ws://h/user/ann/api/ecode/runs/r1/events?after=0&token=secret'
    );
  });
});

describe('a project that cannot be opened', () => {
  const gone = errorFromResponse(404, 'Not Found', {
    error: { code: 'not_found', message: 'no such project' }
  });

  it('is a quiet notice when a restored view finds its project deleted elsewhere', () => {
    const failure = openFailure('Todo', gone, true);
    expect(failure.quiet).toBe(true);
    expect(failure.body).toMatch(/Todo you had open is gone/);
  });

  it('stays a dialog when the person asked to open it', () => {
    const failure = openFailure('Todo', gone, false);
    expect(failure.quiet).toBe(false);
    expect(failure.title).toBe('Cannot open Todo');
  });

  it('stays a dialog for other failures while restoring', () => {
    const denied = errorFromResponse(403, 'Forbidden', {
      error: { code: 'forbidden', message: 'viewers may not' }
    });
    expect(openFailure('Todo', denied, true).quiet).toBe(false);
  });
});
