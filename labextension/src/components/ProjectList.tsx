/**
 * The list of my projects, with a refresh button and the loading, empty and error states.
 */
import { refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IProject } from '../api';

export interface IProjectListProps {
  projects: readonly IProject[];
  loading: boolean;
  loaded: boolean;
  error: string | null;
  idPrefix: string;
  onRefresh: () => void;
}

/** A date the way the user's locale writes it, or the raw text if it does not parse. */
function formatDate(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function ProjectItem({ project }: { project: IProject }): JSX.Element {
  const address = `@${project.owner}/${project.slug}`;
  return (
    <li
      className="jp-EcodeProject"
      data-project-id={project.id}
      data-slug={project.slug}
    >
      <div className="jp-EcodeProject-header">
        <span className="jp-EcodeProject-name">{project.name}</span>
        <span
          className="jp-EcodeProject-role"
          title="Your role in this project"
        >
          {project.role}
        </span>
      </div>
      <div className="jp-EcodeProject-meta">
        <span className="jp-EcodeProject-slug">{address}</span>
        {project.template && (
          <span className="jp-EcodeProject-template" title="Template">
            {project.template}
          </span>
        )}
      </div>
      <div className="jp-EcodeProject-meta">
        <time dateTime={project.updated_at} title="Last changed">
          {formatDate(project.updated_at)}
        </time>
      </div>
    </li>
  );
}

export function ProjectList(props: IProjectListProps): JSX.Element {
  const { projects, loading, loaded, error, idPrefix, onRefresh } = props;
  const headingId = `${idPrefix}-projects-heading`;
  let body: JSX.Element;
  if (projects.length > 0) {
    body = (
      <ul
        className="jp-EcodeProjectList"
        aria-labelledby={headingId}
        aria-busy={loading}
      >
        {projects.map(project => (
          <ProjectItem key={project.id} project={project} />
        ))}
      </ul>
    );
  } else if (loaded) {
    body = (
      <p className="jp-EcodeProjectList-empty">
        No projects yet. Create one above.
      </p>
    );
  } else {
    body = (
      <p className="jp-EcodeProjectList-empty">{loading ? 'Loading…' : ''}</p>
    );
  }
  return (
    <section className="jp-EcodeProjects" aria-labelledby={headingId}>
      <div className="jp-EcodeProjects-header">
        <h3 id={headingId} className="jp-EcodePanel-sectionTitle">
          Your projects{loaded ? ` (${projects.length})` : ''}
        </h3>
        <button
          type="button"
          className="jp-EcodeIconButton"
          onClick={onRefresh}
          disabled={loading}
          aria-label="Refresh projects"
          title="Refresh projects"
        >
          <refreshIcon.react tag="span" elementSize="normal" />
        </button>
      </div>
      {error && (
        <p className="jp-EcodeMessage jp-EcodeMessage-error" role="alert">
          {error}
        </p>
      )}
      {body}
    </section>
  );
}
