/**
 * Typed calls for the ecode REST resources the frontend uses (see DESIGN.md, "REST and
 * WebSocket"). Every call goes through `requestAPI`, so errors arrive as `EcodeApiError`.
 */
import { requestAPI } from './handler';

/** The caller's role in a project. */
export type ProjectRole = 'owner' | 'editor' | 'viewer';

/** A project as `GET api/ecode/projects` lists it. */
export interface IProject {
  id: string;
  name: string;
  slug: string;
  owner: string;
  template: string | null;
  prompt: string | null;
  role: ProjectRole;
  created_at: string;
  updated_at: string;
  description?: string;
  model?: string | null;
  visibility?: string;
  /** The project's page, `/ecode/@owner/slug`. */
  url?: string;
  /**
   * The workspace folder relative to the server's root (a contents-API path), when the server
   * says so; otherwise the frontend assumes `ecode-projects/<id>` (the default layout).
   */
  workspace_path?: string | null;
  /** Present on a create reply when the prompt started an agent run. */
  run?: IRun;
  /** GPUs the project's kernels hold now (`GET projects/{id}`, where the server has GPUs). */
  gpu_leases?: IGpuLease[];
}

/** One GPU (or MIG instance) a project kernel holds, as `GET api/ecode/gpus` lists it. */
export interface IGpuLease {
  id: string;
  /** The device id CUDA sees (`GPU-…`/`MIG-…` UUID or an index). */
  device: string;
  /** Its model, e.g. "NVIDIA H200". */
  name: string;
  kernel_id: string;
  project_id: string;
  user: string;
  started_at: string;
  ended_at: string | null;
  end_reason: string | null;
  seconds: number;
  billed_seconds: number;
  cost_micros: number;
}

/** A project template the server can scaffold. */
export interface ITemplate {
  id: string;
  title: string;
  description: string;
  /** Whether its projects are web apps with a preview (false: a script, a notebook). */
  serves?: boolean;
  /** Its main file: what to run or open when it serves nothing. */
  entry?: string;
}

/**
 * How to use a project that is not a web app, instead of previewing it (a template's
 * `serves: false`, or `details.how_to_run` of the server's "not a web app" refusal).
 */
export interface IHowToRun {
  kind: 'script' | 'notebook' | 'node';
  /** The file to run or open, relative to the workspace. */
  path: string;
  /** The command for a terminal in the workspace; null for a notebook. */
  command: string | null;
}

/** `details.how_to_run` of an error, when it is one. */
export function howToRunOf(details: unknown): IHowToRun | null {
  const how = (details as { how_to_run?: unknown } | null)?.how_to_run as
    Partial<IHowToRun> | undefined;
  if (
    !how ||
    !['script', 'notebook', 'node'].includes(how.kind ?? '') ||
    typeof how.path !== 'string'
  ) {
    return null;
  }
  const command = typeof how.command === 'string' ? how.command : null;
  return { kind: how.kind as IHowToRun['kind'], path: how.path, command };
}

/** Body of `POST api/ecode/projects`; a prompt starts an agent run at once. */
export interface ICreateProjectRequest {
  name: string;
  template?: string;
  prompt?: string;
  model?: string;
  /** build (default), plan (the plan waits for approval first) or ask (read-only). */
  mode?: RunMode;
}

export type RunMode = 'build' | 'plan' | 'ask';

/** Token counts of a run or a model call. */
export interface IUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
}

/** An agent run, as `GET runs/{id}` answers. */
export interface IRun {
  id: string;
  project_id: string;
  created_by?: string;
  prompt: string;
  provider: string;
  model: string;
  status: string;
  reason: string | null;
  continued_from?: string | null;
  created_at?: string;
  started_at?: string | null;
  finished_at?: string | null;
  steps?: number;
  usage?: IUsage;
  cost_micros?: number;
  last_seq?: number;
  summary?: Record<string, unknown>;
}

/** One price row of `GET billing/prices` (micro-credits per million tokens). */
export interface IModelPrice {
  model: string;
  free: boolean;
  input: number;
  output: number;
  cache_write?: number;
  cache_read?: number;
}

export interface IPrices {
  unit: string;
  micros_per_credit: number;
  models: IModelPrice[];
  free_models?: string[];
}

/** `GET billing/account`: what the user may spend. */
export interface IAccount {
  user: string;
  balance_micros: number;
  reserved_micros: number;
  available_micros: number;
  month?: { period: string; spent_micros: number };
}

/** A preview or a live release, as `GET projects/{id}/deployments` lists it. */
export interface IDeployment {
  id: string;
  project_id: string;
  kind: 'preview' | 'release';
  status: string;
  reason: string | null;
  running: boolean;
  live: boolean;
  /** Where the app is served now (a keyed URL), or null. */
  url: string | null;
  /** The stable address (`/ecode/apps/@owner/slug/`), which redirects to `url`. */
  entry_url: string | null;
  /**
   * Whether the app's pages keep an origin of their own at `url`: a preview origin whose host
   * name is not Jupyter's (cookies ignore ports), so it may be framed with allow-same-origin.
   */
  own_origin?: boolean;
  release: { id: string; number: number | null } | null;
  framework?: string | null;
  command?: string | null;
  restarts?: number;
  created_at?: string;
  log_tail?: string[];
}

/** An immutable snapshot of the workspace that can go live. */
export interface IRelease {
  id: string;
  project_id: string;
  number: number;
  status: string;
  reason: string | null;
  file_count: number;
  total_bytes: number;
  command: string | null;
  framework: string | null;
  created_by: string;
  created_at: string;
  live_at: string | null;
  live: boolean;
}

/** `GET projects/{id}/export`: the generated files for running the app elsewhere. */
export interface IExportBundle {
  files: Record<string, string>;
  context: string[];
  notes: string[];
  command: string;
}

/** One line of an app's log (`WS deployments/{id}/logs`). */
export interface ILogLine {
  seq: number;
  ts: string;
  stream: string;
  text: string;
}

/** What the server would run a prompt with (`GET agent/models`, when the server has it). */
export interface IAgentModels {
  default: { provider: string; model: string };
  providers: string[];
  /** The models this user may pick (`c.EcodeApp.allowed_models`); null: every priced one. */
  allowed?: string[] | null;
}

/**
 * The priced models the picker offers: all of them, or only those the admin allowed (by
 * model id or as `provider:model`). The server refuses the others anyway; the picker does
 * not offer what would be refused.
 */
export function pickableModels(
  prices: readonly IModelPrice[],
  agent: IAgentModels | null | undefined
): IModelPrice[] {
  const allowed = agent?.allowed;
  if (!allowed) {
    return [...prices];
  }
  const ids = new Set(allowed.map(entry => entry.split(':').pop() ?? entry));
  return prices.filter(p => ids.has(p.model));
}

const json = (body: unknown): RequestInit => ({
  method: 'POST',
  body: JSON.stringify(body)
});

/** How many pages of projects the sidebar reads (the server answers 1,000 at most a page). */
const MAX_PROJECT_PAGES = 5;

/** My projects, newest activity first (the server answers in pages; followed a few deep). */
export async function listProjects(): Promise<IProject[]> {
  const found: IProject[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < MAX_PROJECT_PAGES; page++) {
    const query: string = cursor
      ? `projects?limit=1000&cursor=${encodeURIComponent(cursor)}`
      : 'projects?limit=1000';
    const reply: { projects: IProject[]; next_cursor?: string | null } =
      await requestAPI(query);
    found.push(...reply.projects);
    cursor = reply.next_cursor ?? null;
    if (!cursor) {
      break;
    }
  }
  return found;
}

export async function getProject(id: string): Promise<IProject> {
  return requestAPI<IProject>(`projects/${encodeURIComponent(id)}`);
}

/** Resolve `@owner/slug` (the Replit-style address) to a project. */
export async function projectBySlug(
  owner: string,
  slug: string
): Promise<IProject> {
  return requestAPI<IProject>(
    `by-slug/@${encodeURIComponent(owner)}/${encodeURIComponent(slug)}`
  );
}

/** The templates a new project can start from. */
export async function listTemplates(): Promise<ITemplate[]> {
  const reply = await requestAPI<{ templates: ITemplate[] }>('templates');
  return reply.templates;
}

/** Create a project; resolves to the project the server made (its slug may differ). */
export async function createProject(
  request: ICreateProjectRequest
): Promise<IProject> {
  return requestAPI<IProject>('projects', json(request));
}

export async function listRuns(projectId: string, limit = 20): Promise<IRun[]> {
  const reply = await requestAPI<{ runs: IRun[] }>(
    `projects/${encodeURIComponent(projectId)}/runs?limit=${limit}`
  );
  return reply.runs;
}

export async function startRun(
  projectId: string,
  prompt: string,
  model?: string,
  mode?: RunMode
): Promise<IRun> {
  const body: { prompt: string; model?: string; mode?: RunMode } = { prompt };
  if (model) {
    body.model = model;
  }
  if (mode && mode !== 'build') {
    body.mode = mode;
  }
  return requestAPI<IRun>(
    `projects/${encodeURIComponent(projectId)}/runs`,
    json(body)
  );
}

export async function getRun(runId: string): Promise<IRun> {
  return requestAPI<IRun>(`runs/${encodeURIComponent(runId)}`);
}

export async function cancelRun(runId: string): Promise<IRun> {
  return requestAPI<IRun>(`runs/${encodeURIComponent(runId)}/cancel`, {
    method: 'POST'
  });
}

export type ApprovalDecision = 'allow' | 'deny' | 'always';

/**
 * Answer a run's approval request (editors and owners of the project); a plan may be
 * approved as edited (`plan`).
 */
export async function decideApproval(
  runId: string,
  approvalId: string,
  decision: ApprovalDecision,
  plan?: string
): Promise<void> {
  const body = plan === undefined ? { decision } : { decision, plan };
  await requestAPI<unknown>(
    `runs/${encodeURIComponent(runId)}/approvals/${encodeURIComponent(approvalId)}`,
    { method: 'POST', body: JSON.stringify(body) }
  );
}

export async function continueRun(runId: string): Promise<IRun> {
  return requestAPI<IRun>(`runs/${encodeURIComponent(runId)}/continue`, {
    method: 'POST'
  });
}

/** A project's own server on a hub (`projects/{id}/server` of the ecode service). */
export interface IProjectServer {
  name: string;
  owner: string;
  /** The path of its Lab on the hub. */
  url: string;
  ready: boolean;
  pending: string | null;
}

export async function getProjectServer(
  projectId: string
): Promise<IProjectServer> {
  return requestAPI<IProjectServer>(
    `projects/${encodeURIComponent(projectId)}/server`
  );
}

/** Start the project's server when it is stopped (any member may); its state after. */
export async function openProjectServer(
  projectId: string
): Promise<IProjectServer> {
  return requestAPI<IProjectServer>(
    `projects/${encodeURIComponent(projectId)}/server`,
    { method: 'POST' }
  );
}

/**
 * Start the project's kernels ahead (the server's warm pool), so its next notebook or
 * agent execution starts at once. Editors only; the server answers 202 at once.
 */
export async function warmKernels(projectId: string): Promise<void> {
  await requestAPI<unknown>(
    `projects/${encodeURIComponent(projectId)}/kernels/warm`,
    { method: 'POST' }
  );
}

export async function getPrices(): Promise<IPrices> {
  return requestAPI<IPrices>('billing/prices');
}

export async function getAccount(): Promise<IAccount> {
  return requestAPI<IAccount>('billing/account');
}

export async function getAgentModels(): Promise<IAgentModels> {
  return requestAPI<IAgentModels>('agent/models');
}

const projectPath = (id: string, rest: string) =>
  `projects/${encodeURIComponent(id)}/${rest}`;

export async function listDeployments(
  projectId: string
): Promise<IDeployment[]> {
  const reply = await requestAPI<{ deployments: IDeployment[] }>(
    projectPath(projectId, 'deployments')
  );
  return reply.deployments;
}

/** Start (or, with `restart`, restart) the project's preview; resolves once it answers. */
export async function startPreview(
  projectId: string,
  restart = false,
  command?: string
): Promise<IDeployment> {
  const body: Record<string, unknown> = { kind: 'preview', restart };
  if (command) {
    body.command = command;
  }
  return requestAPI<IDeployment>(
    projectPath(projectId, 'deployments'),
    json(body)
  );
}

export async function stopDeployments(
  projectId: string,
  kind: 'preview' | 'release'
): Promise<void> {
  await requestAPI<unknown>(
    projectPath(projectId, `deployments?kind=${kind}`),
    { method: 'DELETE' }
  );
}

export async function listReleases(projectId: string): Promise<IRelease[]> {
  const reply = await requestAPI<{ releases: IRelease[] }>(
    projectPath(projectId, 'releases')
  );
  return reply.releases;
}

/** Snapshot the workspace as a new release and make it live once healthy. */
export async function deployRelease(
  projectId: string,
  command?: string
): Promise<IDeployment> {
  return requestAPI<IDeployment>(
    projectPath(projectId, 'releases'),
    json(command ? { command } : {})
  );
}

export async function rollback(
  projectId: string,
  releaseId: string
): Promise<IDeployment> {
  return requestAPI<IDeployment>(
    projectPath(
      projectId,
      `releases/${encodeURIComponent(releaseId)}/rollback`
    ),
    { method: 'POST' }
  );
}

export async function getExport(
  projectId: string,
  releaseId?: string
): Promise<IExportBundle> {
  const query = releaseId ? `?release=${encodeURIComponent(releaseId)}` : '';
  return requestAPI<IExportBundle>(projectPath(projectId, `export${query}`));
}
