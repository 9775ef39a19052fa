/**
 * The list of my projects, with a refresh button and the loading, empty and error states.
 * Each project opens (its feed here, its four tabs in the main area) with a click or Enter.
 */
import { refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IProject } from '../api';
import { formatDate } from '../format';

export interface IProjectListProps {
  projects: readonly IProject[];
  loading: boolean;
  loaded: boolean;
  error: string | null;
  idPrefix: string;
  activeId: string | null;
  onRefresh: () => void;
  onOpen: (project: IProject) => void;
}

function ProjectItem(props: {
  project: IProject;
  active: boolean;
  onOpen: (project: IProject) => void;
}): JSX.Element {
  const { project, active } = props;
  const address = `@${project.owner}/${project.slug}`;
  return (
    <li
      className={`jp-EcodeProject${active ? ' jp-mod-active' : ''}`}
      data-project-id={project.id}
      data-slug={project.slug}
    >
      <button
        type="button"
        className="jp-EcodeProject-open"
        onClick={() => props.onOpen(project)}
        aria-current={active ? 'true' : undefined}
        aria-label={`Open ${project.name} (${address})`}
      >
        <span className="jp-EcodeProject-header">
          <span className="jp-EcodeProject-name">{project.name}</span>
          <span
            className="jp-EcodeProject-role"
            title="Your role in this project"
          >
            {project.role}
          </span>
        </span>
        <span className="jp-EcodeProject-meta">
          <span className="jp-EcodeProject-slug">{address}</span>
          {project.template && (
            <span className="jp-EcodeProject-template" title="Template">
              {project.template}
            </span>
          )}
        </span>
        <span className="jp-EcodeProject-meta">
          <time dateTime={project.updated_at} title="Last changed">
            {formatDate(project.updated_at)}
          </time>
        </span>
      </button>
    </li>
  );
}

export function ProjectList(props: IProjectListProps): JSX.Element {
  const { projects, loading, loaded, error, idPrefix } = props;
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
          <ProjectItem
            key={project.id}
            project={project}
            active={project.id === props.activeId}
            onOpen={props.onOpen}
          />
        ))}
      </ul>
    );
  } else if (loaded) {
    body = (
      <p className="jp-EcodeProjectList-empty">
        No projects yet. Describe one above.
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
          onClick={props.onRefresh}
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
