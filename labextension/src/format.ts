/**
 * Words and numbers for people: credits, token counts, durations, and — most of all — server
 * errors and run endings said as what to do next.
 */
import type { IModelPrice } from './api';

export const MICROS_PER_CREDIT = 1_000_000;

/** Micro-credits as credits: 1_250_000 → "1.25 credits"; tiny amounts keep 2 significant digits. */
export function formatCredits(micros: number | null | undefined): string {
  const value = (micros ?? 0) / MICROS_PER_CREDIT;
  let text: string;
  if (value === 0) {
    text = '0';
  } else if (Math.abs(value) >= 0.01) {
    text = value.toFixed(2).replace(/\.?0+$/, '');
  } else {
    text = value.toPrecision(2).replace(/\.?0+$/, '');
  }
  return `${text} ${text === '1' ? 'credit' : 'credits'}`;
}

/** 12345 → "12.3k", 2_500_000 → "2.5M". */
export function formatTokens(count: number): string {
  if (count < 1000) {
    return String(count);
  }
  if (count < 1_000_000) {
    return `${(count / 1000).toFixed(count < 10_000 ? 1 : 0)}k`;
  }
  return `${(count / 1_000_000).toFixed(1)}M`;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  if (bytes < 1024 * 1024) {
    return `${(bytes / 1024).toFixed(1)} KB`;
  }
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A date the way the user's locale writes it, or the raw text if it does not parse. */
export function formatDate(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/**
 * What a "typical" agent run uses, for the estimate beside the model picker: a few dozen
 * turns re-reading a growing context. Real runs vary; the run's feed shows the real cost.
 */
export const TYPICAL_RUN = { inputTokens: 300_000, outputTokens: 30_000 };

/** The estimated cost of a typical run with a model, in micro-credits (0 for free models). */
export function estimateRunMicros(price: IModelPrice | undefined): number {
  if (!price || price.free) {
    return 0;
  }
  return Math.round(
    (TYPICAL_RUN.inputTokens * price.input +
      TYPICAL_RUN.outputTokens * price.output) /
      1_000_000
  );
}

/** The error shape this module needs (an `EcodeApiError`, or anything with these). */
export interface IErrorLike {
  message?: string;
  status?: number;
  code?: string;
  field?: string;
}

/**
 * How to tell that a project could not be opened. A view Lab restores from the last session
 * whose project was deleted (or unshared) elsewhere meanwhile is expected, not an error: a
 * quiet notice, once, instead of a modal on every load; anything else stays a dialog.
 */
export function openFailure(
  which: string,
  error: unknown,
  restoring: boolean
): { quiet: boolean; title: string; body: string } {
  const e = (error ?? {}) as IErrorLike;
  if (restoring && (e.code === 'not_found' || e.status === 404)) {
    return {
      quiet: true,
      title: `${which}`,
      body: `The project ${which} you had open is gone (deleted, or no longer shared with you); its view was closed.`
    };
  }
  return {
    quiet: false,
    title: `Cannot open ${which}`,
    body: adviceFor(error)
  };
}

/**
 * A server error said as what to do next. The server's own message is kept when it is
 * already specific (bad input names the field); the known situations get a next step.
 */
export function adviceFor(error: unknown): string {
  const e = (error ?? {}) as IErrorLike;
  const message = e.message || String(error);
  switch (e.code) {
    case 'insufficient_credits':
      return 'Out of credits — ask your admin for more, or pick the free offline model.';
    case 'rate_limited':
      return 'Too many requests right now — wait a minute, then try again.';
    case 'not_authenticated':
      return 'Your Jupyter login has ended — reload the page to log in again.';
    case 'network_error':
      return 'Cannot reach the Jupyter server — check that it is running, then try again.';
    case 'forbidden':
      return `${message} — ask the project's owner for the editor role.`;
    case 'conflict':
      if (/active run/.test(message)) {
        return 'This project already has a run going — wait for it to finish or cancel it first.';
      }
      return message;
    default:
      break;
  }
  if (e.status === 402) {
    return 'Out of credits — ask your admin for more, or pick the free offline model.';
  }
  if (
    e.field === 'model' ||
    /\bprice\b|unknown model|unpriced/i.test(message)
  ) {
    return `${message} — pick another model, or leave the model on the server's default.`;
  }
  return message;
}

/** The next step after a run ended the way it did; null for a plain success. */
export function runEndAdvice(
  status: string,
  reason: string | null
): string | null {
  if (status === 'completed') {
    return null;
  }
  if (status === 'cancelled') {
    return 'Cancelled. Continue the run to pick up where it stopped.';
  }
  if (status === 'interrupted') {
    return 'The server stopped during this run — continue it to resume.';
  }
  switch (reason) {
    case 'insufficient_credits':
    case 'budget_exceeded':
      return 'Out of credits — ask your admin for more, or continue with the free offline model.';
    case 'max_steps':
    case 'max_tokens':
    case 'max_wall_time':
    case 'max_cost':
      return 'The run reached one of its limits — continue it to keep going.';
    case 'tests_failing':
      return "The project's tests still fail — look at the output, then ask for a fix.";
    case 'provider_error':
      return 'The model provider failed — try again later, or pick another model.';
    case 'refused':
      return 'The model declined this request — rephrase it and start a new run.';
    default:
      return 'The run failed — read the last steps above, then continue it or ask for a fix.';
  }
}

/** The banner shown when the offline provider builds instead of a model. */
export const OFFLINE_NOTICE =
  'No model configured — using offline templates (no AI). An admin can set ANTHROPIC_API_KEY or OPENAI_API_KEY on the server.';
