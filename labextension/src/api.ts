/**
 * Typed calls for the ecode REST resources the sidebar uses (see DESIGN.md, "REST and
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
  /** Fields the server may add; the sidebar does not need them yet. */
  description?: string;
  model?: string | null;
  /** The project's page, `/ecode/@owner/slug`. */
  url?: string;
  /** Present on a create reply when the prompt started an agent run (issue 3's shape). */
  run?: { id: string; status?: string };
}

/** A project template the server can scaffold. */
export interface ITemplate {
  id: string;
  title: string;
  description: string;
}

/** Body of `POST api/ecode/projects`; a prompt starts an agent run at once. */
export interface ICreateProjectRequest {
  name: string;
  template?: string;
  prompt?: string;
  model?: string;
}

/** My projects, as the server orders them. */
export async function listProjects(): Promise<IProject[]> {
  const reply = await requestAPI<{ projects: IProject[] }>('projects');
  return reply.projects;
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
  return requestAPI<IProject>('projects', {
    method: 'POST',
    body: JSON.stringify(request)
  });
}
