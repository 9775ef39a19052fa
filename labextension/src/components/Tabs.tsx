/**
 * Tabs with the WAI-ARIA tabs pattern: one tab stop for the tab list, arrow keys (and Home,
 * End) move between tabs and select them, the panel is labelled by its tab.
 */
import * as React from 'react';

export interface ITab {
  id: string;
  label: string;
}

export function TabList(props: {
  tabs: readonly ITab[];
  selected: string;
  onSelect: (id: string) => void;
  idPrefix: string;
  label: string;
}): JSX.Element {
  const { tabs, selected, idPrefix } = props;
  const refs = React.useRef(new Map<string, HTMLButtonElement>());
  const move = (event: React.KeyboardEvent, index: number) => {
    let next: number | null = null;
    if (event.key === 'ArrowRight') {
      next = (index + 1) % tabs.length;
    } else if (event.key === 'ArrowLeft') {
      next = (index - 1 + tabs.length) % tabs.length;
    } else if (event.key === 'Home') {
      next = 0;
    } else if (event.key === 'End') {
      next = tabs.length - 1;
    }
    if (next !== null) {
      event.preventDefault();
      props.onSelect(tabs[next].id);
      refs.current.get(tabs[next].id)?.focus();
    }
  };
  return (
    <div className="jp-EcodeTabs" role="tablist" aria-label={props.label}>
      {tabs.map((tab, index) => {
        const isSelected = tab.id === selected;
        return (
          <button
            key={tab.id}
            ref={node => {
              if (node) {
                refs.current.set(tab.id, node);
              }
            }}
            type="button"
            role="tab"
            id={`${idPrefix}-tab-${tab.id}`}
            className={`jp-EcodeTab${isSelected ? ' jp-mod-selected' : ''}`}
            aria-selected={isSelected}
            aria-controls={`${idPrefix}-panel-${tab.id}`}
            tabIndex={isSelected ? 0 : -1}
            onClick={() => props.onSelect(tab.id)}
            onKeyDown={event => move(event, index)}
          >
            {tab.label}
          </button>
        );
      })}
    </div>
  );
}

export function TabPanel(props: {
  id: string;
  idPrefix: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div
      className="jp-EcodeTabPanel"
      role="tabpanel"
      id={`${props.idPrefix}-panel-${props.id}`}
      aria-labelledby={`${props.idPrefix}-tab-${props.id}`}
      tabIndex={0}
    >
      {props.children}
    </div>
  );
}
