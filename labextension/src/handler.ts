/**
 * The one way this extension talks to the ecode server extension over REST.
 *
 * `ServerConnection` adds the token or XSRF header and the base URL (so JupyterHub's
 * `/user/<name>/` prefix works unchanged); this module adds the `api/ecode/` namespace and turns
 * the server's error shape `{"error": {"code", "message"}}` into an `EcodeApiError` whose
 * `message` can be shown to the user as is.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** URL namespace of every ecode REST endpoint, relative to the server's base URL. */
export const API_NAMESPACE = 'api/ecode';

/**
 * A failed call to the ecode REST API.
 *
 * `status` is the HTTP status (0 when the server could not be reached) and `code` the server's
 * machine-readable error code (for example `conflict` or `insufficient_credits`).
 */
export class EcodeApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly details: Record<string, unknown> = {}
  ) {
    super(message);
    this.name = 'EcodeApiError';
  }

  /** The request field the server blamed (`details.field`), if any. */
  get field(): string | undefined {
    const field = this.details.field;
    return typeof field === 'string' ? field : undefined;
  }
}

/** What a user should read when the server sent no usable message of its own. */
function fallbackMessage(status: number, statusText: string): string {
  switch (status) {
    case 401:
      return 'You are not logged in to Jupyter any more. Reload the page to log in again.';
    case 403:
      return 'You are not allowed to do that.';
    case 404:
      return 'Not found. Is the ecode server extension installed and enabled?';
    case 502:
    case 503:
    case 504:
      return 'The Jupyter server is not answering right now. Try again in a moment.';
    default:
      return `The server answered ${status}${statusText ? ` ${statusText}` : ''}.`;
  }
}

/**
 * Build the error for a non-2xx response from its parsed body.
 *
 * Besides ecode's own shape it understands jupyter_server's `{"message": ...}` (what a plain
 * `APIHandler` sends, e.g. for a missing XSRF token), so those are not reduced to a bare status.
 */
export function errorFromResponse(
  status: number,
  statusText: string,
  body: unknown
): EcodeApiError {
  let message: string | undefined;
  let code = `http_${status}`;
  let details: Record<string, unknown> = {};
  if (body !== null && typeof body === 'object') {
    const record = body as Record<string, unknown>;
    const error = record.error;
    if (error !== null && typeof error === 'object') {
      const detail = error as Record<string, unknown>;
      if (typeof detail.message === 'string' && detail.message) {
        message = detail.message;
      }
      if (typeof detail.code === 'string' && detail.code) {
        code = detail.code;
      }
      if (detail.details !== null && typeof detail.details === 'object') {
        details = detail.details as Record<string, unknown>;
      }
    } else if (typeof record.message === 'string' && record.message) {
      message = record.message;
    }
  }
  return new EcodeApiError(
    message ?? fallbackMessage(status, statusText),
    status,
    code,
    details
  );
}

/**
 * Call an ecode REST endpoint and return its decoded JSON body.
 *
 * @param endpoint - path below `api/ecode/`, e.g. `projects` or `projects/42/runs`
 * @param init - fetch options; a `body` should be a JSON string
 * @param settings - server settings; the page's own server by default
 * @returns the response body (`undefined` for an empty body such as a 204)
 * @throws EcodeApiError for a non-2xx status, an unreachable server or a non-JSON body
 */
export async function requestAPI<T>(
  endpoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endpoint);

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    console.warn('ecode: request to %s failed', url, error);
    throw new EcodeApiError(
      'Cannot reach the Jupyter server. Check that it is still running.',
      0,
      'network_error'
    );
  }

  const text = await response.text();
  let body: unknown = undefined;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      // An HTML error page (a proxy, or tornado's default) is still an error worth its status.
      if (response.ok) {
        throw new EcodeApiError(
          'The server sent a reply this page cannot read (not JSON).',
          response.status,
          'bad_response'
        );
      }
    }
  }

  if (!response.ok) {
    throw errorFromResponse(response.status, response.statusText, body);
  }
  return body as T;
}

/**
 * The WebSocket URL of an ecode endpoint, e.g. `runs/42/events` with `{ after: 7 }`.
 *
 * Same-origin sockets carry the login cookie; the token is added only where the page config
 * asks for it (`appendToken`), as Lab's own kernel sockets do.
 */
export function websocketURL(
  endpoint: string,
  query: Record<string, string | number> = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  const url = URLExt.join(settings.wsUrl, API_NAMESPACE, endpoint);
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    params.set(key, String(value));
  }
  if (settings.token && settings.appendToken) {
    params.set('token', settings.token);
  }
  const search = params.toString();
  return search ? `${url}?${search}` : url;
}

/** The page URL of a server path such as `api/ecode/projects/1/export` (for links). */
export function serverURL(
  path: string,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  return URLExt.join(settings.baseUrl, path);
}

/** A message for any thrown value, for showing in the UI. */
export function messageOf(error: unknown): string {
  if (error instanceof Error && error.message) {
    return error.message;
  }
  return String(error);
}
